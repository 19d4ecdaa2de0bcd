//! TURN REST API credentials, as coturn's `use-auth-secret` has them
//! (draft-uberti-behave-turn-rest): the username is `<expiry>:<identity>` (unix
//! seconds), the password base64(HMAC-SHA1(secret, username)). The one place that mints
//! them (HTTP `iceServers`, the `turn-credentials` command, the load generator) and
//! checks them (the server's long-term authentication), so both sides cannot drift
//! apart.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;
use switchboard_stun::hmac_sha1;

/// Length of a REST password: base64 of a 20-byte HMAC-SHA1.
pub const PASSWORD_LEN: usize = 28;

/// A username and password pair for a TURN client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Credentials for `identity` valid until `expiry_unix` (seconds), signed with `secret`.
pub fn mint(secret: &[u8], expiry_unix: u64, identity: &str) -> Credentials {
    let username = format!("{expiry_unix}:{identity}");
    let password = password(secret, username.as_bytes());
    Credentials {
        username,
        password: password.as_str().to_owned(),
    }
}

/// The password that goes with `username` under `secret`.
#[derive(Clone, Copy)]
pub struct Password([u8; PASSWORD_LEN]);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Base64 output is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// base64(HMAC-SHA1(secret, username)), without allocating (it runs per request).
pub fn password(secret: &[u8], username: &[u8]) -> Password {
    let mut mac = hmac_sha1(secret);
    mac.update(username);
    let mut out = [0u8; PASSWORD_LEN];
    // 20 bytes always encode to exactly 28 characters.
    let _ = STANDARD.encode_slice(mac.finalize().into_bytes(), &mut out);
    Password(out)
}

/// The parts of a REST username: `<expiry>` or `<expiry>:<identity>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Username<'a> {
    /// Unix seconds after which the credentials are refused.
    pub expiry: u64,
    /// What quotas count against (empty when the username is only the expiry).
    pub identity: &'a [u8],
}

/// Parse a REST username; None when it does not start with a decimal expiry.
pub fn parse_username(name: &[u8]) -> Option<Username<'_>> {
    let (ts, identity) = match name.iter().position(|&b| b == b':') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (name, &name[name.len()..]),
    };
    if ts.is_empty() || ts.len() > 20 || !ts.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let expiry = std::str::from_utf8(ts).ok()?.parse().ok()?;
    Some(Username { expiry, identity })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_match_coturn_scheme() {
        let c = mint(b"labsecret", 1_700_000_000, "loaduser");
        assert_eq!(c.username, "1700000000:loaduser");
        // python3: base64(hmac.new(b'labsecret', b'1700000000:loaduser', sha1).digest())
        assert_eq!(c.password, "Rs7uMk80VGQXfhcZ5v8zIvST3V0=");
        assert_eq!(
            password(b"labsecret", c.username.as_bytes()).as_bytes(),
            c.password.as_bytes()
        );
        // python3: base64(hmac.new(b's3cret', b'1003600:alice', sha1).digest())
        assert_eq!(
            password(b"s3cret", b"1003600:alice").as_str(),
            "z32fz9jommlL7rl1lAzDPxKQJnU="
        );
    }

    #[test]
    fn usernames_parse() {
        let u = parse_username(b"1700000000:bob:x").unwrap();
        assert_eq!((u.expiry, u.identity), (1_700_000_000, &b"bob:x"[..]));
        let u = parse_username(b"42").unwrap();
        assert_eq!((u.expiry, u.identity), (42, &b""[..]));
        for bad in [
            &b""[..],
            b":bob",
            b"12a:bob",
            b"alice",
            b"123456789012345678901:x",
        ] {
            assert_eq!(parse_username(bad), None, "{bad:?}");
        }
    }
}
