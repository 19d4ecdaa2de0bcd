//! One SFU worker as a service of a `net` worker thread: it owns one sans-IO
//! `switchboard_sfu::Sfu` (the rooms hashed to it), one socket of the SFU port's
//! SO_REUSEPORT group, and an inbox with a waker. Datagrams its socket receives go to
//! the worker that owns them ([`super::demux`]); signaling from the rooms' service
//! participants arrives in the inbox; what the core outputs leaves through the socket
//! (datagrams, batched by `net`) or the room's participant (signaling).

use super::demux::{Route, SourceMap};
use super::shared::{Command, Shared, WorkerFigures};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_net::{Flow, Io, Kind, PortInfo, Received, Service, Tok, Tx};
use switchboard_sfu::{SfuOutput, SignalIn, SignalKind};
use switchboard_signal::RelayKind;

/// How often a worker publishes its core's figures for `/metrics`.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

pub struct SfuWorker {
    id: usize,
    sfu: switchboard_sfu::Sfu,
    shared: Arc<Shared>,
    sources: SourceMap,
    /// Announced candidates: the local address a datagram "arrived on" for the core
    /// (with a wildcard bind the socket's own address says nothing).
    candidates: Vec<SocketAddr>,
    /// The socket of the SFU port on this worker, once attached.
    fd: Option<RawFd>,
    /// Participants added to the core, by room.
    members: HashMap<Arc<str>, HashSet<Arc<str>>>,
    inbox: VecDeque<Command>,
    next_publish: Instant,
}

impl SfuWorker {
    pub fn new(
        id: usize,
        sfu: switchboard_sfu::Sfu,
        shared: Arc<Shared>,
        candidates: Vec<SocketAddr>,
        now: Instant,
    ) -> SfuWorker {
        let workers = shared.workers();
        SfuWorker {
            id,
            sfu,
            shared,
            sources: SourceMap::new(workers, now),
            candidates,
            fd: None,
            members: HashMap::new(),
            inbox: VecDeque::new(),
            next_publish: now,
        }
    }

    /// The local address the core is told a datagram from `source` arrived on.
    fn destination(&self, source: SocketAddr, local: SocketAddr) -> SocketAddr {
        self.candidates
            .iter()
            .copied()
            .find(|c| c.is_ipv4() == source.is_ipv4())
            .unwrap_or(local)
    }

    /// Everything the core has to say: datagrams into the send queue, signaling to the
    /// room's participant.
    fn drain_outputs(&mut self, tx: &mut Tx<'_>) {
        while let Some(out) = self.sfu.poll_output() {
            match out {
                // One socket per worker: every candidate is its address (or maps to it).
                SfuOutput::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    if let Some(fd) = self.fd {
                        tx.send(fd, destination, &contents);
                    }
                }
                SfuOutput::Signal {
                    room,
                    to,
                    kind,
                    payload,
                } => self.signal(&room, &to, kind, payload),
                SfuOutput::ParticipantGone { room, peer, reason } => {
                    tracing::debug!(%room, %peer, ?reason, "SFU participant gone");
                    if let Some(set) = self.members.get_mut(&room) {
                        set.remove(&peer);
                    }
                }
                SfuOutput::RoomEmpty { room } => {
                    self.members.remove(&room);
                }
            }
        }
    }

    fn signal(&self, room: &str, to: &str, kind: SignalKind, payload: String) {
        let relay = match kind {
            SignalKind::Offer => RelayKind::Offer,
            SignalKind::Answer => RelayKind::Answer,
            SignalKind::Message => RelayKind::Message,
        };
        let sent = RawValue::from_string(payload)
            .ok()
            .zip(self.shared.participant(room))
            .map(|(raw, p)| p.send(to, relay, &raw));
        match sent {
            Some(Ok(())) => {}
            other => {
                if let Some(Err(e)) = other {
                    tracing::debug!(room, to, error = %e, "SFU signaling refused");
                }
                self.shared
                    .counters
                    .signal_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A datagram for this worker's core (which counts the ones nobody owns).
    fn datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        self.sfu.handle_datagram(now, source, destination, bytes);
    }

    fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Datagram {
                source,
                destination,
                bytes,
            } => self.datagram(now, source, destination, &bytes),
            Command::Signal {
                room,
                from,
                grants,
                kind,
                payload,
            } => {
                let known = self
                    .members
                    .get(&room)
                    .is_some_and(|set| set.contains(&from));
                // A browser becomes a participant of the core with its first offer (or
                // the `publish` message that precedes it).
                if !known && matches!(kind, RelayKind::Offer | RelayKind::Message) {
                    let g = switchboard_sfu::Grants {
                        publish: grants.publish,
                        subscribe: grants.subscribe,
                    };
                    match self.sfu.add_participant(&room, &from, g, now) {
                        Ok(()) => {
                            self.members
                                .entry(room.clone())
                                .or_default()
                                .insert(from.clone());
                        }
                        Err(e) => {
                            tracing::debug!(%room, peer = %from, error = %e, "SFU refused a participant");
                            return;
                        }
                    }
                }
                let text = payload.get();
                let msg = match kind {
                    RelayKind::Offer => SignalIn::Offer(text),
                    RelayKind::Answer => SignalIn::Answer(text),
                    RelayKind::Candidate => SignalIn::Candidate(text),
                    RelayKind::Message => SignalIn::Message(text),
                };
                if let Err(e) = self.sfu.handle_signal(&room, &from, msg, now) {
                    tracing::debug!(%room, peer = %from, error = %e, "SFU signaling input refused");
                }
            }
            Command::Leave { room, peer } => {
                let gone = self
                    .members
                    .get_mut(&room)
                    .is_some_and(|set| set.remove(&peer));
                if gone {
                    self.sfu.remove_participant(&room, &peer, now);
                }
                if self.members.get(&room).is_some_and(HashSet::is_empty) {
                    self.members.remove(&room);
                }
            }
        }
    }

    fn run_inbox(&mut self, tx: &mut Tx<'_>, now: Instant) {
        self.shared.take(self.id, &mut self.inbox);
        while let Some(cmd) = self.inbox.pop_front() {
            self.command(cmd, now);
            self.drain_outputs(tx);
        }
    }

    fn publish(&mut self, now: Instant) {
        if now < self.next_publish {
            return;
        }
        self.next_publish = now + PUBLISH_EVERY;
        if let Some(f) = self.shared.figures.get(self.id) {
            let stats = self.sfu.stats();
            *f.lock().unwrap_or_else(|e| e.into_inner()) = WorkerFigures { stats };
        }
    }
}

impl Service for SfuWorker {
    fn attach(&mut self, io: &mut Io) -> std::io::Result<()> {
        self.fd = io.ports().first().map(|p| p.fd);
        let token = io.token(Kind::Waker, 0);
        self.shared.install_waker(self.id, io.registry(), token)
    }

    fn on_datagram(&mut self, port: &PortInfo, d: Received<'_>, tx: &mut Tx<'_>, now: Instant) {
        let Some(source) = d.from else { return };
        let payload = d.payload();
        if payload.is_empty() {
            return;
        }
        let destination = self.destination(source, port.local);
        match self.sources.route(source, payload, now) {
            Route::Worker(w) if w != self.id => {
                let cmd = Command::Datagram {
                    source,
                    destination,
                    bytes: payload.to_vec(),
                };
                if self.shared.send(w, cmd) {
                    self.shared
                        .counters
                        .handoffs
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                self.datagram(now, source, destination, payload);
                self.drain_outputs(tx);
            }
        }
    }

    fn on_event(&mut self, io: &mut Io, tok: Tok, _readable: bool, _writable: bool, now: Instant) {
        if tok.kind == Kind::Waker {
            let mut tx = io.batch.tx();
            self.run_inbox(&mut tx, now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.shared.stopping.load(Ordering::Relaxed) {
            return Some(Instant::now());
        }
        let core = self.sfu.poll_timeout();
        Some(core.map_or(self.next_publish, |t| t.min(self.next_publish)))
    }

    fn handle_timeout(&mut self, io: &mut Io, now: Instant) -> Flow {
        if self.shared.stopping.load(Ordering::Relaxed) {
            return Flow::Stop;
        }
        self.sfu.handle_timeout(now);
        {
            let mut tx = io.batch.tx();
            self.drain_outputs(&mut tx);
        }
        // The driver flushes after reading sockets, not after timers: send now.
        io.batch.flush();
        self.sources.sweep(now);
        self.publish(now);
        Flow::Continue
    }
}
