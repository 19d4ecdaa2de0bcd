//! Prometheus `/metrics` endpoint: each service renders its own part (see
//! `Service::metrics`), this serves their concatenation. The exposition text is written
//! directly: the counters already live in the services' snapshots, and the text format
//! is a few lines, so a metrics registry crate would only add a second copy of each value.

use crate::service::{Listener, Metrics, Service};
use std::fmt::Write;
use std::net::SocketAddr;
use tracing::info;

/// One metric family: HELP and TYPE lines, then a sample per `(labels, value)`, labels
/// being `""` or `{name="value",…}`.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

pub struct MetricsService {
    bound: SocketAddr,
}

impl MetricsService {
    /// Serve `/metrics` on `addr` with the parts of `sources`, in that order.
    pub fn start(addr: SocketAddr, sources: Vec<Metrics>) -> anyhow::Result<MetricsService> {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let mut text = String::with_capacity(8192);
                for source in &sources {
                    source(&mut text);
                }
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        );
        let listener = crate::web::bind("metrics", addr)?;
        let bound = listener.local_addr()?;
        crate::web::spawn(
            "metrics",
            1,
            || {},
            move || crate::web::serve_plain(listener, app),
        )?;
        info!("metrics on http://{bound}/metrics");
        Ok(MetricsService { bound })
    }
}

impl Service for MetricsService {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn listeners(&self) -> Vec<Listener> {
        vec![Listener {
            kind: "metrics",
            addr: self.bound,
        }]
    }
}
