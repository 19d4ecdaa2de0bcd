//! The signaling service: the hub handle (`Signaling`) the HTTP transports serve, its
//! reload and shutdown, and its part of `/metrics`. This is the one place the binary
//! constructs `Signaling` or reads its snapshot; the HTTP service gets the handle from
//! here, and so will the service participants (SFU, gateways) next.

use crate::config::signal::SignalConfig;
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Metrics, Service};
use std::sync::Arc;
use tracing::info;

/// What the HTTP transports need to serve signaling.
pub type Handle = Arc<switchboard_signal::Signaling>;

pub struct SignalService {
    signaling: Handle,
    origin: switchboard_http::OriginPolicy,
}

impl SignalService {
    pub fn start(plan: &Plan, cluster: Option<&crate::cluster::ClusterService>) -> SignalService {
        let c = &plan.signal;
        let signaling = match (cluster, &plan.cluster) {
            (Some(cl), Some(cc)) => {
                let s = switchboard_signal::Signaling::clustered(
                    c.hub.clone(),
                    c.shards,
                    cl.store(),
                    cc.placement,
                );
                cl.serve_signaling(&s);
                s
            }
            _ => switchboard_signal::Signaling::new(c.hub.clone(), c.shards),
        };
        log_start(c);
        SignalService {
            signaling,
            origin: switchboard_http::OriginPolicy::new(&c.origins),
        }
    }

    pub fn handle(&self) -> Handle {
        self.signaling.clone()
    }

    /// Which pages' origins may use signaling (`--allowed-origin`).
    pub fn origin(&self) -> switchboard_http::OriginPolicy {
        self.origin.clone()
    }

    /// Starts the hub's timers (grace periods, rate buckets) on the runtime this is
    /// called from: the HTTP runtime, which serves the transports.
    pub fn timers(&self) -> impl FnOnce() + Send + 'static {
        let signaling = self.signaling.clone();
        move || switchboard_http::spawn_signal_timer(&signaling)
    }
}

fn log_start(c: &SignalConfig) {
    let s = &c.hub;
    info!(
        room_capacity = s.room_capacity,
        grace_s = s.grace.as_secs(),
        max_message = s.max_message,
        rate = s.rate,
        shards = c.shards,
        "signaling: rooms {}; origins: this host{}",
        if s.token_secrets.is_empty() {
            "open (no --room-token-secret)"
        } else {
            "need a room token"
        },
        if c.origins.is_empty() {
            String::new()
        } else {
            format!(", {}", c.origins.join(", "))
        }
    );
}

impl Service for SignalService {
    fn name(&self) -> &'static str {
        "signal"
    }

    fn metrics(&self) -> Option<Metrics> {
        let signaling = self.signaling.clone();
        Some(Arc::new(move |out: &mut String| {
            render(out, &signaling.snapshot())
        }))
    }

    fn reload(&mut self, plan: &Plan) -> Option<&'static str> {
        self.signaling.reconfigure(plan.signal.hub.clone());
        Some("signaling limits, room token secrets")
    }

    fn stop(self: Box<Self>) {
        self.signaling.shutdown();
    }
}

/// Signaling gauges and counters.
fn render(s: &mut String, snap: &switchboard_signal::SignalingSnapshot) {
    let one = |v: usize| [("", v as u64)];
    family(
        s,
        "switchboard_signal_connections",
        "gauge",
        "Open signaling transports (WebSocket and SSE).",
        &one(snap.connections),
    );
    family(
        s,
        "switchboard_signal_sessions",
        "gauge",
        "Signaling sessions (peers in rooms), suspended ones included.",
        &one(snap.sessions),
    );
    family(
        s,
        "switchboard_signal_sessions_suspended",
        "gauge",
        "Sessions waiting for a resume after losing their transport.",
        &one(snap.suspended),
    );
    family(
        s,
        "switchboard_signal_rooms",
        "gauge",
        "Rooms with at least one member (in a cluster: the rooms this node holds).",
        &one(snap.rooms),
    );
    family(
        s,
        "switchboard_signal_hosted",
        "gauge",
        "Clients of other cluster nodes in rooms this node holds.",
        &one(snap.hosted),
    );
    family(
        s,
        "switchboard_signal_bridged",
        "gauge",
        "Clients of this node in rooms other cluster nodes hold.",
        &one(snap.bridged),
    );
    let st = &snap.stats;
    family(
        s,
        "switchboard_signal_messages_received_total",
        "counter",
        "Signaling messages received from clients.",
        &[("", st.messages_in)],
    );
    family(
        s,
        "switchboard_signal_messages_relayed_total",
        "counter",
        "Offers, answers, candidates and messages relayed to a peer.",
        &[("", st.messages_relayed)],
    );
    family(
        s,
        "switchboard_signal_joins_total",
        "counter",
        "Successful joins.",
        &[("", st.joins)],
    );
    family(
        s,
        "switchboard_signal_resumes_total",
        "counter",
        "Successful resumes.",
        &[("", st.resumes)],
    );
    let labels: Vec<String> = switchboard_signal::ErrorCode::ALL
        .iter()
        .map(|c| format!("{{code=\"{}\"}}", c.as_str()))
        .collect();
    let errors: Vec<(&str, u64)> = switchboard_signal::ErrorCode::ALL
        .iter()
        .zip(&labels)
        .map(|(c, l)| (l.as_str(), st.errors[c.index()]))
        .collect();
    family(
        s,
        "switchboard_signal_errors_total",
        "counter",
        "Error messages sent to signaling clients, by code.",
        &errors,
    );
}
