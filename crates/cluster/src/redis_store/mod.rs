//! The cluster store on one Redis server (Debian's `redis-server`).
//!
//! Keys, all under [`RedisOptions::prefix`] (`sb:`; `<x>` below is a value, not a hash tag):
//! - `sb:alive:<id>`: set with a PX of the ttl by each heartbeat; a node is alive while it
//!   exists;
//! - `sb:nodes`: hash id -> [`NodeInfo`] JSON with the load of its last heartbeat; an entry
//!   whose alive key is gone is removed (with its inbox) by the first heartbeat to see it;
//! - `sb:room:<room>`: the owner's id; `sb:rec:<room>`: hash of the room's records;
//! - `sb:in:<id>`: the node's inbox, a stream (fields `f` the sender, `s` its message
//!   number, `b` the bytes), trimmed to about [`RedisOptions::stream_max`] entries;
//! - `sb:dead:<id>`: set when a heartbeat removes a node whose alive key is gone; the node,
//!   if it was only cut off, finds it when it is back and acknowledges it;
//! - `sb:epoch`: a random marker set when absent; when it is missing or changed the store
//!   lost its data (a restart without persistence) and [`ClusterEvent::StoreBack`] says
//!   `reset`.
//!
//! Three tasks per node: the heartbeat (every ttl/5: refresh, read the nodes, emit
//! NodeUp/NodeDown, StoreLost/StoreBack), the writer (drains the one bounded queue of
//! sends, record writes and releases in order, in MULTI/EXEC batches, and keeps a batch it
//! could not write until the store is back) and the reader (XREAD BLOCK on the inbox).
//! Streams rather than pub/sub: a reader that reconnects resumes from the last id it saw
//! instead of losing what was published meanwhile.
//!
//! Delivery is once and in order per sender. A batch whose EXEC ran but whose reply was
//! lost (the connection broke at that instant) is written again; its messages carry the
//! sender's sequence numbers, by which the receiver drops the copies. Messages queued for a
//! node that died, or trimmed from an inbox its reader did not keep up with, are lost.
//!
//! The client is redis-rs (`redis` 1.x): maintained, a stable 1.x API, tokio support, and
//! its `ConnectionManager` reconnects by itself. XREAD BLOCK stalls a multiplexed connection
//! for the length of the block, so the reader has its own.

mod heartbeat;
mod reader;
mod scripts;
mod status;
mod writer;

pub use status::{status, ClusterStatus};

use crate::{
    BoxFuture, Cluster, ClusterError, ClusterEvent, Load, NodeId, NodeInfo, RecordOp, RoomOwner,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RetryMethod};
use scripts::Scripts;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, error::TrySendError, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use writer::Item;

/// How this node reaches and uses the store.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// How long a node counts as alive after its last heartbeat; heartbeats go every ttl/5.
    /// Taken between 100 ms and one day.
    pub ttl: Duration,
    /// Capacity of the outgoing queue (sends, record writes, releases); when it is full new
    /// items are dropped and counted ([`RedisCluster::dropped`]).
    pub queue: usize,
    /// About how many entries each inbox stream keeps (XADD MAXLEN ~).
    pub stream_max: usize,
    /// Prefix of every key, so several clusters can share one Redis.
    pub prefix: String,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            url: "redis://127.0.0.1:6379/".to_string(),
            ttl: crate::NODE_TTL,
            queue: 100_000,
            stream_max: 10_000,
            prefix: "sb:".to_string(),
        }
    }
}

/// What a node reports of its load, asked at every heartbeat.
pub type LoadFn = Arc<dyn Fn() -> Load + Send + Sync>;

/// The key names (module docs).
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    fn alive_prefix(&self) -> String {
        format!("{}alive:", self.prefix)
    }
    fn alive(&self, id: &str) -> String {
        format!("{}alive:{id}", self.prefix)
    }
    fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
    fn room_prefix(&self) -> String {
        format!("{}room:", self.prefix)
    }
    fn room(&self, room: &str) -> String {
        format!("{}room:{room}", self.prefix)
    }
    fn records(&self, room: &str) -> String {
        format!("{}rec:{room}", self.prefix)
    }
    fn dead_prefix(&self) -> String {
        format!("{}dead:", self.prefix)
    }
    fn inbox_prefix(&self) -> String {
        format!("{}in:", self.prefix)
    }
    fn inbox(&self, id: &str) -> String {
        format!("{}in:{id}", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
}

/// What the handle and its tasks share.
pub(super) struct Shared {
    me: NodeInfo,
    ttl: Duration,
    stream_max: usize,
    keys: Keys,
    scripts: Scripts,
    load: LoadFn,
    /// Commands other than the reader's XREAD (multiplexed, reconnects by itself).
    conn: ConnectionManager,
    /// The live nodes as of the last heartbeat, sorted by id, this one included.
    view: Mutex<Vec<NodeInfo>>,
    events: UnboundedSender<ClusterEvent>,
    dropped: AtomicU64,
    drop_log: LogLimit,
}

impl Shared {
    fn view(&self) -> MutexGuard<'_, Vec<NodeInfo>> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_ids(&self) -> Vec<NodeId> {
        self.view().iter().map(|n| n.id.clone()).collect()
    }

    fn emit(&self, event: ClusterEvent) {
        // The receiver gone means nobody listens any more: nothing to do.
        let _ = self.events.send(event);
    }

    /// This node's entry with the load as of now.
    fn fresh_info(&self) -> NodeInfo {
        NodeInfo {
            load: (self.load)(),
            ..self.me.clone()
        }
    }

    /// The epoch marker, stored if absent: (its value, whether it was absent).
    async fn ensure_epoch(
        &self,
        conn: &mut ConnectionManager,
    ) -> Result<(String, bool), RedisError> {
        let fresh = switchboard_util::random_hex(8);
        let mut call = self.scripts.epoch.prepare_invoke();
        call.key(self.keys.epoch()).arg(&fresh);
        let stored: Option<String> = call.invoke_async(conn).await?;
        Ok(match stored {
            Some(epoch) => (epoch, false),
            None => (fresh, true),
        })
    }
}

/// At most one log line per period (for warnings that would repeat per item or per retry).
pub(super) struct LogLimit {
    last: Mutex<Option<Instant>>,
}

impl LogLimit {
    pub(super) fn new() -> LogLimit {
        LogLimit {
            last: Mutex::new(None),
        }
    }

    /// Whether to log now (true at most once per `every`).
    pub(super) fn ready(&self, every: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < every => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// Waits between retries: 50 ms doubling to 1 s.
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(50),
        }
    }

    pub(super) fn reset(&mut self) {
        *self = Backoff::new();
    }

    pub(super) fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(1));
        now
    }
}

/// Whether a command that failed with `e` may be tried again unchanged (the store was
/// unreachable, loading or failing over), rather than having been refused for good.
pub(super) fn retryable(e: &RedisError) -> bool {
    !matches!(e.retry_method(), RetryMethod::NoRetry)
}

fn to_cluster_error(e: RedisError) -> ClusterError {
    if retryable(&e) {
        ClusterError::Unavailable(e.to_string())
    } else {
        ClusterError::Protocol(e.to_string())
    }
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A Redis glob matching `s` literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One node on a Redis store. Dropping it without [`Cluster::leave`] stops its tasks like a
/// crash would: the others see it down once its ttl runs out.
pub struct RedisCluster {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Item>,
    events: Mutex<Option<UnboundedReceiver<ClusterEvent>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    left: AtomicBool,
}

impl RedisCluster {
    /// Connect to `opts.url`, register node `info` and start its tasks on the current tokio
    /// runtime. Fails with [`ClusterError::Unavailable`] when Redis cannot be reached.
    pub async fn start(
        opts: RedisOptions,
        info: NodeInfo,
        load: LoadFn,
    ) -> Result<Arc<RedisCluster>, ClusterError> {
        // A zero ttl would make a zero heartbeat period (and a zero queue cannot be built);
        // a huge one would overflow the deadlines computed from it.
        let ttl = opts
            .ttl
            .clamp(Duration::from_millis(100), Duration::from_secs(86_400));
        let url = redacted(&opts.url);
        let unreachable = |e: RedisError| ClusterError::Unavailable(format!("redis at {url}: {e}"));
        let client = redis::Client::open(opts.url.as_str()).map_err(unreachable)?;
        // One reconnect attempt per call while the store is away: the tasks pace their own
        // retries, and callers of claim() hear "unavailable" rather than wait. A reply may
        // take up to a ttl (a busy Redis) before the call counts as failed: a writer batch
        // that timed out is written again, so timing out early would duplicate messages.
        let timeout = ttl.max(Duration::from_secs(2));
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(unreachable)?;
        let reader_conn = ConnectionManager::new_with_config(
            client,
            config.set_response_timeout(Some(reader::BLOCK + timeout)),
        )
        .await
        .map_err(unreachable)?;

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            me: info,
            ttl,
            stream_max: opts.stream_max.max(1),
            keys: Keys {
                prefix: opts.prefix,
            },
            scripts: Scripts::new(),
            load,
            conn,
            view: Mutex::new(Vec::new()),
            events: events_tx,
            dropped: AtomicU64::new(0),
            drop_log: LogLimit::new(),
        });

        let mut conn = shared.conn.clone();
        let (epoch, _) = shared.ensure_epoch(&mut conn).await.map_err(unreachable)?;
        // A fresh id has no inbox, but a leftover of the same id must not be replayed.
        redis::cmd("DEL")
            .arg(shared.keys.inbox(&shared.me.id))
            .exec_async(&mut conn)
            .await
            .map_err(unreachable)?;
        let mut beat = heartbeat::Heartbeat::new(shared.clone(), epoch.clone());
        beat.first().await.map_err(unreachable)?;

        let (queue_tx, queue_rx) = mpsc::channel(opts.queue.max(1));
        let tasks = vec![
            tokio::spawn(beat.run()),
            tokio::spawn(writer::run(shared.clone(), queue_rx)),
            tokio::spawn(reader::run(shared.clone(), reader_conn, epoch)),
        ];
        tracing::info!(node = %shared.me.id, redis = %url, "joined the cluster");
        Ok(Arc::new(RedisCluster {
            shared,
            queue: queue_tx,
            events: Mutex::new(Some(events_rx)),
            tasks: Mutex::new(tasks),
            left: AtomicBool::new(false),
        }))
    }

    /// How many sends, writes and releases were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn enqueue(&self, item: Item) {
        if self.left.load(Ordering::Relaxed) {
            return;
        }
        match self.queue.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.shared.drop_log.ready(Duration::from_secs(10)) {
                    tracing::warn!(dropped = n, "cluster queue full: dropping sends and writes");
                }
            }
            // The writer is gone (after leave): nothing more goes out.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Abort the tasks; the handles, to wait for them to be gone.
    fn stop_tasks(&self) -> Vec<JoinHandle<()>> {
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for task in &tasks {
            task.abort();
        }
        tasks
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

impl Cluster for RedisCluster {
    fn me(&self) -> &NodeInfo {
        &self.shared.me
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.shared.view().clone()
    }

    fn claim<'a>(
        &'a self,
        room: &'a str,
        candidate: &'a NodeId,
    ) -> BoxFuture<'a, Result<NodeId, ClusterError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let mut call = self.shared.scripts.claim.prepare_invoke();
            call.key(keys.room(room))
                .arg(&**candidate)
                .arg(keys.alive_prefix());
            let owner: String = call
                .invoke_async(&mut self.shared.conn.clone())
                .await
                .map_err(to_cluster_error)?;
            Ok(NodeId::from(owner))
        })
    }

    fn owner<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Option<NodeId>, ClusterError>> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let mut call = self.shared.scripts.owner.prepare_invoke();
            call.key(keys.room(room)).arg(keys.alive_prefix());
            let owner: Option<String> = call
                .invoke_async(&mut self.shared.conn.clone())
                .await
                .map_err(to_cluster_error)?;
            Ok(owner.map(NodeId::from))
        })
    }

    fn release(&self, room: Arc<str>) {
        self.enqueue(Item::Release(room));
    }

    fn write(&self, op: RecordOp) {
        self.enqueue(Item::Write(op));
    }

    fn records<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ClusterError>> {
        Box::pin(async move {
            let mut records: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(self.shared.keys.records(room))
                .query_async(&mut self.shared.conn.clone())
                .await
                .map_err(to_cluster_error)?;
            records.sort();
            Ok(records)
        })
    }

    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomOwner>, ClusterError>> {
        Box::pin(async move {
            let mut conn = self.shared.conn.clone();
            status::owned_rooms(&mut conn, &self.shared.keys)
                .await
                .map_err(to_cluster_error)
        })
    }

    fn send(&self, to: &NodeId, bytes: Vec<u8>) {
        // Not checked against the view of live nodes: a node that joined since the last
        // heartbeat may already own a room that `claim` just named. A message to a dead
        // node lands in an inbox nobody reads, which expires (PEXPIRE on every write).
        self.enqueue(Item::Send {
            to: to.clone(),
            bytes,
            seq: 0,
        });
    }

    fn events(&self) -> Option<UnboundedReceiver<ClusterEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let ttl = self.shared.ttl;
            // What was queued before leaving still goes out (releases above all), for as
            // long as a heartbeat would have let it.
            let (done_tx, done_rx) = oneshot::channel();
            let flushed = tokio::time::timeout(ttl, async {
                if self.queue.send(Item::Flush(done_tx)).await.is_ok() {
                    let _ = done_rx.await;
                }
            })
            .await;
            if flushed.is_err() {
                tracing::warn!("leaving the cluster with writes still queued");
            }
            self.left.store(true, Ordering::Relaxed);
            // Gone for good before the keys are deleted, so no heartbeat re-registers.
            for task in self.stop_tasks() {
                let _ = task.await;
            }
            let keys = &self.shared.keys;
            let id = &*self.shared.me.id;
            let mut pipe = redis::pipe();
            pipe.del(keys.alive(id))
                .hdel(keys.nodes(), id)
                .del(keys.inbox(id));
            if let Err(e) = pipe.exec_async(&mut self.shared.conn.clone()).await {
                tracing::warn!(
                    "leaving the cluster: {e}; the others will see this node down after its ttl"
                );
            }
            tracing::info!(node = %id, "left the cluster");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_hides_only_the_password_part() {
        assert_eq!(
            redacted("redis://u:secret@h:6379/0"),
            "redis://***@h:6379/0"
        );
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn glob_escape_makes_glob_characters_literal() {
        assert_eq!(glob_escape("sb:room:"), "sb:room:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
