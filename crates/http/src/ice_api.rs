//! `GET /api/ice-servers`: STUN and TURN URIs with time-limited TURN credentials, and
//! who may have them.
//!
//! TURN credentials make the relay usable, so they are not for anyone who can reach the
//! port: with `--room-token-secret` set, only a holder of a valid room token gets an
//! answer (any room; the token's `sub` becomes the credential's identity), sent as
//! `Authorization: Bearer <token>` (or `?token=`). Every source IP, token or not, is
//! held to `--ice-rate` requests per minute ([`SourceLimiter`]), so neither credentials
//! nor token guesses can be had in bulk. Refusals are JSON errors with the signaling
//! protocol's codes (`unauthorized`, `token-expired`, `rate-limited`).
//!
//! In a cluster, `?region=NAME` asks for the TURN server of a node in that region (the
//! least loaded one there; this node's own when it serves that region, or none does):
//! see [`RegionTurn`]. A full node (`--cluster-capacity`) names another node, whose SFU
//! edge and TURN then serve the client: see [`OverflowNode`].

use crate::ice::{ice_servers, ice_servers_at, IceConfig, IceServers};
use crate::source_limit::SourceLimiter;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use switchboard_signal::token::{verify_holder, TokenError};

/// The TURN URIs of another node for clients of region `name` (None: this node's own).
/// Set by a clustered server; the credentials stay this node's to sign, as every node
/// shares the REST secret.
pub type RegionTurn = Arc<dyn Fn(&str) -> Option<Vec<String>> + Send + Sync>;

/// While this node is full: the name and TURN URIs of the node that serves its new
/// clients' media instead (`"node"` in the answer, so the SDK uses that node's SFU
/// edge). None: this node serves them. Set by a clustered server.
pub type OverflowNode = Arc<dyn Fn() -> Option<(String, Vec<String>)> + Send + Sync>;

/// The endpoint's state: its configuration (replaced on SIGHUP) and rate limiter.
pub struct IceApi {
    cfg: RwLock<Arc<IceConfig>>,
    limiter: Mutex<SourceLimiter>,
    counts: IceCounts,
    region: RwLock<Option<RegionTurn>>,
    overflow: RwLock<Option<OverflowNode>>,
}

/// What `/api/ice-servers` answered, for metrics.
#[derive(Default)]
struct IceCounts {
    ok: AtomicU64,
    unauthorized: AtomicU64,
    rate_limited: AtomicU64,
}

/// Counter snapshot: answered, refused for want of a valid token, refused by the rate
/// limit; and the source addresses the limiter tracks now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IceSnapshot {
    pub ok: u64,
    pub unauthorized: u64,
    pub rate_limited: u64,
    pub sources: usize,
}

impl IceApi {
    pub fn new(cfg: IceConfig) -> Arc<IceApi> {
        Arc::new(IceApi {
            limiter: Mutex::new(SourceLimiter::new(cfg.rate_per_minute)),
            cfg: RwLock::new(Arc::new(cfg)),
            counts: IceCounts::default(),
            region: RwLock::new(None),
            overflow: RwLock::new(None),
        })
    }

    /// Answer `?region=` from `f` (a cluster's nodes).
    pub fn set_region_turn(&self, f: RegionTurn) {
        *self.region.write().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Name another node while this one is full, from `f` (a cluster's nodes).
    pub fn set_overflow(&self, f: OverflowNode) {
        *self.overflow.write().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<IceConfig> {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Apply a reloaded configuration (secrets, token secrets, rate).
    pub fn reconfigure(&self, cfg: IceConfig) {
        self.limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_rate(cfg.rate_per_minute);
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }

    pub fn snapshot(&self) -> IceSnapshot {
        let c = &self.counts;
        IceSnapshot {
            ok: c.ok.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            sources: self
                .limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tracked(),
        }
    }
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    (status, Json(body)).into_response()
}

/// The room token of a request: `Authorization: Bearer <token>`, else `?token=`.
fn token_of<'a>(headers: &'a HeaderMap, q: &'a HashMap<String, String>) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    bearer
        .or_else(|| q.get("token").map(String::as_str))
        .filter(|t| !t.is_empty())
}

pub(crate) async fn get(
    State(api): State<Arc<IceApi>>,
    ext: Extensions,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cfg = api.config();
    // Set by both listeners (plain HTTP and the TLS/demux path).
    if let Some(ConnectInfo(peer)) = ext.get::<ConnectInfo<SocketAddr>>() {
        let verdict = api
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(peer.ip(), Instant::now());
        if let Err(wait) = verdict {
            api.counts.rate_limited.fetch_add(1, Ordering::Relaxed);
            let secs = wait.as_secs().max(1);
            let mut r = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                &format!(
                    "more than {} requests a minute from this address; try again in {secs} s",
                    cfg.rate_per_minute
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    let unix_now = switchboard_util::unix_now();
    let mut identity = q.get("identity").map(String::as_str);
    let admitted;
    if !cfg.token_secrets.is_empty() {
        let Some(token) = token_of(&headers, &q) else {
            api.counts.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut r = refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server gives ICE servers and relay credentials to holders of a room token: send it as `Authorization: Bearer <token>`",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        };
        match verify_holder(&cfg.token_secrets, token, unix_now) {
            Ok(a) => admitted = a,
            Err(e) => {
                api.counts.unauthorized.fetch_add(1, Ordering::Relaxed);
                let code = if e == TokenError::Expired {
                    "token-expired"
                } else {
                    "unauthorized"
                };
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    code,
                    &format!("room token refused: {e}"),
                );
            }
        }
        // The token's subject, when it names one, is who the credentials are for.
        if admitted.identity.is_some() {
            identity = admitted.identity.as_deref();
        }
    }
    api.counts.ok.fetch_add(1, Ordering::Relaxed);
    let elsewhere = q.get("region").and_then(|name| {
        let lookup = api.region.read().unwrap_or_else(|e| e.into_inner()).clone();
        lookup?(name)
    });
    // A full node sends the client to another node's SFU edge and TURN (a region asked
    // for keeps this node's SFU, with that region's TURN).
    let overflow = match elsewhere {
        Some(_) => None,
        None => {
            let f = api
                .overflow
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            f.and_then(|f| f())
        }
    };
    let servers = match (elsewhere, overflow) {
        (Some(turn), _) => ice_servers_at(&cfg, &turn, unix_now, identity),
        (None, Some((node, turn))) => IceServers {
            node: Some(node),
            ..ice_servers_at(&cfg, &turn, unix_now, identity)
        },
        (None, None) => ice_servers(&cfg, unix_now, identity),
    };
    let mut r = Json(servers).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
