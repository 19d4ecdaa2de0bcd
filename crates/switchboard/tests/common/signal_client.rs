//! Signaling test clients: a blocking WebSocket client (plain or TLS with a pinned
//! certificate fingerprint) and an EventSource + POST client over raw HTTP/1.0.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// A TCP stream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Accepts exactly the certificate whose SHA-256 is `fingerprint` (`AB:CD:…`), as a user
/// who checks the fingerprint the server logged would.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got = sha2::Sha256::digest(end_entity.as_ref())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        if got == self.fingerprint {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!("fingerprint {got}")))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection to `addr` that trusts only the certificate with `fingerprint`,
/// offering the ALPN protocols `alpn` (none when empty); returns the stream and the
/// negotiated ALPN.
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
) -> std::io::Result<(Stream, Option<Vec<u8>>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: fingerprint.to_string(),
            provider,
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("tls client");
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let alpn = tls.conn.alpn_protocol().map(|p| p.to_vec());
    Ok((Stream::Tls(Box::new(tls)), alpn))
}

/// A signaling client over WebSocket.
pub struct WsClient {
    pub ws: WebSocket<Stream>,
}

impl WsClient {
    pub fn connect(addr: SocketAddr) -> WsClient {
        Self::connect_with(
            Stream::Plain(TcpStream::connect(addr).expect("connect")),
            "ws",
            addr,
            None,
        )
    }

    /// Connect sending `Origin: origin`.
    pub fn connect_origin(addr: SocketAddr, origin: &str) -> WsClient {
        Self::connect_with(
            Stream::Plain(TcpStream::connect(addr).expect("connect")),
            "ws",
            addr,
            Some(origin),
        )
    }

    pub fn connect_tls(addr: SocketAddr, fingerprint: &str) -> WsClient {
        let (stream, _) = tls_connect(addr, fingerprint, &[b"http/1.1"]);
        Self::connect_with(stream, "wss", addr, None)
    }

    fn connect_with(
        stream: Stream,
        scheme: &str,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> WsClient {
        let mut req = format!("{scheme}://{addr}/ws")
            .into_client_request()
            .expect("request");
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("origin"));
        }
        let (ws, _) = tungstenite::client(req, stream).expect("websocket handshake");
        ws.get_ref()
            .tcp()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        WsClient { ws }
    }

    pub fn send(&mut self, v: Value) {
        self.send_text(&v.to_string());
    }

    pub fn send_text(&mut self, t: &str) {
        self.ws.send(Message::text(t)).expect("send");
    }

    /// The next protocol message within `timeout`; None on timeout or close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).expect("server sent JSON"))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
        None
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

    /// The close code the server sent, waiting up to `timeout`.
    pub fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    return f
                        .map(|f| u16::from(f.code))
                        .or(Some(u16::from(CloseCode::Status)))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
        None
    }

    pub fn join(&mut self, room: &str, name: &str) -> Value {
        self.send(json!({"type": "join", "room": room, "name": name}));
        self.expect("joined")
    }
}

/// A signaling client over EventSource (`GET /sse`) and `POST /signal`.
pub struct SseClient {
    addr: SocketAddr,
    pub conn: String,
    events: std::sync::mpsc::Receiver<Value>,
}

impl SseClient {
    pub fn connect(addr: SocketAddr) -> SseClient {
        let mut s = TcpStream::connect(addr).expect("connect sse");
        write!(
            s,
            "GET /sse HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("write");
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).expect("status");
        assert!(status.contains(" 200 "), "GET /sse: {status}");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut data = String::new();
            for line in r.lines().map_while(Result::ok) {
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let v: Value = serde_json::from_str(&data).expect("SSE data is JSON");
                    data.clear();
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let hello = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("hello event");
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["protocol"], 1);
        SseClient {
            addr,
            conn: hello["conn"].as_str().expect("conn").to_string(),
            events: rx,
        }
    }

    /// POST one message; returns the status code and body.
    pub fn post(&self, body: &str) -> (u16, String) {
        post_signal(self.addr, &self.conn, body)
    }

    pub fn send(&self, v: Value) {
        let (status, body) = self.post(&v.to_string());
        assert_eq!(status, 204, "POST /signal: {body}");
    }

    pub fn recv(&self, timeout: Duration) -> Option<Value> {
        self.events.recv_timeout(timeout).ok()
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
    let mut s = TcpStream::connect(addr).expect("connect post");
    write!(
        s,
        "POST /signal?conn={conn} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
