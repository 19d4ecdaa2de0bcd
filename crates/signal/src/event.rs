//! What a service participant (a member of a room without a WebSocket, created by the
//! server: the SFU, a gateway, the cluster link) receives from the hub, as typed values:
//! it never parses the JSON the hub writes for browsers.

use crate::protocol::ErrorCode;
use crate::wire::{LeaveReason, PeerInfo, RelayKind};
use serde_json::value::RawValue;
use std::sync::Arc;

/// One event for a service participant.
#[derive(Debug, Clone)]
pub enum ServiceEvent {
    /// A peer joined the room.
    PeerJoined(PeerInfo),
    /// A peer left the room.
    PeerLeft { peer: Arc<str>, reason: LeaveReason },
    /// A peer of the room sent an offer, answer, candidate or message to this participant;
    /// `payload` is the raw JSON of its `sdp`, `candidate` or `data`, exactly as sent.
    Relay {
        from: Arc<str>,
        kind: RelayKind,
        payload: Box<RawValue>,
    },
    /// The hub reports an error; a fatal one ends the participant (kicked, server stopping).
    Error {
        code: ErrorCode,
        reason: String,
        fatal: bool,
    },
}

impl PartialEq for ServiceEvent {
    fn eq(&self, other: &ServiceEvent) -> bool {
        use ServiceEvent::*;
        match (self, other) {
            (PeerJoined(a), PeerJoined(b)) => a == b,
            (PeerLeft { peer: a, reason: r }, PeerLeft { peer: b, reason: s }) => a == b && r == s,
            (
                Relay {
                    from: a,
                    kind: k,
                    payload: p,
                },
                Relay {
                    from: b,
                    kind: l,
                    payload: q,
                },
            ) => a == b && k == l && p.get() == q.get(),
            (
                Error {
                    code: a,
                    reason: r,
                    fatal: f,
                },
                Error {
                    code: b,
                    reason: s,
                    fatal: g,
                },
            ) => a == b && r == s && f == g,
            _ => false,
        }
    }
}

/// A refused operation of the hub (a join or a send of a service participant), with the
/// error code a browser would have received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct SignalError {
    pub code: ErrorCode,
    pub reason: String,
}

impl SignalError {
    pub(crate) fn new(code: ErrorCode, reason: impl Into<String>) -> SignalError {
        SignalError {
            code,
            reason: reason.into(),
        }
    }
}

/// Why a service participant could not join.
pub type JoinError = SignalError;
/// Why a service participant's message was not relayed.
pub type SendError = SignalError;

/// What a service participant learns when it joins.
#[derive(Debug, Clone)]
pub struct ServiceJoined {
    pub peer_id: Arc<str>,
    pub room: Arc<str>,
    /// The members already in the room.
    pub peers: Vec<PeerInfo>,
}
