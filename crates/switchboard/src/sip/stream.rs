//! SIP over streams: TCP (RFC 3261 §18.3), TLS (rustls, the server's certificate) on
//! `--sip-tls-listen`, and WebSocket (RFC 7118, subprotocol `sip`) at `/sip` on the HTTP
//! port, so that JsSIP and SIP.js clients can call in. Each connection is a task that
//! frames messages (`switchboard_sip::message::frame_len`: Content-Length on streams,
//! keep-alive CRLFs answered), hands them to the agent as the datagrams of that
//! connection, and writes what the agent sends back on it. Nothing of SIP is decided
//! here. Connections the gateway opens itself (to TCP and TLS next hops) are in
//! `connect.rs` and run the same [`connection`] loop.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections, [`MAX_PER_IP`] from one address, a
//! message at most the parser's limit (64 KiB: a larger one closes the connection), and
//! a connection silent for [`IDLE`] is closed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_sip::message::{frame_len, Limits};
use switchboard_sip::transaction::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Connections at once, all stream transports together.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Connections from one IP address.
pub const MAX_PER_IP: usize = 64;
/// A connection that sends nothing (not even a keep-alive) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(300);

/// A connection: its transport and the peer's address.
pub type ConnKey = (Transport, SocketAddr);

/// Tells apart connections that had the same key one after the other (a connection the
/// gateway opened to a next hop, closed, then opened again), so that the end of the old
/// one does not remove the new one.
pub type ConnId = u64;

/// A new connection's id.
pub fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// What the connections tell the agent.
pub enum StreamEvent {
    /// A peer connected: what the agent sends on the connection goes to `tx`.
    Opened(ConnKey, ConnId, UnboundedSender<Arc<[u8]>>),
    /// A connection the gateway opens is up (TCP connected, TLS verified).
    Connected(ConnId),
    Message(ConnKey, Vec<u8>),
    /// The connection is gone, or (one the gateway opens) could not be made.
    Closed(ConnKey, ConnId),
}

/// Counts connections per IP; a slot is given back when its guard drops.
#[derive(Default)]
pub struct ConnLimits {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `ip`, or None over the limits.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let mut m = self.lock();
        let total: usize = m.values().sum();
        let n = m.entry(ip).or_default();
        if *n >= MAX_PER_IP || total >= MAX_CONNECTIONS {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }

    pub fn open(&self) -> usize {
        self.lock().values().sum()
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut m = self.limits.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Accept TCP (or, with `tls`, TLS) connections until the agent is gone.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    events: UnboundedSender<StreamEvent>,
    limits: Arc<ConnLimits>,
) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        if events.is_closed() {
            return;
        }
        let Some(slot) = limits.take(peer.ip()) else {
            tracing::debug!(%peer, "SIP connection refused: too many");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let events = events.clone();
        let id = next_conn_id();
        match &tls {
            None => {
                let key = (Transport::Tcp, peer);
                let (tx, out) = unbounded_channel();
                if events.send(StreamEvent::Opened(key, id, tx)).is_ok() {
                    tokio::spawn(connection(tcp, key, id, events, out, slot));
                }
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    if let Ok(Ok(stream)) = handshake {
                        let key = (Transport::Tls, peer);
                        let (tx, out) = unbounded_channel();
                        if events.send(StreamEvent::Opened(key, id, tx)).is_ok() {
                            connection(stream, key, id, events, out, slot).await;
                        }
                    }
                });
            }
        }
    }
}

/// One stream connection: frames in, what the agent sends on `out` written, until
/// either side closes (the agent closes by dropping its sender; what it sent before is
/// written first).
pub async fn connection<S>(
    stream: S,
    key: ConnKey,
    id: ConnId,
    events: UnboundedSender<StreamEvent>,
    mut out: UnboundedReceiver<Arc<[u8]>>,
    slot: ConnSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        tokio::select! {
            r = tokio::time::timeout(IDLE, rd.read(&mut chunk)) => {
                let n = match r {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frame_len(&buf, &limits) {
                        Ok(Some(len)) => {
                            let frame: Vec<u8> = buf.drain(..len).collect();
                            if frame.iter().all(|b| *b == b'\r' || *b == b'\n') {
                                // RFC 5626 §3.5.1: a double-CRLF ping gets a CRLF pong.
                                if frame.len() >= 4 && wr.write_all(b"\r\n").await.is_err() {
                                    break 'conn;
                                }
                                continue;
                            }
                            if events.send(StreamEvent::Message(key, frame)).is_err() {
                                break 'conn;
                            }
                        }
                        Ok(None) => break,
                        // Oversized or unframeable: the stream cannot be resynchronised.
                        Err(e) => {
                            tracing::debug!(peer = %key.1, error = %e, "SIP stream closed");
                            break 'conn;
                        }
                    }
                }
            }
            bytes = out.recv() => {
                let Some(bytes) = bytes else { break };
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    let _ = events.send(StreamEvent::Closed(key, id));
    drop(slot);
}

/// `/sip` on the HTTP port: SIP over WebSocket (RFC 7118), one message per frame.
pub mod ws {
    use super::{ConnLimits, StreamEvent};
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::extract::{ConnectInfo, State};
    use axum::response::{IntoResponse, Response};
    use futures_util::{SinkExt, StreamExt};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use switchboard_sip::transaction::Transport;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

    #[derive(Clone)]
    pub struct WsState {
        pub events: UnboundedSender<StreamEvent>,
        pub limits: Arc<ConnLimits>,
        /// Served over HTTPS: the transport is WSS.
        pub secure: bool,
    }

    pub async fn upgrade(
        State(st): State<WsState>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        ws: WebSocketUpgrade,
    ) -> Response {
        let Some(slot) = st.limits.take(peer.ip()) else {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many SIP connections",
            )
                .into_response();
        };
        let transport = if st.secure {
            Transport::Wss
        } else {
            Transport::Ws
        };
        ws.protocols(["sip"])
            .max_message_size(64 * 1024)
            .on_upgrade(move |socket| async move {
                serve(socket, (transport, peer), st.events).await;
                drop(slot);
            })
    }

    async fn serve(socket: WebSocket, key: super::ConnKey, events: UnboundedSender<StreamEvent>) {
        let id = super::next_conn_id();
        let (tx, mut out) = unbounded_channel::<Arc<[u8]>>();
        if events.send(StreamEvent::Opened(key, id, tx)).is_err() {
            return;
        }
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                m = tokio::time::timeout(super::IDLE, stream.next()) => {
                    let bytes = match m {
                        Ok(Some(Ok(Message::Text(t)))) => t.as_bytes().to_vec(),
                        Ok(Some(Ok(Message::Binary(b)))) => b.to_vec(),
                        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                        _ => break,
                    };
                    if events.send(StreamEvent::Message(key, bytes)).is_err() {
                        break;
                    }
                }
                bytes = out.recv() => {
                    let Some(bytes) = bytes else { break };
                    // RFC 7118: text frames for UTF-8 messages.
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
        let _ = events.send(StreamEvent::Closed(key, id));
    }
}
