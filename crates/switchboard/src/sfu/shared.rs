//! What the SFU's threads share: each worker's inbox (datagrams handed over by other
//! workers, signaling from the rooms' service participants) with its waker, the rooms'
//! participants (the workers send their signaling through them), the stats each worker
//! publishes for `/metrics`, and the driver's own counters.

use mio::{Registry, Token, Waker};
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use switchboard_signal::{Grants, RelayKind, ServiceParticipant};

/// Datagrams one worker's inbox holds; more are dropped (and counted): a worker that
/// falls behind loses packets, never memory.
pub const DATAGRAM_INBOX: usize = 4096;
/// Signaling commands one worker's inbox holds (far more than any room sends at once).
pub const SIGNAL_INBOX: usize = 16384;

/// Work for a worker from outside its own socket.
pub enum Command {
    /// A datagram that arrived on another worker's socket.
    Datagram {
        source: SocketAddr,
        destination: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A browser's relay to the room's SFU participant, with its grants; `fixed` for a
    /// one-shot participant (WHIP, WHEP: one offer, never offered to).
    Signal {
        room: Arc<str>,
        from: Arc<str>,
        grants: Grants,
        fixed: bool,
        /// A node link (`service: "link"`): its `publish` names the peers of the far
        /// node ([`switchboard_sfu::Sfu::set_link`]).
        link: bool,
        kind: RelayKind,
        payload: Box<RawValue>,
    },
    /// The browser left the room.
    Leave { room: Arc<str>, peer: Arc<str> },
    /// An RFC 4571 frame of the ICE-TCP connection from `source` ([`super::tcp`]).
    TcpFrame {
        source: SocketAddr,
        destination: SocketAddr,
        bytes: Vec<u8>,
    },
    /// The ICE-TCP connection from `source` closed.
    TcpClosed { source: SocketAddr },
    /// `peer` of `room` exchanges its media in-process ([`super::local`]), from its first
    /// signaling on (sent before it); what it receives goes to `sink`.
    LocalAttach {
        room: Arc<str>,
        peer: Arc<str>,
        sink: LocalSink,
    },
    /// A packet `peer` (attached) publishes.
    LocalRtp {
        room: Arc<str>,
        peer: Arc<str>,
        rtp: switchboard_sfu::LocalRtp,
    },
}

impl Command {
    fn is_datagram(&self) -> bool {
        matches!(
            self,
            Command::Datagram { .. } | Command::TcpFrame { .. } | Command::LocalRtp { .. }
        )
    }
}

/// Where the packets for a participant with in-process media go.
pub type LocalSink = tokio::sync::mpsc::Sender<switchboard_sfu::LocalRtp>;

#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    datagrams: usize,
}

/// One worker's inbox.
pub struct Inbox {
    queue: Mutex<Queue>,
    waker: OnceLock<Waker>,
}

/// The driver's own counters (the cores count the rest).
#[derive(Default)]
pub struct Counters {
    /// Datagrams dropped because the owning worker's inbox was full.
    pub handoff_full: AtomicU64,
    /// Datagrams handed from one worker to another.
    pub handoffs: AtomicU64,
    /// Signaling the SFU could not take (full inbox) or send (refused by the hub).
    pub signal_dropped: AtomicU64,
    /// Rooms the SFU joined.
    pub rooms_joined: AtomicU64,
    /// Packets for in-process participants lost to a full queue (or a participant gone).
    pub local_dropped: AtomicU64,
    /// Node links (rooms spanning nodes, [`super::node_link`]): tracks relayed now from
    /// other nodes and to them, and the RTP packets relayed.
    pub link_tracks_in: AtomicU64,
    pub link_tracks_out: AtomicU64,
    pub link_packets_in: AtomicU64,
    pub link_packets_out: AtomicU64,
    /// SFU edges this node runs for rooms of other nodes.
    pub edges: AtomicU64,
}

/// The SFU core's figures, as one worker last published them.
#[derive(Clone, Debug, Default)]
pub struct WorkerFigures {
    pub stats: switchboard_sfu::SfuStats,
}

pub struct Shared {
    inboxes: Vec<Inbox>,
    /// The SFU participant of each room it serves, for the workers' signaling.
    participants: Mutex<HashMap<Arc<str>, Arc<ServiceParticipant>>>,
    pub figures: Vec<Mutex<WorkerFigures>>,
    pub counters: Counters,
    /// The ICE-TCP connections' write queues (`--sfu-tcp`).
    pub tcp: super::tcp::TcpConns,
    pub stopping: AtomicBool,
    pub draining: AtomicBool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(workers: usize) -> Shared {
        Shared {
            inboxes: (0..workers)
                .map(|_| Inbox {
                    queue: Mutex::new(Queue::default()),
                    waker: OnceLock::new(),
                })
                .collect(),
            participants: Mutex::new(HashMap::new()),
            figures: (0..workers)
                .map(|_| Mutex::new(WorkerFigures::default()))
                .collect(),
            counters: Counters::default(),
            tcp: super::tcp::TcpConns::default(),
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// The worker that serves `room` (a stable hash of its name).
    pub fn worker_of_room(&self, room: &str) -> usize {
        // FNV-1a: stable across runs and threads, and cheap.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in room.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.inboxes.len().max(1) as u64) as usize
    }

    /// Install worker `id`'s waker (on its registry), then wake it once for anything
    /// queued before.
    pub fn install_waker(
        &self,
        id: usize,
        registry: &Registry,
        token: Token,
    ) -> std::io::Result<()> {
        let Some(inbox) = self.inboxes.get(id) else {
            return Ok(());
        };
        let _ = inbox.waker.set(Waker::new(registry, token)?);
        self.wake(id);
        Ok(())
    }

    pub fn wake(&self, id: usize) {
        if let Some(w) = self.inboxes.get(id).and_then(|i| i.waker.get()) {
            let _ = w.wake();
        }
    }

    /// Queue `cmd` for worker `to` and wake it; false (counted) when its inbox is full.
    pub fn send(&self, to: usize, cmd: Command) -> bool {
        let Some(inbox) = self.inboxes.get(to) else {
            return false;
        };
        let datagram = cmd.is_datagram();
        let was_empty;
        {
            let mut q = lock(&inbox.queue);
            was_empty = q.commands.is_empty();
            let full = if datagram {
                q.datagrams >= DATAGRAM_INBOX
            } else {
                q.commands.len() - q.datagrams >= SIGNAL_INBOX
            };
            if full {
                let c = &self.counters;
                let counter = if datagram {
                    &c.handoff_full
                } else {
                    &c.signal_dropped
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            q.datagrams += usize::from(datagram);
            q.commands.push_back(cmd);
        }
        // The worker takes the whole queue when woken: one wake per non-empty spell (a
        // wake is a syscall, and a call's in-process packets come 50 a second each).
        if was_empty {
            self.wake(to);
        }
        true
    }

    /// Everything queued for worker `id`, into `out` (reused).
    pub fn take(&self, id: usize, out: &mut VecDeque<Command>) {
        if let Some(inbox) = self.inboxes.get(id) {
            let mut q = lock(&inbox.queue);
            q.datagrams = 0;
            out.append(&mut q.commands);
        }
    }

    pub fn add_participant(&self, room: Arc<str>, p: Arc<ServiceParticipant>) {
        lock(&self.participants).insert(room, p);
    }

    /// `p` leaves `room`: its entry goes, unless another participant (the room's SFU
    /// after an edge of the same room) holds it by now.
    pub fn remove_participant(&self, room: &str, p: &Arc<ServiceParticipant>) {
        let mut map = lock(&self.participants);
        if map.get(room).is_some_and(|q| Arc::ptr_eq(q, p)) {
            map.remove(room);
            switchboard_util::shrink_sparse(&mut *map);
        }
    }

    pub fn participant(&self, room: &str) -> Option<Arc<ServiceParticipant>> {
        lock(&self.participants).get(room).cloned()
    }

    pub fn rooms(&self) -> usize {
        lock(&self.participants).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram() -> Command {
        Command::Datagram {
            source: "192.0.2.1:1".parse().unwrap(),
            destination: "192.0.2.2:2".parse().unwrap(),
            bytes: vec![0; 10],
        }
    }

    #[test]
    fn a_full_inbox_drops_datagrams_and_counts_them_but_keeps_signaling() {
        let shared = Shared::new(2);
        for _ in 0..DATAGRAM_INBOX {
            assert!(shared.send(1, datagram()));
        }
        assert!(!shared.send(1, datagram()));
        assert_eq!(shared.counters.handoff_full.load(Ordering::Relaxed), 1);
        let leave = Command::Leave {
            room: "r".into(),
            peer: "p".into(),
        };
        assert!(shared.send(1, leave), "signaling has its own bound");
        assert!(!shared.send(7, datagram()), "no such worker");
        let mut got = VecDeque::new();
        shared.take(1, &mut got);
        assert_eq!(got.len(), DATAGRAM_INBOX + 1);
        assert!(shared.send(1, datagram()), "room again once taken");
    }

    #[test]
    fn rooms_spread_over_workers_the_same_way_every_time() {
        let shared = Shared::new(4);
        let workers: std::collections::HashSet<usize> = (0..64)
            .map(|i| shared.worker_of_room(&format!("room-{i}")))
            .collect();
        assert_eq!(workers.len(), 4);
        assert_eq!(shared.worker_of_room("a"), shared.worker_of_room("a"));
        assert_eq!(Shared::new(1).worker_of_room("anything"), 0);
    }
}
