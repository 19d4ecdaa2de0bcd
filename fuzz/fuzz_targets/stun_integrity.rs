#![no_main]
//! See switchboard_fuzz::stun_integrity.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::stun_integrity::run(data));
