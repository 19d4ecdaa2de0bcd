//! The cluster store in memory: nodes of one process share a [`MemoryNet`]. For tests of
//! what runs on top (signaling across nodes) without a Redis server; it follows the same
//! rules as the Redis store: owners must be alive, records go with a released room,
//! messages arrive in order per sender and never at a dead node.

use crate::{
    BoxFuture, Cluster, ClusterError, ClusterEvent, NodeId, NodeInfo, RecordOp, RoomOwner,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

#[derive(Default)]
struct NetState {
    nodes: HashMap<NodeId, (NodeInfo, UnboundedSender<ClusterEvent>)>,
    owners: HashMap<String, NodeId>,
    records: HashMap<String, BTreeMap<String, String>>,
    /// Nodes cut off from the store: their calls fail, their messages go nowhere.
    cut: HashSet<NodeId>,
}

/// The shared store of in-process nodes.
#[derive(Clone, Default)]
pub struct MemoryNet {
    state: Arc<Mutex<NetState>>,
}

impl MemoryNet {
    pub fn new() -> MemoryNet {
        MemoryNet::default()
    }

    fn state(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new node called `name` joins; the others see [`ClusterEvent::NodeUp`].
    pub fn join(&self, name: &str) -> Arc<MemoryCluster> {
        let info = NodeInfo {
            id: NodeInfo::new_id(name),
            name: name.to_string(),
            url: format!("memory://{name}"),
            turn: Vec::new(),
            region: None,
            started: switchboard_util::unix_now(),
            load: crate::Load::default(),
        };
        let (tx, rx) = unbounded_channel();
        let mut st = self.state();
        for (_, other) in st.nodes.values() {
            let _ = other.send(ClusterEvent::NodeUp(info.id.clone()));
        }
        st.nodes.insert(info.id.clone(), (info.clone(), tx));
        Arc::new(MemoryCluster {
            net: self.clone(),
            me: info,
            events: Mutex::new(Some(rx)),
        })
    }

    /// Node `id` dies at once (a `kill -9`): the others see [`ClusterEvent::NodeDown`];
    /// what it owned can be claimed.
    pub fn kill(&self, id: &NodeId) {
        let mut st = self.state();
        if st.nodes.remove(id).is_none() {
            return;
        }
        for (_, other) in st.nodes.values() {
            let _ = other.send(ClusterEvent::NodeDown(id.clone()));
        }
    }

    /// Cut node `id` off the store (a partition): it gets [`ClusterEvent::StoreLost`] and,
    /// as its heartbeat stops, the others see it down.
    pub fn cut(&self, id: &NodeId) {
        let mut st = self.state();
        st.cut.insert(id.clone());
        if let Some((_, tx)) = st.nodes.get(id) {
            let _ = tx.send(ClusterEvent::StoreLost);
        }
        for (other, (_, tx)) in st.nodes.iter() {
            if other != id {
                let _ = tx.send(ClusterEvent::NodeDown(id.clone()));
            }
        }
    }

    /// Heal the cut of node `id`: it gets [`ClusterEvent::StoreBack`], the others see it up.
    pub fn heal(&self, id: &NodeId) {
        let mut st = self.state();
        if !st.cut.remove(id) {
            return;
        }
        if let Some((_, tx)) = st.nodes.get(id) {
            let _ = tx.send(ClusterEvent::StoreBack { reset: false });
        }
        for (other, (_, tx)) in st.nodes.iter() {
            if other != id {
                let _ = tx.send(ClusterEvent::NodeUp(id.clone()));
            }
        }
    }

    /// The store loses everything (a Redis restart without persistence): every node
    /// gets [`ClusterEvent::StoreBack`] with `reset`.
    pub fn reset(&self) {
        let mut st = self.state();
        st.owners.clear();
        st.records.clear();
        for (_, tx) in st.nodes.values() {
            let _ = tx.send(ClusterEvent::StoreBack { reset: true });
        }
    }

    /// The owner of `room` as stored (alive or not).
    pub fn stored_owner(&self, room: &str) -> Option<NodeId> {
        self.state().owners.get(room).cloned()
    }

    /// A room's records as stored.
    pub fn stored_records(&self, room: &str) -> Vec<(String, String)> {
        self.state()
            .records
            .get(room)
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

impl NetState {
    /// Alive and reachable.
    fn live(&self, id: &NodeId) -> bool {
        self.nodes.contains_key(id) && !self.cut.contains(id)
    }

    fn check(&self, me: &NodeId) -> Result<(), ClusterError> {
        if self.cut.contains(me) {
            Err(ClusterError::Unavailable("cut off (test)".into()))
        } else {
            Ok(())
        }
    }
}

/// One node's view of a [`MemoryNet`].
pub struct MemoryCluster {
    net: MemoryNet,
    me: NodeInfo,
    events: Mutex<Option<UnboundedReceiver<ClusterEvent>>>,
}

impl Cluster for MemoryCluster {
    fn me(&self) -> &NodeInfo {
        &self.me
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        let st = self.net.state();
        let mut v: Vec<NodeInfo> = st
            .nodes
            .iter()
            .filter(|(id, _)| !st.cut.contains(*id))
            .map(|(_, (info, _))| info.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn claim<'a>(
        &'a self,
        room: &'a str,
        candidate: &'a NodeId,
    ) -> BoxFuture<'a, Result<NodeId, ClusterError>> {
        Box::pin(async move {
            let mut st = self.net.state();
            st.check(&self.me.id)?;
            if let Some(owner) = st.owners.get(room) {
                if st.live(owner) {
                    return Ok(owner.clone());
                }
            }
            st.owners.insert(room.to_string(), candidate.clone());
            Ok(candidate.clone())
        })
    }

    fn owner<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Option<NodeId>, ClusterError>> {
        Box::pin(async move {
            let st = self.net.state();
            st.check(&self.me.id)?;
            Ok(st.owners.get(room).filter(|o| st.live(o)).cloned())
        })
    }

    fn release(&self, room: Arc<str>) {
        let mut st = self.net.state();
        if st.cut.contains(&self.me.id) {
            return;
        }
        if st.owners.get(&*room) == Some(&self.me.id) {
            st.owners.remove(&*room);
            st.records.remove(&*room);
        }
    }

    fn write(&self, op: RecordOp) {
        let mut st = self.net.state();
        if st.cut.contains(&self.me.id) {
            return;
        }
        match op {
            RecordOp::Put { room, key, value } => {
                st.records
                    .entry(room.to_string())
                    .or_default()
                    .insert(key.to_string(), value.to_string());
            }
            RecordOp::Delete { room, key } => {
                if let Some(r) = st.records.get_mut(&*room) {
                    r.remove(&*key);
                    if r.is_empty() {
                        st.records.remove(&*room);
                    }
                }
            }
        }
    }

    fn records<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, ClusterError>> {
        Box::pin(async move {
            self.net.state().check(&self.me.id)?;
            Ok(self.net.stored_records(room))
        })
    }

    fn rooms(&self) -> BoxFuture<'_, Result<Vec<RoomOwner>, ClusterError>> {
        Box::pin(async move {
            let st = self.net.state();
            st.check(&self.me.id)?;
            let mut v: Vec<RoomOwner> = st
                .owners
                .iter()
                .filter(|(_, o)| st.live(o))
                .map(|(room, owner)| RoomOwner {
                    room: room.clone(),
                    owner: owner.clone(),
                })
                .collect();
            v.sort_by(|a, b| a.room.cmp(&b.room));
            Ok(v)
        })
    }

    fn send(&self, to: &NodeId, bytes: Vec<u8>) {
        let st = self.net.state();
        if !st.live(&self.me.id) || !st.live(to) {
            return;
        }
        if let Some((_, tx)) = st.nodes.get(to) {
            let _ = tx.send(ClusterEvent::Message {
                from: self.me.id.clone(),
                bytes: Arc::from(bytes),
            });
        }
    }

    fn events(&self) -> Option<UnboundedReceiver<ClusterEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.net.kill(&self.me.id) })
    }
}
