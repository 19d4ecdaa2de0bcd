//! Prometheus `/metrics` endpoint. The exposition text is written directly: the
//! counters already live in the workers' snapshots, and the text format is a few
//! lines, so a metrics registry crate would only add a second copy of each value.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_turn_io::{Shared, WorkerStats};

pub fn render(t: &WorkerStats) -> String {
    let c = &t.core;
    let mut s = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    metric(
        "switchboard_turn_allocations",
        "gauge",
        "Live TURN allocations.",
        &[("", c.allocations)],
    );
    metric(
        "switchboard_turn_allocations_created_total",
        "counter",
        "TURN allocations created.",
        &[("", c.allocations_created)],
    );
    metric(
        "switchboard_turn_allocations_expired_total",
        "counter",
        "TURN allocations that timed out.",
        &[("", c.allocations_expired)],
    );
    metric(
        "switchboard_stun_binding_requests_total",
        "counter",
        "STUN Binding requests answered.",
        &[("", c.binding_requests)],
    );
    metric(
        "switchboard_turn_requests_total",
        "counter",
        "STUN/TURN requests received.",
        &[("", c.requests)],
    );
    metric(
        "switchboard_turn_error_responses_total",
        "counter",
        "Error responses sent.",
        &[("", c.error_responses)],
    );
    metric(
        "switchboard_turn_auth_failures_total",
        "counter",
        "Requests with wrong or expired credentials.",
        &[("", c.auth_failures)],
    );
    metric(
        "switchboard_turn_unauth_rate_limited_total",
        "counter",
        "401/438 responses withheld by the per-source rate limit.",
        &[("", c.unauth_rate_limited)],
    );
    metric(
        "switchboard_turn_quota_rejections_total",
        "counter",
        "Allocations refused with 486 (quota).",
        &[("", c.quota_rejections)],
    );
    metric(
        "switchboard_turn_peer_denied_total",
        "counter",
        "Permissions or channels refused with 403 (peer filter).",
        &[("", c.peer_denied)],
    );
    metric(
        "switchboard_turn_relayed_packets_total",
        "counter",
        "Packets relayed.",
        &[
            ("{direction=\"client_to_peer\"}", c.client_to_peer_packets),
            ("{direction=\"peer_to_client\"}", c.peer_to_client_packets),
        ],
    );
    metric(
        "switchboard_turn_relayed_bytes_total",
        "counter",
        "Payload bytes relayed (UDP payloads and RFC 6062 TCP stream bytes).",
        &[
            ("{direction=\"client_to_peer\"}", c.client_to_peer_bytes),
            ("{direction=\"peer_to_client\"}", c.peer_to_client_bytes),
        ],
    );
    metric(
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
    metric(
        "switchboard_turn_stream_connections",
        "gauge",
        "Open TCP and TLS client connections.",
        &[("", t.connections)],
    );
    metric(
        "switchboard_turn_tcp_peer_connections",
        "gauge",
        "Open RFC 6062 peer connections of TCP allocations (connecting, waiting for ConnectionBind, or relaying).",
        &[("", t.tcp_connections)],
    );
    s
}

/// Serve `/metrics` on `addr`.
pub fn spawn(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let shared = shared.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    render(&shared.totals()),
                )
            }
        }),
    );
    crate::web::serve("metrics", addr, app)
}
