#![no_main]
//! See switchboard_fuzz::media_bridge.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::media_bridge::run(data));
