//! Admission to rooms: `join` (room and name checks, room tokens, capacity), `resume`
//! (taking a session back on a new connection, with replay) and `kick`.

use crate::hub::{ConnId, Hub, LeaveReason, Output, SessionKey};
use crate::protocol::{json_str, valid_name, valid_room, Envelope, ErrorCode, PROTOCOL_VERSION};
use crate::session::{Replay, Session};
use crate::token::{self, Grants, TokenError};
use std::sync::Arc;
use switchboard_util::random_hex;

impl Hub {
    pub(crate) fn join(
        &mut self,
        conn: ConnId,
        env: &Envelope,
        unix_now: u64,
    ) -> Result<(), (ErrorCode, String)> {
        let room = env.room.as_deref().unwrap_or("");
        if !valid_room(room) {
            return Err((
                ErrorCode::BadRoom,
                "room must be 1-64 characters of A-Z a-z 0-9 _ - .".into(),
            ));
        }
        let name = env.name.as_deref().unwrap_or("guest");
        if !valid_name(name) {
            return Err((
                ErrorCode::BadRoom,
                "name must be 1-64 characters without control characters".into(),
            ));
        }
        let (identity, grants) = if self.cfg.token_secrets.is_empty() {
            (None, Grants::DEFAULT)
        } else {
            let Some(tok) = env.token.as_deref() else {
                return Err((
                    ErrorCode::Unauthorized,
                    "this server needs a room token".into(),
                ));
            };
            match token::verify(&self.cfg.token_secrets, tok, room, unix_now) {
                Ok(a) => (a.identity, a.grants),
                Err(TokenError::Expired) => {
                    return Err((ErrorCode::TokenExpired, "the room token has expired".into()))
                }
                Err(e) => return Err((ErrorCode::Unauthorized, e.to_string())),
            }
        };
        let members = self.rooms.get(room).map_or(0, |r| r.members.len());
        if members >= self.cfg.room_capacity {
            return Err((
                ErrorCode::RoomFull,
                format!(
                    "room {room} is full ({} participants)",
                    self.cfg.room_capacity
                ),
            ));
        }
        let room_key: Arc<str> = match self.rooms.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => Arc::from(room),
        };
        let key = self.next_key;
        self.next_key += 1;
        let peer_id: Arc<str> = Arc::from(format!("p{}", random_hex(8)));
        let resume = random_hex(16);
        let session = Session {
            peer_id: peer_id.clone(),
            name: name.to_string(),
            identity,
            room: room_key.clone(),
            grants,
            conn: Some(conn),
            resume: resume.clone(),
            suspended_at: None,
            replay: Replay::new(self.cfg.replay_messages, self.cfg.replay_bytes),
        };
        let peer_json = session.peer_json();
        let grants_json = serde_json::to_string(&grants.names()).unwrap_or_default();
        let room_entry = self.rooms.entry(room_key.clone()).or_default();
        let others = room_entry.members.clone();
        room_entry.members.push(key);
        let peers: Vec<String> = others
            .iter()
            .filter_map(|k| self.sessions.get(k).map(Session::peer_json))
            .collect();
        let joined = format!(
            r#"{{"type":"joined","protocol":{PROTOCOL_VERSION},"room":{},"peerId":{},"name":{},"resume":{},"grace":{},"peers":[{}],"grants":{}}}"#,
            json_str(room),
            json_str(&peer_id),
            json_str(name),
            json_str(&resume),
            self.cfg.grace.as_secs(),
            peers.join(","),
            grants_json
        );
        self.sessions.insert(key, session);
        self.by_peer.insert(peer_id, key);
        self.by_resume.insert(resume, key);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(key);
        }
        self.stats.joins += 1;
        self.push(conn, joined);
        for other in others {
            self.deliver(other, |seq| {
                format!(r#"{{"type":"peer-joined","seq":{seq},"peer":{peer_json}}}"#)
            });
        }
        Ok(())
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
        let fresh = random_hex(16);
        self.by_resume.insert(fresh.clone(), key);
        let Some(s) = self.sessions.get_mut(&key) else {
            return Err((ErrorCode::BadResume, "session ended".into()));
        };
        let old_conn = s.conn.replace(conn);
        s.suspended_at = None;
        s.resume = fresh.clone();
        let gap = s.replay.ack(last_seq);
        let replay: Vec<Arc<str>> = s.replay.after(last_seq).collect();
        let (peer_id, room) = (s.peer_id.clone(), s.room.clone());
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
        let peers: Vec<String> = self
            .rooms
            .get(&room)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|k| **k != key)
                    .filter_map(|k| self.sessions.get(k).map(Session::peer_json))
                    .collect()
            })
            .unwrap_or_default();
        self.stats.resumes += 1;
        self.push(
            conn,
            format!(
                r#"{{"type":"resumed","protocol":{PROTOCOL_VERSION},"room":{},"peerId":{},"resume":{},"peers":[{}],"gap":{gap}}}"#,
                json_str(&room),
                json_str(&peer_id),
                json_str(&fresh),
                peers.join(",")
            ),
        );
        for text in replay {
            self.out.push(Output::Send { conn, text });
        }
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
        if let Some(conn) = self.sessions.get(&target).and_then(|t| t.conn) {
            self.error(
                conn,
                ErrorCode::Kicked,
                "removed from the room by an admin",
                None,
                true,
            );
        }
        self.end_session(target, LeaveReason::Kicked);
        Ok(())
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
