//! What the signaling transports share: the hub handle, the origin policy, the SSE
//! capabilities, the limits of the transports, and the timer task that drives the hub's
//! grace periods.

use crate::origin::OriginPolicy;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_signal::{Connection, Signaling};

/// How often the server pings a WebSocket (and comments an SSE stream).
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a slice of the transports is sent its keepalive (see [`spawn_signal_timer`]).
pub const KEEPALIVE_TICK: Duration = Duration::from_millis(50);
/// Silence after which a WebSocket counts as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Largest WebSocket frame or POST body read at all; the hub's own limit is lower.
pub const TRANSPORT_LIMIT: usize = 1 << 20;

/// The state of the signaling routes.
pub(crate) struct Transports {
    pub(crate) signaling: Arc<Signaling>,
    pub(crate) origin: OriginPolicy,
    /// SSE capabilities (`conn` of `/signal?conn=`) to their connections.
    sse: Mutex<HashMap<String, Connection>>,
}

impl Transports {
    pub(crate) fn new(signaling: Arc<Signaling>, origin: OriginPolicy) -> Arc<Transports> {
        Arc::new(Transports {
            signaling,
            origin,
            sse: Mutex::new(HashMap::new()),
        })
    }

    fn sse(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.sse.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register_sse(&self, token: String, conn: Connection) {
        self.sse().insert(token, conn);
    }

    pub(crate) fn unregister_sse(&self, token: &str) {
        let mut map = self.sse();
        map.remove(token);
        switchboard_util::shrink_sparse(&mut map);
    }

    pub(crate) fn sse_conn(&self, token: &str) -> Option<Connection> {
        self.sse().get(token).cloned()
    }
}

/// End sessions whose grace ran out, and queue the transports' keepalives, for as long
/// as the runtime lives: wakes at the earliest deadline of any shard, and at least every
/// `KEEPALIVE_TICK` (a suspension that happens meanwhile has a deadline a whole grace
/// period away). Each tick, the keepalive goes to one slice of the transports
/// ([`Signaling::keepalive`]), `KEEPALIVE` / `KEEPALIVE_TICK` slices in all, so each
/// transport gets one every `KEEPALIVE`. The slices are small so that the pings of one
/// tick are a short burst: with a slice a second, 20,000 connections meant 1,300 pings
/// written at one instant, and the relayed messages queued behind them raised the p99
/// latency at 20,000 msg/s from 0.6 to 2.1 ms (docs/benchmarks.md, issue 10).
pub fn spawn_signal_timer(signaling: &Arc<Signaling>) {
    let slices = (KEEPALIVE.as_millis() / KEEPALIVE_TICK.as_millis()) as u64;
    let me = Arc::downgrade(signaling);
    tokio::spawn(async move {
        let mut tick = 0u64;
        let mut next_keepalive = Instant::now() + KEEPALIVE_TICK;
        loop {
            let Some(sig) = me.upgrade() else { return };
            let next = sig
                .poll_timeout()
                .map_or(next_keepalive, |t| t.min(next_keepalive));
            drop(sig);
            tokio::time::sleep_until(next.into()).await;
            let Some(sig) = me.upgrade() else { return };
            let now = Instant::now();
            sig.handle_timeouts(now);
            if now >= next_keepalive {
                sig.keepalive(tick, slices);
                tick += 1;
                next_keepalive += KEEPALIVE_TICK;
                if next_keepalive <= now {
                    // After a stall, carry on from now rather than catch up in a burst.
                    next_keepalive = now + KEEPALIVE_TICK;
                }
            }
        }
    });
}
