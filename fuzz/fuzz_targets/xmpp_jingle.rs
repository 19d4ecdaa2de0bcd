#![no_main]
//! See switchboard_fuzz::xmpp_jingle.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::xmpp_jingle::run(data));
