#![no_main]
//! See switchboard_fuzz::natprobe_response.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::natprobe_response::run(data));
