//! Direct calls over XMPP, sans-IO: [`JingleCalls`] is fed stanzas and time and hands out
//! stanzas to send and [`CallEvent`]s for the app. One machine serves every user of one
//! Switchboard (one XEP-0114 component); the driver (`crate::driver`) moves the stanzas.
//!
//! A call is XEP-0353 Jingle Message Initiation first, so the callee rings before any
//! session exists (as Conversations and Dino do), then an XEP-0166 session:
//!
//! ```text
//! caller                                   callee
//! place()  -- <propose id=sid> ----------->  Incoming{sid}        (message to the bare JID)
//! Ringing  <- <ringing id=sid> -----------   (sent on receipt)
//!          <- <proceed id=sid> -----------   accept()
//!          -- session-initiate (offer) --->  RemoteOffer{sdp}
//! local_candidate() -- transport-info ---->  RemoteCandidate
//! Accepted <- session-accept (answer) ----   answer(sdp)
//! RemoteCandidate <- transport-info ------   local_candidate()
//! hangup() -- session-terminate <success/>>  Ended{HungUp}  (+ <finish/>)
//! ```
//!
//! Before `proceed`, the callee's `decline`/`busy` is a `<reject>` with that reason, the
//! caller's `hangup` (cancel) a `<retract>`; after it, both are `session-terminate`. An
//! address nobody answers for comes back as a stanza error (`item-not-found` from the far
//! Switchboard via [`JingleCalls::unknown`], `remote-server-not-found`/`-timeout` or
//! `service-unavailable` from the XMPP servers): `Ended{Unreachable}`. A call not answered
//! within `ring_timeout`, or an IQ not answered within `iq_timeout`, ends too.
//!
//! Actions of the app itself (`decline`, `hangup`, ...) end the call without an event;
//! every other end is one `Ended` event. Stanzas about a call are only taken from its
//! peer's bare JID, and nothing read panics: a stanza that cannot be used gets an error
//! reply when it asked for one (an IQ `set`/`get`) and is otherwise dropped, with the
//! reason returned from [`JingleCalls::feed`] for the log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::jingle::Action;
use xmpp_parsers::minidom::Element;

mod incoming;

pub use incoming::describe;

use crate::address::{AddressError, Addresses};
use crate::model::MediaKind;
use crate::stanza::{jmi_message, reason_element, stanza, Jmi};
use crate::xml::el;
use crate::{
    candidates_to_transport_info, parse_sdp, sdp_to_jingle, session_from_sdp, JingleParams,
    MapError, Side, TrickleCandidate, NS_JINGLE,
};

/// What the machine needs to know about its component.
#[derive(Debug, Clone)]
pub struct CallsConfig {
    /// The component's domain (`sb.a.test`): local users are JIDs in it.
    pub component: String,
    /// The resource of local users' full JIDs (Jingle IQs go to full JIDs).
    pub resource: String,
    pub addresses: Addresses,
    /// How long a proposed call rings before it ends with `Timeout` (both sides).
    pub ring_timeout: Duration,
    /// How long an IQ may stay unanswered before its call ends as `Unreachable`.
    pub iq_timeout: Duration,
    /// Calls in progress at most; a proposal beyond it is rejected as busy.
    pub max_calls: usize,
}

impl CallsConfig {
    pub fn new(component: &str) -> CallsConfig {
        CallsConfig {
            component: component.to_string(),
            resource: "switchboard".into(),
            addresses: Addresses::default(),
            ring_timeout: Duration::from_secs(60),
            iq_timeout: Duration::from_secs(20),
            max_calls: 256,
        }
    }
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Declined,
    Busy,
    /// The caller gave up before an answer (`retract`, or `cancel` as Jingle reason).
    Cancelled,
    /// A normal end after the call was answered (`success`).
    HungUp,
    /// No such user, their server or Switchboard is not reachable.
    Unreachable,
    /// Nobody answered within the ring timeout (`timeout`, `expired`).
    Timeout,
    /// The peer is gone (`gone`).
    Gone,
    /// Anything else: the Jingle reason or stanza error condition, or our own reason.
    Failed(String),
}

impl EndReason {
    /// From a Jingle `<reason/>` condition (XEP-0166 §7.4).
    pub fn from_jingle(reason: Option<&str>) -> EndReason {
        match reason {
            None | Some("success") => EndReason::HungUp,
            Some("decline") => EndReason::Declined,
            Some("busy") => EndReason::Busy,
            Some("cancel") => EndReason::Cancelled,
            Some("timeout") | Some("expired") => EndReason::Timeout,
            Some("gone") => EndReason::Gone,
            Some(other) => EndReason::Failed(other.to_string()),
        }
    }

    /// From a stanza error condition (RFC 6120 §8.3.3) on one of our stanzas.
    fn from_stanza_error(condition: Option<&str>) -> EndReason {
        match condition {
            Some(
                "item-not-found"
                | "remote-server-not-found"
                | "remote-server-timeout"
                | "service-unavailable"
                | "recipient-unavailable"
                | "gone",
            ) => EndReason::Unreachable,
            Some(other) => EndReason::Failed(other.to_string()),
            None => EndReason::Failed("error".into()),
        }
    }
}

/// What happened, for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// Someone calls a local user (`to`, an app address): ring them, then `accept`,
    /// `decline`, `busy` or `unknown`.
    Incoming {
        sid: String,
        from: String,
        /// The caller's nickname (XEP-0172), when the propose carries one.
        from_name: Option<String>,
        to: String,
        media: Vec<MediaKind>,
    },
    /// The callee's device rings.
    Ringing {
        sid: String,
    },
    /// The callee answered: the browser's remote description.
    Accepted {
        sid: String,
        sdp_answer: String,
    },
    /// The caller's offer (callee side, after `accept`): answer it with `answer`.
    RemoteOffer {
        sid: String,
        sdp_offer: String,
    },
    RemoteCandidate {
        sid: String,
        candidate: TrickleCandidate,
    },
    Ended {
        sid: String,
        reason: EndReason,
    },
}

/// Why the app's request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no call {0:?}")]
    UnknownCall(String),
    #[error("call {sid:?}: {action} is not possible now")]
    WrongState { sid: String, action: &'static str },
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("{0:?} is not a user of this server's component")]
    NotLocal(String),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("too many calls in progress")]
    TooManyCalls,
    #[error("too many candidates waiting for the session")]
    TooManyCandidates,
}

/// Why a received stanza was dropped or refused (for the log; nothing to do about it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stanza dropped: {0}")]
pub struct Dropped(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `propose` sent (caller) or received (callee): ringing.
    Proposed,
    /// Caller: `session-initiate` sent. Callee: `proceed` sent, the offer not yet here.
    Proceeding,
    /// Callee: the offer is with the app, the answer not yet sent.
    Offered,
    /// The answer has crossed: media flows.
    Active,
}

/// XEP-0172: a caller's nickname in its propose.
const NS_NICK: &str = "http://jabber.org/protocol/nick";

/// A caller's display name is cut to this many characters.
const MAX_NICK: usize = 64;

/// Candidates kept while no session exists to carry them.
const MAX_EARLY_CANDIDATES: usize = 64;

struct Call {
    role: Role,
    phase: Phase,
    /// The local user's full JID.
    local: String,
    /// The peer's JID: bare until it answers from a device, then that full JID.
    peer: Jid,
    /// Caller: the session-initiate's `<jingle/>`, sent on `proceed`.
    offer: Option<Element>,
    early_candidates: Vec<TrickleCandidate>,
    rang: bool,
    deadline: Option<Instant>,
}

impl Call {
    fn is_peer(&self, from: &Jid) -> bool {
        from.to_bare() == self.peer.to_bare()
    }
}

/// The calls of one component (see the module doc).
pub struct JingleCalls {
    config: CallsConfig,
    calls: HashMap<String, Call>,
    /// Our IQs awaiting a reply: id -> (sid, deadline).
    iqs: HashMap<String, (String, Instant)>,
    out: VecDeque<Element>,
    events: VecDeque<CallEvent>,
    next_id: u64,
}

impl JingleCalls {
    pub fn new(config: CallsConfig) -> JingleCalls {
        JingleCalls {
            config,
            calls: HashMap::new(),
            iqs: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
        }
    }

    pub fn config(&self) -> &CallsConfig {
        &self.config
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The sids of the calls in progress.
    pub fn sids(&self) -> Vec<String> {
        self.calls.keys().cloned().collect()
    }

    /// The next stanza to send.
    pub fn poll_stanza(&mut self) -> Option<Element> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(|c| c.deadline);
        calls.chain(self.iqs.values().map(|(_, d)| *d)).min()
    }

    /// `from` (a local app address) calls `to` with the browser's SDP offer; returns the
    /// call's sid. The offer is sent once the callee accepts.
    pub fn place(
        &mut self,
        now: Instant,
        from: &str,
        to: &str,
        sdp_offer: &str,
    ) -> Result<String, CallError> {
        self.place_named(now, from, None, to, sdp_offer)
    }

    /// [`Self::place`] with the caller's display name, sent as its nickname (XEP-0172)
    /// in the propose.
    pub fn place_named(
        &mut self,
        now: Instant,
        from: &str,
        name: Option<&str>,
        to: &str,
        sdp_offer: &str,
    ) -> Result<String, CallError> {
        if self.calls.len() >= self.config.max_calls {
            return Err(CallError::TooManyCalls);
        }
        let local = self.local_jid(from)?;
        let peer = Jid::from(self.config.addresses.to_jid(to)?);
        let offer = parse_sdp(sdp_offer)?;
        let media: Vec<MediaKind> = session_from_sdp(&offer)?
            .media
            .iter()
            .map(|m| m.kind)
            .collect();
        if media.is_empty() {
            return Err(MapError::Unsupported("an offer without media").into());
        }
        let sid = switchboard_util::random_hex(12);
        // Mapped now, so a browser's offer Jingle cannot carry is refused to the app
        // rather than after the callee picked up.
        let params = JingleParams {
            action: Action::SessionInitiate,
            sid: sid.clone(),
            side: Side::Initiator,
            initiator: Jid::new(&local).ok(),
            responder: None,
        };
        let offer = jingle_element(&sdp_to_jingle(&offer, &params)?);
        let propose = Jmi::Propose {
            id: sid.clone(),
            media,
        };
        // The propose's message id is the sid, so a bounce (unknown user) names the call.
        let mut message = jmi_message(&local, peer.as_str(), &sid, &propose);
        let name = name.map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(MAX_NICK)
                .collect::<String>()
        });
        if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
            let mut nick = el("nick", NS_NICK).build();
            nick.append_text_node(name);
            message.append_child(nick);
        }
        self.out.push_back(message);
        self.calls.insert(
            sid.clone(),
            Call {
                role: Role::Caller,
                phase: Phase::Proposed,
                local,
                peer,
                offer: Some(offer),
                early_candidates: Vec::new(),
                rang: false,
                deadline: Some(now + self.config.ring_timeout),
            },
        );
        Ok(sid)
    }

    /// The callee takes the call (`proceed`); its offer comes as `RemoteOffer`.
    pub fn accept(&mut self, now: Instant, sid: &str) -> Result<(), CallError> {
        let deadline = now + self.config.ring_timeout;
        let call = self.call_in(sid, Role::Callee, &[Phase::Proposed], "accept")?;
        call.phase = Phase::Proceeding;
        call.deadline = Some(deadline);
        let (local, peer) = (call.local.clone(), call.peer.to_string());
        let id = self.message_id(sid);
        let jmi = Jmi::Proceed { id: sid.into() };
        self.out.push_back(jmi_message(&local, &peer, &id, &jmi));
        Ok(())
    }

    /// The callee's browser answered the `RemoteOffer`.
    pub fn answer(&mut self, now: Instant, sid: &str, sdp_answer: &str) -> Result<(), CallError> {
        let answer = parse_sdp(sdp_answer)?;
        let call = self.call_in(sid, Role::Callee, &[Phase::Offered], "answer")?;
        let params = JingleParams {
            action: Action::SessionAccept,
            sid: sid.into(),
            side: Side::Responder,
            initiator: None,
            responder: Jid::new(&call.local).ok(),
        };
        let jingle = sdp_to_jingle(&answer, &params)?;
        call.phase = Phase::Active;
        call.deadline = None;
        let early = std::mem::take(&mut call.early_candidates);
        self.send_jingle(now, sid, jingle_element(&jingle));
        self.send_candidates(now, sid, &early);
        Ok(())
    }

    /// The callee declines (`reject` with `<decline/>`, or `session-terminate` later).
    pub fn decline(&mut self, sid: &str) -> Result<(), CallError> {
        self.refuse(sid, "decline")
    }

    /// The callee is busy.
    pub fn busy(&mut self, sid: &str) -> Result<(), CallError> {
        self.refuse(sid, "busy")
    }

    /// The called address has no user here (or none signed in): the caller gets
    /// `item-not-found`, i.e. `Unreachable`.
    pub fn unknown(&mut self, sid: &str) -> Result<(), CallError> {
        let call = self.call_in(sid, Role::Callee, &[Phase::Proposed], "unknown")?;
        let (local, peer) = (call.local.clone(), call.peer.to_string());
        self.calls.remove(sid);
        // A bounce of the propose: it carried the sid as its id (ours do; if the caller's
        // did not, it still names the call by the payload).
        let bounce = stanza("message", Some("error"), &local, &peer, sid)
            .child(
                Jmi::Propose {
                    id: sid.into(),
                    media: Vec::new(),
                }
                .to_element(),
            )
            .child(
                el("error", crate::stanza::NS_COMPONENT)
                    .with("type", "cancel")
                    .child(el("item-not-found", crate::stanza::NS_STANZAS).build())
                    .build(),
            )
            .build();
        self.out.push_back(bounce);
        Ok(())
    }

    /// Ends the call: a cancel before the answer (`retract`), a hang-up after it.
    pub fn hangup(&mut self, sid: &str) -> Result<(), CallError> {
        let call = self
            .calls
            .get(sid)
            .ok_or_else(|| CallError::UnknownCall(sid.into()))?;
        let reason = match (call.role, call.phase) {
            (_, Phase::Active) => "success",
            (Role::Caller, _) => "cancel",
            (Role::Callee, _) => "decline",
        };
        self.end(sid, reason);
        Ok(())
    }

    /// A candidate the local browser trickled.
    pub fn local_candidate(
        &mut self,
        now: Instant,
        sid: &str,
        candidate: TrickleCandidate,
    ) -> Result<(), CallError> {
        let call = self
            .calls
            .get_mut(sid)
            .ok_or_else(|| CallError::UnknownCall(sid.into()))?;
        let session_open = match call.role {
            Role::Caller => call.phase != Phase::Proposed,
            Role::Callee => call.phase == Phase::Active,
        };
        if !session_open {
            if call.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                return Err(CallError::TooManyCandidates);
            }
            call.early_candidates.push(candidate);
            return Ok(());
        }
        let jingle = candidates_to_transport_info(sid, std::slice::from_ref(&candidate))?;
        self.send_jingle(now, sid, jingle_element(&jingle));
        Ok(())
    }

    /// Ends what is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue_iqs: Vec<String> = self
            .iqs
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in overdue_iqs {
            if let Some((sid, _)) = self.iqs.remove(&id) {
                if self.calls.contains_key(&sid) {
                    self.end(&sid, "connectivity-error");
                    self.ended(&sid, EndReason::Unreachable);
                }
            }
        }
        let overdue: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in overdue {
            self.end(&sid, "timeout");
            self.ended(&sid, EndReason::Timeout);
        }
    }

    /// Ends a call from this side: tells the peer in the form the phase calls for.
    fn end(&mut self, sid: &str, reason: &str) {
        let Some(call) = self.calls.remove(sid) else {
            return;
        };
        self.forget_iqs(sid);
        let (local, peer) = (call.local.as_str(), call.peer.to_string());
        let id = self.message_id(sid);
        let reason_name = Some(reason.to_string());
        let session_exists = match call.role {
            Role::Caller => call.phase != Phase::Proposed,
            Role::Callee => matches!(call.phase, Phase::Offered | Phase::Active),
        };
        if session_exists {
            let terminate = el("jingle", NS_JINGLE)
                .with("action", "session-terminate")
                .with("sid", sid)
                .child(reason_element(reason))
                .build();
            let iq_id = self.message_id(sid);
            let iq = stanza("iq", Some("set"), local, &peer, &iq_id)
                .child(terminate)
                .build();
            self.out.push_back(iq);
            let finish = Jmi::Finish {
                id: sid.into(),
                reason: reason_name,
            };
            self.out.push_back(jmi_message(local, &peer, &id, &finish));
        } else {
            let jmi = match call.role {
                Role::Caller => Jmi::Retract {
                    id: sid.into(),
                    reason: reason_name,
                },
                Role::Callee => Jmi::Reject {
                    id: sid.into(),
                    reason: reason_name,
                },
            };
            self.out.push_back(jmi_message(local, &peer, &id, &jmi));
        }
    }

    fn refuse(&mut self, sid: &str, reason: &str) -> Result<(), CallError> {
        self.call_in(
            sid,
            Role::Callee,
            &[Phase::Proposed, Phase::Proceeding, Phase::Offered],
            "decline",
        )?;
        self.end(sid, reason);
        Ok(())
    }

    fn send_jingle(&mut self, now: Instant, sid: &str, jingle: Element) {
        let id = self.message_id(sid);
        let Some(call) = self.calls.get(sid) else {
            return;
        };
        let iq = stanza("iq", Some("set"), &call.local, call.peer.as_str(), &id)
            .child(jingle)
            .build();
        self.out.push_back(iq);
        self.iqs
            .insert(id, (sid.to_string(), now + self.config.iq_timeout));
    }

    fn send_candidates(&mut self, now: Instant, sid: &str, candidates: &[TrickleCandidate]) {
        for c in candidates {
            // Early candidates were only stored, so one the mapper refuses is skipped.
            if let Ok(jingle) = candidates_to_transport_info(sid, std::slice::from_ref(c)) {
                self.send_jingle(now, sid, jingle_element(&jingle));
            }
        }
    }

    fn forget_iqs(&mut self, sid: &str) {
        self.iqs.retain(|_, (s, _)| s != sid);
    }

    fn ended(&mut self, sid: &str, reason: EndReason) {
        self.events.push_back(CallEvent::Ended {
            sid: sid.to_string(),
            reason,
        });
    }

    /// A fresh stanza id naming the call (`<sid>-<n>`).
    fn message_id(&mut self, sid: &str) -> String {
        self.next_id += 1;
        format!("{sid}-{}", self.next_id)
    }

    fn call_in(
        &mut self,
        sid: &str,
        role: Role,
        phases: &[Phase],
        action: &'static str,
    ) -> Result<&mut Call, CallError> {
        let call = self
            .calls
            .get_mut(sid)
            .ok_or_else(|| CallError::UnknownCall(sid.into()))?;
        if call.role != role || !phases.contains(&call.phase) {
            return Err(CallError::WrongState {
                sid: sid.into(),
                action,
            });
        }
        Ok(call)
    }

    /// The full JID of a local app address.
    fn local_jid(&self, address: &str) -> Result<String, CallError> {
        let jid: BareJid = self.config.addresses.to_jid(address)?;
        if jid.domain().as_str() != self.config.component {
            return Err(CallError::NotLocal(address.chars().take(128).collect()));
        }
        Ok(format!("{jid}/{}", self.config.resource))
    }
}

/// A Jingle element as sent: the mapper's output, through its own writer.
fn jingle_element(jingle: &xmpp_parsers::jingle::Jingle) -> Element {
    Element::from(jingle.clone())
}
