//! A device's line (`@user`) and call rooms over WebSocket, for the direct-call tests
//! (docs/signaling.md, "Direct calls"): requests to the server's `calls` peer and the
//! events it sends back.

use super::signal_client::WsClient;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SHORT: Duration = Duration::from_millis(300);

/// One device on its user's line.
pub struct Line {
    ws: WsClient,
    /// The calls peer's id in the line room.
    calls: String,
}

impl Line {
    /// `user`'s line, joined with `token` (a room token, a user's secret, or none).
    pub fn open(addr: SocketAddr, user: &str, token: Option<&str>) -> Line {
        let (mut ws, j) = try_join(addr, &format!("@{user}"), user, token);
        assert_eq!(j["type"], "joined", "{j}");
        let calls = calls_peer(&j["peers"]).unwrap_or_else(|| loop {
            let m = ws.expect("peer-joined");
            if m["peer"]["service"] == "calls" {
                break m["peer"]["id"].as_str().unwrap().to_string();
            }
        });
        Line { ws, calls }
    }

    pub fn request(&mut self, data: Value) {
        let to = self.calls.clone();
        self.ws
            .send(json!({"type": "message", "to": to, "data": data}));
    }

    /// The next call event (peers of the line coming and going are skipped).
    pub fn event(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let Some(m) = self.ws.recv(Duration::from_millis(100)) else {
                continue;
            };
            if m["type"] == "message" {
                assert_eq!(m["from"], self.calls.as_str(), "{m}");
                return m["data"].clone();
            }
            assert!(
                m["type"] == "peer-joined" || m["type"] == "peer-left",
                "unexpected {m}"
            );
        }
        panic!("no call event within 5 s");
    }

    /// The next event, which must be `call`.
    pub fn expect(&mut self, call: &str) -> Value {
        let e = self.event();
        assert_eq!(e["call"], call, "expected {call}, got {e}");
        e
    }

    /// No call event for a while.
    pub fn quiet(&mut self) {
        let deadline = Instant::now() + SHORT;
        while let Some(m) = self
            .ws
            .recv(deadline.saturating_duration_since(Instant::now()))
        {
            assert_ne!(m["type"], "message", "unexpected {m}");
        }
    }

    /// Dial `to`; the `dialing` event.
    pub fn dial(&mut self, to: &str) -> Value {
        self.request(json!({"call": "dial", "to": to, "ref": to}));
        let d = self.event();
        assert_eq!(
            (&d["call"], &d["ref"]),
            (&json!("dialing"), &json!(to)),
            "{d}"
        );
        d
    }

    /// Dial `to`, which fails at once: the `ended` event.
    pub fn dial_fails(&mut self, to: &str) -> Value {
        self.request(json!({"call": "dial", "to": to, "ref": 5}));
        let e = self.expect("ended");
        assert_eq!(e["ref"], 5);
        e
    }
}

pub fn calls_peer(peers: &Value) -> Option<String> {
    peers
        .as_array()?
        .iter()
        .find_map(|p| (p["service"] == "calls").then(|| p["id"].as_str().unwrap().to_string()))
}

pub fn try_join(
    addr: SocketAddr,
    room: &str,
    name: &str,
    token: Option<&str>,
) -> (WsClient, Value) {
    let mut ws = WsClient::connect(addr);
    let mut msg = json!({"type": "join", "room": room, "name": name, "topology": "mesh"});
    if let Some(t) = token {
        msg["token"] = json!(t);
    }
    ws.send(msg);
    let j = ws.recv(Duration::from_secs(5)).expect("an answer to join");
    (ws, j)
}

/// Join the call room of `event` (dialing or incoming) with its token, if any.
pub fn join_call(addr: SocketAddr, event: &Value, name: &str) -> (WsClient, Value) {
    let (ws, j) = try_join(
        addr,
        event["room"].as_str().unwrap(),
        name,
        event["token"].as_str(),
    );
    assert_eq!(
        (&j["type"], &j["topology"]),
        (&json!("joined"), &json!("mesh")),
        "{j}"
    );
    (ws, j)
}

/// The next relayed message of `kind` (membership changes are skipped).
pub fn next(ws: &mut WsClient, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(m) = ws.recv(Duration::from_millis(100)) else {
            continue;
        };
        if m["type"] == kind {
            return m;
        }
        assert!(
            m["type"] == "peer-joined" || m["type"] == "peer-left",
            "expected {kind}, got {m}"
        );
    }
    panic!("no {kind} within 10 s");
}

/// The far party's peer id in a call room: from the joined list, or when it joins.
pub fn remote_peer(ws: &mut WsClient, joined: &Value, name: &str) -> String {
    let is_it = |p: &Value| p["service"] == "remote" && p["name"] == name;
    if let Some(p) = joined["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| is_it(p)))
    {
        return p["id"].as_str().unwrap().to_string();
    }
    let pj = next(ws, "peer-joined");
    assert!(is_it(&pj["peer"]), "{pj}");
    pj["peer"]["id"].as_str().unwrap().to_string()
}

pub fn candidate(port: u16) -> Value {
    json!({
        "candidate": format!("candidate:7 1 udp 2122194687 127.0.0.1 {port} typ host generation 0"),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    })
}

/// The next event that is not `ringing`.
pub fn ended(line: &mut Line) -> Value {
    loop {
        let e = line.event();
        if e["call"] != "ringing" {
            return e;
        }
    }
}
