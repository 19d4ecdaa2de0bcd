//! Serving an axum router (HTTP, or HTTPS with a reloadable certificate) from a small
//! runtime of its own, so HTTP never competes with the STUN/TURN workers' threads.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// The HTTPS certificate, swapped on SIGHUP.
pub type HttpsConfig = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// Bind `addr` (errors name `what`) and serve `app` on a new thread, running `setup`
/// inside the runtime first; returns the bound address.
pub fn serve(
    what: &'static str,
    addr: SocketAddr,
    app: axum::Router,
    https: Option<HttpsConfig>,
    setup: impl FnOnce() + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
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
                    None => axum::serve(listener, app).await,
                    Some(cfg) => serve_tls(listener, app, cfg).await,
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "{what} server stopped");
                }
            });
        })?;
    Ok(bound)
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    cfg: HttpsConfig,
) -> std::io::Result<()> {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            // Out of descriptors and the like: wait rather than spin or stop serving.
            Err(e) => {
                tracing::warn!(error = %e, "HTTPS accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let current = cfg.read().unwrap_or_else(|e| e.into_inner()).clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(current);
        let app = app.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
