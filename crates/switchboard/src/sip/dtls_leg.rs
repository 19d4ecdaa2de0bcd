//! The phone side of a call whose far end offers DTLS-SRTP with ICE (RFC 5763/5764 on
//! the SIP leg, e.g. baresip with `mediaenc=dtls_srtp;medianat=ice`, or a WebRTC-capable
//! PBX): ICE-lite, DTLS-SRTP and SRTP are terminated on the call's RTP port and plain RTP
//! is handed over, so the bridge (`CallMedia`) sees the same packets as on a plain RTP call.
//!
//! Why not str0m (the SFU's WebRTC stack), as before: its DTLS (`dimpl`) accepts only ECDSA
//! peers, and baresip's certificate is RSA (handshake_failure, alert 40). The parts are now
//! the media crate's sans-IO ones: [`IceLite`] answers the phone's checks and says where
//! media goes, [`Dtls`] (OpenSSL) makes the SRTP keys, `SrtpContext` protects. What arrives
//! on the port is demultiplexed by its first byte (RFC 7983).
//!
//! Calls out (`srtp=dtls`) run the same leg the other way: it is made before the offer
//! (its certificate and ICE credentials go into it), answers the far end's checks at
//! once, and starts DTLS when the answer says the role ([`DtlsLeg::on_answer`]).
//!
//! SIP dialect: one audio m-line with `a=rtcp-mux` (RFC 5761; an offer without it is
//! refused, 488, rather than half-served); the codec is the offer's first of PCMU, PCMA,
//! Opus; telephone-event is answered when offered at the codec's clock (keys then go as
//! RFC 4733, handled by the bridge). SRTCP from the phone is not decrypted: the bridge
//! reads no RTCP on any leg.

mod sdp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_media::dtls::{demux, Demux, Dtls, DtlsCertificate, SrtpPair};
use switchboard_media::ice_lite::{IceLite, StunOutcome};
use switchboard_media::rtp::{self, PacketKind};
use switchboard_media::srtp::SRTCP_TRAILER_LEN;
use switchboard_sip::sdp::{Direction, Negotiated};

pub use sdp::{read_answer, write_answer, LocalTerms, MediaTerms};

/// Most datagrams waiting to be sent or handed to the bridge; beyond that the oldest go.
const QUEUE_LIMIT: usize = 64;
/// How long `poll` may sleep when nothing is due (the call loop ticks every 20 ms anyway).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// A DTLS-SRTP + ICE audio leg to the phone.
pub struct DtlsLeg {
    ice: IceLite,
    /// None until the far end's answer to our offer says the role.
    dtls: Option<Dtls>,
    cert: DtlsCertificate,
    srtp: Option<SrtpPair>,
    /// The source of the latest DTLS datagram: where DTLS answers go before ICE nominated.
    dtls_peer: Option<SocketAddr>,
    /// Datagrams to send (STUN answers, protected RTP), with their destination.
    outgoing: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Why the leg failed (DTLS alert, fingerprint mismatch…), reported by `poll`.
    failed: Option<String>,
}

/// What the bridge is told a DTLS-SRTP leg settled: where media goes is ICE's, and SRTP
/// is the leg's, so the bridge sees plain RTP.
pub fn negotiated(terms: &MediaTerms) -> Negotiated {
    Negotiated {
        codec: terms.codec,
        pt: terms.pt,
        telephone_event: terms.telephone_event.as_ref().map(|(te, _)| *te),
        remote_rtp: None,
        remote_rtcp: None,
        rtcp_mux: true,
        direction: Direction::SendRecv,
        ptime: Some(20),
        srtp: None,
    }
}

/// The SIP offer is DTLS-SRTP (`UDP/TLS/RTP/SAVP` or `…/SAVPF` audio).
pub fn is_dtls_offer(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.starts_with("m=audio ") && l.contains("UDP/TLS/RTP/SAVP"))
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= QUEUE_LIMIT {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl DtlsLeg {
    /// Answer `offer` with ICE-lite (a host candidate at `local`, the call's RTP port) and
    /// DTLS-SRTP; the answer SDP and what it settled, for the bridge.
    pub fn answer(offer: &str, local: SocketAddr) -> Result<(DtlsLeg, String, Negotiated), String> {
        let terms = sdp::read_offer(offer)?;
        let (mut leg, ours) = DtlsLeg::unstarted(local, terms.remote_ufrag.as_deref())?;
        leg.start(&terms)?;
        Ok((leg, sdp::write_answer(&terms, &ours), negotiated(&terms)))
    }

    /// A leg for a call out: our DTLS-SRTP + ICE-lite offer (a host candidate at `local`,
    /// the call's RTP port) and our terms, to answer re-offers with once the answer came.
    pub fn offer(local: SocketAddr) -> Result<(DtlsLeg, LocalTerms, String), String> {
        let (leg, ours) = DtlsLeg::unstarted(local, None)?;
        let text = sdp::write_offer(&ours);
        Ok((leg, ours, text))
    }

    /// Fresh credentials and certificate, no DTLS yet.
    fn unstarted(
        local: SocketAddr,
        remote_ufrag: Option<&str>,
    ) -> Result<(DtlsLeg, LocalTerms), String> {
        let cert = DtlsCertificate::new_ecdsa().map_err(|e| e.to_string())?;
        let fingerprint = cert.fingerprint().map_err(|e| e.to_string())?;
        // RFC 8839 §5.4: ufrag ≥ 4 and pwd ≥ 22 ice-chars (hex is a subset).
        let ice = IceLite::new(
            &switchboard_util::random_hex(4),
            &switchboard_util::random_hex(12),
            remote_ufrag,
        );
        let ours = LocalTerms {
            addr: local,
            ufrag: ice.local_ufrag().to_owned(),
            pwd: ice.local_pwd().to_owned(),
            fingerprint,
            session_id: rand::random::<u32>().into(),
        };
        let leg = DtlsLeg {
            ice,
            dtls: None,
            cert,
            srtp: None,
            dtls_peer: None,
            outgoing: VecDeque::new(),
            failed: None,
        };
        Ok((leg, ours))
    }

    /// DTLS starts in the role `terms` settled, expecting the far end's fingerprint.
    fn start(&mut self, terms: &MediaTerms) -> Result<(), String> {
        let dtls = Dtls::new(
            terms.role,
            &self.cert,
            terms.remote_fingerprint.clone(),
            Instant::now(),
        )
        .map_err(|e| e.to_string())?;
        self.dtls = Some(dtls);
        Ok(())
    }

    /// Call out: the far end's answer (read by [`read_answer`]) starts DTLS. A second one
    /// (early media, then the final answer) changes nothing once DTLS runs.
    pub fn on_answer(&mut self, terms: &MediaTerms) -> Result<(), String> {
        if self.dtls.is_some() {
            return Ok(());
        }
        if let Some(ufrag) = &terms.remote_ufrag {
            self.ice.set_remote_ufrag(ufrag);
        }
        self.start(terms)
    }

    /// ICE and DTLS are up: SRTP keys are in place.
    #[allow(dead_code)] // read by tests; the call loop needs no edge
    pub fn connected(&self) -> bool {
        self.srtp.is_some()
    }

    /// Where media goes: the ICE-selected address, else where DTLS came from.
    fn remote(&self) -> Option<SocketAddr> {
        self.ice.remote().or(self.dtls_peer)
    }

    /// A datagram on the call's RTP port: STUN, DTLS or SRTP (RFC 7983). An SRTP packet
    /// is unprotected in place: `Some(len)` of the plain RTP packet now at the start of
    /// `bytes`, for the bridge (nothing copied or queued per packet).
    pub fn on_datagram(&mut self, from: SocketAddr, bytes: &mut [u8]) -> Option<usize> {
        let now = Instant::now();
        match demux(bytes) {
            Demux::Stun => match self.ice.handle_stun(from, bytes, now) {
                StunOutcome::Answered { response, .. } | StunOutcome::Unauthorized(response) => {
                    push_bounded(&mut self.outgoing, (from, response));
                }
                StunOutcome::Ignored => {}
            },
            Demux::Dtls => {
                // DTLS only from an address that passed an ICE check (RFC 8842 §4).
                self.ice.remote()?;
                // Before the answer (we offered) there is no role yet: the peer resends.
                let dtls = self.dtls.as_mut()?;
                self.dtls_peer = Some(from);
                if let Err(e) = dtls.handle_datagram(bytes, now) {
                    self.failed.get_or_insert_with(|| e.to_string());
                }
                self.take_keys();
            }
            Demux::Rtp => return self.on_srtp(bytes),
            Demux::Other => {}
        }
        None
    }

    fn take_keys(&mut self) {
        if let Some(pair) = self.dtls.as_mut().and_then(Dtls::take_srtp) {
            // Once a call: what an operator checks to see the call is encrypted.
            tracing::info!(profile = ?pair.profile, "DTLS-SRTP to the phone is up");
            self.srtp = Some(pair);
        }
    }

    fn on_srtp(&mut self, bytes: &mut [u8]) -> Option<usize> {
        let srtp = self.srtp.as_mut()?;
        if rtp::demux(bytes) != PacketKind::Rtp {
            return None;
        }
        srtp.inbound
            .unprotect_rtp(bytes)
            .map_err(|e| tracing::trace!(error = %e, "DTLS phone leg: SRTP refused"))
            .ok()
    }

    /// An RTP packet of the bridge for the phone: protected and queued for the
    /// ICE-selected address (dropped until the keys are in place).
    pub fn send_rtp(&mut self, packet: &[u8]) {
        let to = self.remote();
        let (Some(srtp), Some(to)) = (&mut self.srtp, to) else {
            return;
        };
        // Room for the longest tag either profile appends.
        let mut buf = vec![0u8; packet.len() + SRTCP_TRAILER_LEN];
        buf[..packet.len()].copy_from_slice(packet);
        match srtp.outbound.protect_rtp(&mut buf, packet.len()) {
            Ok(len) => {
                buf.truncate(len);
                push_bounded(&mut self.outgoing, (to, buf));
            }
            Err(e) => tracing::debug!(error = %e, "DTLS phone leg: RTP not protected"),
        }
    }

    /// Runs the DTLS timers and hands out what is due to send; when to call again, or why
    /// the leg is gone. Sans-IO core of [`DtlsLeg::poll`].
    fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> Result<Instant, String> {
        if let Some(why) = &self.failed {
            return Err(format!("DTLS to the phone: {why}"));
        }
        if let Some(dtls) = &mut self.dtls {
            if let Err(e) = dtls.handle_timeout(now) {
                return Err(format!("DTLS to the phone: {e}"));
            }
        }
        self.take_keys();
        // A DTLS client (the offer said passive) waits for ICE to know where to go.
        if let (Some(to), Some(dtls)) = (self.remote(), &mut self.dtls) {
            while let Some(d) = dtls.poll_datagram() {
                out.push((to, d));
            }
        }
        out.extend(self.outgoing.drain(..));
        let next = self.dtls.as_ref().and_then(Dtls::poll_timeout);
        Ok(next.unwrap_or(now + IDLE_WAKE))
    }

    /// Runs the timers and sends what is due (on `sock`); returns when to call again, or
    /// why the leg is gone.
    pub fn poll(&mut self, sock: &tokio::net::UdpSocket) -> Result<Instant, String> {
        let mut out = Vec::new();
        let next = self.poll_transmit(Instant::now(), &mut out)?;
        for (to, datagram) in out {
            let _ = sock.try_send_to(&datagram, to);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests;
