//! The cluster link (`--cluster redis://...`): this node's registration, heartbeat and
//! load in the cluster store, the node-to-node bus, and the task that feeds the bus and
//! the other nodes' fate into signaling (`Signaling::run_cluster`). Runs on a runtime of
//! its own, so that a slow store never holds up the HTTP or media threads.
//! docs/cluster.md says what a cluster does; crates/signal's `cluster` module how.

use crate::config::cluster::ClusterConfig;
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Metrics, Service};
use crate::turn::TurnService;
use anyhow::Context;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use switchboard_cluster::redis_store::{RedisCluster, RedisOptions};
use switchboard_cluster::{Cluster, Load, NodeInfo};
use tracing::info;

/// What the load report reads: signaling's gauges, once signaling exists.
type LoadSource = Arc<OnceLock<Arc<switchboard_signal::Signaling>>>;

pub struct ClusterService {
    store: Arc<RedisCluster>,
    runtime: tokio::runtime::Runtime,
    signaling: LoadSource,
    left: std::sync::atomic::AtomicBool,
    /// `--cluster-capacity` (None: no limit; never 0).
    capacity: Option<u32>,
}

impl ClusterService {
    /// Join the cluster of `plan.cluster`, if any: fails when its Redis cannot be reached.
    pub fn start(plan: &Plan, turn: &TurnService) -> anyhow::Result<Option<ClusterService>> {
        let Some(c) = &plan.cluster else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cluster")
            .enable_all()
            .build()
            .context("cluster runtime")?;
        // The TURN URIs this node's /api/ice-servers announces, for the others to hand
        // out to clients of its region.
        let http_port = plan
            .http
            .as_ref()
            .map(|h| h.addr.port())
            .filter(|&p| p != 0);
        let turn_uris =
            switchboard_http::turn_uris(&crate::http::ice_config(plan, turn, http_port));
        let info = node_info(c, plan, turn_uris);
        let signaling = LoadSource::default();
        let load = load_reader(signaling.clone());
        let opts = RedisOptions {
            url: c.url.clone(),
            ..RedisOptions::default()
        };
        let store = runtime
            .block_on(RedisCluster::start(opts, info.clone(), load))
            .with_context(|| format!("--cluster {}", c.url))?;
        info!(
            node = %info.id,
            url = %info.url,
            store = %c.url,
            placement = ?c.placement,
            capacity = c.capacity.map_or("none".to_string(), |n| n.to_string()),
            "cluster: joined as node {}",
            info.name
        );
        Ok(Some(ClusterService {
            store,
            runtime,
            signaling,
            left: std::sync::atomic::AtomicBool::new(false),
            capacity: c.capacity,
        }))
    }

    fn leave(&self) {
        if self.left.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let store = self.store.clone();
        self.runtime.block_on(async move { store.leave().await });
        info!("cluster: left");
    }

    pub fn store(&self) -> Arc<dyn Cluster> {
        self.store.clone()
    }

    /// `/api/ice-servers?region=NAME`: the TURN of the least loaded live node of region
    /// NAME; None (this node's own) when this node serves NAME, or no live node does.
    pub fn region_turn(&self) -> switchboard_http::RegionTurn {
        let store = self.store.clone();
        Arc::new(move |region: &str| {
            let me = store.me();
            if me.region.as_deref() == Some(region) {
                return None;
            }
            store
                .nodes()
                .into_iter()
                .filter(|n| n.region.as_deref() == Some(region) && !n.turn.is_empty())
                .min_by(|a, b| a.load.score().total_cmp(&b.load.score()))
                .map(|best| best.turn)
        })
    }

    /// `/api/ice-servers` of a full node (`--cluster-capacity`: it serves that many
    /// participants or more): the name and TURN of the least loaded live node that is not
    /// full, whose SFU edge then serves the client (the room's node asks it for one when
    /// the client joins naming it, docs/cluster.md); None while this node is not full or
    /// every other node is. None at all without a capacity.
    pub fn overflow(&self) -> Option<switchboard_http::OverflowNode> {
        let capacity = self.capacity?;
        let store = self.store.clone();
        Some(Arc::new(move || {
            let nodes = store.nodes();
            let me = &store.me().id;
            let mine = nodes.iter().find(|n| &n.id == me)?;
            if mine.load.participants < capacity {
                return None;
            }
            nodes
                .iter()
                .filter(|n| &n.id != me && n.load.participants < capacity)
                .min_by(|a, b| a.load.score().total_cmp(&b.load.score()))
                .map(|n| (n.name.clone(), n.turn.clone()))
        }))
    }

    /// Make TURN's per-user quota count every node: once a second, publish this node's
    /// per-user allocation counts (record `{node}` of the pseudo-room `$turn`) and hand
    /// TURN the sum of the other live nodes'.
    pub fn share_turn_quotas(&self, quotas: Arc<switchboard_turn::Quotas>) {
        let store = self.store.clone();
        self.runtime.spawn(async move {
            let me = store.me().id.clone();
            let mut last = String::new();
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                let mine = encode_counts(&quotas.per_user());
                if mine != last {
                    store.write(switchboard_cluster::RecordOp::Put {
                        room: Arc::from(TURN_RECORDS),
                        key: me.clone(),
                        value: Arc::from(mine.as_str()),
                    });
                    last = mine;
                }
                let Ok(records) = store.records(TURN_RECORDS).await else {
                    continue;
                };
                let live: Vec<_> = store.nodes().into_iter().map(|n| n.id).collect();
                let mut others: std::collections::HashMap<Box<[u8]>, u32> = Default::default();
                for (node, value) in records {
                    if *node == *me {
                        continue;
                    }
                    if !live.iter().any(|l| **l == *node) {
                        // A dead node's allocations died with it.
                        store.write(switchboard_cluster::RecordOp::Delete {
                            room: Arc::from(TURN_RECORDS),
                            key: Arc::from(node.as_str()),
                        });
                        continue;
                    }
                    for (user, n) in decode_counts(&value) {
                        *others.entry(user).or_default() += n;
                    }
                }
                quotas.set_elsewhere(others);
            }
        });
    }

    /// Feed the cluster's events to `signaling` (and report its load from now on).
    pub fn serve_signaling(&self, signaling: &Arc<switchboard_signal::Signaling>) {
        let _ = self.signaling.set(signaling.clone());
        self.runtime.spawn(signaling.clone().run_cluster());
    }
}

/// The pseudo-room whose records hold each node's TURN allocations per user.
const TURN_RECORDS: &str = "$turn";

/// Per-user counts as JSON: `{"<identity as hex>": n, ...}`, sorted (so that an unchanged
/// set writes nothing).
fn encode_counts(counts: &[(Box<[u8]>, u32)]) -> String {
    let map: std::collections::BTreeMap<String, u32> = counts
        .iter()
        .map(|(user, n)| (user.iter().map(|b| format!("{b:02x}")).collect(), *n))
        .collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// What [`encode_counts`] wrote; entries that do not read are skipped.
fn decode_counts(text: &str) -> Vec<(Box<[u8]>, u32)> {
    let Ok(map) = serde_json::from_str::<std::collections::BTreeMap<String, u32>>(text) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(hex, n)| {
            if hex.len() % 2 != 0 {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            Some((bytes?.into_boxed_slice(), n))
        })
        .collect()
}

/// This node as the others see it.
fn node_info(c: &ClusterConfig, plan: &Plan, turn: Vec<String>) -> NodeInfo {
    let url = c.node_url.clone().unwrap_or_else(|| match &plan.http {
        Some(h) => {
            let scheme = if h.https.is_some() { "wss" } else { "ws" };
            format!("{scheme}://{}/ws", h.addr)
        }
        None => String::new(),
    });
    NodeInfo {
        id: NodeInfo::new_id(&c.node_name),
        name: c.node_name.clone(),
        url,
        turn,
        region: c.region.clone(),
        started: switchboard_util::unix_now(),
        load: Load::default(),
    }
}

/// The CPU time this process used so far, in seconds (utime + stime of /proc/self/stat).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux the kernel ABI allows userspace to see.
    Some((utime + stime) / 100.0)
}

/// A load report: CPU over the time since the last report, rooms and participants.
fn load_reader(signaling: LoadSource) -> Arc<dyn Fn() -> Load + Send + Sync> {
    let last = Mutex::new((Instant::now(), cpu_seconds().unwrap_or(0.0)));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    Arc::new(move || {
        let now = Instant::now();
        let cpu_now = cpu_seconds().unwrap_or(0.0);
        let cpu = {
            let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
            let secs = now.duration_since(l.0).as_secs_f64();
            let used = if secs > 0.0 {
                (cpu_now - l.1) / secs
            } else {
                0.0
            };
            *l = (now, cpu_now);
            used.max(0.0) as f32
        };
        // Participants are the clients in rooms held here: the sessions but those of
        // server participants (the SFU, its edges, phone calls).
        let (rooms, participants) = signaling.get().map_or((0, 0), |s| {
            let snap = s.snapshot();
            (
                snap.rooms as u32,
                snap.sessions.saturating_sub(snap.services) as u32,
            )
        });
        Load {
            cpu,
            cores,
            rooms,
            participants,
            bitrate: 0,
        }
    })
}

impl Service for ClusterService {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn metrics(&self) -> Option<Metrics> {
        let store = self.store.clone();
        Some(Arc::new(move |out: &mut String| {
            family(
                out,
                "switchboard_cluster_nodes",
                "gauge",
                "Live nodes of the cluster, this one included, as last seen.",
                &[("", store.nodes().len() as u64)],
            );
            family(
                out,
                "switchboard_cluster_dropped_total",
                "counter",
                "Bus messages and record writes dropped because the queue to the store was full.",
                &[("", store.dropped())],
            );
        }))
    }

    /// A node that stops hands its rooms over at once: it leaves the cluster (the others
    /// see it go now, not when its heartbeat runs out, and take its rooms over from their
    /// records), then tells its clients the server stops, so that they resume elsewhere.
    /// Waiting out a drain here would keep two copies of its rooms.
    fn drain(&mut self) {
        self.leave();
        if let Some(s) = self.signaling.get() {
            s.shutdown();
        }
    }

    fn stop(self: Box<Self>) {
        self.leave();
        self.runtime.shutdown_background();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_counts_read_back_and_junk_is_skipped() {
        let counts = vec![(Box::from(&b"ada"[..]), 2), (Box::from(&[0u8, 255][..]), 1)];
        let text = encode_counts(&counts);
        let mut back = decode_counts(&text);
        back.sort();
        let mut want = counts.clone();
        want.sort();
        assert_eq!(back, want);
        assert!(decode_counts("not json").is_empty());
        assert_eq!(decode_counts(r#"{"abc": 1, "zz": 2, "6164": 3}"#).len(), 1);
    }
}
