//! Opening a signaling WebSocket from the generator (the `signal`, `joins` and
//! `failover` modes): TCP from an optional loopback source, TCP_NODELAY, handshake.

use anyhow::{Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Small read buffers: 20k clients x the default 128 KiB would be 2.5 GB here.
pub fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Connect to `server` (from `source` when given) and open the WebSocket at `url`.
pub async fn open_ws(
    server: SocketAddr,
    source: Option<IpAddr>,
    url: &str,
    config: WebSocketConfig,
) -> Result<Ws> {
    let sock = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("socket")?;
    if let Some(src) = source {
        // Let connect() pick the port, so ports are shared across destinations.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our own socket with a valid int option value.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::new(src, 0))
            .with_context(|| format!("bind {src}"))?;
    }
    let stream = sock.connect(server).await.context("connect")?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}
