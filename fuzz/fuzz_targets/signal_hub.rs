#![no_main]
//! See switchboard_fuzz::signal_hub.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::signal_hub::run(data));
