//! Server messages of protocol v1 (docs/signaling.md) as typed values, rendered to JSON
//! text once by serde. What the hub only relays (SDP, candidates, application data, the
//! client's `id` and `ref`) is held as raw JSON and written out exactly as it came, never
//! decoded and re-encoded.

use crate::protocol::{ErrorCode, Kind, PROTOCOL_VERSION};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// A member of a room as others see it: `{"id":…,"name":…[,"identity":…]}`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: Arc<str>,
    pub name: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<str>>,
    /// The kind of a service participant (`"sfu"`, `"whip"`…); None for clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<str>>,
}

/// The kinds of message one peer relays to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelayKind {
    Offer,
    Answer,
    Candidate,
    Message,
}

impl RelayKind {
    /// The relayed kinds of client message.
    pub fn of(kind: Kind) -> Option<RelayKind> {
        Some(match kind {
            Kind::Offer => RelayKind::Offer,
            Kind::Answer => RelayKind::Answer,
            Kind::Candidate => RelayKind::Candidate,
            Kind::Message => RelayKind::Message,
            _ => return None,
        })
    }

    pub fn wire(self) -> &'static str {
        match self {
            RelayKind::Offer => "offer",
            RelayKind::Answer => "answer",
            RelayKind::Candidate => "candidate",
            RelayKind::Message => "message",
        }
    }

    /// The field that carries the payload.
    pub fn field(self) -> &'static str {
        match self {
            RelayKind::Offer | RelayKind::Answer => "sdp",
            RelayKind::Candidate => "candidate",
            RelayKind::Message => "data",
        }
    }
}

/// Why a peer left, as reported in `peer-left`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveReason {
    Left,
    Timeout,
    Kicked,
}

/// Every message the server sends. The `type` tag comes first, the other fields follow in
/// the order they are declared.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    Joined {
        protocol: u32,
        room: &'a str,
        #[serde(rename = "peerId")]
        peer_id: &'a str,
        name: &'a str,
        resume: &'a str,
        grace: u64,
        peers: &'a [PeerInfo],
        grants: &'a [&'static str],
        /// `"mesh"` or `"sfu"`: how the room's media flows now.
        topology: &'static str,
    },
    Resumed {
        protocol: u32,
        room: &'a str,
        #[serde(rename = "peerId")]
        peer_id: &'a str,
        resume: &'a str,
        peers: &'a [PeerInfo],
        gap: bool,
    },
    PeerJoined {
        seq: u64,
        peer: &'a PeerInfo,
    },
    PeerLeft {
        seq: u64,
        #[serde(rename = "peerId")]
        peer_id: &'a str,
        reason: LeaveReason,
    },
    Offer {
        seq: u64,
        from: &'a str,
        sdp: &'a RawValue,
    },
    Answer {
        seq: u64,
        from: &'a str,
        sdp: &'a RawValue,
    },
    Candidate {
        seq: u64,
        from: &'a str,
        candidate: &'a RawValue,
    },
    Message {
        seq: u64,
        from: &'a str,
        data: &'a RawValue,
    },
    Pong {
        #[serde(serialize_with = "raw_or_null")]
        id: Option<&'a RawValue>,
    },
    Left,
    Error {
        #[serde(serialize_with = "error_code")]
        code: ErrorCode,
        reason: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a RawValue>,
        fatal: bool,
    },
    Hello {
        conn: &'a str,
        protocol: u32,
    },
}

fn raw_or_null<S: Serializer>(v: &Option<&RawValue>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(r) => r.serialize(s),
        None => s.serialize_unit(),
    }
}

fn error_code<S: Serializer>(c: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

impl ServerMessage<'_> {
    /// A relayed message from `from` with its payload.
    pub fn relay<'a>(
        kind: RelayKind,
        seq: u64,
        from: &'a str,
        payload: &'a RawValue,
    ) -> ServerMessage<'a> {
        match kind {
            RelayKind::Offer => ServerMessage::Offer {
                seq,
                from,
                sdp: payload,
            },
            RelayKind::Answer => ServerMessage::Answer {
                seq,
                from,
                sdp: payload,
            },
            RelayKind::Candidate => ServerMessage::Candidate {
                seq,
                from,
                candidate: payload,
            },
            RelayKind::Message => ServerMessage::Message {
                seq,
                from,
                data: payload,
            },
        }
    }

    /// About how long the text is, so that it is written without reallocating.
    fn size_hint(&self) -> usize {
        match self {
            ServerMessage::Offer { from, sdp: p, .. }
            | ServerMessage::Answer { from, sdp: p, .. }
            | ServerMessage::Candidate {
                from, candidate: p, ..
            }
            | ServerMessage::Message { from, data: p, .. } => 64 + from.len() + p.get().len(),
            ServerMessage::Joined { peers, .. } | ServerMessage::Resumed { peers, .. } => {
                256 + 96 * peers.len()
            }
            ServerMessage::Error { reason, .. } => 96 + reason.len(),
            _ => 128,
        }
    }

    /// The JSON text, rendered once and shared by every queue and buffer that holds it.
    pub fn render(&self) -> Arc<str> {
        let mut text = Vec::with_capacity(self.size_hint());
        let written = serde_json::to_writer(&mut text, self);
        match written.ok().and_then(|()| String::from_utf8(text).ok()) {
            Some(s) => Arc::from(s),
            // Strings and raw JSON always serialize; this only keeps a bug from panicking.
            None => Arc::from(
                r#"{"type":"error","code":"bad-message","reason":"internal error","fatal":false}"#,
            ),
        }
    }

    /// An `error` message as text.
    pub fn error_text(
        code: ErrorCode,
        reason: &str,
        reference: Option<&RawValue>,
        fatal: bool,
    ) -> Arc<str> {
        ServerMessage::Error {
            code,
            reason,
            reference,
            fatal,
        }
        .render()
    }

    /// The SSE `hello` event that opens a fallback stream.
    pub fn hello_text(conn: &str) -> Arc<str> {
        ServerMessage::Hello {
            conn,
            protocol: PROTOCOL_VERSION,
        }
        .render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn renders_like_protocol_v1() {
        let sdp = raw(r#""v=0\r\n""#);
        let m = ServerMessage::relay(RelayKind::Offer, 3, "pab", &sdp);
        assert_eq!(
            &*m.render(),
            r#"{"type":"offer","seq":3,"from":"pab","sdp":"v=0\r\n"}"#
        );
        let peer = PeerInfo {
            id: "p1".into(),
            name: "A \"q\"".into(),
            identity: None,
            service: None,
        };
        let m = ServerMessage::PeerJoined {
            seq: 1,
            peer: &peer,
        };
        assert_eq!(
            &*m.render(),
            r#"{"type":"peer-joined","seq":1,"peer":{"id":"p1","name":"A \"q\""}}"#
        );
        let m = ServerMessage::PeerLeft {
            seq: 2,
            peer_id: "p1",
            reason: LeaveReason::Timeout,
        };
        assert_eq!(
            &*m.render(),
            r#"{"type":"peer-left","seq":2,"peerId":"p1","reason":"timeout"}"#
        );
        assert_eq!(
            &*ServerMessage::Pong { id: None }.render(),
            r#"{"type":"pong","id":null}"#
        );
        let id = raw(r#" {"a" : 1}"#);
        assert_eq!(
            &*ServerMessage::Pong { id: Some(&id) }.render(),
            r#"{"type":"pong","id":{"a" : 1}}"#
        );
        assert_eq!(&*ServerMessage::Left.render(), r#"{"type":"left"}"#);
        let r = raw("7");
        assert_eq!(
            &*ServerMessage::error_text(ErrorCode::RoomFull, "full", Some(&r), false),
            r#"{"type":"error","code":"room-full","reason":"full","ref":7,"fatal":false}"#
        );
        assert_eq!(
            &*ServerMessage::hello_text("c1"),
            r#"{"type":"hello","conn":"c1","protocol":1}"#
        );
    }
}
