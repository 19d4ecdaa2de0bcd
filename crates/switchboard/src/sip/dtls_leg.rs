//! The phone side of a call whose far end offers DTLS-SRTP with ICE (RFC 5763/5764 on
//! the SIP leg, e.g. baresip with `mediaenc=dtls_srtp;medianat=ice`, or a WebRTC-capable
//! PBX): str0m terminates ICE and DTLS-SRTP on the call's RTP port and hands over plain
//! RTP, so the bridge (`CallMedia`) sees the same packets as on a plain RTP call.
//!
//! Why str0m: it is the WebRTC stack the SFU already runs (ICE agent, DTLS, SRTP), and a
//! SIP endpoint's DTLS-SRTP offer differs from a browser's only in SDP dialect. What is
//! adapted here:
//! - SIP offers carry no `a=mid` and no BUNDLE group: the one audio m-line is given
//!   `a=mid:0` and a BUNDLE of it before str0m reads it (str0m keys media by mid);
//! - str0m multiplexes RTP and RTCP on one port, so an offer must carry `a=rtcp-mux`
//!   (RFC 5761); one that does not is refused (488) rather than half-served;
//! - only G.711 and Opus are enabled: telephone-event is not, so keys go as SIP INFO.

use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use switchboard_media::rtp::{write_rtp_header, RtpHeader};
use switchboard_sip::sdp::Codec as SipCodec;

/// A DTLS-SRTP + ICE audio leg to the phone.
pub struct DtlsLeg {
    rtc: Rtc,
    local: SocketAddr,
    mid: Mid,
    pt: u8,
    /// Plain RTP packets received, for the bridge.
    received: Vec<Vec<u8>>,
    connected: bool,
}

/// The SIP offer is DTLS-SRTP (`UDP/TLS/RTP/SAVP` or `…/SAVPF` audio).
pub fn is_dtls_offer(sdp: &str) -> bool {
    sdp.lines()
        .any(|l| l.starts_with("m=audio ") && l.contains("UDP/TLS/RTP/SAVP"))
}

/// The offer as str0m reads it: `a=mid:0` on the audio m-line and a BUNDLE group of it.
fn with_mid(offer: &str) -> Result<String, String> {
    if !offer.lines().any(|l| l.trim_end() == "a=rtcp-mux") {
        return Err("DTLS-SRTP offers must multiplex RTP and RTCP (a=rtcp-mux)".into());
    }
    let audio_lines = offer.lines().filter(|l| l.starts_with("m=")).count();
    if audio_lines != 1 {
        return Err("a DTLS-SRTP offer must have exactly one m-line".into());
    }
    let mut out = String::with_capacity(offer.len() + 64);
    let has_mid = offer.lines().any(|l| l.starts_with("a=mid:"));
    let has_group = offer.lines().any(|l| l.starts_with("a=group:BUNDLE"));
    for line in offer.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") && !has_group {
            out.push_str("a=group:BUNDLE 0\r\n");
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // The one m-line is last: its attributes end the description (after its c=, which
    // must come before any a=).
    if !has_mid {
        out.push_str("a=mid:0\r\n");
    }
    Ok(out)
}

/// str0m writes WebRTC's placeholder default candidate (`m=audio 9`, `c=IN IP4
/// 0.0.0.0`); SIP endpoints apply RFC 8839 §4.2 to it: a default address that is none of
/// the candidates means "the peer does not do ICE" (baresip then skips ICE). The one host
/// candidate is made the default.
fn with_default_candidate(answer: &str, local: SocketAddr) -> String {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    answer
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("m=audio 9 ") {
                format!("m=audio {} {rest}\r\n", local.port())
            } else if line.starts_with("c=IN IP") {
                format!("c=IN {family} {}\r\n", local.ip())
            } else {
                format!("{line}\r\n")
            }
        })
        .collect()
}

impl DtlsLeg {
    /// Answer `offer` with ICE (a host candidate at `local`, the call's RTP port) and
    /// DTLS-SRTP; the answer SDP and what codec it settled on.
    pub fn answer(offer: &str, local: SocketAddr) -> Result<(DtlsLeg, String, SipCodec), String> {
        let offer = SdpOffer::from_sdp_string(&with_mid(offer)?)
            .map_err(|e| format!("the DTLS-SRTP offer does not parse: {e}"))?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .enable_opus(true, false)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("the DTLS-SRTP offer cannot be answered: {e}"))?;
        let mid = Mid::from("0");
        let remote_pts: Vec<str0m::media::Pt> = match rtc.media(mid) {
            Some(m) if m.kind() == MediaKind::Audio => m.remote_pts().to_vec(),
            _ => return Err("the DTLS-SRTP offer has no audio".into()),
        };
        // The codec settled on: the first of the offer's formats we have.
        let (pt, codec) = remote_pts
            .iter()
            .find_map(|pt| {
                let spec = rtc.codec_config().find(|p| p.pt() == *pt)?.spec();
                let c = match spec.codec {
                    Codec::PCMU => SipCodec::Pcmu,
                    Codec::PCMA => SipCodec::Pcma,
                    Codec::Opus => SipCodec::Opus,
                    _ => return None,
                };
                Some((**pt, c))
            })
            .ok_or("no codec in common (PCMU, PCMA, Opus)")?;
        let leg = DtlsLeg {
            rtc,
            local,
            mid,
            pt,
            received: Vec::new(),
            connected: false,
        };
        Ok((
            leg,
            with_default_candidate(&answer.to_sdp_string(), local),
            codec,
        ))
    }

    /// The payload type of the codec.
    pub fn pt(&self) -> u8 {
        self.pt
    }

    /// ICE and DTLS are up.
    #[allow(dead_code)] // for the coming DTLS test
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// A datagram on the call's RTP port.
    pub fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        let Ok(contents) = bytes.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(error = %e, "DTLS phone leg: datagram refused");
        }
    }

    /// An RTP packet of the bridge for the phone: encrypted and sent by str0m.
    pub fn send_rtp(&mut self, packet: &[u8]) {
        let Ok(h) = RtpHeader::parse(packet) else {
            return;
        };
        let payload = &packet[h.payload_start..h.payload_end];
        let pt = h.payload_type.into();
        let mut api = self.rtc.direct_api();
        if let Some(tx) = api.stream_tx_by_mid(self.mid, None) {
            let w = RtpWrite::new(
                pt,
                SeqNo::from(u64::from(h.sequence)),
                h.timestamp,
                Instant::now(),
                payload,
            )
            .marker(h.marker);
            tx.write_rtp(w);
        }
    }

    /// The plain RTP packets received since the last call.
    pub fn take_received(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.received.drain(..)
    }

    /// Run str0m's timers and send what it has (on `sock`); returns when to call again,
    /// or why the leg is gone.
    pub fn poll(&mut self, sock: &tokio::net::UdpSocket) -> Result<Instant, String> {
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(|e| e.to_string())?;
        loop {
            match self.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    let _ = sock.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => match e {
                    Event::Connected => self.connected = true,
                    Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                        return Err("ICE to the phone disconnected".into())
                    }
                    Event::RtpPacket(p) => {
                        let mut packet = vec![0u8; 12 + p.payload.len()];
                        let h = &p.header;
                        if write_rtp_header(
                            &mut packet,
                            h.marker,
                            *h.payload_type,
                            h.sequence_number,
                            h.timestamp,
                            *h.ssrc,
                        )
                        .is_ok()
                        {
                            packet[12..].copy_from_slice(&p.payload);
                            // Bounded: a bridge that stops taking them loses the oldest.
                            if self.received.len() >= 64 {
                                self.received.remove(0);
                            }
                            self.received.push(packet);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// baresip 1.0's offer with `mediaenc=dtls_srtp;medianat=ice` and `rtcp_mux yes`.
    const BARESIP: &str = "v=0\r\no=- 2147232625 375661264 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:baresip 1.0.0\r\na=ice-ufrag:eryolq7\r\na=ice-pwd:0n1lbJ72ER95KIL0pHgKjN4WQ1aHg6Z\r\na=setup:actpass\r\na=fingerprint:SHA-256 C0:96:3C:A9:EC:45:3E:2F:32:CF:E8:AB:52:BE:29:15:85:5E:FD:57:FE:21:ED:EC:A0:D0:68:38:32:84:98:42\r\nm=audio 47176 UDP/TLS/RTP/SAVPF 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\na=ssrc:3838291339 cname:sip:alice@127.0.0.1:47060\r\na=minptime:20\r\na=ptime:20\r\na=candidate:c0000202 1 UDP 2113929471 127.0.0.1 47176 typ host\r\n";

    #[test]
    fn a_baresip_dtls_offer_is_answered_with_pcmu_ice_and_dtls() {
        assert!(is_dtls_offer(BARESIP));
        let (leg, answer, codec) =
            DtlsLeg::answer(BARESIP, "127.0.0.1:40000".parse().unwrap()).unwrap();
        assert_eq!(codec, SipCodec::Pcmu);
        assert!(
            answer.contains("m=audio 40000 UDP/TLS/RTP/SAVPF 0\r\n"),
            "{answer}"
        );
        assert!(answer.contains("c=IN IP4 127.0.0.1\r\n"), "{answer}");
        assert_eq!(leg.pt(), 0);
        for needle in [
            "UDP/TLS/RTP/SAVPF 0",
            "a=fingerprint:sha-256",
            "a=ice-ufrag:",
            "a=rtcp-mux",
            "typ host",
        ] {
            assert!(
                answer.to_lowercase().contains(&needle.to_lowercase()),
                "{needle} missing in\n{answer}"
            );
        }
        assert!(answer.contains("a=setup:active") || answer.contains("a=setup:passive"));
    }

    #[test]
    fn offers_str0m_cannot_serve_are_refused() {
        let no_mux = BARESIP.replace("a=rtcp-mux\r\n", "");
        assert!(DtlsLeg::answer(&no_mux, "127.0.0.1:40000".parse().unwrap()).is_err());
        let g729 = BARESIP
            .replace("SAVPF 0 101", "SAVPF 18")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
        assert!(DtlsLeg::answer(&g729, "127.0.0.1:40000".parse().unwrap()).is_err());
        assert!(!is_dtls_offer(
            &BARESIP.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP")
        ));
    }
}
