//! `--turn-on-http-port` (issue 4, RFC 7443): one port serves HTTPS (the app, wss
//! signaling, `/api/ice-servers`) and TURN over TLS (ALPN `stun.turn`, or no ALPN) and
//! over plain TCP; plain HTTP there is redirected; garbage is closed without harm to
//! the others. coturn's uclient relays through it.

use crate::common;

use common::client::TurnRequests;
use common::signal_client::{tls_connect, try_tls_connect, Stream, WsClient};
use common::tcp_client::TcpTurn;
use common::{echo_peer, require, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;
use switchboard_client::ClientAuth;
use switchboard_stun::{Class, Message, MessageWriter, Method, TransactionId};

const ALPN_TURN: &[u8] = b"stun.turn";
const ALPN_HTTP: &[u8] = b"http/1.1";

fn start(extra: &[&str]) -> (Server, SocketAddr, String) {
    let mut args = vec![
        "--user",
        "alice:alicepw",
        "--static-auth-secret",
        "labsecret",
        "--realm",
        "lab.test",
        "--allowed-peer-ip",
        "127.0.0.1",
        "--tls-self-signed",
        "--tls-listening-port",
        "0",
        "--turn-on-http-port",
    ];
    args.extend_from_slice(extra);
    let s = Server::start(&args);
    let port = s.http.expect("https");
    let fp = s.tls_fingerprint();
    (s, port, fp)
}

/// GET `path` over `stream` (HTTP/1.1, Connection: close); the whole response.
fn get(mut stream: Stream, path: &str) -> String {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    // rustls reports a peer closing without close_notify as an error; keep what came.
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Allocate a UDP relay over `c`, bind a channel to the echo peer and get a payload
/// back through it.
fn relay_round_trip(c: &mut TcpTurn, peer: SocketAddr, what: &str) {
    let r = c.allocate_udp();
    assert!(r.ok(), "{what}: allocate failed: {:?}", r.code);
    assert!(!r.relayed().is_empty(), "{what}: no relayed address");
    let r = c.channel_bind(0x4001, peer);
    assert!(r.ok(), "{what}: channel bind failed: {:?}", r.code);
    let payload = format!("through the shared port: {what}");
    c.send_channel(0x4001, payload.as_bytes());
    let frame = c.read_frame().expect("echo back");
    assert_eq!(&frame[..2], &[0x40, 0x01], "{what}: ChannelData expected");
    let n = u16::from_be_bytes([frame[2], frame[3]]) as usize;
    assert_eq!(&frame[4..4 + n], payload.as_bytes(), "{what}");
}

fn binding(c: &mut TcpTurn) -> bool {
    c.request_once(Method::BINDING, &|_| Ok(()))
        .is_some_and(|r| r.class == Class::Success)
}

#[test]
fn https_wss_and_turn_over_tls_and_tcp_share_one_port() {
    let (s, port, fp) = start(&["--threads", "4"]);
    let peer = echo_peer();

    // HTTPS: the app, with the browsers' ALPN list, with http/1.1 only, and with none.
    for alpn in [&[b"h2" as &[u8], ALPN_HTTP][..], &[ALPN_HTTP], &[]] {
        let (stream, got) = tls_connect(port, &fp, alpn);
        let want = (!alpn.is_empty()).then(|| ALPN_HTTP.to_vec());
        assert_eq!(got, want, "ALPN offered {alpn:?}");
        let page = get(stream, "/");
        assert!(
            page.starts_with("HTTP/1.1 200") && page.contains("<html"),
            "ALPN {alpn:?}: {page:.300}"
        );
    }

    // Signaling over wss on the same port.
    let mut a = WsClient::connect_tls(port, &fp);
    let mut b = WsClient::connect_tls(port, &fp);
    let ida = a.join("lobby443", "Ada")["peerId"]
        .as_str()
        .expect("peer id")
        .to_string();
    b.join("lobby443", "Bob");
    b.send(json!({"type": "message", "to": ida, "data": "via 443"}));
    a.expect("peer-joined");
    assert_eq!(a.expect("message")["data"], "via 443");

    // /api/ice-servers names this port for turns:, and its credentials work here.
    let (stream, _) = tls_connect(port, &fp, &[ALPN_HTTP]);
    let resp = get(stream, "/api/ice-servers?identity=carol");
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let turn = &v["iceServers"][1];
    let want = format!("turns:127.0.0.1:{}?transport=tcp", port.port());
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert!(urls.contains(&want.as_str()), "{urls:?} lacks {want}");
    assert!(
        !urls.contains(&format!("turn:127.0.0.1:{}?transport=tcp", port.port()).as_str()),
        "plain TCP on the HTTPS port is accepted but not advertised: {urls:?}"
    );
    let user = turn["username"].as_str().expect("username");
    let cred = turn["credential"].as_str().expect("credential");

    // TURN over TLS: ALPN stun.turn, both offered (stun.turn wins), and none (the
    // first decrypted bytes are STUN).
    let mut held = Vec::new();
    for (alpn, want) in [
        (&[ALPN_TURN][..], Some(ALPN_TURN)),
        (&[ALPN_TURN, ALPN_HTTP], Some(ALPN_TURN)),
        (&[ALPN_HTTP, ALPN_TURN], Some(ALPN_TURN)),
        (&[], None),
    ] {
        let (stream, got) = tls_connect(port, &fp, alpn);
        assert_eq!(got.as_deref(), want, "ALPN offered {alpn:?}");
        let mut c = TcpTurn::over(stream, ClientAuth::user("alice", "alicepw"));
        relay_round_trip(&mut c, peer, &format!("TLS, ALPN {alpn:?}"));
        held.push(c);
    }
    let (stream, _) = tls_connect(port, &fp, &[ALPN_TURN]);
    let mut rest = TcpTurn::over(stream, ClientAuth::user(user, cred));
    relay_round_trip(&mut rest, peer, "TLS with /api/ice-servers credentials");
    held.push(rest);

    // Plain TURN over TCP on the same port.
    let mut plain = TcpTurn::connect(port, "alice", "alicepw");
    relay_round_trip(&mut plain, peer, "plain TCP");
    held.push(plain);

    // Garbage is closed; the connections above carry on.
    let mut junk = TcpStream::connect(port).expect("connect");
    junk.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    junk.write_all(b"\xff\xfe garbage that is neither TLS, STUN nor HTTP\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 64];
    assert!(
        matches!(junk.read(&mut buf), Ok(0) | Err(_)),
        "garbage should be closed"
    );
    // A TLS ClientHello cut short and then nonsense: closed too.
    let mut bad_tls = TcpStream::connect(port).expect("connect");
    bad_tls
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    bad_tls
        .write_all(b"\x16\x03\x01\x00\x05hello, not a handshake")
        .expect("write");
    let mut buf = [0u8; 64];
    let mut closed = false;
    for _ in 0..4 {
        match bad_tls.read(&mut buf) {
            Ok(0) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {} // a TLS alert first
        }
    }
    assert!(closed, "a broken handshake should be closed");
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            binding(c),
            "connection {i} disturbed by garbage on the port"
        );
    }
    assert!(s.metric_reaching("switchboard_turn_allocations", 6) >= 6);
}

#[test]
fn slow_first_bytes_plain_http_redirect_and_reload() {
    let (s, port, fp) = start(&[]);

    // A STUN request trickling in: 3 bytes first, the rest later.
    let tid = TransactionId(rand::random());
    let mut b = [0u8; 64];
    let mut w = MessageWriter::new(&mut b, Method::BINDING, Class::Request, tid).expect("w");
    w.fingerprint().expect("fp");
    let n = w.finish();
    let mut c = TcpStream::connect(port).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.set_nodelay(true).expect("nodelay");
    c.write_all(&b[..3]).expect("write");
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(&b[3..n]).expect("write");
    let mut head = [0u8; 20];
    c.read_exact(&mut head).expect("binding response");
    let mut rest = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
    c.read_exact(&mut rest).expect("body");
    let m = Message::parse(&[&head[..], &rest[..]].concat())
        .map(|m| (m.class, m.tid))
        .expect("STUN");
    assert_eq!(m, (Class::Success, tid));

    // Plain HTTP: a redirect to the same URL over https.
    let r = common::http_get(port, "/r/standup?name=x");
    assert!(r.starts_with("HTTP/1.0 308"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("location: https://x/r/standup?name=x"),
        "{r}"
    );

    // After SIGHUP the port still tells TURN from HTTPS.
    s.signal(libc::SIGHUP);
    assert!(s
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .is_some());
    let (stream, got) = tls_connect(port, &fp, &[ALPN_TURN]);
    assert_eq!(got.as_deref(), Some(ALPN_TURN));
    let mut t = TcpTurn::over(stream, ClientAuth::user("alice", "alicepw"));
    assert!(t.allocate_udp().ok(), "TURN over TLS after reload");
    let (stream, got) = tls_connect(port, &fp, &[ALPN_HTTP]);
    assert_eq!(got.as_deref(), Some(ALPN_HTTP));
    assert!(get(stream, "/").starts_with("HTTP/1.1 200"));
}

#[test]
fn without_the_option_the_https_port_takes_no_turn() {
    let s = Server::start(&[
        "--user",
        "alice:alicepw",
        "--tls-self-signed",
        "--tls-listening-port",
        "0",
    ]);
    let port = s.http.expect("https");
    let fp = s.tls_fingerprint();
    assert!(
        try_tls_connect(port, &fp, &[ALPN_TURN]).is_err(),
        "stun.turn must not be negotiated on a plain HTTPS port"
    );
}

/// Parse uclient's summary: (sent, received, zero loss).
fn uclient_result(text: &str) -> (u64, u64, bool) {
    let count = |key: &str| -> u64 {
        text.lines()
            .filter_map(|l| l.split(key).nth(1))
            .filter_map(|v| {
                v.trim()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .next_back()
            .unwrap_or(0)
    };
    (
        count("tot_send_msgs="),
        count("tot_recv_msgs="),
        text.contains("Total lost packets 0 (0.000000%)"),
    )
}

/// coturn's client over TLS (it offers ALPN stun.turn) and over plain TCP, with a static user
/// and REST credentials, UDP relays and RFC 6062 TCP relays (whose data connections
/// come back through the shared port and may need another worker).
#[test]
#[ignore = "interop: needs coturn's turnutils_uclient (apt-get install coturn); scripts/test-all.sh runs it"]
fn uclient_relays_through_the_https_port() {
    require("turnutils_uclient");
    let (_s, port, _) = start(&["--threads", "4"]);
    let peer = echo_peer();
    let p = port.port().to_string();
    let static_user: &[&str] = &["-u", "alice", "-w", "alicepw"];
    let rest: &[&str] = &["-W", "labsecret", "-u", "bob"];
    let cases: Vec<(&str, Vec<&str>, u64)> = vec![
        (
            "tls/static",
            [&["-t", "-S", "-c"][..], static_user].concat(),
            80,
        ),
        ("tls/rest", [&["-t", "-S", "-c"][..], rest].concat(), 80),
        ("tcp/static", [&["-t", "-c"][..], static_user].concat(), 80),
        (
            "tls/rtcp-pair",
            [&["-t", "-S"][..], static_user].concat(),
            80,
        ),
        (
            "tls/tcp-relay",
            [&["-T", "-S", "-m", "4"][..], static_user].concat(),
            160,
        ),
        (
            "tcp/tcp-relay",
            [&["-T", "-m", "4"][..], rest].concat(),
            160,
        ),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, args, want)| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut cmd = Command::new("turnutils_uclient");
                cmd.args(["-n", "40", "-l", "200", "-z", "5", "-p", &p]);
                if !args.contains(&"-m") {
                    cmd.args(["-m", "2"]);
                }
                if !args.contains(&"-T") {
                    cmd.args(["-e", "127.0.0.1", "-r", &peer.port().to_string()]);
                }
                let out = cmd
                    .args(&args)
                    .arg("127.0.0.1")
                    .output()
                    .expect("run turnutils_uclient");
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                (name, want, uclient_result(&text), text)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        let (name, want, (sent, recv, zero_loss), text) = h.join().expect("thread");
        eprintln!("{name}: sent {sent} received {recv} zero-loss {zero_loss}");
        if sent != want || recv != want || !zero_loss {
            failures.push(format!("{name}: sent {sent}, received {recv}\n{text}"));
        }
    }
    assert!(
        failures.is_empty(),
        "uclient through the shared port failed:\n{}",
        failures.join("\n---\n")
    );
}
