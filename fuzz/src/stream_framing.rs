//! Framing of STUN and ChannelData on TURN's TCP and TLS connections
//! (`switchboard_stun::next_stream_frame`, used by the stream driver).
//!
//! Input: records (see [`crate::records`]); their bodies are the chunks in which the
//! stream arrives. Checks: the frames cut from the chunks as they arrive are exactly
//! those cut from the whole stream at once (where a read boundary falls never changes
//! what the server sees); every frame has the size its header declares and at most
//! `MAX_STREAM_FRAME`; a stream is refused at the same point either way.

use crate::records::Records;
use switchboard_stun::{next_stream_frame, stream_frame_len, Message, MAX_STREAM_FRAME};

/// Frames of `stream` and where it ended: Ok(leftover bytes) or Err(offset refused).
fn frame_all(stream: &[u8]) -> (Vec<&[u8]>, Result<usize, usize>) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        match next_stream_frame(&stream[at..]) {
            Ok(Some(f)) => {
                assert!(!f.is_empty() && f.len() <= MAX_STREAM_FRAME);
                assert_eq!(stream_frame_len(f), Ok(Some(f.len())));
                frames.push(f);
                at += f.len();
            }
            Ok(None) => return (frames, Ok(stream.len() - at)),
            Err(_) => return (frames, Err(at)),
        }
    }
}

pub fn run(data: &[u8]) {
    let chunks: Vec<&[u8]> = Records::new(data).map(|r| r.body).collect();
    let stream: Vec<u8> = chunks.concat();
    let (whole, end) = frame_all(&stream);

    // As a reader sees it: a buffer that grows by one chunk per read.
    let mut buf: Vec<u8> = Vec::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut consumed = 0;
    let mut refused = None;
    'chunks: for c in chunks {
        buf.extend_from_slice(c);
        loop {
            match next_stream_frame(&buf) {
                Ok(Some(f)) => {
                    let n = f.len();
                    // What the core gets: parse must cope with any frame.
                    let _ = Message::parse(f);
                    seen.push(f.to_vec());
                    buf.drain(..n);
                    consumed += n;
                }
                Ok(None) => break,
                Err(_) => {
                    refused = Some(consumed);
                    break 'chunks;
                }
            }
        }
    }
    assert_eq!(
        seen.len(),
        whole.len(),
        "frame count depends on read boundaries"
    );
    for (a, b) in seen.iter().zip(&whole) {
        assert_eq!(a.as_slice(), *b);
    }
    match end {
        Ok(left) => {
            assert_eq!(refused, None);
            assert_eq!(buf.len(), left);
        }
        Err(at) => assert_eq!(refused, Some(at)),
    }
}
