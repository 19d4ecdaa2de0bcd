//! TURN ChannelData framing (RFC 8656 §12.4).

/// Lowest valid channel number.
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest accepted channel number. RFC 8656 narrowed the range to 0x4000..=0x4FFF,
/// but RFC 5766 clients (coturn's own tools among them) still pick up to 0x7FFF; the
/// whole 0x4000..=0x7FFF range stays unambiguous against STUN, DTLS and RTP, so it is
/// accepted.
pub const CHANNEL_MAX: u16 = 0x7FFF;

/// A parsed ChannelData message borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub payload: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parse a ChannelData message. Over UDP the datagram may carry padding after the
    /// payload; `parse` ignores it. Returns None when the header is invalid or the
    /// declared length exceeds the buffer.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> Option<Self> {
        if buf.len() < 4 {
            return None;
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
            return None;
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        let payload = buf.get(4..4 + len)?;
        Some(ChannelData { channel, payload })
    }

    /// Total framed size over a stream transport (payload padded to 4 bytes).
    pub fn stream_frame_len(header: &[u8; 4]) -> usize {
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        4 + ((len + 3) & !3)
    }

    /// Write the 4-byte header for a payload of `len` bytes.
    #[inline]
    pub fn write_header(channel: u16, len: u16, out: &mut [u8; 4]) {
        out[0..2].copy_from_slice(&channel.to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_reject() {
        let b = [0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0];
        let cd = ChannelData::parse(&b).unwrap();
        assert_eq!(cd.channel, 0x4001);
        assert_eq!(cd.payload, &[1, 2, 3]);
        assert!(ChannelData::parse(&[0x80, 0, 0, 0]).is_none());
        assert!(ChannelData::parse(&[0x3F, 0xFF, 0, 0]).is_none());
        assert!(ChannelData::parse(&[0x40, 0, 0, 9, 1]).is_none());
        assert_eq!(ChannelData::stream_frame_len(&[0x40, 0, 0, 5]), 12);
    }
}
