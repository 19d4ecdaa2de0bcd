//! The far end of calls out and the room member that talks to it, for the hermetic
//! calls-out tests (`e2e_sip/stream.rs`, `e2e_sip/rooms.rs`, `e2e_sip/srtp_out.rs`,
//! `e2e_sip/dtls_out.rs`): a SIP
//! user agent of our own stack on a TCP listener (plain, or TLS) answering with PCMU
//! (SDES-SRTP when offered and its `local` has a key, or plain RTP regardless with
//! `answer_plain`, or its own with `answer_with`), its tone and what it heard; a member (str0m) publishing a 1,000 Hz
//! Opus tone; and the checks that media
//! crossed both ways, per call, however many calls the room has.

#![allow(dead_code)]

use crate::common::sip::{decode_opus, heard_from, sip_peers, OpusTone};
use crate::common::Server;
use crate::lab::tone_of;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_client::sfu::{http_request, SfuClient};
use switchboard_media::g711::Law;
use switchboard_media::rtp::{write_rtp_header, RtpHeader};
use switchboard_media::srtp::{SrtpContext, SrtpProfile};
use switchboard_sip::message::{frame_len, Limits};
use switchboard_sip::sdp::{LocalAudio, Negotiated, SdpSession, SessionDescription};
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{CallId, UaConfig, UaEvent, UserAgent};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub fn gateway(extra: &[&str]) -> (Server, SocketAddr) {
    let low = 30_000 + (std::process::id() % 200) * 100;
    crate::common::sip::gateway(&format!("{low}-{}", low + 99), "100", extra)
}

/// A room member publishing a tone.
pub fn member(server: &Server, room: &str) -> SfuClient {
    let http = server.http.expect("http");
    let b = SfuClient::join(http, room, "B", Some("sfu"), LOOPBACK).expect("B joins");
    talking(b)
}

/// A member that just joined, once the room's SFU is there: recording what it hears,
/// publishing its microphone (the tone [`talk_all`] sends).
pub fn talking(mut b: SfuClient) -> SfuClient {
    b.media.capture = true;
    let sfu = b
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump B");
    assert!(sfu, "the SFU did not join the room");
    b.publish_audio().expect("B publishes");
    b
}

/// `POST /api/sip/calls`: the status and body.
pub fn dial(server: &Server, room: &str, to: &str) -> (u16, String) {
    dial_at(server.http.expect("http"), room, to)
}

/// [`dial`] on the server whose HTTP API is at `http`.
pub fn dial_at(http: SocketAddr, room: &str, to: &str) -> (u16, String) {
    let body = json!({"room": room, "to": to}).to_string();
    let (status, _, reply) = http_request(
        http,
        "POST",
        "/api/sip/calls",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /api/sip/calls");
    (status, reply)
}

pub trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// The far end: a SIP user agent on a TCP (or TLS) listener, one connection at a time,
/// answering every call with PCMU.
pub struct FarEnd {
    pub listener: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub transport: Transport,
    pub conn: Option<(Box<dyn Conn>, SocketAddr)>,
    /// The connection was closed by the gateway (EOF).
    pub closed: bool,
    pub buf: Vec<u8>,
    pub ua: UserAgent,
    /// Every SIP message received, as text.
    pub received: Vec<String>,
    pub events: Vec<UaEvent>,
    pub media: UdpSocket,
    pub sdp: SdpSession,
    pub local: LocalAudio,
    pub call: Option<(CallId, Negotiated)>,
    /// Answer RTP/AVP without crypto whatever was offered (a far end that ignores SRTP,
    /// SDES or DTLS).
    pub answer_plain: bool,
    /// Answer with this instead of `sdp` (a far end with other media, e.g. DTLS-SRTP).
    pub answer_with: Option<AnswerWith>,
}

/// A far end's own answer to an offer: the SDP and what it settled.
pub type AnswerWith = Box<dyn FnMut(&SessionDescription) -> (SessionDescription, Negotiated)>;

impl FarEnd {
    pub fn new(tls: Option<Arc<rustls::ServerConfig>>) -> FarEnd {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
        FarEnd::on(listener, media, tls)
    }

    /// A far end on sockets the caller bound (in another network namespace: the SIP
    /// listener and the RTP socket, on one address).
    pub fn on(
        listener: TcpListener,
        media: UdpSocket,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> FarEnd {
        let ip = listener.local_addr().expect("addr").ip();
        listener.set_nonblocking(true).expect("nonblocking");
        media
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let cfg = UaConfig {
            user_agent: "e2e-far-end".into(),
            session_expires: None,
            ..UaConfig::new(listener.local_addr().expect("addr"))
        };
        let local = crate::common::sip_phone::pcmu_audio(&media);
        FarEnd {
            listener,
            transport: if tls.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            },
            tls,
            conn: None,
            closed: false,
            buf: Vec::new(),
            ua: UserAgent::new(cfg, Instant::now()),
            received: Vec::new(),
            events: Vec::new(),
            media,
            sdp: SdpSession::new(9, ip),
            local,
            call: None,
            answer_plain: false,
            answer_with: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }

    pub fn accept(&mut self) {
        let Ok((tcp, peer)) = self.listener.accept() else {
            return;
        };
        tcp.set_nonblocking(false).expect("blocking");
        tcp.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let conn: Box<dyn Conn> = match &self.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let server = rustls::ServerConnection::new(cfg.clone()).expect("TLS server");
                Box::new(rustls::StreamOwned::new(server, tcp))
            }
        };
        self.conn = Some((conn, peer));
        self.closed = false;
        self.buf.clear();
    }

    /// Move SIP for a moment; answer a call as soon as it comes.
    pub fn pump(&mut self) {
        if self.conn.is_none() {
            self.accept();
        }
        let now = Instant::now();
        if self.ua.poll_timeout().is_some_and(|t| t <= now) {
            self.ua.handle_timeout(now);
        }
        self.send();
        let mut chunk = [0u8; 16_384];
        let read = match &mut self.conn {
            Some((conn, peer)) => match conn.read(&mut chunk) {
                Ok(0) => Err(true),
                Ok(n) => Ok(Some((n, *peer))),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Ok(None)
                }
                Err(_) => Err(true),
            },
            None => Ok(None),
        };
        match read {
            Err(_) => {
                self.conn = None;
                self.closed = true;
            }
            Ok(None) => {}
            Ok(Some((n, peer))) => {
                self.buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(len)) = frame_len(&self.buf, &Limits::default()) {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                        continue;
                    }
                    self.received
                        .push(String::from_utf8_lossy(&frame).into_owned());
                    self.ua
                        .handle_datagram(Instant::now(), &frame, peer, self.transport);
                }
            }
        }
        self.send();
        while let Some(e) = self.ua.poll_event() {
            if let UaEvent::IncomingCall {
                call,
                offer: Some(offer),
                ..
            } = &e
            {
                let mut offer = offer.clone();
                if self.answer_plain {
                    for m in &mut offer.media {
                        // SDES's RTP/SAVP and DTLS's UDP/TLS/RTP/SAVPF alike.
                        m.proto = "RTP/AVP".into();
                        m.attributes.retain(|a| a.name != "crypto");
                    }
                }
                let (answer, n) = match &mut self.answer_with {
                    Some(answer) => answer(&offer),
                    None => self
                        .sdp
                        .answer(&offer, &self.local)
                        .expect("an offer with PCMU"),
                };
                self.ua
                    .accept(Instant::now(), *call, answer)
                    .expect("accept");
                self.call = Some((*call, n));
            }
            self.events.push(e);
        }
        self.send();
    }

    pub fn send(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            if let Some((conn, _)) = &mut self.conn {
                let _ = conn.write_all(&t.bytes).and_then(|()| conn.flush());
            }
        }
    }

    /// Drop the connection and stop listening: the far end is gone.
    pub fn vanish(self) {
        drop(self);
    }
}

/// The far end's media: a tone (`hz`) in PCMU every 20 ms to where SDP said, and what
/// it heard. With SDES negotiated both are SRTP: sent protected with our key, heard only
/// what unprotects with the gateway's key (anything else is counted in `refused`).
pub struct FarTone {
    pub hz: f64,
    pub seq: u16,
    pub phase: f64,
    pub next: Instant,
    pub heard: Vec<i16>,
    /// (protect what we send, unprotect what we receive), once SDES is negotiated.
    pub srtp: Option<(SrtpContext, SrtpContext)>,
    pub refused: usize,
}

impl FarTone {
    pub fn new(hz: f64) -> FarTone {
        FarTone {
            hz,
            seq: 1,
            phase: 0.0,
            next: Instant::now(),
            heard: Vec::new(),
            srtp: None,
            refused: 0,
        }
    }

    /// Send what is due (a slow test loop catches up: the phone's clock is real time),
    /// then take what arrived.
    pub fn step(&mut self, sock: &UdpSocket, n: &Negotiated) {
        if let (None, Some(keys)) = (&self.srtp, &n.srtp) {
            let profile = SrtpProfile::from_sdes_name(&keys.suite).expect("an SDES suite");
            let context = |key: &[u8]| SrtpContext::new(profile, key).expect("SRTP key");
            self.srtp = Some((
                context(&keys.local_key_salt),
                context(&keys.remote_key_salt),
            ));
        }
        while Instant::now() >= self.next {
            self.next += Duration::from_millis(20);
            let mut packet = [0u8; 200];
            let ts = u32::from(self.seq).wrapping_mul(160);
            let h =
                write_rtp_header(&mut packet, false, n.pt, self.seq, ts, 0xfa7e).expect("header");
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    self.phase += 2.0 * std::f64::consts::PI * self.hz / 8000.0;
                    (self.phase.sin() * 8000.0) as i16
                })
                .collect();
            Law::Mu
                .encode(&pcm, &mut packet[h..h + 160])
                .expect("encode");
            let len = match &mut self.srtp {
                Some((protect, _)) => protect.protect_rtp(&mut packet, h + 160).expect("protect"),
                None => h + 160,
            };
            if let Some(to) = n.remote_rtp {
                let _ = sock.send_to(&packet[..len], to);
            }
            self.seq = self.seq.wrapping_add(1);
        }
        let mut buf = [0u8; 1500];
        while let Ok((len, _)) = sock.recv_from(&mut buf) {
            let len = match &mut self.srtp {
                Some((_, unprotect)) => match unprotect.unprotect_rtp(&mut buf[..len]) {
                    Ok(len) => len,
                    Err(_) => {
                        self.refused += 1;
                        continue;
                    }
                },
                None => len,
            };
            if let Ok(h) = RtpHeader::parse(&buf[..len]) {
                if h.payload_type == n.pt {
                    let payload = &buf[h.payload_start..h.payload_end];
                    let mut pcm = vec![0i16; payload.len()];
                    if Law::Mu.decode(payload, &mut pcm).is_ok() {
                        self.heard.extend_from_slice(&pcm);
                    }
                }
            }
        }
    }
}

/// The share of `pcm`'s power (8 kHz, one second) at `hz` (Goertzel): about 1 for that
/// tone alone, 0.5 for one of two equal tones, near 0 when it is absent.
pub fn share_at(pcm: &[i16], hz: f64) -> f64 {
    let n = pcm.len();
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in &pcm[..n] {
        let s0 = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let at = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = pcm[..n].iter().map(|&x| f64::from(x).powi(2)).sum();
    at / (n as f64 * total / 2.0).max(1.0)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The room's peer of the call to `far`: in the room now, named after the URI dialled,
/// which names the far end's port.
pub fn peer_of(b: &SfuClient, far: &FarEnd) -> Option<String> {
    let port = far.listener.local_addr().expect("addr").to_string();
    sip_peers(b)
        .into_iter()
        .rev()
        .find(|(_, name)| {
            name.split_once(&port)
                .is_some_and(|(_, rest)| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|(id, _)| id)
}

/// The calls to `fars` are answered and media crosses both ways: B hears each far end's
/// tone (`hz[i]`) from that call's peer, and each far end hears the room: B's 1,000 Hz
/// and the other far ends' tones, never its own. Returns the calls' peer ids.
/// Samples (8 kHz) of the full mix each far end records before the shares are judged:
/// a second of settling and three whole seconds.
const MIX_WINDOW: usize = 4 * 8000;

pub fn talk_all(b: &mut SfuClient, fars: &mut [&mut FarEnd], hz: &[f64]) -> Vec<String> {
    let mut tone = OpusTone::new(1000.0);
    let mut next_opus = Instant::now();
    let mut media: Vec<FarTone> = hz.iter().map(|&hz| FarTone::new(hz)).collect();
    let mut peers: Vec<Option<String>> = vec![None; fars.len()];
    let mut marks: Option<Vec<usize>> = None;
    let heard =
        |b: &SfuClient, p: &Option<String>| p.as_deref().map_or(0, |p| heard_from(b, p).len());
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        assert!(
            Instant::now() < deadline,
            "after 25 s: answered {:?}, B got {:?} packets from {peers:?}, the far ends {:?} samples\ntracks {:?}\njoined {:?}\nleft {:?}",
            fars.iter().map(|f| f.call.is_some()).collect::<Vec<_>>(),
            peers.iter().map(|p| heard(b, p)).collect::<Vec<_>>(),
            media.iter().map(|m| m.heard.len()).collect::<Vec<_>>(),
            b.tracks(),
            b.joined_peers,
            b.left_peers
        );
        // Real time, however slow the loop: a source that falls behind is concealed.
        while Instant::now() >= next_opus && b.media.connected {
            b.media.send_audio_packet(&tone.frame());
            next_opus += Duration::from_millis(20);
        }
        b.pump(Duration::from_millis(1)).expect("pump B");
        for ((far, m), peer) in fars.iter_mut().zip(&mut media).zip(&mut peers) {
            far.pump();
            if let Some((_, n)) = &far.call {
                m.step(&far.media, n);
            }
            // Looked up again each time: a call's peer that left shows late.
            *peer = peer_of(b, far).or(peer.take());
        }
        // The mix a far end hears holds every source only once every call is up: mark
        // where each far end's recording stood when B first heard all of them.
        if marks.is_none() && peers.iter().all(|p| heard(b, p) > 0) {
            marks = Some(media.iter().map(|m| m.heard.len()).collect());
        }
        let enough = marks.as_ref().is_some_and(|marks| {
            media
                .iter()
                .zip(marks)
                .all(|(m, &at)| m.heard.len() >= at + MIX_WINDOW)
        });
        if peers.iter().all(|p| heard(b, p) >= 150)
            && media.iter().all(|m| m.heard.len() >= 24_000)
            && enough
        {
            break;
        }
    }
    let marks = marks.unwrap_or_default();
    let peers: Vec<String> = peers
        .into_iter()
        .map(|p| p.expect("the sip peer"))
        .collect();
    for (i, peer) in peers.iter().enumerate() {
        let (got, rms) = tone_of(&decode_opus(&heard_from(b, peer)[50..]), 48_000);
        eprintln!("the room heard far end {i}: {got:.1} Hz, RMS {rms:.0}");
        assert!(
            (got - hz[i]).abs() < 10.0 && rms > 1000.0,
            "far end {i}: {got} Hz, RMS {rms}"
        );
        // Whole seconds from a second after every call was up (the mix of all sources);
        // the median of each tone's share over them (a concealed packet on the busy
        // machine spoils one second, not the verdict).
        let from = marks.get(i).copied().unwrap_or(0).max(8000) + 8000;
        let seconds: Vec<&[i16]> = media[i].heard[from..].chunks_exact(8000).collect();
        let share = |f: f64| median(seconds.iter().map(|s| share_at(s, f)).collect());
        let (_, rms) = tone_of(&media[i].heard[8000..], 8000);
        let room = share(1000.0);
        let own = share(hz[i]);
        let others: Vec<f64> = (0..hz.len())
            .filter(|&k| k != i)
            .map(|k| share(hz[k]))
            .collect();
        eprintln!(
            "far end {i} heard the room: RMS {rms:.0}; shares: B's 1000 Hz {room:.2}, the other calls' {others:.2?}, its own {own:.3}"
        );
        assert!(
            rms > 1000.0 && own < 0.02,
            "far end {i}: RMS {rms}, own tone {own}"
        );
        // B and each other call: equal shares of the mix.
        let expected = 1.0 / hz.len() as f64;
        for share in others.iter().chain([&room]) {
            assert!(
                (share - expected).abs() < expected / 3.0,
                "far end {i}: shares {room} (B) and {others:?} (other calls), expected {expected}"
            );
        }
    }
    peers
}

/// [`talk_all`] with one call (440 Hz).
pub fn talk(b: &mut SfuClient, far: &mut FarEnd) -> String {
    talk_all(b, &mut [far], &[440.0]).remove(0)
}

/// The far end hangs up; the SIP peer leaves the room; the gateway closes the
/// connection; nothing is left.
pub fn far_end_hangs_up(server: &Server, b: &mut SfuClient, far: &mut FarEnd, peer: &str) {
    far_end_says_bye(b, far, peer);
    crate::common::sip::assert_nothing_left(server, Duration::from_secs(10));
    assert_eq!(server.metric("switchboard_sip_connections"), 0);
}

/// The far end hangs up; the SIP peer leaves the room; the gateway closes the
/// connection.
pub fn far_end_says_bye(b: &mut SfuClient, far: &mut FarEnd, peer: &str) {
    let (call, _) = far.call.take().expect("a call");
    far.ua.hangup(Instant::now(), call).expect("BYE");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(b.left_peers.iter().any(|p| p == peer) && far.closed) {
        assert!(
            Instant::now() < deadline,
            "after the far end's BYE: peer left {}, connection closed {}",
            b.left_peers.iter().any(|p| p == peer),
            far.closed
        );
        b.pump(Duration::from_millis(5)).expect("pump B");
        far.pump();
    }
    let bye_answered = far.events.iter().any(
        |e| matches!(e, UaEvent::Ended { call: c, reason } if *c == call && reason.status.is_none()),
    );
    assert!(bye_answered, "the BYE was not answered: {:?}", far.events);
}

/// A log line without its terminal colours.
pub fn plain_text(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some((before, after)) = rest.split_once('\u{1b}') {
        out.push_str(before);
        rest = after.split_once('m').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

/// Pump member `b` and `far` until the room was told the call ended and the gateway's
/// BYE reached the far end (a call out the gateway refused for its answer), at most
/// 15 s; the reason the room was given.
pub fn until_refused(b: &mut SfuClient, far: &mut FarEnd) -> String {
    let ended = |b: &SfuClient| {
        b.messages
            .iter()
            .find(|m| m["data"]["sip"]["state"] == "ended")
            .map(|m| {
                m["data"]["sip"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bye = false;
    while ended(b).is_none() || !bye {
        assert!(
            Instant::now() < deadline,
            "answered {}, ended {:?}, BYE {bye}; the far end got {:?}",
            far.call.is_some(),
            ended(b),
            far.received
                .iter()
                .map(|m| m.lines().next())
                .collect::<Vec<_>>()
        );
        b.pump(Duration::from_millis(5)).expect("pump B");
        far.pump();
        bye = far
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::Ended { reason, .. } if reason.status.is_none()));
    }
    assert!(
        far.received.iter().any(|m| m.starts_with("BYE ")),
        "no BYE from the gateway"
    );
    ended(b).unwrap_or_default()
}
