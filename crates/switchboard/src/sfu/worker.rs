//! One SFU worker as a service of a `net` worker thread: it owns one sans-IO
//! `switchboard_sfu::Sfu` (the rooms hashed to it), one socket of the SFU port's
//! SO_REUSEPORT group, and an inbox with a waker. Datagrams its socket receives go to
//! the worker that owns them ([`super::demux`]); signaling from the rooms' service
//! participants arrives in the inbox; what the core outputs leaves through the socket
//! (datagrams, batched by `net`) or the room's participant (signaling). The core's
//! flush (the packets forwarded during the pass leave) runs once per loop pass, in
//! `before_flush`, not per datagram: str0m's cost is per call, not per packet.

use super::demux::{Route, SourceMap};
use super::shared::{Command, LocalSink, Shared, WorkerFigures};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_net::{Flow, Io, Kind, PortInfo, Received, Service, Tok, Tx};
use switchboard_sfu::{GoneReason, SfuOutput, SignalIn, SignalKind, Transport};
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
    /// Peers whose media is in-process (`local.rs`), by room, and where their packets
    /// go: marked in the core when it adds them. The worker's own map, so that handing a
    /// packet over takes no lock.
    local: HashMap<Arc<str>, HashMap<Arc<str>, LocalSink>>,
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
            local: HashMap::new(),
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
                SfuOutput::Transmit {
                    transport: Transport::Tcp,
                    destination,
                    contents,
                    ..
                } => self.shared.tcp.send(destination, &contents),
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
                    let known = self
                        .members
                        .get_mut(&room)
                        .is_some_and(|set| set.remove(&peer));
                    if known && reason != GoneReason::Left {
                        // Its connection is gone but it is still in the room: say so,
                        // so that it can offer again (a browser) or end (WHIP).
                        self.signal(&room, &peer, SignalKind::Message, gone_message(reason));
                    }
                }
                SfuOutput::RoomEmpty { room } => {
                    self.members.remove(&room);
                }
                SfuOutput::LocalRtp { room, peer, rtp } => {
                    let sink = self.local.get(&room).and_then(|m| m.get(&peer));
                    if !sink.is_some_and(|s| s.try_send(rtp).is_ok()) {
                        self.shared
                            .counters
                            .local_dropped
                            .fetch_add(1, Ordering::Relaxed);
                    }
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
            Command::TcpFrame {
                source,
                destination,
                bytes,
            } => {
                self.sfu.handle_tcp_frame(now, source, destination, &bytes);
            }
            Command::TcpClosed { source } => self.sfu.tcp_closed(source),
            Command::Signal {
                room,
                from,
                grants,
                fixed,
                link,
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
                    let added = if fixed {
                        self.sfu.add_fixed_participant(&room, &from, g, now)
                    } else {
                        self.sfu.add_participant(&room, &from, g, now)
                    };
                    match added {
                        Ok(()) => {
                            if self.local.get(&room).is_some_and(|m| m.contains_key(&from)) {
                                self.sfu.set_local_media(&room, &from);
                            }
                            if link {
                                self.sfu.set_link(&room, &from);
                            }
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
            Command::LocalAttach { room, peer, sink } => {
                self.sfu.set_local_media(&room, &peer);
                self.local.entry(room).or_default().insert(peer, sink);
            }
            Command::LocalRtp { room, peer, rtp } => {
                self.sfu.handle_local_rtp(now, &room, &peer, &rtp);
            }
            Command::Leave { room, peer } => {
                if let Some(set) = self.local.get_mut(&room) {
                    set.remove(&peer);
                    if set.is_empty() {
                        self.local.remove(&room);
                    }
                }
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

/// `{"sfu":"gone","reason":…}`: the SFU dropped this participant's connection.
fn gone_message(reason: GoneReason) -> String {
    let reason = match reason {
        GoneReason::IceTimeout => "ice-timeout",
        GoneReason::Closed => "closed",
        GoneReason::Idle => "idle",
        GoneReason::Error => "error",
        GoneReason::Left => "left",
    };
    format!(r#"{{"sfu":"gone","reason":"{reason}"}}"#)
}

impl Service for SfuWorker {
    fn attach(&mut self, io: &mut Io) -> std::io::Result<()> {
        self.fd = io.ports().first().map(|p| p.fd);
        let token = io.token(Kind::Waker, 0);
        self.shared.install_waker(self.id, io.registry(), token)
    }

    fn on_datagram(&mut self, port: &PortInfo, d: Received<'_>, _: &mut Tx<'_>, now: Instant) {
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
            // What it forwarded leaves in `before_flush`, once for the whole batch.
            _ => self.datagram(now, source, destination, payload),
        }
    }

    fn before_flush(&mut self, io: &mut Io, now: Instant) {
        self.sfu.flush(now);
        let mut tx = io.batch.tx();
        self.drain_outputs(&mut tx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::demux::tests::binding;
    use std::os::fd::AsRawFd;
    use switchboard_net::Batch;

    fn worker(id: usize, shared: &Arc<Shared>, local: SocketAddr) -> SfuWorker {
        let now = Instant::now();
        let cfg = switchboard_sfu::SfuConfig {
            ufrag_prefix: super::super::demux::ufrag_prefix(id),
            candidates: vec![local],
            ..switchboard_sfu::SfuConfig::default()
        };
        let sfu = switchboard_sfu::Sfu::new(cfg, now).unwrap();
        SfuWorker::new(id, sfu, shared.clone(), vec![local], now)
    }

    /// Datagrams through a real socket and `net`'s batch into worker 0: a Binding
    /// request naming worker 1's prefix goes to worker 1's inbox, and so does what the
    /// same source sends next (DTLS); an unknown source stays with worker 0's core.
    #[test]
    fn datagrams_of_another_workers_participant_are_handed_over() {
        let shared = Arc::new(Shared::new(2));
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let local = sock.local_addr().unwrap();
        let mut w0 = worker(0, &shared, local);
        w0.fd = Some(sock.as_raw_fd());
        let port = PortInfo {
            index: 0,
            local,
            fd: sock.as_raw_fd(),
        };
        let browser = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        browser.send_to(&binding("w1xAbCd:remote"), local).unwrap();
        browser.send_to(&[22, 254, 253, 0, 1, 2, 3], local).unwrap();
        stranger.send_to(&[22, 254, 253, 9, 9], local).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = Batch::new(0, 0);
        let slots = batch.recv(sock.as_raw_fd()).unwrap();
        assert_eq!(slots.len(), 3);
        let now = Instant::now();
        for i in slots {
            let (d, mut tx) = batch.slot(i);
            w0.on_datagram(&port, d, &mut tx, now);
        }
        let mut got = VecDeque::new();
        shared.take(1, &mut got);
        let handed: Vec<(SocketAddr, u8)> = got
            .iter()
            .map(|c| match c {
                Command::Datagram { source, bytes, .. } => (*source, bytes[0]),
                _ => panic!("not a datagram"),
            })
            .collect();
        let from = browser.local_addr().unwrap();
        assert_eq!(handed, [(from, 0), (from, 22)]);
        assert_eq!(shared.counters.handoffs.load(Ordering::Relaxed), 2);
        let mut none = VecDeque::new();
        shared.take(0, &mut none);
        assert!(none.is_empty());
        // The stranger's datagram went to worker 0's own core, which owns nothing.
        assert_eq!(w0.sfu.stats().unknown_datagrams, 1);
    }
}
