//! Switchboard's HTTP side. Today: `GET /api/ice-servers`, the ICE configuration a
//! browser passes to `new RTCPeerConnection()`, with time-limited TURN credentials in
//! the coturn REST format. Signaling and the web app are added here next.

mod ice;

pub use ice::{ice_servers, IceConfig, IceServers};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The HTTP routes, sharing `ice`.
pub fn router(ice: Arc<IceConfig>) -> Router {
    Router::new()
        .route("/api/ice-servers", get(get_ice_servers))
        .with_state(ice)
}

async fn get_ice_servers(
    State(ice): State<Arc<IceConfig>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<IceServers> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let identity = q.get("identity").map(String::as_str);
    Json(ice_servers(&ice, now, identity))
}
