//! The reader task: reads this node's inbox stream with XREAD BLOCK on a connection of its
//! own and emits each entry as a [`ClusterEvent::Message`], in stream order.
//!
//! It reads from the last id it saw, so a reconnect loses nothing. The inbox is emptied
//! at start and read from `0-0`. After an error it checks the epoch marker before reading
//! again: a store that lost its data starts a new stream, whose ids may be lower than the
//! last one seen, so it reads that from `0-0` too.

use super::{Backoff, LogLimit, Shared};
use crate::{ClusterEvent, NodeId};
use redis::aio::ConnectionManager;
use redis::{RedisError, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one XREAD waits for entries.
pub(super) const BLOCK: Duration = Duration::from_millis(1000);
/// Entries per XREAD.
const COUNT: usize = 512;

pub(super) async fn run(shared: Arc<Shared>, mut conn: ConnectionManager, mut epoch: String) {
    let inbox = shared.keys.inbox(&shared.me.id);
    let mut last = String::from("0-0");
    let mut check_epoch = false;
    let mut backoff = Backoff::new();
    let fail_log = LogLimit::new();
    let junk_log = LogLimit::new();
    let mut seen = Seen::default();
    loop {
        if check_epoch {
            match shared.ensure_epoch(&mut conn).await {
                Ok((now, missing)) => {
                    if missing || now != epoch {
                        tracing::info!("cluster store reset: reading this node's inbox anew");
                        last = String::from("0-0");
                    }
                    epoch = now;
                    check_epoch = false;
                }
                Err(e) => {
                    if fail_log.ready(Duration::from_secs(10)) {
                        tracing::warn!("cluster inbox unreadable: {e}");
                    }
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            }
        }
        let reply: Result<Value, RedisError> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&inbox)
            .arg(&last)
            .query_async(&mut conn)
            .await;
        match reply {
            Ok(reply) => {
                backoff.reset();
                for entry in entries(reply) {
                    last = entry.id;
                    match entry.message {
                        Some(m) => {
                            if seen.is_new(&m.from, m.seq, || shared.live_ids()) {
                                shared.emit(ClusterEvent::Message {
                                    from: m.from,
                                    bytes: Arc::from(m.bytes),
                                });
                            } else {
                                tracing::debug!(from = %m.from, seq = ?m.seq, "dropped a copy of a message");
                            }
                        }
                        None => {
                            if junk_log.ready(Duration::from_secs(60)) {
                                tracing::warn!(id = %last, "skipping an unreadable inbox entry");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                if fail_log.ready(Duration::from_secs(10)) {
                    tracing::warn!("cluster inbox unreadable: {e}");
                }
                check_epoch = true;
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
}

/// The last message number seen from each sender, to drop the copies a sender wrote
/// twice (a batch retried after its reply was lost). A sender's numbers grow in its queue
/// order, and its messages to this node arrive in that order.
#[derive(Default)]
struct Seen {
    last: HashMap<NodeId, u64>,
}

/// Senders remembered before the dead ones are forgotten.
const SEEN_PRUNE_AT: usize = 1024;

impl Seen {
    /// Whether message `seq` from `from` is new; `live` lists the live nodes, asked when
    /// the table needs pruning.
    fn is_new(
        &mut self,
        from: &NodeId,
        seq: Option<u64>,
        live: impl FnOnce() -> Vec<NodeId>,
    ) -> bool {
        let Some(seq) = seq else {
            return true; // unnumbered: nothing to compare
        };
        if let Some(last) = self.last.get_mut(from) {
            if seq <= *last {
                return false;
            }
            *last = seq;
            return true;
        }
        if self.last.len() >= SEEN_PRUNE_AT {
            let live = live();
            self.last.retain(|id, _| live.contains(id));
        }
        self.last.insert(from.clone(), seq);
        true
    }
}

/// An inbox entry: its id, and the message unless it is not one of ours.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    message: Option<Message>,
}

#[derive(Debug, PartialEq)]
struct Message {
    from: NodeId,
    /// The sender's number for it (absent: not numbered).
    seq: Option<u64>,
    bytes: Vec<u8>,
}

/// The entries of an XREAD reply (nil when it timed out; an array of [key, entries] in
/// RESP2, a map key -> entries in RESP3).
fn entries(reply: Value) -> Vec<Entry> {
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut key_entries) if key_entries.len() == 2 => key_entries.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(items) = stream else {
            continue;
        };
        for item in items {
            let Value::Array(parts) = item else {
                continue;
            };
            let mut parts = parts.into_iter();
            let Some(id) = parts.next().and_then(text) else {
                continue;
            };
            let message = match parts.next() {
                Some(Value::Array(fields)) => message(fields),
                _ => None,
            };
            out.push(Entry { id, message });
        }
    }
    out
}

/// Fields `f` (sender), `s` (its number) and `b` (bytes) of an entry.
fn message(fields: Vec<Value>) -> Option<Message> {
    let mut from = None;
    let mut seq = None;
    let mut bytes = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else {
            continue;
        };
        match name.as_slice() {
            b"f" => from = String::from_utf8(value).ok(),
            b"s" => {
                seq = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse().ok())
            }
            b"b" => bytes = Some(value),
            _ => {}
        }
    }
    Some(Message {
        from: NodeId::from(from?),
        seq,
        bytes: bytes?,
    })
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry(id: &str, fields: &[&[u8]]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn reads_entries_in_order_and_marks_foreign_ones() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"sb:in:b"),
            Value::Array(vec![
                entry("1-0", &[b"f", b"a.1", b"s", b"7", b"b", b"\x00\xff"]),
                entry("1-1", &[b"x", b"y"]),
                entry("2-0", &[b"b", b"", b"f", b"c.2"]),
            ]),
        ])]);
        assert_eq!(
            entries(reply),
            vec![
                Entry {
                    id: "1-0".into(),
                    message: Some(Message {
                        from: NodeId::from("a.1"),
                        seq: Some(7),
                        bytes: vec![0, 255],
                    }),
                },
                Entry {
                    id: "1-1".into(),
                    message: None,
                },
                Entry {
                    id: "2-0".into(),
                    message: Some(Message {
                        from: NodeId::from("c.2"),
                        seq: None,
                        bytes: vec![],
                    }),
                },
            ]
        );
    }

    #[test]
    fn a_timed_out_read_has_no_entries() {
        assert!(entries(Value::Nil).is_empty());
    }

    #[test]
    fn reads_a_resp3_map_reply() {
        let reply = Value::Map(vec![(
            bulk(b"sb:in:b"),
            Value::Array(vec![entry("5-0", &[b"f", b"a.1", b"s", b"1", b"b", b"hi"])]),
        )]);
        assert_eq!(
            entries(reply),
            vec![Entry {
                id: "5-0".into(),
                message: Some(Message {
                    from: NodeId::from("a.1"),
                    seq: Some(1),
                    bytes: b"hi".to_vec(),
                }),
            }]
        );
    }

    #[test]
    fn a_copy_written_again_is_dropped_per_sender() {
        let mut seen = Seen::default();
        let (a, c) = (NodeId::from("a.1"), NodeId::from("c.1"));
        let no_pruning = || -> Vec<NodeId> { panic!("no pruning below the limit") };
        assert!(seen.is_new(&a, Some(1), no_pruning));
        assert!(seen.is_new(&a, Some(2), no_pruning));
        assert!(
            seen.is_new(&c, Some(1), no_pruning),
            "numbers are per sender"
        );
        assert!(
            !seen.is_new(&a, Some(1), no_pruning),
            "a retried batch resends 1, 2"
        );
        assert!(!seen.is_new(&a, Some(2), no_pruning));
        assert!(
            seen.is_new(&a, Some(5), no_pruning),
            "gaps are messages to other nodes"
        );
        assert!(seen.is_new(&a, None, no_pruning), "unnumbered entries pass");
    }

    #[test]
    fn the_dead_are_forgotten_when_the_table_is_full() {
        let mut seen = Seen::default();
        for i in 0..SEEN_PRUNE_AT {
            assert!(seen.is_new(&NodeId::from(format!("n.{i}")), Some(1), Vec::new));
        }
        let live = vec![NodeId::from("n.0")];
        assert!(seen.is_new(&NodeId::from("new.1"), Some(1), || live.clone()));
        assert_eq!(seen.last.len(), 2);
        assert!(
            !seen.is_new(&NodeId::from("n.0"), Some(1), Vec::new),
            "the live are kept"
        );
    }
}
