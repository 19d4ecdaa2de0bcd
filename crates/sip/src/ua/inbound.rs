//! Requests that arrive: out-of-dialog ones answered here (INVITE → a new inbound call after
//! the checks, OPTIONS → 200, REGISTER and the rest → 405, in-dialog methods for no known
//! dialog → 481), in-dialog ones handed to `in_dialog.rs`, and the inbound call's answers
//! ([`UserAgent::ring`], [`UserAgent::accept`], [`UserAgent::reject`]), CANCEL and ACK.
//!
//! Inbound authentication uses the stateless [`NonceIssuer`](crate::digest::NonceIssuer):
//! a challenge costs no memory, so an unauthenticated flood keeps nothing.

use std::net::SocketAddr;
use std::time::Instant;

use super::build::{new_tag, sdp_of, set_sdp, ALLOW, SUPPORTED};
use super::call::{random_u31, Call, Phase, Retransmitted};
use super::{CallId, EndedBy, Owner, UaError, UaEvent, UserAgent, MIN_SE};
use crate::dialog::{negotiate, Dialog, DialogState, Negotiation, SessionTimer};
use crate::digest::{Credentials, DigestError, Secret};
use crate::message::{Message, Method};
use crate::sdp::SessionDescription;
use crate::transaction::{Transport, TxId};
use crate::uri::Uri;

/// What the digest check of an INVITE decided.
enum AuthOutcome {
    Accepted,
    Challenge { stale: bool },
    Forbidden,
}

impl UserAgent {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        tx: TxId,
        request: Message<'static>,
        source: SocketAddr,
        transport: Transport,
    ) {
        let Message::Request(req) = &request else {
            return;
        };
        let h = &req.headers;
        let to_tag = h.to().ok().and_then(|t| t.tag().map(str::to_owned));
        if let (Some(tag), Ok(call_id)) = (to_tag, h.call_id()) {
            match self.dialogs.get(&(call_id.to_owned(), tag)).copied() {
                Some(call) => self.on_dialog_request(now, call, tx, request),
                None => self.answer(now, tx, &request, 481, "Call/Transaction Does Not Exist"),
            }
            return;
        }
        if h.max_forwards().ok().flatten() == Some(0) {
            self.answer(now, tx, &request, 483, "Too Many Hops");
            return;
        }
        match req.method {
            Method::Invite => self.on_invite(now, tx, request, source, transport),
            Method::Options => {
                let mut r = self.response(&request, 200, "OK", &new_tag());
                let h = r.headers_mut();
                h.push("Allow", ALLOW);
                h.push("Accept", "application/sdp");
                h.push("Supported", SUPPORTED);
                self.send_response(now, tx, r);
            }
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.answer(now, tx, &request, 481, "Call/Transaction Does Not Exist")
            }
            _ => {
                let mut r = self.response(&request, 405, "Method Not Allowed", &new_tag());
                r.headers_mut().push("Allow", ALLOW);
                self.send_response(now, tx, r);
            }
        }
    }

    fn on_invite(
        &mut self,
        now: Instant,
        tx: TxId,
        request: Message<'static>,
        source: SocketAddr,
        transport: Transport,
    ) {
        let h = request.headers();
        let unsupported: Vec<&str> = h
            .require()
            .into_iter()
            .filter(|t| !t.eq_ignore_ascii_case("timer") && !t.eq_ignore_ascii_case("100rel"))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            let mut r = self.response(&request, 420, "Bad Extension", &new_tag());
            r.headers_mut().push("Unsupported", list);
            self.send_response(now, tx, r);
            return;
        }
        match self.check_auth(now, &request) {
            AuthOutcome::Accepted => {}
            AuthOutcome::Forbidden => {
                self.answer(now, tx, &request, 403, "Forbidden");
                return;
            }
            AuthOutcome::Challenge { stale } => {
                let unix = self.unix_at(now);
                let Some(issuer) = &self.issuer else {
                    return;
                };
                let challenge = issuer.challenge(unix, &switchboard_util::random_hex(8), stale);
                let mut r = self.response(&request, 401, "Unauthorized", &new_tag());
                r.headers_mut()
                    .push("WWW-Authenticate", challenge.to_header_value());
                self.send_response(now, tx, r);
                return;
            }
        }
        let Ok(offer) = sdp_of(&request) else {
            self.answer(now, tx, &request, 400, "Bad Request (SDP)");
            return;
        };
        let negotiated = match negotiate(&request, MIN_SE) {
            Ok(Negotiation::None) => None,
            Ok(Negotiation::Accept { header, we_refresh }) => Some((header, we_refresh)),
            Ok(Negotiation::TooSmall(min)) => {
                let mut r = self.response(&request, 422, "Session Interval Too Small", &new_tag());
                r.headers_mut().push("Min-SE", min.to_string());
                self.send_response(now, tx, r);
                return;
            }
            Err(_) => {
                self.answer(now, tx, &request, 400, "Bad Request (Session-Expires)");
                return;
            }
        };
        let local_tag = new_tag();
        let contact = self.contact("gw", transport);
        let Ok(mut dialog) = Dialog::uas(&request, &local_tag, contact, random_u31(), false) else {
            self.answer(now, tx, &request, 400, "Bad Request (Contact)");
            return;
        };
        dialog.state = DialogState::Early;
        let Message::Request(req) = &request else {
            return;
        };
        let event_from = req.headers.from().ok().map(|f| {
            (
                f.uri.to_string(),
                f.display.as_ref().map(ToString::to_string),
            )
        });
        let Some((from, from_display)) = event_from else {
            return;
        };
        let to_user = req.uri.user_unescaped().map(|u| u.into_owned());
        let to_host = req.uri.host.to_string();
        let peer_update = req.headers.allow().contains(&Method::Update);
        let id = CallId(self.next_id());
        let mut call = Call::new(
            dialog.id.call_id.clone(),
            local_tag.clone(),
            source,
            transport,
        );
        call.dialog = Some(dialog);
        call.peer_update = peer_update;
        call.negotiated_timer = negotiated;
        call.offer_deadline = Some(now + self.cfg.tx.timer_c);
        call.invite = Some((tx, request.clone()));
        call.remote_origin = offer.as_ref().map(|o| o.origin.clone());
        self.dialogs
            .insert((call.sip_call_id.clone(), local_tag), id);
        self.owners.insert(tx, Owner::Invite(id));
        self.calls.insert(id, call);
        self.events.push_back(UaEvent::IncomingCall {
            call: id,
            from,
            from_display,
            to_user,
            to_host,
            offer,
            source,
            transport,
        });
    }

    fn check_auth(&self, now: Instant, request: &Message<'_>) -> AuthOutcome {
        let (Some(auth), Some(issuer), Message::Request(req)) =
            (&self.cfg.inbound_auth, &self.issuer, request)
        else {
            return AuthOutcome::Accepted;
        };
        let unix = self.unix_at(now);
        let mut stale = false;
        for value in req.headers.authorization() {
            let Ok(creds) = Credentials::parse(value) else {
                continue;
            };
            if creds.realm != auth.realm {
                continue;
            }
            let Some((_, password)) = auth.users.iter().find(|(u, _)| *u == creds.username) else {
                return AuthOutcome::Forbidden;
            };
            let uri_matches = Uri::parse(&creds.uri).is_ok_and(|u| u == req.uri);
            if !uri_matches {
                return AuthOutcome::Forbidden;
            }
            match issuer.verify(
                &creds,
                "INVITE",
                &req.body,
                Secret::Password(password),
                unix,
            ) {
                Ok(()) => return AuthOutcome::Accepted,
                Err(DigestError::Stale) => stale = true,
                // Not our nonce (a restart, another realm's): ask again.
                Err(DigestError::BadNonce) => {}
                Err(_) => return AuthOutcome::Forbidden,
            }
        }
        AuthOutcome::Challenge { stale }
    }

    /// Sends `180 Ringing` for an inbound call (reliably, with RSeq, when the INVITE
    /// requires 100rel).
    pub fn ring(&mut self, now: Instant, call: CallId) -> Result<(), UaError> {
        let now = self.clock(now);
        let t1 = self.cfg.tx.t1;
        let contact = self.contact("gw", Transport::Udp);
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        let (Phase::Offered, Some((tx, invite))) = (c.phase, &c.invite) else {
            return Err(UaError::WrongState);
        };
        let tx = *tx;
        let reliable = invite.headers().has_token("Require", "100rel");
        let local_contact = c
            .dialog
            .as_ref()
            .map_or(contact, |d| d.local_contact.clone());
        let tag = c.local_tag.clone();
        let mut r = super::build::response(&self.cfg.user_agent, invite, 180, "Ringing", &tag);
        super::build::copy_record_route(invite, &mut r);
        r.headers_mut().push("Contact", local_contact.to_string());
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        if reliable && c.reliable.is_none() {
            let rseq = c.rseq.next_rseq();
            let h = r.headers_mut();
            h.push("Require", "100rel");
            h.push("RSeq", rseq.to_string());
            c.reliable = Some(Retransmitted {
                response: r.clone(),
                seq: rseq,
                next: now + t1,
                interval: t1,
                deadline: now + t1.saturating_mul(64),
            });
        }
        self.tx.respond(now, tx, r)?;
        Ok(())
    }

    /// Answers an inbound call `200 OK` with `answer`; the 2xx is retransmitted until its
    /// ACK ([`UaEvent::Connected`]), and without one the call ends after `ack_timeout`.
    pub fn accept(
        &mut self,
        now: Instant,
        call: CallId,
        answer: SessionDescription,
    ) -> Result<(), UaError> {
        let now = self.clock(now);
        let (t1, ack_timeout) = (self.cfg.tx.t1, self.cfg.ack_timeout);
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall)?;
        let (Phase::Offered, Some((tx, invite))) = (c.phase, &c.invite) else {
            return Err(UaError::WrongState);
        };
        let tx = *tx;
        let mut r = self.response(invite, 200, "OK", &c.local_tag);
        super::build::copy_record_route(invite, &mut r);
        let invite_seq = invite.headers().cseq().map(|s| s.seq).unwrap_or(0);
        let peer_timer = invite.headers().has_token("Supported", "timer")
            || invite.headers().has_token("Require", "timer");
        let h = r.headers_mut();
        if let Some(d) = &c.dialog {
            h.push("Contact", d.local_contact.to_string());
        }
        h.push("Allow", ALLOW);
        h.push("Supported", SUPPORTED);
        if let Some((se, _)) = &c.negotiated_timer {
            h.push("Session-Expires", se.clone());
            if peer_timer {
                h.push("Require", "timer");
            }
        }
        set_sdp(&mut r, &answer);
        self.tx.respond(now, tx, r.clone())?;
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        c.invite = None;
        c.offer_deadline = None;
        c.reliable = None;
        c.phase = Phase::Answered;
        c.last_sdp = Some(answer);
        if let Some(d) = &mut c.dialog {
            d.state = DialogState::Confirmed;
        }
        c.pending_2xx = Some(Retransmitted {
            response: r,
            seq: invite_seq,
            next: now + t1,
            interval: t1,
            deadline: now + ack_timeout,
        });
        Ok(())
    }

    /// Refuses an inbound call with a final status (300..=699).
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
    ) -> Result<(), UaError> {
        let now = self.clock(now);
        if !(300..=699).contains(&status) {
            return Err(UaError::WrongState);
        }
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        if c.phase != Phase::Offered {
            return Err(UaError::WrongState);
        }
        if let Some((tx, invite)) = c.invite.take() {
            let r =
                super::build::response(&self.cfg.user_agent, &invite, status, reason, &c.local_tag);
            self.send_response(now, tx, r);
        }
        self.end_call(call, Some(status), reason, EndedBy::Local);
        Ok(())
    }

    /// The peer cancelled an INVITE (the CANCEL is answered by the transaction layer).
    pub(super) fn on_cancelled(&mut self, now: Instant, invite: TxId) {
        let Some(Owner::Invite(call)) = self.owners.get(&invite).copied() else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.phase != Phase::Offered {
            return;
        }
        if let Some((tx, request)) = c.invite.take() {
            let r = super::build::response(
                &self.cfg.user_agent,
                &request,
                487,
                "Request Terminated",
                &c.local_tag,
            );
            self.send_response(now, tx, r);
        }
        self.end_call(call, Some(487), "Request Terminated", EndedBy::Remote);
    }

    /// An ACK for a 2xx (ours to an INVITE or re-INVITE).
    pub(super) fn on_ack(&mut self, now: Instant, ack: &Message<'_>) {
        let h = ack.headers();
        let key = match (h.call_id(), h.to()) {
            (Ok(id), Ok(to)) => match to.tag() {
                Some(tag) => (id.to_owned(), tag.to_owned()),
                None => return,
            },
            _ => return,
        };
        let Some(call) = self.dialogs.get(&key).copied() else {
            return;
        };
        let seq = h.cseq().map(|s| s.seq).ok();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if !c.pending_2xx.as_ref().is_some_and(|p| Some(p.seq) == seq) {
            return;
        }
        c.pending_2xx = None;
        if c.phase != Phase::Answered {
            return;
        }
        c.phase = Phase::Connected;
        if let Some((se, we_refresh)) = &c.negotiated_timer {
            let secs: u64 = se
                .split(';')
                .next()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::from(MIN_SE));
            c.timer = Some(SessionTimer::new(
                std::time::Duration::from_secs(secs.max(1)),
                *we_refresh,
                now,
            ));
        }
        let remote = sdp_of(ack).ok().flatten();
        if let Some(r) = &remote {
            c.remote_origin = Some(r.origin.clone());
        }
        self.events.push_back(UaEvent::Connected { call, remote });
    }
}
