//! Inside a call: the peer's requests (BYE, re-INVITE and UPDATE with or without an offer,
//! INFO with DTMF, PRACK, OPTIONS), ours ([`UserAgent::hangup`], [`UserAgent::reoffer`],
//! [`UserAgent::answer_reoffer`], [`UserAgent::send_dtmf_info`]), and session-timer
//! refreshes (RFC 4028: UPDATE when the peer allows it, else a re-INVITE with our last SDP,
//! unchanged so that its `o=` version stays).
//!
//! One offer/answer exchange at a time per call (RFC 3261 §14.1): a peer's offer while one
//! is in flight is answered 491. A 408 or 481 to a request inside the call means the
//! dialog is gone (RFC 5057): the call ends.

use std::time::{Duration, Instant};

use super::build::{sdp_of, set_sdp, status_of, ALLOW, SUPPORTED};
use super::call::{PeerOffer, Phase, Retransmitted};
use super::{CallId, EndedBy, Owner, UaError, UaEvent, UserAgent, MIN_SE};
use crate::dialog::{negotiate, DialogError, Negotiation, SessionTimer};
use crate::message::{Message, Method};
use crate::sdp::SessionDescription;
use crate::transaction::TxId;

impl UserAgent {
    pub(super) fn on_dialog_request(
        &mut self,
        now: Instant,
        call: CallId,
        tx: TxId,
        request: Message<'static>,
    ) {
        let Message::Request(req) = &request else {
            return;
        };
        let method = req.method.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let tag = c.local_tag.clone();
        let Some(dialog) = c.dialog.as_mut() else {
            // Outbound and not answered yet: no dialog is ours until the 2xx.
            let r = self.response(&request, 481, "Call/Transaction Does Not Exist", &tag);
            self.send_response(now, tx, r);
            return;
        };
        if let Err(e) = dialog.on_request(&request) {
            let (status, reason) = match e {
                DialogError::CSeqOutOfOrder { .. } => (500, "CSeq Out Of Order"),
                _ => (400, "Bad Request"),
            };
            let r = self.response(&request, status, reason, &tag);
            self.send_response(now, tx, r);
            return;
        }
        match method {
            Method::Bye => {
                let r = self.response(&request, 200, "OK", &tag);
                self.send_response(now, tx, r);
                // A BYE before our answer (early dialog) ends the INVITE too.
                if let Some((itx, invite)) = self.calls.get_mut(&call).and_then(|c| c.invite.take())
                {
                    let r = self.response(&invite, 487, "Request Terminated", &tag);
                    self.send_response(now, itx, r);
                }
                self.end_call(call, None, "BYE", EndedBy::Remote);
            }
            Method::Invite | Method::Update => self.on_peer_offer(now, call, tx, request),
            Method::Info => self.on_info(now, call, tx, &request),
            Method::Prack => {
                let rack = request.headers().rack().ok().flatten().map(|r| r.rseq);
                let c = self.calls.get_mut(&call);
                let matched = c.is_some_and(|c| {
                    let hit = c.reliable.as_ref().is_some_and(|r| Some(r.seq) == rack);
                    if hit {
                        c.reliable = None;
                    }
                    hit
                });
                let (status, reason) = if matched {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                let r = self.response(&request, status, reason, &tag);
                self.send_response(now, tx, r);
            }
            Method::Options => {
                let mut r = self.response(&request, 200, "OK", &tag);
                r.headers_mut().push("Allow", ALLOW);
                self.send_response(now, tx, r);
            }
            _ => {
                let mut r = self.response(&request, 405, "Method Not Allowed", &tag);
                r.headers_mut().push("Allow", ALLOW);
                self.send_response(now, tx, r);
            }
        }
    }

    fn on_peer_offer(&mut self, now: Instant, call: CallId, tx: TxId, request: Message<'static>) {
        let invite = matches!(&request, Message::Request(r) if r.method == Method::Invite);
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let tag = c.local_tag.clone();
        let busy = c.our_invite.is_some() || c.peer_offer.is_some() || c.pending_2xx.is_some();
        if c.phase != Phase::Connected || (busy && (invite || !request.body().is_empty())) {
            let mut r = self.response(&request, 491, "Request Pending", &tag);
            r.headers_mut().push("Retry-After", "1");
            self.send_response(now, tx, r);
            return;
        }
        match negotiate(&request, MIN_SE) {
            Ok(Negotiation::TooSmall(min)) => {
                let mut r = self.response(&request, 422, "Session Interval Too Small", &tag);
                r.headers_mut().push("Min-SE", min.to_string());
                self.send_response(now, tx, r);
                return;
            }
            Ok(Negotiation::Accept { header, we_refresh }) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.negotiated_timer = Some((header, we_refresh));
                }
            }
            Ok(Negotiation::None) => {}
            Err(_) => {
                let r = self.response(&request, 400, "Bad Request (Session-Expires)", &tag);
                self.send_response(now, tx, r);
                return;
            }
        }
        match sdp_of(&request) {
            Err(()) => {
                let r = self.response(&request, 488, "Not Acceptable Here", &tag);
                self.send_response(now, tx, r);
            }
            Ok(Some(offer)) => {
                let Some(c) = self.calls.get_mut(&call) else {
                    return;
                };
                if c.remote_origin.as_ref() == Some(&offer.origin) && c.last_sdp.is_some() {
                    let last = c.last_sdp.clone();
                    self.answer_peer_offer(now, call, tx, &request, last.as_ref());
                    return;
                }
                c.remote_origin = Some(offer.origin.clone());
                c.peer_offer = Some(PeerOffer { tx, request });
                self.events.push_back(UaEvent::Reoffer { call, offer });
            }
            Ok(None) => {
                // A session refresh (or a re-INVITE asking for our offer: the last one).
                let sdp = if invite {
                    self.calls.get(&call).and_then(|c| c.last_sdp.clone())
                } else {
                    None
                };
                self.answer_peer_offer(now, call, tx, &request, sdp.as_ref());
            }
        }
    }

    /// The 2xx to a peer's re-INVITE or UPDATE; restarts the session timer.
    fn answer_peer_offer(
        &mut self,
        now: Instant,
        call: CallId,
        tx: TxId,
        request: &Message<'_>,
        sdp: Option<&SessionDescription>,
    ) {
        let (t1, ack_timeout) = (self.cfg.tx.t1, self.cfg.ack_timeout);
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let mut r = self.response(request, 200, "OK", &c.local_tag);
        let h = r.headers_mut();
        if let Some(d) = &c.dialog {
            h.push("Contact", d.local_contact.to_string());
        }
        h.push("Allow", ALLOW);
        h.push("Supported", SUPPORTED);
        let asked_timer = request.headers().session_expires().ok().flatten().is_some();
        if let (true, Some((se, _))) = (asked_timer, &c.negotiated_timer) {
            h.push("Session-Expires", se.clone());
            h.push("Require", "timer");
        }
        if let Some(sdp) = sdp {
            set_sdp(&mut r, sdp);
        }
        self.send_response(now, tx, r.clone());
        let invite = matches!(request, Message::Request(q) if q.method == Method::Invite);
        let seq = request.headers().cseq().map(|s| s.seq).unwrap_or(0);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if invite {
            c.pending_2xx = Some(Retransmitted {
                response: r,
                seq,
                next: now + t1,
                interval: t1,
                deadline: now + ack_timeout,
            });
        }
        match (&c.negotiated_timer, asked_timer, &mut c.timer) {
            (Some((se, we_refresh)), true, _) => {
                let secs = se
                    .split(';')
                    .next()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(u64::from(MIN_SE));
                c.timer = Some(SessionTimer::new(
                    Duration::from_secs(secs.max(1)),
                    *we_refresh,
                    now,
                ));
            }
            (_, _, Some(t)) => t.refreshed(now),
            _ => {}
        }
    }

    /// Answers the peer's re-INVITE/UPDATE offer ([`UaEvent::Reoffer`]) with `answer`.
    pub fn answer_reoffer(
        &mut self,
        now: Instant,
        call: CallId,
        answer: SessionDescription,
    ) -> Result<(), UaError> {
        let now = self.clock(now);
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        let offer = c.peer_offer.take().ok_or(UaError::WrongState)?;
        c.last_sdp = Some(answer.clone());
        self.answer_peer_offer(now, call, offer.tx, &offer.request, Some(&answer));
        Ok(())
    }

    fn on_info(&mut self, now: Instant, call: CallId, tx: TxId, request: &Message<'_>) {
        let Some(tag) = self.calls.get(&call).map(|c| c.local_tag.clone()) else {
            return;
        };
        let body = String::from_utf8_lossy(request.body()).into_owned();
        let ctype = request
            .headers()
            .content_type()
            .map(str::to_ascii_lowercase);
        let digit = match ctype.as_deref() {
            _ if body.trim().is_empty() => Ok(None),
            Some("application/dtmf-relay") => Ok(dtmf_relay(&body)),
            Some("application/dtmf") => Ok(digit_of(body.trim()).map(|d| (d, 250))),
            _ => Err(()),
        };
        match digit {
            Ok(d) => {
                let r = self.response(request, 200, "OK", &tag);
                self.send_response(now, tx, r);
                if let Some((digit, duration_ms)) = d {
                    self.events.push_back(UaEvent::Dtmf {
                        call,
                        digit,
                        duration_ms,
                    });
                }
            }
            Err(()) => {
                let mut r = self.response(request, 415, "Unsupported Media Type", &tag);
                r.headers_mut()
                    .push("Accept", "application/dtmf-relay, application/dtmf");
                self.send_response(now, tx, r);
            }
        }
    }

    /// Ends a call: 480 to an unanswered inbound INVITE, CANCEL of an outbound one (sent
    /// when its first provisional answer comes if none came yet; the call ends with the
    /// INVITE's 487), BYE for an answered one.
    pub fn hangup(&mut self, now: Instant, call: CallId) -> Result<(), UaError> {
        let now = self.clock(now);
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        match c.phase {
            Phase::Offered => {
                if let Some((tx, invite)) = c.invite.take() {
                    let r = super::build::response(
                        &self.cfg.user_agent,
                        &invite,
                        480,
                        "Temporarily Unavailable",
                        &c.local_tag,
                    );
                    self.send_response(now, tx, r);
                }
                self.end_call(call, Some(480), "Temporarily Unavailable", EndedBy::Local);
            }
            Phase::Calling => {
                let Some(out) = &c.out else {
                    return Err(UaError::WrongState);
                };
                if !out.cancelled && !out.cancel_pending {
                    let tx = out.invite_tx;
                    self.send_cancel(now, call, tx);
                }
            }
            Phase::Answered | Phase::Connected => {
                self.bye_and_end(now, call, None, "Hung up", EndedBy::Local)
            }
        }
        Ok(())
    }

    /// Sends a BYE (when the call has a dialog) and ends the call.
    pub(super) fn bye_and_end(
        &mut self,
        now: Instant,
        call: CallId,
        status: Option<u16>,
        reason: &str,
        by: EndedBy,
    ) {
        if let Ok(tx) = self.send_in_dialog(now, call, Method::Bye, None, &[]) {
            self.owners.insert(tx, Owner::Ignore);
        }
        self.end_call(call, status, reason, by);
    }

    /// Sends a request inside the call's dialog to the peer.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call: CallId,
        method: Method<'static>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&'static str, String)],
    ) -> Result<TxId, UaError> {
        let transport = self.calls.get(&call).ok_or(UaError::UnknownCall)?.transport;
        let via = self.via(transport);
        let user_agent = self.cfg.user_agent.clone();
        let c = self.calls.get_mut(&call).ok_or(UaError::UnknownCall)?;
        let dialog = c.dialog.as_mut().ok_or(UaError::WrongState)?;
        let mut m = dialog.request(method, &via);
        let h = m.headers_mut();
        for (name, value) in headers {
            h.push(*name, value.clone());
        }
        h.push("User-Agent", user_agent);
        if let Some((ctype, bytes)) = body {
            h.push("Content-Type", ctype.to_owned());
            m.set_body(bytes);
        }
        let (peer, transport) = (c.peer, c.transport);
        Ok(self.tx.send_request(now, m, peer, transport)?)
    }

    /// Sends a re-INVITE with a new offer (hold, resume, codec change); the answer comes
    /// as [`UaEvent::ReofferAnswered`].
    pub fn reoffer(
        &mut self,
        now: Instant,
        call: CallId,
        offer: SessionDescription,
    ) -> Result<(), UaError> {
        let now = self.clock(now);
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall)?;
        if c.phase != Phase::Connected {
            return Err(UaError::WrongState);
        }
        if c.our_invite.is_some() || c.peer_offer.is_some() || c.pending_2xx.is_some() {
            return Err(UaError::Busy);
        }
        let headers = [
            ("Allow", ALLOW.to_owned()),
            ("Supported", SUPPORTED.to_owned()),
        ];
        let body = Some(("application/sdp", offer.to_string_crlf().into_bytes()));
        let tx = self.send_in_dialog(now, call, Method::Invite, body, &headers)?;
        self.owners.insert(tx, Owner::Reoffer(call));
        if let Some(c) = self.calls.get_mut(&call) {
            c.our_invite = Some(tx);
            c.pending_offer = Some(offer);
        }
        Ok(())
    }

    /// Sends a DTMF digit as SIP INFO (`application/dtmf-relay`).
    pub fn send_dtmf_info(
        &mut self,
        now: Instant,
        call: CallId,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), UaError> {
        let now = self.clock(now);
        if digit_of(&digit.to_string()).is_none() {
            return Err(UaError::BadDigit(digit));
        }
        let c = self.calls.get(&call).ok_or(UaError::UnknownCall)?;
        if c.phase != Phase::Connected {
            return Err(UaError::WrongState);
        }
        let body = format!("Signal={digit}\r\nDuration={duration_ms}\r\n").into_bytes();
        let tx = self.send_in_dialog(
            now,
            call,
            Method::Info,
            Some(("application/dtmf-relay", body)),
            &[],
        )?;
        self.owners.insert(tx, Owner::Ignore);
        Ok(())
    }

    /// Our session refresh (we are the refresher and half the interval passed).
    pub(super) fn refresh_session(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        // An exchange in flight refreshes the session when it succeeds.
        if c.our_invite.is_some() || c.peer_offer.is_some() || c.pending_2xx.is_some() {
            return;
        }
        let Some(timer) = c.timer else {
            return;
        };
        let mut headers = vec![
            (
                "Session-Expires",
                format!("{};refresher=uac", timer.interval.as_secs()),
            ),
            ("Supported", SUPPORTED.to_owned()),
        ];
        let (method, body) = if c.peer_update {
            (Method::Update, None)
        } else {
            headers.push(("Allow", ALLOW.to_owned()));
            let body = c
                .last_sdp
                .as_ref()
                .map(|s| ("application/sdp", s.to_string_crlf().into_bytes()));
            (Method::Invite, body)
        };
        let invite = method == Method::Invite;
        match self.send_in_dialog(now, call, method, body, &headers) {
            Ok(tx) => {
                self.owners.insert(tx, Owner::Refresh(call));
                if invite {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.our_invite = Some(tx);
                    }
                }
            }
            Err(_) => self.bye_and_end(now, call, None, "Refresh failed", EndedBy::Error),
        }
    }

    /// ACKs a 2xx to our re-INVITE (again for a retransmission of it).
    fn ack_reinvite(&mut self, call: CallId, response: &Message<'_>) {
        let seq = response.headers().cseq().map(|s| s.seq).unwrap_or(0);
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let via = self.via(c.transport);
        if let Some(d) = &c.dialog {
            let ack = d.ack(seq, &via);
            self.tx.send_stateless(&ack, c.peer, c.transport);
        }
    }

    pub(super) fn on_reoffer_response(
        &mut self,
        now: Instant,
        call: CallId,
        tx: TxId,
        response: &Message<'_>,
    ) {
        let status = status_of(response);
        if status < 200 {
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.our_invite != Some(tx) {
            // A retransmitted 2xx: ACK it again.
            if (200..300).contains(&status) {
                self.ack_reinvite(call, response);
            }
            return;
        }
        c.our_invite = None;
        let offer = c.pending_offer.take();
        if (200..300).contains(&status) {
            if let Some(d) = &mut c.dialog {
                let _ = d.on_response(response);
            }
            c.last_sdp = offer.or(c.last_sdp.take());
            if let Some(t) = &mut c.timer {
                t.refreshed(now);
            }
            self.ack_reinvite(call, response);
        } else {
            self.owners.remove(&tx);
        }
        let answer = sdp_of(response).ok().flatten();
        if let (Some(a), Some(c)) = (&answer, self.calls.get_mut(&call)) {
            c.remote_origin = Some(a.origin.clone());
        }
        self.events.push_back(UaEvent::ReofferAnswered {
            call,
            answer,
            status,
        });
        if matches!(status, 408 | 481) {
            self.bye_and_end(now, call, Some(status), "Dialog gone", EndedBy::Error);
        }
    }

    pub(super) fn on_refresh_response(
        &mut self,
        now: Instant,
        call: CallId,
        tx: TxId,
        response: &Message<'_>,
    ) {
        let status = status_of(response);
        if status < 200 {
            return;
        }
        let invite = response
            .headers()
            .cseq()
            .is_ok_and(|c| c.method == Method::Invite);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if invite && c.our_invite != Some(tx) {
            if (200..300).contains(&status) {
                self.ack_reinvite(call, response);
            }
            return;
        }
        if invite {
            c.our_invite = None;
        }
        if (200..300).contains(&status) {
            if let Some(d) = &mut c.dialog {
                let _ = d.on_response(response);
            }
            match SessionTimer::from_response(response, true, now) {
                Ok(Some(t)) => c.timer = Some(t),
                _ => {
                    if let Some(t) = &mut c.timer {
                        t.refreshed(now);
                    }
                }
            }
            if invite {
                self.ack_reinvite(call, response);
            }
        } else {
            self.owners.remove(&tx);
            self.bye_and_end(now, call, Some(status), "Refresh failed", EndedBy::Error);
        }
    }
}

/// `Signal=5` / `Duration=160` lines of `application/dtmf-relay`.
fn dtmf_relay(body: &str) -> Option<(char, u32)> {
    let mut digit = None;
    let mut duration = 250;
    for line in body.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "signal" => digit = digit_of(value.trim()),
            "duration" => duration = value.trim().parse().unwrap_or(250),
            _ => {}
        }
    }
    digit.map(|d| (d, duration))
}

/// A DTMF digit as written (`5`, `*`, `#`, `A`) or as its event number (`10` = `*`, …).
fn digit_of(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || "*#ABCDabcd".contains(c) => {
            Some(c.to_ascii_uppercase())
        }
        _ => match s {
            "10" => Some('*'),
            "11" => Some('#'),
            "12" => Some('A'),
            "13" => Some('B'),
            "14" => Some('C'),
            "15" => Some('D'),
            _ => None,
        },
    }
}
