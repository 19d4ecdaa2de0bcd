//! The server end to end over real sockets (the real binary on ephemeral ports): TURN,
//! STUN, signaling and the HTTP APIs. One test binary for all of them: each binary is a
//! link of its own, and a link costs more than the tests of most of these files take.
//!
//! - `calls`: direct calls between signed-in users (lines, ringing, answers, ends);
//! - `federation`: direct calls between two servers over XMPP (two prosody, root);
//! - `demux`: TURN and HTTPS on one port (`--turn-on-http-port`);
//! - `ice`, `ice_access`: `/api/ice-servers` and who gets relay credentials;
//! - `nettest`: the app's network test API;
//! - `ops`: SIGHUP, SIGTERM, RFC 5780, IPv6;
//! - `security`: relaying limits, quotas, credentials;
//! - `signal`: signaling over WebSocket and SSE;
//! - `stream`: STUN over TCP and TLS;
//! - `tcp_relay`: RFC 6062 TCP relaying.

#[path = "../common/mod.rs"]
mod common;

mod calls;
mod demux;
mod federation;
mod ice;
mod ice_access;
mod nettest;
mod ops;
mod security;
mod signal;
mod stream;
mod tcp_relay;
