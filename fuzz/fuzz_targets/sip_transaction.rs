#![no_main]
//! See switchboard_fuzz::sip_transaction.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::sip_transaction::run(data));
