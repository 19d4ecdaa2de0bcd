//! `switchboard cluster status`: a cluster's live nodes (name, id, signaling URL, region,
//! load) and its rooms with the node each lives on, read from its Redis.

use std::process::ExitCode;
use switchboard_cluster::redis_store::{status, ClusterStatus, RedisOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cluster's Redis (`--cluster` of its nodes).
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_CLUSTER")]
    cluster: String,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> ExitCode {
    if let Err(e) = crate::config::cluster::check_redis_url(&a.cluster) {
        eprintln!("switchboard cluster status: --cluster: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard cluster status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prefix = RedisOptions::default().prefix;
    let found = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            status(&a.cluster, &prefix),
        )
        .await
    });
    let st = match found {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => {
            eprintln!("switchboard cluster status: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("switchboard cluster status: no answer from the cluster's Redis within 5 s");
            return ExitCode::FAILURE;
        }
    };
    if a.json {
        println!("{}", as_json(&st));
    } else {
        print!("{}", as_text(&st));
    }
    ExitCode::SUCCESS
}

fn as_json(st: &ClusterStatus) -> serde_json::Value {
    let rooms: Vec<serde_json::Value> = st
        .rooms
        .iter()
        .map(|r| {
            let name = st.nodes.iter().find(|n| n.id == r.owner).map(|n| &n.name);
            serde_json::json!({"room": r.room, "node": r.owner, "node_name": name})
        })
        .collect();
    serde_json::json!({"nodes": st.nodes, "rooms": rooms})
}

fn as_text(st: &ClusterStatus) -> String {
    let mut out = format!("nodes: {}\n", st.nodes.len());
    for n in &st.nodes {
        let rooms_here = st.rooms.iter().filter(|r| r.owner == n.id).count();
        out.push_str(&format!(
            "  {:<16} {:<24} {:<32} region {:<8} cpu {:.2}/{} rooms {} (owned {}) participants {}\n",
            n.name,
            n.id,
            n.url,
            n.region.as_deref().unwrap_or("-"),
            n.load.cpu,
            n.load.cores,
            n.load.rooms,
            rooms_here,
            n.load.participants,
        ));
    }
    out.push_str(&format!("rooms: {}\n", st.rooms.len()));
    for r in &st.rooms {
        let name = st
            .nodes
            .iter()
            .find(|n| n.id == r.owner)
            .map_or("?", |n| n.name.as_str());
        out.push_str(&format!("  {:<32} on {name} ({})\n", r.room, r.owner));
    }
    out
}
