//! The signaling hub (`switchboard_signal::Hub`): client messages from several
//! connections in several rooms, transport losses, resumes and time.
//!
//! The first input byte picks the settings (bit 0: rooms need tokens; bit 1: room
//! capacity 2; bit 2: no rate limit; bit 3: a small replay buffer). Then records (see
//! [`crate::records`]), `op % 6`, on connection `who % 8`:
//! - 0 connect; 1 the transport is lost;
//! - 2 a client message: `body` as text, in which `@N` becomes the peer id of the Nth
//!   session that joined, `#N` its current resume token and `$N` a valid room token
//!   for room `rN` (N a digit), so that relays, resumes and tokens are reachable;
//! - 3 time passes (`u16(body) * 10` ms) and the timers run;
//! - 4 the driver reports an error (an oversized frame, a bad Origin), fatal if `who & 8`;
//! - 5 the settings are reloaded with the next combination.
//!
//! Checks: every message the hub sends is a JSON object with a string `type`; and the
//! room-isolation invariant: whatever names a peer (`from` of a relayed offer, answer,
//! candidate or message; `peer-joined`, `peer-left`; the `peers` of `joined` and
//! `resumed`) reaches only connections whose session is in that peer's room, and only
//! connections that have a session. At the end, when every transport is gone and the
//! grace period has passed, no connection, session or room is left.

use crate::records::{u16_of, Records};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard_signal::protocol::escapes_are_unicode;
use switchboard_signal::{token, Claims, ConnId, ErrorCode, Hub, HubConfig, Output, Received};

/// The fields of a server message the checks read (the rest, relayed values included,
/// is skipped without being decoded).
#[derive(Deserialize)]
struct Sent {
    #[serde(rename = "type")]
    kind: String,
    room: Option<String>,
    #[serde(rename = "peerId")]
    peer_id: Option<String>,
    resume: Option<String>,
    from: Option<String>,
    peer: Option<PeerRef>,
    peers: Option<Vec<PeerRef>>,
}

#[derive(Deserialize)]
struct PeerRef {
    id: String,
}

const CONNS: u64 = 8;
const UNIX_START: u64 = 1_700_000_000;
const SECRET: &[u8] = b"room-token-secret";

fn config(bits: u8) -> HubConfig {
    let mut c = HubConfig::default();
    if bits & 1 != 0 {
        c.token_secrets = vec![SECRET.to_vec()];
    }
    if bits & 2 != 0 {
        c.room_capacity = 2;
    }
    if bits & 4 != 0 {
        c.rate = 0;
    }
    if bits & 8 != 0 {
        c.replay_messages = 4;
        c.replay_bytes = 512;
    }
    // Rooms turning SFU (the `topology` of join, the SFU capacity): early, or never.
    if bits & 16 != 0 {
        c.sfu_threshold = Some(2);
        c.sfu_room_capacity = 3;
    }
    if bits & 32 != 0 {
        c.sfu_threshold = None;
    }
    // As a node of a cluster: member records for the store.
    c.records = bits & 64 != 0;
    c
}

struct Harness {
    hub: Hub,
    bits: u8,
    start: Instant,
    now: Instant,
    connected: [bool; CONNS as usize],
    /// Sessions in the order they joined: peer id, current resume token.
    sessions: Vec<(String, String)>,
    /// Every peer id ever handed out, and its room.
    peer_room: HashMap<String, String>,
    /// The room of the session a connection carries, as its messages said.
    conn_room: HashMap<ConnId, String>,
    tokens: HashMap<u8, String>,
    /// The cluster store as the hub's records left it: (room, key) -> value.
    records: std::collections::BTreeMap<(String, String), String>,
}

impl Harness {
    fn new(bits: u8) -> Harness {
        let now = Instant::now();
        Harness {
            hub: Hub::new(config(bits), now),
            bits,
            start: now,
            now,
            connected: [false; CONNS as usize],
            sessions: Vec::new(),
            peer_room: HashMap::new(),
            conn_room: HashMap::new(),
            tokens: HashMap::new(),
            records: Default::default(),
        }
    }

    fn unix(&self) -> u64 {
        UNIX_START + (self.now - self.start).as_secs()
    }

    fn token(&mut self, n: u8) -> String {
        let exp = UNIX_START + 7 * 86400;
        self.tokens
            .entry(n)
            .or_insert_with(|| {
                let claims = Claims {
                    room: format!("r{}", n as char),
                    sub: Some(format!("u{}", n as char)),
                    exp,
                    nbf: None,
                    grants: Some(vec!["publish".into(), "subscribe".into(), "admin".into()]),
                };
                token::mint(SECRET, &claims).unwrap_or_default()
            })
            .clone()
    }

    /// `@N`, `#N`, `$N` replaced (see the module doc).
    fn substitute(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 64);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let digit = chars.peek().copied().filter(char::is_ascii_digit);
            match (c, digit) {
                ('@' | '#', Some(d)) => {
                    chars.next();
                    let i = d as usize - '0' as usize;
                    match self.sessions.get(i) {
                        Some((id, _)) if c == '@' => out.push_str(id),
                        Some((_, resume)) => out.push_str(resume),
                        None => {
                            out.push(c);
                            out.push(d);
                        }
                    }
                }
                ('$', Some(d)) => {
                    chars.next();
                    let t = self.token(d as u8);
                    out.push_str(&t);
                }
                _ => out.push(c),
            }
        }
        out
    }

    fn ensure_connected(&mut self, conn: ConnId) {
        if !self.connected[conn as usize] {
            self.connected[conn as usize] = true;
            self.hub.connect(conn, self.now);
        }
    }

    fn check_outputs(&mut self) {
        let outputs: Vec<Output> = self.hub.drain_outputs().collect();
        for o in outputs {
            match o {
                Output::Close { conn, .. } => {
                    self.conn_room.remove(&conn);
                    if let Some(c) = self.connected.get_mut(conn as usize) {
                        *c = false;
                    }
                }
                Output::Send { conn, text } => self.check_message(conn, &text),
                Output::Event { conn, event } => {
                    panic!("service event {event:?} for transport conn {conn}")
                }
                // The room turned SFU (the default threshold is 5 members); nobody serves it here.
                Output::ServiceWanted { .. } => {}
                Output::Record { room, key, value } => {
                    let k = (room.to_string(), key.to_string());
                    match value {
                        Some(v) => {
                            serde_json::from_str::<serde_json::Value>(&v)
                                .unwrap_or_else(|e| panic!("a record is not JSON ({e}): {v}"));
                            self.records.insert(k, v.to_string());
                        }
                        None => {
                            self.records.remove(&k);
                        }
                    }
                }
                Output::RoomGone { room } => self.records.retain(|(r, _), _| **r != *room),
            }
        }
    }

    fn check_message(&mut self, conn: ConnId, text: &str) {
        // Valid JSON (RFC 8259's grammar) that is also Unicode (RFC 7493's must: no lone
        // surrogates). Numbers are left as the client wrote them: 1e400 is JSON, which
        // JavaScript reads as Infinity, though strict parsers refuse it.
        serde_json::from_str::<&RawValue>(text)
            .unwrap_or_else(|e| panic!("the hub sent invalid JSON ({e}): {text}"));
        assert!(
            escapes_are_unicode(text),
            "the hub sent a lone surrogate escape: {text}"
        );
        let v: Sent = serde_json::from_str(text).unwrap_or_else(|e| {
            panic!("the hub sent a message without a string type ({e}): {text}")
        });
        let kind = v.kind.clone();
        match kind.as_str() {
            "joined" | "resumed" => {
                let room = v.room.expect("joined names its room");
                let id = v.peer_id.expect("joined names the peer id");
                let resume = v.resume.expect("joined carries a resume token");
                for p in v.peers.into_iter().flatten() {
                    let other = p.id;
                    assert_ne!(other, id, "a session listed among its own peers");
                    self.assert_same_room(&other, &room, text);
                }
                match self.sessions.iter_mut().find(|(p, _)| *p == id) {
                    Some(s) => s.1 = resume,
                    None => {
                        assert_eq!(kind, "joined", "resumed a session that never joined");
                        self.sessions.push((id.clone(), resume));
                    }
                }
                if let Some(prev) = self.peer_room.insert(id, room.clone()) {
                    assert_eq!(prev, room, "a session changed rooms");
                }
                self.conn_room.insert(conn, room);
            }
            "left" => {
                self.conn_room.remove(&conn);
            }
            "offer" | "answer" | "candidate" | "message" | "peer-joined" | "peer-left" => {
                let peer = match kind.as_str() {
                    "peer-joined" => v.peer.map(|p| p.id),
                    "peer-left" => v.peer_id,
                    _ => v.from,
                }
                .unwrap_or_else(|| panic!("{kind} does not name its peer: {text}"));
                let room = self
                    .conn_room
                    .get(&conn)
                    .unwrap_or_else(|| {
                        panic!("{kind} reached connection {conn}, which has no session: {text}")
                    })
                    .clone();
                self.assert_same_room(&peer, &room, text);
            }
            _ => {}
        }
    }

    fn assert_same_room(&self, peer: &str, room: &str, text: &str) {
        let theirs = self
            .peer_room
            .get(peer)
            .unwrap_or_else(|| panic!("names peer {peer}, which never joined: {text}"));
        assert_eq!(
            theirs, room,
            "room isolation: a session in {room} was told of {peer} of {theirs}: {text}"
        );
    }

    fn step(&mut self, op: u8, who: u8, body: &[u8]) {
        let conn = u64::from(who) % CONNS;
        match op % 6 {
            0 => self.ensure_connected(conn),
            1 => {
                if self.connected[conn as usize] {
                    self.connected[conn as usize] = false;
                    self.hub.disconnect(conn, self.now);
                    self.conn_room.remove(&conn);
                }
            }
            2 => {
                self.ensure_connected(conn);
                let text = self.substitute(&String::from_utf8_lossy(body));
                let unix = self.unix();
                let got = self.hub.receive(conn, &text, self.now, unix);
                assert_eq!(
                    got,
                    Received::Handled,
                    "an unsharded hub handles everything"
                );
            }
            3 => {
                self.now += Duration::from_millis(u64::from(u16_of(body)) * 10);
                self.hub.handle_timeout(self.now);
            }
            4 => {
                if self.connected[conn as usize] {
                    self.hub.report(
                        conn,
                        ErrorCode::TooLarge,
                        "frame over the limit",
                        who & 8 != 0,
                    );
                }
            }
            _ => {
                self.bits = self.bits.wrapping_add(1);
                self.hub.set_config(config(self.bits));
            }
        }
        self.check_outputs();
    }

    /// A new owner rebuilds every room from the records: each member record becomes a
    /// session, with the peer id and resume token the old owner gave it.
    fn check_restore(&self) {
        let mut rooms: HashMap<&str, Vec<(String, String)>> = HashMap::new();
        for ((room, key), value) in &self.records {
            rooms
                .entry(room)
                .or_default()
                .push((key.clone(), value.clone()));
        }
        let mut other = Hub::new(config(self.bits), self.now);
        for (room, records) in rooms {
            let members = records.iter().filter(|(k, _)| !k.starts_with('$')).count();
            let restored = other.restore(room, &records, self.now);
            assert_eq!(restored, members, "restoring {room} from {records:?}");
        }
    }

    fn finish(mut self) {
        self.check_restore();
        for conn in 0..CONNS {
            if self.connected[conn as usize] {
                self.hub.disconnect(conn, self.now);
            }
        }
        self.now += self.hub.config().grace + Duration::from_secs(1);
        self.hub.handle_timeout(self.now);
        self.check_outputs();
        assert_eq!(
            self.hub.counts(),
            (0, 0, 0, 0),
            "connections, sessions or rooms outlive the grace period"
        );
        assert!(
            self.records.is_empty(),
            "records outlive their sessions: {:?}",
            self.records
        );
    }
}

pub fn run(data: &[u8]) {
    let Some((&bits, rest)) = data.split_first() else {
        return;
    };
    let mut h = Harness::new(bits);
    for r in Records::new(rest).take(256) {
        h.step(r.op, r.who, r.body);
    }
    h.finish();
}
