//! A blocking TURN client over TCP or TLS for the RFC 6062 and shared-port end-to-end
//! tests: STUN framing on a stream, the 401 round trip, indications kept aside until
//! asked for.

use super::client::{Body, Response, TurnRequests};
use super::signal_client::Stream;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_stun::{attr_type, Class, Message, Method, TransactionId};
use switchboard_turn::client::{error_code, ClientAuth};

pub struct TcpTurn {
    pub stream: Stream,
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
        Self::over(Stream::Plain(stream), auth)
    }

    /// A client on an established stream (say, TLS).
    pub fn over(stream: Stream, auth: ClientAuth) -> Self {
        stream
            .tcp()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.tcp().set_nodelay(true).expect("nodelay");
        TcpTurn {
            stream,
            auth,
            buf: Vec::new(),
            indications: Vec::new(),
        }
    }

    /// The next STUN message or ChannelData frame (padding included) on the stream
    /// (None on timeout or close).
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.buf.len() >= 4 {
                let n = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                let len = match self.buf[0] >> 6 {
                    0 => 20 + n,
                    _ => 4 + ((n + 3) & !3),
                };
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

    /// A UDP allocation (what WebRTC clients ask for over TCP and TLS too).
    pub fn allocate_udp(&mut self) -> Response {
        self.request(Method::ALLOCATE, &|w| {
            w.u32(attr_type::REQUESTED_TRANSPORT, 17 << 24)?;
            Ok(())
        })
    }

    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Response {
        self.request(Method::CHANNEL_BIND, &move |w| {
            w.u32(attr_type::CHANNEL_NUMBER, (channel as u32) << 16)?;
            w.xor_address(attr_type::XOR_PEER_ADDRESS, &peer)?;
            Ok(())
        })
    }

    /// Send ChannelData, padded to 4 bytes as streams need (RFC 8656 §12.5).
    pub fn send_channel(&mut self, channel: u16, payload: &[u8]) {
        let mut b = vec![0u8; 4 + ((payload.len() + 3) & !3)];
        b[..2].copy_from_slice(&channel.to_be_bytes());
        b[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        b[4..4 + payload.len()].copy_from_slice(payload);
        self.stream.write_all(&b).expect("send channel data");
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
        let old = self.stream.tcp().read_timeout().ok().flatten();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .tcp()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let Some(b) = self.read_msg() else { break };
            if is(&b) {
                let _ = self.stream.tcp().set_read_timeout(old);
                return Some(b);
            }
            self.indications.push(b);
        }
        let _ = self.stream.tcp().set_read_timeout(old);
        None
    }

    /// After a successful ConnectionBind: the raw stream to the peer, and any bytes
    /// of it already read.
    pub fn into_pipe(self) -> (TcpStream, Vec<u8>) {
        match self.stream {
            Stream::Plain(s) => (s, self.buf),
            Stream::Tls(_) => panic!("the tests pipe over plain TCP only"),
        }
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
