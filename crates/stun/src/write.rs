//! In-place STUN message encoding into a caller-provided buffer.

use crate::attr::{address_value_len, attr_type, encode_address, xor_addr};
use crate::error_code::ErrorCode;
use crate::header::{message_type, Class, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE};
use crate::integrity::{hmac_sha1, hmac_sha256};
use hmac::Mac;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("output buffer too small for the STUN message")]
    BufferTooSmall,
    #[error("attribute value longer than 65535 bytes")]
    ValueTooLong,
}

/// Builds one STUN message in `buf`. Call [`MessageWriter::finish`] for its length.
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    tid: TransactionId,
}

impl<'b> MessageWriter<'b> {
    pub fn new(
        buf: &'b mut [u8],
        method: Method,
        class: Class,
        tid: TransactionId,
    ) -> Result<Self, WriteError> {
        if buf.len() < HEADER_LEN {
            return Err(WriteError::BufferTooSmall);
        }
        buf[0..2].copy_from_slice(&message_type(method, class).to_be_bytes());
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(&tid.0);
        Ok(MessageWriter {
            buf,
            len: HEADER_LEN,
            tid,
        })
    }

    /// Reserve an attribute of `vlen` bytes and return its value slice (zero padding included).
    fn reserve(&mut self, typ: u16, vlen: usize) -> Result<&mut [u8], WriteError> {
        if vlen > u16::MAX as usize {
            return Err(WriteError::ValueTooLong);
        }
        let padded = (vlen + 3) & !3;
        let end = self.len + 4 + padded;
        if end > self.buf.len() || end - HEADER_LEN > u16::MAX as usize {
            return Err(WriteError::BufferTooSmall);
        }
        let off = self.len;
        self.buf[off..off + 2].copy_from_slice(&typ.to_be_bytes());
        self.buf[off + 2..off + 4].copy_from_slice(&(vlen as u16).to_be_bytes());
        self.buf[off + 4 + vlen..end].fill(0);
        self.len = end;
        let l = (self.len - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&l.to_be_bytes());
        Ok(&mut self.buf[off + 4..off + 4 + vlen])
    }

    pub fn attr(&mut self, typ: u16, value: &[u8]) -> Result<&mut Self, WriteError> {
        self.reserve(typ, value.len())?.copy_from_slice(value);
        Ok(self)
    }

    pub fn u32(&mut self, typ: u16, v: u32) -> Result<&mut Self, WriteError> {
        self.attr(typ, &v.to_be_bytes())
    }

    pub fn address(&mut self, typ: u16, a: &SocketAddr) -> Result<&mut Self, WriteError> {
        encode_address(a, self.reserve(typ, address_value_len(a))?);
        Ok(self)
    }

    pub fn xor_address(&mut self, typ: u16, a: &SocketAddr) -> Result<&mut Self, WriteError> {
        let x = xor_addr(*a, &self.tid);
        self.address(typ, &x)
    }

    /// ERROR-CODE with `code` and `reason` (RFC 8489 §14.8).
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, WriteError> {
        self.error_code_attr(attr_type::ERROR_CODE, 0, code, reason)
    }

    /// ADDRESS-ERROR-CODE (RFC 8656 §18.11): ERROR-CODE's layout with the address
    /// family (1 IPv4, 2 IPv6) in the first byte, and the standard reason phrase.
    pub fn address_error_code(
        &mut self,
        family: u8,
        code: ErrorCode,
    ) -> Result<&mut Self, WriteError> {
        self.error_code_attr(attr_type::ADDRESS_ERROR_CODE, family, code.0, code.reason())
    }

    fn error_code_attr(
        &mut self,
        typ: u16,
        first: u8,
        code: u16,
        reason: &str,
    ) -> Result<&mut Self, WriteError> {
        let v = self.reserve(typ, 4 + reason.len())?;
        v[0] = first;
        v[1] = 0;
        v[2] = (code / 100) as u8;
        v[3] = (code % 100) as u8;
        v[4..].copy_from_slice(reason.as_bytes());
        Ok(self)
    }

    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<&mut Self, WriteError> {
        let v = self.reserve(attr_type::UNKNOWN_ATTRIBUTES, types.len() * 2)?;
        for (i, t) in types.iter().enumerate() {
            v[i * 2..i * 2 + 2].copy_from_slice(&t.to_be_bytes());
        }
        Ok(self)
    }

    /// Append MESSAGE-INTEGRITY (HMAC-SHA1 over everything so far).
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<&mut Self, WriteError> {
        let off = self.len;
        self.reserve(attr_type::MESSAGE_INTEGRITY, 20)?;
        let mut mac = hmac_sha1(key);
        mac.update(&self.buf[..off]);
        let out = mac.finalize().into_bytes();
        self.buf[off + 4..off + 24].copy_from_slice(&out);
        Ok(self)
    }

    /// Append MESSAGE-INTEGRITY-SHA256 (full 32 bytes).
    pub fn message_integrity_sha256(&mut self, key: &[u8]) -> Result<&mut Self, WriteError> {
        let off = self.len;
        self.reserve(attr_type::MESSAGE_INTEGRITY_SHA256, 32)?;
        let mut mac = hmac_sha256(key);
        mac.update(&self.buf[..off]);
        let out = mac.finalize().into_bytes();
        self.buf[off + 4..off + 36].copy_from_slice(&out);
        Ok(self)
    }

    /// Append FINGERPRINT (must be last).
    pub fn fingerprint(&mut self) -> Result<&mut Self, WriteError> {
        let off = self.len;
        self.reserve(attr_type::FINGERPRINT, 4)?;
        let crc = crc32fast::hash(&self.buf[..off]) ^ 0x5354_554E;
        self.buf[off + 4..off + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(self)
    }

    /// Length of the message written so far, the 20-byte header included (so never
    /// zero: there is no `is_empty`).
    pub fn message_len(&self) -> usize {
        self.len
    }

    pub fn finish(self) -> usize {
        self.len
    }
}
