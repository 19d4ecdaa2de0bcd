//! One call's media, as a task: the phone's RTP port, the room leg (a participant of the
//! room talking to its SFU) and, between them, `switchboard_media::bridge::CallMedia`
//! (jitter buffers, G.711/Opus transcoding or G.711 passthrough, the mix of the room for
//! the phone). The SIP
//! signaling of the call stays in the agent (agent.rs); they talk over two channels.
//!
//! The phone's address is latched (symmetric RTP, RFC 4961): media goes where the
//! phone's authenticated packets come from, which is what works behind NAT; until the
//! first one arrives it goes to the address of the SDP.

use super::dispatch::room_of_pin;
use super::dtls_leg::{self, DtlsLeg, MediaTerms};
use super::pin::{Entry, PinEntry, Prompt, MAX_TRIES, PROMPT_SOURCE};
use super::ports::RtpPort;
use super::room_leg::{MemberRequest, RoomAudio, RoomLeg, RoomSink, SfuAccess};
use super::SipStats;
use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_media::bridge::{
    CallMedia, PhoneCodec, PhoneConfig, PhoneIn, RoomCodec, MIN_ROOM_OUT,
};
use switchboard_media::g711::Law;
use switchboard_media::srtp::SrtpProfile;
use switchboard_sfu::LocalRtp;
use switchboard_signal::Signaling;
use switchboard_sip::sdp::{Codec, Negotiated};
use switchboard_sip::ua::CallId;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

mod event_loop;
use event_loop::bridge;

/// The media tick: one 20 ms frame each way.
const FRAME: Duration = Duration::from_millis(20);
/// In-process room packets handled per turn of the call loop.
const LOCAL_BATCH: usize = 64;

/// How long a DTMF key lasts when the room presses it.
const DTMF_MS: u32 = 160;

/// What the agent tells a call.
#[derive(Debug)]
pub enum CallCmd {
    /// Outbound: the far end rings (180/183).
    Ringing,
    /// What SDP settled, first or again (early media, the answer, a re-INVITE).
    Media(Negotiated),
    /// Outbound with `srtp=dtls`: the far end's DTLS-SRTP answer (DTLS starts from it).
    DtlsAnswer(MediaTerms),
    /// The call is up (outbound: 2xx; inbound: the ACK came).
    Connected,
    /// DTMF from SIP INFO.
    Dtmf(char),
    /// The call ended with this SIP status and reason, if any.
    Ended(Option<String>),
}

/// What a call tells the agent.
#[derive(Debug)]
pub enum AgentCmd {
    /// The room is joined: answer the INVITE.
    Accept(CallId),
    /// The room could not be joined: refuse the INVITE.
    Reject(CallId, u16, String),
    /// The call's media ended on its own (room gone, far end silent) or the room hung
    /// up: hang up.
    Hangup(CallId, String),
    /// Send this key as SIP INFO (the phone has no RFC 4733 events).
    InfoDtmf(CallId, char),
    /// The task ended (after any of the above, or because the agent dropped it).
    Finished(CallId),
}

/// Everything a call task starts with.
pub struct CallSetup {
    pub call: CallId,
    /// Outbound calls join the room at once (the tile shows them dialing); inbound ones
    /// are answered once joined.
    pub outbound: bool,
    /// None: ask the caller for a PIN first (`pins` map them to rooms).
    pub room: Option<String>,
    pub pins: Arc<[(String, String)]>,
    /// How the room sees the caller (or the target dialled).
    pub name: String,
    /// Known for inbound calls; outbound ones learn it from the answer.
    pub negotiated: Option<Negotiated>,
    /// The phone offered DTLS-SRTP with ICE: the DTLS leg terminates it on the RTP port.
    pub dtls: Option<DtlsLeg>,
    pub port: RtpPort,
    pub signaling: Arc<Signaling>,
    pub sfu: SfuAccess,
    pub agent: UnboundedSender<AgentCmd>,
    pub commands: UnboundedReceiver<CallCmd>,
    pub stats: Arc<SipStats>,
    /// No packet from the phone for this long (not on hold): the far end is gone.
    pub rtp_timeout: Duration,
}

/// The call id the app sees.
pub fn call_label(call: CallId) -> String {
    format!("c{}", call.0)
}

/// The phone side's configuration for the bridge, from what SDP settled.
pub fn phone_config(n: &Negotiated, ssrc: u32) -> PhoneConfig {
    PhoneConfig {
        codec: match n.codec {
            Codec::Pcmu => PhoneCodec::G711(Law::Mu),
            Codec::Pcma => PhoneCodec::G711(Law::A),
            Codec::Opus => PhoneCodec::Opus,
        },
        pt: n.pt,
        telephone_event: n.telephone_event,
        ssrc,
        srtp: n
            .srtp
            .as_ref()
            .map(|k| (k.local_key_salt.clone(), k.remote_key_salt.clone())),
        srtp_profile: n
            .srtp
            .as_ref()
            .and_then(|k| SrtpProfile::from_sdes_name(&k.suite))
            .unwrap_or(SrtpProfile::AesCm128HmacSha1_80),
        ptime: n.ptime,
    }
}

/// Where packets for the phone go: the DTLS-SRTP leg (which protects them), else the RTP
/// socket toward the latched address.
struct PhoneOut<'a> {
    dtls: &'a mut Option<DtlsLeg>,
    to: Option<SocketAddr>,
    sock: &'a UdpSocket,
}

impl PhoneOut<'_> {
    fn send(&mut self, packet: &[u8]) {
        match (self.dtls.as_mut(), self.to) {
            (Some(d), _) => d.send_rtp(packet),
            (None, Some(to)) => {
                // A full socket buffer loses the packet, as the network would.
                let _ = self.sock.try_send_to(packet, to);
            }
            (None, None) => {}
        }
    }
}

/// The room's audio into the bridge; a member's G.711 passed through to the phone goes
/// out at once.
struct Mixer<'a> {
    media: Option<&'a mut CallMedia>,
    now: Instant,
    phone: PhoneOut<'a>,
    buf: &'a mut [u8],
}

impl RoomSink for Mixer<'_> {
    fn audio(&mut self, a: RoomAudio<'_>) {
        let Some(m) = self.media.as_deref_mut() else {
            return;
        };
        match m.on_room_audio(self.now, a, self.buf) {
            Ok(0) => {}
            Ok(n) => self.phone.send(&self.buf[..n]),
            Err(e) => tracing::debug!(error = %e, "room audio not passed to the phone"),
        }
    }

    fn gone(&mut self, source: u64) {
        if let Some(m) = self.media.as_deref_mut() {
            m.remove_room_source(source);
        }
    }
}

/// Run the call until the agent drops it or its media ends; always reports `Finished`.
pub async fn run(setup: CallSetup) {
    let call = setup.call;
    let agent = setup.agent.clone();
    let stats = setup.stats.clone();
    stats.media_live.fetch_add(1, Ordering::Relaxed);
    if let Err(reason) = bridge(setup).await {
        let _ = agent.send(AgentCmd::Hangup(call, reason));
    }
    stats.media_live.fetch_sub(1, Ordering::Relaxed);
    let _ = agent.send(AgentCmd::Finished(call));
}

/// The call's media and its place in the room, while it lasts.
struct Bridge {
    call: CallId,
    /// None while the caller types a PIN.
    leg: Option<RoomLeg>,
    /// The PIN being typed, and the prompt playing.
    pin: Option<PinEntry>,
    prompt: Option<Prompt>,
    /// A PIN ended with `#`, to check.
    typed: Option<String>,
    /// DTLS-SRTP + ICE toward the phone (else plain RTP or SDES on the socket).
    dtls: Option<DtlsLeg>,
    media: Option<CallMedia>,
    ssrc: u32,
    held: bool,
    phone: Option<SocketAddr>,
    last_rx: Instant,
    /// Keys from the room waiting for the phone (one at a time).
    keys: VecDeque<char>,
    /// RFC 4733 is negotiated (else keys go as SIP INFO).
    rfc4733: bool,
    agent: UnboundedSender<AgentCmd>,
    stats: Arc<SipStats>,
    rtp_timeout: Duration,
    /// The media counts already added to `stats`, and the ticks until the next add.
    published: switchboard_media::bridge::MediaStats,
    until_publish: u32,
    /// When the last tick ran (to count the ones an overloaded host skipped).
    last_tick: Option<Instant>,
    /// A payload for the room forwarded on the phone's packet's arrival.
    room_buf: Vec<u8>,
    /// The call's last state for the room (a new leg tells it again).
    last_state: Option<(String, Option<String>)>,
}

/// Ticks between two additions of a call's media counts to the metrics (1 s).
const PUBLISH_TICKS: u32 = 50;

impl Drop for Bridge {
    /// However the call ends, its last second of counts reaches the metrics.
    fn drop(&mut self) {
        self.publish();
    }
}

impl Bridge {
    /// The leg is gone (its room's node died): its sources leave the mix, and the phone
    /// hears silence until a new leg is in.
    fn leg_lost(&mut self, local_rx: &mut Option<tokio::sync::mpsc::Receiver<LocalRtp>>) {
        *local_rx = None;
        if let (Some(leg), Some(m)) = (self.leg.take(), self.media.as_mut()) {
            for source in leg.source_ids() {
                m.remove_room_source(source);
            }
        }
    }

    /// Add this call's media counts since the last time to the gateway's metrics.
    fn publish(&mut self) {
        if let Some(m) = &self.media {
            let now = m.stats();
            self.stats.media.add(&self.published, &now);
            self.published = now;
        }
    }

    fn state(&mut self, state: &str, reason: Option<&str>) {
        self.last_state = Some((state.to_string(), reason.map(str::to_string)));
        let Some(leg) = &mut self.leg else {
            return;
        };
        let mut data = json!({"sip": {
            "peer": leg.peer_id().as_ref(),
            "call": call_label(self.call),
            "state": state,
        }});
        if let Some(r) = reason {
            data["sip"]["reason"] = json!(r);
        }
        leg.set_state(data);
    }

    /// A key from the phone: part of a PIN while one is asked for, else news for the room.
    fn dtmf_heard(&mut self, digit: char) {
        if let Some(pin) = &mut self.pin {
            if let Entry::Done(p) = pin.key(digit) {
                self.typed = Some(p);
            }
            return;
        }
        let Some(leg) = &self.leg else {
            return;
        };
        leg.announce(&json!({"sip": {
            "peer": leg.peer_id().as_ref(),
            "call": call_label(self.call),
            "dtmf": digit.to_string(),
        }}));
    }

    /// A PIN ended with `#`: its room, or the wrong-PIN tone (and the end after the last
    /// try).
    fn check_pin(
        &mut self,
        typed: &str,
        pins: &[(String, String)],
    ) -> Result<Option<String>, String> {
        if let Some(room) = room_of_pin(pins, typed) {
            self.pin = None;
            self.prompt = None;
            if let Some(m) = &mut self.media {
                m.remove_room_source(PROMPT_SOURCE);
            }
            return Ok(Some(room.to_string()));
        }
        let Some(pin) = &mut self.pin else {
            return Ok(None);
        };
        pin.tries += 1;
        if pin.tries >= MAX_TRIES {
            return Err(format!("{MAX_TRIES} wrong PINs"));
        }
        if let Some(p) = &self.prompt {
            self.prompt = Some(Prompt::wrong(p)?);
        }
        Ok(None)
    }

    /// SDP settled (again): start or reconfigure the media.
    fn negotiated(&mut self, n: &Negotiated) -> Result<(), String> {
        let cfg = phone_config(n, self.ssrc);
        self.rfc4733 = n.telephone_event.is_some();
        match &mut self.media {
            Some(m) => m.set_phone_codec(cfg).map_err(|e| format!("media: {e}"))?,
            None => {
                self.media =
                    Some(CallMedia::new(cfg, Instant::now()).map_err(|e| format!("media: {e}"))?)
            }
        }
        let held = !n.direction.sends();
        if let Some(m) = &mut self.media {
            m.set_hold(held);
        }
        if let Some(to) = n.remote_rtp {
            self.phone = Some(to);
        }
        self.last_rx = Instant::now();
        if held != self.held {
            self.held = held;
            let state = if held { "held" } else { "connected" };
            self.state(state, None);
        }
        Ok(())
    }

    fn member(&mut self, req: MemberRequest) {
        match req {
            MemberRequest::Hangup => {
                let _ = self
                    .agent
                    .send(AgentCmd::Hangup(self.call, "hung up from the room".into()));
            }
            MemberRequest::Dtmf(keys) if self.rfc4733 => self.keys.extend(keys.chars()),
            MemberRequest::Dtmf(keys) => {
                for k in keys.chars() {
                    let _ = self.agent.send(AgentCmd::InfoDtmf(self.call, k));
                }
            }
        }
    }

    /// One 20 ms frame each way.
    fn tick(
        &mut self,
        sock: &UdpSocket,
        phone_out: &mut [u8],
        room_out: &mut [u8],
    ) -> Result<(), String> {
        let now = Instant::now();
        if let Some(last) = self.last_tick {
            // A tick more than half a frame late: the frames in between were skipped.
            let late = now.saturating_duration_since(last).as_micros() as u64;
            let frame = FRAME.as_micros() as u64;
            let missed = late.saturating_sub(frame / 2) / frame;
            if missed > 0 {
                self.stats
                    .media
                    .ticks_missed
                    .fetch_add(missed, Ordering::Relaxed);
            }
        }
        self.last_tick = Some(now);
        self.until_publish = self.until_publish.saturating_sub(1);
        if self.until_publish == 0 {
            self.until_publish = PUBLISH_TICKS;
            self.publish();
        }
        let Some(media) = &mut self.media else {
            return Ok(());
        };
        if let Some(leg) = &self.leg {
            // The phone's G.711 goes to the room as it came only in a law the leg can send.
            let sends = |law| leg.sends(RoomCodec::G711(law));
            media.set_room_g711(sends(Law::Mu), sends(Law::A));
        }
        if let Some((seq, ts, frame)) = self.prompt.as_mut().and_then(Prompt::next_frame) {
            media.on_room_opus(now, PROMPT_SOURCE, seq, ts, frame);
        }
        if let Some(pin) = &self.pin {
            if now > pin.deadline {
                return Err("no PIN entered".into());
            }
        }
        if let Some(&k) = self.keys.front() {
            if media.send_dtmf(now, k, DTMF_MS).is_ok() {
                self.keys.pop_front();
            }
        }
        let t = media
            .tick(now, phone_out, room_out)
            .map_err(|e| format!("media: {e}"))?;
        if t.phone_len > 0 {
            let mut to_phone = PhoneOut {
                dtls: &mut self.dtls,
                to: self.phone,
                sock,
            };
            to_phone.send(&phone_out[..t.phone_len]);
        }
        if let (Some(leg), true) = (&mut self.leg, t.room.len > 0) {
            leg.send(&t.room, &room_out[..t.room.len]);
        }
        if !self.held && now.duration_since(self.last_rx) > self.rtp_timeout {
            return Err(format!(
                "no RTP from the phone for {} s",
                self.rtp_timeout.as_secs()
            ));
        }
        Ok(())
    }

    fn phone_packet(&mut self, from: SocketAddr, packet: &mut [u8]) {
        if let Some(d) = &mut self.dtls {
            // ICE, DTLS and SRTP are the DTLS leg's; an SRTP packet comes back as plain
            // RTP in the same buffer.
            if let Some(len) = d.on_datagram(from, packet) {
                self.bridge_packet(from, &mut packet[..len]);
            }
            return;
        }
        self.bridge_packet(from, packet);
    }

    /// Call out with `srtp=dtls`: the answer starts the leg's DTLS and the media.
    fn dtls_answered(&mut self, terms: &MediaTerms) -> Result<(), String> {
        let Some(d) = &mut self.dtls else {
            return Err("a DTLS-SRTP answer to a call without a DTLS leg".into());
        };
        d.on_answer(terms)
            .map_err(|e| format!("DTLS to the phone: {e}"))?;
        self.negotiated(&dtls_leg::negotiated(terms))
    }

    /// The DTLS leg's timers and what it has to send.
    fn dtls_poll(&mut self, sock: &UdpSocket) -> Result<Instant, String> {
        match &mut self.dtls {
            Some(d) => d.poll(sock),
            None => Ok(Instant::now() + Duration::from_secs(3600)),
        }
    }

    fn bridge_packet(&mut self, from: SocketAddr, packet: &mut [u8]) {
        let Some(media) = &mut self.media else {
            return;
        };
        let arrival = media.on_phone_packet(Instant::now(), packet, &mut self.room_buf);
        if let (Ok(a), Some(leg)) = (&arrival, &mut self.leg) {
            // The phone's G.711 passed through to the room goes out at once.
            if let Some(frame) = &a.room {
                leg.send(frame, &self.room_buf[..frame.len]);
            }
        }
        match arrival.map(|a| a.kind) {
            Ok(PhoneIn::Ignored) => {}
            Ok(_) => {
                // With DTLS-SRTP, where media goes is ICE's choice, not latching.
                if self.phone != Some(from) && self.dtls.is_none() {
                    tracing::debug!(%from, "phone RTP latched");
                    self.phone = Some(from);
                }
                self.last_rx = Instant::now();
            }
            Err(_) => {
                self.stats.rtp_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some(d) = self.media.as_mut().and_then(CallMedia::poll_dtmf) {
            self.stats.dtmf_received.fetch_add(1, Ordering::Relaxed);
            self.dtmf_heard(d);
        }
    }
}
