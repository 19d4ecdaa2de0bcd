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
        let owner = match self
            .route_as(&glue, room, crate::glue::Placement::Local)
            .await
        {
            Ok(None) => return self.join_service_as(room, name, kind, grants),
            Ok(Some(owner)) => owner,
            Err(reason) => return Err(SignalError::new(ErrorCode::Unavailable, reason)),
        };
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
        let open = OpenWire {
            room: room.into(),
            name: name.into(),
            kind: kind.into(),
            grants: grants.into(),
        };
        let text = to_json(&open);
        glue.store.send(
            &owner,
            BusMessage::ServiceOpen { conn, text: &text }.encode(),
        );
        let answer = tokio::time::timeout(OPEN_WAIT, rx).await;
        let joined = match answer {
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
                    format!("node {owner} of room {room} did not answer"),
                ));
            }
        };
        Ok(crate::ServiceParticipant::remote(
            self.clone(),
            remote,
            joined,
        ))
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
                    let _ = tx.send(Ok(joined));
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
