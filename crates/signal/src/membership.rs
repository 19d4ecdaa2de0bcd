//! Admission to rooms: `join` (room and name checks, room tokens, capacity), `resume`
//! (taking a session back on a new connection, with replay) and `kick`.

use crate::hub::{ConnId, Hub, Notice, Output, SessionKey};
use crate::mode::{mode_name, Topology};
use crate::protocol::{
    is_call_room, json_str, line_user, same_secret, valid_name, valid_room, Envelope, ErrorCode,
    PROTOCOL_VERSION,
};
use crate::session::{Replay, Session};
use crate::token::{self, Grants, TokenError};
use crate::wire::{LeaveReason, PeerInfo, ServerMessage};
use std::sync::Arc;

/// Who asks to be admitted to a room.
pub(crate) struct Joiner<'a> {
    pub name: &'a str,
    pub identity: Option<&'a str>,
    pub grants: Grants,
    /// A service participant, with its kind (`""` for none); None for a client.
    pub service: Option<&'a str>,
    /// What it asks for, should it create the room.
    pub topology: Topology,
}

/// A session just admitted to a room.
pub(crate) struct Admitted {
    pub key: SessionKey,
    pub room: Arc<str>,
    pub peer_id: Arc<str>,
    /// The members that were already there.
    pub peers: Vec<PeerInfo>,
}

impl Hub {
    pub(crate) fn join(
        &mut self,
        conn: ConnId,
        env: &Envelope,
        unix_now: u64,
    ) -> Result<(), (ErrorCode, String)> {
        let room = env.room.as_deref().unwrap_or("");
        let name = env.name.as_deref().unwrap_or("guest");
        check_names(room, name)?;
        let topology = match env.topology.as_deref() {
            None => Topology::Auto,
            Some(t) => Topology::from_wire(t).ok_or_else(|| {
                (
                    ErrorCode::BadMessage,
                    format!("topology {} is not auto, sfu or mesh", json_str(t)),
                )
            })?,
        };
        let line = line_user(room);
        let (identity, grants) = if self.cfg.token_secrets.is_empty() {
            if let Some(user) = line {
                self.check_line_secret(user, env.token.as_deref())?;
            }
            (None, Grants::DEFAULT)
        } else {
            let Some(tok) = env.token.as_deref() else {
                return Err((
                    ErrorCode::Unauthorized,
                    "this server needs a room token".into(),
                ));
            };
            match token::verify(&self.cfg.token_secrets, tok, room, unix_now) {
                Ok(a) => {
                    check_reserved(room, line, &a)?;
                    (a.identity, a.grants)
                }
                Err(TokenError::Expired) => {
                    return Err((ErrorCode::TokenExpired, "the room token has expired".into()))
                }
                Err(e) => return Err((ErrorCode::Unauthorized, e.to_string())),
            }
        };
        let who = Joiner {
            name,
            identity: identity.as_deref(),
            grants,
            service: None,
            topology,
        };
        let a = self.admit(conn, room, &who)?;
        let resume = self.sessions.get(&a.key).map(|s| s.resume.clone());
        let joined = ServerMessage::Joined {
            protocol: PROTOCOL_VERSION,
            room: &a.room,
            peer_id: &a.peer_id,
            name,
            resume: resume.as_deref().unwrap_or(""),
            grace: self.cfg.grace.as_secs(),
            peers: &a.peers,
            grants: &grants.names(),
            topology: mode_name(self.room_is_sfu(&a.room)),
        };
        self.push(conn, &joined);
        self.announce(a.key);
        if line.is_some() {
            self.want_calls(&a.room);
        }
        Ok(())
    }

    /// Without room tokens, a line of a configured user (`line_users`) needs its secret
    /// in the join's `token`; with no users configured, lines are open.
    fn check_line_secret(
        &self,
        user: &str,
        token: Option<&str>,
    ) -> Result<(), (ErrorCode, String)> {
        let users = &self.cfg.line_users;
        if users.is_empty() {
            return Ok(());
        }
        let given = token.unwrap_or("").as_bytes();
        // The secret is compared in constant time (user names are no secret).
        let ok = users.iter().fold(false, |ok, (u, secret)| {
            ok | (u == user && same_secret(secret, given))
        });
        if ok {
            Ok(())
        } else {
            Err((
                ErrorCode::Unauthorized,
                format!("line @{user} needs that user's secret as token"),
            ))
        }
    }

    /// Put a new session for `conn` into `room` under the room rules (names, capacity,
    /// topology); the caller answers the joiner, then [`Hub::announce`]s it.
    pub(crate) fn admit(
        &mut self,
        conn: ConnId,
        room: &str,
        who: &Joiner<'_>,
    ) -> Result<Admitted, (ErrorCode, String)> {
        let Joiner {
            name,
            identity,
            grants,
            topology,
            ..
        } = *who;
        let service = who.service.is_some();
        check_names(room, name)?;
        // A line carries only signaling and a direct call is a small mesh, whoever
        // creates them (the calls peer creates call rooms).
        let topology = if line_user(room).is_some() || is_call_room(room) {
            Topology::Mesh
        } else {
            topology
        };
        let plan = self.plan_join(room, topology, service)?;
        let room_key: Arc<str> = match self.rooms.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => Arc::from(room),
        };
        let key = self.next_key;
        self.next_key += 1;
        let peer_id: Arc<str> = loop {
            let id = self.shard.peer_id();
            if !self.by_peer.contains_key(id.as_str()) {
                break Arc::from(id);
            }
        };
        let resume = if service {
            Box::from("")
        } else {
            crate::shard::resume_token(room)
        };
        let (max_messages, max_bytes) = if service {
            (0, 0)
        } else {
            (self.cfg.replay_messages, self.cfg.replay_bytes)
        };
        let session = Session {
            peer: PeerInfo {
                id: peer_id.clone(),
                name: Arc::from(name),
                identity: identity.map(Arc::from),
                service: who.service.filter(|k| !k.is_empty()).map(Arc::from),
            },
            room: room_key.clone(),
            grants,
            conn: Some(conn),
            service,
            resume: resume.clone(),
            suspended_at: None,
            replay: Replay::new(max_messages, max_bytes),
        };
        let created = !self.rooms.contains_key(&room_key);
        let room_entry = self.rooms.entry(room_key.clone()).or_default();
        let others = room_entry.members.clone();
        room_entry.members.push(key);
        let peers: Vec<PeerInfo> = others
            .iter()
            .filter_map(|k| self.sessions.get(k).map(|s| s.peer.clone()))
            .collect();
        self.sessions.insert(key, Box::new(session));
        self.by_peer.insert(peer_id.clone(), key);
        if !service {
            self.by_resume.insert(resume, key);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(key);
        }
        self.stats.joins += 1;
        self.settle_join(&room_key, key, topology, &plan);
        if created || plan.turns_sfu {
            self.record_room(&room_key);
        }
        self.record_member(key);
        Ok(Admitted {
            key,
            room: room_key,
            peer_id,
            peers,
        })
    }

    /// Tell the other members of its room that session `key` joined.
    pub(crate) fn announce(&mut self, key: SessionKey) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let peer = s.peer.clone();
        let others: Vec<SessionKey> = self
            .rooms
            .get(&s.room)
            .map(|r| r.members.iter().copied().filter(|k| *k != key).collect())
            .unwrap_or_default();
        for other in others {
            self.deliver(other, &Notice::PeerJoined(&peer));
        }
    }

    pub(crate) fn resume(
        &mut self,
        conn: ConnId,
        env: &Envelope,
    ) -> Result<(), (ErrorCode, String)> {
        let token = env.token.as_deref().unwrap_or("");
        let bad_resume = || {
            (
                ErrorCode::BadResume,
                "unknown or expired resume token; join again".to_string(),
            )
        };
        let key = *self.by_resume.get(token).ok_or_else(bad_resume)?;
        let (grace, now) = (self.cfg.grace, self.now);
        let expired = self.sessions.get(&key).map_or(true, |s| {
            s.suspended_at
                .is_some_and(|t| now.saturating_duration_since(t) >= grace)
        });
        if expired {
            // The grace period is over but the timer has not run yet: end it as the timer would.
            self.by_resume.remove(token);
            self.end_session(key, LeaveReason::Timeout);
            return Err(bad_resume());
        }
        self.by_resume.remove(token);
        let last_seq = env.last_seq.unwrap_or(0);
        let Some(room_name) = self.sessions.get(&key).map(|s| s.room.clone()) else {
            return Err((ErrorCode::BadResume, "session ended".into()));
        };
        let fresh = crate::shard::resume_token(&room_name);
        self.by_resume.insert(fresh.clone(), key);
        let Some(s) = self.sessions.get_mut(&key) else {
            return Err((ErrorCode::BadResume, "session ended".into()));
        };
        let old_conn = s.conn.replace(conn);
        s.suspended_at = None;
        s.resume = fresh.clone();
        let restored = s.replay.rebase_restored(last_seq);
        let gap = s.replay.ack(last_seq) || restored;
        let replay: Vec<Arc<str>> = s.replay.after(last_seq).collect();
        let (peer_id, room) = (s.peer.id.clone(), s.room.clone());
        self.suspended.remove(&key);
        if let Some(old) = old_conn {
            // The session moves to the new connection; the old one is closed, not suspended.
            if let Some(c) = self.conns.get_mut(&old) {
                c.session = None;
            }
            self.out.push(Output::Close {
                conn: old,
                code: 1000,
            });
            self.conns.remove(&old);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(key);
        }
        let peers: Vec<PeerInfo> = self
            .rooms
            .get(&room)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|k| **k != key)
                    .filter_map(|k| self.sessions.get(k).map(|s| s.peer.clone()))
                    .collect()
            })
            .unwrap_or_default();
        self.stats.resumes += 1;
        let resumed = ServerMessage::Resumed {
            protocol: PROTOCOL_VERSION,
            room: &room,
            peer_id: &peer_id,
            resume: &fresh,
            peers: &peers,
            gap,
        };
        self.push(conn, &resumed);
        for text in replay {
            self.out.push(Output::Send { conn, text });
        }
        self.record_member(key);
        Ok(())
    }

    pub(crate) fn kick(
        &mut self,
        key: SessionKey,
        env: &Envelope,
    ) -> Result<(), (ErrorCode, String)> {
        let s = self.session(key)?;
        if !s.grants.admin {
            return Err((ErrorCode::Forbidden, "kick needs the admin grant".into()));
        }
        let target = self.member(&s.room.clone(), env.peer.as_deref())?;
        let conn = self.sessions.get(&target).and_then(|t| t.conn);
        // The session ends first, so that closing its connection has nothing to suspend
        // (or, for a service participant, to end a second time with another reason).
        self.end_session(target, LeaveReason::Kicked);
        if let Some(conn) = conn {
            self.error(
                conn,
                ErrorCode::Kicked,
                "removed from the room by an admin",
                None,
                true,
            );
        }
        Ok(())
    }

    /// The grants of peer `id` of `room` (None when it is no member of it).
    pub fn member_grants(&self, room: &Arc<str>, id: &str) -> Option<Grants> {
        let key = self.member(room, Some(id)).ok()?;
        self.sessions.get(&key).map(|s| s.grants)
    }

    /// The session of peer `id` in `room`; peers of other rooms are reported as unknown.
    pub(crate) fn member(
        &self,
        room: &Arc<str>,
        id: Option<&str>,
    ) -> Result<SessionKey, (ErrorCode, String)> {
        let id = id.ok_or((ErrorCode::BadMessage, "missing peer id".to_string()))?;
        self.by_peer
            .get(id)
            .copied()
            .filter(|k| self.sessions.get(k).is_some_and(|t| &t.room == room))
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownPeer,
                    format!("no peer {} in this room", json_str(id)),
                )
            })
    }
}

/// With room tokens: a line admits only its user (the token's `sub`), and a call room
/// only a token for exactly that room (which the server mints for the invited).
fn check_reserved(
    room: &str,
    line: Option<&str>,
    a: &token::Admission,
) -> Result<(), (ErrorCode, String)> {
    if let Some(user) = line {
        if a.identity.as_deref() != Some(user) {
            return Err((
                ErrorCode::Forbidden,
                format!("line @{user} is only for the identity {}", json_str(user)),
            ));
        }
    }
    if is_call_room(room) && a.room != room {
        return Err((
            ErrorCode::Forbidden,
            "a call room needs a token for that very room".into(),
        ));
    }
    Ok(())
}

/// Room names and display names as docs/signaling.md allows them.
fn check_names(room: &str, name: &str) -> Result<(), (ErrorCode, String)> {
    if !valid_room(room) {
        return Err((
            ErrorCode::BadRoom,
            "room must be 1-64 characters of A-Z a-z 0-9 _ - . (or a line, @user)".into(),
        ));
    }
    if !valid_name(name) {
        return Err((
            ErrorCode::BadRoom,
            "name must be 1-64 characters without control characters".into(),
        ));
    }
    Ok(())
}
