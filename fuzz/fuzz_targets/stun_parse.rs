#![no_main]
//! See switchboard_fuzz::stun_parse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::stun_parse::run(data));
