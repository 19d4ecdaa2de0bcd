//! The hub as a service of the running server: [`Signaling`] owns the shards (one sans-IO
//! [`Hub`] each, behind its own lock), the queue of every connection, and carries out what
//! the hubs output. Transports (WebSocket, SSE) use it through a [`Connection`]; servers'
//! own members of rooms (the SFU, gateways, the cluster link) through a
//! [`crate::ServiceParticipant`].
//!
//! Rooms are spread over the shards by the hash of their name, so signaling uses as many
//! cores as there are shards. A connection starts on a shard of its own number (for
//! `ping`, errors and rate limiting before it joins) and moves at `join` to its room's
//! shard, or at `resume` to the shard its token names. Each method locks the shard it
//! needs, does its work, and [`flush`]es the outputs before unlocking, so every queue
//! receives its messages in the hub's order.

use crate::bus::BusMessage;
use crate::event::{JoinError, ServiceJoined, SignalError};
use crate::glue::Glue;
use crate::hub::{ConnId, Hub, HubConfig, HubStats, Output, Received};
use crate::link::{lock, Link, Out, ServiceLink, Sink};
use crate::outbox::Outbox;
use crate::protocol::ErrorCode;
use crate::shard::{shard_of_room, ShardId};
use crate::token::Grants;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use switchboard_util::shrink_sparse;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Messages queued for one transport before it counts as too slow and is cut off (its
/// session is suspended and can resume with nothing lost).
pub(crate) const TRANSPORT_QUEUE: usize = 512;
/// Events queued for one service participant before it counts as stuck and is removed
/// from its room. Services are in-process and fast; this bounds memory if one hangs.
const SERVICE_QUEUE: usize = 8192;

/// Who takes the hubs' [`Output::ServiceWanted`], by service kind.
type Requests = Arc<Mutex<HashMap<String, UnboundedSender<Arc<str>>>>>;

pub(crate) struct Shard {
    pub(crate) hub: Hub,
    requests: Requests,
    sinks: HashMap<ConnId, Sink>,
    /// How many of the sinks are service participants.
    services: usize,
    /// Reused for every batch of hub outputs.
    scratch: Vec<Output>,
    /// The cluster this node belongs to, if any.
    glue: Option<Arc<Glue>>,
    /// The node whose SFU each member uses, when its `join` or `resume` named a live one
    /// (`sfuNode`): asked for an edge, instead of the node that bridges the member, when
    /// the room turns SFU later ([`edges_wanted`]; none when it is this node).
    pub(crate) sfu_nodes: HashMap<ConnId, switchboard_cluster::NodeId>,
}

/// Shared signaling state of one server.
pub struct Signaling {
    shards: Box<[Mutex<Shard>]>,
    next_conn: AtomicU64,
    requests: Requests,
    pub(crate) glue: Option<Arc<Glue>>,
}

/// A gauge snapshot for metrics, summed over the shards.
#[derive(Debug, Clone, Default)]
pub struct SignalingSnapshot {
    /// Open transports (WebSocket and SSE).
    pub connections: usize,
    /// Service participants in rooms.
    pub services: usize,
    pub sessions: usize,
    pub suspended: usize,
    pub rooms: usize,
    pub shards: usize,
    /// Clients of other nodes in rooms this node owns (cluster).
    pub hosted: usize,
    /// Clients of this node in rooms other nodes own (cluster).
    pub bridged: usize,
    pub stats: HubStats,
}

impl Signaling {
    /// Signaling split into `shards` shards; 0 means one per available core
    /// ([`Signaling::default_shards`]).
    pub fn new(cfg: HubConfig, shards: usize) -> Arc<Signaling> {
        Signaling::build(cfg, shards, None)
    }

    /// Signaling as a node of a cluster (docs/cluster.md): rooms live on one
    /// node each, clients may connect to any. Its events must be fed in by
    /// [`Signaling::run_cluster`].
    pub fn clustered(
        mut cfg: HubConfig,
        shards: usize,
        store: Arc<dyn switchboard_cluster::Cluster>,
        placement: crate::glue::Placement,
    ) -> Arc<Signaling> {
        cfg.records = true;
        Signaling::build(cfg, shards, Some(Arc::new(Glue::new(store, placement))))
    }

    fn build(cfg: HubConfig, shards: usize, glue: Option<Arc<Glue>>) -> Arc<Signaling> {
        let count = if shards == 0 {
            Signaling::default_shards()
        } else {
            shards
        };
        let now = Instant::now();
        let requests = Requests::default();
        let shards = (0..count)
            .map(|i| {
                let id = ShardId::new(i, count).unwrap_or(ShardId::SOLE);
                let mut hub = Hub::new_shard(cfg.clone(), now, id);
                // Nobody serves SFU rooms until `service_requests("sfu")`.
                hub.set_sfu_available(false);
                Mutex::new(Shard {
                    hub,
                    requests: requests.clone(),
                    sinks: HashMap::new(),
                    sfu_nodes: HashMap::new(),
                    services: 0,
                    scratch: Vec::new(),
                    glue: glue.clone(),
                })
            })
            .collect();
        Arc::new(Signaling {
            shards,
            next_conn: AtomicU64::new(1),
            requests,
            glue,
        })
    }

    /// The rooms that need a service participant of `kind` (`"sfu"`: rooms that turned
    /// SFU), one name per room lifetime, from now on. The service joins them with
    /// [`Signaling::join_service_as`]. Registering `"sfu"` is what lets rooms turn SFU at
    /// all; a second registration of a kind replaces the first.
    pub fn service_requests(&self, kind: &str) -> UnboundedReceiver<Arc<str>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.requests).insert(kind.to_string(), tx);
        if kind == crate::mode::SFU {
            for i in 0..self.shards.len() {
                self.with_shard(i, |hub| hub.set_sfu_available(true));
            }
        }
        rx
    }

    /// Ask the service that takes requests of `kind` for `room`, as the hub does with
    /// `ServiceWanted` (a request nobody takes is dropped).
    pub(crate) fn request_service(&self, kind: &str, room: &str) {
        let mut requests = lock(&self.requests);
        let gone = requests
            .get(kind)
            .is_some_and(|tx| tx.send(Arc::from(room)).is_err());
        if gone {
            requests.remove(kind);
        }
    }

    /// One shard per available core.
    pub fn default_shards() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that holds `room`.
    pub fn shard_of_room(&self, room: &str) -> usize {
        shard_of_room(room, self.shards.len())
    }

    pub(crate) fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        lock(&self.shards[index.min(self.shards.len() - 1)])
    }

    pub(crate) fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Register a new transport; its task drains [`Connection::recv`].
    pub fn connect(self: &Arc<Self>) -> Connection {
        let link = self.new_link();
        self.attach_sink(&link, Sink::Transport(link.clone()));
        Connection {
            sig: self.clone(),
            link,
        }
    }

    /// A fresh connection number on its home shard.
    pub(crate) fn new_link(&self) -> Arc<Link> {
        let id = self.next_conn();
        let home = (id % self.shards.len() as u64) as usize;
        Arc::new(Link {
            id,
            shard: Mutex::new(home),
            outbox: Outbox::default(),
        })
    }

    /// Register `link` with its home shard's hub, its outputs going to `sink`.
    pub(crate) fn attach_sink(&self, link: &Arc<Link>, sink: Sink) {
        let home = *lock(&link.shard);
        let mut sh = self.shard(home);
        sh.sinks.insert(link.id, sink);
        sh.hub.connect(link.id, Instant::now());
        flush(&mut sh);
    }

    /// Give up `room` (another node of the cluster owns it now): its sessions go without
    /// a word to anyone, and its connections here are closed with
    /// [`crate::glue::MOVE_CODE`], so that their clients resume at the new owner.
    pub(crate) fn hand_over(&self, shard: usize, room: &str) {
        let mut sh = self.shard(shard);
        let conns = sh.hub.hand_over(room);
        for conn in conns {
            match sh.remove_sink(conn) {
                Some(Sink::Transport(link)) => {
                    link.outbox
                        .push(Out::Close(crate::glue::MOVE_CODE), usize::MAX);
                    link.outbox.close();
                }
                Some(Sink::Service(link)) => link.outbox.close(),
                Some(Sink::Remote(r)) => {
                    if let Some(glue) = &sh.glue {
                        glue.forget_hosted(&r, crate::glue::MOVE_CODE);
                    }
                }
                Some(Sink::RemoteService(h)) => {
                    if let Some(glue) = &sh.glue {
                        crate::service_wire::forward_close(glue, &h);
                    }
                }
                None => {}
            }
            sh.hub.disconnect(conn, Instant::now());
        }
        flush(&mut sh);
    }

    /// Whether the connection of `link` has a session (is in a room).
    pub(crate) fn has_session(&self, link: &Link) -> bool {
        let bound = lock(&link.shard);
        self.shard(*bound).hub.has_session(link.id)
    }

    /// One client message on `link`, handled by this node's shards.
    pub(crate) fn receive_local(&self, link: &Link, text: &str) {
        let mut bound = lock(&link.shard);
        let (now, unix_now) = (Instant::now(), switchboard_util::unix_now());
        let mut sh = self.shard(*bound);
        let Received::OtherShard(to) = sh.hub.receive(link.id, text, now, unix_now) else {
            flush(&mut sh);
            return;
        };
        // A join or resume for another shard: move the connection there, with its rate
        // limit, and let that shard handle the message.
        let detached = sh.hub.detach(link.id);
        let sink = sh.remove_sink(link.id);
        flush(&mut sh);
        drop(sh);
        let (Some(detached), Some(sink)) = (detached, sink) else {
            return;
        };
        let mut sh = self.shard(to);
        sh.hub.attach(link.id, detached);
        sh.sinks.insert(link.id, sink);
        *bound = to;
        // The target shard holds the room or token, so it handles the message itself.
        let _ = sh.hub.receive_moved(link.id, text, now, unix_now);
        flush(&mut sh);
    }

    /// The transport of `link` ended: its session is suspended for a resume.
    pub(crate) fn close_local(&self, link: &Link) {
        let bound = lock(&link.shard);
        let mut sh = self.shard(*bound);
        sh.remove_sink(link.id);
        sh.hub.disconnect(link.id, Instant::now());
        flush(&mut sh);
    }

    /// Join a service participant to `room` (see [`Signaling::join_service_as`]).
    pub(crate) fn admit_service(
        &self,
        room: &str,
        name: &str,
        kind: &str,
        grants: Grants,
    ) -> Result<(Arc<ServiceLink>, ServiceJoined, bool), JoinError> {
        let shard = self.shard_of_room(room);
        let id = self.next_conn();
        let link = Arc::new(ServiceLink::new(id, shard));
        let mut sh = self.shard(shard);
        let created = !sh.hub.has_room(room);
        let joined = sh
            .hub
            .join_service_as(id, room, name, kind, grants, Instant::now())?;
        sh.sinks.insert(id, Sink::Service(link.clone()));
        sh.services += 1;
        flush(&mut sh);
        Ok((link, joined, created))
    }

    /// Join a service participant that another node runs (see `crate::remote_service`):
    /// as [`Signaling::admit_service`], `answer` called with the join (and the hub, for
    /// the members' grants) before any output of the participant is carried out, and its
    /// outputs going to the sink `sink` makes of its number and shard.
    pub(crate) fn admit_hosted_service(
        &self,
        room: &str,
        name: &str,
        kind: &str,
        grants: Grants,
        answer: impl FnOnce(&ServiceJoined, &Hub),
        sink: impl FnOnce(ConnId, usize, Arc<str>) -> Sink,
    ) -> Result<(), SignalError> {
        let shard = self.shard_of_room(room);
        let id = self.next_conn();
        let mut sh = self.shard(shard);
        let joined = sh
            .hub
            .join_service_as(id, room, name, kind, grants, Instant::now())?;
        answer(&joined, &sh.hub);
        sh.sinks.insert(id, sink(id, shard, joined.room.clone()));
        sh.services += 1;
        flush(&mut sh);
        Ok(())
    }

    /// Run `f` on the hub of shard `index`, then carry out its outputs.
    pub(crate) fn with_shard<R>(&self, index: usize, f: impl FnOnce(&mut Hub) -> R) -> R {
        let mut sh = self.shard(index);
        let r = f(&mut sh.hub);
        flush(&mut sh);
        r
    }

    /// A service participant leaves its room.
    pub(crate) fn leave_service(&self, shard: usize, id: ConnId) {
        let mut sh = self.shard(shard);
        sh.remove_sink(id);
        sh.hub.leave_service(id, Instant::now());
        flush(&mut sh);
    }

    /// Apply new hub settings (SIGHUP).
    pub fn reconfigure(&self, cfg: HubConfig) {
        for i in 0..self.shards.len() {
            self.with_shard(i, |hub| hub.set_config(cfg.clone()));
        }
    }

    /// Tell every client and service participant the server stops.
    pub fn shutdown(&self) {
        for i in 0..self.shards.len() {
            self.with_shard(i, Hub::shutdown);
        }
    }

    pub fn snapshot(&self) -> SignalingSnapshot {
        let mut snap = SignalingSnapshot {
            shards: self.shards.len(),
            ..SignalingSnapshot::default()
        };
        for shard in self.shards.iter() {
            let sh = lock(shard);
            let (_, sessions, suspended, rooms) = sh.hub.counts();
            let hosted = sh
                .sinks
                .values()
                .filter(|s| matches!(s, Sink::Remote(_)))
                .count();
            snap.connections += sh.sinks.len() - sh.services - hosted;
            snap.hosted += hosted;
            snap.services += sh.services;
            snap.sessions += sessions;
            snap.suspended += suspended;
            snap.rooms += rooms;
            snap.stats.add(sh.hub.stats());
        }
        if let Some(glue) = &self.glue {
            snap.bridged = glue.bridged();
        }
        snap
    }

    /// The earliest time a shard has timer work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).hub.poll_timeout())
            .min()
    }

    /// Queue [`Out::Keepalive`] for the transports whose number is `tick` modulo
    /// `slices`. Called every keepalive period / `slices`, it reaches every transport
    /// once a period, spread evenly over it: one timer for all connections instead of
    /// one each (a tokio timer costs an idle connection ~150 B).
    /// A transport with a full queue is busy, not idle, and is skipped.
    pub fn keepalive(&self, tick: u64, slices: u64) {
        let slices = slices.max(1);
        for shard in self.shards.iter() {
            let sh = lock(shard);
            for (id, sink) in sh.sinks.iter() {
                if let Sink::Transport(link) = sink {
                    if id % slices == tick % slices {
                        link.outbox.push(Out::Keepalive, TRANSPORT_QUEUE);
                    }
                }
            }
        }
    }

    /// Run the timers (grace expiry) of every shard that has work due at `now`.
    pub fn handle_timeouts(&self, now: Instant) {
        for i in 0..self.shards.len() {
            let mut sh = self.shard(i);
            if sh.hub.poll_timeout().is_some_and(|t| t <= now) {
                sh.hub.handle_timeout(now);
                flush(&mut sh);
            }
        }
    }
}

impl Shard {
    /// Whether connection `conn` has its outputs here (it is bound to this shard).
    pub(crate) fn sinks_has(&self, conn: ConnId) -> bool {
        self.sinks.contains_key(&conn)
    }

    pub(crate) fn remove_sink(&mut self, conn: ConnId) -> Option<Sink> {
        let sink = self.sinks.remove(&conn);
        if matches!(sink, Some(Sink::Service(_) | Sink::RemoteService(_))) {
            self.services -= 1;
        }
        shrink_sparse(&mut self.sinks);
        if self.sfu_nodes.remove(&conn).is_some() {
            shrink_sparse(&mut self.sfu_nodes);
        }
        sink
    }
}

/// Carry out a shard's outputs: queue texts and events, close what the hub closed. A
/// queue that is full is cut off, which may make the hub output more (a service
/// participant's `peer-left`), so this runs until the hub has nothing left.
fn flush(sh: &mut Shard) {
    while sh.hub.has_outputs() {
        let mut outputs = std::mem::take(&mut sh.scratch);
        outputs.extend(sh.hub.drain_outputs());
        for o in outputs.drain(..) {
            match o {
                Output::Send { conn, text } => {
                    if let Some(Sink::Remote(r)) = sh.sinks.get(&conn) {
                        if let Some(glue) = &sh.glue {
                            let msg = BusMessage::Out {
                                conn: r.conn,
                                text: &text,
                            };
                            glue.store.send(&r.node, msg.encode());
                        }
                        continue;
                    }
                    let Some(Sink::Transport(link)) = sh.sinks.get(&conn) else {
                        continue;
                    };
                    if !link.outbox.push(Out::Text(text), TRANSPORT_QUEUE) {
                        // Too slow or gone: drop the transport; the session waits for a resume.
                        link.outbox.close();
                        sh.remove_sink(conn);
                        sh.hub.disconnect(conn, Instant::now());
                    }
                }
                Output::Event { conn, event } => {
                    if let (Some(Sink::RemoteService(h)), Some(glue)) =
                        (sh.sinks.get(&conn), &sh.glue)
                    {
                        crate::service_wire::forward_event(glue, &sh.hub, h, &event);
                        continue;
                    }
                    let Some(Sink::Service(link)) = sh.sinks.get(&conn) else {
                        continue;
                    };
                    if !link.outbox.push(event, SERVICE_QUEUE) {
                        link.outbox.close();
                        sh.remove_sink(conn);
                        sh.hub.disconnect(conn, Instant::now());
                    }
                }
                Output::ServiceWanted { room, kind } => {
                    if kind == crate::mode::SFU {
                        edges_wanted(sh, &room);
                    }
                    let mut requests = lock(&sh.requests);
                    let gone = requests
                        .get(kind)
                        .is_some_and(|tx| tx.send(room.clone()).is_err());
                    if gone {
                        requests.remove(kind);
                    }
                }
                Output::Close { conn, code } => match sh.remove_sink(conn) {
                    Some(Sink::Transport(link)) => {
                        link.outbox.push(Out::Close(code), usize::MAX);
                        link.outbox.close();
                    }
                    Some(Sink::Service(link)) => link.outbox.close(),
                    Some(Sink::Remote(r)) => {
                        if let Some(glue) = &sh.glue {
                            glue.forget_hosted(&r, code);
                        }
                    }
                    Some(Sink::RemoteService(h)) => {
                        if let Some(glue) = &sh.glue {
                            crate::service_wire::forward_close(glue, &h);
                        }
                    }
                    None => {}
                },
                Output::Record { room, key, value } => {
                    if let Some(glue) = &sh.glue {
                        glue.write_record(room, key, value);
                    }
                }
                Output::RoomGone { room } => {
                    if let Some(glue) = &sh.glue {
                        glue.store.release(room);
                    }
                }
            }
        }
        sh.scratch = outputs;
    }
}

/// Room `room` of this node turned SFU: every node that bridges members of it may serve
/// them from an SFU edge of its own, and every node a member named as the one whose SFU
/// it uses (`sfuNode`) instead (cluster).
fn edges_wanted(sh: &Shard, room: &str) {
    let Some(glue) = &sh.glue else { return };
    let mut nodes: Vec<&switchboard_cluster::NodeId> = Vec::new();
    for conn in sh.hub.room_conns(room) {
        let node = match (sh.sfu_nodes.get(&conn), sh.sinks.get(&conn)) {
            (Some(named), _) => Some(named),
            (None, Some(Sink::Remote(r))) => Some(&r.node),
            _ => None,
        };
        if let Some(node) = node.filter(|n| *n != glue.me() && !nodes.contains(n)) {
            nodes.push(node);
        }
    }
    for node in nodes {
        glue.ask_edge(node, room);
    }
}

/// One transport connection (a WebSocket, an SSE stream with its POSTs). Clones share it;
/// [`Connection::close`] ends it for all of them.
#[derive(Clone)]
pub struct Connection {
    sig: Arc<Signaling>,
    link: Arc<Link>,
}

impl Connection {
    pub fn id(&self) -> ConnId {
        self.link.id
    }

    /// One client message (a text frame or POST body). In a cluster, a `join` or
    /// `resume` may first ask the cluster store which node holds the room (and the
    /// connection is bridged there); otherwise this never waits.
    pub async fn receive(&self, text: &str) {
        if let Some(glue) = &self.sig.glue {
            if glue.forward(self.link.id, text) {
                return;
            }
            // Boxed: this future lives in every connection's task, which should not grow
            // by the store's futures for the one message in a session that needs them.
            if Box::pin(self.sig.route_entry(&self.link, text)).await {
                return;
            }
            self.sig.receive_local(&self.link, text);
            self.sig.local_entry(&self.link, text);
            return;
        }
        self.sig.receive_local(&self.link, text);
    }

    /// An error the transport detects itself (origin, frame size, binary frame).
    pub fn report(&self, code: ErrorCode, reason: &str, fatal: bool) {
        if let Some(glue) = &self.sig.glue {
            if glue.forward_report(&self.link, code, reason, fatal) {
                return;
            }
        }
        let bound = lock(&self.link.shard);
        self.sig
            .with_shard(*bound, |hub| hub.report(self.link.id, code, reason, fatal));
    }

    /// The transport ended (any side): its session is suspended for a resume.
    pub fn close(&self) {
        if let Some(glue) = &self.sig.glue {
            glue.unbridge(self.link.id, true);
        }
        self.link.outbox.close();
        self.sig.close_local(&self.link);
    }

    /// The next thing to write, or None once the hub closed the connection and all was
    /// taken. Cancel-safe.
    pub async fn recv(&self) -> Option<Out> {
        self.link.outbox.recv().await
    }

    /// The next thing to write, if one is queued.
    pub fn try_recv(&self) -> Option<Out> {
        self.link.outbox.try_recv()
    }
}
