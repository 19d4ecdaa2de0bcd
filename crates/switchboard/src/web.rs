//! Serving an axum router (HTTP, or HTTPS with a reloadable certificate) from a
//! multi-thread runtime of its own (one worker per core: signaling is sharded by room and
//! uses them all), apart from the STUN/TURN workers' threads.
//!
//! This is the bottom layer of the HTTP side: it knows nothing of TURN. The shared
//! HTTPS/TURN port (`--turn-on-http-port`, demux.rs) plugs its own per-connection
//! handler into [`accept_tls`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;

/// The HTTPS certificate, swapped on SIGHUP.
pub type HttpsConfig = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// How long a connection may take to show what it is (TLS handshake, first bytes).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind `addr` for `what` (errors name it).
pub fn bind(what: &'static str, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// One runtime worker per core: what the HTTP side (and with it signaling, sharded by
/// room) gets.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Run `serve` on a new thread named `what`, in a runtime of its own with `workers`
/// worker threads, after `setup` (which may spawn tasks on that runtime).
pub fn spawn<F, Fut>(
    what: &'static str,
    workers: usize,
    setup: impl FnOnce() + Send + 'static,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<()>>,
{
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers.max(1))
                .thread_name(what)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "{what} runtime failed");
                    return;
                }
            };
            rt.block_on(async move {
                setup();
                if let Err(e) = serve().await {
                    tracing::error!(error = %e, "{what} server stopped");
                }
            });
        })?;
    Ok(())
}

/// Plain HTTP on `listener` (call from inside the runtime).
pub async fn serve_plain(
    listener: std::net::TcpListener,
    app: axum::Router,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// HTTPS on `listener` with the current certificate of `cfg`.
pub async fn serve_https(
    listener: std::net::TcpListener,
    app: axum::Router,
    cfg: HttpsConfig,
) -> std::io::Result<()> {
    accept_tls(listener, cfg, move |tcp, peer, acceptor| {
        let app = app.clone();
        async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve_http(stream, app, peer).await;
        }
    })
    .await
}

/// Accept connections for TLS forever, each handled on its own task by `handle` with an
/// acceptor for the certificate in force when it arrived.
pub async fn accept_tls<F, Fut>(
    listener: std::net::TcpListener,
    cfg: HttpsConfig,
    mut handle: F,
) -> std::io::Result<()>
where
    F: FnMut(TcpStream, SocketAddr, tokio_rustls::TlsAcceptor) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            // Out of descriptors and the like: wait rather than spin or stop serving.
            Err(e) => {
                tracing::warn!(error = %e, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let current = cfg.read().unwrap_or_else(|e| e.into_inner()).clone();
        tokio::spawn(handle(tcp, peer, tokio_rustls::TlsAcceptor::from(current)));
    }
}

/// HTTP/1.1 (with upgrades, for WebSocket) on an established stream from `peer`
/// (handlers see it as axum's `ConnectInfo`).
pub async fn serve_http<S>(stream: S, app: axum::Router, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}
