//! The test's handle on `tests/cluster/lab.sh`: one lab per test (fresh namespaces),
//! removed when the handle drops, with the nodes' logs printed when the test failed. The
//! test's own sockets are opened inside the lab's client namespace (198.51.100.50) by a
//! thread that enters it with setns(2), so the test process itself stays where it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use switchboard_client::signal::WsClient;

/// The cluster as `switchboard cluster status` shows it, by node name (`n1`...).
#[derive(Debug)]
pub struct StatusView {
    pub live: BTreeSet<String>,
    /// Room -> the node it lives on.
    pub owners: BTreeMap<String, String>,
}

impl StatusView {
    pub fn owner(&self, room: &str) -> Option<&str> {
        self.owners.get(room).map(String::as_str)
    }
}

/// The far end's tone check (`sip_far_end` finds it here, as in the SIP tests' binary).
pub use crate::sip_lab::tone_of;

const LAB_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/cluster/lab.sh");

/// One lab at a time: five busy processes per lab are already plenty for two cores.
static ONE_LAB: Mutex<()> = Mutex::new(());

pub struct Lab {
    pub id: String,
    state: PathBuf,
    /// The namespace the test's clients live in, and its address.
    client_ns: String,
    pub client_ip: std::net::IpAddr,
    _one: MutexGuard<'static, ()>,
}

impl Lab {
    /// A fresh lab with Redis running and no node started.
    pub fn up() -> Lab {
        assert!(
            // SAFETY: geteuid(2) has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "the cluster lab needs root (network namespaces, iptables)"
        );
        let one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
        let out = run(&["up"], None);
        let var = |k: &str| -> String {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("lab.sh up printed no {k}: {out}"))
                .to_string()
        };
        let mut lab = Lab {
            id: var("CLUSTERLAB_ID"),
            state: PathBuf::from(var("CLUSTERLAB_STATE")),
            client_ns: String::new(),
            client_ip: std::net::IpAddr::from([0, 0, 0, 0]),
            _one: one,
        };
        let client = lab.sh(&["client", "test"]);
        let mut words = client.split_whitespace();
        lab.client_ns = words
            .next()
            .expect("lab.sh client prints the namespace")
            .to_string();
        lab.client_ip = words
            .next()
            .and_then(|a| a.parse().ok())
            .expect("lab.sh client prints the address");
        lab
    }

    /// lab.sh with this lab's id; its stdout. Panics (with its stderr) when it fails.
    pub fn sh(&self, args: &[&str]) -> String {
        run(args, Some(&self.id))
    }

    /// Start node `n` (`--cluster-placement local`, so a room lives where its first
    /// member came) with `extra` arguments; returns when it is ready.
    pub fn start_node(&self, n: usize, extra: &[&str]) {
        let n = n.to_string();
        let mut args = vec!["start-node", &n, "--cluster-placement", "local"];
        args.extend_from_slice(extra);
        self.sh(&args);
    }

    pub fn kill_node(&self, n: usize) {
        self.sh(&["kill-node", &n.to_string()]);
    }

    pub fn partition(&self, n: usize) {
        self.sh(&["partition", &n.to_string()]);
    }

    pub fn heal(&self, n: usize) {
        self.sh(&["heal", &n.to_string()]);
    }

    /// What `switchboard cluster status --json` says now: the live nodes, and the rooms
    /// of live nodes with their node.
    pub fn status(&self) -> StatusView {
        let out = self.sh(&["status", "--json"]);
        let st: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("cluster status --json: {e}: {out}"));
        let live = st["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["name"].as_str().map(String::from))
            .collect();
        let owners = st["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["room"].as_str()?.into(), r["node_name"].as_str()?.into())))
            .collect();
        StatusView { live, owners }
    }

    /// Node `n`'s signaling address.
    pub fn node_addr(n: usize) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 10 + n as u8], 8080))
    }

    /// A WebSocket to node `n`, opened from the client namespace.
    pub fn ws_connect(&self, n: usize) -> Result<WsClient, String> {
        let addr = Self::node_addr(n);
        self.in_client_ns(move || WsClient::connect(addr).map_err(|e| e.to_string()))
    }

    /// A metric of node `n` (its first sample), None when the page has no such line.
    pub fn metric(&self, n: usize, name: &str) -> Option<u64> {
        let addr = SocketAddr::from(([198, 51, 100, 10 + n as u8], 9641));
        let page = self.http_get(addr, "/metrics");
        page.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// `GET path` (HTTP/1.0) of `addr` from the client namespace: the whole response,
    /// head and body.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        let got = self.in_client_ns(move || -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(request.as_bytes())?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        });
        got.unwrap_or_else(|e| panic!("GET {path} of {addr}: {e}"))
    }

    /// Node `n`'s log so far (every start of it).
    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.state.join(format!("n{n}.log"))).unwrap_or_default()
    }

    /// Run `f` on a thread inside the client namespace: sockets it opens stay there.
    pub fn in_client_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.client_ns);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns(2) moves only this thread, into a namespace whose file
            // descriptor is open for the call.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the client-namespace thread panicked")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in 1..=3 {
                let log = self.log(n);
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("---- n{n} log (last {} lines) ----", tail.len());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        if std::thread::panicking() && std::env::var_os("CLUSTERLAB_KEEP").is_some() {
            eprintln!(
                "CLUSTERLAB_KEEP: lab {} left up; remove it with lab.sh down {0}",
                self.id
            );
            return;
        }
        let _ = Command::new(LAB_SH).args(["down", &self.id]).status();
    }
}

fn run(args: &[&str], lab: Option<&str>) -> String {
    let mut cmd = Command::new(LAB_SH);
    cmd.args(args)
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("CLUSTERLAB_READY_SECS", "60");
    if let Some(id) = lab {
        cmd.env("CLUSTERLAB_ID", id);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{LAB_SH}: {e}"));
    assert!(
        out.status.success(),
        "lab.sh {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
