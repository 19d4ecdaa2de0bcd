//! The HTTP service: the web app, the signaling transports (`/ws`, `/sse`),
//! `/api/ice-servers` and the network test on one listener, HTTPS when a certificate is
//! configured, and with `--turn-on-http-port` TURN on the same port (demux.rs).

use crate::config::turn::TurnConfig;
use crate::plan::Plan;
use crate::service::{Listener, Metrics, Service};
use crate::signal::SignalService;
use crate::turn::TurnService;
use crate::web::HttpsConfig;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use switchboard_http::{IceApi, IceConfig, NetTestConfig};
use tracing::info;

pub struct HttpService {
    bound: SocketAddr,
    https: Option<HttpsConfig>,
    ice: Arc<IceApi>,
}

impl HttpService {
    /// Start when HTTP is on (`None` otherwise).
    pub fn start(
        plan: &Plan,
        turn: &TurnService,
        signal: &SignalService,
        extra: Option<axum::Router>,
    ) -> anyhow::Result<Option<HttpService>> {
        let Some(c) = &plan.http else {
            return Ok(None);
        };
        // Bound first: /api/ice-servers names its port (`turns:HOST:443`).
        let listener = crate::web::bind("http", c.addr)?;
        let bound = listener.local_addr()?;
        let t = &plan.turn;
        let ice = ice_config(plan, turn, Some(bound.port()));
        let net_test = net_test_config(&ice, t, turn.udp());
        let api = IceApi::new(ice);
        let mut app = switchboard_http::router(
            api.clone(),
            signal.handle(),
            signal.origin(),
            switchboard_http::NetTest::new(net_test),
        );
        // Routes of other services (the SIP gateway's `/api/sip/calls`).
        if let Some(extra) = extra {
            app = app.merge(extra);
        }
        let https = c.https.clone().map(|cfg| Arc::new(RwLock::new(cfg)));
        match (&https, c.turn) {
            (None, _) => crate::web::spawn(
                "http",
                crate::web::all_cores(),
                signal.timers(),
                move || crate::web::serve_plain(listener, app),
            )?,
            (Some(cfg), false) => {
                let cfg = cfg.clone();
                crate::web::spawn(
                    "http",
                    crate::web::all_cores(),
                    signal.timers(),
                    move || crate::web::serve_https(listener, app, cfg),
                )?
            }
            (Some(cfg), true) => {
                let (cfg, adopt) = (cfg.clone(), turn.adopter());
                crate::web::spawn(
                    "http",
                    crate::web::all_cores(),
                    signal.timers(),
                    move || crate::demux::serve(listener, app, cfg, adopt),
                )?
            }
        }
        let service = HttpService {
            bound,
            https,
            ice: api,
        };
        service.log_start(c.turn);
        Ok(Some(service))
    }

    /// Answer `/api/ice-servers?region=` from the cluster's nodes.
    pub fn set_region_turn(&self, f: switchboard_http::RegionTurn) {
        self.ice.set_region_turn(f);
    }

    /// Name another node in `/api/ice-servers` while this one is full.
    pub fn set_overflow(&self, f: switchboard_http::OverflowNode) {
        self.ice.set_overflow(f);
    }

    fn log_start(&self, shared_with_turn: bool) {
        let bound = self.bound;
        let scheme = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        info!("HTTP API on {scheme}://{bound}/ (web app at /, signaling at /ws and /sse, ICE servers at /api/ice-servers)");
        if shared_with_turn {
            info!("TURN over TLS (ALPN stun.turn, or none) and over TCP also on the HTTPS port {bound}; plain HTTP there is redirected to HTTPS");
        }
        let ice = self.ice.config();
        info!(
            "ICE servers: relay credentials for {}; at most {} requests a minute per source address",
            if ice.secret.is_none() {
                "nobody (no --static-auth-secret: STUN only)"
            } else if ice.token_secrets.is_empty() {
                "anyone who can reach this port (no --room-token-secret)"
            } else {
                "holders of a room token"
            },
            if ice.rate_per_minute == 0 {
                "unlimited".to_string()
            } else {
                ice.rate_per_minute.to_string()
            }
        );
    }
}

impl Service for HttpService {
    fn name(&self) -> &'static str {
        "http"
    }

    fn listeners(&self) -> Vec<Listener> {
        let kind = if self.https.is_some() {
            "https"
        } else {
            "http"
        };
        vec![Listener {
            kind,
            addr: self.bound,
        }]
    }

    fn metrics(&self) -> Option<Metrics> {
        let ice = self.ice.clone();
        Some(Arc::new(move |out: &mut String| {
            out.push_str(&render_ice(&ice.snapshot()))
        }))
    }

    fn reload(&mut self, plan: &Plan) -> Option<&'static str> {
        let new = plan.http.as_ref()?;
        if let (Some(slot), Some(cfg)) = (&self.https, &new.https) {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = cfg.clone();
        }
        let mut ice = (*self.ice.config()).clone();
        ice.secret = plan.turn.core.secrets.first().cloned();
        ice.token_secrets = plan.signal.hub.token_secrets.clone();
        ice.rate_per_minute = new.ice_rate;
        self.ice.reconfigure(ice);
        Some("HTTPS certificate, the ICE servers' secret and rate")
    }
}

/// What `/api/ice-servers` announces: STUN and TURN at the public address (`--ice-host`,
/// else the first relay or listening IP) on the ports TURN listens on. `http_port` is the
/// HTTP listener's (bound) port, which carries TURN over TLS with `--turn-on-http-port`.
/// A cluster node publishes the same URIs for the others ([`switchboard_http::turn_uris`]).
pub fn ice_config(plan: &Plan, turn: &TurnService, http_port: Option<u16>) -> IceConfig {
    let t = &plan.turn;
    let public = t
        .relay
        .first()
        .map(|r| r.public)
        .or(t.listen_ips.first().copied())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    let http = plan.http.as_ref();
    IceConfig {
        host: http
            .and_then(|c| c.ice_host.clone())
            .unwrap_or_else(|| IceConfig::host_for(public)),
        udp_port: turn.udp().first().map(|a| a.port()),
        tcp_port: turn.tcp().first().map(|a| a.port()),
        tls_port: turn.tls().first().map(|a| a.port()),
        https_turn_port: http.filter(|c| c.turn).and(http_port),
        secret: t.core.secrets.first().cloned(),
        ttl: http.map_or(0, |c| c.ice_ttl),
        token_secrets: plan.signal.hub.token_secrets.clone(),
        rate_per_minute: http.map_or(0, |c| c.ice_rate),
        node: plan.cluster.as_ref().map(|c| c.node_name.clone()),
    }
}

/// The app's network test (`/network`): STUN URIs for the mapping test (the primary
/// address, its other port and the other IP when RFC 5780 is on) and the IPs the
/// filtering checks come from.
fn net_test_config(ice: &IceConfig, t: &TurnConfig, udp: &[SocketAddr]) -> NetTestConfig {
    let Some(first) = udp.first() else {
        return NetTestConfig::default();
    };
    match t.core.rfc5780 {
        Some(r) => {
            // The other IP as clients reach it (its relay mapping, if it has one).
            let other = t
                .relay
                .iter()
                .find(|a| a.bind == r.ips[1])
                .map(|a| a.public)
                .unwrap_or(r.ips[1]);
            let other = IceConfig::host_for(other);
            let h = &ice.host;
            NetTestConfig {
                stun_urls: vec![
                    format!("stun:{h}:{}", r.ports[0]),
                    format!("stun:{h}:{}", r.ports[1]),
                    format!("stun:{other}:{}", r.ports[0]),
                ],
                same_ip: Some(r.ips[0]),
                other_ip: Some(r.ips[1]),
            }
        }
        None => NetTestConfig {
            stun_urls: vec![format!("stun:{}:{}", ice.host, first.port())],
            same_ip: t.listen_ips.first().copied(),
            other_ip: None,
        },
    }
}

/// `/api/ice-servers` answers and refusals.
fn render_ice(snap: &switchboard_http::IceSnapshot) -> String {
    format!(
        "# HELP switchboard_ice_requests_total Requests to /api/ice-servers, by outcome.\n\
         # TYPE switchboard_ice_requests_total counter\n\
         switchboard_ice_requests_total{{result=\"ok\"}} {}\n\
         switchboard_ice_requests_total{{result=\"unauthorized\"}} {}\n\
         switchboard_ice_requests_total{{result=\"rate_limited\"}} {}\n\
         # HELP switchboard_ice_rate_limit_sources Source addresses the /api/ice-servers rate limit tracks (idle ones are forgotten after a minute).\n\
         # TYPE switchboard_ice_rate_limit_sources gauge\n\
         switchboard_ice_rate_limit_sources {}\n",
        snap.ok, snap.unauthorized, snap.rate_limited, snap.sources
    )
}
