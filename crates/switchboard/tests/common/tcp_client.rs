//! A blocking TURN client over TCP for the RFC 6062 end-to-end tests: STUN framing
//! on a stream, the 401 round trip, indications kept aside until asked for.

use super::client::{Body, Response, TurnRequests};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_stun::{attr_type, Class, Message, Method, TransactionId};
use switchboard_turn::client::{error_code, ClientAuth};

pub struct TcpTurn {
    pub stream: TcpStream,
    pub auth: ClientAuth,
    /// Bytes read and not yet framed.
    buf: Vec<u8>,
    /// Indications received while waiting for responses.
    pub indications: Vec<Vec<u8>>,
}

impl TcpTurn {
    pub fn connect(server: SocketAddr, user: &str, pass: &str) -> Self {
        Self::with_auth(server, ClientAuth::new(user, pass))
    }

    /// A new connection reusing credentials (and the realm and nonce) learnt elsewhere.
    pub fn with_auth(server: SocketAddr, auth: ClientAuth) -> Self {
        let stream = TcpStream::connect(server).expect("connect to the TURN server over TCP");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        TcpTurn {
            stream,
            auth,
            buf: Vec::new(),
            indications: Vec::new(),
        }
    }

    /// The next STUN message on the stream (None on timeout or close).
    pub fn read_msg(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() >= 20 {
                let len = 20 + u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                assert!(
                    self.buf[0] & 0xC0 == 0,
                    "expected STUN on the control stream"
                );
                if self.buf.len() >= len {
                    return Some(self.buf.drain(..len).collect());
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn allocate_tcp(&mut self) -> Response {
        self.request(Method::ALLOCATE, &|w| {
            w.u32(attr_type::REQUESTED_TRANSPORT, 6 << 24)?;
            Ok(())
        })
    }

    pub fn connect_peer(&mut self, peer: SocketAddr) -> Response {
        self.request(Method::CONNECT, &move |w| {
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }

    pub fn connection_bind(&mut self, conn_id: u32) -> Response {
        self.request(Method::CONNECTION_BIND, &move |w| {
            w.u32(attr_type::CONNECTION_ID, conn_id)?;
            Ok(())
        })
    }

    /// Wait for an indication of `method` (kept ones first).
    pub fn indication(&mut self, method: Method, timeout: Duration) -> Option<Vec<u8>> {
        let is = |b: &Vec<u8>| Message::parse(b).is_ok_and(|m| m.method == method);
        if let Some(i) = self.indications.iter().position(is) {
            return Some(self.indications.remove(i));
        }
        let deadline = Instant::now() + timeout;
        let old = self.stream.read_timeout().ok().flatten();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let Some(b) = self.read_msg() else { break };
            if is(&b) {
                let _ = self.stream.set_read_timeout(old);
                return Some(b);
            }
            self.indications.push(b);
        }
        let _ = self.stream.set_read_timeout(old);
        None
    }

    /// After a successful ConnectionBind: the raw stream to the peer, and any bytes
    /// of it already read.
    pub fn into_pipe(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }
}

impl TurnRequests for TcpTurn {
    fn request_once(&mut self, method: Method, body: &Body) -> Option<Response> {
        let tid = TransactionId(rand::random());
        let mut out = [0u8; 1500];
        let n = self
            .auth
            .request(&mut out, method, tid, body)
            .expect("build");
        self.stream.write_all(&out[..n]).expect("send request");
        loop {
            let bytes = self.read_msg()?;
            let m = Message::parse(&bytes).expect("STUN");
            if m.class == Class::Indication {
                self.indications.push(bytes);
                continue;
            }
            if m.tid != tid {
                continue;
            }
            return Some(Response {
                class: m.class,
                code: error_code(&m),
                bytes: bytes.clone(),
            });
        }
    }

    fn auth_mut(&mut self) -> &mut ClientAuth {
        &mut self.auth
    }
}

pub fn connection_id(r: &Response) -> u32 {
    r.msg()
        .u32(attr_type::CONNECTION_ID)
        .expect("CONNECTION-ID")
}
