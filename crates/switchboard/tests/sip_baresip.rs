//! The SIP gateway against a real SIP phone (Debian's baresip) and a member of the room
//! (a str0m WebRTC client of the SFU, publishing a 1,000 Hz Opus tone):
//!
//! - the member places a call to baresip (`POST /api/sip/calls`) and hangs it up with a
//!   `{"sip":"hangup"}` message to the call's peer: the member decodes baresip's 440 Hz
//!   from the call's audio track, baresip's recording holds the member's 1,000 Hz;
//! - keys: the member's `{"sip":"dtmf"}` reach baresip as RFC 4733 events, baresip's keys
//!   reach the member as `{"sip":{"dtmf":…}}`;
//! - with SDES-SRTP (`;srtp=sdes`) to baresip set to `mediaenc=srtp-mand`: both ways;
//! - with DTLS-SRTP + ICE (`;srtp=dtls`) to baresip set to `mediaenc=dtls_srtp` and
//!   `medianat=ice`: both ways;
//! - through kamailio over TCP (the gateway's account with `;transport=tcp`): both ways;
//! - after each call the gateway's gauges (calls, dialogs, transactions, media tasks, RTP
//!   ports) are back to 0.
//!
//! Ignored by default (needs `baresip`); `scripts/test-all.sh` installs Debian's
//! `baresip-core` and runs the ignored tests.
//!
//! The codec and encryption variants (PCMU, PCMA, SDES-SRTP, DTLS-SRTP + ICE), kamailio over
//! UDP both ways and the three-party mix are shown with real Chromium pages in the room
//! instead: tests/browser/sip-matrix.test.mjs.

#[path = "../../sip/tests/lab/mod.rs"]
mod lab;

mod common;

use common::sip::{decode_opus, heard_from, sip_peer, OpusTone};
use common::Server;
use lab::{
    ctrl_command, read_ctrl, recorded_tone, start_baresip, start_baresip_dtls, tone_of, Baresip,
};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use switchboard_client::sfu::{http_request, SfuClient};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A server with the SFU and the SIP gateway on loopback.
fn gateway() -> (Server, SocketAddr) {
    common::sip::gateway(&rtp_ports(30_000), "100", &[])
}

/// Tests run side by side: each process takes its own 100 ports from `base` (a port
/// another process holds is skipped by the gateway anyway).
fn rtp_ports(base: u32) -> String {
    let low = base + (std::process::id() % 300) * 100;
    format!("{low}-{}", low + 99)
}

/// A member of `room` publishing Opus, capturing what it receives.
fn member(server: &Server, room: &str) -> SfuClient {
    let http = server.http.expect("http");
    let mut b = SfuClient::join(http, room, "B", Some("sfu"), LOOPBACK).expect("B joins");
    b.media.capture = true;
    let sfu = b
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump B");
    assert!(sfu, "the SFU did not join the room");
    b.publish_audio().expect("B publishes audio");
    b
}

/// Pump B (and send its tone every 20 ms) until `done` or `timeout`.
fn pump(
    b: &mut SfuClient,
    tone: &mut OpusTone,
    timeout: Duration,
    mut done: impl FnMut(&SfuClient) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut next = Instant::now();
    while Instant::now() < deadline {
        if done(b) {
            return true;
        }
        if Instant::now() >= next && b.media.connected {
            let f = tone.frame();
            b.media.send_audio_packet(&f);
            next += Duration::from_millis(20);
        }
        b.pump(Duration::from_millis(2)).expect("pump B");
    }
    done(b)
}

fn assert_nothing_left(server: &Server) {
    common::sip::assert_nothing_left(server, Duration::from_secs(10));
}

/// Both directions of a call that is up: B hears 440 Hz from the sip peer; returns the
/// sip peer's id. baresip's side is checked after hangup (its recording).
fn hear_the_phone(b: &mut SfuClient, tone: &mut OpusTone) -> String {
    let got_peer = pump(b, tone, Duration::from_secs(15), |b| sip_peer(b).is_some());
    assert!(
        got_peer,
        "no sip peer joined the room: {:?}",
        b.joined_peers
    );
    let peer = sip_peer(b).unwrap_or_default();
    // 4 s of the phone's voice.
    let enough = pump(b, tone, Duration::from_secs(15), |b| {
        heard_from(b, &peer).len() >= 200
    });
    let payloads = heard_from(b, &peer);
    assert!(
        enough,
        "B received {} Opus packets from the sip peer (tracks {:?})",
        payloads.len(),
        b.tracks()
    );
    // Skip the first second (the phone's and the jitter buffers' start).
    let pcm = decode_opus(&payloads[50..]);
    let (hz, rms) = tone_of(&pcm, 48_000);
    eprintln!("B heard the phone: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 440.0).abs() < 15.0 && rms > 500.0,
        "B heard {hz:.0} Hz at RMS {rms:.0}, not baresip's 440 Hz"
    );
    peer
}

fn baresip_recorded_the_member(phone: &Baresip) {
    let (hz, rms) = recorded_tone(phone);
    eprintln!("baresip heard {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 1000.0).abs() < 25.0 && rms > 500.0,
        "baresip heard {hz:.0} Hz at RMS {rms:.0}, not the member's 1,000 Hz"
    );
}

#[test]
#[ignore = "needs baresip (scripts/test-all.sh installs it)"]
fn the_room_calls_baresip_and_keys_cross() {
    let (server, _gw) = gateway();
    let http = server.http.expect("http");
    let mut b = member(&server, "dialout");
    let mut tone = OpusTone::new(1000.0);
    let mut phone = start_baresip(false, "PCMU/8000/1");
    let body = json!({"room": "dialout", "to": format!("sip:alice@{}", phone.sip)}).to_string();
    let (status, _, reply) = http_request(
        http,
        "POST",
        "/api/sip/calls",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /api/sip/calls");
    assert_eq!(status, 201, "{reply}");
    let call: Value = serde_json::from_str(&reply).expect("JSON");
    assert!(call["call"].is_string(), "{reply}");
    let peer = hear_the_phone(&mut b, &mut tone);

    // Keys from the room reach baresip, in order.
    b.send_message(&peer, json!({"sip": "dtmf", "digits": "19#"}))
        .expect("send keys");
    let mut events = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab::dtmf_events(&events) != "19#" && Instant::now() < deadline {
        pump(&mut b, &mut tone, Duration::from_millis(100), |_| false);
        read_ctrl(&mut phone, &mut events);
    }
    assert_eq!(
        lab::dtmf_events(&events),
        "19#",
        "baresip's events: {events}"
    );
    // Keys from baresip reach the room.
    let console = std::net::UdpSocket::bind("127.0.0.1:0").expect("console socket");
    // A key on baresip's console, then EOT (the key's release).
    for key in [b"5\x04", b"7\x04"] {
        console.send_to(key, phone.console).expect("key");
        pump(&mut b, &mut tone, Duration::from_millis(400), |_| false);
    }
    let keys = |b: &SfuClient| -> String {
        b.messages
            .iter()
            .filter(|m| m["from"] == peer.as_str())
            .filter_map(|m| m["data"]["sip"]["dtmf"].as_str())
            .collect()
    };
    let got = pump(&mut b, &mut tone, Duration::from_secs(10), |b| {
        keys(b) == "57"
    });
    assert!(got, "keys from baresip in the room: {:?}", keys(&b));

    // The room hangs up.
    b.send_message(&peer, json!({"sip": "hangup"}))
        .expect("hangup");
    let left = pump(&mut b, &mut tone, Duration::from_secs(10), |b| {
        b.left_peers.contains(&peer)
    });
    assert!(left, "the sip peer did not leave after the room hung up");
    let ended = b
        .messages
        .iter()
        .any(|m| m["from"] == peer.as_str() && m["data"]["sip"]["state"] == "ended");
    assert!(ended, "no `ended` state: {:?}", b.messages);
    baresip_recorded_the_member(&phone);
    assert_nothing_left(&server);
}

/// `POST /api/sip/calls` from `room` to `to`; the gateway's "SIP call out" log line.
fn dial_from_room(server: &Server, room: &str, to: &str) -> String {
    let http = server.http.expect("http");
    let body = json!({"room": room, "to": to}).to_string();
    let (status, _, reply) = http_request(
        http,
        "POST",
        "/api/sip/calls",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /api/sip/calls");
    assert_eq!(status, 201, "{reply}");
    server
        .wait_log("SIP call out", Duration::from_secs(5))
        .expect("the call out was logged")
}

/// The member hangs the call with `peer` up; the peer leaves, baresip's recording holds
/// the member's tone, and nothing of the call is left.
fn hang_up_from_the_room(
    server: &Server,
    b: &mut SfuClient,
    tone: &mut OpusTone,
    peer: &str,
    phone: &Baresip,
) {
    b.send_message(peer, json!({"sip": "hangup"}))
        .expect("hangup");
    let left = pump(b, tone, Duration::from_secs(10), |b| {
        b.left_peers.iter().any(|p| p == peer)
    });
    assert!(left, "the sip peer did not leave after the room hung up");
    baresip_recorded_the_member(phone);
    assert_nothing_left(server);
}

/// The room calls baresip with SDES-SRTP (`;srtp=sdes`): baresip, set to
/// `mediaenc=srtp-mand`, answers `RTP/SAVP` with its key (the gateway takes no answer
/// without one); the tones cross both ways through SRTP; the room hangs up.
#[test]
#[ignore = "needs baresip (scripts/test-all.sh installs it)"]
fn the_room_calls_baresip_with_sdes_srtp() {
    let (server, _gw) = gateway();
    let mut b = member(&server, "dialsrtp");
    let mut tone = OpusTone::new(1000.0);
    let phone = start_baresip(true, "PCMU/8000/1");
    let out = dial_from_room(
        &server,
        "dialsrtp",
        &format!("sip:alice@{};srtp=sdes", phone.sip),
    );
    assert!(
        out.contains("srtp") && out.ends_with("true"),
        "not offered with SRTP: {out}"
    );
    let peer = hear_the_phone(&mut b, &mut tone);
    hang_up_from_the_room(&server, &mut b, &mut tone, &peer, &phone);
}

/// The room calls baresip with DTLS-SRTP + ICE (`;srtp=dtls`): baresip, set to
/// `mediaenc=dtls_srtp;medianat=ice`, answers our ICE-lite `UDP/TLS/RTP/SAVPF` offer,
/// runs its ICE checks against the gateway's RTP port, the DTLS handshake follows (the
/// log says DTLS-SRTP is up); the tones cross both ways through SRTP; the room hangs up.
#[test]
#[ignore = "needs baresip (scripts/test-all.sh installs it)"]
fn the_room_calls_baresip_with_dtls_srtp() {
    let (server, _gw) = gateway();
    let mut b = member(&server, "dialdtls");
    let mut tone = OpusTone::new(1000.0);
    let phone = start_baresip_dtls("PCMU/8000/1");
    let out = dial_from_room(
        &server,
        "dialdtls",
        &format!("sip:alice@{};srtp=dtls", phone.sip),
    );
    assert!(
        out.contains("dtls_srtp"),
        "not offered with DTLS-SRTP: {out}"
    );
    let peer = hear_the_phone(&mut b, &mut tone);
    server
        .wait_log("DTLS-SRTP to the phone is up", Duration::from_secs(1))
        .expect("the DTLS-SRTP handshake was logged");
    hang_up_from_the_room(&server, &mut b, &mut tone, &peer, &phone);
}

/// The gateway's account over TCP (`;transport=tcp`): it registers at kamailio on a
/// connection it opens and keeps while registered; baresip (UDP) calls alice and lands in
/// `office`; the room calls bob through kamailio, the INVITE (and the 407 round) on the
/// registration's connection, no other opened; `DELETE` hangs up.
#[test]
#[ignore = "needs kamailio and baresip (scripts/test-all.sh installs them)"]
fn through_kamailio_over_tcp() {
    let k = lab::start_kamailio(&[]);
    let kport = k.addr.port();
    let account = format!("alice:alicepw@127.0.0.1:{kport};expires=60;room=office;transport=tcp");
    let (server, _gw) =
        common::sip::gateway(&rtp_ports(32_000), "100", &["--sip-account", &account]);
    assert_eq!(
        server.metric_reaching("switchboard_sip_registrations", 1),
        1,
        "the gateway did not register at kamailio over TCP"
    );
    assert_eq!(server.metric("switchboard_sip_connections"), 1);
    let http = server.http.expect("http");
    let mut b = member(&server, "office");
    let mut tone = OpusTone::new(1000.0);
    let mut phone = lab::start_baresip_with(|_| {
        format!(
            "<sip:bob@127.0.0.1:{kport};transport=udp>;auth_pass=bobpw;answermode=auto;audio_codecs=PCMU/8000/1;regint=60"
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    ctrl_command(&mut phone, "dial", &format!("sip:alice@127.0.0.1:{kport}"));
    let peer = hear_the_phone(&mut b, &mut tone);
    ctrl_command(&mut phone, "hangup", "");
    let left = pump(&mut b, &mut tone, Duration::from_secs(10), |b| {
        b.left_peers.contains(&peer)
    });
    assert!(left, "the first call's peer did not leave");
    assert_nothing_left(&server);
    // kamailio delivered that call on connections of its own to our TCP listener.
    let connections = server.metric("switchboard_sip_connections");

    let body = json!({"room": "office", "to": format!("sip:bob@127.0.0.1:{kport}")}).to_string();
    let (status, _, reply) = http_request(
        http,
        "POST",
        "/api/sip/calls",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /api/sip/calls");
    assert_eq!(status, 201, "{reply}");
    let call: Value = serde_json::from_str(&reply).expect("JSON");
    let label = call["call"].as_str().expect("call").to_string();
    let peer = hear_the_phone(&mut b, &mut tone);
    let (status, _, reply) = http_request(
        http,
        "DELETE",
        &format!("/api/sip/calls/office/{label}"),
        &[],
        "",
    )
    .expect("DELETE");
    assert_eq!(status, 200, "{reply}");
    let left = pump(&mut b, &mut tone, Duration::from_secs(10), |b| {
        b.left_peers.contains(&peer)
    });
    assert!(left, "the second call's peer did not leave after DELETE");
    assert_nothing_left(&server);
    assert_eq!(
        server.metric("switchboard_sip_connections"),
        connections,
        "the call out opened a connection instead of taking the registration's"
    );
    let out = server
        .wait_log("SIP call out", Duration::from_secs(1))
        .expect("the call out was logged");
    assert!(out.contains("\"TCP\""), "not over TCP: {out}");
    drop(phone);
    drop(k);
}
