//! The hub: connections, sessions and rooms, as a state machine fed client messages,
//! transport events and time, returning what to send to which connection.
//!
//! One hub is one shard of the server's signaling (see [`crate::shard`]): it holds the
//! rooms whose names hash to it and the connections bound to them. A connection without
//! a session whose `join` or `resume` belongs to another shard is handed back to the
//! driver ([`Received::OtherShard`]) to be moved there.

use crate::event::ServiceEvent;
use crate::limits::RateLimiter;
use crate::protocol::ErrorCode;
pub use crate::session::ConnId;
use crate::session::Session;
pub(crate) use crate::session::SessionKey;
use crate::shard::ShardId;
use crate::wire::{LeaveReason, PeerInfo, RelayKind, ServerMessage};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_util::shrink_sparse;

/// Hub settings (the `--room-*` and `--signal-*` options).
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Members per room, suspended sessions included.
    pub room_capacity: usize,
    /// How long a session whose transport was lost waits for `resume`.
    pub grace: Duration,
    /// Largest client message in bytes.
    pub max_message: usize,
    /// Messages per second per connection; 0 = unlimited.
    pub rate: u32,
    /// Room token secrets: empty = open rooms; else tokens must verify under one of them.
    pub token_secrets: Vec<Vec<u8>>,
    /// Unacknowledged messages kept per session for replay after a resume.
    pub replay_messages: usize,
    pub replay_bytes: usize,
    /// When an `auto` room turns SFU: None = never (mesh only), Some(0) = from its first
    /// member, Some(n) = when its n-th client member joins. Rooms turn SFU only while
    /// someone serves them ([`crate::Signaling::service_requests`]).
    pub sfu_threshold: Option<usize>,
    /// Client members per room in SFU mode (`room_capacity` is for mesh rooms).
    pub sfu_room_capacity: usize,
    /// Who may take a line (`@user`) without room tokens: user and secret, which the
    /// join's `token` carries. Empty (and no token secrets): lines are open.
    pub line_users: Vec<(String, Vec<u8>)>,
    /// Client members of a direct call's room (`call-<32 hex>`).
    pub call_room_capacity: usize,
    /// Output [`Output::Record`] and [`Output::RoomGone`] (a node of a cluster writes them
    /// to the cluster store, so another node can take the room over; see `records`).
    pub records: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            room_capacity: 8,
            grace: Duration::from_secs(30),
            max_message: 65536,
            rate: 50,
            token_secrets: Vec::new(),
            replay_messages: 256,
            replay_bytes: 256 * 1024,
            sfu_threshold: Some(5),
            sfu_room_capacity: 100,
            line_users: Vec::new(),
            call_room_capacity: 4,
            records: false,
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send `text` on `conn`.
    Send { conn: ConnId, text: Arc<str> },
    /// Close `conn` (after sending what came before) with this WebSocket close code.
    Close { conn: ConnId, code: u16 },
    /// Hand `event` to the service participant on `conn`.
    Event { conn: ConnId, event: ServiceEvent },
    /// `room` needs a service participant of `kind`: the SFU once per room lifetime,
    /// when the room turned SFU; the calls peer ([`crate::CALLS`]) whenever a line
    /// (`@user`) has a client member and no calls peer (asked for again if it leaves
    /// while devices remain).
    ServiceWanted { room: Arc<str>, kind: &'static str },
    /// Store (`value`) or delete (None) the record `key` of `room` (with
    /// [`HubConfig::records`]): a member's, or the room's own (`$room`).
    Record {
        room: Arc<str>,
        key: Arc<str>,
        value: Option<Arc<str>>,
    },
    /// `room` ended (its last member left): delete its records and ownership.
    RoomGone { room: Arc<str> },
}

/// What became of a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// Handled here; the outputs say the rest.
    Handled,
    /// A `join` or `resume` of a connection without a session, for a room of another
    /// shard: move the connection there ([`Hub::detach`], [`Hub::attach`]) and hand it
    /// the same message with [`Hub::receive_moved`]. Nothing was output.
    OtherShard(usize),
}

/// Counters for metrics.
#[derive(Debug, Default, Clone)]
pub struct HubStats {
    pub messages_in: u64,
    pub messages_relayed: u64,
    pub joins: u64,
    pub resumes: u64,
    pub errors: [u64; ErrorCode::ALL.len()],
}

impl HubStats {
    /// Add another shard's counters.
    pub fn add(&mut self, other: &HubStats) {
        self.messages_in += other.messages_in;
        self.messages_relayed += other.messages_relayed;
        self.joins += other.joins;
        self.resumes += other.resumes;
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
    }
}

pub(crate) struct Conn {
    pub(crate) session: Option<SessionKey>,
    pub(crate) rate: RateLimiter,
    /// A service participant rather than a transport.
    pub(crate) service: bool,
}

/// A connection without a session taken out of one shard, to be put into another.
pub struct DetachedConn(Conn);

#[derive(Default)]
pub(crate) struct Room {
    pub(crate) members: Vec<SessionKey>,
    /// What its creator asked for.
    pub(crate) topology: crate::mode::Topology,
    /// In SFU mode (for the rest of its lifetime).
    pub(crate) sfu: bool,
    /// A line whose calls peer was asked for (or is in it).
    pub(crate) calls_wanted: bool,
}

/// A message numbered per recipient and kept for replay.
pub(crate) enum Notice<'a> {
    PeerJoined(&'a PeerInfo),
    PeerLeft(&'a Arc<str>, LeaveReason),
    Relay {
        kind: RelayKind,
        from: &'a Arc<str>,
        payload: &'a RawValue,
    },
}

impl Notice<'_> {
    fn message(&self, seq: u64) -> ServerMessage<'_> {
        match *self {
            Notice::PeerJoined(peer) => ServerMessage::PeerJoined { seq, peer },
            Notice::PeerLeft(id, reason) => ServerMessage::PeerLeft {
                seq,
                peer_id: id,
                reason,
            },
            Notice::Relay {
                kind,
                from,
                payload,
            } => ServerMessage::relay(kind, seq, from, payload),
        }
    }

    fn event(&self) -> ServiceEvent {
        match *self {
            Notice::PeerJoined(peer) => ServiceEvent::PeerJoined(peer.clone()),
            Notice::PeerLeft(id, reason) => ServiceEvent::PeerLeft {
                peer: id.clone(),
                reason,
            },
            Notice::Relay {
                kind,
                from,
                payload,
            } => ServiceEvent::Relay {
                from: from.clone(),
                kind,
                payload: payload.to_owned(),
            },
        }
    }
}

/// The signaling state of one server, or of one shard of it.
pub struct Hub {
    pub(crate) cfg: HubConfig,
    pub(crate) shard: ShardId,
    pub(crate) conns: HashMap<ConnId, Conn>,
    /// Boxed: a `Session` is ~200 bytes and a hash table keeps up to half its slots
    /// empty, so inline sessions would cost up to twice that per idle member.
    pub(crate) sessions: HashMap<SessionKey, Box<Session>>,
    pub(crate) by_peer: HashMap<Arc<str>, SessionKey>,
    pub(crate) by_resume: HashMap<Box<str>, SessionKey>,
    pub(crate) rooms: HashMap<Arc<str>, Room>,
    pub(crate) suspended: HashSet<SessionKey>,
    pub(crate) next_key: SessionKey,
    /// The time of the latest input, for events the hub causes itself.
    pub(crate) now: Instant,
    pub(crate) out: Vec<Output>,
    pub(crate) stats: HubStats,
    /// Someone serves SFU rooms (see [`Hub::set_sfu_available`]).
    pub(crate) sfu_available: bool,
}

impl Hub {
    /// A hub that is the server's only shard.
    pub fn new(cfg: HubConfig, now: Instant) -> Hub {
        Hub::new_shard(cfg, now, ShardId::SOLE)
    }

    /// Shard `shard.index` of `shard.count`.
    pub fn new_shard(cfg: HubConfig, now: Instant, shard: ShardId) -> Hub {
        Hub {
            cfg,
            shard,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            by_resume: HashMap::new(),
            rooms: HashMap::new(),
            suspended: HashSet::new(),
            next_key: 1,
            now,
            out: Vec::new(),
            stats: HubStats::default(),
            sfu_available: true,
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Apply new settings (reload); existing sessions keep their grants. Whether the hub
    /// writes records stays as it was: a node does not leave its cluster on a reload, and
    /// records half written would outlive their members in the store.
    pub fn set_config(&mut self, cfg: HubConfig) {
        let records = self.cfg.records;
        self.cfg = cfg;
        self.cfg.records = records;
    }

    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// (connections, sessions, suspended sessions, rooms)
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.conns.len(),
            self.sessions.len(),
            self.suspended.len(),
            self.rooms.len(),
        )
    }

    /// Everything for the driver to do, in order.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// Whether there is output to drain.
    pub fn has_outputs(&self) -> bool {
        !self.out.is_empty()
    }

    /// A transport opened.
    pub fn connect(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        self.conns.insert(
            conn,
            Conn {
                session: None,
                rate: RateLimiter::new(self.cfg.rate, now),
                service: false,
            },
        );
    }

    /// Whether `conn` has a session (is in a room).
    pub fn has_session(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.session.is_some())
    }

    /// Take out a connection without a session (its rate limit goes with it), to move
    /// it to another shard; None when unknown or in a room.
    pub fn detach(&mut self, conn: ConnId) -> Option<DetachedConn> {
        if self.conns.get(&conn)?.session.is_some() {
            return None;
        }
        let c = self.conns.remove(&conn)?;
        shrink_sparse(&mut self.conns);
        Some(DetachedConn(c))
    }

    /// Take in a connection detached from another shard.
    pub fn attach(&mut self, conn: ConnId, detached: DetachedConn) {
        self.conns.insert(conn, detached.0);
    }

    /// A transport was lost or closed: its session (if any) is suspended for the grace
    /// period. A service participant has nothing to resume: its session ends.
    pub fn disconnect(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        shrink_sparse(&mut self.conns);
        let Some(key) = c.session else { return };
        if c.service {
            self.end_session(key, LeaveReason::Left);
        } else if let Some(s) = self.sessions.get_mut(&key) {
            s.conn = None;
            s.suspended_at = Some(now);
            self.suspended.insert(key);
        }
    }

    /// An error the driver detects itself (the Origin check, a frame over its limit, a
    /// binary frame): sent like any other; `fatal` closes the connection.
    pub fn report(&mut self, conn: ConnId, code: ErrorCode, reason: &str, fatal: bool) {
        self.error(conn, code, reason, None, fatal);
    }

    /// When [`Hub::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.suspended
            .iter()
            .filter_map(|k| self.sessions.get(k)?.suspended_at)
            .min()
            .map(|t| t + self.cfg.grace)
    }

    /// End sessions whose grace period ran out.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let grace = self.cfg.grace;
        let expired: Vec<SessionKey> = self
            .suspended
            .iter()
            .copied()
            .filter(|k| {
                self.sessions
                    .get(k)
                    .and_then(|s| s.suspended_at)
                    .map_or(true, |t| now.saturating_duration_since(t) >= grace)
            })
            .collect();
        for key in expired {
            self.end_session(key, LeaveReason::Timeout);
        }
    }

    /// Tell every connection the server stops, and close them.
    pub fn shutdown(&mut self) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.error(
                conn,
                ErrorCode::ServerShutdown,
                "the server is stopping",
                None,
                true,
            );
        }
    }

    /// Send a message that is not numbered (an answer to the client's own message).
    pub(crate) fn push(&mut self, conn: ConnId, msg: &ServerMessage<'_>) {
        let text = msg.render();
        self.out.push(Output::Send { conn, text });
    }

    pub(crate) fn is_service(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.service)
    }

    pub(crate) fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        reason: &str,
        reference: Option<&RawValue>,
        fatal: bool,
    ) {
        self.stats.errors[code.index()] += 1;
        if self.is_service(conn) {
            let event = ServiceEvent::Error {
                code,
                reason: reason.to_string(),
                fatal,
            };
            self.out.push(Output::Event { conn, event });
        } else {
            let msg = ServerMessage::Error {
                code,
                reason,
                reference,
                fatal,
            };
            self.push(conn, &msg);
        }
        if fatal {
            let close = if code == ErrorCode::TooLarge {
                1009
            } else {
                1008
            };
            self.out.push(Output::Close { conn, code: close });
            self.disconnect_now(conn);
        }
    }

    /// Forget a connection the hub itself closes; its session is suspended as on loss.
    fn disconnect_now(&mut self, conn: ConnId) {
        self.disconnect(conn, self.now);
    }

    /// Number, buffer and (when attached) send a message to a session. A suspended session
    /// whose buffer overflows is ended: it could no longer resume without loss. A service
    /// participant gets it as a typed event, unnumbered.
    pub(crate) fn deliver(&mut self, key: SessionKey, notice: &Notice<'_>) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.service {
            if let Some(conn) = s.conn {
                let event = notice.event();
                self.out.push(Output::Event { conn, event });
            }
            return;
        }
        let text = s.replay.push(|seq| notice.message(seq).render());
        match s.conn {
            Some(conn) => self.out.push(Output::Send { conn, text }),
            None if s.replay.lost_unseen() => self.end_session(key, LeaveReason::Timeout),
            None => {}
        }
    }

    pub(crate) fn end_session(&mut self, key: SessionKey, reason: LeaveReason) {
        let Some(s) = self.sessions.remove(&key) else {
            return;
        };
        self.suspended.remove(&key);
        self.by_peer.remove(&s.peer.id);
        if !s.service {
            self.by_resume.remove(&s.resume);
        }
        shrink_sparse(&mut self.sessions);
        shrink_sparse(&mut self.by_peer);
        shrink_sparse(&mut self.by_resume);
        if let Some(conn) = s.conn {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = None;
            }
        }
        let mut others = Vec::new();
        if let Some(room) = self.rooms.get_mut(&s.room) {
            room.members.retain(|k| *k != key);
            others.clone_from(&room.members);
            let emptied = room.members.is_empty();
            if !s.service || emptied {
                self.record_gone(&s.room, &s.peer.id, emptied);
            }
            if emptied {
                self.rooms.remove(&s.room);
                shrink_sparse(&mut self.rooms);
            } else if s.peer.service.as_deref() == Some(crate::mode::CALLS) {
                // The calls peer left a line (it thought it empty, or was too slow):
                // whoever is still there must stay reachable.
                if let Some(r) = self.rooms.get_mut(&s.room) {
                    r.calls_wanted = false;
                }
                self.want_calls(&s.room);
            }
        }
        for other in others {
            self.deliver(other, &Notice::PeerLeft(&s.peer.id, reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a burst of 2,000 sessions that all but three leave, the hub's tables are
    /// small again (a hash map never shrinks by itself).
    #[test]
    fn tables_shrink_after_a_burst_of_sessions_leaves() {
        let mut hub = Hub::new(HubConfig::default(), Instant::now());
        let now = Instant::now();
        let burst = 2000u64;
        for i in 0..burst {
            hub.connect(i, now);
            let room = format!("room-{}", i % 500);
            let got = hub.receive(
                i,
                &format!(r#"{{"type":"join","room":"{room}","name":"p{i}"}}"#),
                now,
                0,
            );
            assert_eq!(got, Received::Handled);
        }
        assert_eq!(hub.sessions.len(), burst as usize, "every session joined");
        let at_peak = hub.sessions.capacity();
        for i in 0..burst - 3 {
            let _ = hub.receive(i, r#"{"type":"leave"}"#, now, 0);
            hub.disconnect(i, now);
        }
        hub.drain_outputs();
        assert_eq!(hub.sessions.len(), 3, "three sessions stay");
        for (name, cap) in [
            ("sessions", hub.sessions.capacity()),
            ("by_peer", hub.by_peer.capacity()),
            ("by_resume", hub.by_resume.capacity()),
            ("conns", hub.conns.capacity()),
            ("rooms", hub.rooms.capacity()),
        ] {
            assert!(
                cap <= 128,
                "{name} still holds {cap} slots (peak {at_peak})"
            );
        }
    }
}
