//! Signaling protocol v1 on the wire (docs/signaling.md): parsing client messages, the
//! error codes, and the rules for room and display names. Server messages are in
//! [`crate::wire`].
//!
//! Client messages are parsed into one flat [`Envelope`] that borrows from the input:
//! SDP, candidates and application data stay as raw JSON text and are copied into the
//! relayed message without being decoded and re-encoded.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Protocol version announced in `joined`, `resumed` and `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Every field a client message may have; which ones are required depends on `type`.
#[derive(Deserialize, Debug)]
pub struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub to: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub sdp: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub candidate: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub token: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub peer: Option<Cow<'a, str>>,
    /// `join`: `auto`, `sfu` or `mesh` (the room's creator decides).
    #[serde(borrow, default)]
    pub topology: Option<Cow<'a, str>>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(rename = "lastSeq", default)]
    pub last_seq: Option<u64>,
    #[serde(borrow, default, deserialize_with = "raw")]
    pub id: Option<&'a RawValue>,
    #[serde(rename = "ref", borrow, default, deserialize_with = "raw")]
    pub reference: Option<&'a RawValue>,
}

/// Only the `ref` of a client message, for errors about a message that is not a valid
/// [`Envelope`] (an ill-typed field) but still a JSON object.
#[derive(Deserialize, Debug)]
pub struct RefOnly<'a> {
    #[serde(rename = "ref", borrow, default, deserialize_with = "raw")]
    pub reference: Option<&'a RawValue>,
}

/// Whether `text` can only be a JSON object. serde would also read a struct from an array
/// (`["ping"]` as a ping), but the protocol's messages are objects.
pub fn is_object_text(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// A present field as raw JSON, `null` included: a plain `Option` would turn `null` into
/// `None`, and `"candidate": null` (end of candidates) or `"data": null` into a missing field.
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The kinds of client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Join,
    Resume,
    Offer,
    Answer,
    Candidate,
    Message,
    Ack,
    Ping,
    Kick,
    Leave,
}

impl Kind {
    pub fn from_wire(s: &str) -> Option<Kind> {
        Some(match s {
            "join" => Kind::Join,
            "resume" => Kind::Resume,
            "offer" => Kind::Offer,
            "answer" => Kind::Answer,
            "candidate" => Kind::Candidate,
            "message" => Kind::Message,
            "ack" => Kind::Ack,
            "ping" => Kind::Ping,
            "kick" => Kind::Kick,
            "leave" => Kind::Leave,
            _ => return None,
        })
    }

    pub fn wire(self) -> &'static str {
        match self {
            Kind::Join => "join",
            Kind::Resume => "resume",
            Kind::Offer => "offer",
            Kind::Answer => "answer",
            Kind::Candidate => "candidate",
            Kind::Message => "message",
            Kind::Ack => "ack",
            Kind::Ping => "ping",
            Kind::Kick => "kick",
            Kind::Leave => "leave",
        }
    }
}

/// Error codes of docs/signaling.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadMessage,
    TooLarge,
    RateLimited,
    NotJoined,
    AlreadyJoined,
    BadRoom,
    RoomFull,
    UnknownPeer,
    Unauthorized,
    TokenExpired,
    Forbidden,
    BadResume,
    Kicked,
    OriginNotAllowed,
    UnknownConnection,
    ServerShutdown,
    /// The cluster store is unreachable, so a room this node does not hold cannot be
    /// joined now; retry (another node may answer).
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadMessage,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadRoom,
        ErrorCode::RoomFull,
        ErrorCode::UnknownPeer,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::Forbidden,
        ErrorCode::BadResume,
        ErrorCode::Kicked,
        ErrorCode::OriginNotAllowed,
        ErrorCode::UnknownConnection,
        ErrorCode::ServerShutdown,
        ErrorCode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadRoom => "bad-room",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token-expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadResume => "bad-resume",
            ErrorCode::Kicked => "kicked",
            ErrorCode::OriginNotAllowed => "origin-not-allowed",
            ErrorCode::UnknownConnection => "unknown-connection",
            ErrorCode::ServerShutdown => "server-shutdown",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// Index into per-code counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `"…"` with JSON escaping, for error reasons that quote what the client sent.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A `ref` the server may echo: a string of at most 64 characters, or a number of at most
/// 64 characters of JSON.
pub fn valid_reference(raw: Option<&RawValue>) -> Option<&RawValue> {
    let value = raw?;
    let r = value.get();
    let ok = if r.starts_with('"') {
        serde_json::from_str::<String>(r).is_ok_and(|s| s.chars().count() <= 64)
    } else {
        r.len() <= 64 && (r.starts_with('-') || r.as_bytes()[0].is_ascii_digit())
    };
    ok.then_some(value)
}

/// Whether every `\u` escape in the raw JSON text `raw` stands for Unicode: a high
/// surrogate (`\uD800`-`\uDBFF`) directly followed by a low one (`\uDC00`-`\uDFFF`),
/// and no low one alone. serde_json checks JSON's grammar when it keeps a value raw, not
/// this; the hub relays raw values as they came, and a lone surrogate would reach peers
/// whose JSON parser refuses the whole message (serde_json, Go's, any strict one). Found
/// by the `signal_hub` fuzz target.
pub fn escapes_are_unicode(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut from = 0;
    // Where the low surrogate must start, right after a high one.
    let mut low_at: Option<usize> = None;
    while let Some(off) = b[from..].iter().position(|&c| c == b'\\') {
        let at = from + off;
        let unit = match b.get(at + 1) {
            Some(b'u') => b
                .get(at + 2..at + 6)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u16::from_str_radix(h, 16).ok()),
            Some(_) => None,
            None => return false,
        };
        let is_low = unit.is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
        match low_at {
            Some(p) if p == at && is_low => {
                low_at = None;
                from = at + 6;
                continue;
            }
            Some(_) => return false,
            None if is_low => return false,
            None => {}
        }
        if unit.is_some_and(|u| (0xD800..=0xDBFF).contains(&u)) {
            low_at = Some(at + 6);
        }
        from = at + if unit.is_some() { 6 } else { 2 };
    }
    low_at.is_none()
}

/// A room name is 1-64 characters of `A-Za-z0-9_-.`, or a line (`@user`, see
/// [`line_user`]).
pub fn valid_room(room: &str) -> bool {
    line_user(room).is_some()
        || (!room.is_empty()
            && room.len() <= 64
            && room
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
}

/// The user whose line `room` is: a line is the room `@user` (user: 1-64 of
/// `a-z0-9_-.`) that a signed-in user's devices keep open to be called; only that user
/// may join it (docs/signaling.md, "Direct calls").
pub fn line_user(room: &str) -> Option<&str> {
    let user = room.strip_prefix('@')?;
    let ok = (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    ok.then_some(user)
}

/// Whether `room` is the room of a direct call, `call-<32 hex>`: the server names them,
/// and with room tokens only a token for exactly that room admits to one.
pub fn is_call_room(room: &str) -> bool {
    room.strip_prefix("call-").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Equal secrets, compared in a time that does not depend on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Display names: 1-64 characters, no control characters.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::escapes_are_unicode;

    #[test]
    fn surrogate_escapes_must_pair() {
        for ok in [
            r#""plain""#,
            r#""\u00e9 and \ud83d\ude00""#,
            r#""\\ud800 is an escaped backslash, not an escape""#,
            r#"{"a":"\n\t\"","b":"\uDBFF\uDFFF"}"#,
            r#""\ud41c""#,
        ] {
            assert!(escapes_are_unicode(ok), "{ok}");
        }
        for bad in [
            r#""\udf89""#,
            r#""\ud83d""#,
            r#""\ud83dx\ude00""#,
            r#""\ud83d\u0041""#,
            r#""\ud83d\ud83d\ude00""#,
            r#""\u00e9\ud41c\udf89\/""#,
        ] {
            assert!(!escapes_are_unicode(bad), "{bad}");
        }
    }
}
