//! The services `serve` runs (TURN, signaling, HTTP, heap trim, metrics; next the SFU,
//! the SIP and XMPP gateways and the cluster link) behind one interface, so that the
//! supervisor (serve.rs) starts, reloads, drains, stops and lists them in one loop
//! instead of growing a branch per subsystem.
//!
//! A service is started by its own constructor (`XService::start(&Plan, deps…)`):
//! starting is where services differ (what they need from each other), everything after
//! is uniform and lives here.

use crate::plan::Plan;
use std::net::SocketAddr;
use std::sync::Arc;

/// A bound listener: what it is (`turn-udp`, `turn-tcp`, `turn-tls`, `http`, `https`,
/// `metrics`, …) and where. These names are the keys of the `--ready-file`.
#[derive(Clone, Copy, Debug)]
pub struct Listener {
    pub kind: &'static str,
    pub addr: SocketAddr,
}

/// A service's part of `/metrics` (Prometheus text), rendered on each scrape from the
/// metrics thread.
pub type Metrics = Arc<dyn Fn(&mut String) + Send + Sync>;

pub trait Service: Send {
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// Where it listens (port 0 resolved).
    fn listeners(&self) -> Vec<Listener> {
        Vec::new()
    }

    /// Its part of `/metrics`, if any.
    fn metrics(&self) -> Option<Metrics> {
        None
    }

    /// Take the new configuration (SIGHUP). The plan is validated as a whole before any
    /// service sees it, so this cannot fail; returns what was reloaded, for the log.
    fn reload(&mut self, _plan: &Plan) -> Option<&'static str> {
        None
    }

    /// Stop taking new work (SIGTERM); what is in progress may finish.
    fn drain(&mut self) {}

    /// Work in progress that a drain waits for, e.g. `(3, "allocations")`.
    fn in_flight(&self) -> Option<(usize, &'static str)> {
        None
    }

    /// Stop, waiting for threads that hold state worth finishing (TURN's workers). Called
    /// in reverse start order; services whose threads hold nothing (the HTTP and metrics
    /// runtimes) end with the process.
    fn stop(self: Box<Self>) {}
}
