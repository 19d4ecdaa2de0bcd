//! One port for HTTPS and TURN (`--turn-on-http-port`, RFC 7443), so a client behind a
//! firewall that lets only 443 out reaches the web app, signaling and the relay there.
//!
//! Each connection accepted on the HTTPS listener is sorted by its first bytes, peeked
//! (left in the socket):
//!
//! - a STUN message (top two bits 00, magic cookie at bytes 4..8): STUN/TURN over plain
//!   TCP; the socket goes to a TURN worker untouched ([`Adopt`]);
//! - a TLS record (0x16 0x03): the TLS handshake is completed here with ALPN
//!   `stun.turn` and `http/1.1` offered (in that order of preference). `stun.turn`
//!   negotiated: TURN over TLS, and the live session moves to a TURN worker. `http/1.1`:
//!   HTTPS. None negotiated (the client offered no ALPN, which RFC 7443 allows; TURN
//!   clients configured only by a `turns:` URI may send none, and so do some HTTP
//!   clients): the first decrypted bytes decide, STUN for TURN, an HTTP request line
//!   for HTTPS;
//! - an HTTP request line (`GET `, `POST ` …): a redirect to the same URL over `https://`
//!   (the app needs HTTPS off localhost anyway);
//! - anything else: closed.
//!
//! ChannelData (first byte 0x40-0x7F) never starts a connection (a channel needs an
//! allocation first) and would be confused with `GET `, so it is not taken as TURN.
//!
//! The handshake is done here rather than by peeking the ClientHello's ALPN list and
//! leaving TLS to the workers: clients without ALPN can only be told apart after the
//! handshake, so a handed-over live session is needed anyway, and one path serves all.
//! Moving it is cheap: a worker connection holds a `rustls::ServerConnection` already.
//! The TURN side is reached only through [`Adopt`], which the TURN service provides.

use crate::web::{serve_http, HttpsConfig, HANDSHAKE_TIMEOUT};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_stun::demux::{classify, First, HEAD};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How often to look again while fewer than [`HEAD`] bytes have arrived.
const PEEK_RETRY: Duration = Duration::from_millis(20);
/// Plaintext read to tell STUN from HTTP after a handshake without ALPN.
const FIRST_READ: usize = 4096;

/// Where a connection goes.
enum Route {
    /// To a TURN worker: the socket, the TLS session if any, plaintext already read.
    Turn(
        std::net::TcpStream,
        Option<rustls::ServerConnection>,
        Vec<u8>,
    ),
    Https(Prefixed<TlsStream<TcpStream>>),
    Redirect(TcpStream),
    Close,
}

/// Hands a connection to TURN: the socket, the TLS session if any, and the plaintext
/// already read from it.
pub type Adopt = Arc<
    dyn Fn(std::net::TcpStream, Option<rustls::ServerConnection>, &[u8]) -> io::Result<()>
        + Send
        + Sync,
>;

/// Serve the shared HTTPS/TURN port on `listener` (call from inside the runtime).
pub async fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    cfg: HttpsConfig,
    turn: Adopt,
) -> io::Result<()> {
    crate::web::accept_tls(listener, cfg, move |tcp, peer, acceptor| {
        let app = app.clone();
        let turn = turn.clone();
        async move { connection(tcp, peer, acceptor, app, &turn).await }
    })
    .await
}

/// Serve one connection accepted on the shared port.
async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    turn: &Adopt,
) {
    let client = Some(peer);
    let route = match tokio::time::timeout(HANDSHAKE_TIMEOUT, route(tcp, acceptor)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(?client, error = %e, "shared HTTPS/TURN port: connection failed");
            return;
        }
        Err(_) => return,
    };
    match route {
        Route::Turn(stream, tls, read) => {
            let how = match tls.as_ref().map(|t| t.alpn_protocol().is_some()) {
                None => "TCP",
                Some(true) => "TLS, ALPN stun.turn",
                Some(false) => "TLS, no ALPN",
            };
            tracing::debug!(?client, "shared HTTPS/TURN port: TURN over {how}");
            if let Err(e) = turn(stream, tls, &read) {
                tracing::debug!(?client, error = %e, "shared HTTPS/TURN port: TURN hand-over failed");
            }
        }
        Route::Https(stream) => serve_http(stream, app, peer).await,
        Route::Redirect(tcp) => serve_http(tcp, axum::Router::new().fallback(to_https), peer).await,
        Route::Close => {
            tracing::debug!(
                ?client,
                "shared HTTPS/TURN port: neither TLS, STUN nor HTTP; closed"
            );
        }
    }
}

async fn route(tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor) -> io::Result<Route> {
    let mut head = [0u8; HEAD];
    let first = loop {
        let n = tcp.peek(&mut head).await?;
        if n == 0 {
            return Ok(Route::Close);
        }
        match classify(&head[..n]) {
            // Peeking again at once would see the same bytes: wait for more.
            First::More => tokio::time::sleep(PEEK_RETRY).await,
            f => break f,
        }
    };
    match first {
        First::Stun => Ok(Route::Turn(tcp.into_std()?, None, Vec::new())),
        First::Http => Ok(Route::Redirect(tcp)),
        First::Unknown | First::More => Ok(Route::Close),
        First::Tls => after_handshake(acceptor.accept(tcp).await?).await,
    }
}

async fn after_handshake(mut tls: TlsStream<TcpStream>) -> io::Result<Route> {
    match tls.get_ref().1.alpn_protocol() {
        Some(b"stun.turn") => return to_turn(tls, Vec::new()),
        Some(_) => return Ok(Route::Https(Prefixed::new(Vec::new(), tls))),
        None => {}
    }
    let mut buf = vec![0u8; FIRST_READ];
    let mut have = 0;
    loop {
        let n = tls.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(Route::Close);
        }
        have += n;
        match classify(&buf[..have]) {
            First::More => {}
            First::Stun => {
                buf.truncate(have);
                return to_turn(tls, buf);
            }
            First::Http => {
                buf.truncate(have);
                return Ok(Route::Https(Prefixed::new(buf, tls)));
            }
            First::Tls | First::Unknown => return Ok(Route::Close),
        }
    }
}

fn to_turn(tls: TlsStream<TcpStream>, read: Vec<u8>) -> io::Result<Route> {
    let (tcp, session) = tls.into_inner();
    Ok(Route::Turn(tcp.into_std()?, Some(session), read))
}

/// Plain HTTP on the HTTPS port: 308 to the same URL over https:// (same host and port).
async fn to_https(headers: HeaderMap, uri: Uri) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "this port speaks HTTPS\n").into_response();
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    (
        StatusCode::PERMANENT_REDIRECT,
        [
            (header::LOCATION, format!("https://{host}{path}")),
            (header::CONNECTION, "close".into()),
        ],
    )
        .into_response()
}

/// A stream that yields `head` before what `inner` reads.
pub struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(head: Vec<u8>, inner: S) -> Self {
        Prefixed { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
