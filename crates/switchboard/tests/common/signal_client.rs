//! The test face of the shared signaling clients (`switchboard-client`): connect,
//! send and expect, with failures as test failures.

use serde_json::Value;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;
use switchboard_client::signal;
pub use switchboard_client::Stream;

/// A TLS connection to `addr` that trusts only the certificate with `fingerprint`,
/// offering the ALPN protocols `alpn`; returns the stream and the negotiated ALPN.
pub fn tls_connect(
    addr: SocketAddr,
    fingerprint: &str,
    alpn: &[&[u8]],
) -> (Stream, Option<Vec<u8>>) {
    try_tls_connect(addr, fingerprint, alpn).expect("TLS handshake")
}

/// [`tls_connect`], with a failed handshake as an error.
pub fn try_tls_connect(
    addr: SocketAddr,
    fingerprint: &str,
    alpn: &[&[u8]],
) -> Result<(Stream, Option<Vec<u8>>), switchboard_client::ClientError> {
    switchboard_client::tls_connect(addr, fingerprint, alpn)
}

/// A signaling client over WebSocket.
pub struct WsClient(pub signal::WsClient);

impl Deref for WsClient {
    type Target = signal::WsClient;
    fn deref(&self) -> &signal::WsClient {
        &self.0
    }
}

impl DerefMut for WsClient {
    fn deref_mut(&mut self) -> &mut signal::WsClient {
        &mut self.0
    }
}

impl WsClient {
    pub fn connect(addr: SocketAddr) -> WsClient {
        WsClient(signal::WsClient::connect(addr).expect("WebSocket connect"))
    }

    /// Connect sending `Origin: origin`.
    pub fn connect_origin(addr: SocketAddr, origin: &str) -> WsClient {
        WsClient(signal::WsClient::connect_origin(addr, origin).expect("WebSocket connect"))
    }

    pub fn connect_tls(addr: SocketAddr, fingerprint: &str) -> WsClient {
        WsClient(signal::WsClient::connect_tls(addr, fingerprint).expect("WebSocket connect"))
    }

    pub fn send(&mut self, v: Value) {
        self.0.send(&v).expect("send");
    }

    pub fn send_text(&mut self, t: &str) {
        self.0.send_text(t).expect("send");
    }

    /// Send a text frame of `len` bytes that the server refuses for its size. The server
    /// reads the frame's header, answers and closes at once, with the rest of the frame
    /// unread, so its kernel may reset the connection while this side is still writing:
    /// that reset (and only that) is not a failure, and what the server sent before
    /// closing can still be read. The frame is written on the socket itself, past
    /// tungstenite, which would otherwise keep the unsent rest and retry it (and fail
    /// on the reset) before every read.
    pub fn send_oversized(&mut self, len: usize) {
        use std::io::Write;
        // FIN + text, masked, 64-bit length, mask key 0 (the payload goes as it is).
        let mut frame = vec![0x81u8, 0x80 | 127];
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        frame.extend_from_slice(&[0; 4]);
        frame.resize(frame.len() + len, b'x');
        let stream = self.0.ws.get_mut();
        if let Err(e) = stream.write_all(&frame).and_then(|()| stream.flush()) {
            let reset = matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
            assert!(reset, "send: {e}");
        }
    }

    /// After [`WsClient::send_oversized`]: the text messages and the close code the
    /// server sent, read from the socket itself until the close frame, the end of the
    /// stream or `timeout`. Past tungstenite, which would first try to write what it owes
    /// (the pong to a keepalive ping) and fail on the reset.
    pub fn raw_until_close(&mut self, timeout: Duration) -> (Vec<Value>, Option<u16>) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + timeout;
        let stream = self.0.ws.get_mut();
        stream
            .tcp()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let (mut buf, mut texts) = (Vec::new(), Vec::new());
        let mut chunk = [0u8; 4096];
        while std::time::Instant::now() < deadline {
            // Whole frames at the front of `buf` (server frames are not masked).
            while buf.len() >= 2 {
                let (op, short) = (buf[0] & 0x0f, (buf[1] & 0x7f) as usize);
                let (head, len) = match short {
                    126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                    127 if buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&buf[2..10]);
                        (10, u64::from_be_bytes(n) as usize)
                    }
                    126 | 127 => break,
                    n => (2, n),
                };
                if buf.len() < head + len {
                    break;
                }
                let payload = buf[head..head + len].to_vec();
                buf.drain(..head + len);
                match op {
                    1 => texts.push(serde_json::from_slice(&payload).expect("server sent JSON")),
                    8 => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        return (texts, code);
                    }
                    _ => {}
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        (texts, None)
    }

    /// The next protocol message within `timeout`; None on timeout or close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Value> {
        self.0.recv(timeout).expect("server sent JSON")
    }

    /// The next message, which must have type `ty`.
    pub fn expect(&mut self, ty: &str) -> Value {
        let m = self
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no `{ty}` message within 5 s"));
        assert_eq!(m["type"], ty, "expected {ty}, got {m}");
        m
    }

    /// Nothing arrives for `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        if let Some(m) = self.recv(wait) {
            panic!("expected no message, got {m}");
        }
    }

    pub fn join(&mut self, room: &str, name: &str) -> Value {
        self.send_text(&signal::join(room, name));
        self.expect("joined")
    }
}

/// A signaling client over EventSource (`GET /sse`) and `POST /signal`.
pub struct SseClient(pub signal::SseClient);

impl Deref for SseClient {
    type Target = signal::SseClient;
    fn deref(&self) -> &signal::SseClient {
        &self.0
    }
}

impl SseClient {
    pub fn connect(addr: SocketAddr) -> SseClient {
        let c = signal::SseClient::connect(addr, Duration::from_secs(5)).expect("SSE hello");
        assert_eq!(c.hello["protocol"], 1, "{}", c.hello);
        SseClient(c)
    }

    /// POST one message; returns the status code and body.
    pub fn post(&self, body: &str) -> (u16, String) {
        self.0.post(body).expect("POST /signal")
    }

    pub fn send(&self, v: Value) {
        let (status, body) = self.post(&v.to_string());
        assert_eq!(status, 204, "POST /signal: {body}");
    }

    pub fn recv(&self, timeout: Duration) -> Option<Value> {
        self.0.recv(timeout).expect("SSE data is JSON")
    }

    pub fn expect(&self, ty: &str) -> Value {
        let m = self
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no `{ty}` event within 5 s"));
        assert_eq!(m["type"], ty, "expected {ty}, got {m}");
        m
    }
}

/// `POST /signal?conn=conn` with `body`; the status and response body.
pub fn post_signal(addr: SocketAddr, conn: &str, body: &str) -> (u16, String) {
    signal::post_signal(addr, conn, body).expect("POST /signal")
}
