//! The client side of long-term credentials (RFC 8489 §9.2), sans-IO: learn realm and
//! nonce from a 401 or 438, then sign every request with USERNAME, REALM, NONCE and
//! MESSAGE-INTEGRITY.

use crate::request::{Reply, Request, SuccessInfo};
use switchboard_stun::{
    attr_type, decode_error_code, long_term_key_md5, Class, ErrorCode, Message, MessageWriter,
    Method, TransactionId, WriteError,
};

/// Long-term credentials (static, or minted by `switchboard_turn::rest::mint`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// When set, a server announcing another realm is an error (a load generator's
    /// `--realm`); otherwise the client takes the realm it is given.
    pub expected_realm: Option<String>,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Self {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
            expected_realm: None,
        }
    }

    /// The same credentials, refusing any realm but `realm`.
    pub fn expecting_realm(mut self, realm: Option<String>) -> Self {
        self.expected_realm = realm;
        self
    }
}

/// What an answer taught the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learn {
    /// Not a 401 or 438: the answer stands.
    NotChallenge,
    /// A (new) realm and nonce: send the request again.
    Retry(ErrorCode),
    /// A 401 or 438 that does not help (same nonce again: wrong credentials; no
    /// NONCE; another realm than expected).
    Refused(ErrorCode, String),
}

/// Per-5-tuple authentication state: the credentials, the realm and nonce learnt and
/// the derived key.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    creds: Credentials,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Option<[u8; 16]>,
}

impl ClientAuth {
    pub fn new(creds: Credentials) -> Self {
        ClientAuth {
            creds,
            realm: Vec::new(),
            nonce: Vec::new(),
            key: None,
        }
    }

    /// Shorthand for static credentials.
    pub fn user(username: &str, password: &str) -> Self {
        Self::new(Credentials::new(username, password))
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// True once a realm and nonce are known (requests then carry MESSAGE-INTEGRITY).
    pub fn ready(&self) -> bool {
        self.key.is_some()
    }

    /// The long-term key, once the realm is known.
    pub fn key(&self) -> Option<&[u8; 16]> {
        self.key.as_ref()
    }

    /// The realm and nonce learnt so far (empty before the first challenge).
    pub fn realm(&self) -> &[u8] {
        &self.realm
    }

    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    /// Learn realm and nonce from an answer to one of our requests.
    pub fn learn(&mut self, resp: &Message) -> Learn {
        if resp.class != Class::Error {
            return Learn::NotChallenge;
        }
        let Some((code, reason)) = resp.get(attr_type::ERROR_CODE).and_then(decode_error_code)
        else {
            return Learn::NotChallenge;
        };
        let code = ErrorCode(code);
        if code != ErrorCode::UNAUTHORIZED && code != ErrorCode::STALE_NONCE {
            return Learn::NotChallenge;
        }
        let Some(nonce) = resp.get(attr_type::NONCE) else {
            return Learn::Refused(code, "error response without NONCE".into());
        };
        let realm = resp.get(attr_type::REALM).unwrap_or(&self.realm);
        if realm.is_empty() {
            return Learn::Refused(code, "error response without REALM".into());
        }
        if let Some(want) = &self.creds.expected_realm {
            if realm != want.as_bytes() {
                return Learn::Refused(
                    code,
                    format!(
                        "server realm {:?} differs from the expected {want:?}",
                        String::from_utf8_lossy(realm)
                    ),
                );
            }
        }
        let was_ready = self.ready();
        let changed = nonce != self.nonce.as_slice() || realm != self.realm.as_slice();
        if realm != self.realm.as_slice() || self.key.is_none() {
            self.realm = realm.to_vec();
            self.key = Some(long_term_key_md5(
                self.creds.username.as_bytes(),
                &self.realm,
                self.creds.password.as_bytes(),
            ));
        }
        self.nonce.clear();
        self.nonce.extend_from_slice(nonce);
        // 438, a first 401, or a 401 carrying a new nonce: try again. The same nonce
        // refused again means the credentials are wrong.
        if code == ErrorCode::STALE_NONCE || !was_ready || changed {
            Learn::Retry(code)
        } else {
            Learn::Refused(code, format!("{reason} (wrong credentials?)"))
        }
    }

    /// Build a request: `body` adds the method's attributes; credentials (once known)
    /// and FINGERPRINT follow.
    pub fn request(
        &self,
        out: &mut [u8],
        method: Method,
        tid: TransactionId,
        body: impl FnOnce(&mut MessageWriter) -> Result<(), WriteError>,
    ) -> Result<usize, WriteError> {
        let mut w = MessageWriter::new(out, method, Class::Request, tid)?;
        body(&mut w)?;
        if let Some(key) = &self.key {
            w.attr(attr_type::USERNAME, self.creds.username.as_bytes())?;
            w.attr(attr_type::REALM, &self.realm)?;
            w.attr(attr_type::NONCE, &self.nonce)?;
            w.message_integrity(key)?;
        }
        w.fingerprint()?;
        Ok(w.finish())
    }

    /// Encode `req` with transaction id `tid` into `out`; returns its length.
    pub fn build(
        &self,
        req: &Request,
        tid: TransactionId,
        out: &mut [u8],
    ) -> Result<usize, WriteError> {
        self.request(out, req.method(), tid, |w| req.write_body(w))
    }

    /// Classify a response already matched to `req` by transaction id: success
    /// (MESSAGE-INTEGRITY checked when present), retry with a new nonce, or error.
    pub fn classify(&mut self, msg: &Message, req: &Request) -> Reply {
        if msg.method != req.method() {
            return Reply::Error(0, format!("response method {:?} to {:?}", msg.method, req));
        }
        match msg.class {
            Class::Success => {
                if let Some(key) = &self.key {
                    if msg.has_message_integrity() && !msg.verify_integrity(key) {
                        return Reply::Error(0, "response MESSAGE-INTEGRITY check failed".into());
                    }
                }
                Reply::Success(SuccessInfo::of(msg))
            }
            Class::Error => match self.learn(msg) {
                Learn::Retry(code) => Reply::Retry(code.0),
                Learn::Refused(code, why) => Reply::Error(code.0, why),
                Learn::NotChallenge => {
                    let (code, reason) = msg
                        .get(attr_type::ERROR_CODE)
                        .and_then(decode_error_code)
                        .map(|(c, r)| (c, r.to_owned()))
                        .unwrap_or((0, "error response without ERROR-CODE".into()));
                    Reply::Error(code, reason)
                }
            },
            c => Reply::Error(0, format!("unexpected {c:?} message as a response")),
        }
    }
}

/// The error code of a response, if it is an error.
pub fn error_code(resp: &Message) -> Option<ErrorCode> {
    resp.get(attr_type::ERROR_CODE)
        .and_then(decode_error_code)
        .map(|(c, _)| ErrorCode(c))
}
