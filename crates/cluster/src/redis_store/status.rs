//! A look at a cluster from outside (`switchboard cluster status`): its live nodes and
//! its rooms with their owners, read from Redis without joining.

use super::{glob_escape, redacted, Keys};
use crate::{ClusterError, NodeInfo, RoomOwner};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::RedisResult;

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

    let rooms = owned_rooms(&mut conn, &keys)
        .await
        .map_err(|e| unavailable(url, e))?;
    Ok(ClusterStatus { nodes, rooms })
}

/// Every room whose owner is alive, by name (SCAN of the room keys, their owners, and the
/// owners' alive keys: three round trips whatever the number of rooms).
pub(super) async fn owned_rooms<C: ConnectionLike + Send>(
    conn: &mut C,
    keys: &Keys,
) -> RedisResult<Vec<RoomOwner>> {
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
            .query_async(conn)
            .await?;
        names.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    names.sort();
    names.dedup(); // SCAN may return a key twice
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for name in &names {
        pipe.get(name);
    }
    let owners: Vec<Option<String>> = pipe.query_async(conn).await?;
    let mut distinct: Vec<&str> = owners.iter().flatten().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let mut pipe = redis::pipe();
    for owner in &distinct {
        pipe.exists(keys.alive(owner));
    }
    let alive: Vec<bool> = pipe.query_async(conn).await?;
    let mut out = Vec::new();
    for (name, owner) in names.iter().zip(owners.iter()) {
        let (Some(room), Some(owner)) = (name.strip_prefix(&room_prefix), owner) else {
            continue; // the room was released between SCAN and GET
        };
        let live = distinct
            .binary_search(&owner.as_str())
            .is_ok_and(|i| alive.get(i).copied().unwrap_or(false));
        if live {
            out.push(RoomOwner {
                room: room.to_string(),
                owner: owner.as_str().into(),
            });
        }
    }
    Ok(out)
}
