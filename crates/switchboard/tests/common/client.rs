//! A blocking TURN client over UDP for end-to-end tests.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use switchboard_stun::{
    attr_type, Class, Message, MessageWriter, Method, TransactionId, WriteError,
};
use switchboard_turn::client::{error_code, ClientAuth};

pub struct TurnClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub auth: ClientAuth,
}

/// What a request came back with.
#[derive(Debug)]
pub struct Response {
    pub class: Class,
    pub code: Option<u16>,
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn msg(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("response parses")
    }
    pub fn ok(&self) -> bool {
        self.class == Class::Success
    }
}

/// A request body: the method's attributes, written before the credentials.
pub type Body<'b> = dyn Fn(&mut MessageWriter) -> Result<(), WriteError> + 'b;

/// What the UDP and TCP test clients share: one request/response exchange of their
/// own, and the authenticated requests built on it.
pub trait TurnRequests {
    /// Send one request and wait for its response (None on timeout).
    fn request_once(&mut self, method: Method, body: &Body) -> Option<Response>;
    fn auth_mut(&mut self) -> &mut ClientAuth;

    /// Send a request, doing the 401/438 round trip when needed.
    fn request(&mut self, method: Method, body: &Body) -> Response {
        for _ in 0..3 {
            let r = self
                .request_once(method, body)
                .expect("no response from server");
            if !self.auth_mut().learn(&r.msg()) {
                return r;
            }
        }
        panic!("authentication did not converge");
    }

    fn create_permission(&mut self, peer: SocketAddr) -> Response {
        self.request(Method::CREATE_PERMISSION, &move |w| {
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }
}

impl TurnRequests for TurnClient {
    fn request_once(&mut self, method: Method, body: &Body) -> Option<Response> {
        let tid = TransactionId(rand::random());
        let mut buf = [0u8; 1500];
        let n = self
            .auth
            .request(&mut buf, method, tid, body)
            .expect("build");
        self.sock.send_to(&buf[..n], self.server).expect("send");
        let mut rx = [0u8; 1500];
        loop {
            let (n, _) = self.sock.recv_from(&mut rx).ok()?;
            let Ok(m) = Message::parse(&rx[..n]) else {
                continue;
            };
            if m.tid != tid {
                continue;
            }
            return Some(Response {
                class: m.class,
                code: error_code(&m),
                bytes: rx[..n].to_vec(),
            });
        }
    }

    fn auth_mut(&mut self) -> &mut ClientAuth {
        &mut self.auth
    }
}

impl TurnClient {
    pub fn new(server: SocketAddr, user: &str, pass: &str) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        TurnClient {
            sock,
            server,
            auth: ClientAuth::new(user, pass),
        }
    }

    pub fn allocate(&mut self) -> Response {
        self.request(Method::ALLOCATE, &|w| {
            w.u32(attr_type::REQUESTED_TRANSPORT, 17 << 24)?;
            Ok(())
        })
    }

    pub fn relayed(&self, r: &Response) -> SocketAddr {
        r.msg()
            .xor_address(attr_type::XOR_RELAYED_ADDRESS)
            .expect("XOR-RELAYED-ADDRESS")
    }

    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Response {
        self.request(Method::CHANNEL_BIND, &move |w| {
            w.u32(attr_type::CHANNEL_NUMBER, (channel as u32) << 16)?;
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }

    pub fn refresh(&mut self, lifetime: u32) -> Response {
        self.request(Method::REFRESH, &move |w| {
            w.u32(attr_type::LIFETIME, lifetime)?;
            Ok(())
        })
    }

    pub fn send_channel(&self, channel: u16, payload: &[u8]) {
        let mut b = vec![0u8; 4 + payload.len()];
        b[..2].copy_from_slice(&channel.to_be_bytes());
        b[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        b[4..].copy_from_slice(payload);
        self.sock
            .send_to(&b, self.server)
            .expect("send channel data");
    }

    /// Receive one datagram from the server (ChannelData or Data indication).
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut rx = [0u8; 2048];
        let (n, _) = self.sock.recv_from(&mut rx).ok()?;
        Some(rx[..n].to_vec())
    }
}
