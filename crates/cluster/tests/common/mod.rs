//! What the Redis store's tests share: a `redis-server` per test, nodes on it, waiting
//! for their events.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_cluster::redis_store::{RedisCluster, RedisOptions};
use switchboard_cluster::{Cluster, ClusterEvent, Load, NodeId, NodeInfo};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a test waits for something that should happen well before.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A `redis-server` on 127.0.0.1 without persistence, killed when dropped (panics too).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        // The nodes' logs, shown for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("switchboard_cluster=debug")
            .try_init();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free port on 127.0.0.1")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    /// (Re)start it on its port, empty; returns once it answers PING.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install Debian's redis-server (scripts/test-all.sh does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// `kill -9`: everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, to look at or tamper with what the nodes stored.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn info(name: &str) -> NodeInfo {
    NodeInfo {
        id: NodeInfo::new_id(name),
        name: name.to_string(),
        url: format!("wss://{name}.example.com/ws"),
        turn: vec![format!("turn:{name}.example.com:3478")],
        region: Some("eu".to_string()),
        started: 1_700_000_000,
        load: Load::default(),
    }
}

pub type Events = UnboundedReceiver<ClusterEvent>;

pub async fn node_with(
    server: &RedisServer,
    name: &str,
    ttl: Duration,
    participants: u32,
) -> (Arc<RedisCluster>, Events) {
    let opts = RedisOptions {
        url: server.url(),
        ttl,
        ..RedisOptions::default()
    };
    let load = Arc::new(move || Load {
        participants,
        cores: 2,
        ..Load::default()
    });
    let node = RedisCluster::start(opts, info(name), load)
        .await
        .expect("start a node");
    let events = node.events().expect("first call gets the events");
    (node, events)
}

pub async fn node(server: &RedisServer, name: &str) -> (Arc<RedisCluster>, Events) {
    node_with(server, name, Duration::from_secs(1), 0).await
}

/// The next event `want` accepts, skipping others; panics after PATIENCE.
pub async fn wait_for(
    events: &mut Events,
    what: &str,
    want: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => skipped.push(e),
            Ok(None) => panic!("events closed while waiting for {what}; saw {skipped:?}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}; saw {skipped:?}"),
        }
    }
}

/// The next `n` messages, other events skipped.
pub async fn messages(events: &mut Events, n: usize) -> Vec<(NodeId, Vec<u8>)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let what = format!("message {} of {n}", out.len() + 1);
        if let ClusterEvent::Message { from, bytes } =
            wait_for(events, &what, |e| matches!(e, ClusterEvent::Message { .. })).await
        {
            out.push((from, bytes.to_vec()));
        }
    }
    out
}

pub fn ids(nodes: &[NodeInfo]) -> Vec<NodeId> {
    let mut v: Vec<NodeId> = nodes.iter().map(|n| n.id.clone()).collect();
    v.sort();
    v
}

pub fn sorted(mut v: Vec<NodeId>) -> Vec<NodeId> {
    v.sort();
    v
}

pub fn numbered(i: u32) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

/// The numbers of `msgs` from `from`, in arrival order.
pub fn numbers_from(msgs: &[(NodeId, Vec<u8>)], from: &NodeId) -> Vec<u32> {
    msgs.iter()
        .filter(|(f, _)| f == from)
        .map(|(_, b)| u32::from_be_bytes(b.as_slice().try_into().expect("a 4-byte number")))
        .collect()
}
