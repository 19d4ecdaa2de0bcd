//! A look at a cluster from outside (`switchboard cluster status`): its live nodes and
//! its rooms with their owners, read from Redis without joining.

use super::{glob_escape, redacted, Keys};
use crate::{ClusterError, NodeInfo, RoomOwner};
use redis::aio::MultiplexedConnection;

/// What `status` found.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// Live nodes, by name.
    pub nodes: Vec<NodeInfo>,
    /// Rooms whose owner is alive, by name.
    pub rooms: Vec<RoomOwner>,
}

fn unavailable(url: &str, e: redis::RedisError) -> ClusterError {
    ClusterError::Unavailable(format!("{}: {e}", redacted(url)))
}

/// The live nodes and owned rooms of the cluster whose store is `url` (key prefix
/// `prefix`, `sb:` unless configured otherwise).
pub async fn status(url: &str, prefix: &str) -> Result<ClusterStatus, ClusterError> {
    let keys = Keys {
        prefix: prefix.to_string(),
    };
    let client = redis::Client::open(url).map_err(|e| unavailable(url, e))?;
    let mut conn: MultiplexedConnection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| unavailable(url, e))?;
    let entries: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(keys.nodes())
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(url, e))?;
    let mut pipe = redis::pipe();
    for (id, _) in &entries {
        pipe.exists(keys.alive(id));
    }
    let alive: Vec<bool> = if entries.is_empty() {
        Vec::new()
    } else {
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| unavailable(url, e))?
    };
    let mut nodes: Vec<NodeInfo> = entries
        .iter()
        .zip(alive)
        .filter(|(_, live)| *live)
        .filter_map(|((_, json), _)| serde_json::from_str(json).ok())
        .collect();
    nodes.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));

    let room_prefix = keys.room_prefix();
    let pattern = format!("{}*", glob_escape(&room_prefix));
    let mut names: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(url, e))?;
        names.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    names.sort();
    names.dedup();
    let mut rooms = Vec::new();
    if !names.is_empty() {
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.get(name);
        }
        let owners: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(url, e))?;
        for (name, owner) in names.iter().zip(owners) {
            let (Some(room), Some(owner)) = (name.strip_prefix(&room_prefix), owner) else {
                continue;
            };
            if nodes.iter().any(|n| *n.id == *owner) {
                rooms.push(RoomOwner {
                    room: room.to_string(),
                    owner: owner.as_str().into(),
                });
            }
        }
    }
    Ok(ClusterStatus { nodes, rooms })
}
