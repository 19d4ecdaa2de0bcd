//! Sans-IO NAT behaviour discovery (RFC 5780 §4) with verdicts in RFC 4787 terms.
//!
//! [`Probe`] is fed datagrams and time and hands back the Binding requests to send;
//! when it is done, [`Probe::report`] says how the NAT maps (§4.3: tests I, II to the
//! server's other IP, III to its other IP and port), how it filters (§4.4: CHANGE-REQUEST
//! for a new IP and port, then for a new port only), whether it hairpins, and what that
//! means for calls ([`Report::verdict`]). The driver owns three UDP sockets ([`Sock`]):
//! one for the mapping tests, a fresh one for the filtering tests (so the mapping tests'
//! traffic to the other address cannot open the filter, RFC 5780 §4.4's warning about
//! prior state), and one that sends to the first socket's public address to see whether
//! the NAT loops it back (hairpinning, RFC 4787 REQ-9). Independent tests run at the
//! same time, so a probe takes about one request timeout (3.5 s with the defaults).
//!
//! A crate of its own rather than a module of `switchboard-stun` or `switchboard-turn`:
//! the STUN crate is a codec without state or clocks, kept small because it sits on the
//! server's hot path, and the TURN crate is the server core; this is client-side
//! measurement with its own state machine and verdict wording, used by the
//! `switchboard nat-probe` command and reusable by any other client (a load generator,
//! a diagnostics page) without pulling in the server.

#![forbid(unsafe_code)]

mod probe;
mod report;

pub use probe::{Probe, ProbeConfig, Sock, Transmit, CHANGE_IP, CHANGE_PORT};
pub use report::{Behaviour, Direct, Report, Udp};
