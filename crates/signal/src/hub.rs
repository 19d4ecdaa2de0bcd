//! The hub: connections, sessions and rooms, as a state machine fed client messages,
//! transport events and time, returning what to send to which connection.

use crate::limits::{RateLimiter, Verdict};
use crate::protocol::{
    error_text, escapes_are_unicode, is_object_text, json_str, valid_reference, Envelope,
    ErrorCode, Kind, RefOnly,
};
use crate::session::Session;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_util::shrink_sparse;

/// A transport connection, numbered by the driver.
pub type ConnId = u64;
pub(crate) type SessionKey = u64;

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
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `text` on `conn`.
    Send { conn: ConnId, text: Arc<str> },
    /// Close `conn` (after sending what came before) with this WebSocket close code.
    Close { conn: ConnId, code: u16 },
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

pub(crate) struct Conn {
    pub(crate) session: Option<SessionKey>,
    rate: RateLimiter,
}

#[derive(Default)]
pub(crate) struct Room {
    pub(crate) members: Vec<SessionKey>,
}

/// The signaling state of one server.
pub struct Hub {
    pub(crate) cfg: HubConfig,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) sessions: HashMap<SessionKey, Session>,
    pub(crate) by_peer: HashMap<Arc<str>, SessionKey>,
    pub(crate) by_resume: HashMap<String, SessionKey>,
    pub(crate) rooms: HashMap<Arc<str>, Room>,
    pub(crate) suspended: HashSet<SessionKey>,
    pub(crate) next_key: SessionKey,
    /// The time of the latest input, for events the hub causes itself.
    pub(crate) now: Instant,
    pub(crate) out: Vec<Output>,
    pub(crate) stats: HubStats,
}

/// Why a session ends, as reported in `peer-left`.
#[derive(Clone, Copy)]
pub(crate) enum LeaveReason {
    Left,
    Timeout,
    Kicked,
}

impl LeaveReason {
    fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Kicked => "kicked",
        }
    }
}

impl Hub {
    pub fn new(cfg: HubConfig) -> Hub {
        Hub {
            cfg,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            by_resume: HashMap::new(),
            rooms: HashMap::new(),
            suspended: HashSet::new(),
            next_key: 1,
            now: Instant::now(),
            out: Vec::new(),
            stats: HubStats::default(),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// Apply new settings (reload); existing sessions keep their grants.
    pub fn set_config(&mut self, cfg: HubConfig) {
        self.cfg = cfg;
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

    /// A transport opened.
    pub fn connect(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        self.conns.insert(
            conn,
            Conn {
                session: None,
                rate: RateLimiter::new(self.cfg.rate, now),
            },
        );
    }

    /// A transport was lost or closed: its session (if any) is suspended for the grace period.
    pub fn disconnect(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        shrink_sparse(&mut self.conns);
        if let Some(key) = c.session {
            if let Some(s) = self.sessions.get_mut(&key) {
                s.conn = None;
                s.suspended_at = Some(now);
                self.suspended.insert(key);
            }
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

    pub(crate) fn push(&mut self, conn: ConnId, text: impl Into<Arc<str>>) {
        self.out.push(Output::Send {
            conn,
            text: text.into(),
        });
    }

    pub(crate) fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        reason: &str,
        reference: Option<&str>,
        fatal: bool,
    ) {
        self.stats.errors[code.index()] += 1;
        self.push(conn, error_text(code, reason, reference, fatal));
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

    /// One client message (a text frame or POST body). `unix_now` checks token expiry.
    pub fn receive(&mut self, conn: ConnId, text: &str, now: Instant, unix_now: u64) {
        self.now = now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.stats.messages_in += 1;
        match c.rate.check(now) {
            Verdict::Accept => {}
            Verdict::Drop => {
                let reason = format!(
                    "more than {} messages per second; message dropped",
                    self.cfg.rate
                );
                return self.error(conn, ErrorCode::RateLimited, &reason, None, false);
            }
            Verdict::Disconnect => {
                let reason = format!("far more than {} messages per second", self.cfg.rate);
                return self.error(conn, ErrorCode::RateLimited, &reason, None, true);
            }
        }
        if text.len() > self.cfg.max_message {
            let reason = format!(
                "message of {} bytes is over the limit of {}; dropped",
                text.len(),
                self.cfg.max_message
            );
            return self.error(conn, ErrorCode::TooLarge, &reason, None, false);
        }
        if !is_object_text(text) {
            let reason = "not a protocol message: not a JSON object";
            return self.error(conn, ErrorCode::BadMessage, reason, None, false);
        }
        let env: Envelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                let reason = format!("not a protocol message: {e}");
                let reference = serde_json::from_str::<RefOnly>(text)
                    .ok()
                    .and_then(|r| valid_reference(r.reference));
                return self.error(conn, ErrorCode::BadMessage, &reason, reference, false);
            }
        };
        let reference = valid_reference(env.reference);
        // Raw values are relayed (and `id` echoed) as they came: they must be Unicode.
        let raw_fields = [env.sdp, env.candidate, env.data, env.id];
        if !raw_fields
            .iter()
            .flatten()
            .all(|r| escapes_are_unicode(r.get()))
        {
            let reason = "not a protocol message: a string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF)";
            return self.error(conn, ErrorCode::BadMessage, reason, reference, false);
        }
        let Some(kind) = Kind::from_wire(&env.kind) else {
            let reason = format!("unknown message type {}", json_str(&env.kind));
            return self.error(conn, ErrorCode::BadMessage, &reason, reference, false);
        };
        if let Err((code, reason)) = self.dispatch(conn, kind, &env, unix_now) {
            self.error(conn, code, &reason, reference, false);
        }
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        kind: Kind,
        env: &Envelope,
        unix_now: u64,
    ) -> Result<(), (ErrorCode, String)> {
        let session = self.conns.get(&conn).and_then(|c| c.session);
        match (kind, session) {
            (Kind::Ping, _) => {
                let id = env.id.map(|r| r.get()).unwrap_or("null");
                self.push(conn, format!(r#"{{"type":"pong","id":{id}}}"#));
                Ok(())
            }
            (Kind::Join | Kind::Resume, Some(_)) => Err((
                ErrorCode::AlreadyJoined,
                "this connection already has a session; leave first".into(),
            )),
            (Kind::Join, None) => self.join(conn, env, unix_now),
            (Kind::Resume, None) => self.resume(conn, env),
            (_, None) => Err((ErrorCode::NotJoined, format!("{} before join", kind.wire()))),
            (Kind::Ack, Some(key)) => {
                let seq = env
                    .seq
                    .ok_or((ErrorCode::BadMessage, "ack needs a numeric seq".to_string()))?;
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.replay.ack(seq);
                }
                Ok(())
            }
            (Kind::Leave, Some(key)) => {
                self.end_session(key, LeaveReason::Left);
                self.push(conn, r#"{"type":"left"}"#);
                Ok(())
            }
            (Kind::Kick, Some(key)) => self.kick(key, env),
            (Kind::Offer | Kind::Answer | Kind::Candidate | Kind::Message, Some(key)) => {
                self.relay(key, kind, env)
            }
        }
    }

    /// The session behind `key`, which a connection points at while it is attached.
    pub(crate) fn session(&self, key: SessionKey) -> Result<&Session, (ErrorCode, String)> {
        self.sessions
            .get(&key)
            .ok_or((ErrorCode::NotJoined, "no session".to_string()))
    }

    fn relay(
        &mut self,
        key: SessionKey,
        kind: Kind,
        env: &Envelope,
    ) -> Result<(), (ErrorCode, String)> {
        let s = self.session(key)?;
        let allowed = match kind {
            Kind::Offer => s.grants.publish,
            Kind::Answer => s.grants.subscribe,
            Kind::Candidate => s.grants.subscribe || s.grants.publish,
            _ => true,
        };
        if !allowed {
            return Err((
                ErrorCode::Forbidden,
                format!("{} is not allowed by this token's grants", kind.wire()),
            ));
        }
        let (field, raw) = match kind {
            Kind::Offer | Kind::Answer => ("sdp", env.sdp),
            Kind::Candidate => ("candidate", env.candidate),
            _ => ("data", env.data),
        };
        let raw = raw.map(|r| r.get()).ok_or_else(|| {
            (
                ErrorCode::BadMessage,
                format!("{} needs {field}", kind.wire()),
            )
        })?;
        let shape_ok = match kind {
            Kind::Offer | Kind::Answer => raw.starts_with('"'),
            Kind::Candidate => raw.starts_with('{') || raw == "null",
            _ => true,
        };
        if !shape_ok {
            return Err((
                ErrorCode::BadMessage,
                format!("{} has an ill-typed {field}", kind.wire()),
            ));
        }
        let room = s.room.clone();
        let from = s.peer_id.clone();
        let target = self.member(&room, env.to.as_deref())?;
        if kind == Kind::Offer
            && !self
                .sessions
                .get(&target)
                .is_some_and(|t| t.grants.subscribe)
        {
            return Err((
                ErrorCode::Forbidden,
                "that peer's token does not allow it to receive offers (no subscribe grant)".into(),
            ));
        }
        let wire = kind.wire();
        self.stats.messages_relayed += 1;
        self.deliver(target, |seq| {
            let mut t = String::with_capacity(raw.len() + from.len() + 48);
            let _ = write!(
                t,
                r#"{{"type":"{wire}","seq":{seq},"from":"{from}","{field}":{raw}}}"#
            );
            t
        });
        Ok(())
    }

    /// Number, buffer and (when attached) send a message to a session. A suspended session
    /// whose buffer overflows is ended: it could no longer resume without loss.
    pub(crate) fn deliver(&mut self, key: SessionKey, build: impl FnOnce(u64) -> String) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let (_, text) = s.replay.push(build);
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
        self.by_peer.remove(&s.peer_id);
        self.by_resume.remove(&s.resume);
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
            if room.members.is_empty() {
                self.rooms.remove(&s.room);
                shrink_sparse(&mut self.rooms);
            }
        }
        let (id, why) = (json_str(&s.peer_id), reason.as_str());
        for other in others {
            self.deliver(other, |seq| {
                format!(r#"{{"type":"peer-left","seq":{seq},"peerId":{id},"reason":"{why}"}}"#)
            });
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
        let mut hub = Hub::new(HubConfig::default());
        let now = Instant::now();
        let burst = 2000u64;
        for i in 0..burst {
            hub.connect(i, now);
            let room = format!("room-{}", i % 500);
            hub.receive(
                i,
                &format!(r#"{{"type":"join","room":"{room}","name":"p{i}"}}"#),
                now,
                0,
            );
        }
        assert_eq!(hub.sessions.len(), burst as usize, "every session joined");
        let at_peak = hub.sessions.capacity();
        for i in 0..burst - 3 {
            hub.receive(i, r#"{"type":"leave"}"#, now, 0);
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
