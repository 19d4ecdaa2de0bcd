#![no_main]
//! See switchboard_fuzz::stream_framing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::stream_framing::run(data));
