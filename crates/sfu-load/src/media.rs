//! The media thread: every fake participant's `str0m::Rtc` (RTP mode, full ICE, DTLS,
//! SRTP) with its own UDP socket on loopback, one epoll loop, `recvmmsg` batches.
//! Publishers send synthetic VP8 + Opus (crate::synth); subscribers count what arrives
//! (packets, bytes, sequence gaps, added latency from the payload stamps, join time).
//! Signaling threads drive it through `Cmd`s; one socket per participant keeps the demux
//! trivial whatever the server does with ports (Janus: one per handle; Switchboard: one
//! for all).

use crate::stats::{Report, RxStats};
pub use crate::synth::AudioCodec;
use crate::synth::{opus_frame, pcmu_frame, read_stamp, MediaShape, Vp8Source};
use crate::sys::{mono_ns, Epoll, RecvBatch};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelConfig;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// What signaling asks of the media thread. Replies carry SDP text or an error text.
pub enum Cmd {
    /// Create participant `id` and return its first offer: audio + video, send only, for a
    /// publisher; only the data channel (as the SDK's first offer) for a subscriber; one
    /// audio track in the call's codec for a call.
    CreateOffer {
        id: usize,
        role: Role,
        started_ns: u64,
        reply: Sender<Result<String, String>>,
    },
    /// The server's answer to `id`'s pending offer.
    AcceptAnswer {
        id: usize,
        sdp: String,
        reply: Sender<Result<(), String>>,
    },
    /// An offer from the server to `id` (a new subscriber if `id` is unknown); returns the answer.
    AcceptOffer {
        id: usize,
        started_ns: u64,
        sdp: String,
        reply: Sender<Result<String, String>>,
    },
    /// Publishers connected and subscribers that received media so far.
    Progress {
        reply: Sender<(usize, usize)>,
    },
    /// Start counting: everything before is warm-up.
    WindowStart,
    /// Stop counting and report the window.
    Report {
        reply: Sender<Report>,
    },
    Stop,
}

/// What a participant does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    /// Sends synthetic VP8 + Opus.
    Publisher,
    /// Receives what the server offers.
    Subscriber,
    /// One phone call: sends one audio track (20 ms frames, send-only or send-receive as
    /// the server wants it) and counts the audio that comes back.
    Call { codec: AudioCodec, send_recv: bool },
}

struct Publisher {
    /// None for a call (audio only).
    video: Option<Vp8Source>,
    audio_codec: AudioCodec,
    video_mid: Mid,
    audio_mid: Mid,
    video_pt: Option<Pt>,
    audio_pt: Option<Pt>,
    video_seq: u64,
    audio_seq: u64,
    video_ts: u32,
    audio_ts: u32,
    next_video_ns: u64,
    next_audio_ns: u64,
    sent_packets: u64,
    keyframe_requests: u64,
}

struct Peer {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    started_ns: u64,
    first_media_ns: Option<u64>,
    connected: bool,
    failed: bool,
    publisher: Option<Publisher>,
    /// A call: it publishes and its receive counters count as well.
    call: bool,
    rx: RxStats,
}

/// The media loop's state; `run` owns it on its thread.
pub struct Media {
    peers: Vec<Option<Peer>>,
    epoll: Epoll,
    batch: RecvBatch,
    shape: MediaShape,
    bind_ip: IpAddr,
    window: bool,
    window_start_ns: u64,
    /// Added latency samples of the window, µs.
    latency_us: Vec<u32>,
}

const FRAME_NS_AUDIO: u64 = 20_000_000;

impl Media {
    pub fn new(shape: MediaShape, bind_ip: IpAddr) -> std::io::Result<Media> {
        Ok(Media {
            peers: Vec::new(),
            epoll: Epoll::new(256)?,
            batch: RecvBatch::new(),
            shape,
            bind_ip,
            window: false,
            window_start_ns: 0,
            latency_us: Vec::new(),
        })
    }

    /// Runs until `Cmd::Stop` or until every command sender is gone.
    pub fn run(mut self, cmds: Receiver<Cmd>) {
        loop {
            loop {
                match cmds.try_recv() {
                    Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => return,
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            let now_ns = mono_ns();
            self.send_media(now, now_ns);
            let mut soonest = now + Duration::from_millis(5);
            for i in 0..self.peers.len() {
                let Some(p) = self.peers[i].as_mut() else {
                    continue;
                };
                if p.next_timeout <= now {
                    if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                        p.failed = true;
                    }
                    self.drain(i, now_ns);
                }
                if let Some(p) = self.peers[i].as_ref() {
                    soonest = soonest.min(p.next_timeout);
                    // Only a connected publisher sends (send_media): one still connecting,
                    // or whose call failed, must not make the loop spin.
                    if let (true, Some(pb)) = (p.connected, &p.publisher) {
                        let next = pb.next_video_ns.min(pb.next_audio_ns);
                        let d = Duration::from_nanos(next.saturating_sub(now_ns));
                        soonest = soonest.min(now + d);
                    }
                }
            }
            let wait = soonest.saturating_duration_since(Instant::now());
            let ms = wait.as_micros().div_ceil(1000) as i32;
            for token in self.epoll.wait(ms) {
                self.receive(token as usize);
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::CreateOffer {
                id,
                role,
                started_ns,
                reply,
            } => {
                let r = match role {
                    Role::Subscriber => self.create_subscriber(id, started_ns),
                    _ => self.create_publisher(id, started_ns, role),
                };
                let _ = reply.send(r);
            }
            Cmd::AcceptAnswer { id, sdp, reply } => {
                let r = self.accept_answer(id, &sdp);
                let _ = reply.send(r);
            }
            Cmd::AcceptOffer {
                id,
                started_ns,
                sdp,
                reply,
            } => {
                let r = self.accept_offer(id, started_ns, &sdp);
                let _ = reply.send(r);
            }
            Cmd::Progress { reply } => {
                let mut pubs = 0;
                let mut subs = 0;
                for p in self.peers.iter().flatten() {
                    if p.call {
                        pubs += usize::from(p.connected);
                        subs += usize::from(p.first_media_ns.is_some());
                    } else if p.publisher.is_some() {
                        pubs += usize::from(p.connected);
                    } else {
                        subs += usize::from(p.first_media_ns.is_some());
                    }
                }
                let _ = reply.send((pubs, subs));
            }
            Cmd::WindowStart => {
                self.window = true;
                self.window_start_ns = mono_ns();
                self.latency_us.clear();
                for p in self.peers.iter_mut().flatten() {
                    p.rx = RxStats::default();
                    if let Some(pb) = p.publisher.as_mut() {
                        pb.sent_packets = 0;
                    }
                }
            }
            Cmd::Report { reply } => {
                self.window = false;
                let _ = reply.send(self.report());
            }
            Cmd::Stop => {}
        }
    }

    fn new_peer(&mut self, id: usize, started_ns: u64, role: Role) -> Result<(), String> {
        let sock = UdpSocket::bind(SocketAddr::new(self.bind_ip, 0)).map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        self.epoll
            .add(&sock, id as u64)
            .map_err(|e| e.to_string())?;
        let builder = Rtc::builder().set_rtp_mode(true).clear_codecs();
        let mut rtc = match role {
            Role::Call {
                codec: AudioCodec::Pcmu,
                ..
            } => builder.enable_pcmu(true, false),
            Role::Call {
                codec: AudioCodec::Opus,
                ..
            } => builder.enable_opus(true, false),
            Role::Publisher | Role::Subscriber => builder.enable_vp8(true).enable_opus(true, false),
        }
        .build(Instant::now());
        let cand = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(cand);
        if self.peers.len() <= id {
            self.peers.resize_with(id + 1, || None);
        }
        self.peers[id] = Some(Peer {
            rtc,
            sock,
            local,
            pending: None,
            next_timeout: Instant::now(),
            started_ns,
            first_media_ns: None,
            connected: false,
            failed: false,
            publisher: None,
            call: matches!(role, Role::Call { .. }),
            rx: RxStats::default(),
        });
        Ok(())
    }

    /// A publisher (VP8 + Opus, send only) or a call (one audio track).
    fn create_publisher(
        &mut self,
        id: usize,
        started_ns: u64,
        role: Role,
    ) -> Result<String, String> {
        self.new_peer(id, started_ns, role)?;
        let shape = self.shape;
        let p = self.peers[id].as_mut().ok_or("no peer")?;
        let mut api = p.rtc.sdp_api();
        let (audio_dir, audio_codec, video) = match role {
            Role::Call { codec, send_recv } => (
                if send_recv {
                    Direction::SendRecv
                } else {
                    Direction::SendOnly
                },
                codec,
                false,
            ),
            _ => (Direction::SendOnly, AudioCodec::Opus, true),
        };
        let audio_mid = api.add_media(MediaKind::Audio, audio_dir, None, None, None);
        // A call has no video: its mid is never written to (no m-line exists for it).
        let video_mid = if video {
            api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None)
        } else {
            Mid::from("-")
        };
        let (offer, pending) = api.apply().ok_or("nothing to offer")?;
        p.pending = Some(pending);
        let seq_base = rand::random::<u16>() as u64 % 30_000;
        p.publisher = Some(Publisher {
            video: video.then(|| Vp8Source::new(shape)),
            audio_codec,
            video_mid,
            audio_mid,
            video_pt: None,
            audio_pt: None,
            video_seq: seq_base,
            audio_seq: seq_base,
            video_ts: rand::random::<u32>() & 0x7fff_ffff,
            audio_ts: rand::random::<u32>() & 0x7fff_ffff,
            next_video_ns: if video { 0 } else { u64::MAX },
            next_audio_ns: 0,
            sent_packets: 0,
            keyframe_requests: 0,
        });
        Ok(offer.to_sdp_string())
    }

    fn create_subscriber(&mut self, id: usize, started_ns: u64) -> Result<String, String> {
        self.new_peer(id, started_ns, Role::Subscriber)?;
        let p = self.peers[id].as_mut().ok_or("no peer")?;
        let mut api = p.rtc.sdp_api();
        // The SDK's negotiated channel (label "switchboard", id 0): SDP needs an m-line.
        api.add_channel_with_config(ChannelConfig {
            label: "switchboard".into(),
            negotiated: Some(0),
            ..Default::default()
        });
        let (offer, pending) = api.apply().ok_or("nothing to offer")?;
        p.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    fn accept_answer(&mut self, id: usize, sdp: &str) -> Result<(), String> {
        let p = self
            .peers
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or("unknown participant")?;
        let pending = p.pending.take().ok_or("no pending offer")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        p.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        if let Some(pb) = p.publisher.as_mut() {
            pb.video_pt = pt_for(&p.rtc, pb.video_mid, Codec::Vp8);
            pb.audio_pt = pt_for(&p.rtc, pb.audio_mid, pb.audio_codec.codec());
        }
        p.next_timeout = Instant::now();
        Ok(())
    }

    fn accept_offer(&mut self, id: usize, started_ns: u64, sdp: &str) -> Result<String, String> {
        if self.peers.get(id).is_none_or(Option::is_none) {
            self.new_peer(id, started_ns, Role::Subscriber)?;
        }
        let p = self.peers[id].as_mut().ok_or("no peer")?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?;
        if let Some(pb) = p.publisher.as_mut() {
            pb.video_pt = pt_for(&p.rtc, pb.video_mid, Codec::Vp8);
            pb.audio_pt = pt_for(&p.rtc, pb.audio_mid, pb.audio_codec.codec());
        }
        p.next_timeout = Instant::now();
        Ok(answer.to_sdp_string())
    }

    /// Writes every frame that is due for every connected publisher.
    fn send_media(&mut self, now: Instant, now_ns: u64) {
        let window = self.window;
        for i in 0..self.peers.len() {
            let Some(p) = self.peers[i].as_mut() else {
                continue;
            };
            let Some(pb) = p.publisher.as_mut() else {
                continue;
            };
            if !p.connected {
                continue;
            }
            let mut wrote = false;
            let frame_ns = 1_000_000_000 / self.shape.fps.max(1) as u64;
            if let (true, Some(video)) = (pb.next_video_ns <= now_ns, pb.video.as_mut()) {
                if let Some(pt) = pb.video_pt {
                    let (packets, _key) = video.next_frame(now_ns);
                    let ts = pb.video_ts;
                    pb.video_ts = pb.video_ts.wrapping_add(video.ticks_per_frame());
                    let mut api = p.rtc.direct_api();
                    if let Some(tx) = api.stream_tx_by_mid(pb.video_mid, None) {
                        for pkt in packets {
                            let seq: SeqNo = pb.video_seq.into();
                            pb.video_seq += 1;
                            tx.write_rtp(
                                RtpWrite::new(pt, seq, ts, now, pkt.payload)
                                    .marker(pkt.marker)
                                    .nackable(true),
                            );
                            if window {
                                pb.sent_packets += 1;
                            }
                            wrote = true;
                        }
                    }
                }
                // Catch up without bursts after a stall: the next frame is one period on.
                pb.next_video_ns = (pb.next_video_ns + frame_ns).max(now_ns);
            }
            if pb.next_audio_ns <= now_ns {
                if let Some(pt) = pb.audio_pt {
                    let payload = match pb.audio_codec {
                        AudioCodec::Opus => opus_frame(self.shape.opus_bytes, now_ns),
                        AudioCodec::Pcmu => pcmu_frame(now_ns),
                    };
                    let ts = pb.audio_ts;
                    pb.audio_ts = pb.audio_ts.wrapping_add(pb.audio_codec.ticks_per_frame());
                    let ext = ExtensionValues {
                        audio_level: Some(-30),
                        voice_activity: Some(true),
                        ..Default::default()
                    };
                    let mut api = p.rtc.direct_api();
                    if let Some(tx) = api.stream_tx_by_mid(pb.audio_mid, None) {
                        let seq: SeqNo = pb.audio_seq.into();
                        pb.audio_seq += 1;
                        tx.write_rtp(
                            RtpWrite::new(pt, seq, ts, now, payload)
                                .marker(false)
                                .ext_vals(ext),
                        );
                        if window {
                            pb.sent_packets += 1;
                        }
                        wrote = true;
                    }
                }
                pb.next_audio_ns = (pb.next_audio_ns + FRAME_NS_AUDIO).max(now_ns);
            }
            if wrote {
                self.drain(i, now_ns);
            }
        }
    }

    fn receive(&mut self, i: usize) {
        loop {
            let Some(p) = self.peers.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let n = match self.batch.recv(&p.sock) {
                Ok(n) => n,
                Err(_) => return,
            };
            let now = Instant::now();
            let now_ns = mono_ns();
            for k in 0..n {
                let (bytes, source) = self.batch.get(k);
                let Some(source) = source else { continue };
                let Ok(contents) = bytes.try_into() else {
                    continue;
                };
                let Some(p) = self.peers[i].as_mut() else {
                    return;
                };
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: p.local,
                        contents,
                    },
                );
                if p.rtc.handle_input(input).is_err() {
                    p.failed = true;
                }
                drain_peer(p, now_ns, self.window, &mut self.latency_us);
            }
            if n < 32 {
                return;
            }
        }
    }

    fn drain(&mut self, i: usize, now_ns: u64) {
        if let Some(p) = self.peers[i].as_mut() {
            drain_peer(p, now_ns, self.window, &mut self.latency_us);
        }
    }

    fn report(&mut self) -> Report {
        let window_s = (mono_ns() - self.window_start_ns) as f64 / 1e9;
        let mut r = Report {
            window_s,
            ..Default::default()
        };
        for p in self.peers.iter().flatten() {
            if let (true, Some(pb)) = (p.call, &p.publisher) {
                r.sent_packets += pb.sent_packets;
                if let Some(first) = p.first_media_ns {
                    r.join_ms
                        .push(first.saturating_sub(p.started_ns) as f64 / 1e6);
                }
                r.add_call(p.connected, pb.sent_packets, &p.rx);
                continue;
            }
            if let Some(pb) = &p.publisher {
                r.publishers += 1;
                r.sent_packets += pb.sent_packets;
                r.keyframe_requests += pb.keyframe_requests;
                if p.connected {
                    r.publishers_connected += 1;
                }
                continue;
            }
            r.subscribers += 1;
            if p.connected {
                r.subscribers_connected += 1;
            }
            if p.failed {
                r.subscribers_failed += 1;
            }
            if let Some(first) = p.first_media_ns {
                r.join_ms
                    .push(first.saturating_sub(p.started_ns) as f64 / 1e6);
            }
            r.add_subscriber(&p.rx);
        }
        r.latency_us = std::mem::take(&mut self.latency_us);
        r
    }
}

/// Polls `p`'s Rtc until it wants time to pass: sends its datagrams, handles its events.
fn drain_peer(p: &mut Peer, recv_ns: u64, window: bool, latency_us: &mut Vec<u32>) {
    loop {
        match p.rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                // A full socket buffer drops the datagram, as a congested link would.
                let _ = p.sock.send_to(&t.contents, t.destination);
            }
            Ok(Output::Timeout(t)) => {
                p.next_timeout = t;
                return;
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => p.connected = true,
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    p.failed = true;
                }
                Event::RtpPacket(pkt) => {
                    if p.first_media_ns.is_none() {
                        p.first_media_ns = Some(recv_ns);
                    }
                    if window {
                        let latency = read_stamp(&pkt.payload).map(|sent| {
                            let us = recv_ns.saturating_sub(sent) / 1000;
                            us.min(u32::MAX as u64) as u32
                        });
                        if let Some(us) = latency {
                            latency_us.push(us);
                        }
                        let (ssrc, seq) = (*pkt.header.ssrc, *pkt.seq_no);
                        p.rx.record(ssrc, seq, pkt.payload.len(), latency);
                    }
                }
                Event::KeyframeRequest(_) => {
                    if let Some(pb) = p.publisher.as_mut() {
                        if let Some(video) = pb.video.as_mut() {
                            video.request_keyframe();
                        }
                        pb.keyframe_requests += 1;
                    }
                }
                _ => {}
            },
            Err(_) => {
                p.failed = true;
                p.next_timeout = Instant::now() + Duration::from_secs(3600);
                return;
            }
        }
    }
}

/// The payload type `mid` uses for `codec` after negotiation.
fn pt_for(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let params = rtc.codec_config().params();
    media
        .remote_pts()
        .iter()
        .copied()
        .find(|pt| {
            params
                .iter()
                .any(|p| p.pt() == *pt && p.spec().codec == codec)
        })
        .or_else(|| {
            params
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        })
}
