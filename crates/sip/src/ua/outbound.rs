//! Outbound calls: the INVITE ([`UserAgent::call`]), its answers (provisional with PRACK
//! for 100rel, one 401/407 answered with credentials, one 422 answered with the peer's
//! Min-SE, 2xx from one or several forks each ACKed, the first kept and the others sent a
//! BYE), and CANCEL.
//!
//! What a 2xx needs (the INVITE, the ACKs already sent) lives as long as the INVITE's
//! client transaction ([`OutInvite`], keyed by it), not as long as the call: a 2xx
//! retransmitted after the call ended is still ACKed, and a late fork still gets its BYE.

use std::net::SocketAddr;
use std::time::Instant;

use super::build::{new_tag, reason_of, sdp_of, set_sdp, status_of, ALLOW, SUPPORTED};
use super::call::{Call, OutCall, Phase};
use super::{CallId, EndedBy, Outbound, Owner, UaError, UaEvent, UserAgent, MIN_SE};
use crate::dialog::reliable::{PrackTracker, Provisional};
use crate::dialog::{Dialog, SessionTimer};
use crate::digest::{Challenge, DigestRequest};
use crate::message::{Message, Method};
use crate::transaction::{Transport, TxError, TxId};
use crate::uri::{NameAddr, Uri};

/// One INVITE client transaction of an outbound call.
#[derive(Debug)]
pub(super) struct OutInvite {
    pub call: CallId,
    pub request: Message<'static>,
    pub dest: SocketAddr,
    pub transport: Transport,
    /// ACKs sent, by the 2xx's To tag (sent again for a retransmitted 2xx).
    pub acked: Vec<(String, Message<'static>)>,
    /// Early dialogs (for PRACKs), by To tag.
    pub early: Vec<(Dialog, PrackTracker)>,
    pub credentials: Option<(String, String)>,
    pub auth_tried: bool,
    pub se_retried: bool,
}

impl UserAgent {
    /// Starts an outbound call (INVITE with `out.offer`).
    pub fn call(&mut self, now: Instant, out: Outbound) -> Result<CallId, UaError> {
        let now = self.clock(now);
        let uri = Uri::parse(&out.target)
            .map_err(|e| UaError::BadAddress(format!("{}: {e}", out.target)))?
            .into_owned();
        let from = NameAddr::parse(&out.from)
            .map_err(|e| UaError::BadAddress(format!("{}: {e}", out.from)))?
            .into_owned();
        let tag = new_tag();
        let sip_call_id = format!("{}@switchboard", switchboard_util::random_hex(12));
        let mut m = Message::request(Method::Invite, uri.clone());
        let contact = self.contact("gw", out.transport);
        let h = m.headers_mut();
        h.push("Via", self.via(out.transport));
        h.push("Max-Forwards", "70");
        h.push("From", format!("{from};tag={tag}"));
        h.push("To", format!("<{uri}>"));
        h.push("Call-ID", sip_call_id.clone());
        h.push("CSeq", "1 INVITE");
        h.push("Contact", contact.to_string());
        h.push("Allow", ALLOW);
        h.push("Supported", SUPPORTED);
        h.push("User-Agent", self.cfg.user_agent.clone());
        if let Some(se) = self.cfg.session_expires {
            h.push("Session-Expires", se.max(MIN_SE).to_string());
            h.push("Min-SE", MIN_SE.to_string());
        }
        for (name, value) in &out.headers {
            h.push(name.clone(), value.clone());
        }
        set_sdp(&mut m, &out.offer);
        let m = m.into_owned();
        let tx = self
            .tx
            .send_request(now, m.clone(), out.dest, out.transport)?;
        let id = CallId(self.next_id());
        let mut call = Call::new(sip_call_id.clone(), tag.clone(), out.dest, out.transport);
        call.phase = Phase::Calling;
        call.last_sdp = Some(out.offer);
        call.out = Some(OutCall {
            invite_tx: tx,
            cancel_pending: false,
            cancelled: false,
            cancel_deadline: None,
        });
        self.calls.insert(id, call);
        self.dialogs.insert((sip_call_id, tag), id);
        self.owners.insert(tx, Owner::Invite(id));
        self.out_invites.insert(
            tx,
            OutInvite {
                call: id,
                request: m,
                dest: out.dest,
                transport: out.transport,
                acked: Vec::new(),
                early: Vec::new(),
                credentials: out.credentials,
                auth_tried: false,
                se_retried: false,
            },
        );
        Ok(id)
    }

    /// Whether `call` is alive and `tx` is its current INVITE.
    fn live_invite(&self, call: CallId, tx: TxId) -> bool {
        self.calls
            .get(&call)
            .and_then(|c| c.out.as_ref())
            .is_some_and(|o| o.invite_tx == tx)
            && self
                .calls
                .get(&call)
                .is_some_and(|c| c.phase == Phase::Calling)
    }

    pub(super) fn on_invite_response(
        &mut self,
        now: Instant,
        tx: TxId,
        response: Message<'static>,
    ) {
        let Some(call) = self.out_invites.get(&tx).map(|i| i.call) else {
            return;
        };
        let live = self.live_invite(call, tx);
        match status_of(&response) {
            100 => {
                if live {
                    self.cancel_if_pending(now, call);
                }
            }
            101..=199 => {
                if live && !self.cancel_if_pending(now, call) {
                    self.on_provisional(now, tx, call, &response);
                }
            }
            200..=299 => self.on_invite_2xx(now, tx, call, live, &response),
            status => {
                self.owners.remove(&tx);
                let Some(inv) = self.out_invites.remove(&tx) else {
                    return;
                };
                if live {
                    self.on_invite_failure(now, call, inv, status, &response);
                }
            }
        }
    }

    /// Sends the CANCEL asked for before any provisional answer; true when the call is
    /// being cancelled (by this or before).
    fn cancel_if_pending(&mut self, now: Instant, call: CallId) -> bool {
        let Some(out) = self.calls.get(&call).and_then(|c| c.out.as_ref()) else {
            return false;
        };
        if out.cancel_pending {
            let tx = out.invite_tx;
            self.send_cancel(now, call, tx);
        }
        self.calls
            .get(&call)
            .and_then(|c| c.out.as_ref())
            .is_some_and(|o| o.cancelled || o.cancel_pending)
    }

    pub(super) fn send_cancel(&mut self, now: Instant, call: CallId, invite: TxId) {
        let wait = self.cfg.tx.t1.saturating_mul(64);
        let result = self.tx.cancel(now, invite);
        let Some(out) = self.calls.get_mut(&call).and_then(|c| c.out.as_mut()) else {
            return;
        };
        match result {
            Ok(cancel) => {
                out.cancel_pending = false;
                out.cancelled = true;
                out.cancel_deadline = Some(now + wait);
                self.owners.insert(cancel, Owner::Ignore);
            }
            Err(TxError::CancelBeforeProvisional) => out.cancel_pending = true,
            Err(_) => self.end_call(call, None, "Hung up", EndedBy::Local),
        }
    }

    fn on_provisional(&mut self, now: Instant, tx: TxId, call: CallId, response: &Message<'_>) {
        let status = status_of(response);
        let h = response.headers();
        let rseq = h.rseq().ok().flatten();
        let to_tag = h.to().ok().and_then(|t| t.tag().map(str::to_owned));
        if let (true, Some(rseq), Some(tag)) = (h.has_token("Require", "100rel"), rseq, to_tag) {
            let Some(transport) = self.out_invites.get(&tx).map(|i| i.transport) else {
                return;
            };
            let via = self.via(transport);
            let Some(inv) = self.out_invites.get_mut(&tx) else {
                return;
            };
            let seq = inv.request.headers().cseq().map(|c| c.seq).unwrap_or(1);
            let at = match inv.early.iter().position(|(d, _)| d.id.remote_tag == tag) {
                Some(at) => at,
                None => match Dialog::uac(&inv.request, response) {
                    Ok(d) => {
                        inv.early.push((d, PrackTracker::new()));
                        inv.early.len() - 1
                    }
                    Err(_) => return,
                },
            };
            let (dialog, tracker) = &mut inv.early[at];
            let Provisional::Prack(rack) = tracker.on_provisional(rseq, seq, "INVITE") else {
                return;
            };
            let mut prack = dialog.request(Method::Prack, &via);
            prack.headers_mut().push("RAck", rack);
            let (dest, transport) = (inv.dest, inv.transport);
            if let Ok(ptx) = self.tx.send_request(now, prack, dest, transport) {
                self.owners.insert(ptx, Owner::Ignore);
            }
        }
        let early = sdp_of(response).ok().flatten();
        self.events.push_back(UaEvent::Ringing {
            call,
            status,
            early,
        });
    }

    fn on_invite_2xx(
        &mut self,
        now: Instant,
        tx: TxId,
        call: CallId,
        live: bool,
        response: &Message<'_>,
    ) {
        let Some(tag) = response
            .headers()
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned))
        else {
            return;
        };
        let Some(inv) = self.out_invites.get(&tx) else {
            return;
        };
        let (dest, transport) = (inv.dest, inv.transport);
        if let Some((_, ack)) = inv.acked.iter().find(|(t, _)| *t == tag) {
            let ack = ack.clone();
            self.tx.send_stateless(&ack, dest, transport);
            return;
        }
        let Ok(mut dialog) = Dialog::uac(&inv.request, response) else {
            if live {
                self.end_call(call, None, "Malformed 2xx", EndedBy::Error);
            }
            return;
        };
        if let Some((early, _)) = inv.early.iter().find(|(d, _)| d.id.remote_tag == tag) {
            dialog.local_seq = dialog.local_seq.max(early.local_seq);
        }
        let invite_seq = inv.request.headers().cseq().map(|c| c.seq).unwrap_or(1);
        let ack = dialog.ack(invite_seq, &self.via(transport));
        self.tx.send_stateless(&ack, dest, transport);
        if let Some(inv) = self.out_invites.get_mut(&tx) {
            inv.acked.push((tag, ack));
        }
        let cancelled = self
            .calls
            .get(&call)
            .and_then(|c| c.out.as_ref())
            .is_some_and(|o| o.cancelled || o.cancel_pending);
        if !live || cancelled {
            // A second fork, or an answer that crossed our CANCEL: not ours to keep.
            let bye = dialog.request(Method::Bye, &self.via(transport));
            if let Ok(btx) = self.tx.send_request(now, bye, dest, transport) {
                self.owners.insert(btx, Owner::Ignore);
            }
            if live {
                self.end_call(call, None, "Hung up", EndedBy::Local);
            }
            return;
        }
        let timer = SessionTimer::from_response(response, true, now)
            .ok()
            .flatten();
        let peer_update = response.headers().allow().contains(&Method::Update);
        let remote = sdp_of(response).ok().flatten();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.dialog = Some(dialog);
        c.phase = Phase::Connected;
        c.timer = timer;
        c.peer_update = peer_update;
        c.remote_origin = remote.as_ref().map(|r| r.origin.clone());
        if let Some(out) = &mut c.out {
            out.cancel_deadline = None;
        }
        self.events.push_back(UaEvent::Connected { call, remote });
    }

    fn on_invite_failure(
        &mut self,
        now: Instant,
        call: CallId,
        inv: OutInvite,
        status: u16,
        response: &Message<'_>,
    ) {
        let cancelled = self
            .calls
            .get(&call)
            .and_then(|c| c.out.as_ref())
            .is_some_and(|o| o.cancelled || o.cancel_pending);
        if !cancelled {
            if matches!(status, 401 | 407) && !inv.auth_tried && inv.credentials.is_some() {
                if self.retry_with_auth(now, inv, status, response) {
                    return;
                }
            } else if status == 422 && !inv.se_retried {
                if let Ok(Some(min)) = response.headers().min_se() {
                    let mut inv = inv;
                    inv.se_retried = true;
                    let h = inv.request.headers_mut();
                    h.set("Session-Expires", min.to_string());
                    h.set("Min-SE", min.to_string());
                    if self.resend_invite(now, inv) {
                        return;
                    }
                }
            }
        }
        let by = if cancelled {
            EndedBy::Local
        } else {
            EndedBy::Remote
        };
        self.end_call(call, Some(status), &reason_of(response), by);
    }

    fn retry_with_auth(
        &mut self,
        now: Instant,
        mut inv: OutInvite,
        status: u16,
        response: &Message<'_>,
    ) -> bool {
        let (challenge_header, answer_header) = if status == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(challenge) = response
            .headers()
            .get_all(challenge_header)
            .find_map(|v| Challenge::parse(v).ok())
        else {
            return false;
        };
        let Some((user, password)) = inv.credentials.clone() else {
            return false;
        };
        inv.auth_tried = true;
        let Message::Request(req) = &inv.request else {
            return false;
        };
        let uri = req.uri.to_string();
        let creds = challenge.respond(
            &user,
            &password,
            &DigestRequest {
                method: "INVITE",
                uri: &uri,
                body: &req.body,
            },
            &switchboard_util::random_hex(8),
            1,
        );
        inv.request
            .headers_mut()
            .push(answer_header, creds.to_header_value());
        self.resend_invite(now, inv)
    }

    /// Sends the INVITE again on a new transaction: new branch, CSeq + 1 (RFC 3261 §22.2).
    fn resend_invite(&mut self, now: Instant, mut inv: OutInvite) -> bool {
        let via = self.via(inv.transport);
        let seq = inv.request.headers().cseq().map(|c| c.seq).unwrap_or(1);
        let h = inv.request.headers_mut();
        h.set("Via", via);
        h.set("CSeq", format!("{} INVITE", seq.wrapping_add(1)));
        let Ok(tx) = self
            .tx
            .send_request(now, inv.request.clone(), inv.dest, inv.transport)
        else {
            return false;
        };
        let call = inv.call;
        let Some(out) = self.calls.get_mut(&call).and_then(|c| c.out.as_mut()) else {
            return false;
        };
        out.invite_tx = tx;
        inv.acked.clear();
        inv.early.clear();
        self.owners.insert(tx, Owner::Invite(call));
        self.out_invites.insert(tx, inv);
        true
    }
}
