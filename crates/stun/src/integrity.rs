//! Keys and MACs for MESSAGE-INTEGRITY(-SHA256): long-term key derivation (RFC 8489
//! §9.2.2) and HMAC construction that cannot fail.

use hmac::digest::{Digest, Key, KeyInit};
use hmac::Hmac;
use md5::Md5;
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

/// HMAC-SHA1 keyed with `key` (any length).
pub fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    Hmac::new(&block_key::<Sha1, Hmac<Sha1>>(key))
}

/// HMAC-SHA256 keyed with `key` (any length).
pub fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    Hmac::new(&block_key::<Sha256, Hmac<Sha256>>(key))
}

/// The block-sized key HMAC derives from `key` (RFC 2104 §2): hashed when longer than
/// a block, zero-padded. Building it here makes HMAC construction infallible, where
/// `new_from_slice` returns a `Result` that can never be an error.
fn block_key<D: Digest, M: KeyInit>(key: &[u8]) -> Key<M> {
    let mut block = Key::<M>::default();
    if key.len() > block.len() {
        let digest = D::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_2202_and_4231_vectors() {
        // RFC 2202 test case 1 (short key) and 6 (key longer than a block).
        let mut m = hmac_sha1(&[0x0b; 20]);
        m.update(b"Hi There");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        let mut m = hmac_sha1(&[0xaa; 80]);
        m.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
        // RFC 4231 test case 6 (131-byte key).
        let mut m = hmac_sha256(&[0xaa; 131]);
        m.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // An empty key, against the library's own slice constructor.
        let mut ours = hmac_sha1(b"");
        let mut theirs = <Hmac<Sha1> as Mac>::new_from_slice(b"").unwrap();
        ours.update(b"x");
        theirs.update(b"x");
        assert_eq!(ours.finalize().into_bytes(), theirs.finalize().into_bytes());
    }
}
