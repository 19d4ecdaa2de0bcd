//! RTP and RTCP (RFC 3550) read and written in place, RFC 5761 demultiplexing, and a rewriter
//! that keeps one continuous stream across source changes.
//!
//! Hand-written rather than taken from a crate: the SIP leg only needs the fixed header, the
//! payload range and a minimal RTCP (SR/RR/SDES CNAME/BYE), and it needs them without copying
//! a packet into an owned struct (webrtc-rs' `rtp` allocates `Bytes` per packet). Everything
//! here works on the caller's buffer.

use std::time::Instant;
use thiserror::Error;

/// Why a packet could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than its headers say.
    #[error("packet truncated")]
    Truncated,
    /// Version field is not 2.
    #[error("RTP version {0} (expected 2)")]
    BadVersion(u8),
    /// Padding count is zero or larger than the payload.
    #[error("bad padding")]
    BadPadding,
    /// A field does not fit its bits (payload type > 127, report count > 31, CNAME > 255).
    #[error("field out of range")]
    OutOfRange,
    /// The output buffer is too small.
    #[error("buffer too small")]
    BufferTooSmall,
}

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// The fields of an RTP header and where the payload sits in the packet it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (0..=127).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Number of CSRCs (0..=15).
    pub csrc_count: u8,
    /// Whether a header extension was present (skipped).
    pub has_extension: bool,
    /// Offset of the payload (after CSRCs and extension).
    pub payload_start: usize,
    /// End of the payload (before padding).
    pub payload_end: usize,
}

impl RtpHeader {
    /// Reads the header of `packet`.
    pub fn parse(packet: &[u8]) -> Result<RtpHeader, RtpError> {
        let mut header = Self::parse_ignoring_padding(packet)?;
        if packet[0] & 0x20 != 0 {
            let pad = usize::from(packet[packet.len() - 1]);
            if pad == 0 || pad > packet.len() - header.payload_start {
                return Err(RtpError::BadPadding);
            }
            header.payload_end -= pad;
        }
        Ok(header)
    }

    /// Reads the header without looking at the padding count, which SRTP encrypts (so it is
    /// unreadable before decryption); `payload_end` is then the end of the packet.
    pub fn parse_ignoring_padding(packet: &[u8]) -> Result<RtpHeader, RtpError> {
        let fixed = packet.get(..RTP_HEADER_LEN).ok_or(RtpError::Truncated)?;
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let csrc_count = fixed[0] & 0x0F;
        let has_extension = fixed[0] & 0x10 != 0;
        let mut start = RTP_HEADER_LEN + 4 * usize::from(csrc_count);
        if has_extension {
            let ext = packet.get(start..start + 4).ok_or(RtpError::Truncated)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        if start > packet.len() {
            return Err(RtpError::Truncated);
        }
        Ok(RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc_count,
            has_extension,
            payload_start: start,
            payload_end: packet.len(),
        })
    }

    /// Offset where the header (CSRCs and extension included) ends: what SRTP leaves in clear.
    pub fn header_len(&self) -> usize {
        self.payload_start
    }
}

/// Writes a 12-byte RTP header (no CSRC, no extension, no padding) at the start of `buf`;
/// returns its length, so the payload goes at `buf[12..]`.
pub fn write_rtp_header(
    buf: &mut [u8],
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) -> Result<usize, RtpError> {
    if payload_type > 127 {
        return Err(RtpError::OutOfRange);
    }
    let out = buf
        .get_mut(..RTP_HEADER_LEN)
        .ok_or(RtpError::BufferTooSmall)?;
    out[0] = 0x80;
    out[1] = (u8::from(marker) << 7) | payload_type;
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(RTP_HEADER_LEN)
}

/// What a datagram on a muxed RTP/RTCP port is (RFC 5761 §4, RFC 7983 for the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// RTP (or SRTP).
    Rtp,
    /// RTCP (or SRTCP): the second byte is 192..=223 (RTCP types 200–204 and their
    /// neighbours, which RFC 5761 keeps out of the RTP payload-type space).
    Rtcp,
    /// Not RTP version 2 (STUN, DTLS, garbage).
    Other,
}

/// Classifies a datagram received on a port carrying both RTP and RTCP.
pub fn demux(packet: &[u8]) -> PacketKind {
    match packet {
        [first, second, ..] if packet.len() >= 8 && first >> 6 == 2 => {
            if (192..=223).contains(second) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Other,
    }
}

/// RTCP packet types read or written here (RFC 3550 §12.1).
pub mod rtcp_type {
    /// Sender report.
    pub const SR: u8 = 200;
    /// Receiver report.
    pub const RR: u8 = 201;
    /// Source description.
    pub const SDES: u8 = 202;
    /// Goodbye.
    pub const BYE: u8 = 203;
}

/// One packet of an RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    /// Packet type (see [`rtcp_type`]).
    pub packet_type: u8,
    /// The 5-bit count field (report count for SR/RR, source count for SDES/BYE).
    pub count: u8,
    /// The whole packet, header included, padding excluded.
    pub bytes: &'a [u8],
}

/// A report block of an SR or RR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub last_sr: u32,
    /// Delay since the last SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

const REPORT_BLOCK_LEN: usize = 24;

impl ReportBlock {
    fn read(b: &[u8]) -> ReportBlock {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative loss.
        let lost = ((u32::from_be_bytes([0, b[5], b[6], b[7]]) << 8) as i32) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost: lost,
            highest_sequence: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32;
        b[4] = self.fraction_lost;
        b[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
        b[8..12].copy_from_slice(&self.highest_sequence.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        b[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// The sender-info part of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low 32).
    pub ntp_timestamp: u64,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

impl<'a> RtcpPacket<'a> {
    /// SSRC of the sender (SR/RR/BYE first source), if the packet is long enough.
    pub fn sender_ssrc(&self) -> Option<u32> {
        let b = self.bytes.get(4..8)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The sender info of an SR.
    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.packet_type != rtcp_type::SR {
            return None;
        }
        let b = self.bytes.get(8..28)?;
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(SenderInfo {
            ntp_timestamp: (u64::from(word(0)) << 32) | u64::from(word(4)),
            rtp_timestamp: word(8),
            packet_count: word(12),
            octet_count: word(16),
        })
    }

    /// The report blocks of an SR or RR (empty for other types or truncated packets).
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        let start = match self.packet_type {
            rtcp_type::SR => 28,
            rtcp_type::RR => 8,
            _ => usize::MAX,
        };
        let count = usize::from(self.count);
        let blocks = start
            .checked_add(count * REPORT_BLOCK_LEN)
            .and_then(|end| self.bytes.get(start..end))
            .unwrap_or(&[]);
        blocks.chunks_exact(REPORT_BLOCK_LEN).map(ReportBlock::read)
    }
}

/// Walks the packets of a compound RTCP packet; stops (yielding an error once) at a malformed
/// one.
pub fn rtcp_packets(compound: &[u8]) -> RtcpIter<'_> {
    RtcpIter {
        rest: compound,
        failed: false,
    }
}

/// Iterator returned by [`rtcp_packets`].
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let result = self.read_one();
        self.failed = result.is_err();
        Some(result)
    }
}

impl<'a> RtcpIter<'a> {
    fn read_one(&mut self) -> Result<RtcpPacket<'a>, RtpError> {
        let header = self.rest.get(..4).ok_or(RtpError::Truncated)?;
        if header[0] >> 6 != 2 {
            return Err(RtpError::BadVersion(header[0] >> 6));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let bytes = self.rest.get(..len).ok_or(RtpError::Truncated)?;
        let mut end = len;
        if header[0] & 0x20 != 0 {
            let pad = usize::from(bytes[len - 1]);
            if pad == 0 || pad > len - 4 {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        self.rest = &self.rest[len..];
        Ok(RtcpPacket {
            packet_type: header[1],
            count: header[0] & 0x1F,
            bytes: &bytes[..end],
        })
    }
}

fn rtcp_header(buf: &mut [u8], count: usize, packet_type: u8, len: usize) -> Result<(), RtpError> {
    if count > 31 {
        return Err(RtpError::OutOfRange);
    }
    let out = buf.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
    out[0] = 0x80 | count as u8;
    out[1] = packet_type;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    Ok(())
}

/// Writes an RR at the start of `buf`; returns its length.
pub fn write_receiver_report(
    buf: &mut [u8],
    sender_ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtpError> {
    let len = 8 + REPORT_BLOCK_LEN * blocks.len();
    rtcp_header(buf, blocks.len(), rtcp_type::RR, len)?;
    buf[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    for (i, block) in blocks.iter().enumerate() {
        block.write(&mut buf[8 + i * REPORT_BLOCK_LEN..]);
    }
    Ok(len)
}

/// Writes an SR at the start of `buf`; returns its length.
pub fn write_sender_report(
    buf: &mut [u8],
    sender_ssrc: u32,
    info: &SenderInfo,
    blocks: &[ReportBlock],
) -> Result<usize, RtpError> {
    let len = 28 + REPORT_BLOCK_LEN * blocks.len();
    rtcp_header(buf, blocks.len(), rtcp_type::SR, len)?;
    buf[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    buf[8..16].copy_from_slice(&info.ntp_timestamp.to_be_bytes());
    buf[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
    buf[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
    buf[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
    for (i, block) in blocks.iter().enumerate() {
        block.write(&mut buf[28 + i * REPORT_BLOCK_LEN..]);
    }
    Ok(len)
}

/// Writes an SDES with one chunk carrying a CNAME (required in every compound packet).
pub fn write_sdes_cname(buf: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtpError> {
    if cname.len() > 255 {
        return Err(RtpError::OutOfRange);
    }
    // header 4 + SSRC 4 + type 1 + length 1 + text + at least one null, padded to 32 bits.
    let len = (4 + 4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    rtcp_header(buf, 1, rtcp_type::SDES, len)?;
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    buf[8] = 1; // CNAME
    buf[9] = cname.len() as u8;
    buf[10..10 + cname.len()].copy_from_slice(cname);
    buf[10 + cname.len()..len].fill(0);
    Ok(len)
}

/// Writes a BYE for one source.
pub fn write_bye(buf: &mut [u8], ssrc: u32) -> Result<usize, RtpError> {
    rtcp_header(buf, 1, rtcp_type::BYE, 8)?;
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    Ok(8)
}

/// Rewrites sequence number, timestamp and SSRC so that the receiver sees one continuous
/// stream while the source behind it changes (early media → final dialog, re-INVITE, a new
/// phone after a transfer), like Janus' `janus_rtp_header_update`.
///
/// A source change is an SSRC the rewriter has not seen last, or an explicit
/// [`StreamRewriter::source_changed`]. The new source then continues at the last output
/// sequence + 1, and at the last output timestamp advanced by the wall-clock time since that
/// packet (at least one frame), so the receiver's jitter buffer neither stalls nor jumps.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    out_ssrc: u32,
    clock_rate: u32,
    min_step: u32,
    state: Option<RewriteState>,
    force_switch: bool,
}

#[derive(Debug, Clone, Copy)]
struct RewriteState {
    in_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    last_at: Instant,
}

impl StreamRewriter {
    /// A rewriter emitting `out_ssrc`; `clock_rate` converts wall-clock gaps to timestamp
    /// units and `frame_ticks` is the minimum timestamp step at a switch (e.g. 160 for 20 ms
    /// at 8 kHz).
    pub fn new(out_ssrc: u32, clock_rate: u32, frame_ticks: u32) -> StreamRewriter {
        StreamRewriter {
            out_ssrc,
            clock_rate,
            min_step: frame_ticks.max(1),
            state: None,
            force_switch: false,
        }
    }

    /// Treats the next packet as the start of a new source even if its SSRC is unchanged (a
    /// re-INVITE to a peer that reuses its SSRC but restarts its sequence).
    pub fn source_changed(&mut self) {
        self.force_switch = true;
    }

    /// Rewrites the RTP packet in place.
    pub fn rewrite(&mut self, packet: &mut [u8], now: Instant) -> Result<(), RtpError> {
        let header = RtpHeader::parse(packet)?;
        let state = match self.state {
            Some(s) if s.in_ssrc == header.ssrc && !self.force_switch => s,
            previous => {
                self.force_switch = false;
                let (out_seq, out_ts) = match previous {
                    None => (header.sequence, header.timestamp),
                    Some(p) => {
                        let elapsed = now.saturating_duration_since(p.last_at);
                        let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u64;
                        let step = ticks.clamp(u64::from(self.min_step), u64::from(u32::MAX / 2));
                        (
                            p.last_out_seq.wrapping_add(1),
                            p.last_out_ts.wrapping_add(step as u32),
                        )
                    }
                };
                RewriteState {
                    in_ssrc: header.ssrc,
                    seq_offset: out_seq.wrapping_sub(header.sequence),
                    ts_offset: out_ts.wrapping_sub(header.timestamp),
                    last_out_seq: out_seq,
                    last_out_ts: out_ts,
                    last_at: now,
                }
            }
        };
        let out_seq = header.sequence.wrapping_add(state.seq_offset);
        let out_ts = header.timestamp.wrapping_add(state.ts_offset);
        packet[2..4].copy_from_slice(&out_seq.to_be_bytes());
        packet[4..8].copy_from_slice(&out_ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.out_ssrc.to_be_bytes());
        let mut next = state;
        // Only a newer packet moves the continuation point (a reordered one must not).
        if (out_seq.wrapping_sub(state.last_out_seq) as i16) >= 0 {
            next.last_out_seq = out_seq;
            next.last_out_ts = out_ts;
            next.last_at = now;
        }
        self.state = Some(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
