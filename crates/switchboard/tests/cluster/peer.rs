//! A signaling client as the SDK behaves in a cluster: it knows every node's URL, acks
//! what it got, and when its WebSocket closes (code 1012, or the node is gone) it resumes
//! with its token and last `seq`, on its own node first and then on the others. Numbered
//! `message`s (`data: {"n": N}`) are counted per sender, so a test can check that each
//! arrives once and in order.

use crate::lab::Lab;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard_client::signal::{self, WsClient};
use tungstenite::Message;

/// What one read gave.
pub enum Event {
    Msg(Value),
    /// The connection ended: the WebSocket close code, None when it just broke.
    Closed(Option<u16>),
    Timeout,
}

pub struct Peer {
    pub name: String,
    pub id: String,
    /// The node its WebSocket is on (1..=3).
    pub node: usize,
    ws: Option<WsClient>,
    token: String,
    last_seq: u64,
    /// Every message received, in order.
    pub log: Vec<Value>,
    /// The numbers of the messages received from each peer id, in order of arrival.
    pub numbers: HashMap<String, Vec<u64>>,
    /// The close codes seen (None: the connection broke without a close frame).
    pub closes: Vec<Option<u16>>,
    /// Every `resumed` received.
    pub resumes: Vec<Value>,
}

/// How long a join may take: a node cut off from Redis answers once its call times out.
const STEP: Duration = Duration::from_secs(20);

impl Peer {
    /// Connect to node `node` and join `room`; the first answer must be `joined`.
    pub fn join(lab: &Lab, node: usize, room: &str, name: &str) -> Peer {
        Self::try_join(lab, node, room, name)
            .unwrap_or_else(|e| panic!("{name}: join refused on n{node}: {e}"))
    }

    /// [`Peer::join`], with an `error` answer as the error.
    pub fn try_join(lab: &Lab, node: usize, room: &str, name: &str) -> Result<Peer, Value> {
        let mut ws = lab
            .ws_connect(node)
            .unwrap_or_else(|e| panic!("{name}: connect to n{node}: {e}"));
        ws.send_text(&signal::join(room, name)).expect("send join");
        let mut p = Peer {
            name: name.into(),
            id: String::new(),
            node,
            ws: Some(ws),
            token: String::new(),
            last_seq: 0,
            log: Vec::new(),
            numbers: HashMap::new(),
            closes: Vec::new(),
            resumes: Vec::new(),
        };
        let j = match p.next(STEP) {
            Event::Msg(m) => m,
            Event::Closed(c) => panic!("{name}: closed ({c:?}) instead of joined on n{node}"),
            Event::Timeout => panic!("{name}: no answer to join on n{node} within {STEP:?}"),
        };
        if j["type"] == "error" {
            return Err(j);
        }
        assert_eq!(j["type"], "joined", "{name} on n{node}: {j}");
        p.id = j["peerId"].as_str().expect("peerId").into();
        p.token = j["resume"].as_str().expect("resume token").into();
        Ok(p)
    }

    /// The next message or the end of the connection, within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        let Some(ws) = self.ws.as_mut() else {
            return Event::Closed(None);
        };
        loop {
            if Instant::now() >= deadline {
                return Event::Timeout;
            }
            let frame = match ws.ws.read() {
                Ok(f) => f,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => {
                    self.ws = None;
                    self.closes.push(None);
                    return Event::Closed(None);
                }
            };
            match frame {
                Message::Text(t) => {
                    let m: Value = serde_json::from_str(&t).expect("the server sends JSON");
                    self.note(&m);
                    return Event::Msg(m);
                }
                Message::Close(f) => {
                    let code = f.map(|f| u16::from(f.code));
                    self.ws = None;
                    self.closes.push(code);
                    return Event::Closed(code);
                }
                _ => {}
            }
        }
    }

    fn note(&mut self, m: &Value) {
        if let Some(seq) = m["seq"].as_u64() {
            self.last_seq = self.last_seq.max(seq);
        }
        if m["type"] == "message" {
            if let (Some(from), Some(n)) = (m["from"].as_str(), m["data"]["n"].as_u64()) {
                self.numbers.entry(from.into()).or_default().push(n);
            }
        }
        if m["type"] == "resumed" {
            self.resumes.push(m.clone());
        }
        self.log.push(m.clone());
    }

    /// Send a numbered message to peer `to`; false when the connection is gone.
    pub fn send_number(&mut self, to: &str, n: u64) -> bool {
        self.send_text(&signal::message(to, &json!({"n": n})))
    }

    pub fn send_text(&mut self, text: &str) -> bool {
        match self.ws.as_mut() {
            Some(ws) => ws.send_text(text).is_ok(),
            None => false,
        }
    }

    pub fn ack(&mut self) {
        let ack = signal::ack(self.last_seq);
        self.send_text(&ack);
    }

    /// Read until `want` holds for a message (returned) or `timeout`; a closed connection
    /// is resumed as the SDK would (`nodes`: where to try, in order after its own).
    pub fn wait_for(
        &mut self,
        lab: &Lab,
        nodes: &[usize],
        timeout: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next(left) {
                Event::Msg(m) if want(&m) => return Some(m),
                Event::Msg(_) => {}
                Event::Closed(_) => {
                    self.resume(lab, nodes, deadline)?;
                }
                Event::Timeout => return None,
            }
        }
    }

    /// Wait until the server closes the connection (code returned; None: broke without
    /// a close frame), or None after `timeout` with the connection still open.
    pub fn wait_close(&mut self, timeout: Duration) -> Option<Option<u16>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next(left) {
                Event::Msg(_) => {}
                Event::Closed(c) => return Some(c),
                Event::Timeout => return None,
            }
        }
    }

    /// Resume on the first of `nodes` that takes it (its own node first if listed), trying
    /// again on a close (the room is moving) until `deadline`. The `resumed` message.
    pub fn resume(&mut self, lab: &Lab, nodes: &[usize], deadline: Instant) -> Option<Value> {
        let mut order: Vec<usize> = nodes.to_vec();
        if let Some(i) = order.iter().position(|n| *n == self.node) {
            order.rotate_left(i);
        }
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let node = order[attempt % order.len()];
            attempt += 1;
            let Ok(ws) = lab.ws_connect(node) else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            self.ws = Some(ws);
            self.node = node;
            let resume = json!({"type": "resume", "token": self.token, "lastSeq": self.last_seq});
            self.send_text(&resume.to_string());
            loop {
                let left = deadline.checked_duration_since(Instant::now())?;
                match self.next(left) {
                    Event::Msg(m) if m["type"] == "resumed" => {
                        assert_eq!(m["peerId"], self.id.as_str(), "{}: {m}", self.name);
                        self.token = m["resume"].as_str().expect("resume token").into();
                        return Some(m);
                    }
                    Event::Msg(m) if m["type"] == "error" => {
                        assert_ne!(m["code"], "bad-resume", "{}: session lost: {m}", self.name);
                        // `unavailable` (the room is moving, the store is away): again.
                        self.ws = None;
                        std::thread::sleep(Duration::from_millis(200));
                        break;
                    }
                    Event::Msg(_) => {}
                    Event::Closed(_) => break,
                    Event::Timeout => return None,
                }
            }
        }
        None
    }

    /// Every `peer-left` this client was told of.
    pub fn peer_lefts(&self) -> Vec<&Value> {
        self.log
            .iter()
            .filter(|m| m["type"] == "peer-left")
            .collect()
    }
}
