//! Client side of long-term credential auth, sans-IO: build requests that carry
//! USERNAME/REALM/NONCE/MESSAGE-INTEGRITY once a 401 or 438 taught us realm and nonce.
//! Used by the test suites, the load generator and probes.

use switchboard_stun::{
    attr_type, decode_error_code, long_term_key_md5, Class, Message, MessageWriter, Method,
    TransactionId, WriteError,
};

#[derive(Clone, Debug)]
pub struct ClientAuth {
    pub username: Vec<u8>,
    password: Vec<u8>,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Option<[u8; 16]>,
}

impl ClientAuth {
    pub fn new(username: impl Into<Vec<u8>>, password: impl Into<Vec<u8>>) -> Self {
        ClientAuth {
            username: username.into(),
            password: password.into(),
            realm: Vec::new(),
            nonce: Vec::new(),
            key: None,
        }
    }

    /// The long-term key, once the realm is known.
    pub fn key(&self) -> Option<&[u8; 16]> {
        self.key.as_ref()
    }

    /// Learn realm and nonce from a 401/438 error response. True when the request
    /// should be sent again with credentials.
    pub fn learn(&mut self, resp: &Message) -> bool {
        if resp.class != Class::Error {
            return false;
        }
        let code = resp
            .get(attr_type::ERROR_CODE)
            .and_then(decode_error_code)
            .map(|c| c.0);
        if !matches!(code, Some(401) | Some(438)) {
            return false;
        }
        let (Some(realm), Some(nonce)) = (resp.get(attr_type::REALM), resp.get(attr_type::NONCE))
        else {
            return false;
        };
        let retry = code == Some(438) || self.nonce != nonce || self.key.is_none();
        self.nonce = nonce.to_vec();
        if self.realm != realm || self.key.is_none() {
            self.realm = realm.to_vec();
            self.key = Some(long_term_key_md5(
                &self.username,
                &self.realm,
                &self.password,
            ));
        }
        retry
    }

    /// Build a request: `body` adds method attributes; credentials and FINGERPRINT follow.
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
            w.attr(attr_type::USERNAME, &self.username)?;
            w.attr(attr_type::REALM, &self.realm)?;
            w.attr(attr_type::NONCE, &self.nonce)?;
            w.message_integrity(key)?;
        }
        w.fingerprint()?;
        Ok(w.finish())
    }
}

/// The error code of a response, if it is an error.
pub fn error_code(resp: &Message) -> Option<u16> {
    resp.get(attr_type::ERROR_CODE)
        .and_then(decode_error_code)
        .map(|c| c.0)
}
