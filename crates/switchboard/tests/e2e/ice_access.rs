//! Who gets relay credentials from `/api/ice-servers`: with room tokens required, only
//! token holders (the token's subject becomes the credential's identity); every source
//! address is rate limited; SIGHUP applies new REST and token secrets to the answers.

use crate::common;

use common::client::TurnClient;
use common::Server;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const ROOM_SECRET: &str = "room-token-secret-0123456789";

/// GET /api/ice-servers from `from` (a local address of ours) with extra headers; the
/// status code, the headers and the JSON body.
fn get(addr: SocketAddr, from: Option<&str>, path: &str, headers: &str) -> (u16, String, Value) {
    let s = match from {
        None => TcpStream::connect(addr).expect("connect"),
        Some(ip) => {
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            let local: SocketAddr = format!("{ip}:0").parse().expect("ip");
            sock.bind(&local.into())
                .expect("bind a second loopback address");
            sock.connect(&addr.into()).expect("connect");
            sock.into()
        }
    };
    let mut s = s;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"));
    (status, head.to_string(), json)
}

fn mint(secret: &str, room: &str, sub: Option<&str>, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = switchboard_signal::Claims {
        room: room.into(),
        sub: sub.map(String::from),
        exp: (now + exp_offset) as u64,
        nbf: None,
        grants: None,
    };
    switchboard_signal::token::mint(secret.as_bytes(), &claims).expect("mint")
}

/// The TURN entry's username and credential.
fn turn_credential(v: &Value) -> (String, String) {
    let t = v["iceServers"]
        .as_array()
        .expect("iceServers")
        .iter()
        .find(|e| e["username"].is_string())
        .unwrap_or_else(|| panic!("no TURN entry in {v}"));
    (
        t["username"].as_str().expect("username").to_string(),
        t["credential"].as_str().expect("credential").to_string(),
    )
}

fn logged_at_start(s: &Server, needle: &str) -> bool {
    s.startup.iter().any(|l| l.contains(needle))
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[test]
fn with_room_tokens_only_token_holders_get_relay_credentials() {
    let s = Server::start(&[
        "--static-auth-secret",
        "rest-secret",
        "--room-token-secret",
        ROOM_SECRET,
    ]);
    let http = s.http.expect("http");
    assert!(
        logged_at_start(&s, "relay credentials for holders of a room token"),
        "the start-up log says who gets credentials: {:?}",
        s.startup
    );

    let (code, head, body) = get(http, None, "/api/ice-servers", "");
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert!(
        body.get("iceServers").is_none(),
        "no ICE servers without a token: {body}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );

    for (token, want) in [
        ("garbage".to_string(), "unauthorized"),
        (
            mint("another-secret-0123456789", "r", None, 60),
            "unauthorized",
        ),
        (mint(ROOM_SECRET, "r", None, -5), "token-expired"),
    ] {
        let (code, _, body) = get(http, None, "/api/ice-servers", &bearer(&token));
        assert_eq!((code, body["error"].as_str()), (401, Some(want)), "{body}");
        assert!(body.get("iceServers").is_none());
    }

    // A valid token for any room: credentials, for the token's subject (not for the
    // identity the request asks for), that work on this server's TURN.
    let token = mint(ROOM_SECRET, "standup", Some("ada"), 600);
    let (code, _, body) = get(
        http,
        None,
        "/api/ice-servers?identity=mallory",
        &bearer(&token),
    );
    assert_eq!(code, 200, "{body}");
    let (user, cred) = turn_credential(&body);
    assert!(
        user.ends_with(":ada"),
        "identity from the token's sub: {user}"
    );
    let mut c = TurnClient::new(s.udp.expect("udp"), &user, &cred);
    assert!(c.allocate().ok(), "the credentials allocate");
    // ?token= works too (for tools that cannot set headers).
    let (code, _, body) = get(http, None, &format!("/api/ice-servers?token={token}"), "");
    assert_eq!(code, 200, "{body}");

    assert_eq!(
        s.metric("switchboard_ice_requests_total{result=\"unauthorized\"}"),
        4
    );
    assert_eq!(s.metric("switchboard_ice_requests_total{result=\"ok\"}"), 2);
}

#[test]
fn without_room_tokens_anyone_gets_credentials_and_the_log_says_so() {
    let s = Server::start(&["--static-auth-secret", "rest-secret"]);
    assert!(
        logged_at_start(&s, "relay credentials for anyone who can reach this port"),
        "{:?}",
        s.startup
    );
    let (code, _, body) = get(s.http.expect("http"), None, "/api/ice-servers", "");
    assert_eq!(code, 200);
    turn_credential(&body);
}

#[test]
fn each_source_address_is_rate_limited() {
    let s = Server::start(&["--static-auth-secret", "rest-secret", "--ice-rate", "5"]);
    let http = s.http.expect("http");
    for i in 0..5 {
        let (code, _, body) = get(http, None, "/api/ice-servers", "");
        assert_eq!(code, 200, "request {i} of the burst: {body}");
    }
    let (code, head, body) = get(http, None, "/api/ice-servers", "");
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["error"], "rate-limited");
    assert!(body.get("iceServers").is_none());
    let retry: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"));
    assert!(
        (1..=12).contains(&retry),
        "5 a minute: the next one within 12 s, said {retry}"
    );
    // Another source has its own budget.
    let (code, _, _) = get(http, Some("127.0.0.2"), "/api/ice-servers", "");
    assert_eq!(
        code, 200,
        "a second address is not held to the first one's limit"
    );
    assert_eq!(
        s.metric("switchboard_ice_requests_total{result=\"rate_limited\"}"),
        1
    );
    assert_eq!(s.metric("switchboard_ice_rate_limit_sources"), 2);
}

#[test]
fn sighup_applies_new_rest_and_room_token_secrets_to_the_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("switchboard.toml");
    std::fs::write(&cfg, "static-auth-secret = [\"old-secret\"]\n").expect("write");
    let s = Server::start(&["--config", cfg.to_str().expect("path")]);
    let http = s.http.expect("http");
    let (code, _, body) = get(http, None, "/api/ice-servers", "");
    assert_eq!(code, 200);
    let (old_user, old_cred) = turn_credential(&body);

    // Rotate the REST secret (the old one no longer verifies) and require tokens.
    std::fs::write(
        &cfg,
        format!("static-auth-secret = [\"new-secret\"]\nroom-token-secret = [\"{ROOM_SECRET}\"]\n"),
    )
    .expect("write");
    s.signal(libc::SIGHUP);
    assert!(s
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .is_some());
    let udp = s.udp.expect("udp");
    // The TURN workers take the new secrets at their next control tick (250 ms).
    std::thread::sleep(Duration::from_millis(600));
    let mut stale = TurnClient::new(udp, &old_user, &old_cred);
    assert!(
        !stale.allocate().ok(),
        "credentials of the removed secret are refused"
    );

    let (code, _, _) = get(http, None, "/api/ice-servers", "");
    assert_eq!(code, 401, "tokens are required after the reload");
    let token = mint(ROOM_SECRET, "*", None, 600);
    let (code, _, body) = get(http, None, "/api/ice-servers", &bearer(&token));
    assert_eq!(code, 200, "{body}");
    let (user, cred) = turn_credential(&body);
    let mut c = TurnClient::new(udp, &user, &cred);
    assert!(
        c.allocate().ok(),
        "fresh credentials are signed with the new secret"
    );
}
