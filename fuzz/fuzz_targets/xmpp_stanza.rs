#![no_main]
//! See switchboard_fuzz::xmpp_stanza.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::xmpp_stanza::run(data));
