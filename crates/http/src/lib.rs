//! Switchboard's HTTP side: the ICE configuration (`/api/ice-servers`), signaling over
//! WebSocket (`/ws`) and EventSource + POST (`/sse`, `/signal`), and the embedded web
//! app and JS SDK, and WHIP/WHEP into and out of SFU rooms (`/whip/<room>`, `/whep/<room>`). The signaling hub itself is `switchboard_signal::Signaling`; this
//! crate only carries its messages over HTTP.
#![forbid(unsafe_code)]

mod assets;
mod ice;
mod ice_api;
mod nettest;
mod origin;
mod source_limit;
mod sse;
mod transport;
mod whip;
mod ws;

pub use ice::{ice_servers, ice_servers_at, turn_uris, IceConfig, IceServers};
pub use ice_api::{IceApi, IceSnapshot, OverflowNode, RegionTurn};
pub use nettest::{NetTest, NetTestConfig};
pub use origin::OriginPolicy;
pub use switchboard_signal::{Claims, Grants, HubConfig, Signaling, SignalingSnapshot};
pub use transport::spawn_signal_timer;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use transport::Transports;

/// The HTTP routes; signaling from pages of other origins is allowed as `origin` says.
pub fn router(
    ice: Arc<IceApi>,
    signaling: Arc<Signaling>,
    origin: OriginPolicy,
    net_test: Arc<NetTest>,
) -> Router {
    let policy = Arc::new(origin.clone());
    let api = Router::new()
        .route("/api/ice-servers", get(ice_api::get).options(no_content))
        .with_state(ice);
    // Same-origin only (no CORS): the test page is the app's own.
    let net = Router::new()
        .route("/api/network-test", get(nettest::info))
        .route("/api/network-test/filtering", post(nettest::filtering))
        .with_state(net_test);
    let ingest = |i: whip::Ingest| {
        Router::new()
            .route(&format!("/{}/{{room}}", i.kind()), post(whip::publish))
            .route(
                &format!("/{}/{{room}}/{{id}}", i.kind()),
                axum::routing::delete(whip::end),
            )
            .layer(DefaultBodyLimit::max(128 * 1024))
            .with_state(whip::Whip::new(i, signaling.clone()))
    };
    let whip = ingest(whip::Ingest::Whip).merge(ingest(whip::Ingest::Whep));
    let sig = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/sse", get(sse::stream).options(no_content))
        .route("/signal", post(sse::post).options(no_content))
        .layer(DefaultBodyLimit::disable())
        .with_state(Transports::new(signaling, origin));
    // The SDK is importable from pages on allowed other origins (module scripts need CORS).
    let api = api
        .merge(sig)
        .route("/sdk/{*path}", get(assets::sdk))
        .layer(axum::middleware::from_fn_with_state(policy, origin::cors));
    Router::new()
        .route("/", get(assets::lobby))
        .route("/r/{room}", get(assets::room))
        .route("/network", get(assets::network))
        .route("/app/{*path}", get(assets::app))
        .merge(api)
        .merge(net)
        .merge(whip)
}

/// OPTIONS routes exist so the CORS layer can answer preflights.
async fn no_content() -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}
