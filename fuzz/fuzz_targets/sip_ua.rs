#![no_main]
//! See switchboard_fuzz::sip_ua.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::sip_ua::run(data));
