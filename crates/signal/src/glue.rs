//! This node's part of the cluster's signaling state (see [`crate::cluster`]): the
//! clients it bridges to rooms of other nodes, the clients of other nodes it hosts, and
//! the writes it queues for the cluster store. Kept apart from the routing (which needs
//! the shards) so that the shards can use it.

use crate::bus::BusMessage;
use crate::hub::ConnId;
use crate::link::{lock, HostedService, Link, RemoteLink, RemoteService};
use crate::protocol::ErrorCode;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use switchboard_cluster::{Cluster, NodeId, RecordOp};

/// The WebSocket close code that sends a client to resume elsewhere: "service restart".
pub const MOVE_CODE: u16 = 1012;

/// Where a room without an owner goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// The live node with the lowest load score (the joiner's node on a tie).
    #[default]
    LeastLoaded,
    /// The node the first joiner reached.
    Local,
}

/// A client of this node in a room another node owns.
pub(crate) struct Bridge {
    pub(crate) link: Arc<Link>,
    pub(crate) owner: NodeId,
}

/// This node's part of the cluster's signaling.
pub(crate) struct Glue {
    pub(crate) store: Arc<dyn Cluster>,
    pub(crate) placement: Placement,
    pub(crate) bridges: Mutex<HashMap<ConnId, Bridge>>,
    pub(crate) hosted: Mutex<HashMap<(NodeId, ConnId), Arc<RemoteLink>>>,
    /// This node's service participants in rooms of other nodes, by connection number.
    pub(crate) remote_services: Mutex<HashMap<ConnId, Arc<RemoteService>>>,
    /// Other nodes' service participants in rooms of this node.
    pub(crate) hosted_services: Mutex<HashMap<(NodeId, ConnId), Arc<HostedService>>>,
}

impl Glue {
    pub(crate) fn new(store: Arc<dyn Cluster>, placement: Placement) -> Glue {
        Glue {
            store,
            placement,
            bridges: Mutex::new(HashMap::new()),
            hosted: Mutex::new(HashMap::new()),
            remote_services: Mutex::new(HashMap::new()),
            hosted_services: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn bridged(&self) -> usize {
        lock(&self.bridges).len()
    }

    pub(crate) fn me(&self) -> &NodeId {
        &self.store.me().id
    }

    /// Ask `node` to run an SFU edge of `room`, a room of this node (it keeps one per room).
    pub(crate) fn ask_edge(&self, node: &NodeId, room: &str) {
        let msg = BusMessage::EdgeWanted {
            conn: 0,
            text: room,
        };
        self.store.send(node, msg.encode());
    }

    /// Pass a client message of a bridged connection to its room's owner; false when the
    /// connection is not bridged.
    pub(crate) fn forward(&self, conn: ConnId, text: &str) -> bool {
        let bridges = lock(&self.bridges);
        let Some(b) = bridges.get(&conn) else {
            return false;
        };
        self.store
            .send(&b.owner, BusMessage::Text { conn, text }.encode());
        true
    }

    pub(crate) fn forward_report(
        &self,
        link: &Link,
        code: ErrorCode,
        reason: &str,
        fatal: bool,
    ) -> bool {
        let bridges = lock(&self.bridges);
        let Some(b) = bridges.get(&link.id) else {
            return false;
        };
        let msg = BusMessage::Report {
            conn: link.id,
            code,
            fatal,
            reason,
        };
        self.store.send(&b.owner, msg.encode());
        true
    }

    pub(crate) fn bridge(&self, link: &Arc<Link>, owner: NodeId, text: &str) {
        let conn = link.id;
        // Registered before the Open goes out: the owner's answer (`joined`, then what
        // the room sends) may come back before this thread runs again, and an `Out` for
        // a connection not bridged yet is dropped. (Found by bench/cluster.sh.)
        lock(&self.bridges).insert(
            conn,
            Bridge {
                link: link.clone(),
                owner: owner.clone(),
            },
        );
        self.store
            .send(&owner, BusMessage::Open { conn, text }.encode());
    }

    /// Stop bridging `conn`; `tell_owner`: its transport ended, so the owner suspends
    /// its session.
    pub(crate) fn unbridge(&self, conn: ConnId, tell_owner: bool) -> Option<Bridge> {
        let b = lock(&self.bridges).remove(&conn)?;
        if tell_owner {
            self.store
                .send(&b.owner, BusMessage::Gone { conn }.encode());
        }
        Some(b)
    }

    /// A hosted connection's sink was removed (the hub closed it): tell its bridge.
    pub(crate) fn forget_hosted(&self, r: &RemoteLink, code: u16) {
        lock(&self.hosted).remove(&(r.node.clone(), r.conn));
        let msg = BusMessage::Close { conn: r.conn, code };
        self.store.send(&r.node, msg.encode());
    }

    pub(crate) fn write_record(&self, room: Arc<str>, key: Arc<str>, value: Option<Arc<str>>) {
        self.store.write(match value {
            Some(value) => RecordOp::Put { room, key, value },
            None => RecordOp::Delete { room, key },
        });
    }

    pub(crate) fn hosted(&self, node: &NodeId, conn: ConnId) -> Option<Arc<RemoteLink>> {
        lock(&self.hosted).get(&(node.clone(), conn)).cloned()
    }
}
