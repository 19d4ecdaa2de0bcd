//! Sorting a TCP connection by its first bytes, for a port that several protocols
//! share (RFC 7443: HTTPS and TURN on 443): a STUN message, a TLS handshake record, or
//! an HTTP request line. Pure byte logic, used by the server's shared-port driver
//! (peeked bytes before TLS, decrypted bytes after a handshake without ALPN) and
//! fuzzed on its own.
//!
//! A decision, once made on a prefix, never changes when more bytes arrive; only
//! [`First::More`] asks for more. At most [`HEAD`] bytes are looked at.

use crate::header::MAGIC_COOKIE;

/// Bytes [`classify`] may need.
pub const HEAD: usize = 8;

/// What a connection's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// STUN: top two bits 00 and the magic cookie at bytes 4..8.
    Stun,
    /// A TLS handshake record (0x16, major version 3).
    Tls,
    /// An HTTP request line (`GET `, `POST `...).
    Http,
    /// None of those: close the connection.
    Unknown,
    /// Not enough bytes yet.
    More,
}

/// Sort a connection by its first bytes. ChannelData (first byte 0x40-0x7F) never
/// starts a connection (a channel needs an allocation first) and would be confused
/// with `GET `, so it is not taken as TURN.
pub fn classify(b: &[u8]) -> First {
    let Some(&first) = b.first() else {
        return First::More;
    };
    // A TLS handshake record (0x16) with major version 3; 0x16 also has its top bits
    // 00, so this goes before the STUN test.
    if first == 0x16 {
        match b.get(1) {
            None => return First::More,
            Some(3) => return First::Tls,
            Some(_) => {}
        }
    }
    if first >> 6 == 0 {
        let cookie = MAGIC_COOKIE.to_be_bytes();
        return match b.get(4..HEAD) {
            None if b.len() <= 4 || cookie.starts_with(&b[4..]) => First::More,
            None => First::Unknown,
            Some(c) if c == cookie => First::Stun,
            Some(_) => First::Unknown,
        };
    }
    // A request line: a method token of 3 to 7 upper-case letters and a space.
    let head = &b[..b.len().min(HEAD)];
    match head.iter().position(|&c| c == b' ') {
        Some(n) if (3..=7).contains(&n) && head[..n].iter().all(u8::is_ascii_uppercase) => {
            First::Http
        }
        None if head.len() < HEAD && head.iter().all(u8::is_ascii_uppercase) => First::More,
        _ => First::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_sort_connections() {
        let binding = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3];
        assert_eq!(classify(&binding), First::Stun);
        assert_eq!(classify(&binding[..8]), First::Stun);
        assert_eq!(classify(&binding[..6]), First::More, "cookie so far");
        assert_eq!(classify(&[0x00, 0x01, 0, 0, 0x99]), First::Unknown);
        assert_eq!(classify(&[0x00, 0x03, 0, 8, 1, 2, 3, 4]), First::Unknown);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00]), First::Tls);
        assert_eq!(classify(&[0x16]), First::More);
        assert_eq!(
            classify(&[0x16, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42]),
            First::Stun
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), First::Http);
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), First::Http);
        assert_eq!(classify(b"GE"), First::More);
        assert_eq!(classify(b"get / HTTP/1.1"), First::Unknown);
        assert_eq!(classify(b"GARBAGEGARBAGE"), First::Unknown);
        assert_eq!(classify(b"G / x"), First::Unknown);
        assert_eq!(
            classify(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]),
            First::Unknown
        );
        assert_eq!(classify(&[0xFF; 8]), First::Unknown);
        assert_eq!(classify(&[]), First::More);
    }

    #[test]
    fn a_decision_on_a_prefix_holds_for_every_longer_input() {
        let samples: [&[u8]; 5] = [
            &[0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 9],
            &[0x16, 0x03, 0x01, 0x00, 0x10],
            b"POST /signal HTTP/1.1",
            b"OPTIONSX / HTTP/1.1",
            &[0x16, 0x02, 0, 0, 0x21, 0x12, 0xA4, 0x43],
        ];
        for s in samples {
            for k in 0..=s.len() {
                let early = classify(&s[..k]);
                if early != First::More {
                    assert_eq!(classify(s), early, "{s:?} decided at {k} bytes");
                }
            }
        }
    }
}
