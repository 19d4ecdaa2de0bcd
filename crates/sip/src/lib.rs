//! Sans-IO SIP for the PSTN/SIP gateway (issue 12): the message layer (parse, serialize,
//! stream framing), SIP/SIPS/tel URIs, digest authentication (client and stateless
//! server), the audio-only SDP offer/answer of the SIP leg, the RFC 3261 §17 transaction
//! layer ([`transaction::TransactionLayer`]) and dialogs ([`dialog::Dialog`]: route sets,
//! in-dialog requests, session timers, 100rel numbering) and the user agent on top
//! ([`ua::UserAgent`]: calls both ways and registrations). No sockets, threads or clocks:
//! callers pass bytes and times in. Transports come in later modules beside these.
//!
//! **Parser choice.** Evaluated on 2026-12-06: `ezk-sip-types` 0.6.5 (the best kept SIP
//! type crate) and `rsip` 0.4.0. Neither was taken, and the parser here is our own,
//! zero-copy:
//! - ezk-sip-types is edition 2024 (Rust ≥ 1.85 against the workspace's 1.80), returns
//!   `anyhow` errors from a library, copies every value into reference-counted
//!   `Bytes`/`BytesStr` rather than borrowing the datagram, pulls `lazy_static`, nom 7 and
//!   `ezk-internal`, and offers no "whole message from bytes" call: its `PullParser` yields
//!   lines and the framing/assembly lives in the async `ezk-sip-core` (tokio). Wrapping it
//!   would still leave framing, limits and errors-as-400-reasons to us.
//! - rsip: last release 2022-04, unmaintained, `md-5` 0.9 and `bstr` 0.2 (duplicates of
//!   the workspace's versions).
//! - What we need is small (start line, ordered headers, compact forms, folding, list
//!   splitting, a few typed headers) and must be fuzzed anyway; owning it keeps the types
//!   borrowed from the input and every failure a [`message::ParseError`].
//!   ezk-sip-types was not fuzzed (the points above decided first); it stays useful as a
//!   differential-fuzzing oracle later (fuzz/, `sip_message`).

pub mod dialog;
pub mod digest;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod ua;
pub mod uri;

pub use message::{Headers, Message, Method, ParseError};
pub use uri::{Host, NameAddr, Params, Scheme, Uri};
