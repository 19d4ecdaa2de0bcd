//! The writer task: drains the node's one queue of sends, record writes and releases in
//! order, a batch at a time in one MULTI/EXEC (all of a batch or none of it is applied,
//! so retrying after a dropped connection does not write its first half twice). A batch
//! that failed because the store was unreachable is kept and tried again, before anything
//! queued after it, until it goes through.

use super::{retryable, scripts, Backoff, LogLimit, Shared};
use crate::{NodeId, RecordOp};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Items per MULTI/EXEC.
const BATCH: usize = 512;
/// An inbox nobody wrote to for this long (times the ttl) is removed: it belonged to a
/// node that died after another wrote to it (the heartbeat removes the inboxes of the dead
/// it sees, but a sender that had not seen the death yet may have made it again).
const INBOX_IDLE_TTLS: u32 = 12;

/// One thing to write, in queue order.
pub(super) enum Item {
    Send {
        to: NodeId,
        bytes: Vec<u8>,
        /// This node's message number, given in queue order by the writer (0 until then):
        /// a batch written twice carries the same numbers, so the receiver drops the copy.
        seq: u64,
    },
    Write(RecordOp),
    Release(Arc<str>),
    /// Answered once everything queued before it was written (or given up).
    Flush(oneshot::Sender<()>),
}

pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<Item>) {
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    let mut backoff = Backoff::new();
    let fail_log = LogLimit::new();
    let mut conn = shared.conn.clone();
    let mut next_seq = 1u64;
    loop {
        if batch.is_empty() {
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                return; // the handle is gone
            }
            for item in &mut batch {
                if let Item::Send { seq, .. } = item {
                    *seq = next_seq;
                    next_seq += 1;
                }
            }
        }
        let Some(pipe) = pipeline(&shared, &batch) else {
            finish(&mut batch);
            continue;
        };
        match pipe.exec_async(&mut conn).await {
            Ok(()) => {
                backoff.reset();
                finish(&mut batch);
            }
            Err(e) if retryable(&e) => {
                if fail_log.ready(Duration::from_secs(10)) {
                    tracing::warn!(
                        queued = batch.len() + queue.len(),
                        "cluster writes wait: {e}"
                    );
                }
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                // Refused for good (e.g. a key of the wrong type): retrying cannot help.
                tracing::warn!(
                    items = batch.len(),
                    "cluster store refused a batch of writes: {e}"
                );
                finish(&mut batch);
            }
        }
    }
}

/// The batch as one transaction; None when nothing in it is to be written.
fn pipeline(shared: &Shared, batch: &[Item]) -> Option<redis::Pipeline> {
    let keys = &shared.keys;
    let me = &*shared.me.id;
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut inboxes: Vec<&str> = Vec::new();
    let mut any = false;
    for item in batch {
        match item {
            Item::Send { to, bytes, seq } => {
                // Written even for a node this one does not see alive (it may have joined
                // since the last heartbeat); a dead node's inbox expires unread.
                pipe.cmd("XADD")
                    .arg(keys.inbox(to))
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(shared.stream_max)
                    .arg("*")
                    .arg("f")
                    .arg(me)
                    .arg("s")
                    .arg(*seq)
                    .arg("b")
                    .arg(bytes.as_slice())
                    .ignore();
                if !inboxes.contains(&&**to) {
                    inboxes.push(to);
                }
            }
            Item::Write(RecordOp::Put { room, key, value }) => {
                pipe.hset(keys.records(room), &**key, &**value).ignore();
            }
            Item::Write(RecordOp::Delete { room, key }) => {
                pipe.hdel(keys.records(room), &**key).ignore();
            }
            Item::Release(room) => {
                pipe.cmd("EVAL")
                    .arg(scripts::RELEASE)
                    .arg(2)
                    .arg(keys.room(room))
                    .arg(keys.records(room))
                    .arg(me)
                    .ignore();
            }
            Item::Flush(_) => continue,
        }
        any = true;
    }
    let idle_ms = i64::try_from((shared.ttl * INBOX_IDLE_TTLS).as_millis()).unwrap_or(i64::MAX);
    for inbox in inboxes {
        pipe.pexpire(keys.inbox(inbox), idle_ms).ignore();
    }
    any.then_some(pipe)
}

/// The batch is done: answer its flushes, empty it.
fn finish(batch: &mut Vec<Item>) {
    for item in batch.drain(..) {
        if let Item::Flush(done) = item {
            let _ = done.send(());
        }
    }
}
