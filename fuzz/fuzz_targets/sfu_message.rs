#![no_main]
//! See switchboard_fuzz::sfu_message.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::sfu_message::run(data));
