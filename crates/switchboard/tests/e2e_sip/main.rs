//! The SIP gateway end to end, hermetic (the real binary, phones and far ends of our own
//! SIP stack, str0m room members). One test binary for all of them: each binary links
//! the SIP stack, the media crates and str0m again, so four of them cost four links.
//!
//! - `calls`: calls in (answered, refused, timed out, malformed SIP);
//! - `passthrough`: a PCMU phone and a PCMU room member, G.711 untranscoded;
//! - `rooms`: calls out of a room to several far ends;
//! - `stream`: calls out over SIP on TCP and TLS;
//! - `srtp_out`: calls out with SDES-SRTP;
//! - `dtls_out`: calls out with DTLS-SRTP + ICE;
//! - `federation`: SIP federation's rule and options, as the binary shows them;
//! - `federated_calls`: direct calls between two servers over SIP.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../../sip/tests/lab/mod.rs"]
mod lab;
#[path = "../sip_far_end/mod.rs"]
mod sip_far_end;

mod calls;
mod dtls_out;
mod federated_calls;
mod federation;
mod passthrough;
mod rooms;
mod srtp_out;
mod stream;
