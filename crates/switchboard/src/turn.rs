//! The STUN/TURN service: the turn-io workers (the only place the binary uses
//! `switchboard_turn_io`), what they log at start, their reload and drain, and their
//! part of `/metrics`.

use crate::config::turn::{Relay, TurnConfig};
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Listener, Metrics, Service};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchboard_turn_io::{IoConfig, RelayIp, Running, Shared, WorkerStats};
use tracing::info;

pub struct TurnService {
    running: Running,
    shared: Arc<Shared>,
}

impl TurnService {
    /// The allocation quotas all TURN workers share (the cluster link adds the other
    /// nodes' counts).
    pub fn quotas(&self) -> Arc<switchboard_turn::Quotas> {
        self.shared.quotas.clone()
    }

    pub fn start(plan: &Plan) -> anyhow::Result<TurnService> {
        let c = &plan.turn;
        let relay = |ip: fn(&Relay) -> bool| {
            c.relay.iter().find(|r| ip(r)).map(|r| RelayIp {
                bind: r.bind,
                public: r.public,
            })
        };
        let io = IoConfig {
            udp: c.udp.clone(),
            tcp: c.tcp.clone(),
            tls: c.tls.clone(),
            relay_v4: relay(|r| r.bind.is_ipv4()),
            relay_v6: relay(|r| r.bind.is_ipv6()),
            min_port: c.core.min_port,
            max_port: c.core.max_port,
            threads: c.threads,
        };
        let running = switchboard_turn_io::start(io, c.core.clone(), c.tls_config.clone())?;
        let shared = running.shared.clone();
        let service = TurnService { running, shared };
        service.log_start(c);
        Ok(service)
    }

    fn log_start(&self, c: &TurnConfig) {
        info!(threads = c.threads, "STUN/TURN workers started");
        for a in &self.running.udp {
            info!("STUN/TURN listening on udp://{a}");
        }
        for a in &self.running.tcp {
            info!("STUN/TURN listening on tcp://{a}");
        }
        for a in &self.running.tls {
            info!("STUN/TURN listening on tls://{a}");
        }
        for r in &c.relay {
            info!(
                "relay address {} (bound on {}), ports {}-{}",
                r.public, r.bind, c.core.min_port, c.core.max_port
            );
        }
        let core = &c.core;
        info!(realm = %core.realm, "auth: long-term credentials, {} static user(s), {} REST secret(s)", core.user_count(), core.secrets.len());
        if let Some(s) = &c.dev_secret {
            info!("auth: no --user or --static-auth-secret given; development REST secret for this run: {s}");
            info!(
                "      make a credential with: switchboard turn-credentials --secret {s} --user NAME"
            );
        }
        match core.rfc5780 {
            Some(r) => info!(
                "RFC 5780 behaviour discovery on: {}/{} ports {}/{}",
                r.ips[0], r.ips[1], r.ports[0], r.ports[1]
            ),
            None => info!("RFC 5780 behaviour discovery off (needs two --listening-ip)"),
        }
        info!(
            user_quota = core.user_quota,
            total_quota = core.total_quota,
            max_bps = core.max_bps,
            "limits (0 = unlimited); peers in private, loopback and other special ranges are denied unless --allowed-peer-ip"
        );
    }

    /// The bound UDP, TCP and TLS listeners (port 0 resolved).
    pub fn udp(&self) -> &[std::net::SocketAddr] {
        &self.running.udp
    }

    pub fn tcp(&self) -> &[std::net::SocketAddr] {
        &self.running.tcp
    }

    pub fn tls(&self) -> &[std::net::SocketAddr] {
        &self.running.tls
    }

    /// Hands connections accepted elsewhere (the shared HTTPS port) to the workers.
    pub fn adopter(&self) -> crate::demux::Adopt {
        let shared = self.shared.clone();
        Arc::new(move |stream, tls, read| shared.adopt(stream, tls, read))
    }
}

impl Service for TurnService {
    fn name(&self) -> &'static str {
        "turn"
    }

    fn listeners(&self) -> Vec<Listener> {
        let r = &self.running;
        let each = |kind, list: &[std::net::SocketAddr]| {
            list.iter()
                .map(move |&addr| Listener { kind, addr })
                .collect::<Vec<_>>()
        };
        [
            each("turn-udp", &r.udp),
            each("turn-tcp", &r.tcp),
            each("turn-tls", &r.tls),
        ]
        .concat()
    }

    fn metrics(&self) -> Option<Metrics> {
        let shared = self.shared.clone();
        Some(Arc::new(move |out: &mut String| {
            render(out, &shared.totals())
        }))
    }

    fn reload(&mut self, plan: &Plan) -> Option<&'static str> {
        self.shared
            .reload(plan.turn.core.clone(), plan.turn.tls_config.clone());
        Some("users, secrets, peer filters, limits, TURN certificate")
    }

    fn drain(&mut self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        // The quota counter is exact at once; the stats snapshot lags 250 ms.
        Some((self.shared.quotas.total() as usize, "allocations"))
    }

    fn stop(self: Box<Self>) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        self.running.join();
    }
}

/// The workers' counters as Prometheus text.
pub fn render(s: &mut String, t: &WorkerStats) {
    let c = &t.core;
    family(
        s,
        "switchboard_turn_allocations",
        "gauge",
        "Live TURN allocations.",
        &[("", c.allocations)],
    );
    family(
        s,
        "switchboard_turn_allocations_created_total",
        "counter",
        "TURN allocations created.",
        &[("", c.allocations_created)],
    );
    family(
        s,
        "switchboard_turn_allocations_expired_total",
        "counter",
        "TURN allocations that timed out.",
        &[("", c.allocations_expired)],
    );
    family(
        s,
        "switchboard_stun_binding_requests_total",
        "counter",
        "STUN Binding requests answered.",
        &[("", c.binding_requests)],
    );
    family(
        s,
        "switchboard_turn_requests_total",
        "counter",
        "STUN/TURN requests received.",
        &[("", c.requests)],
    );
    family(
        s,
        "switchboard_turn_error_responses_total",
        "counter",
        "Error responses sent.",
        &[("", c.error_responses)],
    );
    family(
        s,
        "switchboard_turn_auth_failures_total",
        "counter",
        "Requests with wrong or expired credentials.",
        &[("", c.auth_failures)],
    );
    family(
        s,
        "switchboard_turn_unauth_rate_limited_total",
        "counter",
        "401/438 responses withheld by the per-source rate limit.",
        &[("", c.unauth_rate_limited)],
    );
    family(
        s,
        "switchboard_turn_quota_rejections_total",
        "counter",
        "Allocations refused with 486 (quota).",
        &[("", c.quota_rejections)],
    );
    family(
        s,
        "switchboard_turn_peer_denied_total",
        "counter",
        "Permissions or channels refused with 403 (peer filter).",
        &[("", c.peer_denied)],
    );
    family(
        s,
        "switchboard_turn_relayed_packets_total",
        "counter",
        "Packets relayed.",
        &[
            ("{direction=\"client_to_peer\"}", c.client_to_peer_packets),
            ("{direction=\"peer_to_client\"}", c.peer_to_client_packets),
        ],
    );
    family(
        s,
        "switchboard_turn_relayed_bytes_total",
        "counter",
        "Payload bytes relayed (UDP payloads and RFC 6062 TCP stream bytes).",
        &[
            ("{direction=\"client_to_peer\"}", c.client_to_peer_bytes),
            ("{direction=\"peer_to_client\"}", c.peer_to_client_bytes),
        ],
    );
    family(
        s,
        "switchboard_turn_dropped_packets_total",
        "counter",
        "Packets not relayed, by reason.",
        &[
            ("{reason=\"no_permission\"}", c.dropped_no_permission),
            ("{reason=\"bandwidth\"}", c.dropped_bandwidth),
            ("{reason=\"malformed\"}", c.dropped_malformed),
            ("{reason=\"send_error\"}", t.send_errors),
            ("{reason=\"stream_backlog\"}", t.stream_dropped),
        ],
    );
    family(
        s,
        "switchboard_turn_stream_connections",
        "gauge",
        "Open TCP and TLS client connections.",
        &[("", t.connections)],
    );
    family(
        s,
        "switchboard_turn_stream_tls_deferred_total",
        "counter",
        "TLS writes rustls could not take whole (its buffer was full): the rest waited in the connection's backlog and was sent later, not dropped.",
        &[("", t.stream_tls_deferred)],
    );
    family(
        s,
        "switchboard_turn_stream_overflow_closes_total",
        "counter",
        "TCP/TLS client connections closed because the client owed more than 4 MiB of answers (it does not read).",
        &[("", t.stream_overflows)],
    );
    family(
        s,
        "switchboard_turn_tcp_peer_connections",
        "gauge",
        "Open RFC 6062 peer connections of TCP allocations (connecting, waiting for ConnectionBind, or relaying).",
        &[("", t.tcp_connections)],
    );
}
