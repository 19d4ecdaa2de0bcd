//! SDES-SRTP (RFC 3711, keys from RFC 4568 `a=crypto`): AES_CM_128_HMAC_SHA1_80 and _32,
//! protect and unprotect in place on the caller's buffer.
//!
//! Why by hand: the SIP leg needs SDES (keys from SDP), which the WebRTC stacks do not expose
//! (str0m only does DTLS-SRTP), and the C libsrtp would be the only FFI on the media path. The
//! cipher and MAC are RustCrypto's (`aes` + `ctr`, `hmac` + `sha1`); what is here is the
//! RFC 3711 glue: the AES-CM key derivation (§4.3), the packet index with its rollover counter
//! (§3.3.1, Appendix A), the 64-packet replay window (§3.3.2) and SRTCP's explicit index (§3.4).
//!
//! One [`SrtpContext`] per direction and master key: the local key protects what we send, the
//! peer's key unprotects what we receive. Per-SSRC state (ROC, replay windows, SRTCP index)
//! lives in a small table allocated at construction.

use crate::rtp::{RtpError, RtpHeader};
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes::Aes128;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use thiserror::Error;

type HmacSha1 = Hmac<Sha1>;
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// Master key length of the AES_CM_128 suites.
pub const MASTER_KEY_LEN: usize = 16;
/// Master salt length.
pub const MASTER_SALT_LEN: usize = 14;
/// SRTCP authentication tag length (80 bits for both suites, RFC 4568 §6.2).
pub const SRTCP_TAG_LEN: usize = 10;
/// SRTCP trailer: E flag + 31-bit index, then the tag.
pub const SRTCP_TRAILER_LEN: usize = 4 + SRTCP_TAG_LEN;
/// How many SSRCs one context tracks (an SDES leg carries one, a few during re-INVITEs).
pub const MAX_STREAMS: usize = 16;
const AUTH_KEY_LEN: usize = 20;
const REPLAY_WINDOW: u64 = 64;

/// Why a packet was not protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SrtpError {
    /// Master key||salt is not 30 bytes.
    #[error("SRTP master key and salt must be 30 bytes, got {0}")]
    BadKeyLength(usize),
    /// The packet is not valid RTP/RTCP.
    #[error(transparent)]
    Rtp(#[from] RtpError),
    /// The packet is too short for its header and tag.
    #[error("SRTP packet truncated")]
    Truncated,
    /// The buffer has no room for the tag / trailer.
    #[error("buffer has no room for the SRTP tag")]
    BufferTooSmall,
    /// Authentication tag mismatch (tampered packet or wrong key).
    #[error("SRTP authentication failed")]
    AuthFailed,
    /// Seen before, or older than the replay window.
    #[error("SRTP packet replayed or too old")]
    Replayed,
    /// More SSRCs than [`MAX_STREAMS`].
    #[error("too many SRTP streams")]
    TooManyStreams,
    /// The 2^31 SRTCP packets of a key are used up: rekey.
    #[error("SRTCP index exhausted")]
    IndexExhausted,
}

/// The SDES crypto suites supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// AES_CM_128_HMAC_SHA1_80: 80-bit RTP tag.
    AesCm128HmacSha1_80,
    /// AES_CM_128_HMAC_SHA1_32: 32-bit RTP tag (SRTCP keeps 80).
    AesCm128HmacSha1_32,
}

impl SrtpProfile {
    /// The suite named in `a=crypto` (RFC 4568 §6.2).
    pub fn from_sdes_name(name: &str) -> Option<SrtpProfile> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(SrtpProfile::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(SrtpProfile::AesCm128HmacSha1_32),
            _ => None,
        }
    }

    /// The `a=crypto` suite name.
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// Length of the RTP authentication tag.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => 10,
            SrtpProfile::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// Session keys derived from a master key (RFC 3711 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// AES-128 encryption key.
    pub cipher_key: [u8; 16],
    /// HMAC-SHA1 key.
    pub auth_key: [u8; AUTH_KEY_LEN],
    /// Salt mixed into each packet's IV.
    pub salt: [u8; MASTER_SALT_LEN],
}

/// Runs AES in counter mode from `iv` over `data` (XOR with the keystream): the SRTP cipher
/// (RFC 3711 §4.1.1) and its PRF.
pub fn aes_cm_apply(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let aes = Aes128::new(key.into());
    aes_cm_apply_with(&aes, iv, data);
}

fn aes_cm_apply_with(aes: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    // Reuses the expanded key: a clone of the round keys, no key schedule per packet.
    let core =
        ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(aes.clone(), iv.into());
    let mut ctr = Aes128Ctr::from_core(core);
    ctr.apply_keystream(data);
}

/// Derives the session keys for SRTP (`rtcp == false`, labels 0–2) or SRTCP (labels 3–5),
/// key derivation rate 0 (the only one SDES uses in practice).
pub fn derive_session_keys(
    master_key: &[u8; MASTER_KEY_LEN],
    master_salt: &[u8; MASTER_SALT_LEN],
    rtcp: bool,
) -> SessionKeys {
    let base = if rtcp { 3 } else { 0 };
    let aes = Aes128::new(master_key.into());
    let derive = |label: u8, out: &mut [u8]| {
        // x = (label || r) XOR master_salt, with r = 0 (kdr 0); label sits at byte 7 of the
        // 14-byte salt; IV = x * 2^16.
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(master_salt);
        iv[7] ^= label;
        out.fill(0);
        aes_cm_apply_with(&aes, &iv, out);
    };
    let mut keys = SessionKeys {
        cipher_key: [0; 16],
        auth_key: [0; AUTH_KEY_LEN],
        salt: [0; MASTER_SALT_LEN],
    };
    derive(base, &mut keys.cipher_key);
    derive(base + 1, &mut keys.auth_key);
    derive(base + 2, &mut keys.salt);
    keys
}

#[derive(Clone)]
struct DirectionKeys {
    aes: Aes128,
    mac: HmacSha1,
    salt: [u8; MASTER_SALT_LEN],
}

impl DirectionKeys {
    fn new(keys: &SessionKeys) -> Result<DirectionKeys, SrtpError> {
        Ok(DirectionKeys {
            aes: Aes128::new(&keys.cipher_key.into()),
            mac: <HmacSha1 as Mac>::new_from_slice(&keys.auth_key)
                .map_err(|_| SrtpError::BadKeyLength(keys.auth_key.len()))?,
            salt: keys.salt,
        })
    }

    /// IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16) (RFC 3711 §4.1.1).
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        iv
    }

    fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.update(trailer);
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, data: &[u8], trailer: &[u8], tag: &[u8]) -> Result<(), SrtpError> {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.update(trailer);
        mac.verify_truncated_left(tag)
            .map_err(|_| SrtpError::AuthFailed)
    }
}

/// The 64-packet sliding replay window (RFC 3711 §3.3.2).
#[derive(Debug, Clone, Copy, Default)]
struct ReplayWindow {
    started: bool,
    highest: u64,
    /// Bit i set: `highest - i` was received.
    seen: u64,
}

impl ReplayWindow {
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        if !self.started || index > self.highest {
            return Ok(());
        }
        let age = self.highest - index;
        if age >= REPLAY_WINDOW || self.seen & (1 << age) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        if !self.started {
            *self = ReplayWindow {
                started: true,
                highest: index,
                seen: 1,
            };
        } else if index > self.highest {
            let shift = index - self.highest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            } | 1;
            self.highest = index;
        } else {
            self.seen |= 1 << (self.highest - index);
        }
    }
}

/// Per-SSRC state.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// Whether an RTP packet set `highest_seq` (RTCP may create the stream first).
    rtp_started: bool,
    roc: u32,
    highest_seq: u16,
    rtp_window: ReplayWindow,
    rtcp_next_index: u32,
    rtcp_window: ReplayWindow,
}

impl Stream {
    fn new(ssrc: u32) -> Stream {
        Stream {
            ssrc,
            rtp_started: false,
            roc: 0,
            highest_seq: 0,
            rtp_window: ReplayWindow::default(),
            rtcp_next_index: 0,
            rtcp_window: ReplayWindow::default(),
        }
    }

    /// The ROC guess `v` and 48-bit index of `seq` (RFC 3711 Appendix A); `None` for a
    /// packet from before ROC 0 (older than anything this key protected).
    fn estimate(&self, seq: u16) -> Option<(u32, u64)> {
        if !self.rtp_started {
            // The first packet sets s_l, with ROC 0 (RFC 3711 §3.3.1).
            return Some((0, u64::from(seq)));
        }
        let (s_l, seq_i) = (i32::from(self.highest_seq), i32::from(seq));
        let v = if s_l < 32768 {
            if seq_i - s_l > 32768 {
                self.roc.checked_sub(1)?
            } else {
                self.roc
            }
        } else if s_l - 32768 > seq_i {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        };
        Some((v, (u64::from(v) << 16) | u64::from(seq)))
    }

    fn advance(&mut self, v: u32, seq: u16, index: u64) {
        let current = (u64::from(self.roc) << 16) | u64::from(self.highest_seq);
        if index > current || !self.rtp_started {
            self.rtp_started = true;
            self.roc = v;
            self.highest_seq = seq;
        }
    }
}

/// SRTP/SRTCP state for one direction of one master key.
#[derive(Clone)]
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: DirectionKeys,
    rtcp: DirectionKeys,
    streams: Vec<Stream>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl SrtpContext {
    /// A context from the 30-byte master key||salt of an `a=crypto` inline key.
    pub fn new(profile: SrtpProfile, master_key_salt: &[u8]) -> Result<SrtpContext, SrtpError> {
        if master_key_salt.len() != MASTER_KEY_LEN + MASTER_SALT_LEN {
            return Err(SrtpError::BadKeyLength(master_key_salt.len()));
        }
        let mut key = [0u8; MASTER_KEY_LEN];
        let mut salt = [0u8; MASTER_SALT_LEN];
        key.copy_from_slice(&master_key_salt[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&master_key_salt[MASTER_KEY_LEN..]);
        Ok(SrtpContext {
            profile,
            rtp: DirectionKeys::new(&derive_session_keys(&key, &salt, false))?,
            rtcp: DirectionKeys::new(&derive_session_keys(&key, &salt, true))?,
            streams: Vec::with_capacity(MAX_STREAMS),
        })
    }

    /// The suite of this context.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    fn stream_position(&self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.ssrc == ssrc)
    }

    fn stream_or_insert(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        if let Some(i) = self.stream_position(ssrc) {
            return Ok(i);
        }
        if self.streams.len() == MAX_STREAMS {
            return Err(SrtpError::TooManyStreams);
        }
        self.streams.push(Stream::new(ssrc));
        Ok(self.streams.len() - 1)
    }

    /// Protects the RTP packet in `buf[..len]`; `buf` must have room for the tag after it.
    /// Returns the SRTP length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        let header = RtpHeader::parse(buf.get(..len).ok_or(SrtpError::Truncated)?)?;
        if buf.len() < len + tag_len {
            return Err(SrtpError::BufferTooSmall);
        }
        let i = self.stream_or_insert(header.ssrc)?;
        let stream = &mut self.streams[i];
        let (roc, index) = stream
            .estimate(header.sequence)
            .ok_or(SrtpError::Replayed)?;
        stream.advance(roc, header.sequence, index);
        let iv = self.rtp.iv(header.ssrc, index);
        aes_cm_apply_with(&self.rtp.aes, &iv, &mut buf[header.header_len()..len]);
        let tag = self.rtp.tag(&buf[..len], &roc.to_be_bytes());
        buf[len..len + tag_len].copy_from_slice(&tag[..tag_len]);
        Ok(len + tag_len)
    }

    /// Authenticates and decrypts the SRTP packet that fills `buf`; returns the RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_tag_len();
        if buf.len() < crate::rtp::RTP_HEADER_LEN + tag_len {
            return Err(SrtpError::Truncated);
        }
        let auth_end = buf.len() - tag_len;
        let header = RtpHeader::parse_ignoring_padding(&buf[..auth_end])?;
        let known = self.stream_position(header.ssrc);
        let stream = match known {
            Some(i) => self.streams[i],
            None if self.streams.len() == MAX_STREAMS => return Err(SrtpError::TooManyStreams),
            None => Stream::new(header.ssrc),
        };
        let (roc, index) = stream
            .estimate(header.sequence)
            .ok_or(SrtpError::Replayed)?;
        stream.rtp_window.check(index)?;
        self.rtp
            .verify(&buf[..auth_end], &roc.to_be_bytes(), &buf[auth_end..])?;
        let iv = self.rtp.iv(header.ssrc, index);
        aes_cm_apply_with(&self.rtp.aes, &iv, &mut buf[header.header_len()..auth_end]);
        let mut stream = stream;
        stream.advance(roc, header.sequence, index);
        stream.rtp_window.accept(index);
        match known {
            Some(i) => self.streams[i] = stream,
            None => self.streams.push(stream),
        }
        Ok(auth_end)
    }

    /// Protects (encrypts, with the E flag) the RTCP compound packet in `buf[..len]`; `buf`
    /// must have [`SRTCP_TRAILER_LEN`] bytes of room after it. Returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::Truncated)?;
        if len < 8 || packet[0] >> 6 != 2 {
            return Err(SrtpError::Rtp(RtpError::Truncated));
        }
        if buf.len() < len + SRTCP_TRAILER_LEN {
            return Err(SrtpError::BufferTooSmall);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let i = self.stream_or_insert(ssrc)?;
        let index = self.streams[i].rtcp_next_index;
        if index > 0x7FFF_FFFF {
            return Err(SrtpError::IndexExhausted);
        }
        self.streams[i].rtcp_next_index = index + 1;
        let iv = self.rtcp.iv(ssrc, u64::from(index));
        aes_cm_apply_with(&self.rtcp.aes, &iv, &mut buf[8..len]);
        buf[len..len + 4].copy_from_slice(&(0x8000_0000 | index).to_be_bytes());
        let tag = self.rtcp.tag(&buf[..len + 4], &[]);
        buf[len + 4..len + SRTCP_TRAILER_LEN].copy_from_slice(&tag[..SRTCP_TAG_LEN]);
        Ok(len + SRTCP_TRAILER_LEN)
    }

    /// Authenticates and decrypts the SRTCP packet that fills `buf`; returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf.len();
        if len < 8 + SRTCP_TRAILER_LEN {
            return Err(SrtpError::Truncated);
        }
        let end = len - SRTCP_TRAILER_LEN;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let trailer = u32::from_be_bytes([buf[end], buf[end + 1], buf[end + 2], buf[end + 3]]);
        let (encrypted, index) = (trailer & 0x8000_0000 != 0, trailer & 0x7FFF_FFFF);
        let known = self.stream_position(ssrc);
        let window = match known {
            Some(i) => self.streams[i].rtcp_window,
            None if self.streams.len() == MAX_STREAMS => return Err(SrtpError::TooManyStreams),
            None => ReplayWindow::default(),
        };
        window.check(u64::from(index))?;
        self.rtcp.verify(&buf[..end + 4], &[], &buf[end + 4..])?;
        if encrypted {
            let iv = self.rtcp.iv(ssrc, u64::from(index));
            aes_cm_apply_with(&self.rtcp.aes, &iv, &mut buf[8..end]);
        }
        let i = match known {
            Some(i) => i,
            None => {
                self.streams.push(Stream::new(ssrc));
                self.streams.len() - 1
            }
        };
        self.streams[i].rtcp_window.accept(u64::from(index));
        Ok(end)
    }
}

#[cfg(test)]
mod tests;
