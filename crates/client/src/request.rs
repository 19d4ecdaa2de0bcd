//! The TURN requests a client sends, as data (so a load generator can keep them
//! pending and resend them), and what their answers mean.

use crate::TRANSPORT_UDP;
use std::net::SocketAddr;
use switchboard_stun::{attr_type, Message, MessageWriter, Method, TransactionId, WriteError};

/// A TURN request to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A UDP allocation, with a requested lifetime.
    Allocate {
        lifetime: Option<u32>,
    },
    Refresh {
        lifetime: u32,
    },
    CreatePermission {
        peer: SocketAddr,
    },
    ChannelBind {
        channel: u16,
        peer: SocketAddr,
    },
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

    /// The method's attributes (credentials are added by [`crate::ClientAuth`]).
    pub fn write_body(&self, w: &mut MessageWriter) -> Result<(), WriteError> {
        match *self {
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
        Ok(())
    }
}

/// What a success response told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuccessInfo {
    pub relayed: Option<SocketAddr>,
    pub mapped: Option<SocketAddr>,
    pub lifetime: Option<u32>,
}

impl SuccessInfo {
    pub fn of(msg: &Message) -> Self {
        SuccessInfo {
            relayed: msg.xor_address(attr_type::XOR_RELAYED_ADDRESS),
            mapped: msg.xor_address(attr_type::XOR_MAPPED_ADDRESS),
            lifetime: msg.u32(attr_type::LIFETIME),
        }
    }
}

/// Classification of a response to one of our requests.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Success(SuccessInfo),
    /// The server handed us a (new) realm/nonce: send the request again.
    Retry(u16),
    /// STUN error code (0 for protocol problems such as a bad MESSAGE-INTEGRITY).
    Error(u16, String),
}

/// A fresh random transaction id.
pub fn random_tid() -> TransactionId {
    TransactionId(rand::random())
}

#[cfg(test)]
mod tests {
    use crate::{ClientAuth, Credentials, Reply, Request, SuccessInfo};
    use std::net::SocketAddr;
    use switchboard_stun::{
        attr_type, long_term_key_md5, Class, Message, MessageWriter, Method, TransactionId,
    };

    fn auth() -> ClientAuth {
        ClientAuth::user("alice", "alicepw")
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
    fn unauthenticated_allocate_roundtrips() {
        let a = auth();
        let mut buf = [0u8; 512];
        let tid = super::random_tid();
        let req = Request::Allocate {
            lifetime: Some(600),
        };
        let n = a.build(&req, tid, &mut buf).unwrap();
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
        let mut a = auth();
        let req = Request::Allocate { lifetime: None };
        let tid = super::random_tid();
        let resp = error_response(Method::ALLOCATE, tid, 401, b"nonce-1");
        assert_eq!(
            a.classify(&Message::parse(&resp).unwrap(), &req),
            Reply::Retry(401)
        );
        assert!(a.ready());
        // python3: hashlib.md5(b'alice:lab.test:alicepw')
        assert_eq!(a.key().unwrap()[..4], [0xe5, 0xd2, 0xda, 0x4f]);

        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let cb = Request::ChannelBind {
            channel: 0x4001,
            peer,
        };
        let mut buf = [0u8; 512];
        let tid = super::random_tid();
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
        let mut a = auth();
        let req = Request::Refresh { lifetime: 0 };
        let tid = super::random_tid();
        let ch = error_response(Method::REFRESH, tid, 401, b"n");
        a.classify(&Message::parse(&ch).unwrap(), &req);
        let good = *a.key().unwrap();
        for (key, ok) in [(good, true), ([0u8; 16], false)] {
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
        let creds = Credentials::new("u", "p").expecting_realm(Some("other".into()));
        let mut a = ClientAuth::new(creds);
        let req = Request::Allocate { lifetime: None };
        let tid = super::random_tid();
        let r = error_response(Method::ALLOCATE, tid, 401, b"n");
        match a.classify(&Message::parse(&r).unwrap(), &req) {
            Reply::Error(401, e) => assert!(e.contains("expected \"other\""), "{e}"),
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
