//! Signaling through the real binary: WebSocket and EventSource + POST transports,
//! room isolation, resume after transport loss, the Origin check, room tokens, HTTPS.

use crate::common;

use common::signal_client::{post_signal, SseClient, WsClient};
use common::Server;
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(300);

fn http() -> (Server, std::net::SocketAddr) {
    let s = Server::start(&[]);
    let a = s.http.expect("http");
    (s, a)
}

#[test]
fn messages_reach_only_the_addressed_peer_in_the_same_room() {
    let (_s, addr) = http();
    let (mut a, mut b, mut c) = (
        WsClient::connect(addr),
        WsClient::connect(addr),
        WsClient::connect(addr),
    );
    let ja = a.join("alpha", "Ada");
    assert_eq!(ja["peers"], json!([]));
    let jb = b.join("alpha", "Bob");
    let (ida, idb) = (
        ja["peerId"].as_str().unwrap(),
        jb["peerId"].as_str().unwrap(),
    );
    assert_eq!(jb["peers"], json!([{"id": ida, "name": "Ada"}]));
    let pj = a.expect("peer-joined");
    assert_eq!(pj["peer"], json!({"id": idb, "name": "Bob"}));
    let jc = c.join("beta", "Cy");
    assert_eq!(
        jc["peers"],
        json!([]),
        "another room's members are not listed"
    );

    b.send(json!({"type": "offer", "to": ida, "sdp": "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"}));
    let offer = a.expect("offer");
    assert_eq!(offer["from"], idb);
    assert_eq!(offer["sdp"], "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n");
    let cand = json!({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    a.send(json!({"type": "candidate", "to": idb, "candidate": cand}));
    assert_eq!(b.expect("candidate")["candidate"], cand);

    // A peer of another room cannot address Ada, and learns nothing about her.
    c.send(json!({"type": "message", "to": ida, "data": "psst", "ref": 9}));
    let e = c.expect("error");
    assert_eq!(e["code"], "unknown-peer");
    assert_eq!(e["ref"], 9);
    a.expect_silence(SHORT);
    b.expect_silence(SHORT);
}

#[test]
fn bad_messages_get_errors_and_the_connection_keeps_working() {
    let (_s, addr) = http();
    let (mut a, mut b) = (WsClient::connect(addr), WsClient::connect(addr));
    let ida = a.join("r", "Ada")["peerId"].as_str().unwrap().to_string();
    b.join("r", "Bob");
    a.expect("peer-joined");
    b.send_text("{not json");
    assert_eq!(b.expect("error")["code"], "bad-message");
    b.send(json!({"type": "teleport"}));
    assert_eq!(b.expect("error")["code"], "bad-message");
    b.send(json!({"type": "offer", "to": ida, "sdp": 5}));
    assert_eq!(b.expect("error")["code"], "bad-message");
    b.send(json!({"type": "message", "to": ida, "data": "x".repeat(100_000)}));
    let e = b.expect("error");
    assert_eq!(
        (e["code"].as_str(), e["fatal"].as_bool()),
        (Some("too-large"), Some(false))
    );
    a.expect_silence(SHORT);
    b.send(json!({"type": "message", "to": ida, "data": "still here"}));
    assert_eq!(a.expect("message")["data"], "still here");
    // Over the 1 MiB transport limit the connection is closed, after an error.
    b.send_oversized(1 << 21);
    let (got, close) = b.raw_until_close(Duration::from_secs(5));
    let e = got
        .iter()
        .find(|m| m["type"] == "error")
        .unwrap_or_else(|| panic!("no error before the close: {got:?}"));
    assert_eq!(
        (e["code"].as_str(), e["fatal"].as_bool()),
        (Some("too-large"), Some(true))
    );
    assert_eq!(close, Some(1009));
}

#[test]
fn a_dropped_websocket_resumes_with_nothing_lost_and_nobody_notices() {
    let s = Server::start(&["--signal-grace", "2"]);
    let addr = s.http.expect("http");
    let (mut a, mut b) = (WsClient::connect(addr), WsClient::connect(addr));
    let ja = a.join("r", "Ada");
    let ida = ja["peerId"].as_str().unwrap().to_string();
    let idb = b.join("r", "Bob")["peerId"].as_str().unwrap().to_string();
    assert_eq!(a.expect("peer-joined")["seq"], 1);
    // Ada's transport dies without a close handshake.
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    b.send(json!({"type": "message", "to": ida, "data": {"n": 1}}));
    b.send(json!({"type": "message", "to": ida, "data": {"n": 2}}));
    std::thread::sleep(Duration::from_millis(200));
    let mut a = WsClient::connect(addr);
    a.send(json!({"type": "resume", "token": ja["resume"], "lastSeq": 1}));
    let r = a.expect("resumed");
    assert_eq!(r["peerId"], ida.as_str());
    assert_eq!(r["gap"], false);
    assert_eq!(r["peers"], json!([{"id": idb, "name": "Bob"}]));
    let m1 = a.expect("message");
    let m2 = a.expect("message");
    assert_eq!(
        (m1["data"]["n"].as_u64(), m1["seq"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        (m2["data"]["n"].as_u64(), m2["seq"].as_u64()),
        (Some(2), Some(3))
    );
    b.expect_silence(SHORT);
    // The old token is spent.
    let mut x = WsClient::connect(addr);
    x.send(json!({"type": "resume", "token": ja["resume"], "lastSeq": 0}));
    assert_eq!(x.expect("error")["code"], "bad-resume");
    // Without a resume within the grace period, the others see the peer leave.
    drop(a);
    let left = b
        .recv(Duration::from_secs(5))
        .expect("peer-left after the grace period");
    assert_eq!(
        (left["type"].as_str(), left["reason"].as_str()),
        (Some("peer-left"), Some("timeout"))
    );
    assert_eq!(left["peerId"], ida.as_str());
}

#[test]
fn eventsource_and_post_carry_the_same_protocol_as_websocket() {
    let (_s, addr) = http();
    let sse = SseClient::connect(addr);
    sse.send(json!({"type": "join", "room": "fallback", "name": "Sam"}));
    let js = sse.expect("joined");
    let ids = js["peerId"].as_str().unwrap().to_string();
    let mut w = WsClient::connect(addr);
    let idw = w.join("fallback", "Wes")["peerId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sse.expect("peer-joined")["peer"]["id"], idw.as_str());
    w.send(json!({"type": "offer", "to": ids, "sdp": "v=0"}));
    let o = sse.expect("offer");
    assert_eq!(
        (o["from"].as_str(), o["sdp"].as_str()),
        (Some(idw.as_str()), Some("v=0"))
    );
    sse.send(json!({"type": "answer", "to": idw, "sdp": "v=0 answer"}));
    assert_eq!(w.expect("answer")["sdp"], "v=0 answer");
    // Errors about a POSTed message come on the stream.
    sse.send(json!({"type": "offer", "to": idw}));
    assert_eq!(sse.expect("error")["code"], "bad-message");
    // An unknown stream is a 404 with an error body.
    let (status, body) = post_signal(addr, "nope", r#"{"type":"ping"}"#);
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["code"], "unknown-connection");
}

fn raw_get(addr: std::net::SocketAddr, path: &str, origin: &str) -> String {
    raw_request(addr, "GET", path, origin)
}

fn raw_request(addr: std::net::SocketAddr, method: &str, path: &str, origin: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\r\n"
    )
    .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).unwrap_or(0);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

#[test]
fn pages_from_other_origins_are_refused_with_an_error() {
    let s = Server::start(&["--allowed-origin", "https://app.example.org"]);
    let addr = s.http.expect("http");
    let mut evil = WsClient::connect_origin(addr, "http://evil.test");
    let e = evil.expect("error");
    assert_eq!(
        (e["code"].as_str(), e["fatal"].as_bool()),
        (Some("origin-not-allowed"), Some(true))
    );
    assert_eq!(evil.close_code(Duration::from_secs(5)), Some(1008));
    let resp = raw_get(addr, "/sse", "http://evil.test");
    assert!(
        resp.starts_with("HTTP/1.0 403") || resp.starts_with("HTTP/1.1 403"),
        "{resp}"
    );
    assert!(resp.contains("origin-not-allowed"), "{resp}");
    // The server's own origin and the listed one pass.
    let mut own = WsClient::connect_origin(addr, &format!("http://{addr}"));
    own.join("r", "me");
    let mut listed = WsClient::connect_origin(addr, "https://app.example.org");
    listed.join("r", "them");

    // CORS: the listed origin may fetch the ICE configuration and POST to /signal (after
    // a preflight); another origin gets no CORS headers, so its page cannot read answers.
    let lower = |r: String| r.to_ascii_lowercase();
    let pre = lower(raw_request(
        addr,
        "OPTIONS",
        "/signal?conn=x",
        "https://app.example.org",
    ));
    assert!(
        pre.starts_with("http/1.0 204") || pre.starts_with("http/1.1 204"),
        "{pre}"
    );
    assert!(
        pre.contains("access-control-allow-origin: https://app.example.org"),
        "{pre}"
    );
    assert!(
        pre.contains("access-control-allow-headers: content-type"),
        "{pre}"
    );
    let ice = lower(raw_get(addr, "/api/ice-servers", "https://app.example.org"));
    assert!(
        ice.contains("access-control-allow-origin: https://app.example.org"),
        "{ice}"
    );
    let evil_ice = lower(raw_get(addr, "/api/ice-servers", "http://evil.test"));
    assert!(
        !evil_ice.contains("access-control-allow-origin"),
        "{evil_ice}"
    );
    let evil_pre = raw_request(addr, "OPTIONS", "/signal", "http://evil.test");
    assert!(evil_pre.contains(" 403 "), "{evil_pre}");
}

fn mint(secret: &str, room: &str, exp_offset: i64, grants: Option<Vec<&str>>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = switchboard_signal::Claims {
        room: room.into(),
        sub: Some("ada@example.org".into()),
        exp: (now + exp_offset) as u64,
        nbf: None,
        grants: grants.map(|g| g.into_iter().map(String::from).collect()),
    };
    switchboard_signal::token::mint(secret.as_bytes(), &claims).expect("mint")
}

#[test]
fn room_tokens_admit_refuse_and_expire() {
    let secret = "room-secret-0123456789";
    let s = Server::start(&["--room-token-secret", secret, "--room-capacity", "2"]);
    let addr = s.http.expect("http");
    let mut c = WsClient::connect(addr);
    let join = |c: &mut WsClient, token: Option<&str>| {
        let mut m = json!({"type": "join", "room": "board", "name": "Ada"});
        if let Some(t) = token {
            m["token"] = json!(t);
        }
        c.send(m);
        c.recv(Duration::from_secs(5)).expect("an answer")
    };
    assert_eq!(join(&mut c, None)["code"], "unauthorized");
    assert_eq!(join(&mut c, Some("garbage"))["code"], "unauthorized");
    assert_eq!(
        join(
            &mut c,
            Some(&mint("another-secret-0123", "board", 60, None))
        )["code"],
        "unauthorized"
    );
    assert_eq!(
        join(&mut c, Some(&mint(secret, "other-room", 60, None)))["code"],
        "unauthorized"
    );
    assert_eq!(
        join(&mut c, Some(&mint(secret, "board", -5, None)))["code"],
        "token-expired"
    );

    // A token from the CLI joins, with its identity shown to others.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "token",
            "--secret",
            secret,
            "--room",
            "board",
            "--identity",
            "ada",
            "--ttl",
            "60",
        ])
        .output()
        .expect("switchboard token");
    assert!(out.status.success());
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let j = join(&mut c, Some(&cli_token));
    assert_eq!(j["type"], "joined", "{j}");
    assert_eq!(j["grants"], json!(["publish", "subscribe"]));
    let mut viewer = WsClient::connect(addr);
    let jv = join(
        &mut viewer,
        Some(&mint(secret, "*", 60, Some(vec!["subscribe"]))),
    );
    assert_eq!(jv["peers"][0]["identity"], "ada");
    let ida = j["peerId"].as_str().unwrap();
    viewer.send(json!({"type": "offer", "to": ida, "sdp": "v=0"}));
    assert_eq!(viewer.expect("error")["code"], "forbidden");
    // Capacity 2: a third valid token is refused with room-full.
    let mut third = WsClient::connect(addr);
    assert_eq!(
        join(&mut third, Some(&mint(secret, "board", 60, None)))["code"],
        "room-full"
    );
}

#[test]
fn https_with_a_self_signed_certificate_serves_signaling_over_wss() {
    let s = Server::start(&["--tls-self-signed"]);
    let addr = s.http.expect("https");
    let fp = s.tls_fingerprint();
    let mut a = WsClient::connect_tls(addr, &fp);
    let mut b = WsClient::connect_tls(addr, &fp);
    let ida = a.join("secure", "Ada")["peerId"]
        .as_str()
        .unwrap()
        .to_string();
    b.join("secure", "Bob");
    b.send(json!({"type": "message", "to": ida, "data": "over TLS"}));
    a.expect("peer-joined");
    assert_eq!(a.expect("message")["data"], "over TLS");
}

#[test]
fn the_app_and_sdk_are_served_with_types_and_protections() {
    let s = Server::start(&["--allowed-origin", "https://app.example.org"]);
    let addr = s.http.expect("http");
    let get = |path: &str| common::http_get(addr, path).to_ascii_lowercase();
    for (path, ty) in [
        ("/", "text/html"),
        ("/r/standup", "text/html"),
        ("/sdk/switchboard.js", "javascript"),
        ("/sdk/switchboard.d.ts", "application/typescript"),
        ("/app/style.css", "text/css"),
    ] {
        let r = get(path);
        assert!(
            r.starts_with("http/1.0 200") || r.starts_with("http/1.1 200"),
            "{path}: {r:.200}"
        );
        let ct = r
            .lines()
            .find(|l| l.starts_with("content-type:"))
            .unwrap_or_default();
        assert!(ct.contains(ty), "{path}: {ct}");
        assert!(
            r.contains("content-security-policy: default-src 'self'"),
            "{path}"
        );
        assert!(r.contains("x-content-type-options: nosniff"), "{path}");
    }
    assert!(get("/r/standup").contains("<html"), "the room page");
    assert!(
        get("/sdk/switchboard.js").contains("export"),
        "an ES module"
    );
    assert!(get("/app/nope.js").contains(" 404 "));
    // An allowed other origin may import the SDK module.
    let r = raw_get(addr, "/sdk/switchboard.js", "https://app.example.org").to_ascii_lowercase();
    assert!(
        r.contains("access-control-allow-origin: https://app.example.org"),
        "{r:.400}"
    );
}

#[test]
fn sighup_applies_room_capacity_and_token_secrets_to_live_signaling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(&cfg, "room-capacity = 1\n").expect("write");
    let s = Server::start(&["--config", cfg.to_str().expect("path")]);
    let addr = s.http.expect("http");
    let mut a = WsClient::connect(addr);
    a.join("r", "Ada");
    let mut b = WsClient::connect(addr);
    b.send(json!({"type": "join", "room": "r", "name": "Bob"}));
    assert_eq!(b.expect("error")["code"], "room-full");

    let secret = "reloaded-secret-0123456789";
    std::fs::write(
        &cfg,
        format!("room-capacity = 2\nroom-token-secret = [\"{secret}\"]\n"),
    )
    .expect("write");
    s.signal(libc::SIGHUP);
    assert!(s
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .is_some());
    // Tokens are now required; Ada's live session is untouched.
    b.send(json!({"type": "join", "room": "r", "name": "Bob"}));
    assert_eq!(b.expect("error")["code"], "unauthorized");
    b.send(
        json!({"type": "join", "room": "r", "name": "Bob", "token": mint(secret, "r", 60, None)}),
    );
    assert_eq!(b.expect("joined")["peers"][0]["name"], "Ada");
    assert_eq!(a.expect("peer-joined")["peer"]["name"], "Bob");
}
