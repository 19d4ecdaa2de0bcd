//! One peer's session: identity, room, grants, and the numbered messages kept for replay
//! after a resume.

use crate::token::Grants;
use crate::wire::PeerInfo;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// A transport connection (or service participant), numbered by the driver.
pub type ConnId = u64;
/// A session, numbered by its hub.
pub(crate) type SessionKey = u64;

pub(crate) struct Session {
    /// Id, display name and token identity, as other members see them.
    pub peer: PeerInfo,
    pub room: Arc<str>,
    pub grants: Grants,
    /// The attached transport (or service participant); None while suspended.
    pub conn: Option<ConnId>,
    /// A service participant: gets typed events, has no resume token and no replay.
    pub service: bool,
    pub resume: Box<str>,
    pub suspended_at: Option<Instant>,
    pub replay: Replay,
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
    max_messages: u32,
    max_bytes: usize,
    /// Rebuilt from a record by a new owner: the client numbered what it saw under the
    /// old owner, so the first resume renumbers what is kept after its `lastSeq`.
    restored: bool,
}

impl Replay {
    pub fn new(max_messages: usize, max_bytes: usize) -> Replay {
        Replay {
            next_seq: 1,
            kept: VecDeque::new(),
            bytes: 0,
            dropped_through: 0,
            acked: 0,
            max_messages: u32::try_from(max_messages).unwrap_or(u32::MAX),
            max_bytes,
            restored: false,
        }
    }

    pub fn mark_restored(&mut self) {
        self.restored = true;
    }

    /// At the first resume of a restored session: true once, after moving every kept
    /// message (all unseen by the client) to follow `last_seq`, and numbering on from
    /// there; the client is told of a gap (what the old owner had queued is gone).
    pub fn rebase_restored(&mut self, last_seq: u64) -> bool {
        if !self.restored {
            return false;
        }
        self.restored = false;
        for (seq, text) in self.kept.iter_mut() {
            let old = format!("\"seq\":{seq},");
            let renumbered = *seq + last_seq;
            if let Some(at) = text.find(&old) {
                let mut t = String::with_capacity(text.len() + 8);
                t.push_str(&text[..at]);
                t.push_str(&format!("\"seq\":{renumbered},"));
                t.push_str(&text[at + old.len()..]);
                *text = Arc::from(t);
            }
            *seq = renumbered;
        }
        self.bytes = self.kept.iter().map(|(_, t)| t.len()).sum();
        self.next_seq += last_seq;
        if self.dropped_through > 0 {
            self.dropped_through += last_seq;
        }
        self.acked = last_seq;
        true
    }

    /// Number and keep the message `build(seq)` renders.
    pub fn push(&mut self, build: impl FnOnce(u64) -> Arc<str>) -> Arc<str> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let text = build(seq);
        self.bytes += text.len();
        self.kept.push_back((seq, text.clone()));
        while self.kept.len() > self.max_messages as usize || self.bytes > self.max_bytes {
            let Some((s, t)) = self.kept.pop_front() else {
                break;
            };
            self.bytes -= t.len();
            self.dropped_through = s;
        }
        if self.kept.is_empty() {
            self.kept.shrink_to_fit();
        }
        text
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
        if self.kept.is_empty() {
            // An idle session holds no buffer (one allocation per acknowledged burst).
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
