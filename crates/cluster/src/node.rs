//! A node of the cluster: who it is, where clients reach it, how loaded it is.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A node's id: unique per process start (its name plus a random suffix), so that a node
/// that restarts under the same name is a new node and nothing meant for the old one
/// (messages, connections) reaches it.
pub type NodeId = Arc<str>;

/// How long a node counts as alive after its last heartbeat. Heartbeats go every
/// `NODE_TTL / 5`.
pub const NODE_TTL: Duration = Duration::from_secs(5);

/// A node as the others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// The configured name (`--node-name`), for people.
    pub name: String,
    /// Where clients reach its signaling (e.g. `wss://n1.example.com/ws`), as configured.
    pub url: String,
    /// Its TURN server's addresses as `turn:` URIs (empty when TURN is off).
    pub turn: Vec<String>,
    /// The region it serves (`--region`), if any.
    pub region: Option<String>,
    /// Unix seconds when it started.
    pub started: u64,
    pub load: Load,
}

/// What a node reports of its load with each heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// CPU time used over the last heartbeat period, in cores (1.5 = one and a half).
    pub cpu: f32,
    /// Cores it may use.
    pub cores: u32,
    pub rooms: u32,
    pub participants: u32,
    /// Media forwarded (SFU and TURN), bits per second.
    pub bitrate: u64,
}

impl Load {
    /// One figure to compare nodes by: the CPU share in use, plus a small weight per
    /// participant so that idle nodes still spread rooms evenly.
    pub fn score(&self) -> f64 {
        let cores = f64::from(self.cores.max(1));
        f64::from(self.cpu) / cores + f64::from(self.participants) / 10_000.0
    }
}

impl NodeInfo {
    /// A fresh id for a node called `name`.
    pub fn new_id(name: &str) -> NodeId {
        Arc::from(format!("{name}.{}", switchboard_util::random_hex(4)))
    }
}
