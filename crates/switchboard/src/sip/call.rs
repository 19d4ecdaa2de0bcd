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
use super::room_leg::{LegError, MemberRequest, RoomAudio, RoomLeg, RoomSink, SfuAccess};
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

/// How long a call whose room's node died tries to join the room again: the room's
/// members resume at another node within the grace period, and the room with them.
const REJOIN_FOR: Duration = Duration::from_secs(30);

/// A leg joining its room again ([`join_again`]).
type Rejoin =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<RoomLeg, LegError>> + Send>>;

/// Join `room` again after the node that held it died: the room is found (or claimed
/// for this node, rebuilt from its records) once the cluster sees that node dead, a few
/// seconds on; tried every second for [`REJOIN_FOR`].
async fn join_again(
    signaling: Arc<Signaling>,
    room: String,
    name: String,
    sfu: SfuAccess,
) -> Result<RoomLeg, LegError> {
    let until = Instant::now() + REJOIN_FOR;
    loop {
        match RoomLeg::join(&signaling, &room, &name, &sfu).await {
            Ok(leg) => return Ok(leg),
            Err(e @ LegError::MeshOnly) => return Err(e),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(e) => {
                tracing::debug!(%room, error = %e, "SIP call: the room is not back yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
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

/// The media loop. `Err` carries why the call should end.
async fn bridge(setup: CallSetup) -> Result<(), String> {
    let CallSetup {
        call,
        outbound,
        room,
        pins,
        name,
        negotiated,
        dtls,
        port,
        signaling,
        sfu,
        agent,
        mut commands,
        stats,
        rtp_timeout,
    } = setup;
    let sock = port
        .socket
        .try_clone()
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UdpSocket::from_std)
        .map_err(|e| format!("RTP socket: {e}"))?;
    let mut b = Bridge {
        call,
        leg: None,
        pin: None,
        prompt: None,
        typed: None,
        dtls,
        media: None,
        ssrc: rand::random(),
        held: false,
        phone: None,
        last_rx: Instant::now(),
        keys: VecDeque::new(),
        rfc4733: false,
        agent: agent.clone(),
        stats,
        rtp_timeout,
        published: Default::default(),
        until_publish: PUBLISH_TICKS,
        last_tick: None,
        room_buf: vec![0u8; MIN_ROOM_OUT],
        last_state: None,
    };
    if let Some(n) = &negotiated {
        b.negotiated(n)?;
    }
    // The room's packets when the leg's media is in-process (`--sip-room-media local`).
    let mut local_rx: Option<tokio::sync::mpsc::Receiver<LocalRtp>> = None;
    let mut local_in: Vec<LocalRtp> = Vec::with_capacity(LOCAL_BATCH);
    // The room the call is in (known from the start, or once the PIN is typed), and a
    // leg that is joining it again after the room's node died.
    let mut in_room = room.clone();
    let mut rejoin: Option<Rejoin> = None;
    match &room {
        Some(room) => {
            match RoomLeg::join(&signaling, room, &name, &sfu).await {
                Ok(mut leg) => {
                    local_rx = leg.take_local_receiver();
                    b.leg = Some(leg);
                }
                Err(e) => {
                    let status = match e {
                        LegError::MeshOnly | LegError::NoSfu => 480,
                        _ => 503,
                    };
                    let reason = e.to_string();
                    if outbound {
                        return Err(reason);
                    }
                    let _ = agent.send(AgentCmd::Reject(call, status, reason));
                    return Ok(());
                }
            }
            tracing::info!(%room, name = %name, outbound, "SIP call in the room");
            if outbound {
                b.state("dialing", None);
            } else {
                let _ = agent.send(AgentCmd::Accept(call));
                b.state("connected", None);
            }
        }
        None => {
            // Answered now: the caller types the PIN to a room it is not in yet.
            let _ = agent.send(AgentCmd::Accept(call));
            b.pin = Some(PinEntry::new(Instant::now()));
            b.prompt = Some(Prompt::welcome()?);
            tracing::info!(name = %name, "SIP call: asking for a PIN");
        }
    }
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut phone_buf = vec![0u8; 2048];
    let mut leg_buf = vec![0u8; 2048];
    let mut forward_buf = vec![0u8; 1500];
    let mut phone_out = vec![0u8; 1500];
    let mut room_out = vec![0u8; 1500];
    let mut leg_deadline = Instant::now();
    let mut dtls_deadline = Instant::now();
    // str0m's turn is needed after its own input (signaling, datagrams, its deadline)
    // and after we wrote RTP into it; an in-process leg's packets never touch it.
    let mut poll_leg = true;
    loop {
        let wake = leg_deadline.min(dtls_deadline);
        let writes_rtc = b.leg.as_ref().is_some_and(|l| !l.is_local());
        tokio::select! {
            n = next_local(&mut local_rx, &mut local_in) => {
                if n == 0 {
                    local_rx = None;
                }
            }
            ev = next_signal(&b.leg) => {
                poll_leg = true;
                let outcome = match (ev, &mut b.leg) {
                    (None, _) => Err(LegError::Gone),
                    (Some(ev), Some(leg)) => leg.on_signal(ev),
                    (Some(_), None) => Ok(None),
                };
                match outcome {
                    Ok(Some(req)) => b.member(req),
                    Ok(None) => {}
                    Err(e) => {
                        // A leg in a room of another node lost it (that node died, or the
                        // room moved): the call joins the room again wherever it went.
                        let again = matches!(e, LegError::Gone)
                            && b.leg.as_ref().is_some_and(RoomLeg::is_remote);
                        let Some(room) = in_room.clone().filter(|_| again) else {
                            return Err(e.to_string());
                        };
                        b.leg_lost(&mut local_rx);
                        tracing::info!(%room, name = %name, "SIP call lost its room's node: joining the room again");
                        rejoin = Some(Box::pin(join_again(signaling.clone(), room, name.clone(), sfu.clone())));
                    }
                }
            }
            joined = next_rejoin(&mut rejoin) => {
                rejoin = None;
                let mut leg = joined.map_err(|e| format!("joining the room again: {e}"))?;
                tracing::info!(room = leg.room(), name = %name, remote = leg.is_remote(), "SIP call in the room again");
                local_rx = leg.take_local_receiver();
                b.leg = Some(leg);
                if let Some((state, reason)) = b.last_state.clone() {
                    b.state(&state, reason.as_deref());
                }
                poll_leg = true;
            }
            r = leg_recv(&b.leg, &mut leg_buf) => {
                if let (Ok((n, from)), Some(leg)) = (r, &mut b.leg) {
                    leg.on_datagram(from, &leg_buf[..n]);
                    poll_leg = true;
                }
            }
            r = sock.recv_from(&mut phone_buf) => {
                if let Ok((n, from)) = r {
                    b.phone_packet(from, &mut phone_buf[..n]);
                    poll_leg |= writes_rtc;
                }
            }
            _ = tick.tick() => {
                b.tick(&sock, &mut phone_out, &mut room_out)?;
                poll_leg |= writes_rtc;
            }
            _ = tokio::time::sleep_until(wake.into()) => poll_leg = true,
            cmd = commands.recv() => match cmd {
                None => {
                    b.state("ended", None);
                    return Ok(());
                }
                Some(CallCmd::Ended(reason)) => {
                    b.state("ended", reason.as_deref());
                    return Ok(());
                }
                Some(CallCmd::Ringing) => b.state("ringing", None),
                Some(CallCmd::Media(n)) => b.negotiated(&n)?,
                Some(CallCmd::DtlsAnswer(terms)) => b.dtls_answered(&terms)?,
                Some(CallCmd::Connected) => {
                    if outbound {
                        b.state("connected", None);
                    }
                }
                Some(CallCmd::Dtmf(d)) => b.dtmf_heard(d),
            },
        }
        if let Some(typed) = b.typed.take() {
            if let Some(room) = b.check_pin(&typed, &pins)? {
                let mut leg = RoomLeg::join(&signaling, &room, &name, &sfu)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(%room, name = %name, "SIP call in the room (by PIN)");
                in_room = Some(room);
                local_rx = leg.take_local_receiver();
                b.leg = Some(leg);
                poll_leg = true;
                b.state("connected", None);
            }
        }
        let now = Instant::now();
        // str0m's turn only when it has something to do (an in-process leg's packets never
        // touch it).
        let poll_now = poll_leg || now >= leg_deadline;
        match &mut b.leg {
            Some(leg) if poll_now || !local_in.is_empty() => {
                let mut mixer = Mixer {
                    media: b.media.as_mut(),
                    now,
                    phone: PhoneOut {
                        dtls: &mut b.dtls,
                        to: b.phone,
                        sock: &sock,
                    },
                    buf: &mut forward_buf,
                };
                for rtp in local_in.drain(..) {
                    leg.on_local(&rtp, &mut mixer);
                }
                if poll_now {
                    leg_deadline = leg.poll(&mut mixer).map_err(|e| e.to_string())?;
                }
            }
            Some(_) => {}
            None => leg_deadline = now + Duration::from_secs(1),
        }
        local_in.clear();
        poll_leg &= !poll_now;
        // After the leg: what it passed through to a DTLS-SRTP phone leaves now.
        dtls_deadline = b.dtls_poll(&sock)?;
    }
}

/// The room's next in-process packets into `into` (those queued with it, up to
/// [`LOCAL_BATCH`]); 0 when the SFU side is gone; never, without in-process media.
async fn next_local(
    rx: &mut Option<tokio::sync::mpsc::Receiver<LocalRtp>>,
    into: &mut Vec<LocalRtp>,
) -> usize {
    match rx {
        Some(rx) => rx.recv_many(into, LOCAL_BATCH).await,
        None => std::future::pending().await,
    }
}

/// The leg joined again (or gave up); never, while no leg is joining.
async fn next_rejoin(rejoin: &mut Option<Rejoin>) -> Result<RoomLeg, LegError> {
    match rejoin {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

/// The leg's next signaling event; never, while there is no leg.
async fn next_signal(leg: &Option<RoomLeg>) -> Option<switchboard_signal::ServiceEvent> {
    match leg {
        Some(l) => l.next_signal().await,
        None => std::future::pending().await,
    }
}

/// A datagram on the leg's socket; never, while there is no leg.
async fn leg_recv(leg: &Option<RoomLeg>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match leg {
        Some(l) => l.socket().recv_from(buf).await,
        None => std::future::pending().await,
    }
}
