//! `GET /api/ice-servers`: the answer is ready for `new RTCPeerConnection()` and its
//! TURN credentials work on this server's TURN.

use crate::common;

use common::client::TurnClient;
use common::{http_get, Server};

fn json_body(resp: &str) -> serde_json::Value {
    assert!(
        resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200"),
        "{resp}"
    );
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    serde_json::from_str(body).expect("JSON")
}

#[test]
fn ice_servers_credentials_allocate_on_our_turn() {
    let s = Server::start(&[
        "--static-auth-secret",
        "first",
        "--static-auth-secret",
        "second",
        "--ice-ttl",
        "600",
    ]);
    let udp = s.udp.expect("udp");
    let v = json_body(&http_get(
        s.http.expect("http"),
        "/api/ice-servers?identity=alice",
    ));
    assert_eq!(v["ttl"], 600);
    let servers = v["iceServers"].as_array().expect("iceServers");
    assert_eq!(
        servers[0]["urls"][0],
        format!("stun:127.0.0.1:{}", udp.port())
    );
    let turn = &servers[1];
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{}?transport=udp", udp.port()).as_str()),
        "{urls:?}"
    );
    // With -p 0, UDP and TCP get different ports; each URI names its own.
    let tcp = s.tcp.expect("tcp");
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{}?transport=tcp", tcp.port()).as_str()),
        "{urls:?} should name the TCP port {}",
        tcp.port()
    );
    assert!(
        !urls.iter().any(|u| u.starts_with("turns:")),
        "no TLS configured"
    );
    let user = turn["username"].as_str().expect("username");
    let cred = turn["credential"].as_str().expect("credential");
    assert!(user.ends_with(":alice"));
    let mut c = TurnClient::new(udp, user, cred);
    assert!(
        c.allocate().ok(),
        "credentials from /api/ice-servers must authenticate"
    );
    // Fresh credentials per request.
    let again = json_body(&http_get(s.http.expect("http"), "/api/ice-servers"));
    assert_ne!(again["iceServers"][1]["username"], turn["username"]);
}

#[test]
fn only_static_users_means_stun_only() {
    let s = Server::start(&["--user", "alice:pw"]);
    let v = json_body(&http_get(s.http.expect("http"), "/api/ice-servers"));
    let servers = v["iceServers"].as_array().expect("iceServers");
    assert_eq!(servers.len(), 1);
    assert!(servers[0]["urls"][0]
        .as_str()
        .expect("url")
        .starts_with("stun:"));
}

#[test]
fn http_can_be_turned_off() {
    let s = Server::start(&["--user", "a:b", "--http-listen", "off"]);
    assert!(s.http.is_none(), "no HTTP listener in the ready file");
    // Nor in the start-up log, which ends once every service has started.
    assert!(
        !s.startup.iter().any(|l| l.contains("HTTP API")),
        "--http-listen off still started HTTP: {:?}",
        s.startup
    );
}

#[test]
fn ice_host_names_the_server_in_every_uri() {
    let s = Server::start(&[
        "--static-auth-secret",
        "k",
        "--ice-host",
        "turn.example.org",
    ]);
    let ports = [s.udp.expect("udp").port(), s.tcp.expect("tcp").port()];
    let v = json_body(&http_get(s.http.expect("http"), "/api/ice-servers"));
    let urls: Vec<String> = v["iceServers"]
        .as_array()
        .expect("iceServers")
        .iter()
        .flat_map(|e| e["urls"].as_array().expect("urls").clone())
        .map(|u| u.as_str().expect("url").to_string())
        .collect();
    assert!(urls.len() >= 3, "{urls:?}");
    for u in &urls {
        let rest = u.split_once(':').expect("scheme").1;
        assert!(
            ports
                .iter()
                .any(|p| rest.starts_with(&format!("turn.example.org:{p}"))),
            "{u} should name turn.example.org and one of the ports {ports:?}"
        );
    }
}
