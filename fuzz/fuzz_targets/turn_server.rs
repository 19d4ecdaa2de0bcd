#![no_main]
//! See switchboard_fuzz::turn_server.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::turn_server::run(data));
