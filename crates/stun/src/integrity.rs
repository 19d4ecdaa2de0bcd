//! Key derivation for long-term credentials and the TURN REST API.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// Long-term key for MESSAGE-INTEGRITY: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
/// Strings are used as given: SASLprep/OpaqueString of ASCII input is the identity.
pub fn long_term_key_md5(username: &[u8], realm: &[u8], password: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    h.finalize().into()
}

/// Long-term key with PASSWORD-ALGORITHM SHA-256 (RFC 8489 §18.5.1.2).
pub fn long_term_key_sha256(username: &[u8], realm: &[u8], password: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username);
    h.update(b":");
    h.update(realm);
    h.update(b":");
    h.update(password);
    h.finalize().into()
}

/// TURN REST API password (coturn `use-auth-secret`): base64(HMAC-SHA1(secret, username)),
/// returned here as the raw 20-byte MAC; callers base64-encode it.
pub fn rest_api_password(secret: &[u8], username: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    mac.update(username);
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> ! {
    unreachable!("HMAC takes keys of any length")
}
