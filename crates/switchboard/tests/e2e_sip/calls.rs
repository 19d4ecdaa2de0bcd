//! The SIP gateway end to end, hermetic: the real binary, a phone made of our own SIP
//! stack (`switchboard_sip::ua::UserAgent` on a UDP socket, G.711 RTP from
//! `switchboard_media`), and a member of the room (a str0m WebRTC client of the SFU,
//! publishing a 1,000 Hz Opus tone). What a user would check:
//!
//! - the phone's call to `sip:<room>@gateway` is answered, a `service: "sip"` peer joins
//!   the room, the member decodes the phone's 440 Hz, the phone decodes the member's
//!   1,000 Hz; the phone hangs up, the peer leaves, and no call, dialog, transaction,
//!   media task or RTP port is left;
//! - refusals carry the right status: no such room (404, with direct rooms off), no
//!   common codec (488), missing or wrong credentials with `--sip-auth` (401 / 403), and
//!   the right credentials get through;
//! - a phone that vanishes mid-call (no RTP, no BYE) is hung up after `--sip-rtp-timeout`;
//! - malformed SIP is answered 400 and the gateway goes on.
//!
//! The same against Debian's baresip is in `tests/sip_baresip.rs` (ignored: needs baresip).

use crate::lab;

use crate::common;

use common::sip::{decode_opus, heard_from, sip_peer, OpusTone};
use common::sip_phone::{Phone, PhoneMedia};
use common::Server;
use lab::tone_of;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_client::sfu::SfuClient;
use switchboard_sip::sdp::{Codec, SessionDescription};
use switchboard_sip::ua::UaEvent;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn gateway(extra: &[&str]) -> (Server, SocketAddr) {
    let low = 40_000 + (std::process::id() % 200) * 100;
    // Transactions end 64×T1 after their last message: 6.4 s, not 32 s.
    common::sip::gateway(&format!("{low}-{}", low + 99), "100", extra)
}

fn assert_nothing_left(server: &Server) {
    common::sip::assert_nothing_left(server, Duration::from_secs(10));
}

/// The gateway's count of the packets its room leg received (from the room's members).
const ROOM_PACKETS_IN: &str = "switchboard_sip_media_packets_total{leg=\"room\",direction=\"in\"}";

#[test]
fn a_phone_calls_a_room_and_both_sides_hear_each_other() {
    phone_calls_a_room(&[]);
}

/// The same with the leg's RTP through its WebRTC connection to the SFU, not in-process.
#[test]
fn a_phone_calls_a_room_over_a_webrtc_room_leg() {
    phone_calls_a_room(&["--sip-room-media", "webrtc"]);
}

fn phone_calls_a_room(extra: &[&str]) {
    let (server, gw) = gateway(extra);
    let http = server.http.expect("http");
    let mut b = SfuClient::join(http, "lobby", "B", Some("sfu"), LOOPBACK).expect("B joins");
    b.media.capture = true;
    let sfu = b
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump B");
    assert!(sfu, "the SFU did not join the room");
    b.publish_audio().expect("B publishes");
    let mut tone = OpusTone::new(1000.0);
    let mut phone = Phone::new();
    let offer = phone.offer();
    let call = phone.call(format!("sip:lobby@{gw}"), gw, offer.clone(), None);
    // While the call is set up, B keeps its connection going.
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        assert!(
            Instant::now() < deadline,
            "the call was not answered within 15 s"
        );
        b.pump(Duration::from_millis(2)).expect("pump B");
        phone.pump();
        let mut done = None;
        for e in phone.events.drain(..) {
            match e {
                UaEvent::Connected { call: c, remote } if c == call => done = Some(remote),
                UaEvent::Ended { call: c, reason } if c == call => {
                    panic!(
                        "the gateway refused the call: {:?} {}",
                        reason.status, reason.reason
                    )
                }
                _ => {}
            }
        }
        if let Some(remote) = done {
            break remote.expect("the 200 carries SDP");
        }
    };
    let negotiated = phone
        .sdp
        .accept_answer(&offer, &answer, &phone.local)
        .expect("the gateway's answer fits our offer");
    assert_eq!(negotiated.codec, Codec::Pcmu);
    let mut media = PhoneMedia::new(&negotiated);
    let mut next_opus = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut peer = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "after 20 s: B got {} packets from the sip peer {peer:?}, the phone {} samples",
            peer.as_deref().map_or(0, |p| heard_from(&b, p).len()),
            media.heard.len()
        );
        if Instant::now() >= next_opus && b.media.connected {
            let f = tone.frame();
            b.media.send_audio_packet(&f);
            next_opus += Duration::from_millis(20);
        }
        b.pump(Duration::from_millis(1)).expect("pump B");
        phone.pump();
        media.step(&phone.media);
        peer = peer.or_else(|| sip_peer(&b));
        let b_heard = peer.as_deref().map_or(0, |p| heard_from(&b, p).len());
        // 4 s each way, and 4 s of B's packets counted by the gateway: the phone's 4 s run
        // on the gateway's clock from the answer, B's reach the gateway only once it is
        // subscribed to B, so on a loaded machine they can be a few short (checked below).
        if b_heard >= 200 && media.heard.len() >= 32_000 && server.metric(ROOM_PACKETS_IN) >= 200 {
            break;
        }
    }
    let peer = peer.expect("the sip peer");
    let pcm = decode_opus(&heard_from(&b, &peer)[50..]);
    let (hz, rms) = tone_of(&pcm, 48_000);
    eprintln!("the room heard the phone: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 440.0).abs() < 10.0 && rms > 1000.0,
        "the room heard {hz:.0} Hz at RMS {rms:.0}, not the phone's 440 Hz"
    );
    let (hz, rms) = tone_of(&media.heard[8000..], 8000);
    eprintln!("the phone heard the room: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 1000.0).abs() < 15.0 && rms > 1000.0,
        "the phone heard {hz:.0} Hz at RMS {rms:.0}, not the room's 1,000 Hz"
    );
    let joined = b
        .joined_peers
        .iter()
        .find(|p| p["service"] == "sip")
        .expect("sip peer");
    assert_eq!(joined["name"], "Phone", "{joined}");

    phone.ua.hangup(Instant::now(), call).expect("BYE");
    assert!(
        phone.ended(call, Duration::from_secs(5)),
        "BYE was not answered"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.left_peers.contains(&peer) {
        assert!(Instant::now() < deadline, "the sip peer stayed in the room");
        b.pump(Duration::from_millis(10)).expect("pump B");
    }
    assert_nothing_left(&server);
    assert_eq!(
        server.metric("switchboard_sip_calls_total{outcome=\"ended\"}"),
        1
    );
    // The call's media reached the metrics: at least the 4 s each way heard above.
    for leg in ["phone", "room"] {
        for dir in ["in", "out"] {
            let name =
                format!("switchboard_sip_media_packets_total{{leg=\"{leg}\",direction=\"{dir}\"}}");
            let n = server.metric(&name);
            assert!(n >= 200, "{name} = {n}");
        }
    }
}

#[test]
fn calls_the_gateway_cannot_take_are_refused_with_the_right_status() {
    let (server, gw) = gateway(&[
        "--sip-direct-rooms",
        "false",
        "--sip-route",
        "sales=sales-room",
        "--sip-auth",
        "carol:carolpw",
    ]);
    let mut phone = Phone::new();
    // No credentials: challenged, and the phone has nothing to answer with.
    let offer = phone.offer();
    let call = phone.call(format!("sip:sales@{gw}"), gw, offer, None);
    assert_eq!(
        phone.outcome(call, Duration::from_secs(10)).err(),
        Some(Some(401))
    );
    // Wrong password.
    let offer = phone.offer();
    let call = phone.call(
        format!("sip:sales@{gw}"),
        gw,
        offer,
        Some(("carol", "nope")),
    );
    let status = phone.outcome(call, Duration::from_secs(10)).err().flatten();
    assert!(matches!(status, Some(401 | 403)), "{status:?}");
    // No route for this user, direct rooms off: 404 (after authenticating).
    let offer = phone.offer();
    let call = phone.call(
        format!("sip:elsewhere@{gw}"),
        gw,
        offer,
        Some(("carol", "carolpw")),
    );
    assert_eq!(
        phone.outcome(call, Duration::from_secs(10)).err(),
        Some(Some(404))
    );
    // No codec in common: G.729 only.
    let g729 = SessionDescription::parse(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
    )
    .expect("SDP");
    let call = phone.call(
        format!("sip:sales@{gw}"),
        gw,
        g729,
        Some(("carol", "carolpw")),
    );
    assert_eq!(
        phone.outcome(call, Duration::from_secs(10)).err(),
        Some(Some(488))
    );
    // Malformed SIP: 400, and the gateway goes on.
    let raw = UdpSocket::bind("127.0.0.1:0").expect("bind");
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = raw.local_addr().expect("addr");
    let garbage = format!(
        "INVITE sip:sales@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:sales@{gw}>\r\nCall-ID: bad1\r\nCSeq: nonsense\r\nContent-Length: 0\r\n\r\n"
    );
    raw.send_to(garbage.as_bytes(), gw).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = raw
        .recv_from(&mut buf)
        .expect("an answer to the malformed request");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    // The right credentials get through to the route's room (mesh-free: it turns SFU).
    let offer = phone.offer();
    let call = phone.call(
        format!("sip:sales@{gw}"),
        gw,
        offer,
        Some(("carol", "carolpw")),
    );
    assert!(
        phone.outcome(call, Duration::from_secs(15)).is_ok(),
        "the authenticated call was refused"
    );
    phone.ua.hangup(Instant::now(), call).expect("BYE");
    assert!(phone.ended(call, Duration::from_secs(5)));
    assert_nothing_left(&server);
}

#[test]
fn a_phone_that_vanishes_is_hung_up_after_the_rtp_timeout() {
    let (server, gw) = gateway(&["--sip-rtp-timeout", "3"]);
    let mut phone = Phone::new();
    let offer = phone.offer();
    let call = phone.call(format!("sip:vanish@{gw}"), gw, offer, None);
    assert!(
        phone.outcome(call, Duration::from_secs(15)).is_ok(),
        "not answered"
    );
    // The phone sends no RTP at all: the gateway gives up after 3 s and says BYE.
    let ended = phone.ended(call, Duration::from_secs(15));
    assert!(ended, "the gateway did not hang up a silent phone");
    assert_nothing_left(&server);
}

/// An OPTIONS request (a keep-alive ping trunks send) from `local` to the gateway.
fn options(local: &str, transport: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:gateway SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=p1\r\nTo: <sip:gateway>\r\nCall-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn sip_over_tcp_and_websocket_is_answered_on_the_same_connection() {
    use std::io::{Read, Write};
    let (server, _gw) = gateway(&[]);
    let tcp: SocketAddr = server.ready["listeners"]["sip-tcp"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the ready file names the SIP TCP listener");
    let mut s = std::net::TcpStream::connect(tcp).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = s.local_addr().expect("addr").to_string();
    // A keep-alive ping first (RFC 5626: answered with a CRLF), then the request in two
    // pieces: the framing waits for the whole message.
    s.write_all(b"\r\n\r\n").expect("ping");
    let req = options(&local, "TCP", "tcp1");
    let (a, b) = req.split_at(40);
    s.write_all(a.as_bytes()).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut chunk).expect("an answer over TCP");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let text = text.trim_start_matches("\r\n");
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
    assert!(text.contains("Call-ID: tcp1@probe"), "{text}");

    // WebSocket (RFC 7118): subprotocol `sip`, one message per frame.
    let http = server.http.expect("http");
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{http}/sip"))
            .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tungstenite::http::HeaderValue::from_static("sip"),
    );
    let stream = std::net::TcpStream::connect(http).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (mut ws, response) = tungstenite::client(request, stream).expect("WebSocket upgrade");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    ws.send(tungstenite::Message::text(options(
        "df7jal23ls0d.invalid",
        "WS",
        "ws1",
    )))
    .expect("send");
    let answer = ws.read().expect("an answer over the WebSocket");
    let text = answer.into_text().expect("a text frame");
    assert!(text.starts_with("SIP/2.0 200 "), "{text}");
    assert!(text.contains("Call-ID: ws1@probe"), "{text}");
    assert!(server.metric("switchboard_sip_connections") >= 1);
}

#[test]
fn a_caller_reaches_a_room_by_pin() {
    let (server, gw) = gateway(&["--sip-route", "dialin=@pin", "--sip-pin", "4321=board"]);
    let http = server.http.expect("http");
    let mut b = SfuClient::join(http, "board", "B", Some("sfu"), LOOPBACK).expect("B joins");
    let sfu = b
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump B");
    assert!(sfu, "the SFU did not join the room");
    let mut phone = Phone::new();
    let offer = phone.offer();
    let call = phone.call(format!("sip:dialin@{gw}"), gw, offer.clone(), None);
    // Answered at once, with no room yet.
    let answer = match phone.outcome(call, Duration::from_secs(10)) {
        Ok(a) => a,
        Err(status) => panic!("the PIN call was refused: {status:?}"),
    };
    let negotiated = phone
        .sdp
        .accept_answer(&offer, &answer, &phone.local)
        .expect("answer");
    let mut media = PhoneMedia::new(&negotiated);
    let run = |phone: &mut Phone, media: &mut PhoneMedia, b: &mut SfuClient, d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            phone.pump();
            media.step(&phone.media);
            b.pump(Duration::from_millis(1)).expect("pump B");
        }
    };
    // The prompt: beeps at 660 Hz.
    run(&mut phone, &mut media, &mut b, Duration::from_secs(1));
    let start = media
        .heard
        .iter()
        .position(|x| x.unsigned_abs() > 500)
        .expect("the phone heard the prompt");
    let (hz, _) = tone_of(&media.heard[start..start + 1000], 8000);
    assert!(
        (hz - 660.0).abs() < 20.0,
        "the prompt is {hz:.0} Hz, not 660"
    );
    // A wrong PIN (SIP INFO keys), then the right one.
    for key in "99#4321#".chars() {
        phone
            .ua
            .send_dtmf_info(Instant::now(), call, key, 100)
            .expect("INFO");
        run(&mut phone, &mut media, &mut b, Duration::from_millis(150));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sip_peer(&b).is_none() {
        assert!(
            Instant::now() < deadline,
            "the PIN did not open room `board`"
        );
        run(&mut phone, &mut media, &mut b, Duration::from_millis(20));
    }
    assert_eq!(
        phone
            .events
            .iter()
            .filter(|e| matches!(e, UaEvent::Ended { .. }))
            .count(),
        0
    );
    phone.ua.hangup(Instant::now(), call).expect("BYE");
    assert!(phone.ended(call, Duration::from_secs(5)));
    assert_nothing_left(&server);
}

#[test]
fn three_wrong_pins_end_the_call() {
    let (server, gw) = gateway(&["--sip-route", "*=@pin", "--sip-pin", "4321=board"]);
    let mut phone = Phone::new();
    let offer = phone.offer();
    let call = phone.call(format!("sip:anything@{gw}"), gw, offer, None);
    assert!(
        phone.outcome(call, Duration::from_secs(10)).is_ok(),
        "not answered"
    );
    for key in "1#2#3#".chars() {
        phone
            .ua
            .send_dtmf_info(Instant::now(), call, key, 100)
            .expect("INFO");
        let end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < end {
            phone.pump();
        }
    }
    assert!(
        phone.ended(call, Duration::from_secs(10)),
        "the gateway kept a caller with three wrong PINs"
    );
    assert_nothing_left(&server);
}

/// Keys both ways as SIP INFO, for a phone that offers no telephone-event: the room's
/// `{"sip":"dtmf"}` become INFO requests to the phone, the phone's INFO become
/// `{"sip":{"dtmf":…}}` messages in the room.
#[test]
fn keys_cross_as_sip_info_when_the_phone_has_no_rfc4733() {
    let (server, gw) = gateway(&[]);
    let http = server.http.expect("http");
    let mut b = SfuClient::join(http, "keys", "B", Some("sfu"), LOOPBACK).expect("B joins");
    let sfu = b
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump B");
    assert!(sfu, "the SFU did not join the room");
    let mut phone = Phone::new();
    let port = phone.local.port;
    let offer = SessionDescription::parse(
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n").as_bytes(),
    )
    .expect("SDP");
    let call = phone.call(format!("sip:keys@{gw}"), gw, offer.clone(), None);
    let answer = match phone.outcome(call, Duration::from_secs(15)) {
        Ok(a) => a,
        Err(status) => panic!("refused: {status:?}"),
    };
    let negotiated = phone
        .sdp
        .accept_answer(&offer, &answer, &phone.local)
        .expect("answer");
    assert_eq!(negotiated.telephone_event, None);
    let mut media = PhoneMedia::new(&negotiated);
    let deadline = Instant::now() + Duration::from_secs(10);
    let peer = loop {
        assert!(Instant::now() < deadline, "no sip peer in the room");
        phone.pump();
        media.step(&phone.media);
        b.pump(Duration::from_millis(1)).expect("pump B");
        if let Some(p) = sip_peer(&b) {
            break p;
        }
    };
    b.send_message(&peer, serde_json::json!({"sip": "dtmf", "digits": "12"}))
        .expect("keys");
    phone
        .ua
        .send_dtmf_info(Instant::now(), call, '7', 100)
        .expect("INFO");
    let phone_keys = |p: &Phone| -> String {
        p.events
            .iter()
            .filter_map(|e| match e {
                UaEvent::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .collect()
    };
    let room_keys = |b: &SfuClient| -> String {
        b.messages
            .iter()
            .filter_map(|m| m["data"]["sip"]["dtmf"].as_str())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while phone_keys(&phone) != "12" || room_keys(&b) != "7" {
        assert!(
            Instant::now() < deadline,
            "keys at the phone {:?}, in the room {:?}",
            phone_keys(&phone),
            room_keys(&b)
        );
        phone.pump();
        media.step(&phone.media);
        b.pump(Duration::from_millis(1)).expect("pump B");
    }
    phone.ua.hangup(Instant::now(), call).expect("BYE");
    assert!(phone.ended(call, Duration::from_secs(5)));
    assert_nothing_left(&server);
}

/// SIGTERM while a call is up: the gateway refuses new calls (503) while it drains, and
/// when the drain time is over it says BYE to the call and the process exits cleanly.
#[test]
fn a_stopping_server_refuses_new_calls_and_hangs_up_the_live_ones() {
    let (mut server, gw) = gateway(&["--drain-timeout", "2"]);
    let mut phone = Phone::new();
    let offer = phone.offer();
    let call = phone.call(format!("sip:stopping@{gw}"), gw, offer, None);
    let answer = phone.outcome(call, Duration::from_secs(15));
    assert!(answer.is_ok(), "not answered: {answer:?}");
    server.signal(libc::SIGTERM);
    assert!(server
        // The supervisor's line, said after every service was told to drain.
        .wait_log("draining: refusing new work", Duration::from_secs(5))
        .is_some());
    let mut late = Phone::new();
    let offer = late.offer();
    let refused = late.call(format!("sip:stopping@{gw}"), gw, offer, None);
    assert_eq!(
        late.outcome(refused, Duration::from_secs(10)).err(),
        Some(Some(503)),
        "a new call while draining"
    );
    // The live call ends with a BYE from the gateway when the drain time is up.
    let ended = phone.ended(call, Duration::from_secs(15));
    assert!(ended, "the gateway stopped without hanging up the call");
    let by = phone.events.iter().find_map(|e| match e {
        UaEvent::Ended { call: c, reason } if *c == call => Some(format!("{:?}", reason.by)),
        _ => None,
    });
    assert_eq!(by.as_deref(), Some("Remote"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = server.child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
