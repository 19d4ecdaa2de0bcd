//! `churn`: C worker threads each loop Allocate -> Refresh(LIFETIME=0) on their own
//! socket. The realm/nonce learned from the first 401 is reused, so the challenge
//! round trip happens once per worker and source address (again only if the server
//! rejects the nonce, e.g. coturn on every new 5-tuple).

use crate::cli::{check_duration, check_range, resolve_target, ChurnArgs, Tuples};
use crate::histogram::Histogram;
use crate::net::round3;
use crate::net::{connected_udp_from, loopback_source, merge_json, now_ns, ServerCpu};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_client::{ClientAuth, ClientError, Request, Transact, UdpClient};

#[derive(Default)]
struct WorkerStats {
    cycles: u64,
    failures: BTreeMap<String, u64>,
    hist: Histogram,
    auth_retries: u64,
    retransmits: u64,
    sockets: u64,
}

impl WorkerStats {
    fn fail(&mut self, step: &str, e: &ClientError) {
        *self
            .failures
            .entry(format!("{step}:{}", e.label()))
            .or_default() += 1;
    }
}

/// Round-robin source addresses for `--loopback-sources`.
struct Sources {
    n: usize,
    next: AtomicUsize,
}

impl Sources {
    /// `None` (kernel's choice) when disabled, else 127.0.1.1 + (k mod n).
    fn pick(&self) -> Option<IpAddr> {
        loopback_source(self.next.fetch_add(1, Ordering::Relaxed), self.n)
    }
}

fn worker(
    server: SocketAddr,
    auth: ClientAuth,
    end: u64,
    tuples: Tuples,
    sources: &Sources,
) -> Result<WorkerStats> {
    let mut st = WorkerStats::default();
    // Realm/nonce per source address: servers may bind nonces to the client IP.
    let mut auths: HashMap<Option<IpAddr>, ClientAuth> = HashMap::new();
    let mut client: Option<(UdpClient, Option<IpAddr>)> = None;
    while now_ns() < end {
        let (mut c, src) = match client.take() {
            Some(c) => c,
            None => {
                st.sockets += 1;
                let src = sources.pick();
                let a = auths.remove(&src).unwrap_or_else(|| auth.clone());
                (
                    UdpClient::with_socket(connected_udp_from(server, src)?, None, a),
                    src,
                )
            }
        };
        let t0 = now_ns();
        let ok = match c.transact(&Request::Allocate { lifetime: None }) {
            Ok(_) => match c.transact(&Request::Refresh { lifetime: 0 }) {
                Ok(_) => true,
                Err(e) => {
                    st.fail("release", &e);
                    false
                }
            },
            Err(e) => {
                st.fail("allocate", &e);
                if matches!(e, ClientError::Io(_)) {
                    // Nothing listening (ICMP unreachable): don't spin.
                    std::thread::sleep(Duration::from_millis(100));
                }
                false
            }
        };
        if ok {
            st.cycles += 1;
            st.hist.record((now_ns() - t0) / 1000);
        }
        // A failed 5-tuple may be left in some state on the server: start afresh.
        if ok && tuples == Tuples::Reuse {
            client = Some((c, src));
        } else {
            st.auth_retries += c.stats.auth_retries;
            st.retransmits += c.stats.retransmits;
            auths.insert(src, c.auth);
        }
    }
    if let Some((c, _)) = client {
        st.auth_retries += c.stats.auth_retries;
        st.retransmits += c.stats.retransmits;
    }
    Ok(st)
}

pub fn run(a: ChurnArgs) -> Result<Value> {
    let server = resolve_target("server", &a.target.server, a.target.allow_any_target)?;
    let duration = check_duration("duration", a.duration)?;
    let conc = check_range("concurrency", a.concurrency, 1, 1024)?;
    let creds = a.auth.credentials()?;
    let nsrc = check_range("loopback-sources", a.loopback_sources, 0, 60_000)?;
    if nsrc > 0 && !(server.is_ipv4() && server.ip().is_loopback()) {
        bail!("--loopback-sources: only usable with an IPv4 loopback --server, not {server}");
    }
    let sources = Arc::new(Sources {
        n: nsrc,
        next: AtomicUsize::new(0),
    });
    let tuples = match a.tuples {
        Tuples::Reuse => "reuse",
        Tuples::Fresh => "fresh",
    };
    println!(
        "churn: {server}, {conc} workers, {tuples} 5-tuples, {} source addresses, {duration} s",
        nsrc.max(1)
    );
    let cpu = ServerCpu::start(a.target.server_pid);
    let start = now_ns();
    let end = start + (duration * 1e9) as u64;
    let handles = (0..conc)
        .map(|i| {
            let auth = ClientAuth::new(creds.clone());
            let sources = sources.clone();
            std::thread::Builder::new()
                .name(format!("churn-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || worker(server, auth, end, a.tuples, &sources))
                .context("spawning churn worker")
        })
        .collect::<Result<Vec<_>>>()?;
    let mut total = WorkerStats::default();
    let mut first_err = None;
    for h in handles {
        match h.join().map_err(|_| anyhow!("churn worker panicked"))? {
            Ok(w) => {
                total.cycles += w.cycles;
                total.hist.merge(&w.hist);
                total.auth_retries += w.auth_retries;
                total.retransmits += w.retransmits;
                total.sockets += w.sockets;
                for (k, v) in w.failures {
                    *total.failures.entry(k).or_default() += v;
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e.context("churn worker failed"));
    }
    let secs = (now_ns() - start) as f64 / 1e9;
    let cpu = cpu.finish("cycles_per_cpu_s", total.cycles);
    let failed: u64 = total.failures.values().sum();
    println!(
        "cycles {} ({:.1}/s), failures {failed} {:?}, sockets {}, auth round trips {}, retransmits {}",
        total.cycles,
        total.cycles as f64 / secs,
        total.failures,
        total.sockets,
        total.auth_retries,
        total.retransmits
    );
    println!("cycle time {}", total.hist.summary());
    if total.cycles == 0 {
        bail!(
            "no allocate+release cycle completed; failures: {:?}",
            total.failures
        );
    }
    let mut out = json!({
        "mode": "churn",
        "server": server.to_string(),
        "concurrency": conc,
        "tuples": tuples,
        "loopback_sources": nsrc,
        "duration_s": round3(secs),
        "cycles": total.cycles,
        "cycles_per_s": round3(total.cycles as f64 / secs),
        "failed": failed,
        "failures": total.failures,
        "sockets": total.sockets,
        "auth_round_trips": total.auth_retries,
        "retransmits": total.retransmits,
        "cycle_us": total.hist.to_json(),
    });
    merge_json(&mut out, cpu);
    Ok(out)
}
