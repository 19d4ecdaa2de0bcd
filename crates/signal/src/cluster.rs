//! Signaling across the nodes of a cluster (issue 14, docs/cluster.md).
//!
//! Every room lives on one node, its **owner**, whose hub holds all its sessions, so the
//! room rules (isolation, capacity, order, resume) stay those of one hub. A client may
//! connect to any node: when its `join` or `resume` names a room another node owns, the
//! node it reached (the **bridge**) passes its messages to the owner over the cluster
//! bus and hands the client what the owner sends back ([`bus::BusMessage`]). The owner
//! sees such a client as one more connection ([`crate::link::Sink::Remote`]).
//!
//! - **Placement:** a room without a live owner is claimed in the store for the least
//!   loaded node (or the node the joiner reached, [`Placement::Local`]).
//! - **Records:** the owner writes each member (peer id, name, grants, resume token) to
//!   the store; a node that claims the room of a dead owner rebuilds it from them
//!   ([`crate::Hub::restore`]): the members are suspended sessions that resume there.
//! - **A node dies:** bridges into its rooms close their clients' transports (code 1012),
//!   so the clients resume, reach a live node and so the room's new owner; the owner
//!   suspends the sessions of a dead bridge's clients, who resume elsewhere. Nobody sees
//!   a leave unless the grace period runs out.
//! - **The store comes back:** each node claims its rooms again (and, after a reset,
//!   writes their records again); a room another node took meanwhile is handed over:
//!   its clients here are closed with 1012 and resume at the new owner.

use crate::bus::BusMessage;
use crate::glue::{Bridge, Glue, Placement, MOVE_CODE};
use crate::handle::Signaling;
use crate::hub::{ConnId, Output};
use crate::link::{lock, Link, Out, RemoteLink, Sink};
use crate::protocol::ErrorCode;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;
use switchboard_cluster::{least_loaded, lines_home, ClusterEvent, NodeId};
use tracing::{debug, info, warn};

/// A `join` or `resume` as the cluster needs it.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    room: Option<String>,
    token: Option<String>,
    /// The node whose SFU the client uses (its `/api/ice-servers` answer's `node`).
    #[serde(rename = "sfuNode")]
    sfu_node: Option<String>,
}

/// The room a `join` or `resume` names, and the node whose SFU the client uses, if
/// `text` is one.
fn entry(text: &str) -> Option<(String, Option<String>)> {
    let e: Entry = serde_json::from_str(text).ok()?;
    let room = match e.kind.as_str() {
        "join" => e.room.filter(|r| crate::protocol::valid_room(r)),
        "resume" => crate::shard::room_of_resume_token(e.token.as_deref()?).map(str::to_string),
        _ => None,
    }?;
    Some((room, e.sfu_node))
}

/// The room a `join` or `resume` names, if `text` is one.
fn entry_room(text: &str) -> Option<String> {
    entry(text).map(|(room, _)| room)
}

impl Signaling {
    /// A `join` or `resume` of a connection without a session, in a cluster: find the
    /// room's owner. True when the message was dealt with here (bridged to the owner, or
    /// refused because the store is unreachable); false when this node holds the room
    /// and the message goes to the local hub.
    pub(crate) async fn route_entry(&self, link: &Arc<Link>, text: &str) -> bool {
        let Some(glue) = self.glue.clone() else {
            return false;
        };
        // A member's messages (nearly all of them) are not parsed a second time here:
        // only a connection without a session can be joining or resuming.
        if self.has_session(link) {
            return false;
        }
        let Some(room) = entry_room(text) else {
            return false;
        };
        match self.route(&glue, &room).await {
            Ok(None) => false,
            Ok(Some(owner)) => {
                debug!(room, owner = %owner, conn = link.id, "bridging to the room's node");
                glue.bridge(link, owner, text);
                true
            }
            Err(reason) => {
                let bound = *lock(&link.shard);
                self.with_shard(bound, |hub| {
                    hub.report(link.id, ErrorCode::Unavailable, &reason, false)
                });
                true
            }
        }
    }

    /// A service opened `room` here: claim it in the store; if another node holds it
    /// already, this node's copy is handed over (its service participant is dropped).
    pub(crate) fn confirm_room(self: &Arc<Self>, room: &Arc<str>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(room = %room, "no runtime to claim a room a service opened");
            return;
        };
        let (sig, room) = (self.clone(), room.clone());
        runtime.spawn(async move {
            let Some(glue) = sig.glue.clone() else { return };
            match glue.store.claim(&room, glue.me()).await {
                Ok(owner) if &owner == glue.me() => {}
                Ok(owner) => {
                    warn!(room = %room, owner = %owner, "a service opened a room another node holds: dropping this copy");
                    sig.hand_over(sig.shard_of_room(&room), &room);
                }
                Err(e) => warn!(room = %room, error = %e, "cannot claim a room a service opened"),
            }
        });
    }

    /// Who holds `room`: None for this node (its records loaded, if it took the room
    /// over), or the owner.
    async fn route(&self, glue: &Glue, room: &str) -> Result<Option<NodeId>, String> {
        self.route_as(glue, room, glue.placement).await
    }

    pub(crate) async fn route_as(
        &self,
        glue: &Glue,
        room: &str,
        placement: Placement,
    ) -> Result<Option<NodeId>, String> {
        if self.shard(self.shard_of_room(room)).hub.has_room(room) {
            return Ok(None);
        }
        let candidate = if crate::protocol::line_user(room).is_some() {
            // Every line lives on one node, so that its call book sees every signed-in
            // user and any two can call each other (docs/cluster.md "Direct calls").
            let nodes = glue.store.nodes();
            lines_home(&nodes, glue.store.me()).id.clone()
        } else {
            match placement {
                Placement::Local => glue.me().clone(),
                Placement::LeastLoaded => {
                    let nodes = glue.store.nodes();
                    least_loaded(&nodes, glue.store.me()).id.clone()
                }
            }
        };
        let owner = glue
            .store
            .claim(room, &candidate)
            .await
            .map_err(|e| format!("cannot find the node of room {room}: {e}"))?;
        if &owner != glue.me() {
            return Ok(Some(owner));
        }
        self.load_room(glue, room).await?;
        Ok(None)
    }

    /// Rebuild `room` from its records when this node does not hold it (a no-op for a
    /// new room).
    async fn load_room(&self, glue: &Glue, room: &str) -> Result<(), String> {
        let records = glue
            .store
            .records(room)
            .await
            .map_err(|e| format!("cannot read room {room}: {e}"))?;
        if records.is_empty() {
            return Ok(());
        }
        let shard = self.shard_of_room(room);
        let restored = self.with_shard(shard, |hub| hub.restore(room, &records, Instant::now()));
        if restored > 0 {
            info!(room, members = restored, "took over a room whose node died");
        }
        Ok(())
    }

    /// Feed this node's cluster events (messages from other nodes, nodes that die, the
    /// store coming back) until the store's event stream ends. The binary runs it as a
    /// task next to its transports.
    pub async fn run_cluster(self: Arc<Self>) {
        let Some(glue) = self.glue.clone() else {
            return;
        };
        let Some(mut events) = glue.store.events() else {
            warn!("the cluster's events are already taken");
            return;
        };
        while let Some(ev) = events.recv().await {
            match ev {
                ClusterEvent::Message { from, bytes } => match BusMessage::decode(&bytes) {
                    Some(m) => self.on_bus(&glue, &from, m).await,
                    None => {
                        warn!(from = %from, len = bytes.len(), "unreadable cluster message dropped")
                    }
                },
                ClusterEvent::NodeDown(node) => self.node_down(&glue, &node),
                ClusterEvent::NodeUp(node) => debug!(node = %node, "node up"),
                ClusterEvent::StoreLost => {
                    warn!("cluster store unreachable: rooms here keep working, new rooms wait")
                }
                ClusterEvent::StoreBack { reset } => self.resync(&glue, reset).await,
            }
        }
    }

    async fn on_bus(&self, glue: &Glue, from: &NodeId, m: BusMessage<'_>) {
        match m {
            BusMessage::Open { conn, text } => {
                let link = self.new_link();
                let remote = Arc::new(RemoteLink {
                    node: from.clone(),
                    conn,
                    link: link.clone(),
                });
                self.attach_sink(&link, Sink::Remote(remote.clone()));
                lock(&glue.hosted).insert((from.clone(), conn), remote.clone());
                self.receive_hosted(glue, &remote, text).await;
            }
            BusMessage::Text { conn, text } => {
                if let Some(r) = glue.hosted(from, conn) {
                    self.receive_hosted(glue, &r, text).await;
                }
            }
            BusMessage::Gone { conn } => {
                let r = lock(&glue.hosted).remove(&(from.clone(), conn));
                if let Some(r) = r {
                    self.close_local(&r.link);
                }
            }
            BusMessage::Report {
                conn,
                code,
                fatal,
                reason,
            } => {
                if let Some(r) = glue.hosted(from, conn) {
                    let bound = *lock(&r.link.shard);
                    self.with_shard(bound, |hub| hub.report(r.link.id, code, reason, fatal));
                }
            }
            BusMessage::Out { conn, text } => {
                let link = lock(&glue.bridges).get(&conn).map(|b| b.link.clone());
                let Some(link) = link else { return };
                if !link
                    .outbox
                    .push(Out::Text(Arc::from(text)), crate::handle::TRANSPORT_QUEUE)
                {
                    // Too slow: cut it off; the owner suspends the session for a resume.
                    glue.unbridge(conn, true);
                    link.outbox.close();
                    self.close_local(&link);
                }
            }
            BusMessage::Close { conn, code } => {
                if let Some(b) = glue.unbridge(conn, false) {
                    b.link.outbox.push(Out::Close(code), usize::MAX);
                    b.link.outbox.close();
                    self.close_local(&b.link);
                }
            }
            BusMessage::ServiceOpen { conn, text } => {
                self.on_service_open(glue, from, conn, text).await
            }
            BusMessage::ServiceSend { conn, text } => self.on_service_send(glue, from, conn, text),
            BusMessage::ServiceLeave { conn } => self.on_service_leave(glue, from, conn),
            BusMessage::ServiceEvent { conn, text } => {
                self.on_service_event(glue, from, conn, text)
            }
            BusMessage::EdgeWanted { text, .. } => {
                self.request_service(crate::mode::SFU_EDGE, text)
            }
            BusMessage::Redirect { conn, text } => {
                let Some(b) = glue.unbridge(conn, false) else {
                    return;
                };
                // Route again; a second refusal by the same node means the room is
                // moving right now: the client is told to retry.
                let link = b.link;
                match self
                    .route(glue, entry_room(text).as_deref().unwrap_or(""))
                    .await
                {
                    Ok(Some(owner)) if owner != *from => glue.bridge(&link, owner, text),
                    Ok(None) => self.receive_local(&link, text),
                    Ok(Some(_)) | Err(_) => {
                        let bound = *lock(&link.shard);
                        let reason = "the room is moving between nodes; try again";
                        self.with_shard(bound, |hub| {
                            hub.report(link.id, ErrorCode::Unavailable, reason, false)
                        });
                    }
                }
            }
        }
    }

    /// A message from a client another node holds, in (or for) a room of this node.
    async fn receive_hosted(&self, glue: &Glue, r: &Arc<RemoteLink>, text: &str) {
        if let Some(room) = entry_room(text) {
            if !self.has_session(&r.link) && !self.owns(glue, &room).await {
                // Not ours (any more): the bridge routes it again.
                lock(&glue.hosted).remove(&(r.node.clone(), r.conn));
                self.close_local(&r.link);
                let msg = BusMessage::Redirect { conn: r.conn, text };
                glue.store.send(&r.node, msg.encode());
                return;
            }
        }
        self.receive_local(&r.link, text);
        // A member of an SFU room joined (or resumed) through that node: it may serve
        // the room's members there from an SFU edge (asked again on every entry; the
        // bridge keeps one edge per room). A member that names the node whose SFU it
        // uses gets that node's edge instead, while that node lives (a client that
        // failed over names the node it first learnt until it learns its new one).
        if let Some((room, sfu_node)) = entry(text) {
            let named = sfu_node.and_then(|name| self.live_node_named(glue, &name));
            if let Some(node) = &named {
                self.remember_sfu_node(&room, r.link.id, node);
            }
            let node = named.unwrap_or_else(|| r.node.clone());
            self.want_edge(glue, &room, &node);
        }
    }

    /// Member `conn` of `room` uses `node`'s SFU: kept until its connection goes, so
    /// that `node` is asked for an edge should the room turn SFU later.
    fn remember_sfu_node(&self, room: &str, conn: ConnId, node: &NodeId) {
        let mut sh = self.shard(self.shard_of_room(room));
        if sh.sinks_has(conn) {
            sh.sfu_nodes.insert(conn, node.clone());
        }
    }

    /// A client of this node joined (or resumed) a room held here, naming the node whose
    /// SFU it uses (`sfuNode`, [`entry`]): when that is another live node and the room is
    /// SFU, that node is asked for an edge (a full node sends its new clients' media to
    /// another node's SFU: docs/cluster.md "SFU rooms").
    pub(crate) fn local_entry(&self, link: &Link, text: &str) {
        let Some(glue) = &self.glue else { return };
        // Most messages are no entry: only those that can name a node are parsed.
        if !text.contains("\"sfuNode\"") {
            return;
        }
        let Some((room, Some(name))) = entry(text) else {
            return;
        };
        if let Some(node) = self.live_node_named(glue, &name) {
            self.remember_sfu_node(&room, link.id, &node);
            self.want_edge(glue, &room, &node);
        }
    }

    /// The live node called `name` (`--node-name`), if any.
    fn live_node_named(&self, glue: &Glue, name: &str) -> Option<NodeId> {
        glue.store
            .nodes()
            .into_iter()
            .find(|n| n.name == name)
            .map(|n| n.id)
    }

    /// Ask `node` for an SFU edge of `room` when the room is held here and SFU, and
    /// `node` is another node.
    fn want_edge(&self, glue: &Glue, room: &str, node: &NodeId) {
        if node != glue.me() && self.shard(self.shard_of_room(room)).hub.room_is_sfu(room) {
            glue.ask_edge(node, room);
        }
    }

    /// Whether this node holds `room`, claiming (and loading) it when it has no owner.
    pub(crate) async fn owns(&self, glue: &Glue, room: &str) -> bool {
        if self.shard(self.shard_of_room(room)).hub.has_room(room) {
            return true;
        }
        match glue.store.claim(room, glue.me()).await {
            Ok(owner) if &owner == glue.me() => self.load_room(glue, room).await.is_ok(),
            _ => false,
        }
    }

    /// Node `node` is gone: what it held of this node's clients, and what it bridged here.
    fn node_down(&self, glue: &Glue, node: &NodeId) {
        let cut: Vec<Bridge> = {
            let mut bridges = lock(&glue.bridges);
            let ids: Vec<ConnId> = bridges
                .iter()
                .filter(|(_, b)| &b.owner == node)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| bridges.remove(id)).collect()
        };
        let hosted: Vec<Arc<RemoteLink>> = {
            let mut hosted = lock(&glue.hosted);
            let keys: Vec<(NodeId, ConnId)> =
                hosted.keys().filter(|(n, _)| n == node).cloned().collect();
            keys.iter().filter_map(|k| hosted.remove(k)).collect()
        };
        info!(
            node = %node,
            clients_moved = cut.len(),
            sessions_suspended = hosted.len(),
            "node down"
        );
        for b in cut {
            // Its rooms are gone with it: the client resumes, and the resume finds the
            // room's new owner (which rebuilds it from the records).
            b.link.outbox.push(Out::Close(MOVE_CODE), usize::MAX);
            b.link.outbox.close();
            self.close_local(&b.link);
        }
        for r in hosted {
            self.close_local(&r.link);
        }
        // Service participants: ours in its rooms end (they join again where the rooms
        // go); its in our rooms leave.
        let ours: Vec<Arc<crate::link::RemoteService>> = {
            let mut m = lock(&glue.remote_services);
            let ids: Vec<ConnId> = m
                .iter()
                .filter(|(_, r)| &r.owner == node)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| m.remove(id)).collect()
        };
        for r in ours {
            r.link.outbox.close();
        }
        let theirs: Vec<ConnId> = lock(&glue.hosted_services)
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, c)| *c)
            .collect();
        for conn in theirs {
            self.on_service_leave(glue, node, conn);
        }
    }

    /// The store is back: claim every room held here again; after a reset write their
    /// records again; hand over the rooms another node took meanwhile.
    async fn resync(&self, glue: &Glue, reset: bool) {
        info!(reset, "cluster store back: checking the rooms held here");
        for shard in 0..self.shard_count() {
            let rooms = self.shard(shard).hub.room_names();
            for room in rooms {
                match glue.store.claim(&room, glue.me()).await {
                    Ok(owner) if &owner == glue.me() => {
                        if reset {
                            let records = self.with_shard(shard, |hub| hub.records_of(&room));
                            for o in records {
                                if let Output::Record { room, key, value } = o {
                                    glue.write_record(room, key, value);
                                }
                            }
                        }
                    }
                    Ok(owner) => {
                        warn!(room = %room, owner = %owner, "another node took this room: handing it over");
                        self.hand_over(shard, &room);
                    }
                    Err(e) => {
                        warn!(error = %e, "cluster store lost again during the resync");
                        return;
                    }
                }
            }
        }
    }
}
