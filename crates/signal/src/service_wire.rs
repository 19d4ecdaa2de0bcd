//! The bytes of service participants across nodes (`crate::remote_service`): what the
//! bridge sends the owner (open, relays) and the owner the bridge (the answer, events),
//! as JSON in [`BusMessage`] service messages; and the owner's forwarding of a hosted
//! participant's hub outputs.

use crate::bus::BusMessage;
use crate::event::ServiceEvent;
use crate::glue::Glue;
use crate::link::{lock, HostedService};
use crate::protocol::ErrorCode;
use crate::token::Grants;
use crate::wire::{LeaveReason, PeerInfo, RelayKind};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
pub(crate) struct OpenWire<'a> {
    #[serde(borrow)]
    pub(crate) room: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) kind: Cow<'a, str>,
    pub(crate) grants: GrantsWire,
    /// The participant sends media to the room's SFU (a phone's leg, a WHIP session): the
    /// owner turns the room SFU unless it is mesh-only, and says in `joined` whether it is.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) sfu: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize, Clone, Copy)]
pub(crate) struct GrantsWire(pub(crate) bool, pub(crate) bool, pub(crate) bool);

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
pub(crate) struct SendWire<'a> {
    #[serde(borrow)]
    pub(crate) to: Cow<'a, str>,
    pub(crate) kind: u8,
    #[serde(borrow)]
    pub(crate) payload: &'a RawValue,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PeerWire<'a> {
    #[serde(borrow)]
    pub(crate) id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) identity: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) service: Option<Cow<'a, str>>,
    pub(crate) grants: Option<GrantsWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EventWire<'a> {
    Joined {
        #[serde(borrow)]
        peer_id: Cow<'a, str>,
        #[serde(borrow)]
        room: Cow<'a, str>,
        #[serde(borrow)]
        peers: Vec<PeerWire<'a>>,
        /// The room is SFU (for an open that asked for it).
        #[serde(default, skip_serializing_if = "is_false")]
        sfu: bool,
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

pub(crate) const RELAY_KINDS: [RelayKind; 4] = [
    RelayKind::Offer,
    RelayKind::Answer,
    RelayKind::Candidate,
    RelayKind::Message,
];
pub(crate) const LEAVE_REASONS: [LeaveReason; 3] =
    [LeaveReason::Left, LeaveReason::Timeout, LeaveReason::Kicked];

pub(crate) fn relay_index(k: RelayKind) -> u8 {
    RELAY_KINDS.iter().position(|x| *x == k).unwrap_or(0) as u8
}

pub(crate) fn code_of(i: u8) -> ErrorCode {
    ErrorCode::ALL
        .get(usize::from(i))
        .copied()
        .unwrap_or(ErrorCode::Unavailable)
}

pub(crate) fn peer_wire(p: &PeerInfo, grants: Option<Grants>) -> PeerWire<'_> {
    PeerWire {
        id: Cow::Borrowed(&p.id),
        name: Cow::Borrowed(&p.name),
        identity: p.identity.as_deref().map(Cow::Borrowed),
        service: p.service.as_deref().map(Cow::Borrowed),
        grants: grants.map(GrantsWire::from),
    }
}

pub(crate) fn peer_info(p: &PeerWire<'_>) -> PeerInfo {
    PeerInfo {
        id: Arc::from(&*p.id),
        name: Arc::from(&*p.name),
        identity: p.identity.as_deref().map(Arc::from),
        service: p.service.as_deref().map(Arc::from),
    }
}

pub(crate) fn to_json(v: &impl Serialize) -> String {
    // Strings, numbers, booleans and raw JSON always serialize.
    serde_json::to_string(v).unwrap_or_default()
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
