//! RFC 4571 framing of ICE-TCP (RFC 6544): on a TCP connection every STUN message, DTLS
//! record and SRTP packet travels as a 2-byte big-endian length and that many bytes.
//! Pure byte logic so the driver only keeps the buffers (and it can be tested alone).

/// The largest payload a frame can carry.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// The first complete frame at the start of `buf`: its payload and the bytes it took
/// (2 + payload). None while incomplete.
pub fn next_frame(buf: &[u8]) -> Option<(&[u8], usize)> {
    let [hi, lo, rest @ ..] = buf else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    Some((rest.get(..len)?, 2 + len))
}

/// Append `payload` as one frame to `out`; false (nothing appended) if it is longer
/// than [`MAX_FRAME`].
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) -> bool {
    let Ok(len) = u16::try_from(payload.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_bytes() {
        let mut s = Vec::new();
        assert!(push_frame(&mut s, b"hello"));
        assert!(push_frame(&mut s, b""));
        assert!(push_frame(&mut s, &[7; 300]));
        assert!(!push_frame(&mut s, &vec![0; MAX_FRAME + 1]));
        assert_eq!(s.len(), 7 + 2 + 302);
        for cut in 0..7 {
            assert_eq!(next_frame(&s[..cut]), None, "{cut}");
        }
        assert_eq!(next_frame(&s), Some((&b"hello"[..], 7)));
        assert_eq!(next_frame(&s[7..]), Some((&b""[..], 2)));
        let (p, n) = next_frame(&s[9..]).unwrap();
        assert_eq!((p.len(), n), (300, 302));
        assert_eq!(next_frame(&s[9..310]), None);
    }
}
