//! HTTP digest authentication as SIP uses it (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760):
//! the client side answers a `WWW-Authenticate`/`Proxy-Authenticate` challenge from a
//! registrar or trunk; the server side challenges phones that register with us and checks
//! their answers.
//!
//! The server is stateless: a nonce carries its issue time and an HMAC over that time, a
//! random salt and the realm under a key only we know, so any nonce we get back can be
//! checked and expired without remembering it (which also survives restarts with the same
//! key and costs nothing per unanswered challenge). Replays within the nonce lifetime are
//! not detected here (that needs per-nonce `nc` state, which a registrar may add); keep the
//! lifetime short. Written by hand because the digest arithmetic is a dozen lines over the
//! workspace's `md-5`/`sha2`/`hmac`, and the SIP specifics (which headers, `auth-int` over
//! the body, the `stale` flag) are what matter.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::uri::{closing_quote, split_outside_quotes, unquote};

/// A malformed or failed digest exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest challenge or credentials")]
    NotDigest,
    #[error("malformed parameter list")]
    Syntax,
    #[error("missing parameter {0}")]
    Missing(&'static str),
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("unsupported qop")]
    UnsupportedQop,
    #[error("nonce not issued by us or for another realm")]
    BadNonce,
    #[error("nonce expired (challenge again with stale=true)")]
    Stale,
    #[error("wrong response (bad password or tampered request)")]
    WrongResponse,
}

/// The hash (and whether it is the `-sess` variant, which hashes the cnonce into HA1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, a)| a)
        .ok_or(DigestError::UnsupportedAlgorithm)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// The lowercase hex hash of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex(&Sha256::digest(data)),
        }
    }
}

/// Quality of protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
    /// Also covers the body.
    AuthInt,
}

impl Qop {
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `name=value` pairs of a `Digest …` header value, values unquoted.
fn parse_params(value: &str) -> Result<Vec<(&str, std::borrow::Cow<'_, str>)>, DigestError> {
    let value = value.trim();
    let (scheme, rest) = value
        .split_once([' ', '\t'])
        .ok_or(DigestError::NotDigest)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let mut out = Vec::new();
    for part in split_outside_quotes(rest, b',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (name, v) = part.split_once('=').ok_or(DigestError::Syntax)?;
        let (name, v) = (name.trim(), v.trim());
        let v = match v.strip_prefix('"') {
            Some(inner) => {
                let end = closing_quote(inner).ok_or(DigestError::Syntax)?;
                if end + 1 != inner.len() {
                    return Err(DigestError::Syntax);
                }
                unquote(&inner[..end])
            }
            None => std::borrow::Cow::Borrowed(v),
        };
        out.push((name, v));
    }
    Ok(out)
}

fn find<'p>(params: &'p [(&str, std::borrow::Cow<'_, str>)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| &**v)
}

/// Writes `s` quoted (escaping `"` and `\`).
fn quoted(out: &mut String, s: &str) {
    let _ = crate::uri::write_quoted(out, s);
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Empty: the old RFC 2069 form without qop.
    pub qop: Vec<Qop>,
    pub stale: bool,
}

impl Challenge {
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let p = parse_params(value)?;
        let algorithm = find(&p, "algorithm").map_or(Ok(Algorithm::Md5), Algorithm::parse)?;
        let qop = find(&p, "qop")
            .map(|q| {
                q.split(',')
                    .filter_map(|t| match t.trim() {
                        t if t.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
                        t if t.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if find(&p, "qop").is_some() && qop.is_empty() {
            return Err(DigestError::UnsupportedQop);
        }
        Ok(Challenge {
            realm: find(&p, "realm")
                .ok_or(DigestError::Missing("realm"))?
                .to_owned(),
            nonce: find(&p, "nonce")
                .ok_or(DigestError::Missing("nonce"))?
                .to_owned(),
            opaque: find(&p, "opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: find(&p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    pub fn to_header_value(&self) -> String {
        let mut s = String::from("Digest realm=");
        quoted(&mut s, &self.realm);
        s.push_str(", nonce=");
        quoted(&mut s, &self.nonce);
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            quoted(&mut s, o);
        }
        let _ = write!(s, ", algorithm={}", self.algorithm.as_str());
        if !self.qop.is_empty() {
            let list: Vec<_> = self.qop.iter().map(|q| q.as_str()).collect();
            let _ = write!(s, ", qop=\"{}\"", list.join(","));
        }
        if self.stale {
            s.push_str(", stale=true");
        }
        s
    }

    /// The client's answer: `Authorization`/`Proxy-Authorization` credentials for a request
    /// described by `request`. `cnonce` should be
    /// random (e.g. `switchboard_util::random_hex(8)`), `nc` counts the requests made with
    /// this nonce, from 1. Prefers `qop=auth`, uses `auth-int` when it is the only one.
    pub fn respond(
        &self,
        username: &str,
        password: &str,
        request: &DigestRequest<'_>,
        cnonce: &str,
        nc: u32,
    ) -> Credentials {
        let DigestRequest { method, uri, body } = *request;
        let qop = if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop.first().copied()
        };
        let uses_cnonce = qop.is_some() || self.algorithm.is_sess();
        let mut creds = Credentials {
            username: username.to_owned(),
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: uri.to_owned(),
            response: String::new(),
            algorithm: self.algorithm,
            cnonce: uses_cnonce.then(|| cnonce.to_owned()),
            opaque: self.opaque.clone(),
            qop,
            nc: qop.map(|_| nc),
        };
        let ha1 = ha1(self.algorithm, username, &self.realm, password);
        creds.response = creds.expected_response(&ha1, method, body);
        creds
    }
}

/// What a digest response covers of the request.
#[derive(Debug, Clone, Copy)]
pub struct DigestRequest<'a> {
    pub method: &'a str,
    /// The Request-URI as written in the request line.
    pub uri: &'a str,
    /// Covered with `qop=auth-int` only.
    pub body: &'a [u8],
}

/// `H(username:realm:password)`, what a server may store instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The `Authorization` / `Proxy-Authorization` credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<Qop>,
    pub nc: Option<u32>,
}

impl Credentials {
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let p = parse_params(value)?;
        let get = |name: &'static str| {
            find(&p, name)
                .map(str::to_owned)
                .ok_or(DigestError::Missing(name))
        };
        let qop = match find(&p, "qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) if q.eq_ignore_ascii_case("auth-int") => Some(Qop::AuthInt),
            Some(_) => return Err(DigestError::UnsupportedQop),
        };
        let nc = match find(&p, "nc") {
            Some(n) if n.len() == 8 => {
                Some(u32::from_str_radix(n, 16).map_err(|_| DigestError::Syntax)?)
            }
            Some(_) => return Err(DigestError::Syntax),
            None => None,
        };
        let creds = Credentials {
            username: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?,
            algorithm: find(&p, "algorithm").map_or(Ok(Algorithm::Md5), Algorithm::parse)?,
            cnonce: find(&p, "cnonce").map(str::to_owned),
            opaque: find(&p, "opaque").map(str::to_owned),
            qop,
            nc,
        };
        if creds.qop.is_some() && (creds.cnonce.is_none() || creds.nc.is_none()) {
            return Err(DigestError::Missing("cnonce/nc"));
        }
        Ok(creds)
    }

    pub fn to_header_value(&self) -> String {
        let mut s = String::from("Digest username=");
        quoted(&mut s, &self.username);
        for (name, value) in [
            ("realm", &self.realm),
            ("nonce", &self.nonce),
            ("uri", &self.uri),
            ("response", &self.response),
        ] {
            let _ = write!(s, ", {name}=");
            quoted(&mut s, value);
        }
        let _ = write!(s, ", algorithm={}", self.algorithm.as_str());
        if let Some(c) = &self.cnonce {
            s.push_str(", cnonce=");
            quoted(&mut s, c);
        }
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            quoted(&mut s, o);
        }
        if let Some(q) = self.qop {
            let _ = write!(s, ", qop={}", q.as_str());
        }
        if let Some(nc) = self.nc {
            let _ = write!(s, ", nc={nc:08x}");
        }
        s
    }

    /// The response these credentials should carry, given the user's (non-sess) HA1.
    pub fn expected_response(&self, ha1: &str, method: &str, body: &[u8]) -> String {
        let h = |s: String| self.algorithm.hash_hex(s.as_bytes());
        let cnonce = self.cnonce.as_deref().unwrap_or("");
        let ha1 = if self.algorithm.is_sess() {
            h(format!("{ha1}:{}:{cnonce}", self.nonce))
        } else {
            ha1.to_owned()
        };
        let ha2 = match self.qop {
            Some(Qop::AuthInt) => h(format!(
                "{method}:{}:{}",
                self.uri,
                self.algorithm.hash_hex(body)
            )),
            _ => h(format!("{method}:{}", self.uri)),
        };
        match self.qop {
            Some(q) => h(format!(
                "{ha1}:{}:{:08x}:{cnonce}:{}:{ha2}",
                self.nonce,
                self.nc.unwrap_or(0),
                q.as_str()
            )),
            None => h(format!("{ha1}:{}:{ha2}", self.nonce)),
        }
    }
}

/// What the server checks a response against.
#[derive(Debug, Clone, Copy)]
pub enum Secret<'a> {
    Password(&'a str),
    /// `H(username:realm:password)` in lowercase hex, for the issuer's algorithm.
    Ha1(&'a str),
}

/// Issues and checks nonces for one realm without keeping state per challenge.
#[derive(Clone)]
pub struct NonceIssuer {
    key: Vec<u8>,
    realm: String,
    algorithm: Algorithm,
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

/// How far a nonce's time may be ahead of ours (clock steps between restarts).
const FUTURE_SLACK_SECS: u64 = 60;

impl NonceIssuer {
    /// `key`: a server secret (at least 16 random bytes); `lifetime_secs`: how long a nonce
    /// is accepted before the client is told it is stale.
    pub fn new(key: &[u8], realm: &str, algorithm: Algorithm, lifetime_secs: u64) -> Self {
        NonceIssuer {
            key: key.to_vec(),
            realm: realm.to_owned(),
            algorithm,
            lifetime_secs,
        }
    }

    fn mac_hex(&self, time_and_salt: &str) -> String {
        // HMAC accepts keys of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(time_and_salt.as_bytes());
        mac.update(b"\0");
        mac.update(self.realm.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    /// A challenge (`qop="auth"`) with a fresh nonce. `now`: Unix seconds; `salt`: random
    /// hex (e.g. `switchboard_util::random_hex(8)`); `stale`: the previous answer was right
    /// but its nonce expired.
    pub fn challenge(&self, now: u64, salt: &str, stale: bool) -> Challenge {
        let time_and_salt = format!("{now:016x}{salt}");
        let mac = self.mac_hex(&time_and_salt);
        Challenge {
            realm: self.realm.clone(),
            nonce: format!("{time_and_salt}{mac}"),
            opaque: None,
            algorithm: self.algorithm,
            qop: vec![Qop::Auth],
            stale,
        }
    }

    /// Checks credentials for a request of `method` with `body`. The caller looks the user
    /// up by `creds.username` and checks that `creds.uri` names the Request-URI. A right
    /// answer on an expired nonce is [`DigestError::Stale`]: challenge again with
    /// `stale=true` so the client retries without asking its user.
    pub fn verify(
        &self,
        creds: &Credentials,
        method: &str,
        body: &[u8],
        secret: Secret<'_>,
        now: u64,
    ) -> Result<(), DigestError> {
        if creds.realm != self.realm || creds.algorithm != self.algorithm {
            return Err(DigestError::BadNonce);
        }
        // We always offer qop: a response without it would be a downgrade.
        if creds.qop.is_none() {
            return Err(DigestError::UnsupportedQop);
        }
        let nonce = creds.nonce.as_str();
        if nonce.len() <= 16 + 32 || !nonce.is_ascii() {
            return Err(DigestError::BadNonce);
        }
        let (time_and_salt, mac) = nonce.split_at(nonce.len() - 32);
        if !constant_time_eq(self.mac_hex(time_and_salt).as_bytes(), mac.as_bytes()) {
            return Err(DigestError::BadNonce);
        }
        let issued =
            u64::from_str_radix(&time_and_salt[..16], 16).map_err(|_| DigestError::BadNonce)?;
        if issued > now.saturating_add(FUTURE_SLACK_SECS) {
            return Err(DigestError::BadNonce);
        }
        let ha1_owned;
        let ha1 = match secret {
            Secret::Ha1(h) => h,
            Secret::Password(p) => {
                ha1_owned = ha1(self.algorithm, &creds.username, &self.realm, p);
                &ha1_owned
            }
        };
        let expected = creds.expected_response(ha1, method, body);
        if !constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(DigestError::WrongResponse);
        }
        if now > issued.saturating_add(self.lifetime_secs) {
            return Err(DigestError::Stale);
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
