//! [`ServiceParticipant`]: a member of a room created by the server itself (next: the SFU,
//! the SIP gateway, the XMPP component, the cluster link). Browsers see it as any peer
//! (`peer-joined`/`peer-left` with its name, addressed by its peer id within its room
//! only); it receives typed [`ServiceEvent`]s and sends raw payloads, without a socket
//! and without JSON being parsed again.

use crate::event::JoinError;
use crate::event::{SendError, ServiceEvent, ServiceJoined};
use crate::handle::Signaling;
use crate::link::{lock, RemoteService, ServiceLink};
use crate::token::Grants;
use crate::wire::{PeerInfo, RelayKind};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Instant;

/// A member of one room, driven by server code. Leaves the room when dropped.
pub struct ServiceParticipant {
    sig: Arc<Signaling>,
    link: Arc<ServiceLink>,
    joined: ServiceJoined,
    /// Set when the room lives on another node (see `crate::remote_service`).
    remote: Option<Arc<RemoteService>>,
}

impl std::fmt::Debug for ServiceParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceParticipant")
            .field("peer_id", &self.joined.peer_id)
            .field("room", &self.joined.room)
            .finish()
    }
}

impl Signaling {
    /// Join a member created by the server (no WebSocket, no room token: `grants` apply
    /// as given) to `room` as `name`, under the same room rules as any peer.
    pub fn join_service(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        grants: Grants,
    ) -> Result<ServiceParticipant, JoinError> {
        self.join_service_as(room, name, "", grants)
    }

    /// [`Signaling::join_service`] as a service of `kind` (`"sfu"`, `"whip"`…): the
    /// room's members see it in the peer's `service` field and, for `"sfu"`, send it
    /// their media. Service participants do not count against the room's capacity.
    pub fn join_service_as(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        kind: &str,
        grants: Grants,
    ) -> Result<ServiceParticipant, JoinError> {
        let (link, joined, created) = self.admit_service(room, name, kind, grants)?;
        if created && self.glue.is_some() {
            // A room a service opened here (a call room, a phone dialling a room this node
            // did not hold) must be this node's in the cluster too.
            self.confirm_room(&joined.room);
        }
        Ok(ServiceParticipant {
            sig: self.clone(),
            link,
            joined,
            remote: None,
        })
    }
}

impl Signaling {
    /// Turn the room of `p` SFU now (see [`crate::Hub::require_sfu`]); false when it
    /// cannot be (mesh-only room or server).
    /// Not for a participant of a room on another node (false).
    pub fn require_sfu(&self, p: &ServiceParticipant) -> bool {
        if p.remote.is_some() {
            return false;
        }
        self.with_shard(p.link.shard, |hub| hub.require_sfu(p.room()))
    }

    /// What a room token (`None`: none given) admits to `room` at `unix_now`, under the
    /// current `--room-token-secret`s: the default grants when rooms are open. For
    /// server endpoints beside signaling (WHIP) that admit by the same tokens.
    pub fn admit_token(
        &self,
        token: Option<&str>,
        room: &str,
        unix_now: u64,
    ) -> Result<Grants, crate::TokenError> {
        if crate::protocol::line_user(room).is_some() {
            // A line is for its user's devices, which join by signaling.
            return Err(crate::TokenError::Invalid(
                "a line admits no service".into(),
            ));
        }
        let secrets = self.with_shard(0, |hub| hub.config().token_secrets.clone());
        if secrets.is_empty() {
            return Ok(Grants::DEFAULT);
        }
        let token = token.ok_or_else(|| crate::TokenError::Invalid("no token".into()))?;
        let a = crate::token::verify(&secrets, token, room, unix_now)?;
        if crate::protocol::is_call_room(room) && a.room != room {
            // As for a join: only the parties' own tokens admit to a direct call.
            return Err(crate::TokenError::WrongRoom);
        }
        Ok(a.grants)
    }
}

impl ServiceParticipant {
    pub(crate) fn remote(
        sig: Arc<Signaling>,
        remote: Arc<RemoteService>,
        joined: ServiceJoined,
    ) -> ServiceParticipant {
        ServiceParticipant {
            sig,
            link: remote.link.clone(),
            joined,
            remote: Some(remote),
        }
    }

    /// Whether its room lives on another node of the cluster.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Its peer id, as the room's members address it.
    pub fn peer_id(&self) -> &Arc<str> {
        &self.joined.peer_id
    }

    pub fn room(&self) -> &str {
        &self.joined.room
    }

    /// The members that were in the room when it joined; later changes arrive as events.
    pub fn peers(&self) -> &[PeerInfo] {
        &self.joined.peers
    }

    /// The grants of peer `peer` of its room (what its room token allows), or None when
    /// it is not a member: a service that serves media (the SFU) enforces `publish` and
    /// `subscribe` on the media path as the hub does on signaling.
    pub fn peer_grants(&self, peer: &str) -> Option<Grants> {
        if let Some(r) = &self.remote {
            return lock(&r.grants).get(peer).copied();
        }
        self.sig.with_shard(self.link.shard, |hub| {
            hub.member_grants(&self.joined.room, peer)
        })
    }

    /// The next event, or None once it is out of the room (kicked, server stopping,
    /// too slow to take its events) and everything was taken. Cancel-safe.
    pub async fn recv(&self) -> Option<ServiceEvent> {
        self.link.outbox.recv().await
    }

    /// The next event, if one is queued.
    pub fn try_recv(&self) -> Option<ServiceEvent> {
        self.link.outbox.try_recv()
    }

    /// Send `payload` (raw JSON: a string for `sdp`, an object or null for a candidate,
    /// anything for a message) to peer `to` of its room, under its grants. For a room on
    /// another node a refusal comes back as a non-fatal [`ServiceEvent::Error`].
    pub fn send(&self, to: &str, kind: RelayKind, payload: &RawValue) -> Result<(), SendError> {
        if let Some(r) = &self.remote {
            self.sig.remote_service_send(r, to, kind, payload);
            return Ok(());
        }
        self.sig.with_shard(self.link.shard, |hub| {
            hub.service_send(self.link.id, to, kind, payload, Instant::now())
        })
    }

    pub fn send_offer(&self, to: &str, sdp: &RawValue) -> Result<(), SendError> {
        self.send(to, RelayKind::Offer, sdp)
    }

    pub fn send_answer(&self, to: &str, sdp: &RawValue) -> Result<(), SendError> {
        self.send(to, RelayKind::Answer, sdp)
    }

    pub fn send_candidate(&self, to: &str, candidate: &RawValue) -> Result<(), SendError> {
        self.send(to, RelayKind::Candidate, candidate)
    }

    pub fn send_message(&self, to: &str, data: &RawValue) -> Result<(), SendError> {
        self.send(to, RelayKind::Message, data)
    }

    /// Leave the room: its members get `peer-left` (reason `left`).
    pub fn leave(self) {
        // Drop does it.
    }
}

impl Drop for ServiceParticipant {
    fn drop(&mut self) {
        self.link.outbox.close();
        match &self.remote {
            Some(r) => self.sig.remote_service_leave(r),
            None => self.sig.leave_service(self.link.shard, self.link.id),
        }
    }
}
