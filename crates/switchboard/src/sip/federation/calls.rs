//! The SIP agent's side of federation: the federated calls among the user agent's calls,
//! the glue's commands turned into user agent calls (INVITE, 180, 200, 4xx/6xx, CANCEL,
//! BYE) and the user agent's events about those calls turned into [`FederationEvent`]s.
//! No media and no room: the SDP goes through as the browsers wrote it.
//!
//! Kept apart from the agent's room calls (`agent.rs` asks [`FederationCalls::owns`]
//! first) so that neither side needs to know the other's bookkeeping.

use super::{
    address_of, is_webrtc_offer, Command, EndReason, FederationError, FederationEvent, Place,
    Refusal,
};
use crate::sip::stream::ConnKey;
use crate::sip::SipStats;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_sip::sdp::SessionDescription;
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{CallId, Outbound, UaEvent, UserAgent};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

/// One federated call of the user agent.
struct FedCall {
    id: String,
    role: Role,
    /// Callee: the 200 OK went out. Caller: the 200 OK came.
    answered: bool,
    /// Caller: `Ringing` was reported (once, however many 18x come).
    rang: bool,
    /// Caller: a 183's SDP, the answer when the 200 OK has none.
    early: Option<SessionDescription>,
    /// The app ended the call: the user agent's end of it is not reported.
    silent: bool,
    /// Caller over TCP/TLS: the connection to the next hop, kept while the call lasts.
    conn: Option<ConnKey>,
}

/// The federated calls and the consumer of their events.
pub(in crate::sip) struct FederationCalls {
    /// `--call-domain`.
    domain: String,
    /// `--sip-max-calls`, for the federated calls on their own.
    max_calls: usize,
    consumer: watch::Receiver<Option<mpsc::Sender<FederationEvent>>>,
    calls: HashMap<CallId, FedCall>,
    /// The glue's ids of the calls it may still act on.
    ids: HashMap<String, CallId>,
}

impl FederationCalls {
    pub fn new(
        domain: String,
        max_calls: usize,
        consumer: watch::Receiver<Option<mpsc::Sender<FederationEvent>>>,
    ) -> FederationCalls {
        FederationCalls {
            domain,
            max_calls,
            consumer,
            calls: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    /// Someone consumes the events.
    fn attached(&self) -> bool {
        self.consumer
            .borrow()
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn owns(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// The server stops: every call is hung up (CANCEL, BYE, or 480 to a ringing INVITE)
    /// and ends `Failed("the server is stopping")` for the glue.
    pub fn stop_all(&mut self, ua: &mut UserAgent, now: Instant) {
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for call in calls {
            self.fail(ua, now, call, "the server is stopping".into());
        }
    }

    /// Whether a call of ours still uses the stream connection `key`.
    pub fn uses(&self, key: ConnKey) -> bool {
        self.calls.values().any(|c| c.conn == Some(key))
    }

    /// The routing rule (module doc of `federation`): a consumer, our call domain in the
    /// Request-URI, a WebRTC offer.
    pub fn takes(&self, to_host: &str, offer: Option<&SessionDescription>) -> bool {
        self.attached()
            && to_host.eq_ignore_ascii_case(&self.domain)
            && offer.is_some_and(is_webrtc_offer)
    }

    fn emit(&self, event: FederationEvent) -> bool {
        let Some(tx) = self.consumer.borrow().clone() else {
            return false;
        };
        match tx.try_send(event) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "SIP federation: an event could not be handed over");
                false
            }
        }
    }

    /// A federation INVITE ([`Self::takes`] said yes): ring at once, tell the glue. An
    /// error is the status the agent refuses the call with.
    #[allow(clippy::too_many_arguments)]
    pub fn incoming(
        &mut self,
        ua: &mut UserAgent,
        now: Instant,
        refusing: bool,
        call: CallId,
        from: &str,
        from_display: Option<String>,
        to_user: Option<&str>,
        offer: Option<SessionDescription>,
    ) -> Result<(), (u16, String)> {
        if refusing {
            return Err((503, "Service Unavailable (shutting down)".into()));
        }
        if self.calls.len() >= self.max_calls {
            return Err((486, "Busy Here".into()));
        }
        let from = address_of(from).ok_or((400, "Bad Request (From without a user)".into()))?;
        let to = to_user
            .map(str::to_ascii_lowercase)
            .filter(|u| switchboard_calls::valid_user(u))
            .ok_or((404, "Not Found".to_string()))?;
        let offer = offer.ok_or((488, "Not Acceptable Here (no SDP offer)".to_string()))?;
        ua.ring(now, call)
            .map_err(|e| (500, format!("Server Internal Error ({e})")))?;
        let id = format!("sip-{}", switchboard_util::random_hex(8));
        let from_name = from_display.filter(|d| !d.trim().is_empty());
        tracing::info!(%id, %from, %to, "SIP federation: call in");
        let told = self.emit(FederationEvent::Incoming {
            id: id.clone(),
            from,
            from_name,
            to,
            sdp_offer: offer.to_string_crlf(),
        });
        if !told {
            return Err((480, "Temporarily Unavailable".into()));
        }
        self.ids.insert(id.clone(), call);
        self.calls.insert(
            call,
            FedCall {
                id,
                role: Role::Callee,
                answered: false,
                rang: false,
                early: None,
                silent: false,
                conn: None,
            },
        );
        Ok(())
    }

    /// A command of the handle; its answer goes back on the command's reply channel.
    pub fn command(
        &mut self,
        ua: &mut UserAgent,
        now: Instant,
        refusing: bool,
        stats: &SipStats,
        command: Command,
    ) {
        match command {
            Command::Place(place, reply) => {
                let r = self.place(ua, now, refusing, *place);
                if r.is_ok() {
                    stats.calls_out.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(r);
            }
            Command::Accept(id, reply) => {
                let r = self.callee(&id, "accept").map(|_| ());
                let _ = reply.send(r);
            }
            Command::Answer(id, sdp, reply) => {
                let r = self.answer(ua, now, &id, *sdp);
                let _ = reply.send(r);
            }
            Command::Refuse(id, how, reply) => {
                let r = self.callee(&id, how.action()).and_then(|call| {
                    let (status, reason) = how.status();
                    self.end_by_app(&id);
                    ua.reject(now, call, status, reason)
                        .map_err(|e| FederationError::Refused(e.to_string()))
                });
                let _ = reply.send(r);
            }
            Command::Hangup(id, reply) => {
                let _ = reply.send(self.hangup(ua, now, &id));
            }
        }
    }

    fn place(
        &mut self,
        ua: &mut UserAgent,
        now: Instant,
        refusing: bool,
        place: Place,
    ) -> Result<String, FederationError> {
        if refusing {
            return Err(FederationError::Refused(
                "the server is shutting down".into(),
            ));
        }
        if self.calls.len() >= self.max_calls {
            return Err(FederationError::Refused(format!(
                "{} federated calls are up (--sip-max-calls)",
                self.max_calls
            )));
        }
        let Place {
            from,
            name,
            to,
            offer,
            dest,
            transport,
            ..
        } = place;
        let out = Outbound {
            target: format!("sip:{}@{}", to.user, to.domain),
            from: from_header(name.as_deref(), &from),
            dest,
            transport,
            credentials: None,
            headers: Vec::new(),
            offer,
        };
        let call = ua
            .call(now, out)
            .map_err(|e| FederationError::Refused(e.to_string()))?;
        let id = format!("sip-{}", switchboard_util::random_hex(8));
        tracing::info!(%id, %from, %to, via = %dest, transport = transport.as_str(), "SIP federation: call out");
        self.ids.insert(id.clone(), call);
        self.calls.insert(
            call,
            FedCall {
                id: id.clone(),
                role: Role::Caller,
                answered: false,
                rang: false,
                early: None,
                silent: false,
                conn: (transport != Transport::Udp).then_some((transport, dest)),
            },
        );
        Ok(id)
    }

    /// The call `id` if this server is its callee and has not answered it.
    fn callee(&self, id: &str, action: &'static str) -> Result<CallId, FederationError> {
        let call = *self
            .ids
            .get(id)
            .ok_or_else(|| FederationError::UnknownCall(id.to_string()))?;
        match self.calls.get(&call) {
            Some(c) if c.role == Role::Callee && !c.answered => Ok(call),
            Some(_) => Err(FederationError::WrongState {
                id: id.to_string(),
                action,
            }),
            None => Err(FederationError::UnknownCall(id.to_string())),
        }
    }

    fn answer(
        &mut self,
        ua: &mut UserAgent,
        now: Instant,
        id: &str,
        sdp: SessionDescription,
    ) -> Result<(), FederationError> {
        let call = self.callee(id, "answer")?;
        ua.accept(now, call, sdp)
            .map_err(|e| FederationError::Refused(e.to_string()))?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.answered = true;
        }
        Ok(())
    }

    fn hangup(
        &mut self,
        ua: &mut UserAgent,
        now: Instant,
        id: &str,
    ) -> Result<(), FederationError> {
        let call = *self
            .ids
            .get(id)
            .ok_or_else(|| FederationError::UnknownCall(id.to_string()))?;
        let ringing_callee = self
            .calls
            .get(&call)
            .is_some_and(|c| c.role == Role::Callee && !c.answered);
        self.end_by_app(id);
        let r = if ringing_callee {
            // The callee's user hangs up while it rings: that is a decline.
            let (status, reason) = Refusal::Decline.status();
            ua.reject(now, call, status, reason)
        } else {
            // CANCEL before the 200 OK, BYE after it.
            ua.hangup(now, call)
        };
        r.map_err(|e| FederationError::Refused(e.to_string()))
    }

    /// The app ends `id`: no event for it, and no further command.
    fn end_by_app(&mut self, id: &str) {
        if let Some(call) = self.ids.remove(id) {
            if let Some(c) = self.calls.get_mut(&call) {
                c.silent = true;
            }
        }
    }

    /// Ends a call for a reason of ours: a BYE or CANCEL, and `Ended{Failed}` to the glue.
    fn fail(&mut self, ua: &mut UserAgent, now: Instant, call: CallId, why: String) {
        let Some(id) = self.calls.get(&call).map(|c| c.id.clone()) else {
            return;
        };
        tracing::info!(%id, %why, "SIP federation: ending the call");
        self.end_by_app(&id);
        let _ = ua.hangup(now, call);
        self.emit(FederationEvent::Ended {
            id,
            reason: EndReason::Failed(why),
        });
    }

    /// An event of the user agent about one of our calls ([`Self::owns`]); returns the
    /// connection an ended call no longer uses.
    pub fn on_event(
        &mut self,
        ua: &mut UserAgent,
        now: Instant,
        stats: &SipStats,
        event: UaEvent,
    ) -> Option<ConnKey> {
        match event {
            UaEvent::Ringing { call, early, .. } => {
                let c = self.calls.get_mut(&call)?;
                if early.is_some() {
                    c.early = early;
                }
                if c.role == Role::Caller && !c.rang && !c.silent {
                    c.rang = true;
                    let id = c.id.clone();
                    self.emit(FederationEvent::Ringing { id });
                }
            }
            UaEvent::Connected { call, remote } => {
                let c = self.calls.get_mut(&call)?;
                if c.role == Role::Callee || c.answered {
                    // The callee's ACK came (nothing to tell), or a repeated 2xx.
                    return None;
                }
                c.answered = true;
                if c.silent {
                    return None;
                }
                match remote.or_else(|| c.early.take()) {
                    Some(sdp) => {
                        let id = c.id.clone();
                        self.emit(FederationEvent::Accepted {
                            id,
                            sdp_answer: sdp.to_string_crlf(),
                        });
                    }
                    None => self.fail(ua, now, call, "answered without SDP".into()),
                }
            }
            UaEvent::Reoffer { call, .. } => {
                // The browsers' session is settled once; a changed offer mid-call (hold, a
                // new stream) has no browser here to answer it.
                self.fail(
                    ua,
                    now,
                    call,
                    "the far end changed the session (re-INVITE): not supported".into(),
                );
            }
            UaEvent::Ended { call, reason } => {
                let c = self.calls.remove(&call)?;
                self.ids.remove(&c.id);
                stats.calls_ended.fetch_add(1, Ordering::Relaxed);
                tracing::info!(id = %c.id, status = ?reason.status, reason = %reason.reason, by = ?reason.by, "SIP federation: call ended");
                if !c.silent {
                    self.emit(FederationEvent::Ended {
                        id: c.id,
                        reason: EndReason::from_sip(&reason),
                    });
                }
                return c.conn;
            }
            UaEvent::Dtmf { .. } | UaEvent::ReofferAnswered { .. } => {}
            UaEvent::Registration { .. } | UaEvent::IncomingCall { .. } => {}
        }
        None
    }
}

/// The call an event of the user agent is about.
pub(in crate::sip) fn call_of(event: &UaEvent) -> Option<CallId> {
    match event {
        UaEvent::Ringing { call, .. }
        | UaEvent::Connected { call, .. }
        | UaEvent::Reoffer { call, .. }
        | UaEvent::ReofferAnswered { call, .. }
        | UaEvent::Dtmf { call, .. }
        | UaEvent::Ended { call, .. } => Some(*call),
        UaEvent::Registration { .. } | UaEvent::IncomingCall { .. } => None,
    }
}

/// The From header of a call out: `"Ada" <sip:ada@a.test>`. The display name is a quoted
/// string (RFC 3261 §25.1): control characters dropped, `"` and `\` escaped, at most 64
/// characters.
fn from_header(name: Option<&str>, from: &switchboard_calls::Address) -> String {
    let uri = format!("<sip:{}@{}>", from.user, from.domain);
    let name: String = name
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if name.is_empty() {
        return uri;
    }
    let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{quoted}\" {uri}")
}
