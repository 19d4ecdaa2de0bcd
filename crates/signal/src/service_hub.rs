//! Service participants inside the hub: members of a room created by the server (the
//! SFU, a gateway, the cluster link) rather than by a client's `join`. They pass the same
//! room rules (room name, capacity) and are addressed only within their room, like any
//! peer; they get no room token check (the server gives their grants), no resume token
//! and no replay, and receive typed events ([`crate::ServiceEvent`]) instead of JSON.

use crate::event::{ServiceJoined, SignalError};
use crate::hub::{Conn, ConnId, Hub};
use crate::limits::RateLimiter;
use crate::membership::Joiner;
use crate::mode::Topology;
use crate::token::Grants;
use crate::wire::{LeaveReason, RelayKind};
use serde_json::value::RawValue;
use std::time::Instant;

impl Hub {
    /// Join a service participant, numbered `conn` by the driver, to `room` as `name`.
    /// `room` must belong to this shard (see [`crate::ShardId::of_room`]).
    pub fn join_service(
        &mut self,
        conn: ConnId,
        room: &str,
        name: &str,
        grants: Grants,
        now: Instant,
    ) -> Result<ServiceJoined, SignalError> {
        self.join_service_as(conn, room, name, "", grants, now)
    }

    /// [`Hub::join_service`] with a kind (`"sfu"`, `"whip"`…) that the room's members see
    /// as the peer's `service` (`""`: none).
    pub fn join_service_as(
        &mut self,
        conn: ConnId,
        room: &str,
        name: &str,
        kind: &str,
        grants: Grants,
        now: Instant,
    ) -> Result<ServiceJoined, SignalError> {
        self.now = now;
        if self.conns.contains_key(&conn) {
            return Err(SignalError::new(
                crate::ErrorCode::AlreadyJoined,
                "this connection number is taken",
            ));
        }
        self.connect_service(conn);
        let who = Joiner {
            name,
            identity: None,
            grants,
            service: Some(kind),
            topology: Topology::Auto,
        };
        match self.admit(conn, room, &who) {
            Ok(a) => {
                self.announce(a.key);
                Ok(ServiceJoined {
                    peer_id: a.peer_id,
                    room: a.room,
                    peers: a.peers,
                })
            }
            Err((code, reason)) => {
                self.conns.remove(&conn);
                Err(SignalError { code, reason })
            }
        }
    }

    /// The service participant `conn` sends `payload` (the raw JSON of an `sdp`,
    /// `candidate` or `data`) to peer `to` of its room. Refusals come back typed, with the
    /// code a browser would have received; nothing is output for them.
    pub fn service_send(
        &mut self,
        conn: ConnId,
        to: &str,
        kind: RelayKind,
        payload: &RawValue,
        now: Instant,
    ) -> Result<(), SignalError> {
        self.now = now;
        let key = self
            .conns
            .get(&conn)
            .filter(|c| c.service)
            .and_then(|c| c.session)
            .ok_or_else(|| {
                SignalError::new(crate::ErrorCode::NotJoined, "not a member of a room")
            })?;
        self.relay(key, kind, Some(to), Some(payload))
            .map_err(|(code, reason)| SignalError { code, reason })
    }

    /// The service participant `conn` leaves its room (the others get `peer-left`).
    pub fn leave_service(&mut self, conn: ConnId, now: Instant) {
        self.now = now;
        if let Some(key) = self
            .conns
            .get(&conn)
            .filter(|c| c.service)
            .map(|c| c.session)
        {
            self.conns.remove(&conn);
            if let Some(key) = key {
                self.end_session(key, LeaveReason::Left);
            }
        }
    }

    /// Register a service participant's connection (no rate limit: the server is trusted).
    pub(crate) fn connect_service(&mut self, conn: ConnId) {
        self.conns.insert(
            conn,
            Conn {
                session: None,
                rate: RateLimiter::new(0, self.now),
                service: true,
            },
        );
    }
}
