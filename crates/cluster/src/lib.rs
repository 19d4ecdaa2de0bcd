//! Switchboard's scale-out layer: what the nodes of one cluster share.
//!
//! A cluster is several Switchboard processes ("nodes") that serve one service: a client
//! may connect to any of them. What they must agree on lives in one store, behind the
//! [`Cluster`] trait:
//! - **nodes**: each registers itself with a heartbeat and its [`Load`], and counts as
//!   dead once its heartbeat is [`NODE_TTL`] old;
//! - **rooms**: each room is owned by one live node ([`Cluster::claim`]); a room whose owner
//!   died is claimed by the next node that needs it;
//! - **records**: small per-room key/value records its owner keeps up to date (the
//!   signaling members), from which a new owner rebuilds the room;
//! - **the bus**: bytes from one node to another, in order per sender
//!   ([`Cluster::send`], [`ClusterEvent::Message`]).
//!
//! Two implementations: [`memory::MemoryNet`] (nodes of one process, for tests; no
//! network) and, with the `redis` feature, [`redis_store::RedisCluster`] (a Redis server,
//! Debian's `redis-server`). The crate knows nothing of signaling or media: what the
//! records and messages mean is their users' business.
#![forbid(unsafe_code)]

pub mod memory;
mod node;
#[cfg(feature = "redis")]
pub mod redis_store;

pub use node::{Load, NodeId, NodeInfo, NODE_TTL};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// A boxed future, so that [`Cluster`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store (Redis) cannot be reached now; what needs it must wait or be refused.
    #[error("the cluster store is unreachable: {0}")]
    Unavailable(String),
    /// The store answered something this version does not understand.
    #[error("the cluster store answered unexpectedly: {0}")]
    Protocol(String),
}

/// What happens to this node that its users must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// Bytes another node sent this one ([`Cluster::send`]), in the order it sent them.
    Message { from: NodeId, bytes: Arc<[u8]> },
    /// A node stopped (clean leave, or its heartbeat ran out): what it held is gone.
    NodeDown(NodeId),
    /// A node joined (or came back under a new id).
    NodeUp(NodeId),
    /// This node cannot reach the store: rooms it owns keep working on this node, nothing
    /// new can be claimed, and messages to other nodes wait in a bounded queue.
    StoreLost,
    /// The store is reachable again. `reset`: it lost its data (a restart without
    /// persistence), so each node must write again what it owns.
    StoreBack { reset: bool },
}

/// One change to a room's records, applied in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp {
    Put {
        room: Arc<str>,
        key: Arc<str>,
        value: Arc<str>,
    },
    Delete {
        room: Arc<str>,
        key: Arc<str>,
    },
}

/// A room and the node that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomOwner {
    pub room: String,
    pub owner: NodeId,
}

/// What the nodes of a cluster share (module docs). Calls that return futures ask the
/// store and wait for its answer; [`Cluster::send`] and [`Cluster::write`] only queue, in
/// one queue per node, so a record written before a message is stored before the message
/// arrives.
pub trait Cluster: Send + Sync + 'static {
    /// This node.
    fn me(&self) -> &NodeInfo;

    /// The live nodes, this one included, as last seen (refreshed every heartbeat).
    fn nodes(&self) -> Vec<NodeInfo>;

    /// The live owner of `room`; when it has none (or its owner is dead), `candidate`
    /// becomes its owner. The answer is the owner after the call.
    fn claim<'a>(
        &'a self,
        room: &'a str,
        candidate: &'a NodeId,
    ) -> BoxFuture<'a, Result<NodeId, ClusterError>>;

    /// The live owner of `room`, if any; claims nothing.
    fn owner<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Option<NodeId>, ClusterError>>;

    /// `room` ended on this node: forget its owner (only if it is still this node) and its
    /// records. Queued like [`Cluster::write`].
    fn release(&self, room: Arc<str>);

    /// Queue a change of a room's records.
    fn write(&self, op: RecordOp);

    /// A room's records (key, value).
    fn records<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ClusterError>>;

    /// Every owned room with its owner (for `switchboard cluster status`).
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomOwner>, ClusterError>>;

    /// Queue `bytes` for node `to`; delivered once, in order per sender, unless `to` dies
    /// first (then they are lost). A node that joined since this one last looked is
    /// reached too (`claim` may name it before the next heartbeat shows it).
    fn send(&self, to: &NodeId, bytes: Vec<u8>);

    /// This node's events; the first call takes them, later calls get None.
    fn events(&self) -> Option<UnboundedReceiver<ClusterEvent>>;

    /// Leave the cluster (clean shutdown): other nodes see [`ClusterEvent::NodeDown`] now
    /// rather than when the heartbeat runs out.
    fn leave(&self) -> BoxFuture<'_, ()>;
}

/// Of `nodes`, the one to place a new room on: the lowest [`Load::score`], this node on a
/// tie (a room on the node its creator came to saves a hop).
pub fn least_loaded<'a>(nodes: &'a [NodeInfo], me: &'a NodeInfo) -> &'a NodeInfo {
    // `me` as the others see it (with its last reported load), when it is in the list.
    let mut best = nodes.iter().find(|n| n.id == me.id).unwrap_or(me);
    for n in nodes {
        if n.load.score() < best.load.score() {
            best = n;
        }
    }
    best
}

/// Of `nodes`, the one that holds every line (`@user`): the oldest live node (the lowest
/// node id among those that started in the same second), `me` when alone. Every node
/// names the same one from the same list, and it changes only when that node dies
/// (a node that joins is the youngest).
pub fn lines_home<'a>(nodes: &'a [NodeInfo], me: &'a NodeInfo) -> &'a NodeInfo {
    nodes
        .iter()
        .chain(std::iter::once(me))
        .min_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)))
        .unwrap_or(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_live_on_the_oldest_node_whoever_asks() {
        let mut a = node("a", 0.0, 0);
        let mut b = node("b", 0.0, 0);
        let mut c = node("c", 0.0, 0);
        (a.started, b.started, c.started) = (20, 10, 10);
        let nodes = [a.clone(), b.clone(), c.clone()];
        for me in [&a, &b, &c] {
            assert_eq!(&*lines_home(&nodes, me).id, "b", "asked by {}", me.id);
        }
        // b dies: c (older than a) takes over, as every node sees it.
        let left = [a.clone(), c.clone()];
        assert_eq!(&*lines_home(&left, &a).id, "c");
        assert_eq!(&*lines_home(&[], &a).id, "a", "alone");
    }

    fn node(name: &str, cpu: f32, participants: u32) -> NodeInfo {
        NodeInfo {
            id: Arc::from(name),
            name: name.into(),
            url: String::new(),
            turn: Vec::new(),
            region: None,
            started: 0,
            load: Load {
                cpu,
                cores: 2,
                rooms: 0,
                participants,
                bitrate: 0,
            },
        }
    }

    #[test]
    fn rooms_go_to_the_least_loaded_node_and_ties_stay_here() {
        let nodes = [node("a", 1.5, 10), node("b", 0.2, 10), node("c", 0.2, 10)];
        // `me` as it was at start (no load): its reported load counts, not that.
        let me_at_start = node("a", 0.0, 0);
        assert_eq!(&*least_loaded(&nodes, &me_at_start).id, "b");
        let me = node("c", 0.0, 0);
        assert_eq!(&*least_loaded(&nodes, &me).id, "c", "a tie stays here");
        assert_eq!(&*least_loaded(&[], &me).id, "c", "alone");
    }
}
