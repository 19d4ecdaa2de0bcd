//! The in-test network for the SFU tests: browsers are plain str0m `Rtc`s (full ICE,
//! controlling, one host candidate, RTP mode), the SFU is the sans-IO `Sfu`, datagrams
//! and signaling relays move between them in a loop on fake time. No sockets.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use switchboard_sfu::{
    GoneReason, Grants, Sfu, SfuConfig, SfuOutput, SignalIn, SignalKind, Transport,
};

pub const ROOM: &str = "room";

/// A datagram (or TCP frame) from a client to the SFU: transport, source, destination, bytes.
type ToSfu = (Transport, SocketAddr, SocketAddr, Vec<u8>);

/// One m-line a client publishes: kind, simulcast, source.
pub type Publish = (MediaKind, bool, &'static str);

pub fn sfu_addr() -> SocketAddr {
    "10.0.0.1:3480".parse().unwrap()
}

/// A browser stand-in.
pub struct Client {
    pub peer: String,
    pub addr: SocketAddr,
    /// Its local candidate's address (for TCP the announced one, port 9; `addr` is then
    /// the remote address of its connection, what the SFU sees).
    pub local: SocketAddr,
    /// Reaches the SFU only by TCP (an active TCP candidate, RFC 4571 frames): its
    /// packets go to the SFU's TCP candidate, the SFU's reach it only by TCP.
    pub transport: Transport,
    pub rtc: Rtc,
    /// The client's own offer waiting for the SFU's answer: what it adds (media kind,
    /// simulcast, source) and the mids str0m gave them.
    pub pending: Option<(SdpPendingOffer, Vec<Publish>, Vec<Mid>)>,
    /// Mids this client sends on (answered).
    pub sending: Vec<Mid>,
    /// Client offers the SFU ignored because of glare (rolled back and re-sent).
    pub rollbacks: u32,
    /// Does not take part in the network any more (vanished without a goodbye).
    pub dead: bool,
    /// Offers and sends H264 only (an encoder such as OBS), not VP8.
    pub h264: bool,
    /// The audio codec it sends (the first of the audio codecs it offered).
    pub audio: Codec,
    /// Payload type and payload of the latest RTP packet received per local mid.
    pub last_rtp: HashMap<Mid, (u8, Vec<u8>)>,
    /// The SFU→client link is shaped (rate, loss) when set.
    pub shaper: Option<Shaper>,
    pub channel: Option<ChannelId>,
    pub channel_open: bool,
    /// Relays from the SFU not yet handled (with `auto` they are handled by the loop).
    pub inbox: VecDeque<(SignalKind, String)>,
    pub auto: bool,
    /// Every `{"sfu":...}` message received, in order.
    pub messages: Vec<serde_json::Value>,
    pub data: Vec<String>,
    /// RTP packets received per local mid.
    pub rtp: HashMap<Mid, u64>,
    /// RTP packets received per (mid, sequence number) (to check continuity).
    pub rtp_seqs: HashMap<Mid, Vec<u64>>,
    pub keyframe_requests: u64,
    pub connected: bool,
    /// RFC 6464 level (−dBov as str0m's negative i8) put on outgoing audio packets.
    pub level: Option<i8>,
    pub offers_received: u32,
    pub answers_received: u32,
    /// The peers its last `publish` named, per entry (a node link's).
    pub origins: Vec<String>,
    seq: u64,
}

/// A downlink with a rate (a 250 ms tail-drop buffer) and random loss.
pub struct Shaper {
    pub bps: u64,
    pub loss_permille: u32,
    /// One-way propagation delay added to every packet.
    pub delay: Duration,
    free_at: Option<Instant>,
    queue: VecDeque<(Instant, Vec<u8>)>,
    rng: u64,
    pub dropped: u64,
}

impl Shaper {
    pub fn new(bps: u64, loss_permille: u32) -> Shaper {
        Shaper {
            bps,
            loss_permille,
            delay: Duration::from_millis(20),
            free_at: None,
            queue: VecDeque::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
            dropped: 0,
        }
    }

    fn offer(&mut self, now: Instant, bytes: Vec<u8>) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if (self.rng % 1000) < u64::from(self.loss_permille) {
            self.dropped += 1;
            return;
        }
        let start = self.free_at.map_or(now, |f| f.max(now));
        if start.saturating_duration_since(now) > Duration::from_millis(250) {
            self.dropped += 1;
            return;
        }
        let tx = Duration::from_micros((bytes.len() as u64 + 28) * 8 * 1_000_000 / self.bps);
        self.free_at = Some(start + tx);
        self.queue.push_back((start + tx + self.delay, bytes));
    }
}

pub struct Net {
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    pub now: Instant,
    pub gone: Vec<(String, GoneReason)>,
    pub rooms_empty: Vec<String>,
    /// Clients get str0m's bandwidth estimation (and its pacer); off, they send at once.
    pub client_bwe: bool,
    /// New clients offer H264 as their only video codec.
    pub h264_clients: bool,
    /// New clients offer these audio codecs, in this order (and VP8), and send the
    /// first; `None`: str0m's defaults (Opus).
    pub audio_codecs: Option<Vec<Codec>>,
    /// With `audio_codecs`: PCMU under this dynamic payload type instead of the static 0
    /// (to see the SFU map payload types).
    pub pcmu_pt: Option<u8>,
    /// New clients have only a TCP (active) candidate.
    pub tcp_clients: bool,
    /// Wall time spent inside the SFU's calls (for the cost test).
    pub sfu_cpu: Duration,
    /// RTP packets per video frame of a (non-simulcast VP8) publisher. Above 1 a frame
    /// is also sent the way a browser's pacer sends it with headroom: its packets (and
    /// the frame's audio) leave back to back and reach the SFU in one receive batch.
    pub video_frame_packets: u64,
    /// Packets for participants with in-process media (`Sfu::set_local_media`), by peer.
    pub local_rtp: Vec<(String, switchboard_sfu::LocalRtp)>,
}

pub fn config() -> SfuConfig {
    SfuConfig {
        ufrag_prefix: "w1x".into(),
        candidates: vec![sfu_addr()],
        ..SfuConfig::default()
    }
}

impl Net {
    pub fn new() -> Net {
        Self::with_config(config())
    }

    pub fn with_config(cfg: SfuConfig) -> Net {
        let now = Instant::now();
        Net {
            sfu: Sfu::new(cfg, now).unwrap(),
            clients: Vec::new(),
            now,
            gone: Vec::new(),
            rooms_empty: Vec::new(),
            client_bwe: true,
            h264_clients: false,
            audio_codecs: None,
            pcmu_pt: None,
            tcp_clients: false,
            sfu_cpu: Duration::ZERO,
            video_frame_packets: 1,
            local_rtp: Vec::new(),
        }
    }

    /// A browser joins the SFU room (the hub told the driver); returns its index.
    pub fn join(&mut self, peer: &str, grants: Grants) -> usize {
        self.sfu
            .add_participant(ROOM, peer, grants, self.now)
            .unwrap();
        self.join_client(peer)
    }

    fn join_client(&mut self, peer: &str) -> usize {
        let n = self.clients.len() as u8 + 2;
        let addr: SocketAddr = format!("10.0.1.{n}:5000").parse().unwrap();
        let mut builder = Rtc::builder().set_rtp_mode(true);
        if self.client_bwe {
            builder = builder.enable_bwe(None);
        }
        if self.h264_clients {
            builder = builder
                .clear_codecs()
                .enable_opus(true, false)
                .enable_h264(true);
        }
        if let Some(codecs) = &self.audio_codecs {
            builder = builder.clear_codecs();
            for codec in codecs {
                builder = match codec {
                    Codec::Opus => builder.enable_opus(true, false),
                    Codec::PCMU => match self.pcmu_pt {
                        Some(pt) => {
                            builder.codec_config().add_config(
                                pt.into(),
                                None,
                                Codec::PCMU,
                                str0m::media::Frequency::EIGHT_KHZ,
                                None,
                                Default::default(),
                            );
                            builder
                        }
                        None => builder.enable_pcmu(true, false),
                    },
                    Codec::PCMA => builder.enable_pcma(true, false),
                    other => panic!("no audio codec {other:?} in the test clients"),
                };
            }
            builder = builder.enable_vp8(true);
        }
        let mut rtc = builder.build(self.now);
        let (transport, local) = if self.tcp_clients {
            // As a browser does: an active candidate with the discard port 9 (RFC 6544
            // §4.5); its connection comes from another port (`addr`), which the SFU
            // learns from the STUN checks as a peer-reflexive candidate.
            let local: SocketAddr = format!("10.0.1.{n}:9").parse().unwrap();
            let c = Candidate::builder()
                .tcp()
                .host(local)
                .tcptype(TcpType::Active)
                .build()
                .unwrap();
            rtc.add_local_candidate(c);
            (Transport::Tcp, local)
        } else {
            rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
            (Transport::Udp, addr)
        };
        self.clients.push(Client {
            peer: peer.into(),
            addr,
            local,
            transport,
            rtc,
            pending: None,
            sending: Vec::new(),
            rollbacks: 0,
            dead: false,
            // A fast link with a realistic delay (the estimator reads delay variation).
            shaper: Some(Shaper::new(100_000_000, 0)),
            h264: self.h264_clients,
            audio: self
                .audio_codecs
                .as_ref()
                .and_then(|c| c.first().copied())
                .unwrap_or(Codec::Opus),
            last_rtp: HashMap::new(),
            channel: None,
            channel_open: false,
            inbox: VecDeque::new(),
            auto: true,
            messages: Vec::new(),
            data: Vec::new(),
            rtp: HashMap::new(),
            rtp_seqs: HashMap::new(),
            keyframe_requests: 0,
            connected: false,
            level: None,
            offers_received: 0,
            answers_received: 0,
            origins: Vec::new(),
            seq: 0,
        });
        self.clients.len() - 1
    }

    pub fn idx(&self, peer: &str) -> usize {
        self.clients.iter().position(|c| c.peer == peer).unwrap()
    }

    /// The client offers: the data channel (first time) plus `media` (kind, simulcast),
    /// sources camera/microphone.
    pub fn offer(&mut self, c: usize, media: &[(MediaKind, bool)]) {
        let media = media
            .iter()
            .map(|(k, s)| {
                (
                    *k,
                    *s,
                    if *k == MediaKind::Audio {
                        "microphone"
                    } else {
                        "camera"
                    },
                )
            })
            .collect();
        self.make_offer(c, media, &[]);
    }

    /// Offer `media` with explicit sources, announced by a `publish` message first.
    pub fn offer_sources(&mut self, c: usize, media: &[(MediaKind, bool, &'static str)]) {
        self.make_offer(c, media.to_vec(), &[]);
    }

    /// As `offer_sources`, the `publish` entries naming the peer each track is forwarded
    /// for (a node link's offer).
    pub fn offer_for(&mut self, c: usize, media: &[(MediaKind, bool, &'static str, &str)]) {
        let origins: Vec<&str> = media.iter().map(|m| m.3).collect();
        let media = media.iter().map(|m| (m.0, m.1, m.2)).collect();
        self.make_offer(c, media, &origins);
    }

    fn make_offer(
        &mut self,
        c: usize,
        media: Vec<(MediaKind, bool, &'static str)>,
        origins: &[&str],
    ) {
        let cl = &mut self.clients[c];
        let mut api = cl.rtc.sdp_api();
        let mut mids = Vec::new();
        for (kind, simulcast, _) in &media {
            let sim = simulcast.then(|| {
                let mut s = Simulcast::new();
                for r in ["q", "h", "f"] {
                    s.add_send_layer(SimulcastLayer::new(r));
                }
                s
            });
            mids.push(api.add_media(*kind, Direction::SendOnly, None, None, sim));
        }
        if cl.channel.is_none() {
            cl.channel = Some(api.add_channel_with_config(ChannelConfig {
                label: "switchboard".into(),
                negotiated: Some(0),
                ..Default::default()
            }));
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        cl.origins = origins.iter().map(|o| o.to_string()).collect();
        let publish: Vec<serde_json::Value> = media
            .iter()
            .zip(&mids)
            .enumerate()
            .map(|(i, ((_, _, source), mid))| match origins.get(i) {
                Some(peer) => {
                    serde_json::json!({"mid": mid.to_string(), "source": source, "peer": peer})
                }
                None => serde_json::json!({"mid": mid.to_string(), "source": source}),
            })
            .collect();
        cl.pending = Some((pending, media, mids));
        let sdp = offer.to_sdp_string();
        let peer = cl.peer.clone();
        let publish = serde_json::json!({"sfu": "publish", "tracks": publish}).to_string();
        self.sfu
            .handle_signal(ROOM, &peer, SignalIn::Message(&publish), self.now)
            .unwrap();
        let payload = serde_json::to_string(&sdp).unwrap();
        self.sfu
            .handle_signal(ROOM, &peer, SignalIn::Offer(&payload), self.now)
            .unwrap();
    }

    /// A one-shot participant (WHEP player) joins: returns its index.
    pub fn join_fixed(&mut self, peer: &str) -> usize {
        let c = self.join_client(peer);
        self.sfu
            .add_fixed_participant(ROOM, peer, Grants::default(), self.now)
            .unwrap();
        c
    }

    /// Client `c` offers recvonly m-lines of `kinds` (no data channel, no `publish`).
    pub fn offer_recvonly(&mut self, c: usize, kinds: &[MediaKind]) {
        let cl = &mut self.clients[c];
        let mut api = cl.rtc.sdp_api();
        for kind in kinds {
            api.add_media(*kind, Direction::RecvOnly, None, None, None);
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        cl.pending = Some((pending, Vec::new(), Vec::new()));
        let payload = serde_json::to_string(&offer.to_sdp_string()).unwrap();
        let peer = cl.peer.clone();
        self.sfu
            .handle_signal(ROOM, &peer, SignalIn::Offer(&payload), self.now)
            .unwrap();
    }

    /// Send a `{"sfu":...}` message from client `c`.
    pub fn message(&mut self, c: usize, json: &str) {
        let peer = self.clients[c].peer.clone();
        self.sfu
            .handle_signal(ROOM, &peer, SignalIn::Message(json), self.now)
            .unwrap();
    }

    /// Handle one relay from the SFU as a polite perfect-negotiation browser.
    pub fn handle_relay(&mut self, c: usize, kind: SignalKind, payload: String) {
        match kind {
            SignalKind::Message => {
                let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
                self.clients[c].messages.push(v);
            }
            SignalKind::Offer => {
                let sdp: String = serde_json::from_str(&payload).unwrap();
                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                let cl = &mut self.clients[c];
                cl.offers_received += 1;
                // Polite: a pending own offer is rolled back (str0m drops it on accept)
                // and made again after the answer.
                let rolled_back = cl.pending.take();
                if let Some((_, media, _)) = &rolled_back {
                    cl.rollbacks += 1;
                    if !cl.channel_open && media.is_empty() {
                        cl.channel = None;
                    }
                }
                let answer = cl.rtc.sdp_api().accept_offer(offer).unwrap();
                let payload = serde_json::to_string(&answer.to_sdp_string()).unwrap();
                let peer = cl.peer.clone();
                self.sfu
                    .handle_signal(ROOM, &peer, SignalIn::Answer(&payload), self.now)
                    .unwrap();
                if let Some((_, media, _)) = rolled_back {
                    let origins = std::mem::take(&mut self.clients[c].origins);
                    let origins: Vec<&str> = origins.iter().map(String::as_str).collect();
                    self.make_offer(c, media, &origins);
                }
            }
            SignalKind::Answer => {
                let sdp: String = serde_json::from_str(&payload).unwrap();
                let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                let cl = &mut self.clients[c];
                cl.answers_received += 1;
                if let Some((p, _, mids)) = cl.pending.take() {
                    cl.rtc.sdp_api().accept_answer(p, answer).unwrap();
                    cl.sending.extend(mids);
                }
            }
        }
    }

    /// Drain client `c`'s output (str0m keeps one received RTP packet until polled, so
    /// every input is followed by this). Datagrams for the SFU go to `to_sfu`.
    fn drain_client(&mut self, c: usize, to_sfu: &mut Vec<ToSfu>) -> bool {
        let mut moved = false;
        let cl = &mut self.clients[c];
        if cl.dead {
            return false;
        }
        loop {
            let out = match cl.rtc.poll_output() {
                Ok(o) => o,
                Err(_) => break,
            };
            match out {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    moved = true;
                    if t.destination == sfu_addr() {
                        let transport = match t.proto {
                            Protocol::Udp => Transport::Udp,
                            _ => Transport::Tcp,
                        };
                        assert_eq!(transport, cl.transport, "only its own candidate");
                        assert_eq!(t.source, cl.local);
                        // What leaves the candidate comes from its socket's address.
                        to_sfu.push((transport, cl.addr, t.destination, t.contents.into()));
                    }
                }
                Output::Event(e) => {
                    moved = true;
                    on_client_event(cl, e);
                }
            }
        }
        moved
    }

    fn deliver(&mut self, c: usize, contents: &[u8], to_sfu: &mut Vec<ToSfu>) {
        let r = Receive {
            proto: match self.clients[c].transport {
                Transport::Udp => Protocol::Udp,
                Transport::Tcp => Protocol::Tcp,
            },
            source: sfu_addr(),
            destination: self.clients[c].local,
            contents: contents.try_into().unwrap(),
        };
        let now = self.now;
        if let Err(e) = self.clients[c].rtc.handle_input(Input::Receive(now, r)) {
            panic!("client input error: {e}");
        }
        self.drain_client(c, to_sfu);
    }

    /// One receive batch of datagrams into the SFU, then its flush (as the driver does
    /// after each `recvmmsg`).
    fn send_to_sfu(&mut self, batch: &mut Vec<ToSfu>) {
        if batch.is_empty() {
            return;
        }
        let t0 = std::time::Instant::now();
        for (transport, src, dst, bytes) in batch.drain(..) {
            match transport {
                Transport::Udp => self.sfu.handle_datagram(self.now, src, dst, &bytes),
                Transport::Tcp => self.sfu.handle_tcp_frame(self.now, src, dst, &bytes),
            };
        }
        self.sfu.flush(self.now);
        self.sfu_cpu += t0.elapsed();
    }

    /// One pass of the network: clients' output to the SFU, the SFU's output to clients.
    fn pump(&mut self) -> bool {
        let mut moved = false;
        let mut to_sfu = Vec::new();
        for c in 0..self.clients.len() {
            loop {
                let now = self.now;
                let due = match self.clients[c].shaper.as_mut() {
                    Some(sh) if sh.queue.front().is_some_and(|(at, _)| *at <= now) => {
                        sh.queue.pop_front()
                    }
                    _ => None,
                };
                let Some((_, bytes)) = due else { break };
                moved = true;
                self.deliver(c, &bytes, &mut to_sfu);
            }
        }
        for c in 0..self.clients.len() {
            moved |= self.drain_client(c, &mut to_sfu);
        }
        self.send_to_sfu(&mut to_sfu);
        while let Some(o) = self.sfu.poll_output() {
            moved = true;
            match o {
                SfuOutput::Transmit {
                    transport,
                    source,
                    destination,
                    contents,
                } => {
                    assert_eq!(source, sfu_addr());
                    if let Some(c) = self
                        .clients
                        .iter()
                        .position(|c| c.addr == destination && c.transport == transport && !c.dead)
                    {
                        if let Some(sh) = self.clients[c].shaper.as_mut() {
                            sh.offer(self.now, contents);
                            continue;
                        }
                        self.deliver(c, &contents, &mut to_sfu);
                    }
                }
                SfuOutput::Signal {
                    room,
                    to,
                    kind,
                    payload,
                } => {
                    assert_eq!(&*room, ROOM);
                    let c = self.idx(&to);
                    self.clients[c].inbox.push_back((kind, payload));
                }
                SfuOutput::ParticipantGone { peer, reason, .. } => {
                    self.gone.push((peer.to_string(), reason))
                }
                SfuOutput::RoomEmpty { room } => self.rooms_empty.push(room.to_string()),
                SfuOutput::LocalRtp { peer, rtp, .. } => {
                    self.local_rtp.push((peer.to_string(), rtp))
                }
            }
        }
        moved |= !to_sfu.is_empty();
        self.send_to_sfu(&mut to_sfu);
        for c in 0..self.clients.len() {
            if !self.clients[c].auto || self.clients[c].dead {
                continue;
            }
            while let Some((kind, payload)) = self.clients[c].inbox.pop_front() {
                moved = true;
                self.handle_relay(c, kind, payload);
            }
        }
        moved
    }

    /// Run for `d` of fake time in `step`s.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(Duration::from_millis(5));
        }
    }

    pub fn step(&mut self, step: Duration) {
        for _ in 0..20 {
            if !self.pump() {
                break;
            }
        }
        self.now += step;
        let now = self.now;
        for cl in self.clients.iter_mut().filter(|c| !c.dead) {
            let _ = cl.rtc.handle_input(Input::Timeout(now));
        }
        if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
            let t0 = std::time::Instant::now();
            self.sfu.handle_timeout(now);
            self.sfu_cpu += t0.elapsed();
        }
    }

    /// Run until `f` holds (at most `limit` of fake time); panics otherwise.
    pub fn run_until(&mut self, limit: Duration, what: &str, mut f: impl FnMut(&Net) -> bool) {
        let end = self.now + limit;
        while self.now < end {
            if f(self) {
                return;
            }
            self.step(Duration::from_millis(5));
        }
        panic!("not within {limit:?}: {what}");
    }

    /// Client `c` sends one frame on each of its sending m-lines (all layers for a
    /// simulcast one): one RTP packet, or `video_frame_packets` for a non-simulcast VP8
    /// video. Video payloads are VP8; `keyframe` marks them as such.
    pub fn send_media(&mut self, c: usize, keyframe: bool) {
        let now = self.now;
        let frame_packets = self.video_frame_packets.max(1);
        let cl = &mut self.clients[c];
        cl.seq += 1;
        let seq = cl.seq;
        let mids = cl.sending.clone();
        for mid in mids {
            let Some(media) = cl.rtc.media(mid) else {
                continue;
            };
            let kind = media.kind();
            let rids: Vec<Option<Rid>> = match media.rids_tx() {
                str0m::media::Rids::Specific(r) if !r.is_empty() => {
                    r.iter().map(|r| Some(*r)).collect()
                }
                _ => vec![None],
            };
            let codec = if kind == MediaKind::Video && cl.h264 {
                Codec::H264
            } else if kind == MediaKind::Video {
                Codec::Vp8
            } else {
                cl.audio
            };
            let Some(pt) = cl
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            for rid in rids {
                let payload: Vec<u8> = if codec == Codec::H264 {
                    // An IDR slice or a non-IDR one.
                    let mut v = vec![if keyframe { 0x65 } else { 0x41 }, 0x88];
                    v.resize(150, 0xAB);
                    v
                } else if kind == MediaKind::Video {
                    // VP8 descriptor S=1 PID=0, then the frame tag (P bit = !keyframe) and,
                    // for a keyframe, the start code 9d 01 2a (RFC 6386 §9.1).
                    // The keyframe header carries the layer's size (14-bit LE w, h).
                    let (w, h): (u16, u16) = match rid.as_deref() {
                        Some("q") => (320, 180),
                        Some("h") => (640, 360),
                        Some("f") => (1280, 720),
                        _ => (640, 480),
                    };
                    let mut v = if keyframe {
                        let mut k = vec![0x10, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a];
                        k.extend_from_slice(&w.to_le_bytes());
                        k.extend_from_slice(&h.to_le_bytes());
                        k
                    } else {
                        vec![0x10, 0x11, 0x00, 0x00]
                    };
                    // Layers of realistic relative rates (50 packets/s each).
                    let len = match rid.as_deref() {
                        Some("q") => 300,
                        Some("h") => 800,
                        Some("f") => 1150,
                        _ => 150,
                    };
                    v.resize(len, 0xAB);
                    v
                } else if matches!(codec, Codec::PCMU | Codec::PCMA) {
                    // 20 ms of G.711 whose bytes tell the packets apart.
                    (0..160u32).map(|i| (i as u64 + seq) as u8).collect()
                } else {
                    vec![0xFC; 80]
                };
                let mut ext = str0m::rtp::ExtensionValues::default();
                if kind == MediaKind::Audio {
                    if let Some(l) = cl.level {
                        ext.audio_level = Some(l);
                        ext.voice_activity = Some(true);
                    }
                }
                let mut api = cl.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(mid, rid) else {
                    continue;
                };
                let ticks = match codec {
                    Codec::PCMU | Codec::PCMA => 160,
                    _ if kind == MediaKind::Video => 3000,
                    _ => 960,
                };
                let ts = (seq as u32).wrapping_mul(ticks);
                // A frame of several packets: the first as above, the rest
                // VP8 continuations (S=0), the marker on the last; sequence numbers
                // `seq * n + i` (one stream per m-line: no gap between frames).
                let n = if codec == Codec::Vp8 && rid.is_none() {
                    frame_packets
                } else {
                    1
                };
                if n > 1 {
                    tx.set_unpaced(true);
                }
                for i in 0..n {
                    let bytes = match i {
                        0 => payload.clone(),
                        _ => {
                            let mut v = vec![0x00];
                            v.resize(payload.len(), 0xAB);
                            v
                        }
                    };
                    tx.write_rtp(
                        RtpWrite::new(pt, SeqNo::from(seq * n + i), ts, now, bytes)
                            .marker(i + 1 == n)
                            .ext_vals(ext.clone())
                            .nackable(true),
                    );
                }
            }
        }
    }

    /// Everything client `c` has queued leaves now, back to back (str0m's pacer lets one
    /// packet go per timeout), and reaches the SFU as one receive batch.
    fn send_burst(&mut self, c: usize) {
        let mut batch = self.release_queued(c);
        self.send_to_sfu(&mut batch);
    }

    fn release_queued(&mut self, c: usize) -> Vec<ToSfu> {
        let mut batch = Vec::new();
        loop {
            let before = batch.len();
            let now = self.now;
            let _ = self.clients[c].rtc.handle_input(Input::Timeout(now));
            self.drain_client(c, &mut batch);
            if batch.len() == before {
                return batch;
            }
        }
    }

    /// Client `c`'s queued packets go into the SFU (`handle_datagram`) without the
    /// batch's `flush`; returns how many.
    pub fn deliver_unflushed(&mut self, c: usize) -> usize {
        let batch = self.release_queued(c);
        for (_, src, dst, bytes) in &batch {
            self.sfu.handle_datagram(self.now, *src, *dst, bytes);
        }
        batch.len()
    }

    /// Run `d` of fake time with client `c` sending media every 20 ms (keyframes every
    /// `key_every` packets).
    pub fn stream(&mut self, senders: &[usize], d: Duration, key_every: u64) {
        let end = self.now + d;
        let mut n = 0u64;
        while self.now < end {
            for &c in senders {
                self.send_media(c, n.is_multiple_of(key_every));
                if self.video_frame_packets > 1 {
                    self.send_burst(c);
                }
            }
            n += 1;
            for _ in 0..20 {
                self.step(Duration::from_millis(1));
            }
        }
    }

    pub fn client(&self, peer: &str) -> &Client {
        &self.clients[self.idx(peer)]
    }

    /// Connect `peers` (join with all grants, offer `media`) and run until all are
    /// connected and every SFU offer is answered.
    pub fn connect_all(&mut self, peers: &[(&str, &[(MediaKind, bool)])]) {
        for (peer, media) in peers {
            let c = self.join(peer, Grants::default());
            self.offer(c, media);
        }
        self.run_until(Duration::from_secs(5), "all connected", |n| {
            n.clients
                .iter()
                .all(|c| c.connected && c.pending.is_none() && c.inbox.is_empty())
        });
        self.run_for(Duration::from_millis(300));
    }
}

impl Client {
    /// `{"sfu":kind}` messages received.
    pub fn msgs(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.messages.iter().filter(|m| m["sfu"] == kind).collect()
    }

    /// The latest `tracks` map: (mid, peer, source, kind).
    pub fn tracks(&self) -> Vec<(String, String, String, String)> {
        let Some(last) = self.msgs("tracks").last().copied() else {
            return Vec::new();
        };
        last["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("mid"), s("peer"), s("source"), s("kind"))
            })
            .collect()
    }

    /// RTP packets received on the m-line that carries `peer`'s `kind` track.
    pub fn received_from(&self, peer: &str, kind: &str) -> u64 {
        self.tracks()
            .iter()
            .filter(|t| t.1 == peer && t.3 == kind)
            .map(|t| self.rtp.get(&Mid::from(t.0.as_str())).copied().unwrap_or(0))
            .sum()
    }

    /// Ask the SFU for a keyframe on every video m-line this client receives.
    pub fn request_keyframes(&mut self) {
        let mids: Vec<Mid> = self
            .tracks()
            .iter()
            .filter(|t| t.3 == "video")
            .map(|t| Mid::from(t.0.as_str()))
            .collect();
        for mid in mids {
            if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
                rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
            }
        }
    }

    /// The mid of the m-line carrying `peer`'s `source`.
    pub fn mid_of(&self, peer: &str, source: &str) -> Option<String> {
        self.tracks()
            .into_iter()
            .find(|t| t.1 == peer && t.2 == source)
            .map(|t| t.0)
    }

    /// Send a data-channel text.
    pub fn send_data(&mut self, text: &str) -> bool {
        let Some(id) = self.channel else { return false };
        let Some(mut ch) = self.rtc.channel(id) else {
            return false;
        };
        ch.write(false, text.as_bytes()).unwrap_or(false)
    }
}

fn on_client_event(cl: &mut Client, e: Event) {
    match e {
        Event::Connected => cl.connected = true,
        Event::ChannelOpen(id, _) => {
            cl.channel = Some(id);
            cl.channel_open = true;
        }
        Event::ChannelData(d) => cl.data.push(String::from_utf8(d.data).unwrap()),
        Event::RtpPacket(p) => {
            let mid = cl
                .rtc
                .direct_api()
                .stream_rx(&p.header.ssrc)
                .map(|s| s.mid());
            if let Some(mid) = mid {
                *cl.rtp.entry(mid).or_default() += 1;
                cl.rtp_seqs.entry(mid).or_default().push(*p.seq_no);
                cl.last_rtp
                    .insert(mid, (*p.header.payload_type, p.payload.to_vec()));
            }
        }
        Event::KeyframeRequest(_) => cl.keyframe_requests += 1,
        _ => {}
    }
}
