//! Service participants of a room another node owns (cluster): a node's SFU edge, its SIP
//! room leg or its node link joins a room wherever the room lives. The node that runs
//! the service (the **bridge**) asks the owner over the cluster bus
//! ([`BusMessage::ServiceOpen`]); the owner joins a service participant to its hub as it
//! would one of its own and sends the bridge its events ([`BusMessage::ServiceEvent`]);
//! the bridge sends the owner its relays ([`BusMessage::ServiceSend`]). The service holds
//! an ordinary [`crate::ServiceParticipant`]: the same events, the same `send`.
//!
//! Differences from a local one, all from the bus in between: a refused relay comes back
//! as a non-fatal [`ServiceEvent::Error`] instead of an `Err` of `send`; the members'
//! grants come with their `peer-joined` events (the owner's hub is not at hand); and when
//! the owner dies the participant's events end (`recv` gives None), as when it is kicked:
//! the service joins again, wherever the room then lives.

use crate::bus::BusMessage;
use crate::event::{ServiceEvent, ServiceJoined, SignalError};
use crate::glue::Glue;
use crate::handle::Signaling;
use crate::hub::ConnId;
use crate::link::{lock, HostedService, RemoteService, ServiceLink, Sink};
use crate::protocol::ErrorCode;
use crate::service_wire::{
    code_of, peer_info, peer_wire, relay_index, to_json, EventWire, OpenWire, PeerWire, SendWire,
    LEAVE_REASONS, RELAY_KINDS,
};
use crate::token::Grants;
use crate::wire::{LeaveReason, RelayKind};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_cluster::NodeId;
use tokio::sync::oneshot;

/// The name of a room's own SFU peer (an edge's is `SFU@<node>`).
pub const SFU_PEER: &str = "SFU";

/// A server's media member of a room ([`Signaling::join_sfu_service`]).
pub struct SfuService {
    pub participant: crate::ServiceParticipant,
    /// The name of the SFU peer it talks to: `SFU`, or this node's edge `SFU@<node>`
    /// when another node holds the room (the edge may join a moment after).
    pub sfu: Arc<str>,
}

impl SfuService {
    /// The peer id of its SFU peer, waiting up to `wait` for it to join (the room's SFU
    /// joins once the room turns SFU, an edge once it is asked for). Events read
    /// meanwhile are dropped: the members present are in the participant's `peers`.
    pub async fn find_sfu(&self, wait: Duration) -> Option<Arc<str>> {
        let is_it = |peer: &crate::PeerInfo| {
            peer.service.as_deref() == Some(crate::SFU) && *peer.name == *self.sfu
        };
        let p = &self.participant;
        if let Some(peer) = p.peers().iter().find(|q| is_it(q)) {
            return Some(peer.id.clone());
        }
        let joined = async {
            while let Some(ev) = p.recv().await {
                if let ServiceEvent::PeerJoined(peer) = ev {
                    if is_it(&peer) {
                        return Some(peer.id);
                    }
                }
            }
            None
        };
        tokio::time::timeout(wait, joined).await.ok().flatten()
    }
}

/// How long a bridge waits for the owner's answer to an open.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// The most events queued for a remote service participant (as for a local one).
const SERVICE_QUEUE: usize = 8192;

impl Signaling {
    /// Join a service participant to `room` wherever the room lives: here (as
    /// [`Signaling::join_service_as`], claiming the room when nobody holds it) or, in a
    /// cluster, on the node that holds it (see the module docs). Refused with
    /// `unavailable` when the store or the owner cannot be reached.
    pub async fn join_service_anywhere(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        kind: &str,
        grants: Grants,
    ) -> Result<crate::ServiceParticipant, SignalError> {
        let Some(glue) = self.glue.clone() else {
            return self.join_service_as(room, name, kind, grants);
        };
        match self.owner_for_service(&glue, room).await? {
            None => self.join_service_as(room, name, kind, grants),
            Some(owner) => {
                let open = OpenWire {
                    room: room.into(),
                    name: name.into(),
                    kind: kind.into(),
                    grants: grants.into(),
                    sfu: false,
                };
                Ok(self.open_remote(&glue, owner, open).await?.0)
            }
        }
    }

    /// Join a server's media member (a phone's room leg, a WHIP or WHEP session) to
    /// `room` wherever the room lives, and turn the room SFU: its media goes to this
    /// node's SFU either way. Here (or nobody's yet: claimed for this node) it talks to
    /// the room's SFU; when another node holds the room, the participant joins there and
    /// this node runs an SFU edge of the room (`SFU@<node>`, linked to the room's SFU:
    /// docs/cluster.md "SFU rooms"), which it talks to. `Ok(None)`: the room is
    /// mesh-only (its creator chose mesh, or the SFU is off). Refused with `unavailable`
    /// when the store or the owner cannot be reached.
    pub async fn join_sfu_service(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        kind: &str,
        grants: Grants,
    ) -> Result<Option<SfuService>, SignalError> {
        let owner = match self.glue.clone() {
            Some(glue) => self
                .owner_for_service(&glue, room)
                .await?
                .map(|owner| (glue, owner)),
            None => None,
        };
        let Some((glue, owner)) = owner else {
            let participant = self.join_service_as(room, name, kind, grants)?;
            if !self.require_sfu(&participant) {
                return Ok(None);
            }
            return Ok(Some(SfuService {
                participant,
                sfu: Arc::from(SFU_PEER),
            }));
        };
        let open = OpenWire {
            room: room.into(),
            name: name.into(),
            kind: kind.into(),
            grants: grants.into(),
            sfu: true,
        };
        let (participant, sfu) = self.open_remote(&glue, owner, open).await?;
        if !sfu {
            return Ok(None);
        }
        // This node's edge of the room (one per room: asked again, it stays the one).
        self.request_service(crate::mode::SFU_EDGE, room);
        let edge = format!("{SFU_PEER}@{}", glue.store.me().name);
        Ok(Some(SfuService {
            participant,
            sfu: Arc::from(edge),
        }))
    }

    /// The node that holds `room` when it is another node; None when this one does (or
    /// claimed it now).
    async fn owner_for_service(
        &self,
        glue: &Glue,
        room: &str,
    ) -> Result<Option<NodeId>, SignalError> {
        self.route_as(glue, room, crate::glue::Placement::Local)
            .await
            .map_err(|reason| SignalError::new(ErrorCode::Unavailable, reason))
    }

    /// Ask `owner` to join a service participant to a room it holds (see the module
    /// docs); the participant, and whether the room is SFU (when `open.sfu` asked).
    async fn open_remote(
        self: &Arc<Self>,
        glue: &Glue,
        owner: NodeId,
        open: OpenWire<'_>,
    ) -> Result<(crate::ServiceParticipant, bool), SignalError> {
        let conn = self.next_conn();
        let (tx, rx) = oneshot::channel();
        let remote = Arc::new(RemoteService {
            owner: owner.clone(),
            conn,
            link: Arc::new(ServiceLink::new(conn, 0)),
            grants: Mutex::new(HashMap::new()),
            joined: Mutex::new(Some(tx)),
        });
        // Registered before the open goes out: the answer and the first events may come
        // back before this task runs again.
        lock(&glue.remote_services).insert(conn, remote.clone());
        let text = to_json(&open);
        glue.store.send(
            &owner,
            BusMessage::ServiceOpen { conn, text: &text }.encode(),
        );
        let answer = tokio::time::timeout(OPEN_WAIT, rx).await;
        let (joined, sfu) = match answer {
            Ok(Ok(Ok(joined))) => joined,
            Ok(Ok(Err(e))) => {
                lock(&glue.remote_services).remove(&conn);
                return Err(e);
            }
            _ => {
                lock(&glue.remote_services).remove(&conn);
                // It may still come: the owner then hears that the participant left.
                glue.store
                    .send(&owner, BusMessage::ServiceLeave { conn }.encode());
                return Err(SignalError::new(
                    ErrorCode::Unavailable,
                    format!("node {owner} of room {} did not answer", open.room),
                ));
            }
        };
        let participant = crate::ServiceParticipant::remote(self.clone(), remote, joined);
        Ok((participant, sfu))
    }

    /// The bridge side: a service participant sends a relay through the owner.
    pub(crate) fn remote_service_send(
        &self,
        r: &RemoteService,
        to: &str,
        kind: RelayKind,
        payload: &RawValue,
    ) {
        let Some(glue) = &self.glue else { return };
        let text = to_json(&SendWire {
            to: to.into(),
            kind: relay_index(kind),
            payload,
        });
        let msg = BusMessage::ServiceSend {
            conn: r.conn,
            text: &text,
        };
        glue.store.send(&r.owner, msg.encode());
    }

    /// The bridge side: a service participant left.
    pub(crate) fn remote_service_leave(&self, r: &RemoteService) {
        let Some(glue) = &self.glue else { return };
        lock(&glue.remote_services).remove(&r.conn);
        glue.store
            .send(&r.owner, BusMessage::ServiceLeave { conn: r.conn }.encode());
    }

    /// The bridge side: the owner answered an open or sent an event.
    pub(crate) fn on_service_event(&self, glue: &Glue, from: &NodeId, conn: ConnId, text: &str) {
        let Some(r) = lock(&glue.remote_services).get(&conn).cloned() else {
            return;
        };
        if &r.owner != from {
            return;
        }
        let Ok(ev) = serde_json::from_str::<EventWire<'_>>(text) else {
            tracing::warn!(from = %from, "unreadable service event dropped");
            return;
        };
        let event = match ev {
            EventWire::Joined {
                peer_id,
                room,
                peers,
                sfu,
            } => {
                let mut grants = lock(&r.grants);
                for p in &peers {
                    if let Some(g) = p.grants {
                        grants.insert(Arc::from(&*p.id), g.into());
                    }
                }
                drop(grants);
                let joined = ServiceJoined {
                    peer_id: Arc::from(&*peer_id),
                    room: Arc::from(&*room),
                    peers: peers.iter().map(peer_info).collect(),
                };
                if let Some(tx) = lock(&r.joined).take() {
                    let _ = tx.send(Ok((joined, sfu)));
                }
                return;
            }
            EventWire::Refused { code, reason } => {
                lock(&glue.remote_services).remove(&conn);
                if let Some(tx) = lock(&r.joined).take() {
                    let _ = tx.send(Err(SignalError::new(code_of(code), reason)));
                }
                return;
            }
            EventWire::PeerJoined { peer } => {
                if let Some(g) = peer.grants {
                    lock(&r.grants).insert(Arc::from(&*peer.id), g.into());
                }
                ServiceEvent::PeerJoined(peer_info(&peer))
            }
            EventWire::PeerLeft { peer, reason } => {
                lock(&r.grants).remove(&*peer);
                ServiceEvent::PeerLeft {
                    peer: Arc::from(&*peer),
                    reason: LEAVE_REASONS
                        .get(usize::from(reason))
                        .copied()
                        .unwrap_or(LeaveReason::Left),
                }
            }
            EventWire::Relay {
                from: peer,
                kind,
                payload,
            } => ServiceEvent::Relay {
                from: Arc::from(&*peer),
                kind: RELAY_KINDS
                    .get(usize::from(kind))
                    .copied()
                    .unwrap_or(RelayKind::Message),
                payload: payload.to_owned(),
            },
            EventWire::Error {
                code,
                reason,
                fatal,
            } => ServiceEvent::Error {
                code: code_of(code),
                reason: reason.into_owned(),
                fatal,
            },
        };
        let fatal = matches!(event, ServiceEvent::Error { fatal: true, .. });
        if !r.link.outbox.push(event, SERVICE_QUEUE) || fatal {
            r.link.outbox.close();
            if !fatal {
                self.remote_service_leave(&r);
            }
            lock(&glue.remote_services).remove(&conn);
        }
    }

    /// The owner side: a bridge's service participant asks to join a room of this node.
    pub(crate) async fn on_service_open(
        &self,
        glue: &Glue,
        from: &NodeId,
        conn: ConnId,
        text: &str,
    ) {
        let reply = |ev: &EventWire<'_>| {
            let text = to_json(ev);
            glue.store.send(
                from,
                BusMessage::ServiceEvent { conn, text: &text }.encode(),
            );
        };
        let Ok(open) = serde_json::from_str::<OpenWire<'_>>(text) else {
            reply(&EventWire::Refused {
                code: ErrorCode::BadMessage.index() as u8,
                reason: "unreadable service open".into(),
            });
            return;
        };
        if !self.owns(glue, &open.room).await {
            reply(&EventWire::Refused {
                code: ErrorCode::Unavailable.index() as u8,
                reason: format!("room {} is not held by node {}", open.room, glue.me()).into(),
            });
            return;
        }
        // A media member needs the room's SFU: asked for now, before it joins, as a
        // local one would (the SFU joins while the answer travels).
        let sfu = open.sfu
            && self.with_shard(self.shard_of_room(&open.room), |hub| {
                hub.require_sfu(&open.room)
            });
        let node = from.clone();
        let joined = self.admit_hosted_service(
            &open.room,
            &open.name,
            &open.kind,
            open.grants.into(),
            |j, hub| {
                let peers: Vec<PeerWire<'_>> = j
                    .peers
                    .iter()
                    .map(|p| peer_wire(p, hub.member_grants(&j.room, &p.id)))
                    .collect();
                reply(&EventWire::Joined {
                    peer_id: Cow::Borrowed(&j.peer_id),
                    room: Cow::Borrowed(&j.room),
                    peers,
                    sfu,
                });
            },
            |id, shard, room| {
                let hosted = Arc::new(HostedService {
                    node: node.clone(),
                    conn,
                    id,
                    shard,
                    room,
                });
                lock(&glue.hosted_services).insert((node, conn), hosted.clone());
                Sink::RemoteService(hosted)
            },
        );
        if let Err(e) = joined {
            reply(&EventWire::Refused {
                code: e.code.index() as u8,
                reason: e.reason.into(),
            });
        }
    }

    /// The owner side: a relay of a bridge's service participant.
    pub(crate) fn on_service_send(&self, glue: &Glue, from: &NodeId, conn: ConnId, text: &str) {
        let Some(h) = lock(&glue.hosted_services)
            .get(&(from.clone(), conn))
            .cloned()
        else {
            return;
        };
        let Ok(send) = serde_json::from_str::<SendWire<'_>>(text) else {
            return;
        };
        let kind = RELAY_KINDS
            .get(usize::from(send.kind))
            .copied()
            .unwrap_or(RelayKind::Message);
        let result = self.with_shard(h.shard, |hub| {
            hub.service_send(h.id, &send.to, kind, send.payload, Instant::now())
        });
        if let Err(e) = result {
            let text = to_json(&EventWire::Error {
                code: e.code.index() as u8,
                reason: e.reason.into(),
                fatal: false,
            });
            glue.store.send(
                from,
                BusMessage::ServiceEvent { conn, text: &text }.encode(),
            );
        }
    }

    /// The owner side: a bridge's service participant left (or its bridge died).
    pub(crate) fn on_service_leave(&self, glue: &Glue, from: &NodeId, conn: ConnId) {
        let h = lock(&glue.hosted_services).remove(&(from.clone(), conn));
        if let Some(h) = h {
            self.leave_service(h.shard, h.id);
        }
    }
}
