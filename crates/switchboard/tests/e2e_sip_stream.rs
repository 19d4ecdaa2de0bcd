//! Calls out over connections the gateway opens, hermetic: the real binary, a room
//! member (str0m, a 1,000 Hz Opus tone), and a far end made of our own SIP stack on a
//! TCP listener (plain, or TLS with a test CA from rcgen) with G.711 RTP. What a user
//! would check:
//!
//! - `sip:bob@host;transport=tcp` is dialled on a TCP connection the gateway opens (Via
//!   and Contact say TCP), the far end answers on it, media flows both ways, the far
//!   end's BYE comes on the same connection and ends the call; the gateway then closes
//!   the connection and every gauge, connections included, is back to 0;
//! - over TLS the far end's certificate is verified against `--sip-tls-ca` and its name:
//!   a certificate for another name fails the call at once (no SIP reaches the far end),
//!   the right one carries a call like TCP does;
//! - a far end whose connection vanishes mid-call (no BYE, no RTP) is hung up after
//!   `--sip-rtp-timeout`: the BYE finds no connection to make and the call still ends
//!   cleanly.

#[path = "../../sip/tests/lab/mod.rs"]
mod lab;

mod common;

use common::sip::{decode_opus, heard_from, sip_peer, OpusTone};
use common::Server;
use lab::tone_of;
use serde_json::json;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_client::sfu::{http_request, SfuClient};
use switchboard_media::g711::Law;
use switchboard_media::rtp::{write_rtp_header, RtpHeader};
use switchboard_sip::message::{frame_len, Limits};
use switchboard_sip::sdp::{Codec, Direction, LocalAudio, Negotiated, SdpSession};
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{CallId, UaConfig, UaEvent, UserAgent};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn gateway(extra: &[&str]) -> (Server, SocketAddr) {
    let low = 30_000 + (std::process::id() % 200) * 100;
    common::sip::gateway(&format!("{low}-{}", low + 99), "100", extra)
}

/// A room member publishing a tone.
fn member(server: &Server, room: &str) -> SfuClient {
    let http = server.http.expect("http");
    let mut b = SfuClient::join(http, room, "B", Some("sfu"), LOOPBACK).expect("B joins");
    b.media.capture = true;
    let sfu = b
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump B");
    assert!(sfu, "the SFU did not join the room");
    b.publish_audio().expect("B publishes");
    b
}

/// `POST /api/sip/calls`: the status and body.
fn dial(server: &Server, room: &str, to: &str) -> (u16, String) {
    let body = json!({"room": room, "to": to}).to_string();
    let (status, _, reply) = http_request(
        server.http.expect("http"),
        "POST",
        "/api/sip/calls",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /api/sip/calls");
    (status, reply)
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// The far end: a SIP user agent on a TCP (or TLS) listener, one connection at a time,
/// answering every call with PCMU.
struct FarEnd {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    transport: Transport,
    conn: Option<(Box<dyn Conn>, SocketAddr)>,
    /// The connection was closed by the gateway (EOF).
    closed: bool,
    buf: Vec<u8>,
    ua: UserAgent,
    /// Every SIP message received, as text.
    received: Vec<String>,
    events: Vec<UaEvent>,
    media: UdpSocket,
    sdp: SdpSession,
    local: LocalAudio,
    call: Option<(CallId, Negotiated)>,
}

impl FarEnd {
    fn new(tls: Option<Arc<rustls::ServerConfig>>) -> FarEnd {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        listener.set_nonblocking(true).expect("nonblocking");
        let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
        media
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let cfg = UaConfig {
            local: listener.local_addr().expect("addr"),
            advertised: None,
            tls_port: None,
            domain: None,
            user_agent: "e2e-far-end".into(),
            session_expires: None,
            ack_timeout: Duration::from_secs(32),
            inbound_auth: None,
            tx: Default::default(),
        };
        let local = LocalAudio {
            addr: LOOPBACK,
            port: media.local_addr().expect("addr").port(),
            codecs: vec![Codec::Pcmu],
            direction: Direction::SendRecv,
            srtp_key: None,
            rtcp_mux: true,
            ptime: 20,
        };
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
            sdp: SdpSession::new(9, LOOPBACK),
            local,
            call: None,
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }

    fn accept(&mut self) {
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
    fn pump(&mut self) {
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
                let (answer, n) = self
                    .sdp
                    .answer(offer, &self.local)
                    .expect("an offer with PCMU");
                self.ua
                    .accept(Instant::now(), *call, answer)
                    .expect("accept");
                self.call = Some((*call, n));
            }
            self.events.push(e);
        }
        self.send();
    }

    fn send(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            if let Some((conn, _)) = &mut self.conn {
                let _ = conn.write_all(&t.bytes).and_then(|()| conn.flush());
            }
        }
    }

    /// Drop the connection and stop listening: the far end is gone.
    fn vanish(self) {
        drop(self);
    }
}

/// The far end's media: 440 Hz PCMU every 20 ms to where SDP said, and what it heard.
struct Tone440 {
    seq: u16,
    phase: f64,
    next: Instant,
    heard: Vec<i16>,
}

impl Tone440 {
    fn step(&mut self, sock: &UdpSocket, n: &Negotiated) {
        if Instant::now() >= self.next {
            self.next += Duration::from_millis(20);
            let mut packet = [0u8; 172];
            let ts = u32::from(self.seq).wrapping_mul(160);
            let h =
                write_rtp_header(&mut packet, false, n.pt, self.seq, ts, 0xfa7e).expect("header");
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    self.phase += 2.0 * std::f64::consts::PI * 440.0 / 8000.0;
                    (self.phase.sin() * 8000.0) as i16
                })
                .collect();
            Law::Mu
                .encode(&pcm, &mut packet[h..h + 160])
                .expect("encode");
            if let Some(to) = n.remote_rtp {
                let _ = sock.send_to(&packet[..h + 160], to);
            }
            self.seq = self.seq.wrapping_add(1);
        }
        let mut buf = [0u8; 1500];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
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

/// The call to `far` is answered and media crosses both ways: B hears 440 Hz and the
/// far end 1,000 Hz. Returns the SIP peer's id in the room.
fn talk(b: &mut SfuClient, far: &mut FarEnd) -> String {
    let mut tone = OpusTone::new(1000.0);
    let mut next_opus = Instant::now();
    let mut media = Tone440 {
        seq: 1,
        phase: 0.0,
        next: Instant::now(),
        heard: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut peer = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "after 25 s: answered {}, B got {} packets from {peer:?}, the far end {} samples; it received {:?}",
            far.call.is_some(),
            peer.as_deref().map_or(0, |p| heard_from(b, p).len()),
            media.heard.len(),
            far.received
        );
        if Instant::now() >= next_opus && b.media.connected {
            b.media.send_audio_packet(&tone.frame());
            next_opus += Duration::from_millis(20);
        }
        b.pump(Duration::from_millis(1)).expect("pump B");
        far.pump();
        if let Some((_, n)) = &far.call {
            media.step(&far.media, n);
        }
        peer = peer.or_else(|| sip_peer(b));
        let b_heard = peer.as_deref().map_or(0, |p| heard_from(b, p).len());
        if b_heard >= 150 && media.heard.len() >= 24_000 {
            break;
        }
    }
    let peer = peer.expect("the sip peer");
    let (hz, rms) = tone_of(&decode_opus(&heard_from(b, &peer)[50..]), 48_000);
    eprintln!("the room heard the far end: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 440.0).abs() < 10.0 && rms > 1000.0,
        "{hz} Hz, RMS {rms}"
    );
    let (hz, rms) = tone_of(&media.heard[8000..], 8000);
    eprintln!("the far end heard the room: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 1000.0).abs() < 15.0 && rms > 1000.0,
        "{hz} Hz, RMS {rms}"
    );
    peer
}

/// The far end hangs up; the SIP peer leaves the room; the gateway closes the
/// connection; nothing is left.
fn far_end_hangs_up(server: &Server, b: &mut SfuClient, far: &mut FarEnd, peer: &str) {
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
    common::sip::assert_nothing_left(server, Duration::from_secs(10));
    assert_eq!(server.metric("switchboard_sip_connections"), 0);
}

fn assert_sent_over(far: &FarEnd, transport: &str) {
    let invite = far
        .received
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the INVITE");
    assert!(
        invite.contains(&format!("Via: SIP/2.0/{transport} ")),
        "{invite}"
    );
    assert!(
        invite.contains(&format!(";transport={}>", transport.to_ascii_lowercase())),
        "Contact: {invite}"
    );
}

#[test]
fn a_call_out_over_tcp_connects_carries_media_and_ends() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "dialtcp");
    let mut far = FarEnd::new(None);
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp", far.port());
    let (status, reply) = dial(&server, "dialtcp", &to);
    assert_eq!(status, 201, "{reply}");
    let peer = talk(&mut b, &mut far);
    assert_sent_over(&far, "TCP");
    assert_eq!(server.metric("switchboard_sip_connections"), 1);
    far_end_hangs_up(&server, &mut b, &mut far, &peer);
    assert_eq!(
        server.metric("switchboard_sip_calls_total{outcome=\"ended\"}"),
        1
    );
}

/// A CA, and server configurations for certificates it signed for `names`.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "switchboard test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        TestCa { cert, key }
    }

    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
        Arc::new(cfg)
    }
}

#[test]
fn a_call_out_over_tls_verifies_the_certificate_and_its_name() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).expect("write CA");
    let ca_path = ca_file.to_str().expect("path");
    let (server, _gw) = gateway(&["--sip-tls-ca", ca_path]);
    let mut b = member(&server, "dialtls");

    // A certificate for another name: the handshake fails, the call ends, nothing of
    // SIP reaches the far end. (Placed from another room, so that B's room sees only
    // the call under test.)
    let mut wrong = FarEnd::new(Some(ca.server("127.0.0.2")));
    let to = format!("sip:bob@127.0.0.1:{};transport=tls", wrong.port());
    let (status, reply) = dial(&server, "dialbad", &to);
    assert_eq!(status, 201, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("switchboard_sip_calls_total{outcome=\"ended\"}") < 1 {
        assert!(
            Instant::now() < deadline,
            "the call to a wrongly named certificate did not end"
        );
        b.pump(Duration::from_millis(5)).expect("pump B");
        wrong.pump();
    }
    assert!(wrong.received.is_empty(), "{:?}", wrong.received);
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
    assert_eq!(server.metric("switchboard_sip_connections"), 0);
    drop(wrong);

    // The right name (sips: is TLS).
    let mut far = FarEnd::new(Some(ca.server("127.0.0.1")));
    let to = format!("sips:bob@127.0.0.1:{}", far.port());
    let (status, reply) = dial(&server, "dialtls", &to);
    assert_eq!(status, 201, "{reply}");
    let peer = talk(&mut b, &mut far);
    assert_sent_over(&far, "TLS");
    far_end_hangs_up(&server, &mut b, &mut far, &peer);
    assert_eq!(
        server.metric("switchboard_sip_calls_total{outcome=\"ended\"}"),
        2
    );
}

#[test]
fn a_far_end_whose_connection_vanishes_is_hung_up_cleanly() {
    let (server, _gw) = gateway(&["--sip-rtp-timeout", "3"]);
    let mut b = member(&server, "dialgone");
    let mut far = FarEnd::new(None);
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp", far.port());
    let (status, reply) = dial(&server, "dialgone", &to);
    assert_eq!(status, 201, "{reply}");
    let peer = talk(&mut b, &mut far);
    // No BYE, no RTP, the connection and the listener gone.
    far.vanish();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !b.left_peers.contains(&peer) {
        assert!(
            Instant::now() < deadline,
            "the call to a vanished far end stayed"
        );
        b.pump(Duration::from_millis(10)).expect("pump B");
    }
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
    assert_eq!(server.metric("switchboard_sip_connections"), 0);
}
