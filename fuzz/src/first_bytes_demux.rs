//! The shared HTTPS/TURN port's first-bytes sort (`switchboard_stun::demux::classify`,
//! RFC 7443): STUN, TLS, an HTTP request line, or neither.
//!
//! Checks: a decision made on a prefix holds for every longer input (the driver decides
//! on what it has peeked so far); more bytes are asked for only while fewer than
//! `HEAD` have arrived; each verdict matches what its bytes are (a STUN verdict has the
//! magic cookie, TLS a handshake record of version 3, HTTP an upper-case method and a
//! space), and a STUN verdict frames as STUN on the stream.

use switchboard_stun::demux::{classify, First, HEAD};
use switchboard_stun::{stream_frame_len, MAGIC_COOKIE};

pub fn run(data: &[u8]) {
    let full = classify(data);
    if full == First::More {
        assert!(
            data.len() < HEAD,
            "asks for more after {} bytes",
            data.len()
        );
    }
    for k in 0..=data.len().min(2 * HEAD) {
        let early = classify(&data[..k]);
        if early != First::More {
            assert_eq!(
                early, full,
                "decided {early:?} at {k} bytes, {full:?} on all of them"
            );
        }
    }
    match full {
        First::Stun => {
            assert_eq!(data[0] >> 6, 0);
            assert_eq!(data[4..8], MAGIC_COOKIE.to_be_bytes());
            assert!(matches!(stream_frame_len(data), Ok(Some(n)) if n >= 20));
        }
        First::Tls => assert_eq!(data[..2], [0x16, 3]),
        First::Http => {
            let head = &data[..data.len().min(HEAD)];
            let sp = head.iter().position(|&c| c == b' ').expect("a space");
            assert!((3..=7).contains(&sp) && head[..sp].iter().all(u8::is_ascii_uppercase));
        }
        First::Unknown | First::More => {}
    }
}
