#![no_main]
//! See switchboard_fuzz::first_bytes_demux.
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::first_bytes_demux::run(data));
