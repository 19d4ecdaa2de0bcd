//! The app's network test API (issue 4): `GET /api/network-test` names the STUN addresses
//! for the mapping test, `POST /api/network-test/filtering` sends ICE checks to the
//! requester's own address and says which were answered. Here a UDP socket plays the
//! browser's ICE agent; real Chromium behind real NATs is in tests/nat/matrix.mjs.

use crate::common;

use common::{http_get, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method};

const UFRAG: &str = "Ab1+";
const PWD: &str = "abcdefghijklmnopqrstuv0123";

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out[9..12].parse().expect("status");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

fn request(candidates: &[String]) -> String {
    serde_json::json!({ "ufrag": UFRAG, "pwd": PWD, "candidates": candidates }).to_string()
}

/// Answer ICE checks for UFRAG/PWD on `sock` as a browser would, until `until`; returns
/// the sources that sent valid ones.
fn ice_agent(sock: UdpSocket, until: Instant) -> Vec<SocketAddr> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(m) = Message::parse(&buf[..n]) else {
            continue;
        };
        let user = m.get(attr_type::USERNAME).unwrap_or_default();
        if m.method != Method::BINDING
            || m.class != Class::Request
            || !user.starts_with(format!("{UFRAG}:").as_bytes())
            || !m.verify_integrity(PWD.as_bytes())
            || !m.verify_fingerprint()
        {
            continue;
        }
        seen.push(src);
        let mut out = [0u8; 256];
        let mut w = MessageWriter::new(&mut out, Method::BINDING, Class::Success, m.tid).unwrap();
        w.xor_address(attr_type::XOR_MAPPED_ADDRESS, &src).unwrap();
        w.message_integrity(PWD.as_bytes()).unwrap();
        w.fingerprint().unwrap();
        let len = w.finish();
        let _ = sock.send_to(&out[..len], src);
    }
    seen
}

#[test]
fn info_names_the_stun_address_of_a_one_address_server() {
    let s = Server::start(&[]);
    let udp = s.udp.expect("udp");
    let resp = http_get(s.http.expect("http"), "/api/network-test");
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(
        v["stunUrls"],
        serde_json::json!([format!("stun:127.0.0.1:{}", udp.port())])
    );
    assert_eq!(v["filteringTest"], true);
    // The page itself is served, under the app's CSP.
    let page = http_get(s.http.expect("http"), "/network");
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(page.contains("/app/network.js"), "{page}");
}

#[test]
fn an_answering_agent_is_reported_and_a_silent_one_is_not() {
    let s = Server::start(&[]);
    let http = s.http.expect("http");
    let agent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = agent.local_addr().unwrap();
    let answering =
        std::thread::spawn(move || ice_agent(agent, Instant::now() + Duration::from_secs(4)));
    let (code, body) = post(
        http,
        "/api/network-test/filtering",
        &request(&[target.to_string()]),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["clientIp"], "127.0.0.1");
    assert_eq!(v["target"], target.to_string());
    assert_eq!(v["fromOtherPort"], true, "{v}");
    // One listening address: the other-address check cannot be made, and says so.
    assert_eq!(v["fromOtherAddress"], serde_json::Value::Null, "{v}");
    let sources = answering.join().expect("agent");
    assert!(!sources.is_empty());
    assert!(
        sources.iter().all(|a| a.port() != s.udp.unwrap().port()),
        "checks come from another port than STUN's: {sources:?}"
    );

    // A socket that never answers (a NAT that drops the checks).
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (code, body) = post(
        http,
        "/api/network-test/filtering",
        &request(&[silent.local_addr().unwrap().to_string()]),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["fromOtherPort"], false, "{v}");
}

#[test]
fn only_the_requesters_own_address_is_probed() {
    let s = Server::start(&[]);
    let http = s.http.expect("http");
    let (code, body) = post(
        http,
        "/api/network-test/filtering",
        &request(&[
            "203.0.113.9:4000".into(),
            "[2001:db8::1]:4000".into(),
            "nonsense".into(),
        ]),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["target"], serde_json::Value::Null, "{v}");
    assert_eq!(v["fromOtherPort"], serde_json::Value::Null, "{v}");
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let s = Server::start(&[]);
    let http = s.http.expect("http");
    let (code, body) = post(http, "/api/network-test/filtering", "{not json");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad request body"), "{body}");
    let bad = serde_json::json!({ "ufrag": "a:b", "pwd": PWD, "candidates": [] }).to_string();
    let (code, body) = post(http, "/api/network-test/filtering", &bad);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("ICE characters"), "{body}");
    let (code, _) = post(http, "/api/network-test/filtering", &"x".repeat(10000));
    assert_eq!(code, 413);
}
