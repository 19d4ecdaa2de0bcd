//! Request/response transactions over any transport, with the 401/438 round trip,
//! and the TURN requests built on them.

use crate::auth::{error_code, ClientAuth, Learn};
use crate::error::ClientError;
use crate::request::{Reply, Request, SuccessInfo};
use crate::{TRANSPORT_TCP, TRANSPORT_UDP};
use std::net::SocketAddr;
use switchboard_stun::{
    attr_type, decode_xor_address, Class, ErrorCode, Message, MessageWriter, Method, WriteError,
};

/// Re-authentications (401/438 with a new nonce) tolerated per transaction.
pub const MAX_AUTH_RETRIES: u32 = 3;

/// A request body: the method's attributes, written before the credentials.
pub type Body<'b> = dyn Fn(&mut MessageWriter) -> Result<(), WriteError> + 'b;

/// A response to one of our requests, kept whole for inspection.
#[derive(Clone, Debug)]
pub struct Response {
    pub class: Class,
    /// The ERROR-CODE number of an error response, as on the wire.
    pub code: Option<u16>,
    pub bytes: Vec<u8>,
}

impl Response {
    /// Keep `bytes`, the response with `msg` parsed from it.
    pub fn new(msg: &Message, bytes: Vec<u8>) -> Self {
        Response {
            class: msg.class,
            code: error_code(msg).map(u16::from),
            bytes,
        }
    }

    /// The parsed response (it parsed when it was received).
    pub fn msg(&self) -> Result<Message<'_>, ClientError> {
        Ok(Message::parse(&self.bytes)?)
    }

    pub fn ok(&self) -> bool {
        self.class == Class::Success
    }

    /// The error code by name.
    pub fn error(&self) -> Option<ErrorCode> {
        self.code.map(ErrorCode)
    }

    /// Every XOR-RELAYED-ADDRESS (two for a dual-stack allocation), in order.
    pub fn relayed(&self) -> Vec<SocketAddr> {
        let Ok(m) = self.msg() else {
            return Vec::new();
        };
        m.attributes()
            .filter(|a| a.typ == attr_type::XOR_RELAYED_ADDRESS)
            .filter_map(|a| decode_xor_address(a.value, &m.tid))
            .collect()
    }

    /// CONNECTION-ID of a Connect success or ConnectionAttempt (RFC 6062).
    pub fn connection_id(&self) -> Option<u32> {
        self.msg().ok()?.u32(attr_type::CONNECTION_ID)
    }
}

/// Counters a load generator reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Extra round trips caused by 401/438.
    pub auth_retries: u64,
    pub retransmits: u64,
}

/// A blocking client that can run one request/response exchange; the TURN requests
/// and the authentication round trip come with it.
pub trait Transact {
    /// Send one request (signed when credentials are known) and wait for its
    /// response, whatever its class.
    fn request_once(&mut self, method: Method, body: &Body) -> Result<Response, ClientError>;
    fn auth_mut(&mut self) -> &mut ClientAuth;
    fn stats_mut(&mut self) -> &mut Stats;

    /// Send a request, doing the 401/438 round trip when needed; the final response
    /// whatever its class.
    fn request(&mut self, method: Method, body: &Body) -> Result<Response, ClientError> {
        let mut retries = 0;
        loop {
            let r = self.request_once(method, body)?;
            match self.auth_mut().learn(&r.msg()?) {
                Learn::Retry(code) => {
                    retries += 1;
                    if retries > MAX_AUTH_RETRIES {
                        return Err(ClientError::AuthLoop(code));
                    }
                    self.stats_mut().auth_retries += 1;
                }
                Learn::NotChallenge | Learn::Refused(..) => return Ok(r),
            }
        }
    }

    /// Run `req` to success; an error response is an error.
    fn transact(&mut self, req: &Request) -> Result<SuccessInfo, ClientError> {
        let mut retries = 0;
        loop {
            let r = self.request_once(req.method(), &|w| req.write_body(w))?;
            match self.auth_mut().classify(&r.msg()?, req) {
                Reply::Success(info) => return Ok(info),
                Reply::Retry(code) => {
                    retries += 1;
                    if retries > MAX_AUTH_RETRIES {
                        return Err(ClientError::AuthLoop(ErrorCode(code)));
                    }
                    self.stats_mut().auth_retries += 1;
                }
                Reply::Error(0, why) => return Err(ClientError::Protocol(why)),
                Reply::Error(code, reason) => {
                    return Err(ClientError::Code {
                        code: ErrorCode(code),
                        reason,
                    })
                }
            }
        }
    }

    /// Allocate with a UDP relay (what WebRTC clients ask for over any transport).
    fn allocate_udp(&mut self) -> Result<Response, ClientError> {
        self.request(Method::ALLOCATE, &|w| {
            w.u32(attr_type::REQUESTED_TRANSPORT, TRANSPORT_UDP)?;
            Ok(())
        })
    }

    /// Allocate with a TCP relay (RFC 6062).
    fn allocate_tcp(&mut self) -> Result<Response, ClientError> {
        self.request(Method::ALLOCATE, &|w| {
            w.u32(attr_type::REQUESTED_TRANSPORT, TRANSPORT_TCP)?;
            Ok(())
        })
    }

    fn refresh(&mut self, lifetime: u32) -> Result<Response, ClientError> {
        self.request(Method::REFRESH, &move |w| {
            w.u32(attr_type::LIFETIME, lifetime)?;
            Ok(())
        })
    }

    fn create_permission(&mut self, peer: SocketAddr) -> Result<Response, ClientError> {
        self.request(Method::CREATE_PERMISSION, &move |w| {
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }

    fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<Response, ClientError> {
        self.request(Method::CHANNEL_BIND, &move |w| {
            w.u32(attr_type::CHANNEL_NUMBER, (channel as u32) << 16)?;
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }

    /// Connect (RFC 6062 §5.2) the TCP relay to `peer`.
    fn connect_peer(&mut self, peer: SocketAddr) -> Result<Response, ClientError> {
        self.request(Method::CONNECT, &move |w| {
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }

    /// ConnectionBind (RFC 6062 §5.4) this connection to peer connection `conn_id`.
    fn connection_bind(&mut self, conn_id: u32) -> Result<Response, ClientError> {
        self.request(Method::CONNECTION_BIND, &move |w| {
            w.u32(attr_type::CONNECTION_ID, conn_id)?;
            Ok(())
        })
    }
}

/// ChannelData (RFC 8656 §12.4) for `channel`; padded to 4 bytes when `pad` (streams).
pub(crate) fn channel_data(channel: u16, payload: &[u8], pad: bool) -> Vec<u8> {
    let len = if pad {
        (payload.len() + 3) & !3
    } else {
        payload.len()
    };
    let mut b = vec![0u8; 4 + len];
    b[..2].copy_from_slice(&channel.to_be_bytes());
    b[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    b[4..4 + payload.len()].copy_from_slice(payload);
    b
}
