//! One peer's session: identity, room, grants, and the numbered messages kept for replay
//! after a resume.

use crate::hub::ConnId;
use crate::protocol::json_str;
use crate::token::Grants;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct Session {
    pub peer_id: Arc<str>,
    pub name: String,
    pub identity: Option<String>,
    pub room: Arc<str>,
    pub grants: Grants,
    /// The attached transport; None while suspended.
    pub conn: Option<ConnId>,
    pub resume: String,
    pub suspended_at: Option<Instant>,
    pub replay: Replay,
}

impl Session {
    /// `{"id":…,"name":…[,"identity":…]}`
    pub fn peer_json(&self) -> String {
        let mut s = format!(
            r#"{{"id":{},"name":{}"#,
            json_str(&self.peer_id),
            json_str(&self.name)
        );
        if let Some(i) = &self.identity {
            s.push_str(r#","identity":"#);
            s.push_str(&json_str(i));
        }
        s.push('}');
        s
    }
}

/// Messages sent to a session and not yet acknowledged, bounded in count and bytes.
/// Dropping the oldest is harmless while they were delivered; `dropped_through` lets a
/// resume tell whether it missed any of them.
pub(crate) struct Replay {
    next_seq: u64,
    kept: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
    /// Highest seq dropped from the buffer without an ack.
    dropped_through: u64,
    /// Highest seq the client acknowledged.
    acked: u64,
    max_messages: usize,
    max_bytes: usize,
}

impl Replay {
    pub fn new(max_messages: usize, max_bytes: usize) -> Replay {
        Replay {
            next_seq: 1,
            kept: VecDeque::new(),
            bytes: 0,
            dropped_through: 0,
            acked: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Number and keep the message `build(seq)` makes.
    pub fn push(&mut self, build: impl FnOnce(u64) -> String) -> (u64, Arc<str>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let text: Arc<str> = Arc::from(build(seq));
        self.bytes += text.len();
        self.kept.push_back((seq, text.clone()));
        while self.kept.len() > self.max_messages || self.bytes > self.max_bytes {
            let Some((s, t)) = self.kept.pop_front() else {
                break;
            };
            self.bytes -= t.len();
            self.dropped_through = s;
        }
        if self.kept.is_empty() {
            self.kept.shrink_to_fit();
        }
        (seq, text)
    }

    /// Forget everything up to `seq`; true when messages after `seq` were already dropped
    /// (a client resuming from `seq` has a gap).
    pub fn ack(&mut self, seq: u64) -> bool {
        let seq = seq.min(self.next_seq - 1);
        self.acked = self.acked.max(seq);
        while let Some((s, t)) = self.kept.front() {
            if *s > seq {
                break;
            }
            self.bytes -= t.len();
            self.kept.pop_front();
        }
        if self.kept.is_empty() && self.kept.capacity() > 8 {
            self.kept = VecDeque::new();
        }
        self.dropped_through > seq
    }

    /// Kept messages after `seq`, in order.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = Arc<str>> + '_ {
        self.kept
            .iter()
            .filter(move |(s, _)| *s > seq)
            .map(|(_, t)| t.clone())
    }

    /// Some message the client never acknowledged was dropped.
    pub fn lost_unseen(&self) -> bool {
        self.dropped_through > self.acked
    }
}
