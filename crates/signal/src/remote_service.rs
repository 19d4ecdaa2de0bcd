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
use crate::link::{lock, ServiceLink, Sink};
use crate::protocol::ErrorCode;
use crate::token::Grants;
use crate::wire::{LeaveReason, PeerInfo, RelayKind};
use serde::{Deserialize, Serialize};
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

/// The bridge's side of a remote service participant.
pub(crate) struct RemoteService {
    pub(crate) owner: NodeId,
    pub(crate) conn: ConnId,
    pub(crate) link: Arc<ServiceLink>,
    /// The grants of the room's members, from their `peer-joined` (and the join's list).
    pub(crate) grants: Mutex<HashMap<Arc<str>, Grants>>,
    /// Answered with the owner's reply to the open.
    joined: Mutex<Option<oneshot::Sender<Result<ServiceJoined, SignalError>>>>,
}

/// The owner's side: the participant it joined for a bridge.
pub(crate) struct HostedService {
    pub(crate) node: NodeId,
    /// The connection number on the bridge.
    pub(crate) conn: ConnId,
    /// Its number and shard here.
    pub(crate) id: ConnId,
    pub(crate) shard: usize,
    pub(crate) room: Arc<str>,
}

#[derive(Serialize, Deserialize)]
struct OpenWire<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    grants: GrantsWire,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct GrantsWire(bool, bool, bool);

impl From<Grants> for GrantsWire {
    fn from(g: Grants) -> Self {
        GrantsWire(g.publish, g.subscribe, g.admin)
    }
}

impl From<GrantsWire> for Grants {
    fn from(g: GrantsWire) -> Self {
        Grants {
            publish: g.0,
            subscribe: g.1,
            admin: g.2,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SendWire<'a> {
    #[serde(borrow)]
    to: Cow<'a, str>,
    kind: u8,
    #[serde(borrow)]
    payload: &'a RawValue,
}

#[derive(Serialize, Deserialize)]
struct PeerWire<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    identity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    service: Option<Cow<'a, str>>,
    grants: Option<GrantsWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum EventWire<'a> {
    Joined {
        #[serde(borrow)]
        peer_id: Cow<'a, str>,
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        peers: Vec<PeerWire<'a>>,
    },
    Refused {
        code: u8,
        #[serde(borrow)]
        reason: Cow<'a, str>,
    },
    PeerJoined {
        #[serde(borrow)]
        peer: PeerWire<'a>,
    },
    PeerLeft {
        #[serde(borrow)]
        peer: Cow<'a, str>,
        reason: u8,
    },
    Relay {
        #[serde(borrow)]
        from: Cow<'a, str>,
        kind: u8,
        #[serde(borrow)]
        payload: &'a RawValue,
    },
    Error {
        code: u8,
        #[serde(borrow)]
        reason: Cow<'a, str>,
        fatal: bool,
    },
}

const RELAY_KINDS: [RelayKind; 4] = [
    RelayKind::Offer,
    RelayKind::Answer,
    RelayKind::Candidate,
    RelayKind::Message,
];
const LEAVE_REASONS: [LeaveReason; 3] =
    [LeaveReason::Left, LeaveReason::Timeout, LeaveReason::Kicked];

fn relay_index(k: RelayKind) -> u8 {
    RELAY_KINDS.iter().position(|x| *x == k).unwrap_or(0) as u8
}

fn code_of(i: u8) -> ErrorCode {
    ErrorCode::ALL
        .get(usize::from(i))
        .copied()
        .unwrap_or(ErrorCode::Unavailable)
}

fn peer_wire(p: &PeerInfo, grants: Option<Grants>) -> PeerWire<'_> {
    PeerWire {
        id: Cow::Borrowed(&p.id),
        name: Cow::Borrowed(&p.name),
        identity: p.identity.as_deref().map(Cow::Borrowed),
        service: p.service.as_deref().map(Cow::Borrowed),
        grants: grants.map(GrantsWire::from),
    }
}

fn peer_info(p: &PeerWire<'_>) -> PeerInfo {
    PeerInfo {
        id: Arc::from(&*p.id),
        name: Arc::from(&*p.name),
        identity: p.identity.as_deref().map(Arc::from),
        service: p.service.as_deref().map(Arc::from),
    }
}

fn to_json(v: &impl Serialize) -> String {
    // Strings, numbers, booleans and raw JSON always serialize.
    serde_json::to_string(v).unwrap_or_default()
}

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

/// The owner side: an event of a hosted participant, for its bridge.
pub(crate) fn forward_event(
    glue: &Glue,
    hub: &crate::hub::Hub,
    h: &HostedService,
    event: &ServiceEvent,
) {
    let ev = match event {
        ServiceEvent::PeerJoined(p) => EventWire::PeerJoined {
            peer: peer_wire(p, hub.member_grants(&h.room, &p.id)),
        },
        ServiceEvent::PeerLeft { peer, reason } => EventWire::PeerLeft {
            peer: Cow::Borrowed(peer),
            reason: LEAVE_REASONS.iter().position(|r| r == reason).unwrap_or(0) as u8,
        },
        ServiceEvent::Relay {
            from,
            kind,
            payload,
        } => EventWire::Relay {
            from: Cow::Borrowed(from),
            kind: relay_index(*kind),
            payload,
        },
        ServiceEvent::Error {
            code,
            reason,
            fatal,
        } => EventWire::Error {
            code: code.index() as u8,
            reason: Cow::Borrowed(reason),
            fatal: *fatal,
        },
    };
    let text = to_json(&ev);
    let msg = BusMessage::ServiceEvent {
        conn: h.conn,
        text: &text,
    };
    glue.store.send(&h.node, msg.encode());
}

/// The owner side: the hub ended a hosted participant (kicked, room handed over).
pub(crate) fn forward_close(glue: &Glue, h: &HostedService) {
    lock(&glue.hosted_services).remove(&(h.node.clone(), h.conn));
    let text = to_json(&EventWire::Error {
        code: ErrorCode::Unavailable.index() as u8,
        reason: "the room's node ended this participant".into(),
        fatal: true,
    });
    let msg = BusMessage::ServiceEvent {
        conn: h.conn,
        text: &text,
    };
    glue.store.send(&h.node, msg.encode());
}
