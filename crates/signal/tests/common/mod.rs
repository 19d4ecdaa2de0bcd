//! Shared test driver: runs the sans-IO [`Hub`] with fake time, collects what it sends to
//! each connection (as a client would see it on the wire) and parses it with serde_json.
#![allow(dead_code)]

use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
pub use switchboard_signal::{ConnId, ErrorCode, Hub, HubConfig, Output, Received};

/// The fake Unix time at the start of every test.
pub const UNIX_START: u64 = 1_700_000_000;

/// What one connection received.
#[derive(Default)]
struct Wire {
    /// Text frames not yet taken by the test.
    texts: Vec<String>,
    /// The close code, once the hub closed the connection.
    closed: Option<u16>,
}

/// A joined (or resumed) client: its connection, peer id and current resume token.
#[derive(Clone, Debug)]
pub struct Peer {
    pub conn: ConnId,
    pub id: String,
    pub resume: String,
}

/// A hub with fake time and per-connection inboxes.
pub struct Driver {
    pub hub: Hub,
    pub now: Instant,
    start: Instant,
    next_conn: ConnId,
    wires: HashMap<ConnId, Wire>,
    capture: switchboard_fuzz_capture::Capture,
    /// The hub's [`Output::ServiceWanted`] requests, as (room, kind), not yet taken.
    pub wanted: Vec<(String, &'static str)>,
    /// The records the hub wrote (with `HubConfig::records`): (room, key) -> value.
    pub records: std::collections::BTreeMap<(String, String), String>,
    /// Rooms the hub said ended ([`Output::RoomGone`]).
    pub rooms_gone: Vec<String>,
}

impl Driver {
    pub fn new(cfg: HubConfig) -> Driver {
        let now = Instant::now();
        Driver {
            hub: Hub::new(cfg, now),
            now,
            start: now,
            next_conn: 1,
            wires: HashMap::new(),
            capture: switchboard_fuzz_capture::Capture::open("signal"),
            wanted: Vec::new(),
            records: Default::default(),
            rooms_gone: Vec::new(),
        }
    }

    /// Open rooms with the default settings.
    pub fn open() -> Driver {
        Driver::new(HubConfig::default())
    }

    /// Fake Unix time: [`UNIX_START`] plus the fake time elapsed.
    pub fn unix(&self) -> u64 {
        UNIX_START + (self.now - self.start).as_secs()
    }

    /// Move the clock (without running timers).
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.capture
            .line(format_args!("advance {}", d.as_millis()), &[]);
    }

    /// Move the clock and run the hub's timers.
    pub fn advance_and_tick(&mut self, d: Duration) {
        self.advance(d);
        self.tick();
    }

    pub fn tick(&mut self) {
        self.hub.handle_timeout(self.now);
        self.collect();
    }

    pub fn connect(&mut self) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.hub.connect(conn, self.now);
        self.capture.line(format_args!("connect {conn}"), &[]);
        self.wires.insert(conn, Wire::default());
        self.collect();
        conn
    }

    /// The transport of `conn` was lost.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.capture.line(format_args!("disconnect {conn}"), &[]);
        self.hub.disconnect(conn, self.now);
        self.collect();
    }

    pub fn send(&mut self, conn: ConnId, text: &str) {
        let unix = self.unix();
        self.capture
            .line(format_args!("in {conn}"), text.as_bytes());
        let got = self.hub.receive(conn, text, self.now, unix);
        assert_eq!(got, Received::Handled, "one shard handles everything");
        self.collect();
    }

    pub fn send_json(&mut self, conn: ConnId, v: Value) {
        self.send(conn, &v.to_string());
    }

    pub fn report(&mut self, conn: ConnId, code: ErrorCode, reason: &str, fatal: bool) {
        self.hub.report(conn, code, reason, fatal);
        self.collect();
    }

    pub fn shutdown(&mut self) {
        self.hub.shutdown();
        self.collect();
    }

    /// Route the hub's outputs into the inboxes. Nothing may be sent on (or close again) a
    /// connection the hub already closed.
    fn collect(&mut self) {
        let outputs: Vec<Output> = self.hub.drain_outputs().collect();
        for o in outputs {
            match o {
                Output::Send { conn, text } => {
                    let w = self
                        .wires
                        .get_mut(&conn)
                        .expect("send to unknown connection");
                    assert!(w.closed.is_none(), "send on closed conn {conn}: {text}");
                    self.capture
                        .line(format_args!("out {conn}"), text.as_bytes());
                    w.texts.push(text.to_string());
                }
                Output::Close { conn, code } => {
                    let w = self
                        .wires
                        .get_mut(&conn)
                        .expect("close of unknown connection");
                    assert!(w.closed.is_none(), "conn {conn} closed twice");
                    w.closed = Some(code);
                }
                Output::Event { conn, event } => {
                    panic!("service event {event:?} for conn {conn}, which is a transport")
                }
                Output::ServiceWanted { room, kind } => self.wanted.push((room.to_string(), kind)),
                Output::Record { room, key, value } => {
                    let k = (room.to_string(), key.to_string());
                    match value {
                        Some(v) => {
                            self.records.insert(k, v.to_string());
                        }
                        None => {
                            self.records.remove(&k);
                        }
                    }
                }
                Output::RoomGone { room } => {
                    self.records.retain(|(r, _), _| **r != *room);
                    self.rooms_gone.push(room.to_string());
                }
            }
        }
    }

    /// The close code, if the hub closed `conn`.
    pub fn closed(&self, conn: ConnId) -> Option<u16> {
        self.wires.get(&conn).and_then(|w| w.closed)
    }

    /// Everything `conn` received since the last take, as raw text.
    pub fn take_raw(&mut self, conn: ConnId) -> Vec<String> {
        std::mem::take(&mut self.wires.get_mut(&conn).expect("unknown conn").texts)
    }

    /// Everything `conn` received since the last take, parsed.
    pub fn take(&mut self, conn: ConnId) -> Vec<Value> {
        self.take_raw(conn)
            .iter()
            .map(|t| {
                let v: Value = serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t}"));
                assert!(v.is_object() && v["type"].is_string(), "not a message: {t}");
                v
            })
            .collect()
    }

    /// Exactly one message arrived on `conn`.
    pub fn take_one(&mut self, conn: ConnId) -> Value {
        let mut got = self.take(conn);
        assert_eq!(got.len(), 1, "expected one message on conn {conn}: {got:?}");
        got.pop().unwrap()
    }

    /// Exactly one raw message arrived on `conn`.
    pub fn take_one_raw(&mut self, conn: ConnId) -> String {
        let mut got = self.take_raw(conn);
        assert_eq!(got.len(), 1, "expected one message on conn {conn}: {got:?}");
        got.pop().unwrap()
    }

    /// Nothing arrived on `conn` (and it was not closed).
    pub fn assert_silent(&mut self, conn: ConnId) {
        let got = self.take_raw(conn);
        assert!(got.is_empty(), "conn {conn} got {got:?}");
        assert_eq!(self.closed(conn), None, "conn {conn} was closed");
    }

    /// Exactly one message arrived: a non-fatal error with this code. Returns it.
    pub fn expect_error(&mut self, conn: ConnId, code: &str) -> Value {
        let e = self.take_one(conn);
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert_eq!(e["fatal"], false, "{e}");
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
        assert_eq!(self.closed(conn), None);
        e
    }

    /// Exactly one message arrived: a fatal error with this code, then a close.
    pub fn expect_fatal(&mut self, conn: ConnId, code: &str, close: u16) -> Value {
        let e = self.take_one(conn);
        assert_eq!(e["type"], "error", "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert_eq!(e["fatal"], true, "{e}");
        assert_eq!(self.closed(conn), Some(close));
        e
    }

    /// Send `join` on `conn` and return the single answer (whatever it is).
    pub fn join_on(&mut self, conn: ConnId, msg: Value) -> Value {
        self.send_json(conn, msg);
        self.take_one(conn)
    }

    /// A new connection that joins `room` as `name`.
    pub fn join(&mut self, room: &str, name: &str) -> Peer {
        self.join_with(json!({"type": "join", "room": room, "name": name}))
    }

    /// A new connection that sends this `join` message, which must succeed.
    pub fn join_with(&mut self, msg: Value) -> Peer {
        let conn = self.connect();
        let j = self.join_on(conn, msg);
        assert_eq!(j["type"], "joined", "{j}");
        Peer {
            conn,
            id: j["peerId"].as_str().unwrap().to_string(),
            resume: j["resume"].as_str().unwrap().to_string(),
        }
    }

    /// A new connection that sends `resume`; returns the connection and all it received.
    pub fn resume(&mut self, token: &str, last_seq: u64) -> (ConnId, Vec<Value>) {
        let conn = self.connect();
        self.send_json(
            conn,
            json!({"type": "resume", "token": token, "lastSeq": last_seq}),
        );
        let got = self.take(conn);
        (conn, got)
    }

    /// Resume that must succeed: the peer on its new connection, and what followed `resumed`.
    pub fn resume_ok(&mut self, peer: &Peer, last_seq: u64) -> (Peer, Value, Vec<Value>) {
        let (conn, mut got) = self.resume(&peer.resume, last_seq);
        assert!(!got.is_empty(), "no answer to resume");
        let resumed = got.remove(0);
        assert_eq!(resumed["type"], "resumed", "{resumed}");
        assert_eq!(resumed["peerId"], peer.id.as_str());
        let p = Peer {
            conn,
            id: peer.id.clone(),
            resume: resumed["resume"].as_str().unwrap().to_string(),
        };
        (p, resumed, got)
    }

    /// `from` sends a `message` with `data` to `to`.
    pub fn message(&mut self, from: &Peer, to: &Peer, data: Value) {
        self.send_json(
            from.conn,
            json!({"type": "message", "to": to.id, "data": data}),
        );
    }

    /// (connections, sessions, suspended sessions, rooms)
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        self.hub.counts()
    }
}

/// The raw JSON text of a top-level field of a server message, exactly as sent.
pub fn raw_field(text: &str, field: &str) -> String {
    let m: HashMap<String, Box<RawValue>> =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    m.get(field)
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .get()
        .to_string()
}

/// The `seq` of a server message.
pub fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// The `seq`s of several server messages.
pub fn seqs(vs: &[Value]) -> Vec<u64> {
    vs.iter().map(seq).collect()
}

/// The `type`s of several server messages.
pub fn types(vs: &[Value]) -> Vec<&str> {
    vs.iter().map(|v| v["type"].as_str().unwrap()).collect()
}

/// Assert `v` is `peer-left` for `id` with `reason` and `seq`.
pub fn assert_peer_left(v: &Value, id: &str, reason: &str, seq: u64) {
    assert_eq!(v["type"], "peer-left", "{v}");
    assert_eq!(v["peerId"], id, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
    assert_eq!(v["seq"], seq, "{v}");
}

/// Assert `v` is `peer-joined` for `id` named `name` with `seq`.
pub fn assert_peer_joined(v: &Value, id: &str, name: &str, seq: u64) {
    assert_eq!(v["type"], "peer-joined", "{v}");
    assert_eq!(v["peer"]["id"], id, "{v}");
    assert_eq!(v["peer"]["name"], name, "{v}");
    assert_eq!(v["seq"], seq, "{v}");
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
