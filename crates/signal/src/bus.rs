//! The messages signaling nodes send each other over the cluster bus, and their bytes.
//!
//! A client's connection is held by one node (the "bridge") and its room by another (the
//! "owner"). The bridge sends the owner what the client sends; the owner sends the bridge
//! what the client must get. A message is a tag byte, the bridge's connection number
//! (8 bytes, little-endian) and the rest, kept as the client's own JSON text: nothing is
//! parsed twice or escaped.

use crate::hub::ConnId;
use crate::protocol::ErrorCode;

/// One message between the nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BusMessage<'a> {
    /// Bridge to owner: a new client connection with its first room message (`join` or
    /// `resume`).
    Open { conn: ConnId, text: &'a str },
    /// Bridge to owner: a client message.
    Text { conn: ConnId, text: &'a str },
    /// Bridge to owner: the client's transport ended.
    Gone { conn: ConnId },
    /// Bridge to owner: an error the bridge's transport found (origin, size, binary).
    Report {
        conn: ConnId,
        code: ErrorCode,
        fatal: bool,
        reason: &'a str,
    },
    /// Owner to bridge: a text for the client.
    Out { conn: ConnId, text: &'a str },
    /// Owner to bridge: close the client's transport with this WebSocket code.
    Close { conn: ConnId, code: u16 },
    /// Owner to bridge: this node does not own the room of `text` (a `join` or `resume`);
    /// the connection is forgotten here, route the message again.
    Redirect { conn: ConnId, text: &'a str },
    /// Bridge to owner: a service participant of the bridge joins a room of the owner
    /// (`text`: [`crate::remote_service`]'s open request).
    ServiceOpen { conn: ConnId, text: &'a str },
    /// Bridge to owner: the service participant sends a relay (its send request).
    ServiceSend { conn: ConnId, text: &'a str },
    /// Bridge to owner: the service participant left.
    ServiceLeave { conn: ConnId },
    /// Owner to bridge: the answer to its open, or an event of its room.
    ServiceEvent { conn: ConnId, text: &'a str },
    /// Owner to bridge: room `text` is an SFU room and the bridge has members in it (an
    /// SFU edge may serve them there). `conn` is 0.
    EdgeWanted { conn: ConnId, text: &'a str },
}

const OPEN: u8 = 1;
const TEXT: u8 = 2;
const GONE: u8 = 3;
const REPORT: u8 = 4;
const OUT: u8 = 5;
const CLOSE: u8 = 6;
const REDIRECT: u8 = 7;
const SERVICE_OPEN: u8 = 8;
const SERVICE_SEND: u8 = 9;
const SERVICE_LEAVE: u8 = 10;
const SERVICE_EVENT: u8 = 11;
const EDGE_WANTED: u8 = 12;

impl<'a> BusMessage<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (tag, conn, rest): (u8, ConnId, &[u8]) = match self {
            BusMessage::Open { conn, text } => (OPEN, *conn, text.as_bytes()),
            BusMessage::Text { conn, text } => (TEXT, *conn, text.as_bytes()),
            BusMessage::Gone { conn } => (GONE, *conn, &[]),
            BusMessage::Report { conn, reason, .. } => (REPORT, *conn, reason.as_bytes()),
            BusMessage::Out { conn, text } => (OUT, *conn, text.as_bytes()),
            BusMessage::Close { conn, .. } => (CLOSE, *conn, &[]),
            BusMessage::Redirect { conn, text } => (REDIRECT, *conn, text.as_bytes()),
            BusMessage::ServiceOpen { conn, text } => (SERVICE_OPEN, *conn, text.as_bytes()),
            BusMessage::ServiceSend { conn, text } => (SERVICE_SEND, *conn, text.as_bytes()),
            BusMessage::ServiceLeave { conn } => (SERVICE_LEAVE, *conn, &[]),
            BusMessage::ServiceEvent { conn, text } => (SERVICE_EVENT, *conn, text.as_bytes()),
            BusMessage::EdgeWanted { conn, text } => (EDGE_WANTED, *conn, text.as_bytes()),
        };
        let mut b = Vec::with_capacity(1 + 8 + 2 + rest.len());
        b.push(tag);
        b.extend_from_slice(&conn.to_le_bytes());
        match self {
            BusMessage::Report { code, fatal, .. } => {
                b.push(code.index() as u8);
                b.push(u8::from(*fatal));
            }
            BusMessage::Close { code, .. } => b.extend_from_slice(&code.to_le_bytes()),
            _ => {}
        }
        b.extend_from_slice(rest);
        b
    }

    /// None for bytes that are not a message of this version (logged by the caller).
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<BusMessage<'a>> {
        let (&tag, rest) = bytes.split_first()?;
        let conn = ConnId::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let rest = &rest[8..];
        let text = || std::str::from_utf8(rest).ok();
        Some(match tag {
            OPEN => BusMessage::Open {
                conn,
                text: text()?,
            },
            TEXT => BusMessage::Text {
                conn,
                text: text()?,
            },
            GONE => BusMessage::Gone { conn },
            REPORT => {
                let (&code, rest) = rest.split_first()?;
                let (&fatal, rest) = rest.split_first()?;
                BusMessage::Report {
                    conn,
                    code: *ErrorCode::ALL.get(usize::from(code))?,
                    fatal: fatal != 0,
                    reason: std::str::from_utf8(rest).ok()?,
                }
            }
            OUT => BusMessage::Out {
                conn,
                text: text()?,
            },
            CLOSE => BusMessage::Close {
                conn,
                code: u16::from_le_bytes(rest.get(..2)?.try_into().ok()?),
            },
            REDIRECT => BusMessage::Redirect {
                conn,
                text: text()?,
            },
            SERVICE_OPEN => BusMessage::ServiceOpen {
                conn,
                text: text()?,
            },
            SERVICE_SEND => BusMessage::ServiceSend {
                conn,
                text: text()?,
            },
            SERVICE_LEAVE => BusMessage::ServiceLeave { conn },
            SERVICE_EVENT => BusMessage::ServiceEvent {
                conn,
                text: text()?,
            },
            EDGE_WANTED => BusMessage::EdgeWanted {
                conn,
                text: text()?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        let msgs = [
            BusMessage::Open {
                conn: 7,
                text: r#"{"type":"join","room":"r"}"#,
            },
            BusMessage::Text {
                conn: u64::MAX,
                text: "é",
            },
            BusMessage::Gone { conn: 0 },
            BusMessage::Report {
                conn: 3,
                code: ErrorCode::TooLarge,
                fatal: true,
                reason: "too big",
            },
            BusMessage::Out { conn: 9, text: "" },
            BusMessage::Close {
                conn: 9,
                code: 1012,
            },
            BusMessage::Redirect {
                conn: 1,
                text: "{}",
            },
            BusMessage::ServiceOpen {
                conn: 2,
                text: r#"{"room":"r"}"#,
            },
            BusMessage::ServiceSend {
                conn: 3,
                text: "{}",
            },
            BusMessage::ServiceLeave { conn: 4 },
            BusMessage::ServiceEvent {
                conn: 5,
                text: "[]",
            },
            BusMessage::EdgeWanted { conn: 0, text: "r" },
        ];
        for m in msgs {
            let bytes = m.encode();
            assert_eq!(BusMessage::decode(&bytes), Some(m));
        }
    }

    #[test]
    fn junk_is_refused_not_a_panic() {
        for junk in [
            &b""[..],
            &[1],
            &[1, 0, 0, 0, 0, 0, 0, 0],
            &[99, 0, 0, 0, 0, 0, 0, 0, 0],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0xff],
            &[4, 0, 0, 0, 0, 0, 0, 0, 0, 200, 0],
            &[6, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(BusMessage::decode(junk), None, "{junk:?}");
        }
    }
}
