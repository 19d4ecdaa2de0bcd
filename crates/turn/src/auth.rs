//! Long-term credential authentication with stateless nonces, TURN REST API
//! credentials, and the per-source limit on 401 responses.

use crate::config::ServerConfig;
use crate::rest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::net::IpAddr;
use switchboard_stun::{attr_type, hmac_sha1, long_term_key_md5, long_term_key_sha256, Message};

/// Which integrity attribute the client used; responses use the same one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Integrity {
    Sha1([u8; 16]),
    Sha256([u8; 32]),
}

impl Integrity {
    pub fn key(&self) -> &[u8] {
        match self {
            Integrity::Sha1(k) => k,
            Integrity::Sha256(k) => k,
        }
    }
}

/// Outcome of checking a request's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthResult<'a> {
    Ok {
        /// USERNAME as sent (what later requests on the allocation must repeat).
        username: &'a [u8],
        /// The identity quotas count against (REST: the part after the expiry).
        identity: &'a [u8],
        integrity: Integrity,
    },
    /// 400: MESSAGE-INTEGRITY without USERNAME, REALM or NONCE.
    BadRequest,
    /// 401 with a fresh nonce.
    Unauthorized,
    /// 438 with a fresh nonce.
    StaleNonce,
}

const NONCE_RAW: usize = 12;
/// Encoded nonce length (base64 of 12 bytes).
pub const NONCE_LEN: usize = 16;

/// HMAC over the nonce's issue time and the client's IP; its first 8 bytes go in
/// the nonce.
fn nonce_mac(key: &[u8; 32], ts: u32, ip: IpAddr) -> Hmac<Sha1> {
    let mut mac = hmac_sha1(key);
    mac.update(&ts.to_be_bytes());
    match ip {
        IpAddr::V4(v) => mac.update(&v.octets()),
        IpAddr::V6(v) => mac.update(&v.octets()),
    }
    mac
}

/// A stateless nonce: issue time and a MAC over it and the client's IP, so the
/// server keeps nothing per client before a request authenticates.
pub fn make_nonce(cfg: &ServerConfig, unix_now: u64, ip: IpAddr) -> [u8; NONCE_LEN] {
    let ts = unix_now as u32;
    let mut raw = [0u8; NONCE_RAW];
    raw[..4].copy_from_slice(&ts.to_be_bytes());
    let mac = nonce_mac(&cfg.nonce_key, ts, ip).finalize().into_bytes();
    raw[4..].copy_from_slice(&mac[..NONCE_RAW - 4]);
    let mut out = [0u8; NONCE_LEN];
    // 12 bytes always encode to exactly 16 characters.
    let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
    out
}

enum NonceCheck {
    Valid,
    Stale,
    Invalid,
}

fn check_nonce(cfg: &ServerConfig, nonce: &[u8], unix_now: u64, ip: IpAddr) -> NonceCheck {
    let mut raw = [0u8; NONCE_RAW + 3];
    match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
        Ok(NONCE_RAW) => {}
        _ => return NonceCheck::Invalid,
    }
    let ts = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    // Constant-time: a forged nonce learns nothing from how long the check takes.
    let mac = nonce_mac(&cfg.nonce_key, ts, ip);
    if mac.verify_truncated_left(&raw[4..NONCE_RAW]).is_err() {
        // A nonce from before a restart (new key) is indistinguishable from a forged
        // one; both get a fresh nonce with 438 so real clients recover at once.
        return NonceCheck::Stale;
    }
    let age = (unix_now as u32).wrapping_sub(ts) as u64;
    if age > cfg.nonce_lifetime.as_secs() {
        NonceCheck::Stale
    } else {
        NonceCheck::Valid
    }
}

/// Check a request's long-term credentials (RFC 8489 §9.2.4).
pub fn authenticate<'a>(
    cfg: &ServerConfig,
    msg: &Message<'a>,
    unix_now: u64,
    ip: IpAddr,
) -> AuthResult<'a> {
    let sha256 = msg.has_message_integrity_sha256();
    if !sha256 && !msg.has_message_integrity() {
        return AuthResult::Unauthorized;
    }
    let (Some(username), Some(realm), Some(nonce)) = (
        msg.get(attr_type::USERNAME),
        msg.get(attr_type::REALM),
        msg.get(attr_type::NONCE),
    ) else {
        return AuthResult::BadRequest;
    };
    match check_nonce(cfg, nonce, unix_now, ip) {
        NonceCheck::Valid => {}
        NonceCheck::Stale | NonceCheck::Invalid => return AuthResult::StaleNonce,
    }
    if realm != cfg.realm.as_bytes() {
        return AuthResult::Unauthorized;
    }
    let verify = |integrity: Integrity| match integrity {
        Integrity::Sha1(k) => msg.verify_integrity(&k),
        Integrity::Sha256(k) => msg.verify_integrity_sha256(&k),
    };
    if let Some(u) = cfg.user(username) {
        let integrity = if sha256 {
            // PASSWORD-ALGORITHM SHA-256 (0x0002) selects the SHA-256 key.
            match msg.get(attr_type::PASSWORD_ALGORITHM) {
                Some([0, 2, ..]) => Integrity::Sha256(u.sha256_key),
                _ => md5_key_for_sha256(&u.md5_key),
            }
        } else {
            Integrity::Sha1(u.md5_key)
        };
        if verify(integrity) {
            return AuthResult::Ok {
                username,
                identity: username,
                integrity,
            };
        }
        return AuthResult::Unauthorized;
    }
    if let Some(rest::Username { expiry, identity }) = rest::parse_username(username) {
        if expiry < unix_now || cfg.secrets.is_empty() {
            return AuthResult::Unauthorized;
        }
        for secret in &cfg.secrets {
            let password = rest::password(secret, username);
            let pw = password.as_bytes();
            let md5_key = long_term_key_md5(username, realm, pw);
            let integrity = if sha256 {
                match msg.get(attr_type::PASSWORD_ALGORITHM) {
                    Some([0, 2, ..]) => {
                        Integrity::Sha256(long_term_key_sha256(username, realm, pw))
                    }
                    _ => md5_key_for_sha256(&md5_key),
                }
            } else {
                Integrity::Sha1(md5_key)
            };
            if verify(integrity) {
                return AuthResult::Ok {
                    username,
                    identity,
                    integrity,
                };
            }
        }
    }
    AuthResult::Unauthorized
}

/// With MESSAGE-INTEGRITY-SHA256 and the MD5 password algorithm the HMAC key is the
/// 16-byte MD5 key; HMAC zero-pads keys, so the same key padded to 32 bytes is equal.
fn md5_key_for_sha256(md5: &[u8; 16]) -> Integrity {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(md5);
    Integrity::Sha256(k)
}

/// Per-source limit on 401 responses: a fixed table of token buckets indexed by a
/// hash of the source IP, so memory stays bounded however many sources there are.
pub struct UnauthLimiter {
    buckets: Box<[(u32, u32)]>, // (tokens * 1000, last refill in ms since start)
    seed: u64,
}

const LIMITER_SLOTS: usize = 4096;

impl Default for UnauthLimiter {
    fn default() -> Self {
        UnauthLimiter {
            buckets: vec![(u32::MAX, 0); LIMITER_SLOTS].into_boxed_slice(),
            seed: rand::random(),
        }
    }
}

impl UnauthLimiter {
    /// True when a 401 may be sent to `ip` now.
    pub fn allow(&mut self, ip: IpAddr, now_ms: u64, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let mut h = self.seed;
        let mut mix = |x: u64| h = (h ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        match ip {
            IpAddr::V4(v) => mix(u32::from(v) as u64),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                mix(x as u64);
                mix((x >> 64) as u64);
            }
        }
        let slot = &mut self.buckets[(h as usize) % LIMITER_SLOTS];
        let now = now_ms as u32;
        let cap = burst.max(1) * 1000;
        let tokens = if slot.0 == u32::MAX {
            cap
        } else {
            let elapsed = now.wrapping_sub(slot.1) as u64;
            (slot.0 as u64 + elapsed * rate as u64).min(cap as u64) as u32
        };
        if tokens >= 1000 {
            *slot = (tokens - 1000, now);
            true
        } else {
            *slot = (tokens, now);
            false
        }
    }
}
