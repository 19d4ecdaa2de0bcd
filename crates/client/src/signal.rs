//! Signaling clients (docs/signaling.md): a blocking WebSocket client (plain, or TLS
//! with a pinned certificate), an EventSource + `POST /signal` client over raw
//! HTTP/1.0, and the builders of the messages clients send, with JSON escaping done
//! by serde_json.

use crate::error::ClientError;
use crate::stream::Stream;
use crate::tls::tls_connect;
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// `join` of room `room` under display name `name`.
pub fn join(room: &str, name: &str) -> String {
    json!({"type": "join", "room": room, "name": name}).to_string()
}

/// `ack` of everything up to `seq` (resume, docs/signaling.md).
pub fn ack(seq: u64) -> String {
    json!({"type": "ack", "seq": seq}).to_string()
}

/// `resume` of the session whose token is `token`, having processed up to `last_seq`.
pub fn resume(token: &str, last_seq: u64) -> String {
    json!({"type": "resume", "token": token, "lastSeq": last_seq}).to_string()
}

/// `message` to peer `to` carrying `data`.
pub fn message(to: &str, data: &Value) -> String {
    json!({"type": "message", "to": to, "data": data}).to_string()
}

/// How long a WebSocket read blocks before the deadline is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// A signaling client over WebSocket.
pub struct WsClient {
    pub ws: WebSocket<Stream>,
}

impl WsClient {
    /// `ws://addr/ws`.
    pub fn connect(addr: SocketAddr) -> Result<WsClient, ClientError> {
        Self::connect_with(Stream::Plain(TcpStream::connect(addr)?), "ws", addr, None)
    }

    /// `ws://addr/ws`, sending `Origin: origin`.
    pub fn connect_origin(addr: SocketAddr, origin: &str) -> Result<WsClient, ClientError> {
        Self::connect_with(
            Stream::Plain(TcpStream::connect(addr)?),
            "ws",
            addr,
            Some(origin),
        )
    }

    /// `wss://addr/ws`, trusting only the certificate with `fingerprint`.
    pub fn connect_tls(addr: SocketAddr, fingerprint: &str) -> Result<WsClient, ClientError> {
        let (stream, _) = tls_connect(addr, fingerprint, &[b"http/1.1"])?;
        Self::connect_with(stream, "wss", addr, None)
    }

    fn connect_with(
        stream: Stream,
        scheme: &str,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<WsClient, ClientError> {
        let mut req = format!("{scheme}://{addr}/ws").into_client_request()?;
        if let Some(o) = origin {
            let value = o
                .parse()
                .map_err(|_| ClientError::Protocol(format!("bad Origin {o:?}")))?;
            req.headers_mut().insert("origin", value);
        }
        let (ws, _) = tungstenite::client(req, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => ClientError::from(e),
            tungstenite::HandshakeError::Interrupted(_) => ClientError::Timeout(1),
        })?;
        ws.get_ref().tcp().set_read_timeout(Some(POLL))?;
        Ok(WsClient { ws })
    }

    pub fn send(&mut self, v: &Value) -> Result<(), ClientError> {
        self.send_text(&v.to_string())
    }

    pub fn send_text(&mut self, t: &str) -> Result<(), ClientError> {
        self.ws.send(Message::text(t))?;
        Ok(())
    }

    /// The next frame within `timeout`: None on timeout.
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Message>, ClientError> {
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(m) => return Ok(Some(m)),
                Err(tungstenite::Error::Io(e)) if is_wait(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The next protocol message within `timeout`; None on timeout or close.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Value>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_frame(deadline) {
                Ok(Some(Message::Text(t))) => return Ok(Some(serde_json::from_str(&t)?)),
                Ok(Some(Message::Close(_))) | Ok(None) => return Ok(None),
                Ok(Some(_)) => {}
                Err(ClientError::WebSocket(e))
                    if matches!(
                        *e,
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The close code the server sent, waiting up to `timeout` (other messages are
    /// skipped); None when none came.
    pub fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_frame(deadline) {
                Ok(Some(Message::Close(f))) => {
                    return f
                        .map(|f| u16::from(f.code))
                        .or(Some(u16::from(CloseCode::Status)))
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

fn is_wait(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A signaling client over EventSource (`GET /sse`) and `POST /signal`.
pub struct SseClient {
    addr: SocketAddr,
    /// The connection id the server gave in `hello`.
    pub conn: String,
    /// The `hello` event.
    pub hello: Value,
    events: mpsc::Receiver<Result<Value, String>>,
}

impl SseClient {
    /// Open the event stream and wait (up to `timeout`) for its `hello`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<SseClient, ClientError> {
        let mut s = TcpStream::connect(addr)?;
        write!(
            s,
            "GET /sse HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status)?;
        if !status.contains(" 200 ") {
            return Err(ClientError::Protocol(format!("GET /sse: {status}")));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut data = String::new();
            for line in r.lines().map_while(Result::ok) {
                if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let event: Result<Value, String> = serde_json::from_str(&data)
                        .map_err(|e| format!("SSE data is not JSON ({e}): {data}"));
                    data.clear();
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            }
        });
        let hello = match rx.recv_timeout(timeout) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(ClientError::Protocol(e)),
            Err(_) => return Err(ClientError::Timeout(1)),
        };
        if hello["type"] != "hello" {
            return Err(ClientError::Protocol(format!("first event {hello}")));
        }
        let conn = hello["conn"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol(format!("hello without conn: {hello}")))?
            .to_string();
        Ok(SseClient {
            addr,
            conn,
            hello,
            events: rx,
        })
    }

    /// POST one message; returns the status code and body.
    pub fn post(&self, body: &str) -> Result<(u16, String), ClientError> {
        post_signal(self.addr, &self.conn, body)
    }

    /// The next event within `timeout`; None on timeout or when the stream ended.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Value>, ClientError> {
        match self.events.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(e)) => Err(ClientError::Protocol(e)),
            Err(_) => Ok(None),
        }
    }
}

/// `POST /signal?conn=conn` with `body`; the status and response body.
pub fn post_signal(addr: SocketAddr, conn: &str, body: &str) -> Result<(u16, String), ClientError> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "POST /signal?conn={conn} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_escape() {
        let j: Value = serde_json::from_str(&join("r\"1", "a\\b")).unwrap();
        assert_eq!(j, json!({"type": "join", "room": "r\"1", "name": "a\\b"}));
        let a: Value = serde_json::from_str(&ack(7)).unwrap();
        assert_eq!(a, json!({"type": "ack", "seq": 7}));
        let m: Value = serde_json::from_str(&message("p1", &json!({"sdp": "x"}))).unwrap();
        assert_eq!(m["to"], "p1");
        assert_eq!(m["data"]["sdp"], "x");
    }
}
