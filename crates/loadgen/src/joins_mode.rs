//! `joins`: how fast a node lets clients into rooms, in particular rooms another node
//! of the cluster owns (issue 14).
//!
//! First one creator per room joins through `--owner` (with `--cluster-placement
//! local` that node then owns the room); then `--clients` clients, `--per-room` to a
//! room, connect to `--server` and join those rooms, at most `--inflight` at once. The
//! timed figures: joins per second over the whole batch, and per client the time from
//! TCP connect to `joined` and from `join` sent to `joined`. Every joiner must see its
//! room's creator in `joined.peers` (else it landed in another room of the same name).
//! All connections stay open until the end.

use crate::cli::{check_range, resolve_target, JoinsArgs};
use crate::net::{loopback_source, now_ns, round3};
use crate::sb_session::{self, summary_ms};
use crate::ws_conn::{open_ws, small_buffers, Ws};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest one client's connect + join may take.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run(a: JoinsArgs) -> Result<Value> {
    let server = resolve_target("server", &a.server, a.allow_any_target)?;
    let owner = match &a.owner {
        Some(o) => resolve_target("owner", o, a.allow_any_target)?,
        None => server,
    };
    check_range("clients", a.clients, 1, 100_000)?;
    check_range("per-room", a.per_room, 1, 1000)?;
    check_range("inflight", a.inflight, 1, 10_000)?;
    check_range("threads", a.threads, 1, 64)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let out = rt.block_on(drive(&a, server, owner));
    rt.shutdown_timeout(Duration::from_millis(200));
    out
}

/// One timed client: (ms from connect to `joined`, ms from `join` to `joined`, socket).
async fn timed_join(
    server: SocketAddr,
    source: Option<std::net::IpAddr>,
    room: String,
    name: String,
) -> Result<(f64, f64, Ws)> {
    let t0 = now_ns();
    let url = format!("ws://{server}/ws");
    let mut ws = open_ws(server, source, &url, small_buffers()).await?;
    let t1 = now_ns();
    let j = sb_session::join(&mut ws, &room, &name).await?;
    let t2 = now_ns();
    if j.partner.is_none() {
        bail!("joined {room} without its creator: another room of that name?");
    }
    Ok(((t2 - t0) as f64 / 1e6, (t2 - t1) as f64 / 1e6, ws))
}

async fn drive(a: &JoinsArgs, server: SocketAddr, owner: SocketAddr) -> Result<Value> {
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let rooms = a.clients.div_ceil(a.per_room);
    let room = |r: usize| format!("j{tag}-{r}");
    println!(
        "joins: {} clients via {server} into {rooms} rooms created via {owner}, {} at once",
        a.clients, a.inflight
    );

    // Creators, not timed (but at most --inflight at once as well).
    let gate = Arc::new(Semaphore::new(a.inflight));
    let mut creators = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let (gate, name) = (gate.clone(), room(r));
        let source = loopback_source(r, a.loopback_sources);
        creators.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let url = format!("ws://{owner}/ws");
            let mut ws = open_ws(owner, source, &url, small_buffers()).await?;
            sb_session::join(&mut ws, &name, "creator").await?;
            anyhow::Ok(ws)
        }));
    }
    let mut held = Vec::with_capacity(rooms + a.clients);
    for c in creators {
        match tokio::time::timeout(JOIN_TIMEOUT, c).await {
            Ok(Ok(Ok(ws))) => held.push(ws),
            Ok(Ok(Err(e))) => bail!("creating a room via {owner}: {e:#}"),
            Ok(Err(e)) => bail!("creator task: {e}"),
            Err(_) => bail!("creating a room via {owner} timed out"),
        }
    }
    // Let the owner's room and member records reach the store before the timed part.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = now_ns();
    let mut tasks = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let gate = gate.clone();
        let (r, name) = (room(i / a.per_room), format!("j{i}"));
        let source = loopback_source(rooms + i, a.loopback_sources);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            tokio::time::timeout(JOIN_TIMEOUT, timed_join(server, source, r, name))
                .await
                .unwrap_or_else(|_| Err(anyhow!("timed out")))
        }));
    }
    let (mut total_ms, mut join_ms, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0u64;
    let mut last = t0;
    for t in tasks {
        match t.await.context("joiner task")? {
            Ok((total, join, ws)) => {
                total_ms.push(total);
                join_ms.push(join);
                held.push(ws);
            }
            Err(e) => {
                failed += 1;
                if failures.len() < 5 {
                    failures.push(format!("{e:#}"));
                }
            }
        }
        last = last.max(now_ns());
    }
    let secs = (last - t0) as f64 / 1e9;
    let joined = total_ms.len();
    let per_s = joined as f64 / secs.max(1e-9);
    let total = summary_ms(&total_ms);
    let join = summary_ms(&join_ms);
    println!(
        "joins: {joined} of {} joined in {secs:.2} s ({per_s:.0}/s), {failed} failed; \
         connect->joined p50 {} ms p99 {} ms; join->joined p50 {} ms p99 {} ms",
        a.clients, total["p50"], total["p99"], join["p50"], join["p99"]
    );
    drop(held);
    Ok(json!({
        "mode": "joins",
        "server": server.to_string(),
        "owner": owner.to_string(),
        "clients": a.clients,
        "rooms": rooms,
        "per_room": a.per_room,
        "inflight": a.inflight,
        "joined": joined,
        "failed": failed,
        "first_failures": failures,
        "seconds": round3(secs),
        "joins_per_s": round3(per_s),
        "connect_to_joined_ms": total,
        "join_to_joined_ms": join,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::fake_nodes;
    use clap::Parser;

    #[test]
    fn joins_through_the_other_node_into_rooms_made_on_the_owner() {
        let nodes = fake_nodes(2);
        let (a, b) = (nodes.addrs[0].to_string(), nodes.addrs[1].to_string());
        let args = [
            "switchboard-load",
            "joins",
            "--owner",
            &a,
            "--server",
            &b,
            "--clients",
            "12",
            "--per-room",
            "3",
            "--inflight",
            "4",
        ];
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Joins(args) = cli.cmd else {
            unreachable!()
        };
        let r = run(args).unwrap();
        assert_eq!(r["rooms"], 4, "{r}");
        assert_eq!(r["joined"], 12, "{r}");
        assert_eq!(r["failed"], 0, "{r}");
        assert_eq!(r["join_to_joined_ms"]["n"], 12, "{r}");
        assert!(r["joins_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(nodes.accepted(0), 4, "creators on the owner");
        assert_eq!(nodes.accepted(1), 12, "joiners on the other node");
    }
}
