//! Sans-IO STUN message codec (RFC 8489, RFC 8656 attributes, RFC 5780 attributes).
//!
//! Written in-house rather than taken from a crate because STUN parsing sits on the
//! hottest path of the server (every Binding request and every TURN Send/Data
//! indication) and must be zero-copy and allocation-free: [`Message::parse`] walks
//! the attribute list once and records where each known attribute lives, and
//! [`MessageWriter`] encodes into a caller-provided buffer.

#![forbid(unsafe_code)]

mod attr;
mod channel;
pub mod demux;
mod error_code;
pub mod framing;
mod header;
mod integrity;
mod parse;
mod write;

pub use attr::*;
pub use channel::{ChannelData, CHANNEL_MAX, CHANNEL_MIN};
pub use error_code::{reason_phrase, ErrorCode};
pub use framing::{next_stream_frame, stream_frame_len, NotTurnStream, MAX_STREAM_FRAME};
pub use header::{
    looks_like_stun, message_type, split_message_type, Class, Method, TransactionId, HEADER_LEN,
    MAGIC_COOKIE,
};
pub use integrity::{hmac_sha1, hmac_sha256, long_term_key_md5, long_term_key_sha256};
pub use parse::{Message, ParseError, RawAttr};
pub use write::{MessageWriter, WriteError};
