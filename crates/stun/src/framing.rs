//! STUN and ChannelData on a byte stream (TURN over TCP and TLS, RFC 8656 §12.5).
//!
//! Over a stream the messages follow one another with nothing in between: a STUN
//! message is its 20-byte header plus the length in it, a ChannelData message its
//! 4-byte header plus the payload padded to a multiple of 4. The first two bits tell
//! them apart (00 STUN, 01 ChannelData); anything else means the peer does not speak
//! TURN and the connection should be closed. This is pure byte logic so that it can
//! be tested (and fuzzed) without a socket; the stream drivers only keep the buffer.

/// The stream is neither STUN nor ChannelData: the first byte of the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("byte stream is neither STUN nor ChannelData (next frame starts with {0:#04x})")]
pub struct NotTurnStream(pub u8);

/// Largest frame a stream can carry: a 16-bit length plus the STUN header.
pub const MAX_STREAM_FRAME: usize = 20 + u16::MAX as usize;

/// Size of the frame at the start of `buf`: `Ok(None)` while fewer than the 4 bytes
/// that say it have arrived, else the frame's total size (which may be more than
/// `buf` holds so far).
pub fn stream_frame_len(buf: &[u8]) -> Result<Option<usize>, NotTurnStream> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    match head[0] >> 6 {
        0 => Ok(Some(crate::header::HEADER_LEN + len)),
        1 => Ok(Some(4 + ((len + 3) & !3))),
        _ => Err(NotTurnStream(head[0])),
    }
}

/// The first complete frame in `buf` (`Ok(None)` until all of it has arrived).
pub fn next_stream_frame(buf: &[u8]) -> Result<Option<&[u8]>, NotTurnStream> {
    Ok(stream_frame_len(buf)?.and_then(|n| buf.get(..n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request with an 8-byte attribute, then ChannelData with 5 bytes padded.
    fn two_frames() -> Vec<u8> {
        let mut s = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42];
        s.extend_from_slice(&[7; 12]);
        s.extend_from_slice(&[0x80, 0x22, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        s.extend_from_slice(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0]);
        s
    }

    #[test]
    fn frames_split_at_every_byte_come_out_whole() {
        let stream = two_frames();
        for cut in 0..=stream.len() {
            // Deliver the first `cut` bytes, then the rest, as a reader would.
            let mut buf = stream[..cut].to_vec();
            let mut frames = Vec::new();
            let mut fed = cut;
            loop {
                match next_stream_frame(&buf) {
                    Ok(Some(f)) => {
                        let n = f.len();
                        frames.push(f.to_vec());
                        buf.drain(..n);
                    }
                    Ok(None) if fed < stream.len() => {
                        buf.extend_from_slice(&stream[fed..]);
                        fed = stream.len();
                    }
                    Ok(None) => break,
                    Err(e) => panic!("cut {cut}: {e}"),
                }
            }
            assert_eq!(frames.len(), 2, "cut at {cut}");
            assert_eq!(frames[0], stream[..28], "cut at {cut}");
            assert_eq!(frames[1], stream[28..], "cut at {cut}");
        }
    }

    #[test]
    fn length_is_known_from_four_bytes_and_garbage_is_refused() {
        assert_eq!(stream_frame_len(&[0x00, 0x01, 0x00]), Ok(None));
        assert_eq!(stream_frame_len(&[0x00, 0x01, 0x00, 0x08]), Ok(Some(28)));
        assert_eq!(stream_frame_len(&[0x40, 0x00, 0x00, 0x00]), Ok(Some(4)));
        assert_eq!(
            stream_frame_len(&[0x7F, 0xFF, 0xFF, 0xFF]),
            Ok(Some(4 + 65536))
        );
        assert_eq!(
            stream_frame_len(&[0x00, 0x01, 0xFF, 0xFF]),
            Ok(Some(MAX_STREAM_FRAME))
        );
        // Framing looks at two bits only: an HTTP request ('G' is 0x47) frames like
        // ChannelData and a TLS record (0x16) like STUN; the core then drops them as
        // malformed. Only the two other bit patterns end the stream here.
        assert_eq!(
            stream_frame_len(&[0x16, 0x03, 0x01, 0x02]),
            Ok(Some(20 + 0x0102))
        );
        assert_eq!(
            stream_frame_len(&[0xC0, 0x00, 0x00, 0x00]),
            Err(NotTurnStream(0xC0))
        );
        assert_eq!(stream_frame_len(&[0x80, 0, 0, 0]), Err(NotTurnStream(0x80)));
        assert_eq!(next_stream_frame(&[0x40, 0x00, 0x00, 0x01, 9]), Ok(None));
    }
}
