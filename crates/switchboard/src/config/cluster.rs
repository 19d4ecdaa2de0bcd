//! `[cluster]`: scale-out. Several nodes serve one service through a Redis server
//! (`--cluster redis://...`): any node takes any client, each room lives on one node, and
//! a node's death drops no call (docs/cluster.md). Off by default: one node needs nothing.

use crate::error::ConfigError;
use clap::{Args, ValueEnum};

#[derive(Args, Debug, Clone, Default)]
#[group(id = "cluster")]
pub struct ClusterSettings {
    /// Join the cluster whose store is this Redis server: `redis://HOST:PORT[/DB]`
    /// (`rediss://` for TLS). [default: off, a single node]
    // Its id differs from its name: `cluster` is the id of the section's group.
    #[arg(
        id = "cluster_url",
        long = "cluster",
        value_name = "URL",
        env = "SWITCHBOARD_CLUSTER"
    )]
    pub cluster: Option<String>,

    /// This node's name in `switchboard cluster status` and the logs. [default: the host
    /// name]
    #[arg(long, value_name = "NAME", env = "SWITCHBOARD_NODE_NAME")]
    pub node_name: Option<String>,

    /// Where clients reach this node's signaling (e.g. `wss://n1.example.com/ws`), as
    /// `cluster status` shows it. [default: from the HTTP listener]
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_NODE_URL")]
    pub node_url: Option<String>,

    /// The region this node serves, shown by `cluster status`.
    #[arg(long, value_name = "NAME", env = "SWITCHBOARD_REGION")]
    pub region: Option<String>,

    /// Where a new room goes: the least loaded node, or the node its first member reached.
    #[arg(
        long,
        value_name = "HOW",
        env = "SWITCHBOARD_CLUSTER_PLACEMENT",
        default_value = "least-loaded"
    )]
    pub cluster_placement: PlacementArg,

    /// Participants this node serves (members of the rooms it holds) before it counts as
    /// full: its `/api/ice-servers` then names the least loaded node that is not full,
    /// whose SFU edge takes the media of the clients that come after. 0: no limit.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_CLUSTER_CAPACITY",
        default_value_t = 0
    )]
    pub cluster_capacity: u32,
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlacementArg {
    #[default]
    LeastLoaded,
    Local,
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub url: String,
    pub node_name: String,
    /// None: derived from the HTTP listener when the service starts.
    pub node_url: Option<String>,
    pub region: Option<String>,
    pub placement: switchboard_signal::Placement,
    /// `--cluster-capacity` (None: no limit).
    pub capacity: Option<u32>,
}

/// A valid node or region name: 1-64 of letters, digits, `-`, `_`, `.`.
fn name_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The host name, or `node` when it cannot be read or is not a valid name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| name_ok(h))
        .unwrap_or_else(|| "node".into())
}

/// Check a Redis URL's shape (the client reports what it cannot reach at start).
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| format!("`{url}` is not a redis:// or rediss:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    if let Some(db) = rest.split_once('/').map(|(_, db)| db) {
        if !db.is_empty() && db.parse::<u32>().is_err() {
            return Err(format!("`{url}`: the database `{db}` is not a number"));
        }
    }
    Ok(())
}

impl ClusterSettings {
    pub fn validate(&self) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(url) = &self.cluster else {
            return Ok(None);
        };
        check_redis_url(url).map_err(|e| ConfigError::new("cluster", e))?;
        let node_name = match &self.node_name {
            Some(n) if name_ok(n) => n.clone(),
            Some(n) => {
                return Err(ConfigError::new(
                    "node-name",
                    format!("`{n}` is not 1-64 letters, digits, -, _ or ."),
                ))
            }
            None => host_name(),
        };
        if let Some(r) = &self.region {
            if !name_ok(r) {
                return Err(ConfigError::new(
                    "region",
                    format!("`{r}` is not 1-64 letters, digits, -, _ or ."),
                ));
            }
        }
        if let Some(u) = &self.node_url {
            let scheme_ok = ["ws://", "wss://", "http://", "https://"]
                .iter()
                .any(|s| u.starts_with(s));
            if !scheme_ok {
                return Err(ConfigError::new(
                    "node-url",
                    format!("`{u}` is not a ws://, wss://, http:// or https:// URL"),
                ));
            }
        }
        Ok(Some(ClusterConfig {
            url: url.clone(),
            node_name,
            node_url: self.node_url.clone(),
            region: self.region.clone(),
            placement: match self.cluster_placement {
                PlacementArg::LeastLoaded => switchboard_signal::Placement::LeastLoaded,
                PlacementArg::Local => switchboard_signal::Placement::Local,
            },
            capacity: (self.cluster_capacity > 0).then_some(self.cluster_capacity),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_checked() {
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("redis://:secret@redis.internal:6379/2").is_ok());
        assert!(check_redis_url("rediss://redis").is_ok());
        assert!(check_redis_url("http://x").is_err());
        assert!(check_redis_url("redis://").is_err());
        assert!(check_redis_url("redis://h:1/two").is_err());
    }
}
