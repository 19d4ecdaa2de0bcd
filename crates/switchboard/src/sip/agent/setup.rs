//! Setting calls up: an INVITE that came in (its room, RTP port, SDP answer, ringing,
//! the media task), a call the app placed (`POST /api/sip/calls`), the far end's answer
//! to ours, and re-offers during a call. The agent's event loop is in `agent.rs`.

use super::{CallEntry, State};
use crate::config::sip::SrtpMode;
use crate::sip::call::{self, call_label, CallCmd, CallSetup};
use crate::sip::dispatch::{room_for, Dispatch};
use crate::sip::dtls_leg::{self, is_dtls_offer, read_answer, DtlsLeg};
use crate::sip::outbound::Target;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard_sip::sdp::{
    Codec, Direction, LocalAudio, SdpError, SdpSession, SessionDescription,
};
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{CallId, Outbound};
use tokio::sync::mpsc::unbounded_channel;

impl State {
    /// Outbound: the far end's SDP answer (final, or early media in a 183).
    pub(super) fn answered(&mut self, call: CallId, answer: &SessionDescription) {
        let Some(entry) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(offer) = &entry.offer else {
            return;
        };
        if let Some(ours) = &entry.dtls_offer {
            // `srtp=dtls`: the answer must be DTLS-SRTP; the leg starts DTLS from it, and
            // what it settled answers the far end's re-offers.
            match read_answer(&answer.to_string_crlf()) {
                Ok(terms) => {
                    let again = dtls_leg::write_answer(&terms, ours);
                    entry.dtls_answer = SessionDescription::parse(again.as_bytes()).ok();
                    entry.tell(CallCmd::DtlsAnswer(terms));
                }
                Err(e) => {
                    tracing::warn!(room = %entry.room, error = %e, "SIP call out: DTLS-SRTP required (srtp=dtls) and not answered: hanging up");
                    entry.failure = Some(format!("the far end refused DTLS-SRTP: {e}"));
                    let _ = self.ua.hangup(Instant::now(), call);
                }
            }
            return;
        }
        match entry.sdp.accept_answer(offer, answer, &entry.local) {
            Ok(n) => entry.tell(CallCmd::Media(n)),
            Err(e) => {
                if matches!(e, SdpError::SrtpRefused(_)) {
                    // The far end (or its configuration) takes no SDES: the operator's to fix.
                    tracing::warn!(room = %entry.room, error = %e, "SIP call out: SRTP required (srtp=sdes) and not answered: hanging up");
                } else {
                    tracing::info!(room = %entry.room, error = %e, "SIP answer not acceptable: hanging up");
                }
                entry.failure = Some(e.to_string());
                let _ = self.ua.hangup(Instant::now(), call);
            }
        }
    }

    /// An outbound call: the INVITE, and the media task that joins the room at once.
    pub(super) fn dial(
        &mut self,
        room: String,
        name: String,
        target: Target,
        dest: SocketAddr,
    ) -> Result<String, (u16, String)> {
        if self.refusing() {
            return Err((503, "the server is shutting down".into()));
        }
        if self.calls.len() >= self.cfg.max_calls {
            return Err((
                503,
                format!("{} calls are up (--sip-max-calls)", self.cfg.max_calls),
            ));
        }
        let sfu = self
            .sfu
            .clone()
            .ok_or((503, "the SFU is off (--sfu-threshold off)".to_string()))?;
        let port = self
            .ports
            .take(self.cfg.media_ip)
            .ok_or((503, "no RTP port free (--sip-rtp-ports)".to_string()))?;
        let local = LocalAudio {
            addr: self.cfg.media_ip,
            port: port.port(),
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
            direction: Direction::SendRecv,
            // Plain RTP (what trunks and most phones take) unless SDES is asked for: then a
            // fresh key for this call, and RTP/SAVP only.
            srtp_key: (target.srtp == SrtpMode::Sdes).then(rand::random),
            rtcp_mux: false,
            ptime: 20,
        };
        let mut sdp = SdpSession::new(rand::random::<u32>().into(), self.cfg.media_ip);
        // DTLS-SRTP: the leg first, its certificate and ICE credentials go into the offer.
        let (offer, dtls, dtls_offer) = if target.srtp == SrtpMode::Dtls {
            let at = SocketAddr::new(self.cfg.media_ip, port.port());
            let (leg, ours, text) = DtlsLeg::offer(at).map_err(|e| (500, format!("DTLS: {e}")))?;
            let offer = SessionDescription::parse(text.as_bytes())
                .map_err(|e| (500, format!("our DTLS-SRTP offer: {e}")))?;
            (offer, Some(leg), Some(ours))
        } else {
            (sdp.offer(&local), None, None)
        };
        let dtls_srtp = dtls.is_some();
        let srtp = local.srtp_key.is_some() || dtls_srtp;
        let from = format!("\"{}\" <{}>", room.replace('"', ""), target.from);
        let out = Outbound {
            target: target.request_uri.clone(),
            from,
            dest,
            transport: target.transport,
            credentials: target.credentials.clone(),
            headers: target.headers.clone(),
            offer: offer.clone(),
        };
        if target.transport == Transport::Tls {
            self.remember_tls_name(dest, target.tls_name.clone());
        }
        let call = self
            .ua
            .call(Instant::now(), out)
            .map_err(|e| (400, format!("cannot call {}: {e}", target.request_uri)))?;
        self.stats.calls_out.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded_channel();
        self.calls.insert(
            call,
            CallEntry {
                room: room.clone(),
                media: Some(tx),
                sdp,
                local,
                answer: None,
                offer: Some(offer),
                dtls_answer: None,
                dtls_offer,
                conn: (target.transport != Transport::Udp).then_some((target.transport, dest)),
                srtp_required: srtp,
                failure: None,
            },
        );
        tracing::info!(%room, to = %target.request_uri, via = %dest, transport = target.transport.as_str(), dtls_srtp, srtp, "SIP call out");
        tokio::spawn(call::run(CallSetup {
            call,
            outbound: true,
            room: Some(room),
            pins: self.pins.clone(),
            name,
            negotiated: None,
            dtls,
            port,
            signaling: self.signaling.clone(),
            sfu: sfu.clone(),
            agent: self.to_agent.clone(),
            commands: rx,
            stats: self.stats.clone(),
            rtp_timeout: self.cfg.rtp_timeout,
        }));
        Ok(call_label(call))
    }

    /// A new call: room, port, answer, ring, and the media task that joins the room.
    pub(super) fn incoming(
        &mut self,
        call: CallId,
        from: &str,
        from_display: Option<String>,
        to_user: Option<&str>,
        offer: Option<SessionDescription>,
    ) -> Result<(), (u16, String)> {
        if self.refusing() {
            return Err((503, "Service Unavailable (shutting down)".into()));
        }
        if self.calls.len() >= self.cfg.max_calls {
            return Err((486, "Busy Here".into()));
        }
        let room = match room_for(&self.cfg, to_user).ok_or((404, "Not Found".to_string()))? {
            Dispatch::Room(room) => Some(room),
            Dispatch::Pin => None,
        };
        let sfu = self
            .sfu
            .clone()
            .ok_or((503, "Service Unavailable (the SFU is off)".to_string()))?;
        let offer = offer.ok_or((488, "Not Acceptable Here (no SDP offer)".to_string()))?;
        let port = self
            .ports
            .take(self.cfg.media_ip)
            .ok_or((503, "Service Unavailable (no RTP port free)".to_string()))?;
        let local = LocalAudio {
            addr: self.cfg.media_ip,
            port: port.port(),
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
            direction: Direction::SendRecv,
            srtp_key: Some(rand::random()),
            rtcp_mux: true,
            ptime: 20,
        };
        let mut sdp = SdpSession::new(rand::random::<u32>().into(), self.cfg.media_ip);
        let offer_text = offer.to_string_crlf();
        let (answer, negotiated, dtls) = if is_dtls_offer(&offer_text) {
            let at = SocketAddr::new(self.cfg.media_ip, port.port());
            let (leg, text, negotiated) = DtlsLeg::answer(&offer_text, at)
                .map_err(|e| (488, format!("Not Acceptable Here ({e})")))?;
            let answer = SessionDescription::parse(text.as_bytes())
                .map_err(|e| (500, format!("Server Internal Error (our answer: {e})")))?;
            (answer, negotiated, Some(leg))
        } else {
            let (answer, negotiated) = sdp
                .answer(&offer, &local)
                .map_err(|e| (488, format!("Not Acceptable Here ({e})")))?;
            (answer, negotiated, None)
        };
        let now = Instant::now();
        self.ua
            .ring(now, call)
            .map_err(|e| (500, format!("Server Internal Error ({e})")))?;
        let name = caller_name(from, from_display);
        let (tx, rx) = unbounded_channel();
        self.calls.insert(
            call,
            CallEntry {
                room: room.clone().unwrap_or_default(),
                media: Some(tx),
                sdp,
                local,
                dtls_answer: dtls.is_some().then(|| answer.clone()),
                dtls_offer: None,
                conn: None,
                answer: Some(answer),
                offer: None,
                srtp_required: false,
                failure: None,
            },
        );
        tracing::info!(room = room.as_deref().unwrap_or("(by PIN)"), caller = %name, "SIP call in");
        tokio::spawn(call::run(CallSetup {
            call,
            outbound: false,
            room,
            pins: self.pins.clone(),
            name,
            negotiated: Some(negotiated),
            dtls,
            port,
            signaling: self.signaling.clone(),
            sfu: sfu.clone(),
            agent: self.to_agent.clone(),
            commands: rx,
            stats: self.stats.clone(),
            rtp_timeout: self.cfg.rtp_timeout,
        }));
        Ok(())
    }

    pub(super) fn reoffer(&mut self, call: CallId, offer: &SessionDescription) {
        let now = Instant::now();
        let Some(entry) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(answer) = &entry.dtls_answer {
            let _ = self.ua.answer_reoffer(now, call, answer.clone());
            return;
        }
        if entry.dtls_offer.is_some() {
            // Our DTLS-SRTP offer is not answered yet: no terms to answer with, and plain
            // RTP is no answer on a `srtp=dtls` call.
            tracing::warn!(room = %entry.room, "SIP re-offer before the DTLS-SRTP answer: hanging up");
            entry.failure = Some("the far end re-offered before answering DTLS-SRTP".into());
            let _ = self.ua.hangup(now, call);
            return;
        }
        match entry.sdp.answer(offer, &entry.local) {
            Ok((_, negotiated)) if entry.srtp_required && negotiated.srtp.is_none() => {
                tracing::warn!(room = %entry.room, "SIP re-offer without SRTP on an SRTP call: hanging up");
                entry.failure = Some("the far end's re-offer drops SRTP".into());
                let _ = self.ua.hangup(now, call);
            }
            Ok((answer, negotiated)) => {
                let _ = self.ua.answer_reoffer(now, call, answer);
                entry.tell(CallCmd::Media(negotiated));
            }
            Err(e) => {
                tracing::info!(error = %e, "SIP re-offer not acceptable: hanging up");
                let _ = self.ua.hangup(now, call);
            }
        }
    }
}

/// How the room sees a caller: its display name, else the user of its URI.
pub(super) fn caller_name(from: &str, display: Option<String>) -> String {
    let name = display.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| {
        let user = from
            .split_once(':')
            .map_or(from, |(_, rest)| rest)
            .split(['@', ';', '>'])
            .next()
            .unwrap_or_default();
        if user.is_empty() {
            "phone".to_string()
        } else {
            user.to_string()
        }
    });
    // The hub's names are at most 64 characters.
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::caller_name;

    #[test]
    fn caller_names() {
        assert_eq!(caller_name("sip:bob@example.com", None), "bob");
        assert_eq!(
            caller_name("sip:bob@example.com", Some("Bob B".into())),
            "Bob B"
        );
        assert_eq!(
            caller_name("tel:+4930123;phone-context=x", None),
            "+4930123"
        );
        assert_eq!(
            caller_name("sip:example.com", Some("  ".into())),
            "example.com"
        );
        assert_eq!(
            caller_name(&format!("sip:{}@x", "a".repeat(100)), None).len(),
            64
        );
    }
}
