//! Serving an axum router from a small single-threaded runtime of its own, so HTTP
//! never competes with the STUN/TURN workers' threads.

use std::net::SocketAddr;

/// Bind `addr` (errors name `what`) and serve `app` on a new thread; returns the bound address.
pub fn serve(
    what: &'static str,
    addr: SocketAddr,
    app: axum::Router,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "{what} runtime failed");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "{what} server stopped");
                }
            });
        })?;
    Ok(bound)
}
