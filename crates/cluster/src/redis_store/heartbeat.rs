//! The heartbeat task: every ttl/5 it refreshes this node (alive key, entry with its
//! load), reads the live nodes (one script, which also removes the dead), updates the
//! view behind [`crate::Cluster::nodes`] and emits what changed.

use super::{LogLimit, Shared};
use crate::{ClusterEvent, NodeInfo};
use redis::{ErrorKind, RedisError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;

/// How long a node's dead mark waits for the node to come back and see it.
const DEAD_MARK_SECS: u64 = 3600;

/// What one heartbeat read.
struct Beat {
    epoch: String,
    /// The marker was missing (the store is new or lost its data); `epoch` is the one just
    /// stored.
    epoch_missing: bool,
    /// Another node saw this one die and removed it (it was cut off, or stalled, for
    /// longer than the ttl).
    marked_dead: bool,
    /// The live nodes with a readable entry, sorted by id, this one included.
    nodes: Vec<NodeInfo>,
}

pub(super) struct Heartbeat {
    shared: Arc<Shared>,
    /// The epoch marker as last seen.
    epoch: String,
    /// StoreLost was emitted and StoreBack not yet.
    lost: bool,
    /// After a reset, nodes missing from the store stay in the view until this instant:
    /// they are alive but have not re-registered yet, and calling them down would make
    /// everyone drop their rooms at each Redis restart.
    grace_until: Option<Instant>,
    /// The last heartbeat found this node marked dead and acted on it: the next one
    /// removes the mark.
    ack_dead_mark: bool,
    fail_log: LogLimit,
    junk_log: LogLimit,
}

impl Heartbeat {
    pub fn new(shared: Arc<Shared>, epoch: String) -> Heartbeat {
        Heartbeat {
            shared,
            epoch,
            lost: false,
            grace_until: None,
            ack_dead_mark: false,
            fail_log: LogLimit::new(),
            junk_log: LogLimit::new(),
        }
    }

    /// The first heartbeat, at start: registers this node and fills the view, without
    /// events (the nodes already there are not news).
    pub async fn first(&mut self) -> Result<(), RedisError> {
        let beat = self.beat().await?;
        self.epoch = beat.epoch;
        *self.shared.view() = beat.nodes;
        Ok(())
    }

    pub async fn run(mut self) {
        let period = self.shared.ttl / 5;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.tick().await;
        }
    }

    async fn tick(&mut self) {
        let beat = match self.beat().await {
            Ok(beat) => beat,
            Err(e) => {
                if !self.lost {
                    self.lost = true;
                    tracing::warn!("cluster store lost: {e}");
                    self.shared.emit(ClusterEvent::StoreLost);
                } else if self.fail_log.ready(Duration::from_secs(10)) {
                    tracing::warn!("cluster store still unreachable: {e}");
                }
                return;
            }
        };
        let reset = beat.epoch_missing || beat.epoch != self.epoch;
        self.epoch = beat.epoch;
        if reset {
            tracing::warn!("the cluster store lost its data (restarted without persistence?)");
            if !self.lost {
                // Reset between two heartbeats without one failing: still a loss.
                self.shared.emit(ClusterEvent::StoreLost);
            }
            self.grace_until = Some(Instant::now() + self.shared.ttl);
        }
        self.ack_dead_mark = false;
        if beat.marked_dead {
            self.declared_dead();
            // The next heartbeat removes the mark: this one's answer came back, so the
            // NodeDowns went out.
            self.ack_dead_mark = true;
        }
        if self.lost || reset {
            self.lost = false;
            tracing::info!(reset, "cluster store back");
            self.shared.emit(ClusterEvent::StoreBack { reset });
        }
        self.update_view(beat.nodes);
    }

    /// Another node marked this one dead (its heartbeat had run out): to the others it
    /// died, so they dropped what they held for it (its clients' sessions, its rooms). It
    /// does the same with what it holds for them: NodeDown for each, then NodeUp as the
    /// view fills again (`update_view`).
    fn declared_dead(&mut self) {
        tracing::warn!(
            "the other nodes saw this one die (cut off or stalled for longer than the ttl)"
        );
        let me = self.shared.me.id.clone();
        let others: Vec<_> = {
            let mut view = self.shared.view();
            let others = view
                .iter()
                .filter(|n| n.id != me)
                .map(|n| n.id.clone())
                .collect();
            view.retain(|n| n.id == me);
            others
        };
        for id in others {
            tracing::info!(node = %id, "cluster node down (for this one)");
            self.shared.emit(ClusterEvent::NodeDown(id));
        }
    }

    /// Replace the view with `nodes` and emit NodeUp/NodeDown for the differences.
    fn update_view(&mut self, mut nodes: Vec<NodeInfo>) {
        let in_grace = self.grace_until.is_some_and(|t| Instant::now() < t);
        let me = &self.shared.me.id;
        let (ups, downs) = {
            let mut view = self.shared.view();
            if in_grace {
                for old in view.iter() {
                    if !nodes.iter().any(|n| n.id == old.id) {
                        nodes.push(old.clone());
                    }
                }
                nodes.sort_by(|a, b| a.id.cmp(&b.id));
            }
            let ups: Vec<_> = nodes
                .iter()
                .filter(|n| &n.id != me && !view.iter().any(|o| o.id == n.id))
                .map(|n| n.id.clone())
                .collect();
            let downs: Vec<_> = view
                .iter()
                .filter(|o| &o.id != me && !nodes.iter().any(|n| n.id == o.id))
                .map(|o| o.id.clone())
                .collect();
            *view = nodes;
            (ups, downs)
        };
        for id in downs {
            tracing::info!(node = %id, "cluster node down");
            self.shared.emit(ClusterEvent::NodeDown(id));
        }
        for id in ups {
            tracing::info!(node = %id, "cluster node up");
            self.shared.emit(ClusterEvent::NodeUp(id));
        }
    }

    async fn beat(&self) -> Result<Beat, RedisError> {
        let shared = &self.shared;
        let keys = &shared.keys;
        let mut me = shared.fresh_info();
        // serde_json writes a NaN as null, which would make this entry unreadable.
        if !me.load.cpu.is_finite() {
            me.load.cpu = 0.0;
        }
        let json = serde_json::to_string(&me)
            .map_err(|e| RedisError::from((ErrorKind::Client, "node entry", e.to_string())))?;
        let fresh_epoch = switchboard_util::random_hex(8);
        let ttl_ms = u64::try_from(shared.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut call = shared.scripts.heartbeat.prepare_invoke();
        call.key(keys.alive(&me.id))
            .key(keys.nodes())
            .key(keys.epoch())
            .arg(&*me.id)
            .arg(&json)
            .arg(ttl_ms)
            .arg(&fresh_epoch)
            .arg(keys.alive_prefix())
            .arg(keys.inbox_prefix())
            .arg(keys.dead_prefix())
            .arg(if self.ack_dead_mark { "1" } else { "0" })
            .arg(DEAD_MARK_SECS);
        let reply: Vec<Vec<u8>> = call.invoke_async(&mut shared.conn.clone()).await?;
        let mut items = reply.into_iter();
        let epoch = items.next().unwrap_or_default();
        let marked_dead = !items.next().unwrap_or_default().is_empty();
        let (epoch, epoch_missing) = if epoch.is_empty() {
            (fresh_epoch, true)
        } else {
            (String::from_utf8_lossy(&epoch).into_owned(), false)
        };
        let mut nodes = Vec::new();
        while let (Some(id), Some(entry)) = (items.next(), items.next()) {
            if id == me.id.as_bytes() {
                continue; // added below as written, not as read back
            }
            match serde_json::from_slice::<NodeInfo>(&entry) {
                Ok(info) if info.id.as_bytes() == id.as_slice() => nodes.push(info),
                _ => {
                    if self.junk_log.ready(Duration::from_secs(60)) {
                        tracing::warn!(
                            node = %String::from_utf8_lossy(&id),
                            "skipping an unreadable entry in the cluster's node list"
                        );
                    }
                }
            }
        }
        nodes.push(me);
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Beat {
            epoch,
            epoch_missing,
            marked_dead,
            nodes,
        })
    }
}
