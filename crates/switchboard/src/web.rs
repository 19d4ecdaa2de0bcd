//! Serving an axum router (HTTP, or HTTPS with a reloadable certificate) from a runtime
//! of its own, apart from the STUN/TURN workers' threads.
//! With `--turn-on-http-port` the HTTPS listener also takes TURN (see demux.rs).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchboard_turn_io::Shared;

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

/// Serve `app` on `listener` from a new thread, running `setup` inside the runtime
/// first. With `https`, connections are TLS; with `turn` too, the port is shared with
/// TURN (HTTPS must then be on: plan.rs makes sure).
pub fn serve(
    what: &'static str,
    listener: std::net::TcpListener,
    app: axum::Router,
    https: Option<HttpsConfig>,
    turn: Option<Arc<Shared>>,
    setup: impl FnOnce() + Send + 'static,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            // Signaling is sharded by room: one worker per core lets it use them all.
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
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
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let result = match https {
                    None => {
                        axum::serve(
                            listener,
                            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                        )
                        .await
                    }
                    Some(cfg) => serve_tls(listener, app, cfg, turn).await,
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "{what} server stopped");
                }
            });
        })?;
    Ok(())
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: HttpsConfig,
    turn: Option<Arc<Shared>>,
) -> std::io::Result<()> {
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
        let acceptor = tokio_rustls::TlsAcceptor::from(current);
        let app = app.clone();
        let turn = turn.clone();
        tokio::spawn(async move {
            if let Some(turn) = turn {
                return crate::demux::connection(tcp, peer, acceptor, app, &turn).await;
            }
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            serve_http(stream, app, peer).await;
        });
    }
}

/// HTTP/1.1 (with upgrades, for WebSocket) on an established stream from `peer`
/// (handlers see it as axum's `ConnectInfo`).
pub async fn serve_http<S>(stream: S, app: axum::Router, peer: std::net::SocketAddr)
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
