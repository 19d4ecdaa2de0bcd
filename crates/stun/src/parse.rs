//! Zero-copy, allocation-free STUN message parsing and verification.

use crate::attr::{attr_type, decode_address, decode_xor_address};
use crate::header::{split_message_type, Class, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE};
use crate::integrity::{hmac_sha1, hmac_sha256};
use hmac::Mac;
use std::net::SocketAddr;

/// Why a datagram is not a well-formed STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than the 20-byte STUN header")]
    TooShort,
    #[error("not a STUN message (leading bits or magic cookie)")]
    NotStun,
    #[error("message length is not a multiple of 4 or exceeds the datagram")]
    BadLength,
    #[error("attribute runs past the end of the message")]
    TruncatedAttribute,
    #[error("attribute after FINGERPRINT")]
    AfterFingerprint,
    #[error("MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 of a length the RFC does not allow")]
    BadIntegrityLength,
    #[error("FINGERPRINT value is not 4 bytes")]
    BadFingerprintLength,
}

/// One attribute as found in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

/// A parsed STUN message borrowing the datagram it came from.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    pub method: Method,
    pub class: Class,
    pub tid: TransactionId,
    /// Offset of the MESSAGE-INTEGRITY attribute header, if present.
    mi: Option<usize>,
    /// Offset of the MESSAGE-INTEGRITY-SHA256 attribute header, if present.
    mi256: Option<usize>,
    /// Offset of the FINGERPRINT attribute header, if present.
    fingerprint: Option<usize>,
    /// End of the attributes that count (the first integrity attribute, else FINGERPRINT, else end).
    attrs_end: usize,
}

impl<'a> Message<'a> {
    /// Parse and structurally validate a STUN message. `buf` may be longer than the
    /// message (stream transports); the message is its first `20 + length` bytes.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        if buf[0] & 0xC0 != 0 || buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(ParseError::NotStun);
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if len % 4 != 0 || HEADER_LEN + len > buf.len() {
            return Err(ParseError::BadLength);
        }
        let buf = &buf[..HEADER_LEN + len];
        let (method, class) = split_message_type(u16::from_be_bytes([buf[0], buf[1]]));
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);

        let (mut mi, mut mi256, mut fingerprint) = (None, None, None);
        let mut attrs_end = None;
        let mut off = HEADER_LEN;
        while off < buf.len() {
            if fingerprint.is_some() {
                return Err(ParseError::AfterFingerprint);
            }
            if off + 4 > buf.len() {
                return Err(ParseError::TruncatedAttribute);
            }
            let typ = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let vlen = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
            let next = off + 4 + ((vlen + 3) & !3);
            if next > buf.len() {
                return Err(ParseError::TruncatedAttribute);
            }
            match typ {
                attr_type::MESSAGE_INTEGRITY if mi.is_none() && mi256.is_none() => {
                    if vlen != 20 {
                        return Err(ParseError::BadIntegrityLength);
                    }
                    mi = Some(off);
                    attrs_end.get_or_insert(off);
                }
                attr_type::MESSAGE_INTEGRITY_SHA256 if mi256.is_none() => {
                    if !(16..=32).contains(&vlen) || vlen % 4 != 0 {
                        return Err(ParseError::BadIntegrityLength);
                    }
                    mi256 = Some(off);
                    attrs_end.get_or_insert(off);
                }
                attr_type::FINGERPRINT => {
                    if vlen != 4 {
                        return Err(ParseError::BadFingerprintLength);
                    }
                    fingerprint = Some(off);
                    attrs_end.get_or_insert(off);
                }
                _ => {}
            }
            off = next;
        }
        Ok(Message {
            buf,
            method,
            class,
            tid: TransactionId(tid),
            mi,
            mi256,
            fingerprint,
            attrs_end: attrs_end.unwrap_or(buf.len()),
        })
    }

    /// The bytes of the whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Attributes that precede the integrity/fingerprint attributes (those after
    /// MESSAGE-INTEGRITY are ignored, RFC 8489 §14.5).
    pub fn attributes(&self) -> AttrIter<'a> {
        AttrIter {
            buf: &self.buf[..self.attrs_end],
            off: HEADER_LEN,
        }
    }

    /// The first attribute of type `typ`.
    #[inline]
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    pub fn has(&self, typ: u16) -> bool {
        self.get(typ).is_some()
    }

    /// Decode an XOR-encoded address attribute.
    pub fn xor_address(&self, typ: u16) -> Option<SocketAddr> {
        decode_xor_address(self.get(typ)?, &self.tid)
    }

    /// Decode a plain address attribute.
    pub fn address(&self, typ: u16) -> Option<SocketAddr> {
        decode_address(self.get(typ)?)
    }

    /// A 32-bit attribute value (LIFETIME, CHANGE-REQUEST, CONNECTION-ID...).
    pub fn u32(&self, typ: u16) -> Option<u32> {
        let v = self.get(typ)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    pub fn has_message_integrity(&self) -> bool {
        self.mi.is_some()
    }
    pub fn has_message_integrity_sha256(&self) -> bool {
        self.mi256.is_some()
    }
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Verify MESSAGE-INTEGRITY (HMAC-SHA1) with `key`. False when absent or wrong.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(off) = self.mi else { return false };
        let mut mac = hmac_sha1(key);
        feed_with_length(&mut mac, self.buf, off, 24);
        mac.verify_slice(&self.buf[off + 4..off + 24]).is_ok()
    }

    /// Verify MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, possibly truncated) with `key`.
    pub fn verify_integrity_sha256(&self, key: &[u8]) -> bool {
        let Some(off) = self.mi256 else { return false };
        let vlen = u16::from_be_bytes([self.buf[off + 2], self.buf[off + 3]]) as usize;
        let mut mac = hmac_sha256(key);
        feed_with_length(&mut mac, self.buf, off, 4 + vlen);
        mac.verify_truncated_left(&self.buf[off + 4..off + 4 + vlen])
            .is_ok()
    }

    /// Verify FINGERPRINT. True when present and correct.
    pub fn verify_fingerprint(&self) -> bool {
        let Some(off) = self.fingerprint else {
            return false;
        };
        let mut h = crc32fast::Hasher::new();
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.buf[..HEADER_LEN]);
        let l = (off + 8 - HEADER_LEN) as u16;
        header[2..4].copy_from_slice(&l.to_be_bytes());
        h.update(&header);
        h.update(&self.buf[HEADER_LEN..off]);
        let want = h.finalize() ^ 0x5354_554E;
        self.buf[off + 4..off + 8] == want.to_be_bytes()
    }
}

/// Feed `buf[..off]` to `mac` with the header length rewritten as if the message
/// ended `attr_len` bytes after `off`.
fn feed_with_length<M: Mac>(mac: &mut M, buf: &[u8], off: usize, attr_len: usize) {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[..HEADER_LEN]);
    let l = (off + attr_len - HEADER_LEN) as u16;
    header[2..4].copy_from_slice(&l.to_be_bytes());
    mac.update(&header);
    mac.update(&buf[HEADER_LEN..off]);
}

/// Iterator over attributes.
pub struct AttrIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = RawAttr<'a>;
    #[inline]
    fn next(&mut self) -> Option<RawAttr<'a>> {
        let b = self.buf;
        if self.off + 4 > b.len() {
            return None;
        }
        let typ = u16::from_be_bytes([b[self.off], b[self.off + 1]]);
        let vlen = u16::from_be_bytes([b[self.off + 2], b[self.off + 3]]) as usize;
        let value = b.get(self.off + 4..self.off + 4 + vlen)?;
        self.off += 4 + ((vlen + 3) & !3);
        Some(RawAttr { typ, value })
    }
}
