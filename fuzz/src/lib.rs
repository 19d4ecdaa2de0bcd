//! The fuzz targets' logic, one module per target (`fuzz_targets/<name>.rs` only calls
//! `<name>::run`). Each target asserts the invariants a user of that parser relies on,
//! not just "no panic": see the module docs. The input formats are documented in
//! [`records`] and in each module, so that corpora can be seeded from real traffic
//! (`fuzz/corpus.py`).

pub mod first_bytes_demux;
pub mod media_bridge;
pub mod natprobe_response;
pub mod records;
pub mod sfu_message;
pub mod signal_hub;
pub mod sip_message;
pub mod sip_sdp;
pub mod sip_transaction;
pub mod sip_ua;
pub mod stream_framing;
pub mod stun_integrity;
pub mod stun_parse;
pub mod turn_server;
pub mod xmpp_jingle;
pub mod xmpp_stanza;
