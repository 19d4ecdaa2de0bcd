//! The state of one call, both directions: the dialog, what is being retransmitted by the
//! user agent itself (our 2xx until its ACK, a reliable 180 until its PRACK), the session
//! timer, and the offer/answer exchanges in flight. Its timers are all here so that
//! [`Call::next_wake`] sees every one; the user agent runs them in `call_timers`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{CallId, UserAgent};
use crate::dialog::reliable::RSeqCounter;
use crate::dialog::{Dialog, SessionTimer, TimerAction};
use crate::message::Message;
use crate::sdp::SessionDescription;
use crate::transaction::{Transport, TxId};

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Inbound, not answered yet (IncomingCall sent, maybe ringing).
    Offered,
    /// Outbound, no final answer yet.
    Calling,
    /// Inbound, our 2xx sent, waiting for its ACK.
    Answered,
    Connected,
}

/// A response the user agent retransmits itself (T1 doubling up to T2) until `deadline`.
#[derive(Debug, Clone)]
pub(super) struct Retransmitted {
    pub response: Message<'static>,
    /// The CSeq of the INVITE it answers (2xx) or the RSeq it carries (reliable 1xx).
    pub seq: u32,
    pub next: Instant,
    pub interval: Duration,
    pub deadline: Instant,
}

/// The peer's re-INVITE or UPDATE whose offer the binary answers.
#[derive(Debug, Clone)]
pub(super) struct PeerOffer {
    pub tx: TxId,
    pub request: Message<'static>,
}

/// What only an outbound call has.
#[derive(Debug, Clone)]
pub(super) struct OutCall {
    /// The live INVITE client transaction.
    pub invite_tx: TxId,
    /// Hung up before any provisional answer: CANCEL when one comes.
    pub cancel_pending: bool,
    /// CANCEL sent: the INVITE's final answer ends the call as ours.
    pub cancelled: bool,
    /// Give up waiting for the 487 after a CANCEL.
    pub cancel_deadline: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Call {
    pub phase: Phase,
    pub sip_call_id: String,
    pub local_tag: String,
    /// Where in-dialog requests and our responses go.
    pub peer: SocketAddr,
    pub transport: Transport,
    pub dialog: Option<Dialog>,
    /// Inbound: the INVITE and its server transaction, until answered.
    pub invite: Option<(TxId, Message<'static>)>,
    /// Inbound: the unanswered INVITE is answered 408 then.
    pub offer_deadline: Option<Instant>,
    /// Inbound: a 180 sent reliably (100rel), until its PRACK.
    pub reliable: Option<Retransmitted>,
    pub rseq: RSeqCounter,
    /// Our 2xx to an INVITE (initial or re-INVITE) until its ACK.
    pub pending_2xx: Option<Retransmitted>,
    /// Inbound: the Session-Expires value for our 2xx and whether we refresh.
    pub negotiated_timer: Option<(String, bool)>,
    pub out: Option<OutCall>,
    pub timer: Option<SessionTimer>,
    /// The peer accepts UPDATE (its Allow): session refreshes use it.
    pub peer_update: bool,
    /// Our last SDP (offer or answer): session refreshes by re-INVITE resend it.
    pub last_sdp: Option<SessionDescription>,
    pub peer_offer: Option<PeerOffer>,
    /// Our re-INVITE or refresh in flight (one offer/answer at a time).
    pub our_invite: Option<TxId>,
    /// The `o=` line of the peer's last SDP: an offer with the same one is unchanged (RFC
    /// 3264 §8: a session refresh) and is answered with our last SDP without asking.
    pub remote_origin: Option<crate::sdp::Origin>,
    /// The offer of our re-INVITE in flight (becomes `last_sdp` when answered 2xx).
    pub pending_offer: Option<SessionDescription>,
}

impl Call {
    pub fn new(sip_call_id: String, local_tag: String, peer: SocketAddr, t: Transport) -> Call {
        Call {
            phase: Phase::Offered,
            sip_call_id,
            local_tag,
            peer,
            transport: t,
            dialog: None,
            invite: None,
            offer_deadline: None,
            reliable: None,
            rseq: RSeqCounter::new(random_u31()),
            pending_2xx: None,
            negotiated_timer: None,
            out: None,
            timer: None,
            peer_update: false,
            last_sdp: None,
            peer_offer: None,
            our_invite: None,
            pending_offer: None,
            remote_origin: None,
        }
    }

    pub fn next_wake(&self) -> Option<Instant> {
        let retransmit = |r: &Retransmitted| r.next.min(r.deadline);
        [
            self.offer_deadline,
            self.reliable.as_ref().map(retransmit),
            self.pending_2xx.as_ref().map(retransmit),
            self.out.as_ref().and_then(|o| o.cancel_deadline),
            self.timer
                .as_ref()
                .filter(|_| self.phase == Phase::Connected)
                .and_then(SessionTimer::next_action_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Moves a retransmission on: `Some(response)` to send again when due.
fn step(r: &mut Retransmitted, now: Instant, t2: Duration) -> Option<Message<'static>> {
    if r.next > now {
        return None;
    }
    r.interval = r.interval.saturating_mul(2).min(t2);
    r.next = now + r.interval;
    Some(r.response.clone())
}

impl UserAgent {
    pub(super) fn call_timers(&mut self, now: Instant, id: CallId) {
        let t2 = self.cfg.tx.t2;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.offer_deadline.is_some_and(|at| at <= now) {
            c.offer_deadline = None;
            if let Some((tx, invite)) = c.invite.take() {
                let r = super::build::response(
                    &self.cfg.user_agent,
                    &invite,
                    408,
                    "Request Timeout",
                    &c.local_tag,
                );
                self.send_response(now, tx, r);
            }
            self.end_call(id, Some(408), "Request Timeout", super::EndedBy::Timeout);
            return;
        }
        if let Some(out) = &mut c.out {
            if out.cancel_deadline.is_some_and(|at| at <= now) {
                self.end_call(id, Some(487), "Request Terminated", super::EndedBy::Local);
                return;
            }
        }
        let (peer, transport) = (c.peer, c.transport);
        if let Some(r) = &mut c.reliable {
            if r.deadline <= now {
                // No PRACK (RFC 3262 §3): the INVITE fails.
                c.reliable = None;
                if let Some((tx, invite)) = c.invite.take() {
                    let r = super::build::response(
                        &self.cfg.user_agent,
                        &invite,
                        504,
                        "Server Time-out",
                        &c.local_tag,
                    );
                    self.send_response(now, tx, r);
                }
                self.end_call(id, Some(504), "No PRACK", super::EndedBy::Timeout);
                return;
            }
            if let (Some(resp), Some((tx, _))) = (step(r, now, t2), &c.invite) {
                let tx = *tx;
                let _ = self.tx.respond(now, tx, resp);
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if let Some(r) = &mut c.pending_2xx {
            if r.deadline <= now {
                c.pending_2xx = None;
                self.bye_and_end(now, id, None, "No ACK", super::EndedBy::Timeout);
                return;
            }
            if let Some(resp) = step(r, now, t2) {
                self.tx.send_stateless(&resp, peer, transport);
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.phase != Phase::Connected {
            return;
        }
        match c.timer.as_mut().and_then(|t| t.handle_timeout(now)) {
            Some(TimerAction::Refresh) => self.refresh_session(now, id),
            Some(TimerAction::Expire) => {
                self.bye_and_end(now, id, None, "Session expired", super::EndedBy::Timeout)
            }
            None => {}
        }
    }
}

/// A random number in 1..2^31 (RSeq and CSeq starting points).
pub(super) fn random_u31() -> u32 {
    u32::from_str_radix(&switchboard_util::random_hex(4), 16).unwrap_or(1) >> 1 | 1
}
