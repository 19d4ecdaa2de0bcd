//! Client messages: the rate limit, size and shape checks, parsing into an [`Envelope`],
//! handing a `join`/`resume` of another shard back to the driver, and dispatch by type,
//! with the relay of offers, answers, candidates and messages within a room.

use crate::hub::{ConnId, Hub, Notice, Received, SessionKey};
use crate::limits::Verdict;
use crate::protocol::{
    escapes_are_unicode, is_object_text, json_str, valid_reference, valid_room, Envelope,
    ErrorCode, Kind, RefOnly,
};
use crate::session::Session;
use crate::wire::{LeaveReason, RelayKind, ServerMessage};
use serde_json::value::RawValue;
use std::time::Instant;

impl Hub {
    /// One client message (a text frame or POST body). `unix_now` checks token expiry.
    pub fn receive(&mut self, conn: ConnId, text: &str, now: Instant, unix_now: u64) -> Received {
        self.now = now;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Received::Handled;
        };
        self.stats.messages_in += 1;
        match c.rate.check(now) {
            Verdict::Accept => {}
            Verdict::Drop => {
                let reason = format!(
                    "more than {} messages per second; message dropped",
                    self.cfg.rate
                );
                self.error(conn, ErrorCode::RateLimited, &reason, None, false);
                return Received::Handled;
            }
            Verdict::Disconnect => {
                let reason = format!("far more than {} messages per second", self.cfg.rate);
                self.error(conn, ErrorCode::RateLimited, &reason, None, true);
                return Received::Handled;
            }
        }
        self.receive_moved(conn, text, now, unix_now)
    }

    /// A message [`Hub::receive`] of another shard handed back with
    /// [`Received::OtherShard`]: it was already counted and rate limited there.
    pub fn receive_moved(
        &mut self,
        conn: ConnId,
        text: &str,
        now: Instant,
        unix_now: u64,
    ) -> Received {
        self.now = now;
        let Some(session) = self.conns.get(&conn).map(|c| c.session) else {
            return Received::Handled;
        };
        if text.len() > self.cfg.max_message {
            let reason = format!(
                "message of {} bytes is over the limit of {}; dropped",
                text.len(),
                self.cfg.max_message
            );
            self.error(conn, ErrorCode::TooLarge, &reason, None, false);
            return Received::Handled;
        }
        if !is_object_text(text) {
            let reason = "not a protocol message: not a JSON object";
            self.error(conn, ErrorCode::BadMessage, reason, None, false);
            return Received::Handled;
        }
        let env: Envelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                let reason = format!("not a protocol message: {e}");
                let reference = serde_json::from_str::<RefOnly>(text)
                    .ok()
                    .and_then(|r| valid_reference(r.reference));
                self.error(conn, ErrorCode::BadMessage, &reason, reference, false);
                return Received::Handled;
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
            self.error(conn, ErrorCode::BadMessage, reason, reference, false);
            return Received::Handled;
        }
        let Some(kind) = Kind::from_wire(&env.kind) else {
            let reason = format!("unknown message type {}", json_str(&env.kind));
            self.error(conn, ErrorCode::BadMessage, &reason, reference, false);
            return Received::Handled;
        };
        if session.is_none() {
            if let Some(other) = self.other_shard(kind, &env) {
                return Received::OtherShard(other);
            }
        }
        if let Err((code, reason)) = self.dispatch(conn, kind, &env, unix_now) {
            self.error(conn, code, &reason, reference, false);
        }
        Received::Handled
    }

    /// The shard a `join` or `resume` belongs to, when it is not this one.
    fn other_shard(&self, kind: Kind, env: &Envelope) -> Option<usize> {
        let shard = match kind {
            Kind::Join => {
                let room = env.room.as_deref().filter(|r| valid_room(r))?;
                self.shard.of_room(room)
            }
            Kind::Resume => self.shard.of_resume_token(env.token.as_deref()?)?,
            _ => return None,
        };
        (shard != self.shard.index()).then_some(shard)
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
                self.push(conn, &ServerMessage::Pong { id: env.id });
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
                self.push(conn, &ServerMessage::Left);
                Ok(())
            }
            (Kind::Kick, Some(key)) => self.kick(key, env),
            (Kind::Offer | Kind::Answer | Kind::Candidate | Kind::Message, Some(key)) => {
                let relay_kind = RelayKind::of(kind).unwrap_or(RelayKind::Message);
                let payload = match relay_kind {
                    RelayKind::Offer | RelayKind::Answer => env.sdp,
                    RelayKind::Candidate => env.candidate,
                    RelayKind::Message => env.data,
                };
                self.relay(key, relay_kind, env.to.as_deref(), payload)
            }
        }
    }

    /// The session behind `key`, which a connection points at while it is attached.
    pub(crate) fn session(&self, key: SessionKey) -> Result<&Session, (ErrorCode, String)> {
        self.sessions
            .get(&key)
            .map(|s| &**s)
            .ok_or((ErrorCode::NotJoined, "no session".to_string()))
    }

    /// Relay `payload` from the session `key` to peer `to` of its room.
    pub(crate) fn relay(
        &mut self,
        key: SessionKey,
        kind: RelayKind,
        to: Option<&str>,
        payload: Option<&RawValue>,
    ) -> Result<(), (ErrorCode, String)> {
        let s = self.session(key)?;
        let room = s.room.clone();
        let from = s.peer.id.clone();
        let from_service = s.peer.service.is_some();
        let grants = s.grants;
        let field = kind.field();
        let payload = payload.ok_or_else(|| {
            (
                ErrorCode::BadMessage,
                format!("{} needs {field}", kind.wire()),
            )
        })?;
        let raw = payload.get();
        let shape_ok = match kind {
            RelayKind::Offer | RelayKind::Answer => raw.starts_with('"'),
            RelayKind::Candidate => raw.starts_with('{') || raw == "null",
            RelayKind::Message => true,
        };
        if !shape_ok {
            return Err((
                ErrorCode::BadMessage,
                format!("{} has an ill-typed {field}", kind.wire()),
            ));
        }
        let target = self.member(&room, to)?;
        let target_session = self.sessions.get(&target);
        // Between a client and a service participant (the SFU) the grants are the
        // service's to enforce: a subscribe-only viewer still offers (receive-only) to
        // the SFU, and a publish-only client answers the SFU's renegotiation. The SFU
        // reads the client's grants and refuses what they do not allow.
        let with_service = from_service || target_session.is_some_and(|t| t.peer.service.is_some());
        let allowed = with_service
            || match kind {
                RelayKind::Offer => grants.publish,
                RelayKind::Answer => grants.subscribe,
                RelayKind::Candidate => grants.subscribe || grants.publish,
                RelayKind::Message => true,
            };
        if !allowed {
            return Err((
                ErrorCode::Forbidden,
                format!("{} is not allowed by this token's grants", kind.wire()),
            ));
        }
        if kind == RelayKind::Offer
            && !with_service
            && !target_session.is_some_and(|t| t.grants.subscribe)
        {
            return Err((
                ErrorCode::Forbidden,
                "that peer's token does not allow it to receive offers (no subscribe grant)".into(),
            ));
        }
        self.stats.messages_relayed += 1;
        self.deliver(
            target,
            &Notice::Relay {
                kind,
                from: &from,
                payload,
            },
        );
        Ok(())
    }
}
