//! The room side of a SIP call: a participant of the room (service `"sip"`, named after
//! the caller) that talks to the room's SFU like a browser does (docs/signaling.md "SFU
//! rooms"): one str0m `Rtc` (full ICE, controlling, RTP mode) publishing the phone's
//! voice as one audio track and receiving every other member's audio. The room sees the
//! phone as any participant: its own tile, its speaking indicator (the RFC 6464 level
//! we write on each packet feeds the SFU's speaker detector).
//!
//! Why a WebRTC client of our own SFU rather than a shortcut into its tables: the SFU
//! stays one kind of thing (every participant negotiates with the same limits, grants
//! and metrics), and the same leg can later reach an SFU on another node (issue 14).
//! Only its RTP takes a shortcut when the SFU is in this process (`--sip-room-media
//! local`, the default): the SFU hands it over in-process ([`crate::sfu::LocalMedia`]),
//! which saves two SRTP operations, two datagrams and a str0m session's work per packet
//! and direction; `webrtc` sends it through the PC like a browser.
//!
//! The leg negotiates Opus, PCMU and PCMA (Opus first). Members' packets reach the bridge
//! with their codec, and the phone's track carries Opus or, when the bridge passes the
//! phone's G.711 through (docs/sip.md), PCMU/PCMA under their payload types: the same
//! SSRC, each codec on its own RTP timestamp clock. The bridge numbers the frames (a
//! passed-through one leaves as soon as the phone's packet arrives, with the phone's gaps
//! and order); the leg adds its random bases.
//!
//! The leg binds one UDP socket next to the SFU's port and gives str0m the SFU's local
//! address as an extra remote candidate, so the media never leaves the host even when
//! the SFU announces a public address.

use serde_json::{json, value::RawValue};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use switchboard_media::bridge::{RoomCodec, RoomFrame};
use switchboard_media::g711::Law;
use switchboard_signal::{Grants, RelayKind, ServiceEvent, ServiceParticipant, Signaling};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::sfu::{LocalLink, LocalMedia};
use switchboard_sfu::LocalRtp;

/// How a leg reaches the room's SFU on this host.
#[derive(Clone)]
pub struct SfuAccess {
    /// The SFU's UDP port (the leg's PC connects there).
    pub addr: SocketAddr,
    /// In-process media (`--sip-room-media local`): RTP skips the PC.
    pub media: Option<LocalMedia>,
}

/// The service kind room members see on a phone participant.
pub const SIP_SERVICE: &str = "sip";

/// How long a new leg waits for the room's SFU to join.
const SFU_JOIN_WAIT: Duration = Duration::from_secs(5);

/// What the leg may do: publish the phone's voice, receive the room's.
const LEG_GRANTS: Grants = Grants {
    publish: true,
    subscribe: true,
    admin: false,
};

#[derive(Debug, thiserror::Error)]
pub enum LegError {
    #[error("cannot join the room: {0}")]
    Join(String),
    #[error("the room is mesh-only (its creator chose mesh, or the SFU is off)")]
    MeshOnly,
    #[error("the room's SFU did not join within 5 s")]
    NoSfu,
    #[error("WebRTC: {0}")]
    Rtc(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the leg is out of the room")]
    Gone,
    #[error("the leg was taken out of the room")]
    Removed,
}

fn rtc_err(e: impl std::fmt::Display) -> LegError {
    LegError::Rtc(e.to_string())
}

/// One received audio packet of another member: `source` is stable per remote track.
pub use switchboard_media::bridge::RoomAudio;

/// What a member of the room asks of the call (docs/sip.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRequest {
    /// Keys to send to the phone.
    Dtmf(String),
    Hangup,
}

/// `{"sip":"dtmf","digits":"12#"}` or `{"sip":"hangup"}`; anything else is not for us.
fn member_request(payload: &str) -> Option<MemberRequest> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    match v["sip"].as_str()? {
        "hangup" => Some(MemberRequest::Hangup),
        "dtmf" => {
            let digits: String = v["digits"]
                .as_str()?
                .chars()
                .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
                .take(32)
                .collect();
            (!digits.is_empty()).then_some(MemberRequest::Dtmf(digits))
        }
        _ => None,
    }
}

/// Where [`RoomLeg::poll`] puts what it received.
pub trait RoomSink {
    fn audio(&mut self, audio: RoomAudio<'_>);
    /// A remote audio track left the room.
    fn gone(&mut self, source: u64);
}

/// The phone's participant in a room and its WebRTC connection to the SFU.
pub struct RoomLeg {
    participant: ServiceParticipant,
    sfu: Arc<str>,
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    /// The m-line we publish on, once the SFU answered it.
    sending: Option<Mid>,
    /// Our offer waiting for the SFU's answer (mid it adds).
    pending: Option<(SdpPendingOffer, Mid)>,
    /// Remote audio m-lines by source number.
    sources: HashMap<Mid, u64>,
    next_source: u64,
    /// Remote mids that left the tracks map since the last poll.
    gone: Vec<u64>,
    connected: bool,
    /// The room's clients (not services), to tell them about the call.
    members: Vec<Arc<str>>,
    /// The call's last state message, for members that join later.
    state: Option<serde_json::Value>,
    /// Bases of the phone's track: the bridge's frame numbers and 48 kHz positions are
    /// added to them (G.711 frames use a sixth of the position, from the same base).
    seq: u64,
    timestamp: u32,
    /// In-process media with the SFU, and its receiving end until the call task takes it.
    in_process: Option<LocalLink>,
    in_process_rx: Option<mpsc::Receiver<LocalRtp>>,
}

/// The bridge's name for a codec str0m negotiated (audio only).
fn room_codec(codec: Codec) -> Option<RoomCodec> {
    match codec {
        Codec::Opus => Some(RoomCodec::Opus),
        Codec::PCMU => Some(RoomCodec::G711(Law::Mu)),
        Codec::PCMA => Some(RoomCodec::G711(Law::A)),
        _ => None,
    }
}

impl RoomLeg {
    /// Join `room` as `name`, turn it SFU, and offer the phone's audio to its SFU.
    /// `sfu` is where the SFU is reachable on this host, and whether in-process.
    pub async fn join(
        signaling: &Arc<Signaling>,
        room: &str,
        name: &str,
        sfu: &SfuAccess,
    ) -> Result<RoomLeg, LegError> {
        let (sfu_local, media) = (sfu.addr, sfu.media.clone());
        // In a cluster the room may live on another node: the leg joins it there and
        // talks to this node's edge of it, whose SFU takes the call's media.
        let joined = signaling
            .join_sfu_service(room, name, SIP_SERVICE, LEG_GRANTS)
            .await
            .map_err(|e| LegError::Join(e.reason))?;
        let joined = joined.ok_or(LegError::MeshOnly)?;
        let sfu = joined
            .find_sfu(SFU_JOIN_WAIT)
            .await
            .ok_or(LegError::NoSfu)?;
        let participant = joined.participant;
        let members = participant
            .peers()
            .iter()
            .filter(|p| p.service.is_none())
            .map(|p| p.id.clone())
            .collect();
        let bind_ip = if sfu_local.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            sfu_local.ip()
        };
        let sfu_local = SocketAddr::new(bind_ip, sfu_local.port());
        let sock = UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
        let local = sock.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            // Only what the room needs of a phone's track: the level (speaking indicator)
            // and the mid. No transport-wide-cc: on a loopback hop carrying 64 kbit/s
            // there is no bandwidth to estimate, and its feedback was 11 % of the call's
            // packets and ~15 % of its CPU (bench/sip-janus.sh, docs/benchmarks.md).
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(4, Extension::RtpMid)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(rtc_err)?);
        let mut leg = RoomLeg {
            participant,
            sfu,
            rtc,
            sock,
            local,
            sending: None,
            pending: None,
            sources: HashMap::new(),
            next_source: 1,
            gone: Vec::new(),
            connected: false,
            members,
            state: None,
            seq: u64::from(rand::random::<u16>()),
            timestamp: rand::random(),
            in_process: None,
            in_process_rx: None,
        };
        // Before the offer: the SFU's worker must know the leg is in-process when the
        // offer makes it a participant.
        if let Some(media) = media {
            let (link, rx) = media.attach(leg.participant.room(), leg.participant.peer_id());
            leg.in_process = Some(link);
            leg.in_process_rx = Some(rx);
        }
        // The SFU's own address on this host: pairs with our host candidate whatever
        // the SFU announces.
        leg.rtc
            .add_remote_candidate(Candidate::host(sfu_local, "udp").map_err(rtc_err)?);
        leg.publish()?;
        Ok(leg)
    }

    pub fn peer_id(&self) -> &Arc<str> {
        self.participant.peer_id()
    }

    pub fn room(&self) -> &str {
        self.participant.room()
    }

    /// Whether the room lives on another node (the leg talks to this node's edge).
    pub fn is_remote(&self) -> bool {
        self.participant.is_remote()
    }

    /// The room's audio sources this leg numbered (for the mixer to forget them when the
    /// leg is replaced).
    pub fn source_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.sources.values().copied()
    }

    /// `publish` message, then an offer of one sendonly audio m-line.
    fn publish(&mut self) -> Result<(), LegError> {
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or_else(|| rtc_err("nothing to offer"))?;
        let publish =
            json!({"sfu": "publish", "tracks": [{"mid": mid.to_string(), "source": "microphone"}]});
        self.relay(RelayKind::Message, &publish.to_string())?;
        self.relay(RelayKind::Offer, &json!(offer.to_sdp_string()).to_string())?;
        self.pending = Some((pending, mid));
        Ok(())
    }

    fn relay(&self, kind: RelayKind, json_text: &str) -> Result<(), LegError> {
        let raw = RawValue::from_string(json_text.to_string()).map_err(rtc_err)?;
        self.participant
            .send(&self.sfu, kind, &raw)
            .map_err(|e| LegError::Join(e.reason))
    }

    /// The next signaling event of the participant (cancel-safe); None once it is out
    /// of the room.
    pub async fn next_signal(&self) -> Option<ServiceEvent> {
        self.participant.recv().await
    }

    /// A signaling event: the SFU's offers (answered; the polite side), answers, and
    /// `tracks` maps; members coming and going; a member's request to the call.
    /// `Err(Gone)` when the SFU left or dropped us.
    pub fn on_signal(&mut self, ev: ServiceEvent) -> Result<Option<MemberRequest>, LegError> {
        match ev {
            ServiceEvent::PeerLeft { peer, .. } if peer == self.sfu => Err(LegError::Gone),
            ServiceEvent::PeerLeft { peer, .. } => {
                self.members.retain(|m| *m != peer);
                Ok(None)
            }
            ServiceEvent::PeerJoined(p) if p.service.is_none() => {
                if let Some(state) = &self.state {
                    self.send_to(&p.id, state);
                }
                self.members.push(p.id);
                Ok(None)
            }
            ServiceEvent::Error { fatal: true, .. } => Err(LegError::Removed),
            ServiceEvent::Relay {
                from,
                kind,
                payload,
            } if from == self.sfu => self.on_sfu(kind, payload.get()).map(|()| None),
            ServiceEvent::Relay {
                kind: RelayKind::Message,
                payload,
                ..
            } => Ok(member_request(payload.get())),
            _ => Ok(None),
        }
    }

    fn on_sfu(&mut self, kind: RelayKind, payload: &str) -> Result<(), LegError> {
        match kind {
            RelayKind::Offer => {
                let sdp: String = serde_json::from_str(payload).map_err(rtc_err)?;
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(rtc_err)?;
                // Polite side: our own pending offer is rolled back by str0m and made
                // again after this exchange.
                let rolled_back = self.pending.take();
                let answer = self.rtc.sdp_api().accept_offer(offer).map_err(rtc_err)?;
                self.relay(
                    RelayKind::Answer,
                    &json!(answer.to_sdp_string()).to_string(),
                )?;
                if rolled_back.is_some() && self.sending.is_none() {
                    self.publish()?;
                }
            }
            RelayKind::Answer => {
                let sdp: String = serde_json::from_str(payload).map_err(rtc_err)?;
                if let Some((pending, mid)) = self.pending.take() {
                    let answer = SdpAnswer::from_sdp_string(&sdp).map_err(rtc_err)?;
                    self.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(rtc_err)?;
                    self.sending = Some(mid);
                }
            }
            RelayKind::Message => {
                let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
                match v["sfu"].as_str() {
                    Some("tracks") => self.on_tracks(&v["tracks"])?,
                    Some("gone") => return Err(LegError::Gone),
                    Some("error") => tracing::warn!(
                        room = self.participant.room(),
                        code = %v["code"],
                        reason = %v["reason"],
                        "the SFU refused the phone leg's request"
                    ),
                    _ => {}
                }
            }
            RelayKind::Candidate => {}
        }
        Ok(())
    }

    /// The SFU's map of remote tracks: audio m-lines are mixed for the phone; every
    /// video one is reported hidden (0×0) so the SFU sends none.
    fn on_tracks(&mut self, tracks: &serde_json::Value) -> Result<(), LegError> {
        let list = tracks.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut audio: Vec<Mid> = Vec::new();
        let mut hidden = Vec::new();
        for t in list {
            let Some(mid) = t["mid"].as_str() else {
                continue;
            };
            match t["kind"].as_str() {
                Some("audio") => audio.push(Mid::from(mid)),
                Some("video") => hidden.push(json!({"mid": mid, "width": 0, "height": 0})),
                _ => {}
            }
        }
        let before: Vec<Mid> = self.sources.keys().copied().collect();
        for mid in before {
            if !audio.contains(&mid) {
                if let Some(s) = self.sources.remove(&mid) {
                    self.gone.push(s);
                }
            }
        }
        for mid in audio {
            if !self.sources.contains_key(&mid) {
                self.sources.insert(mid, self.next_source);
                self.next_source += 1;
            }
        }
        if !hidden.is_empty() {
            let view = json!({"sfu": "view", "tracks": hidden});
            self.relay(RelayKind::Message, &view.to_string())?;
        }
        Ok(())
    }

    /// Send `data` (a JSON value) as a `message` to every client of the room: the call's
    /// state and DTMF for the app (docs/sip.md). A member too slow to take it misses it.
    pub fn announce(&self, data: &serde_json::Value) {
        let Ok(raw) = RawValue::from_string(data.to_string()) else {
            return;
        };
        for m in &self.members {
            let _ = self.participant.send(m, RelayKind::Message, &raw);
        }
    }

    /// [`RoomLeg::announce`] a state, and keep it for members that join later.
    pub fn set_state(&mut self, data: serde_json::Value) {
        self.announce(&data);
        self.state = Some(data);
    }

    fn send_to(&self, peer: &str, data: &serde_json::Value) {
        if let Ok(raw) = RawValue::from_string(data.to_string()) {
            let _ = self.participant.send(peer, RelayKind::Message, &raw);
        }
    }

    /// The leg's socket toward the SFU: receive on it (e.g. in a `select!`), then
    /// [`RoomLeg::on_datagram`].
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// A datagram from the SFU.
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
        // A datagram str0m cannot take (stray, garbled) is dropped, not fatal.
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(error = %e, "phone leg: datagram refused");
        }
    }

    /// Whether the SFU accepted `codec` on the track we publish (so [`RoomLeg::send`] can
    /// carry it).
    pub fn sends(&self, codec: RoomCodec) -> bool {
        self.pt_for(codec).is_some()
    }

    /// Our payload type for `codec`, if the SFU's answer for our track has it.
    fn pt_for(&self, codec: RoomCodec) -> Option<Pt> {
        let pt = self
            .rtc
            .codec_config()
            .find(|p| room_codec(p.spec().codec) == Some(codec))
            .map(|p| p.pt())?;
        let media = self.rtc.media(self.sending?)?;
        media.remote_pts().contains(&pt).then_some(pt)
    }

    /// Send the phone's frame `frame` (its payload in `payload`) under the payload type the
    /// SFU negotiated for its codec (none: the frame is dropped), with its RFC 6464 level
    /// and voice activity.
    pub fn send(&mut self, frame: &RoomFrame, payload: &[u8]) {
        let now = Instant::now();
        let Some(mid) = self.sending.filter(|_| self.connected) else {
            return;
        };
        let Some(pt) = self.pt_for(frame.codec) else {
            return;
        };
        // Each codec's clock runs from the same base at its own rate (48 kHz, 8 kHz).
        let position = match frame.codec {
            RoomCodec::Opus => frame.position,
            RoomCodec::G711(_) => frame.position / 6,
        };
        let timestamp = self.timestamp.wrapping_add(position as u32);
        let seq = self.seq + frame.seq;
        let (level, voice) = (frame.level, frame.voice);
        let ext = ExtensionValues {
            audio_level: Some(-(level.min(127) as i8)),
            voice_activity: Some(voice),
            ..Default::default()
        };
        if let Some(link) = &self.in_process {
            link.send(LocalRtp {
                mid,
                pt,
                seq,
                timestamp,
                marker: false,
                audio_level: ext.audio_level,
                voice_activity: ext.voice_activity,
                payload: Arc::from(payload),
            });
            return;
        }
        let mut api = self.rtc.direct_api();
        if let Some(tx) = api.stream_tx_by_mid(mid, None) {
            let w = RtpWrite::new(pt, SeqNo::from(seq), timestamp, now, payload).ext_vals(ext);
            tx.write_rtp(w);
        }
    }

    /// Whether the leg's media is in-process (its RTP does not go through str0m).
    pub fn is_local(&self) -> bool {
        self.in_process.is_some()
    }

    /// The receiving end of the in-process media, once (the call task selects on it and
    /// hands each packet to [`RoomLeg::on_local`]).
    pub fn take_local_receiver(&mut self) -> Option<mpsc::Receiver<LocalRtp>> {
        self.in_process_rx.take()
    }

    /// A packet of the room that the SFU handed over in-process, on one of our m-lines.
    pub fn on_local(&mut self, rtp: &LocalRtp, sink: &mut impl RoomSink) {
        for s in self.gone.drain(..) {
            sink.gone(s);
        }
        let Some(source) = self.sources.get(&rtp.mid) else {
            return;
        };
        let codec = self
            .rtc
            .codec_config()
            .find(|c| c.pt() == rtp.pt)
            .and_then(|c| room_codec(c.spec().codec));
        let Some(codec) = codec else {
            return;
        };
        sink.audio(RoomAudio {
            source: *source,
            codec,
            seq: rtp.seq as u16,
            timestamp: rtp.timestamp,
            payload: &rtp.payload,
        });
    }

    /// Run str0m's timers and drain its output: datagrams are sent, received audio and
    /// the sources that left go to `sink`. Returns when to call again.
    pub fn poll(&mut self, sink: &mut impl RoomSink) -> Result<Instant, LegError> {
        for s in self.gone.drain(..) {
            sink.gone(s);
        }
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(rtc_err)?;
        loop {
            match self.rtc.poll_output().map_err(rtc_err)? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    // A full socket buffer loses the datagram, as the network would.
                    let _ = self.sock.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => match e {
                    Event::Connected => self.connected = true,
                    Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                        return Err(LegError::Gone)
                    }
                    Event::RtpPacket(p) => {
                        let mid = self
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid());
                        let Some(source) = mid.and_then(|m| self.sources.get(&m)) else {
                            continue;
                        };
                        let pt = p.header.payload_type;
                        let codec = self
                            .rtc
                            .codec_config()
                            .find(|c| c.pt() == pt)
                            .and_then(|c| room_codec(c.spec().codec));
                        let Some(codec) = codec else {
                            continue;
                        };
                        sink.audio(RoomAudio {
                            source: *source,
                            codec,
                            seq: p.header.sequence_number,
                            timestamp: p.header.timestamp,
                            payload: &p.payload,
                        });
                    }
                    _ => {}
                },
            }
        }
    }
}

/// The room's SFU peer: already there, or joining within [`SFU_JOIN_WAIT`].
#[cfg(test)]
mod tests {
    use super::{member_request, MemberRequest};

    #[test]
    fn member_requests() {
        assert_eq!(
            member_request(r#"{"sip":"dtmf","digits":"1 9#x*D"}"#),
            Some(MemberRequest::Dtmf("19#*D".into()))
        );
        assert_eq!(
            member_request(r#"{"sip":"hangup"}"#),
            Some(MemberRequest::Hangup)
        );
        for other in [
            r#"{"sip":"dtmf","digits":"xyz"}"#,
            r#"{"chat":"hi"}"#,
            "[]",
            "not json",
        ] {
            assert_eq!(member_request(other), None, "{other}");
        }
    }
}
