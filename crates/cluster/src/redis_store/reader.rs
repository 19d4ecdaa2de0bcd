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
                        Some((from, bytes)) => shared.emit(ClusterEvent::Message {
                            from,
                            bytes: Arc::from(bytes),
                        }),
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

/// An inbox entry: its id, and the sender and bytes unless it is not one of ours.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    message: Option<(NodeId, Vec<u8>)>,
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

/// Fields `f` (sender) and `b` (bytes) of an entry.
fn message(fields: Vec<Value>) -> Option<(NodeId, Vec<u8>)> {
    let mut from = None;
    let mut bytes = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else {
            continue;
        };
        match name.as_slice() {
            b"f" => from = String::from_utf8(value).ok(),
            b"b" => bytes = Some(value),
            _ => {}
        }
    }
    Some((NodeId::from(from?), bytes?))
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
                entry("1-0", &[b"f", b"a.1", b"b", b"\x00\xff"]),
                entry("1-1", &[b"x", b"y"]),
                entry("2-0", &[b"b", b"", b"f", b"c.2"]),
            ]),
        ])]);
        assert_eq!(
            entries(reply),
            vec![
                Entry {
                    id: "1-0".into(),
                    message: Some((NodeId::from("a.1"), vec![0, 255])),
                },
                Entry {
                    id: "1-1".into(),
                    message: None,
                },
                Entry {
                    id: "2-0".into(),
                    message: Some((NodeId::from("c.2"), vec![])),
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
            Value::Array(vec![entry("5-0", &[b"f", b"a.1", b"b", b"hi"])]),
        )]);
        assert_eq!(
            entries(reply),
            vec![Entry {
                id: "5-0".into(),
                message: Some((NodeId::from("a.1"), b"hi".to_vec())),
            }]
        );
    }
}
