//! Owned copies of the server's outputs and a builder for STUN requests and indications.

use super::Client;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_stun::{
    attr_type, decode_error_code, encode_address, xor_addr, Class, Message, MessageWriter, Method,
    TransactionId,
};
use switchboard_turn::{AllocId, FiveTuple, Transmit};

/// An owned copy of a `Transmit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    None,
    Client {
        to: FiveTuple,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Peer {
        alloc: AllocId,
        relay: SocketAddr,
        peer: SocketAddr,
        data: Vec<u8>,
    },
}

impl From<Transmit<'_>> for Out {
    fn from(t: Transmit<'_>) -> Self {
        match t {
            Transmit::None => Out::None,
            Transmit::Client { to, from, data } => Out::Client {
                to,
                from,
                data: data.to_vec(),
            },
            Transmit::Peer {
                alloc,
                relay,
                peer,
                data,
            } => Out::Peer {
                alloc,
                relay,
                peer,
                data: data.to_vec(),
            },
        }
    }
}

pub fn error_code(m: &Message) -> Option<u16> {
    decode_error_code(m.get(attr_type::ERROR_CODE)?).map(|(c, _)| c)
}

pub fn error_reason(m: &Message) -> String {
    let v = m.get(attr_type::ERROR_CODE).expect("ERROR-CODE");
    decode_error_code(v)
        .expect("valid ERROR-CODE")
        .1
        .to_string()
}

/// All XOR-RELAYED-ADDRESS values of a response, in order.
pub fn relayed_addresses(m: &Message) -> Vec<SocketAddr> {
    m.attributes()
        .filter(|a| a.typ == attr_type::XOR_RELAYED_ADDRESS)
        .map(|a| switchboard_stun::decode_xor_address(a.value, &m.tid).expect("address"))
        .collect()
}

impl Out {
    pub fn is_none(&self) -> bool {
        matches!(self, Out::None)
    }

    /// Bytes sent to the client; panics when this is not a client transmit.
    pub fn data(&self) -> &[u8] {
        match self {
            Out::Client { data, .. } => data,
            other => panic!("expected a transmit to the client, got {other:?}"),
        }
    }

    pub fn sent_from(&self) -> SocketAddr {
        match self {
            Out::Client { from, .. } => *from,
            other => panic!("expected a transmit to the client, got {other:?}"),
        }
    }

    pub fn to(&self) -> FiveTuple {
        match self {
            Out::Client { to, .. } => *to,
            other => panic!("expected a transmit to the client, got {other:?}"),
        }
    }

    pub fn msg(&self) -> Message<'_> {
        Message::parse(self.data()).expect("response parses as STUN")
    }

    /// ERROR-CODE of an error response, None for anything else.
    pub fn code(&self) -> Option<u16> {
        match self {
            Out::Client { data, .. } => {
                let m = Message::parse(data).ok()?;
                if m.class != Class::Error {
                    return None;
                }
                error_code(&m)
            }
            _ => None,
        }
    }

    /// Assert an error response with `code`.
    pub fn err(&self, code: u16) -> Message<'_> {
        let m = self.msg();
        assert_eq!(m.class, Class::Error, "expected error {code}, got {m:?}");
        assert_eq!(error_code(&m), Some(code), "error code");
        m
    }

    /// Assert an error response with `code` whose MESSAGE-INTEGRITY verifies with `c`'s key.
    pub fn err_signed(&self, code: u16, c: &Client) -> Message<'_> {
        let m = self.err(code);
        assert!(
            m.verify_integrity(&c.key()),
            "error {code} must carry valid MI"
        );
        m
    }

    /// Assert a success response whose MESSAGE-INTEGRITY verifies with `c`'s key.
    pub fn ok(&self, c: &Client) -> Message<'_> {
        let m = self.msg();
        assert_eq!(
            m.class,
            Class::Success,
            "expected success, got error {:?}",
            error_code(&m)
        );
        assert!(m.verify_integrity(&c.key()), "success must carry valid MI");
        m
    }

    /// (relay, peer, payload) of a transmit to a peer.
    pub fn peer(&self) -> (SocketAddr, SocketAddr, &[u8]) {
        match self {
            Out::Peer {
                relay, peer, data, ..
            } => (*relay, *peer, data),
            other => panic!("expected a transmit to a peer, got {other:?}"),
        }
    }
}

static TID: AtomicU64 = AtomicU64::new(1);

pub fn fresh_tid() -> TransactionId {
    let n = TID.fetch_add(1, Ordering::Relaxed);
    let mut t = [0xA5u8; 12];
    t[4..].copy_from_slice(&n.to_be_bytes());
    TransactionId(t)
}

enum Seal {
    None,
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

/// A STUN request or indication under construction.
pub struct Req {
    pub method: Method,
    pub class: Class,
    pub tid: TransactionId,
    pub attrs: Vec<(u16, Vec<u8>)>,
    seal: Seal,
    pub fingerprint: bool,
}

impl Req {
    pub fn new(method: Method) -> Self {
        Req {
            method,
            class: Class::Request,
            tid: fresh_tid(),
            attrs: Vec::new(),
            seal: Seal::None,
            fingerprint: false,
        }
    }

    pub fn indication(method: Method) -> Self {
        Req {
            class: Class::Indication,
            ..Req::new(method)
        }
    }

    pub fn tid(mut self, tid: TransactionId) -> Self {
        self.tid = tid;
        self
    }

    pub fn attr(mut self, typ: u16, value: &[u8]) -> Self {
        self.attrs.push((typ, value.to_vec()));
        self
    }

    pub fn u32(self, typ: u16, v: u32) -> Self {
        self.attr(typ, &v.to_be_bytes())
    }

    pub fn xor(mut self, typ: u16, a: SocketAddr) -> Self {
        let x = xor_addr(a, &self.tid);
        let mut v = vec![0u8; if a.is_ipv4() { 8 } else { 20 }];
        encode_address(&x, &mut v);
        self.attrs.push((typ, v));
        self
    }

    pub fn peer(self, a: SocketAddr) -> Self {
        self.xor(attr_type::XOR_PEER_ADDRESS, a)
    }

    pub fn udp_transport(self) -> Self {
        self.attr(attr_type::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
    }

    pub fn lifetime(self, secs: u32) -> Self {
        self.u32(attr_type::LIFETIME, secs)
    }

    pub fn channel(self, number: u16) -> Self {
        let b = number.to_be_bytes();
        self.attr(attr_type::CHANNEL_NUMBER, &[b[0], b[1], 0, 0])
    }

    pub fn fingerprint(mut self) -> Self {
        self.fingerprint = true;
        self
    }

    /// Seal with MESSAGE-INTEGRITY using `key`.
    pub fn mi(mut self, key: &[u8]) -> Self {
        self.seal = Seal::Sha1(key.to_vec());
        self
    }

    /// Seal with MESSAGE-INTEGRITY-SHA256 using `key`.
    pub fn mi256(mut self, key: &[u8]) -> Self {
        self.seal = Seal::Sha256(key.to_vec());
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let mut w = MessageWriter::new(&mut buf, self.method, self.class, self.tid).unwrap();
        for (t, v) in &self.attrs {
            w.attr(*t, v).unwrap();
        }
        match &self.seal {
            Seal::None => {}
            Seal::Sha1(k) => {
                w.message_integrity(k).unwrap();
            }
            Seal::Sha256(k) => {
                w.message_integrity_sha256(k).unwrap();
            }
        }
        if self.fingerprint {
            w.fingerprint().unwrap();
        }
        let n = w.finish();
        buf.truncate(n);
        buf
    }
}
