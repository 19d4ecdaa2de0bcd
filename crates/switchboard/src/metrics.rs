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
        "switchboard_turn_stream_tls_deferred_total",
        "counter",
        "TLS writes rustls could not take whole (its buffer was full): the rest waited in the connection's backlog and was sent later, not dropped.",
        &[("", t.stream_tls_deferred)],
    );
    metric(
        "switchboard_turn_stream_overflow_closes_total",
        "counter",
        "TCP/TLS client connections closed because the client owed more than 4 MiB of answers (it does not read).",
        &[("", t.stream_overflows)],
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
/// Signaling gauges and counters.
pub fn render_signaling(snap: &switchboard_http::SignalingSnapshot) -> String {
    let mut s = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    let one = |v: usize| vec![(String::new(), v as u64)];
    metric(
        "switchboard_signal_connections",
        "gauge",
        "Open signaling transports (WebSocket and SSE).",
        &one(snap.connections),
    );
    metric(
        "switchboard_signal_sessions",
        "gauge",
        "Signaling sessions (peers in rooms), suspended ones included.",
        &one(snap.sessions),
    );
    metric(
        "switchboard_signal_sessions_suspended",
        "gauge",
        "Sessions waiting for a resume after losing their transport.",
        &one(snap.suspended),
    );
    metric(
        "switchboard_signal_rooms",
        "gauge",
        "Rooms with at least one member.",
        &one(snap.rooms),
    );
    let st = &snap.stats;
    metric(
        "switchboard_signal_messages_received_total",
        "counter",
        "Signaling messages received from clients.",
        &[(String::new(), st.messages_in)],
    );
    metric(
        "switchboard_signal_messages_relayed_total",
        "counter",
        "Offers, answers, candidates and messages relayed to a peer.",
        &[(String::new(), st.messages_relayed)],
    );
    metric(
        "switchboard_signal_joins_total",
        "counter",
        "Successful joins.",
        &[(String::new(), st.joins)],
    );
    metric(
        "switchboard_signal_resumes_total",
        "counter",
        "Successful resumes.",
        &[(String::new(), st.resumes)],
    );
    let errors: Vec<(String, u64)> = switchboard_signal::ErrorCode::ALL
        .iter()
        .map(|c| (format!("{{code=\"{}\"}}", c.as_str()), st.errors[c.index()]))
        .collect();
    metric(
        "switchboard_signal_errors_total",
        "counter",
        "Error messages sent to signaling clients, by code.",
        &errors,
    );
    s
}

/// `/api/ice-servers` answers and refusals.
pub fn render_ice(snap: &switchboard_http::IceSnapshot) -> String {
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

pub fn spawn(
    addr: SocketAddr,
    shared: Arc<Shared>,
    signaling: Arc<switchboard_http::Signaling>,
    ice: Option<Arc<switchboard_http::IceApi>>,
) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let shared = shared.clone();
            let signaling = signaling.clone();
            let ice = ice.clone();
            async move {
                let mut text = render(&shared.totals());
                text.push_str(&render_signaling(&signaling.snapshot()));
                if let Some(ice) = ice {
                    text.push_str(&render_ice(&ice.snapshot()));
                }
                text.push_str(&crate::heap::render());
                ([("content-type", "text/plain; version=0.0.4")], text)
            }
        }),
    );
    let listener = crate::web::bind("metrics", addr)?;
    let bound = listener.local_addr()?;
    crate::web::serve("metrics", listener, app, None, None, || {})?;
    Ok(bound)
}
