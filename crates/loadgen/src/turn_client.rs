//! TURN client control plane: long-term / REST credentials, request building,
//! response classification (401/438 handling) and a blocking transaction helper
//! with retransmission. The data plane lives in `relay_mode`.

use crate::net::now_ns;
use base64::Engine as _;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use switchboard_stun::{
    attr_type, decode_error_code, long_term_key_md5, rest_api_password, Class, Message,
    MessageWriter, Method, TransactionId,
};

/// REQUESTED-TRANSPORT value for UDP (protocol 17 in the top byte).
const TRANSPORT_UDP: u32 = 17 << 24;
/// First retransmission timeout; doubled on every retry.
const RTO_MS: u64 = 250;
/// Transmissions per transaction before giving up (250+500+1000+2000+4000 ms).
const MAX_TRIES: u32 = 5;
/// Re-authentications (401/438 with a new nonce) tolerated per transaction.
const MAX_AUTH_RETRIES: u32 = 3;

/// Long-term credentials (static or TURN REST API).
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// `--realm`: when set, a server announcing another realm is an error.
    pub expected_realm: Option<String>,
}

impl Credentials {
    pub fn new(user: &str, password: &str, expected_realm: Option<String>) -> Self {
        Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
            expected_realm,
        }
    }

    /// TURN REST API (coturn `use-auth-secret`): username `<expiry>:<name>`,
    /// password base64(HMAC-SHA1(secret, username)).
    pub fn rest(
        secret: &[u8],
        expiry_unix: u64,
        name: &str,
        expected_realm: Option<String>,
    ) -> Self {
        let username = format!("{expiry_unix}:{name}");
        let mac = rest_api_password(secret, username.as_bytes());
        let password = base64::engine::general_purpose::STANDARD.encode(mac);
        Credentials {
            username,
            password,
            expected_realm,
        }
    }
}

/// A TURN request to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Allocate { lifetime: Option<u32> },
    Refresh { lifetime: u32 },
    CreatePermission { peer: SocketAddr },
    ChannelBind { channel: u16, peer: SocketAddr },
}

impl Request {
    pub fn method(&self) -> Method {
        match self {
            Request::Allocate { .. } => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission { .. } => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        }
    }
}

/// What a success response told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuccessInfo {
    pub relayed: Option<SocketAddr>,
    pub mapped: Option<SocketAddr>,
    pub lifetime: Option<u32>,
}

/// Classification of a response to one of our requests.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Success(SuccessInfo),
    /// The server handed us a (new) realm/nonce: send the request again.
    Retry(u16),
    Error(u16, String),
}

/// Why a transaction failed.
#[derive(Debug)]
pub enum TxError {
    Timeout,
    /// STUN error code (0 for protocol problems such as a bad MESSAGE-INTEGRITY).
    Code(u16, String),
    Io(io::Error),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Timeout => write!(f, "no response after {MAX_TRIES} transmissions"),
            TxError::Code(0, r) => write!(f, "{r}"),
            TxError::Code(c, r) => write!(f, "error {c} {r}"),
            TxError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for TxError {}

impl TxError {
    /// Short label for failure statistics ("timeout", "401", "io", ...).
    pub fn label(&self) -> String {
        match self {
            TxError::Timeout => "timeout".into(),
            TxError::Code(0, _) => "protocol".into(),
            TxError::Code(c, _) => c.to_string(),
            TxError::Io(_) => "io".into(),
        }
    }
}

/// Per-5-tuple authentication state: realm, nonce and the derived key.
#[derive(Clone, Debug)]
pub struct AuthState {
    pub creds: Credentials,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: [u8; 16],
}

impl AuthState {
    pub fn new(creds: Credentials) -> Self {
        AuthState {
            creds,
            realm: Vec::new(),
            nonce: Vec::new(),
            key: [0; 16],
        }
    }

    /// True once a realm and nonce are known (requests then carry MESSAGE-INTEGRITY).
    pub fn ready(&self) -> bool {
        !self.nonce.is_empty()
    }

    #[cfg(test)]
    pub fn key(&self) -> &[u8; 16] {
        &self.key
    }

    /// Encode `req` with transaction id `tid` into `buf`; returns its length.
    pub fn build(
        &self,
        req: &Request,
        tid: TransactionId,
        buf: &mut [u8],
    ) -> Result<usize, switchboard_stun::WriteError> {
        let mut w = MessageWriter::new(buf, req.method(), Class::Request, tid)?;
        match *req {
            Request::Allocate { lifetime } => {
                w.u32(attr_type::REQUESTED_TRANSPORT, TRANSPORT_UDP)?;
                if let Some(l) = lifetime {
                    w.u32(attr_type::LIFETIME, l)?;
                }
            }
            Request::Refresh { lifetime } => {
                w.u32(attr_type::LIFETIME, lifetime)?;
            }
            Request::CreatePermission { peer } => {
                w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            }
            Request::ChannelBind { channel, peer } => {
                w.u32(attr_type::CHANNEL_NUMBER, (channel as u32) << 16)?;
                w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            }
        }
        if self.ready() {
            w.attr(attr_type::USERNAME, self.creds.username.as_bytes())?;
            w.attr(attr_type::REALM, &self.realm)?;
            w.attr(attr_type::NONCE, &self.nonce)?;
            w.message_integrity(&self.key)?;
        }
        w.fingerprint()?;
        Ok(w.finish())
    }

    /// Take REALM/NONCE from an error response. Returns an error text when the
    /// realm contradicts `--realm` or the response lacks a nonce.
    fn learn(&mut self, msg: &Message) -> Result<bool, String> {
        let Some(nonce) = msg.get(attr_type::NONCE) else {
            return Err("error response without NONCE".into());
        };
        let realm = msg.get(attr_type::REALM).unwrap_or(&self.realm);
        if realm.is_empty() {
            return Err("error response without REALM".into());
        }
        if let Some(want) = &self.creds.expected_realm {
            if realm != want.as_bytes() {
                return Err(format!(
                    "server realm {:?} differs from --realm {want:?}",
                    String::from_utf8_lossy(realm)
                ));
            }
        }
        let changed = nonce != self.nonce.as_slice() || realm != self.realm.as_slice();
        if realm != self.realm.as_slice() {
            self.realm = realm.to_vec();
            self.key = long_term_key_md5(
                self.creds.username.as_bytes(),
                &self.realm,
                self.creds.password.as_bytes(),
            );
        }
        self.nonce.clear();
        self.nonce.extend_from_slice(nonce);
        Ok(changed)
    }

    /// Classify a response already matched to our request by transaction id.
    pub fn classify(&mut self, msg: &Message, req: &Request) -> Reply {
        if msg.method != req.method() {
            return Reply::Error(0, format!("response method {:?} to {:?}", msg.method, req));
        }
        match msg.class {
            Class::Success => {
                if self.ready() && msg.has_message_integrity() && !msg.verify_integrity(&self.key) {
                    return Reply::Error(0, "response MESSAGE-INTEGRITY check failed".into());
                }
                Reply::Success(SuccessInfo {
                    relayed: msg.xor_address(attr_type::XOR_RELAYED_ADDRESS),
                    mapped: msg.xor_address(attr_type::XOR_MAPPED_ADDRESS),
                    lifetime: msg.u32(attr_type::LIFETIME),
                })
            }
            Class::Error => {
                let (code, reason) = msg
                    .get(attr_type::ERROR_CODE)
                    .and_then(decode_error_code)
                    .map(|(c, r)| (c, r.to_owned()))
                    .unwrap_or((0, "error response without ERROR-CODE".into()));
                if code == 401 || code == 438 {
                    let was_ready = self.ready();
                    match self.learn(msg) {
                        // 438, a first 401, or a 401 carrying a new nonce: try again.
                        Ok(changed) if code == 438 || !was_ready || changed => Reply::Retry(code),
                        Ok(_) => Reply::Error(code, format!("{reason} (wrong credentials?)")),
                        Err(e) => Reply::Error(code, e),
                    }
                } else {
                    Reply::Error(code, reason)
                }
            }
            c => Reply::Error(0, format!("unexpected {c:?} message as a response")),
        }
    }
}

/// Fresh random transaction id for control requests.
pub fn random_tid() -> TransactionId {
    TransactionId(rand::random())
}

/// Blocking TURN client on one connected UDP socket (setup, teardown, churn).
pub struct TurnClient {
    pub sock: UdpSocket,
    pub auth: AuthState,
    /// Extra round trips caused by 401/438.
    pub auth_retries: u64,
    pub retransmits: u64,
    out: Vec<u8>,
    inb: Vec<u8>,
}

impl TurnClient {
    pub fn new(sock: UdpSocket, auth: AuthState) -> Self {
        TurnClient {
            sock,
            auth,
            auth_retries: 0,
            retransmits: 0,
            out: vec![0; 1500],
            inb: vec![0; 65536],
        }
    }

    /// Run one transaction to completion, re-authenticating on 401/438.
    pub fn transact(&mut self, req: &Request) -> Result<SuccessInfo, TxError> {
        let mut auth_tries = 0;
        loop {
            let tid = random_tid();
            let len = self
                .auth
                .build(req, tid, &mut self.out)
                .map_err(|e| TxError::Code(0, format!("building request: {e}")))?;
            let n = self.exchange(tid, len)?;
            let msg =
                Message::parse(&self.inb[..n]).map_err(|e| TxError::Code(0, e.to_string()))?;
            match self.auth.classify(&msg, req) {
                Reply::Success(info) => return Ok(info),
                Reply::Retry(code) => {
                    auth_tries += 1;
                    self.auth_retries += 1;
                    if auth_tries > MAX_AUTH_RETRIES {
                        return Err(TxError::Code(
                            code,
                            "server keeps asking for a new nonce".into(),
                        ));
                    }
                }
                Reply::Error(c, r) => return Err(TxError::Code(c, r)),
            }
        }
    }

    /// Send `out[..len]` and wait for the response with id `tid`, retransmitting.
    /// Other datagrams (relayed data, stale responses) are skipped.
    fn exchange(&mut self, tid: TransactionId, len: usize) -> Result<usize, TxError> {
        let mut rto = RTO_MS * 1_000_000;
        for attempt in 0..MAX_TRIES {
            if attempt > 0 {
                self.retransmits += 1;
            }
            self.sock.send(&self.out[..len]).map_err(TxError::Io)?;
            let deadline = now_ns() + rto;
            loop {
                let now = now_ns();
                if now >= deadline {
                    break;
                }
                let wait = Duration::from_nanos((deadline - now).max(1000));
                self.sock
                    .set_read_timeout(Some(wait))
                    .map_err(TxError::Io)?;
                match self.sock.recv(&mut self.inb) {
                    Ok(n) => {
                        if let Ok(m) = Message::parse(&self.inb[..n]) {
                            if m.tid == tid && matches!(m.class, Class::Success | Class::Error) {
                                return Ok(n);
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(TxError::Io(e)),
                }
            }
            rto *= 2;
        }
        Err(TxError::Timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("alice", "alicepw", None)
    }

    fn error_response(method: Method, tid: TransactionId, code: u16, nonce: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        let mut w = MessageWriter::new(&mut b, method, Class::Error, tid).unwrap();
        w.error_code(code, "x").unwrap();
        w.attr(attr_type::REALM, b"lab.test").unwrap();
        w.attr(attr_type::NONCE, nonce).unwrap();
        let n = w.finish();
        b.truncate(n);
        b
    }

    #[test]
    fn rest_credentials_match_coturn_scheme() {
        let c = Credentials::rest(b"labsecret", 1_700_000_000, "loaduser", None);
        assert_eq!(c.username, "1700000000:loaduser");
        // python3: base64(hmac.new(b'labsecret', b'1700000000:loaduser', sha1).digest())
        assert_eq!(c.password, "Rs7uMk80VGQXfhcZ5v8zIvST3V0=");
    }

    #[test]
    fn unauthenticated_allocate_roundtrips() {
        let a = AuthState::new(creds());
        let mut buf = [0u8; 512];
        let tid = random_tid();
        let n = a
            .build(
                &Request::Allocate {
                    lifetime: Some(600),
                },
                tid,
                &mut buf,
            )
            .unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(
            (m.method, m.class, m.tid),
            (Method::ALLOCATE, Class::Request, tid)
        );
        assert_eq!(m.u32(attr_type::REQUESTED_TRANSPORT), Some(17 << 24));
        assert_eq!(m.u32(attr_type::LIFETIME), Some(600));
        assert!(!m.has_message_integrity());
        assert!(m.verify_fingerprint());
    }

    #[test]
    fn challenge_then_authenticated_channel_bind() {
        let mut a = AuthState::new(creds());
        let req = Request::Allocate { lifetime: None };
        let tid = random_tid();
        let resp = error_response(Method::ALLOCATE, tid, 401, b"nonce-1");
        assert_eq!(
            a.classify(&Message::parse(&resp).unwrap(), &req),
            Reply::Retry(401)
        );
        assert!(a.ready());
        // python3: hashlib.md5(b'alice:lab.test:alicepw')
        assert_eq!(a.key()[..4], [0xe5, 0xd2, 0xda, 0x4f]);

        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let cb = Request::ChannelBind {
            channel: 0x4001,
            peer,
        };
        let mut buf = [0u8; 512];
        let tid = random_tid();
        let n = a.build(&cb, tid, &mut buf).unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.method, Method::CHANNEL_BIND);
        assert_eq!(m.get(attr_type::USERNAME), Some(&b"alice"[..]));
        assert_eq!(m.get(attr_type::REALM), Some(&b"lab.test"[..]));
        assert_eq!(m.get(attr_type::NONCE), Some(&b"nonce-1"[..]));
        assert_eq!(m.u32(attr_type::CHANNEL_NUMBER), Some(0x4001 << 16));
        assert_eq!(m.xor_address(attr_type::XOR_PEER_ADDRESS), Some(peer));
        let key = long_term_key_md5(b"alice", b"lab.test", b"alicepw");
        assert!(m.verify_integrity(&key));
        assert!(!m.verify_integrity(b"wrong key"));
        assert!(m.verify_fingerprint());

        // Same nonce again: wrong credentials, no retry loop.
        let again = error_response(Method::CHANNEL_BIND, tid, 401, b"nonce-1");
        assert!(matches!(
            a.classify(&Message::parse(&again).unwrap(), &cb),
            Reply::Error(401, _)
        ));
        // 438 with a new nonce: retry with it.
        let stale = error_response(Method::CHANNEL_BIND, tid, 438, b"nonce-2");
        assert_eq!(
            a.classify(&Message::parse(&stale).unwrap(), &cb),
            Reply::Retry(438)
        );
        let n = a.build(&cb, tid, &mut buf).unwrap();
        assert_eq!(
            Message::parse(&buf[..n]).unwrap().get(attr_type::NONCE),
            Some(&b"nonce-2"[..])
        );
    }

    #[test]
    fn success_integrity_checked() {
        let mut a = AuthState::new(creds());
        let req = Request::Refresh { lifetime: 0 };
        let tid = random_tid();
        let ch = error_response(Method::REFRESH, tid, 401, b"n");
        a.classify(&Message::parse(&ch).unwrap(), &req);
        for (key, ok) in [(*a.key(), true), ([0u8; 16], false)] {
            let mut b = [0u8; 256];
            let mut w = MessageWriter::new(&mut b, Method::REFRESH, Class::Success, tid).unwrap();
            w.u32(attr_type::LIFETIME, 0).unwrap();
            w.message_integrity(&key).unwrap();
            let n = w.finish();
            let r = a.classify(&Message::parse(&b[..n]).unwrap(), &req);
            assert_eq!(
                matches!(
                    r,
                    Reply::Success(SuccessInfo {
                        lifetime: Some(0),
                        ..
                    })
                ),
                ok
            );
        }
    }

    #[test]
    fn realm_mismatch_and_other_errors() {
        let mut a = AuthState::new(Credentials::new("u", "p", Some("other".into())));
        let req = Request::Allocate { lifetime: None };
        let tid = random_tid();
        let r = error_response(Method::ALLOCATE, tid, 401, b"n");
        match a.classify(&Message::parse(&r).unwrap(), &req) {
            Reply::Error(401, e) => assert!(e.contains("--realm"), "{e}"),
            other => panic!("{other:?}"),
        }
        let r = error_response(Method::ALLOCATE, tid, 486, b"n");
        assert!(matches!(
            a.classify(&Message::parse(&r).unwrap(), &req),
            Reply::Error(486, _)
        ));
        let r = error_response(Method::REFRESH, tid, 486, b"n");
        assert!(matches!(
            a.classify(&Message::parse(&r).unwrap(), &req),
            Reply::Error(0, _)
        ));
    }
}
