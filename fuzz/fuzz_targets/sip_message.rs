#![no_main]
//! See switchboard_fuzz::sip_message.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::sip_message::run(data));
