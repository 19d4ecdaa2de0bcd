//! The receiving half of [`JingleCalls`]: what each stanza from the component stream
//! does to the calls. Everything here comes from other servers, so every path either
//! uses the stanza or says why not ([`Dropped`]), and IQs always get a reply.

use std::time::Instant;

use xmpp_parsers::jid::Jid;
use xmpp_parsers::jingle::Action;
use xmpp_parsers::minidom::Element;

use super::{Call, CallEvent, Dropped, EndReason, JingleCalls, Phase, Role, MAX_NICK, NS_NICK};
use crate::model::MediaKind;
use crate::stanza::{
    error_condition, error_reply, iq_result, jmi_message, reason_of, Jmi, NS_DISCO_INFO,
    NS_JINGLE_ERRORS,
};
use crate::text::is_token;
use crate::xml::el;
use crate::{
    jingle_to_sdp, parse_jingle, transport_info_to_candidates, write_sdp, Side, NS_JINGLE,
};

impl JingleCalls {
    /// A stanza from the component stream. `Err` says why it was dropped (an IQ that
    /// asked for a reply got an error reply already).
    pub fn feed(&mut self, now: Instant, stanza: &Element) -> Result<(), Dropped> {
        let from = stanza.attr("from").and_then(|f| Jid::new(f).ok());
        let to = stanza.attr("to").and_then(|t| Jid::new(t).ok());
        let (Some(from), Some(to)) = (from, to) else {
            return Err(Dropped("no valid from/to".into()));
        };
        // These are echoed in replies: ids with control characters (XML carries tab,
        // CR and LF as character references) are not worth the risk of echoing.
        let control = |name: &str| {
            stanza
                .attr(name)
                .is_some_and(|v| v.chars().any(char::is_control))
        };
        if ["id", "from", "to"].into_iter().any(control) {
            return Err(Dropped("control characters in id, from or to".into()));
        }
        if to.domain().as_str() != self.config.component {
            return Err(Dropped(format!("addressed to {to}, not to this component")));
        }
        match (stanza.name(), stanza.attr("type").unwrap_or("")) {
            ("message", "error") => self.message_error(stanza),
            ("message", _) => match Jmi::from_message(stanza) {
                Some(jmi) => self.jmi(now, &from, &to, jmi, nick(stanza)),
                None => Err(Dropped("a message without call payload".into())),
            },
            ("iq", "set") if stanza.has_child("jingle", NS_JINGLE) => {
                self.jingle_iq(now, &from, stanza)
            }
            ("iq", "get") if stanza.has_child("query", NS_DISCO_INFO) => {
                self.out.push_back(disco_info(stanza));
                Ok(())
            }
            ("iq", "get" | "set") => {
                let reply = error_reply(stanza, "cancel", "service-unavailable", None);
                self.out.push_back(reply);
                Err(Dropped("an IQ this component does not serve".into()))
            }
            ("iq", "result" | "error") => self.iq_reply(stanza),
            _ => Err(Dropped(format!("<{}/> ignored", stanza.name()))),
        }
    }

    fn jmi(
        &mut self,
        now: Instant,
        from: &Jid,
        to: &Jid,
        jmi: Jmi,
        nick: Option<String>,
    ) -> Result<(), Dropped> {
        let sid = jmi.id().to_string();
        if !is_token(&sid) || sid.len() > 128 {
            return Err(Dropped("a call id that is not a token".into()));
        }
        if let Jmi::Propose { media, .. } = &jmi {
            return self.propose(now, from, to, &sid, media.clone(), nick);
        }
        let Some(call) = self.calls.get_mut(&sid).filter(|c| c.is_peer(from)) else {
            return Err(Dropped(format!("{jmi:?} for no call of {from}")));
        };
        match (jmi, call.role, call.phase) {
            (Jmi::Ringing { .. }, Role::Caller, Phase::Proposed) if !call.rang => {
                call.rang = true;
                self.events.push_back(CallEvent::Ringing { sid });
            }
            (Jmi::Proceed { .. }, Role::Caller, Phase::Proposed) => {
                call.peer = from.clone();
                call.phase = Phase::Proceeding;
                call.deadline = Some(now + self.config.ring_timeout);
                let offer = call.offer.take();
                let early = std::mem::take(&mut call.early_candidates);
                if let Some(offer) = offer {
                    self.send_jingle(now, &sid, offer);
                    self.send_candidates(now, &sid, &early);
                }
            }
            // A reject may cross our session-initiate when the callee gave up after
            // `proceed` but before the offer reached it.
            (Jmi::Reject { reason, .. }, Role::Caller, Phase::Proposed | Phase::Proceeding) => {
                self.calls.remove(&sid);
                self.forget_iqs(&sid);
                let reason = EndReason::from_jingle(reason.as_deref().or(Some("decline")));
                self.ended(&sid, reason);
            }
            (Jmi::Retract { reason, .. }, Role::Callee, Phase::Proposed | Phase::Proceeding) => {
                self.calls.remove(&sid);
                self.forget_iqs(&sid);
                let reason = EndReason::from_jingle(reason.as_deref().or(Some("cancel")));
                self.ended(&sid, reason);
            }
            (Jmi::Finish { reason, .. }, _, _) => {
                self.calls.remove(&sid);
                self.forget_iqs(&sid);
                self.ended(&sid, EndReason::from_jingle(reason.as_deref()));
            }
            (jmi, _, _) => return Err(Dropped(format!("{jmi:?} out of turn"))),
        }
        Ok(())
    }

    fn propose(
        &mut self,
        now: Instant,
        from: &Jid,
        to: &Jid,
        sid: &str,
        media: Vec<MediaKind>,
        nick: Option<String>,
    ) -> Result<(), Dropped> {
        if self.calls.contains_key(sid) {
            return Err(Dropped("a repeated propose".into()));
        }
        let local = match to.node() {
            Some(node) => format!("{node}@{}/{}", self.config.component, self.config.resource),
            None => return Err(Dropped("a propose to the component itself".into())),
        };
        if self.calls.len() >= self.config.max_calls {
            let reject = Jmi::Reject {
                id: sid.into(),
                reason: Some("busy".into()),
            };
            let id = self.message_id(sid);
            self.out
                .push_back(jmi_message(&local, from.as_str(), &id, &reject));
            return Err(Dropped("too many calls: rejected as busy".into()));
        }
        let id = self.message_id(sid);
        let ringing = Jmi::Ringing { id: sid.into() };
        self.out
            .push_back(jmi_message(&local, from.as_str(), &id, &ringing));
        self.calls.insert(
            sid.to_string(),
            Call {
                role: Role::Callee,
                phase: Phase::Proposed,
                local,
                peer: from.clone(),
                offer: None,
                early_candidates: Vec::new(),
                rang: true,
                deadline: Some(now + self.config.ring_timeout),
            },
        );
        let addresses = &self.config.addresses;
        self.events.push_back(CallEvent::Incoming {
            sid: sid.to_string(),
            from: addresses.to_address(from),
            from_name: nick,
            to: addresses.to_address(to),
            media,
        });
        Ok(())
    }

    fn jingle_iq(&mut self, now: Instant, from: &Jid, iq: &Element) -> Result<(), Dropped> {
        let Some(raw) = iq.get_child("jingle", NS_JINGLE) else {
            return Err(Dropped("no jingle".into()));
        };
        let jingle = match parse_jingle(raw) {
            Ok(j) => j,
            Err(e) => {
                self.out
                    .push_back(error_reply(iq, "modify", "bad-request", None));
                return Err(Dropped(format!("Jingle: {e}")));
            }
        };
        let sid = jingle.sid.0.clone();
        let Some(call) = self.calls.get(&sid).filter(|c| c.is_peer(from)) else {
            let unknown = el("unknown-session", NS_JINGLE_ERRORS).build();
            let reply = error_reply(iq, "cancel", "item-not-found", Some(unknown));
            self.out.push_back(reply);
            return Err(Dropped(format!("{:?} for no session", jingle.action)));
        };
        let (role, phase) = (call.role, call.phase);
        let refuse = |calls: &mut JingleCalls, why: String| {
            calls
                .out
                .push_back(error_reply(iq, "modify", "bad-request", None));
            Err(Dropped(why))
        };
        match (&jingle.action, role, phase) {
            (Action::SessionInitiate, Role::Callee, Phase::Proceeding) => {
                match jingle_to_sdp(&jingle, Side::Initiator) {
                    Ok(sdp) => {
                        self.out.push_back(iq_result(iq));
                        if let Some(call) = self.calls.get_mut(&sid) {
                            call.phase = Phase::Offered;
                            call.peer = from.clone();
                            call.deadline = Some(now + self.config.ring_timeout);
                        }
                        let sdp_offer = write_sdp(&sdp);
                        self.events
                            .push_back(CallEvent::RemoteOffer { sid, sdp_offer });
                        Ok(())
                    }
                    Err(e) => {
                        self.calls.remove(&sid);
                        self.ended(&sid, EndReason::Failed("offer".into()));
                        refuse(self, format!("session-initiate: {e}"))
                    }
                }
            }
            (Action::SessionAccept, Role::Caller, Phase::Proceeding) => {
                match jingle_to_sdp(&jingle, Side::Responder) {
                    Ok(sdp) => {
                        self.out.push_back(iq_result(iq));
                        if let Some(call) = self.calls.get_mut(&sid) {
                            call.phase = Phase::Active;
                            call.deadline = None;
                        }
                        let sdp_answer = write_sdp(&sdp);
                        self.events
                            .push_back(CallEvent::Accepted { sid, sdp_answer });
                        Ok(())
                    }
                    Err(e) => {
                        let result = refuse(self, format!("session-accept: {e}"));
                        self.end(&sid, "failed-application");
                        self.ended(&sid, EndReason::Failed("answer".into()));
                        result
                    }
                }
            }
            (Action::TransportInfo, _, _) => match transport_info_to_candidates(&jingle) {
                Ok(candidates) => {
                    self.out.push_back(iq_result(iq));
                    for candidate in candidates {
                        let sid = sid.clone();
                        self.events
                            .push_back(CallEvent::RemoteCandidate { sid, candidate });
                    }
                    Ok(())
                }
                Err(e) => refuse(self, format!("transport-info: {e}")),
            },
            (Action::SessionTerminate, _, _) => {
                self.out.push_back(iq_result(iq));
                self.calls.remove(&sid);
                self.forget_iqs(&sid);
                let reason = EndReason::from_jingle(reason_of(raw).as_deref());
                self.ended(&sid, reason);
                Ok(())
            }
            // session-info (ringing, mute, ...) changes nothing here.
            (Action::SessionInfo, _, _) => {
                self.out.push_back(iq_result(iq));
                Ok(())
            }
            (action, _, _) => {
                let out_of_order = el("out-of-order", NS_JINGLE_ERRORS).build();
                let reply = error_reply(iq, "wait", "unexpected-request", Some(out_of_order));
                self.out.push_back(reply);
                Err(Dropped(format!("{action:?} out of turn")))
            }
        }
    }

    fn iq_reply(&mut self, iq: &Element) -> Result<(), Dropped> {
        let id = iq.attr("id").unwrap_or_default();
        let Some((sid, _)) = self.iqs.remove(id) else {
            return Err(Dropped("a reply to no IQ of ours".into()));
        };
        if iq.attr("type") == Some("error") && self.calls.contains_key(&sid) {
            self.calls.remove(&sid);
            self.forget_iqs(&sid);
            let reason = EndReason::from_stanza_error(error_condition(iq).as_deref());
            self.ended(&sid, reason);
        }
        Ok(())
    }

    fn message_error(&mut self, message: &Element) -> Result<(), Dropped> {
        // Our messages' ids start with the sid (the propose's is the sid itself).
        let id = message.attr("id").unwrap_or_default();
        let sid = id.split('-').next().unwrap_or_default().to_string();
        let from = message.attr("from").and_then(|f| Jid::new(f).ok());
        let Some(call) = self.calls.get(&sid) else {
            return Err(Dropped("an error about no call".into()));
        };
        // The bounce comes from the peer or from a server on the way (a JID without user).
        if !from.is_some_and(|f| call.is_peer(&f) || f.node().is_none()) {
            return Err(Dropped("an error from a stranger".into()));
        }
        self.calls.remove(&sid);
        self.forget_iqs(&sid);
        let reason = EndReason::from_stanza_error(error_condition(message).as_deref());
        self.ended(&sid, reason);
        Ok(())
    }
}

/// What this component speaks (XEP-0030), so XMPP clients offer it calls.
fn disco_info(iq: &Element) -> Element {
    let mut query = el("query", NS_DISCO_INFO).child(
        el("identity", NS_DISCO_INFO)
            .with("category", "client")
            .with("type", "web")
            .with("name", "Switchboard")
            .build(),
    );
    for feature in [
        NS_DISCO_INFO,
        NS_JINGLE,
        crate::stanza::NS_RTP,
        "urn:xmpp:jingle:apps:rtp:audio",
        "urn:xmpp:jingle:apps:rtp:video",
        crate::NS_ICE_UDP,
        crate::NS_DTLS,
        crate::stanza::NS_JMI,
    ] {
        query = query.child(el("feature", NS_DISCO_INFO).with("var", feature).build());
    }
    let mut reply = iq_result(iq);
    reply.append_child(query.build());
    reply
}

/// A short name of a call stanza for logs: `iq session-accept`, `message Ringing {..}`.
/// The sender's nickname (XEP-0172) of a message, as a caller's display name: trimmed,
/// without control characters, at most [`MAX_NICK`] characters; None when empty.
fn nick(message: &Element) -> Option<String> {
    let text = message.get_child("nick", NS_NICK)?.text();
    let nick: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NICK)
        .collect();
    (!nick.is_empty()).then_some(nick)
}

pub fn describe(stanza: &Element) -> String {
    let jingle = stanza
        .get_child("jingle", NS_JINGLE)
        .and_then(|j| j.attr("action").map(str::to_string));
    let jmi = Jmi::from_message(stanza).map(|j| format!("{j:?}"));
    format!(
        "{} {}",
        stanza.name(),
        jingle
            .or(jmi)
            .unwrap_or_else(|| stanza.attr("type").unwrap_or("").to_string())
    )
}
