//! `signal`: WebSocket signaling load against Switchboard's `/ws` or a PeerJS server.
//!
//! `--clients N` clients, client 2k and 2k+1 partners (one room each for Switchboard),
//! one tokio task and one WebSocket per client. Phases, in one run:
//!
//! 1. **connect** at `--connect-rate`, pausing at each `--rss-at` count (and at N) to let
//!    the server settle and read its `VmRSS` and open descriptors (`--server-pid`);
//!    progress on stderr;
//! 2. **hold** all connections for `--hold` s (keepalives only: Switchboard clients
//!    `ack` the highest `seq` at most every `--ack-ms`, PeerJS clients send `HEARTBEAT`
//!    every `--heartbeat-ms`, as the real clients do), then RSS again;
//! 3. **latency**: `--rate` relay messages/s in total, paced by one scheduler task and
//!    spread round-robin over all clients, each to its partner; the payload carries the
//!    send time and the receiver records the one-way latency (same clock, same
//!    process). `--warmup` s are not recorded;
//! 4. **saturation**: closed loop for `--saturate` s: the even client of each of
//!    `--sat-pairs` pairs keeps `--window` messages in flight, its partner echoes each
//!    one back, each echo triggers the next; delivered relay messages/s (both
//!    directions), round-trip times, and the server's CPU seconds over the window.
//!
//! Keepalives go on during the load phases (they are part of what a real client
//! costs the server). Ends with the usual `RESULT {json}` line.

use crate::cli::{check_duration, check_range, resolve_target, SignalArgs, SignalProto};
use crate::histogram::Histogram;
use crate::net::round3;
use crate::net::{loopback_source, merge_json, now_ns, process_cpu_s, ServerCpu};
use crate::signal_proto::{self as sp, Event};
use crate::ws_conn::{open_ws, small_buffers, Ws};
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const PH_IDLE: u8 = 0;
const PH_LAT: u8 = 1;
const PH_SAT: u8 = 2;
/// Keepalive sweeper period: client i's keepalive is due at tick i mod (period / tick),
/// so keepalives are spread evenly rather than sent in bursts.
const TICK_MS: u64 = 2;
/// Scheduler tick of the latency phase.
const PACE_NS: u64 = 200_000;
/// Longest a connection (TCP, WebSocket handshake, join) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the scheduler and the keepalive sweeper hand to one client's task.
#[derive(Default)]
struct Slot {
    /// Relay messages to send now (latency phase; the first window in saturation).
    sends: AtomicU32,
    /// When the scheduler last handed this client a message (ns; generator-side delay).
    handed_at: AtomicU64,
    /// An `ack` or `HEARTBEAT` is due.
    keepalive: AtomicBool,
    /// Highest `seq` received and highest acknowledged (Switchboard).
    seq: AtomicU64,
    acked: AtomicU64,
    notify: Notify,
}

struct Cfg {
    proto: SignalProto,
    server: SocketAddr,
    server_str: String,
    /// `--server-b`: where the odd client of each pair connects instead.
    server_b: Option<(SocketAddr, String)>,
    path: String,
    key: String,
    /// Random tag in room names and PeerJS ids, so runs never collide.
    tag: String,
    pad: String,
    sources: usize,
    ws: WebSocketConfig,
}

/// State shared by all client tasks and the phase driver.
struct Ctx {
    cfg: Cfg,
    slots: Box<[Slot]>,
    ready: AtomicU64,
    paired: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    phase: AtomicU8,
    /// Relay messages stamped before this are not counted (earlier phase, warm-up).
    count_from: AtomicU64,
    /// End of the recorded sending window (latency) / of the saturation window.
    send_until: AtomicU64,
    /// Arrivals after this are not counted.
    recv_until: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    /// Relay messages without our stamp or not from the partner.
    stray: AtomicU64,
    /// Relay sends skipped because the client had no partner (yet).
    unpaired_sends: AtomicU64,
    acks: AtomicU64,
    heartbeats: AtomicU64,
    hist: Mutex<Histogram>,
    /// Latency phase: scheduler hand-over to the client task's send, µs (the
    /// generator's own scheduling delay, not part of the one-way figure).
    send_delay: Mutex<Histogram>,
    /// Server errors by code, unexpected message types, close reasons.
    events: Mutex<BTreeMap<String, u64>>,
    first_failures: Mutex<Vec<String>>,
}

impl Ctx {
    fn note(&self, what: String) {
        *self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }

    fn fail(&self, e: anyhow::Error) {
        self.failed.fetch_add(1, Relaxed);
        let mut f = self
            .first_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if f.len() < 5 {
            f.push(format!("{e:#}"));
        }
    }

    fn live(&self) -> u64 {
        self.ready
            .load(Relaxed)
            .saturating_sub(self.closed.load(Relaxed))
    }

    fn take_hist(&self) -> Histogram {
        std::mem::take(&mut *self.hist.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, us: u64) {
        self.hist
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(us);
    }
}

pub fn run(a: SignalArgs) -> Result<Value> {
    let server = resolve_target("server", &a.server, a.allow_any_target)?;
    let server_b = match &a.server_b {
        Some(b) => {
            if a.proto != SignalProto::Switchboard {
                bail!("--server-b: only with --proto switchboard (rooms span nodes)");
            }
            let addr = resolve_target("server-b", b, a.allow_any_target)?;
            Some((addr, addr.to_string()))
        }
        None => None,
    };
    check_range("clients", a.clients, 2, 1_000_000)?;
    if a.clients % 2 != 0 {
        bail!(
            "--clients: must be even (clients come in pairs), got {}",
            a.clients
        );
    }
    check_range("connect-inflight", a.connect_inflight, 1, 100_000)?;
    check_range("threads", a.threads, 1, 64)?;
    check_range("pad", a.pad, 0, 1 << 20)?;
    check_range("window", a.window as usize, 1, 10_000)?;
    if a.sat_pairs > a.clients / 2 {
        bail!(
            "--sat-pairs: at most --clients / 2 = {}, got {}",
            a.clients / 2,
            a.sat_pairs
        );
    }
    if a.hold < 0.0 || !a.hold.is_finite() || a.warmup < 0.0 || !a.warmup.is_finite() {
        bail!("--hold and --warmup: must be seconds >= 0");
    }
    if a.rate > 0 {
        check_duration("duration", a.duration)?;
    }
    if a.saturate != 0.0 {
        check_duration("saturate", a.saturate)?;
    }
    let b_remote = server_b
        .as_ref()
        .is_some_and(|(b, _)| !b.ip().is_loopback());
    if a.loopback_sources > 0 && (!server.ip().is_loopback() || b_remote) {
        bail!(
            "--loopback-sources: only for a loopback server, not {}",
            server.ip()
        );
    }
    let path = a.path.clone().unwrap_or_else(|| {
        match a.proto {
            SignalProto::Switchboard => "/ws",
            SignalProto::Peerjs => "/peerjs",
        }
        .to_string()
    });
    if !path.starts_with('/') {
        bail!("--path: must start with /, got {path:?}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let cfg = Cfg {
        proto: a.proto,
        server,
        server_str: server.to_string(),
        server_b,
        path,
        key: a.key.clone(),
        tag,
        pad: "x".repeat(a.pad),
        sources: a.loopback_sources,
        ws: small_buffers(),
    };
    let out = rt.block_on(drive(a, cfg));
    rt.shutdown_timeout(Duration::from_millis(200));
    out
}

/// One memory reading: connections open, server RSS and descriptors.
fn mem_point(ctx: &Ctx, pid: Option<u32>, requested: usize) -> Value {
    let rss = pid.and_then(rss_kb);
    let fds = pid.and_then(open_fds);
    json!({
        "requested": requested,
        "connections": ctx.live(),
        "rss_kb": rss,
        "server_fds": fds,
    })
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Least-squares slope of RSS (bytes) over connections, and the intercept.
pub fn slope(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    (sxx > 0.0).then(|| {
        let b = sxy / sxx;
        (b, my - b * mx)
    })
}

async fn sleep_ns(ns: u64) {
    tokio::time::sleep(Duration::from_nanos(ns)).await;
}

async fn sleep_until_ns(t: u64) {
    let now = now_ns();
    if t > now {
        sleep_ns(t - now).await;
    }
}

fn gen_cpu() -> Option<f64> {
    process_cpu_s(std::process::id())
}

async fn drive(a: SignalArgs, cfg: Cfg) -> Result<Value> {
    let n = a.clients;
    let proto = cfg.proto;
    let server_str = cfg.server_str.clone();
    let slots: Box<[Slot]> = (0..n).map(|_| Slot::default()).collect();
    let ctx = Arc::new(Ctx {
        cfg,
        slots,
        ready: AtomicU64::new(0),
        paired: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        phase: AtomicU8::new(PH_IDLE),
        count_from: AtomicU64::new(u64::MAX),
        send_until: AtomicU64::new(0),
        recv_until: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        stray: AtomicU64::new(0),
        unpaired_sends: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        heartbeats: AtomicU64::new(0),
        hist: Mutex::new(Histogram::new()),
        send_delay: Mutex::new(Histogram::new()),
        events: Mutex::new(BTreeMap::new()),
        first_failures: Mutex::new(Vec::new()),
    });
    let pid = a.server_pid;
    println!(
        "signal ({proto:?}): ws://{server_str}{}, {n} clients ({} pairs), tag {}",
        ctx.cfg.path,
        n / 2,
        ctx.cfg.tag
    );

    // Keepalives: client i is due once per period, at tick (i mod period).
    let ka_ms = match proto {
        SignalProto::Switchboard => a.ack_ms,
        SignalProto::Peerjs => a.heartbeat_ms,
    };
    if ka_ms > 0 {
        let c = ctx.clone();
        tokio::spawn(async move { keepalive_sweeper(c, ka_ms.div_ceil(TICK_MS).max(1)).await });
    }

    // ---- 1. connect, with RSS readings on the way
    let mut points = vec![mem_point(&ctx, pid, 0)];
    let mut marks: Vec<usize> = a
        .rss_at
        .iter()
        .map(|&k| k.min(n) & !1)
        .filter(|&k| k > 0)
        .collect();
    marks.push(n);
    marks.sort_unstable();
    marks.dedup();
    let t0 = now_ns();
    let mut paused = 0u64;
    let mut spawned = 0usize;
    let mut last_progress = t0;
    let mut stopped = None;
    'marks: for &mark in &marks {
        while spawned < mark {
            let now = now_ns();
            if now - last_progress >= 1_000_000_000 {
                last_progress = now;
                progress(&ctx, spawned, n, now - t0 - paused);
            }
            if ctx.failed.load(Relaxed) >= a.max_failures {
                stopped = Some(format!(
                    "stopped connecting after {} failures",
                    ctx.failed.load(Relaxed)
                ));
                break 'marks;
            }
            let done = (ctx.ready.load(Relaxed) + ctx.failed.load(Relaxed)) as usize;
            let room = a.connect_inflight.saturating_sub(spawned - done);
            let due = if a.connect_rate == 0 {
                mark - spawned
            } else {
                let el = now - t0 - paused;
                ((el as u128 * a.connect_rate as u128 / 1_000_000_000) as usize + 1)
                    .saturating_sub(spawned)
            };
            let k = due.min(room).min(mark - spawned);
            for _ in 0..k {
                let c = ctx.clone();
                let i = spawned;
                tokio::spawn(async move { client(c, i).await });
                spawned += 1;
            }
            if k == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        // Pause: let every opening finish, partners find each other, the server settle.
        let p0 = now_ns();
        let deadline = p0 + OPEN_TIMEOUT.as_nanos() as u64 + 1_000_000_000;
        while ((ctx.ready.load(Relaxed) + ctx.failed.load(Relaxed)) as usize) < spawned
            && now_ns() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let deadline = now_ns() + 3_000_000_000;
        while ctx.paired.load(Relaxed) < ctx.ready.load(Relaxed) && now_ns() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        progress(&ctx, spawned, n, p0 - t0 - paused);
        tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;
        let p = mem_point(&ctx, pid, mark);
        eprintln!("  memory at {} connections: {}", ctx.live(), p);
        points.push(p);
        paused += now_ns() - p0;
    }
    let connect_s = (now_ns() - t0 - paused) as f64 / 1e9;
    let ready = ctx.ready.load(Relaxed);
    if ready < 2 {
        bail!(
            "no connections: {} failed; first errors: {:?}",
            ctx.failed.load(Relaxed),
            ctx.first_failures.lock().unwrap_or_else(|e| e.into_inner())
        );
    }
    println!(
        "connect: {ready} of {n} ready ({} paired, {} failed) in {connect_s:.1} s of connecting ({:.0}/s)",
        ctx.paired.load(Relaxed),
        ctx.failed.load(Relaxed),
        ready as f64 / connect_s.max(1e-9)
    );
    let mut per_conn = None;
    {
        let xy: Vec<(f64, f64)> = points
            .iter()
            .skip(1)
            .filter_map(|p| {
                Some((
                    p["connections"].as_u64()? as f64,
                    p["rss_kb"].as_u64()? as f64 * 1024.0,
                ))
            })
            .collect();
        if let Some((b, _)) = slope(&xy) {
            per_conn = Some(b);
            println!(
                "memory: {:.0} bytes of server RSS per connection (slope over {} readings), {:.0} connections per GiB",
                b,
                xy.len(),
                (1u64 << 30) as f64 / b
            );
        }
    }

    // ---- 2. hold
    let hold0 = gen_cpu();
    let scpu = ServerCpu::start(pid);
    tokio::time::sleep(Duration::from_secs_f64(a.hold)).await;
    let hold_cpu = scpu.finish("unused", 0);
    let after_hold = mem_point(&ctx, pid, n);
    println!(
        "hold {:.1} s: {} connections open, server RSS {} kB, server CPU {} %",
        a.hold,
        ctx.live(),
        after_hold["rss_kb"],
        hold_cpu["server_cpu_pct"]
    );
    let gen_hold = hold0.zip(gen_cpu()).map(|(x, y)| y - x);

    // ---- 3. latency at a fixed rate
    let latency = if a.rate > 0 {
        Some(latency_phase(&ctx, &a, n).await)
    } else {
        None
    };

    // ---- 4. saturation
    let saturation = if a.saturate > 0.0 {
        Some(saturation_phase(&ctx, &a, n).await)
    } else {
        None
    };

    let after_load = mem_point(&ctx, pid, n);
    let events = ctx.events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !events.is_empty() {
        println!("server events: {events:?}");
    }
    let mut out = json!({
        "mode": "signal",
        "proto": match proto { SignalProto::Switchboard => "switchboard", SignalProto::Peerjs => "peerjs" },
        "server": server_str,
        "server_b": ctx.cfg.server_b.as_ref().map(|(_, s)| s.clone()),
        "path": ctx.cfg.path,
        "clients": n,
        "generator_threads": a.threads,
        "connect": {
            "requested": n,
            "spawned": spawned,
            "ready": ready,
            "paired": ctx.paired.load(Relaxed),
            "failed": ctx.failed.load(Relaxed),
            "first_failures": *ctx.first_failures.lock().unwrap_or_else(|e| e.into_inner()),
            "stopped": stopped,
            "connect_s": round3(connect_s),
            "per_s": round3(ready as f64 / connect_s.max(1e-9)),
            "target_rate": a.connect_rate,
        },
        "memory": {
            "points": points,
            "after_hold": after_hold,
            "after_load": after_load,
            "bytes_per_connection": per_conn.map(round3),
            "connections_per_gib": per_conn.filter(|&b| b > 0.0).map(|b| ((1u64 << 30) as f64 / b).round()),
        },
        "hold": {
            "seconds": a.hold,
            "server_cpu_pct": hold_cpu["server_cpu_pct"],
            "generator_cpu_s": gen_hold.map(round3),
        },
        "latency": latency,
        "saturation": saturation,
        "acks_sent": ctx.acks.load(Relaxed),
        "heartbeats_sent": ctx.heartbeats.load(Relaxed),
        "stray": ctx.stray.load(Relaxed),
        "unpaired_sends": ctx.unpaired_sends.load(Relaxed),
        "closed": ctx.closed.load(Relaxed),
        "connections_at_end": ctx.live(),
        "events": events,
    });
    if let Some(p) = pid {
        merge_json(&mut out, json!({ "server_pid": p }));
    }
    Ok(out)
}

fn progress(ctx: &Ctx, spawned: usize, n: usize, el_ns: u64) {
    eprintln!(
        "  connect: {spawned}/{n} started, {} ready, {} paired, {} failed, {:.0}/s",
        ctx.ready.load(Relaxed),
        ctx.paired.load(Relaxed),
        ctx.failed.load(Relaxed),
        ctx.ready.load(Relaxed) as f64 * 1e9 / el_ns.max(1) as f64
    );
}

async fn keepalive_sweeper(ctx: Arc<Ctx>, period: u64) {
    let proto = ctx.cfg.proto;
    let mut iv = tokio::time::interval(Duration::from_millis(TICK_MS));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    loop {
        iv.tick().await;
        let phase = (tick % period) as usize;
        for s in ctx.slots.iter().skip(phase).step_by(period as usize) {
            let due = match proto {
                SignalProto::Switchboard => s.seq.load(Relaxed) > s.acked.load(Relaxed),
                SignalProto::Peerjs => true,
            };
            if due {
                s.keepalive.store(true, Relaxed);
                s.notify.notify_one();
            }
        }
        tick += 1;
    }
}

async fn latency_phase(ctx: &Arc<Ctx>, a: &SignalArgs, n: usize) -> Value {
    let start = now_ns();
    let from = start + (a.warmup * 1e9) as u64;
    let until = from + (a.duration * 1e9) as u64;
    reset_counters(ctx);
    ctx.count_from.store(from, Relaxed);
    ctx.send_until.store(until, Relaxed);
    ctx.recv_until
        .store(until + a.drain_ms * 1_000_000, Relaxed);
    ctx.phase.store(PH_LAT, Relaxed);
    eprintln!(
        "  latency: {} msg/s for {:.1} s (+{:.1} s warm-up)",
        a.rate, a.duration, a.warmup
    );
    // The scheduler runs on its own OS thread with 1 µs timer slack, so that it is not
    // delayed behind the runtime's timer wheel and hands out small, even batches.
    let pacer = {
        let (ctx, rate) = (ctx.clone(), a.rate);
        std::thread::Builder::new()
            .name("signal-pacer".into())
            .spawn(move || pace(&ctx, rate, n, start, from, until))
    };
    sleep_until_ns(from).await;
    let (cpu, g0) = (ServerCpu::start(a.server_pid), gen_cpu());
    let also: Vec<ServerCpu> = a
        .also_pid
        .iter()
        .map(|&p| ServerCpu::start(Some(p)))
        .collect();
    sleep_until_ns(until).await;
    let cpu_out = cpu.finish("received_per_cpu_s", 0);
    let also_pct: Vec<Value> = also
        .iter()
        .map(|c| c.finish("unused", 0)["server_cpu_pct"].clone())
        .collect();
    let gen_s = g0.zip(gen_cpu()).map(|(x, y)| y - x);
    let (sched_window, late, max_burst) = match pacer.map(|p| p.join()) {
        Ok(Ok(r)) => r,
        _ => (0, Histogram::new(), 0),
    };
    sleep_until_ns(until + a.drain_ms * 1_000_000).await;
    ctx.phase.store(PH_IDLE, Relaxed);
    ctx.count_from.store(u64::MAX, Relaxed);
    let hist = ctx.take_hist();
    let delay = std::mem::take(&mut *ctx.send_delay.lock().unwrap_or_else(|e| e.into_inner()));
    let (sent, recv) = (ctx.sent.load(Relaxed), ctx.received.load(Relaxed));
    let secs = (until - from) as f64 / 1e9;
    let lost = sent.saturating_sub(recv);
    println!(
        "latency @ {}/s: sent {sent} ({:.0}/s), received {recv}, lost {lost}; one-way {}",
        a.rate,
        sent as f64 / secs,
        hist.summary()
    );
    let mut v = json!({
        "target_rate": a.rate,
        "duration_s": round3(secs),
        "warmup_s": a.warmup,
        "scheduled": sched_window,
        "sent": sent,
        "sent_per_s": round3(sent as f64 / secs),
        "received": recv,
        "received_per_s": round3(recv as f64 / secs),
        "lost": lost,
        "unpaired_sends": ctx.unpaired_sends.load(Relaxed),
        "one_way_us": hist.to_json(),
        "generator_cpu_pct": gen_s.map(|g| round3(100.0 * g / secs)),
        "generator_send_delay_us": delay.to_json(),
        "scheduler_late_us": late.to_json(),
        "scheduler_max_burst": max_burst,
        "also_cpu_pct": also_pct,
    });
    println!(
        "  generator: hand-over to send {}; scheduler wakes late by p99 {} µs, max {} µs, largest burst {max_burst}",
        delay.summary(),
        late.percentile(99.0),
        late.max()
    );
    // CPU over the recorded window (the `per_cpu_s` key is meaningless here).
    if let Value::Object(mut m) = cpu_out {
        m.remove("received_per_cpu_s");
        merge_json(&mut v, Value::Object(m));
    }
    v
}

/// Hand out `rate` messages/s round-robin over the clients from `start` to `until`,
/// every `PACE_NS`; returns how many were handed out in [from, until), how late the
/// thread woke (µs past each tick) and the largest batch handed out at once.
fn pace(
    ctx: &Ctx,
    rate: u64,
    n: usize,
    start: u64,
    from: u64,
    until: u64,
) -> (u64, Histogram, u64) {
    crate::net::tighten_timer_slack();
    let (mut scheduled, mut next, mut at_from) = (0u64, 0usize, None);
    let mut late = Histogram::new();
    let (mut due, mut max_burst) = (start, 0u64);
    loop {
        let now = now_ns();
        if now >= until {
            break;
        }
        if now >= from {
            at_from.get_or_insert(scheduled);
            late.record(now.saturating_sub(due) / 1000);
        }
        let target = ((now - start) as u128 * rate as u128 / 1_000_000_000) as u64 + 1;
        max_burst = max_burst.max(target.saturating_sub(scheduled));
        while scheduled < target {
            let s = &ctx.slots[next];
            s.handed_at.store(now, Relaxed);
            s.sends.fetch_add(1, Relaxed);
            s.notify.notify_one();
            next = (next + 1) % n;
            scheduled += 1;
        }
        due = now + PACE_NS;
        crate::net::sleep_until(due.min(until));
    }
    (scheduled - at_from.unwrap_or(scheduled), late, max_burst)
}

async fn saturation_phase(ctx: &Arc<Ctx>, a: &SignalArgs, n: usize) -> Value {
    let pairs = if a.sat_pairs == 0 { n / 2 } else { a.sat_pairs };
    reset_counters(ctx);
    let start = now_ns();
    let until = start + (a.saturate * 1e9) as u64;
    ctx.count_from.store(start, Relaxed);
    ctx.send_until.store(until, Relaxed);
    ctx.recv_until.store(until, Relaxed);
    ctx.phase.store(PH_SAT, Relaxed);
    eprintln!(
        "  saturation: {pairs} pairs x {} in flight for {:.1} s",
        a.window, a.saturate
    );
    let cpu = ServerCpu::start(a.server_pid);
    let g0 = gen_cpu();
    for p in 0..pairs {
        let s = &ctx.slots[2 * p];
        s.sends.fetch_add(a.window, Relaxed);
        s.notify.notify_one();
    }
    sleep_until_ns(until).await;
    let recv = ctx.received.load(Relaxed);
    let sent = ctx.sent.load(Relaxed);
    let cpu_v = cpu.finish("delivered_per_cpu_s", recv);
    let gen_s = g0.zip(gen_cpu()).map(|(x, y)| y - x);
    sleep_ns(a.drain_ms * 1_000_000).await;
    ctx.phase.store(PH_IDLE, Relaxed);
    ctx.count_from.store(u64::MAX, Relaxed);
    let hist = ctx.take_hist();
    let secs = (until - start) as f64 / 1e9;
    println!(
        "saturation: {recv} delivered ({:.0}/s), server CPU {} %, {} per server CPU-s; RTT {}",
        recv as f64 / secs,
        cpu_v["server_cpu_pct"],
        cpu_v["delivered_per_cpu_s"],
        hist.summary()
    );
    let mut v = json!({
        "pairs": pairs,
        "window": a.window,
        "duration_s": round3(secs),
        "sent": sent,
        "delivered": recv,
        "delivered_per_s": round3(recv as f64 / secs),
        "rtt_us": hist.to_json(),
        "generator_cpu_pct": gen_s.map(|g| round3(100.0 * g / secs)),
    });
    merge_json(&mut v, cpu_v);
    v
}

fn reset_counters(ctx: &Ctx) {
    ctx.sent.store(0, Relaxed);
    ctx.received.store(0, Relaxed);
    ctx.unpaired_sends.store(0, Relaxed);
    ctx.take_hist();
}

/// Open client `i`: TCP, WebSocket handshake, then `join` (waiting for `joined`) or
/// the PeerJS `OPEN`. Returns the socket and the partner's id if already known.
async fn open(ctx: &Ctx, i: usize) -> Result<(Ws, Option<String>)> {
    let cfg = &ctx.cfg;
    // With --server-b the odd client of each pair connects there.
    let (server, server_str) = match &cfg.server_b {
        Some((addr, s)) if i % 2 == 1 => (*addr, s.as_str()),
        _ => (cfg.server, cfg.server_str.as_str()),
    };
    let id = peer_name(cfg, i);
    let url = sp::url(
        cfg.proto,
        server_str,
        &cfg.path,
        &cfg.key,
        &id,
        rand::random(),
    );
    let mut ws = open_ws(server, loopback_source(i, cfg.sources), &url, cfg.ws).await?;
    let partner = match cfg.proto {
        SignalProto::Switchboard => {
            let room = format!("r{}-{}", cfg.tag, i / 2);
            ws.send(Message::text(sp::join(&room, &format!("c{i}"))))
                .await
                .context("send join")?;
            match next_event(ctx, &mut ws).await? {
                Event::Joined { partner, .. } => partner,
                Event::Error { code, reason } => bail!("join refused: {code} ({reason})"),
                e => bail!("unexpected before joined: {e:?}"),
            }
        }
        SignalProto::Peerjs => match next_event(ctx, &mut ws).await? {
            Event::Open => Some(peer_name(cfg, i ^ 1)),
            Event::Error { code, .. } => bail!("refused: {code}"),
            e => bail!("unexpected before OPEN: {e:?}"),
        },
    };
    Ok((ws, partner))
}

fn peer_name(cfg: &Cfg, i: usize) -> String {
    format!("c{}-{i}", cfg.tag)
}

async fn next_event(ctx: &Ctx, ws: &mut Ws) -> Result<Event> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return sp::parse(ctx.cfg.proto, t.as_str()).map_err(|e| anyhow!(e))
            }
            Some(Ok(Message::Close(f))) => bail!("closed by server: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("read"),
            None => bail!("connection closed"),
        }
    }
}

async fn client(ctx: Arc<Ctx>, i: usize) {
    let (mut ws, mut partner) = match tokio::time::timeout(OPEN_TIMEOUT, open(&ctx, i)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ctx.fail(e),
        Err(_) => return ctx.fail(anyhow!("timed out opening the connection")),
    };
    ctx.ready.fetch_add(1, Relaxed);
    if partner.is_some() {
        ctx.paired.fetch_add(1, Relaxed);
    }
    let reason = match run_client(&ctx, i, &mut ws, &mut partner).await {
        Ok(r) => r,
        Err(e) => format!("error: {e}"),
    };
    ctx.closed.fetch_add(1, Relaxed);
    ctx.note(format!("closed: {reason}"));
}

/// The life of an open client; returns why it ended.
async fn run_client(
    ctx: &Ctx,
    i: usize,
    ws: &mut Ws,
    partner: &mut Option<String>,
) -> Result<String> {
    let slot = &ctx.slots[i];
    let proto = ctx.cfg.proto;
    let initiator = i % 2 == 0;
    let mut counter = 0u64;
    loop {
        tokio::select! {
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        return Ok(f.map(|f| format!("close {} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "close".into()));
                    }
                    Some(Ok(_)) => continue, // pings are answered by tungstenite
                    Some(Err(e)) => return Ok(format!("read error: {e}")),
                    None => return Ok("eof".into()),
                };
                let ev = match sp::parse(proto, text.as_str()) {
                    Ok(ev) => ev,
                    Err(e) => {
                        ctx.note(e);
                        continue;
                    }
                };
                match ev {
                    Event::Relay { seq, from, stamp } => {
                        see_seq(slot, seq);
                        let ok_from = partner.as_deref() == Some(from.as_str());
                        let Some(t) = stamp.t.filter(|_| ok_from) else {
                            ctx.stray.fetch_add(1, Relaxed);
                            continue;
                        };
                        if let Some(reply) = on_relay(ctx, initiator, t, &mut counter, partner) {
                            ws.send(Message::text(reply)).await?;
                        }
                    }
                    Event::PeerJoined { seq, id } => {
                        see_seq(slot, seq);
                        if partner.is_none() {
                            *partner = Some(id);
                            ctx.paired.fetch_add(1, Relaxed);
                        } else {
                            ctx.note("unexpected: second peer-joined".into());
                        }
                    }
                    Event::PeerLeft { seq, id } => {
                        see_seq(slot, seq);
                        if partner.as_deref() == Some(id.as_str()) {
                            ctx.note("partner left".into());
                            *partner = None;
                        }
                    }
                    Event::Error { code, .. } => ctx.note(format!("error: {code}")),
                    Event::Other { ty, seq } => {
                        see_seq(slot, seq);
                        ctx.note(format!("unexpected type: {ty}"));
                    }
                    e @ (Event::Joined { .. } | Event::Resumed { .. } | Event::Open) => {
                        ctx.note(format!("unexpected: {e:?}"));
                    }
                }
            }
            _ = slot.notify.notified() => {
                let mut wrote = false;
                let k = slot.sends.swap(0, Relaxed);
                for _ in 0..k {
                    let Some(p) = partner.as_deref() else {
                        ctx.unpaired_sends.fetch_add(1, Relaxed);
                        continue;
                    };
                    let t = now_ns();
                    counter += 1;
                    if count_send(ctx, t) {
                        let h = slot.handed_at.load(Relaxed);
                        ctx.send_delay
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .record(t.saturating_sub(h) / 1000);
                    }
                    ws.feed(Message::text(sp::relay(proto, p, t, counter, &ctx.cfg.pad))).await?;
                    wrote = true;
                }
                if slot.keepalive.swap(false, Relaxed) {
                    match proto {
                        SignalProto::Switchboard => {
                            let s = slot.seq.load(Relaxed);
                            if s > slot.acked.load(Relaxed) {
                                slot.acked.store(s, Relaxed);
                                ctx.acks.fetch_add(1, Relaxed);
                                ws.feed(Message::text(sp::ack(s))).await?;
                                wrote = true;
                            }
                        }
                        SignalProto::Peerjs => {
                            ctx.heartbeats.fetch_add(1, Relaxed);
                            ws.feed(Message::text(sp::HEARTBEAT)).await?;
                            wrote = true;
                        }
                    }
                }
                if wrote {
                    ws.flush().await?;
                }
            }
        }
    }
}

fn see_seq(slot: &Slot, seq: Option<u64>) {
    if let Some(s) = seq {
        slot.seq.fetch_max(s, Relaxed);
    }
}

/// Count a relay message sent at `t` if it falls in the recorded window; true when it
/// was a counted latency-phase message.
fn count_send(ctx: &Ctx, t: u64) -> bool {
    let phase = ctx.phase.load(Relaxed);
    let counted = match phase {
        PH_LAT => t >= ctx.count_from.load(Relaxed) && t < ctx.send_until.load(Relaxed),
        PH_SAT => true,
        _ => false,
    };
    if counted {
        ctx.sent.fetch_add(1, Relaxed);
    }
    counted && phase == PH_LAT
}

/// Account for a relay message stamped `t` from the partner; in saturation, the
/// message to send back (the partner's echo, or the initiator's next message).
fn on_relay(
    ctx: &Ctx,
    initiator: bool,
    t: u64,
    counter: &mut u64,
    partner: &Option<String>,
) -> Option<String> {
    let now = now_ns();
    if t < ctx.count_from.load(Relaxed) {
        return None; // an earlier phase, or warm-up
    }
    match ctx.phase.load(Relaxed) {
        PH_LAT => {
            // Counted like the sends: stamped inside the recorded window.
            if t < ctx.send_until.load(Relaxed) && now <= ctx.recv_until.load(Relaxed) {
                ctx.received.fetch_add(1, Relaxed);
                ctx.record(now.saturating_sub(t) / 1000);
            }
            None
        }
        PH_SAT => {
            let until = ctx.send_until.load(Relaxed);
            if now <= until {
                ctx.received.fetch_add(1, Relaxed);
                if initiator {
                    ctx.record(now.saturating_sub(t) / 1000);
                }
            }
            if now >= until {
                return None;
            }
            let p = partner.as_deref()?;
            *counter += 1;
            ctx.sent.fetch_add(1, Relaxed);
            // The responder echoes the stamp (RTT at the initiator); the initiator
            // stamps its next message now.
            let stamp = if initiator { now } else { t };
            Some(sp::relay(ctx.cfg.proto, p, stamp, *counter, &ctx.cfg.pad))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::fake_nodes;
    use clap::Parser;

    fn run_against(addr: SocketAddr, proto: &str, server_b: Option<SocketAddr>) -> Value {
        let server = addr.to_string();
        let b = server_b.map(|b| b.to_string());
        let pid = std::process::id().to_string();
        let mut args = vec![
            "switchboard-load",
            "signal",
            "--proto",
            proto,
            "--server",
            &server,
            "--server-pid",
            &pid,
            "--clients",
            "40",
            "--rss-at",
            "20",
            "--settle-ms",
            "10",
            "--hold",
            "0.2",
            "--rate",
            "400",
            "--warmup",
            "0.2",
            "--duration",
            "0.5",
            "--saturate",
            "0.5",
            "--sat-pairs",
            "5",
            "--window",
            "2",
            "--ack-ms",
            "100",
            "--heartbeat-ms",
            "100",
            "--drain-ms",
            "200",
        ];
        if let Some(b) = &b {
            args.extend(["--server-b", b]);
        }
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Signal(a) = cli.cmd else {
            unreachable!()
        };
        run(a).unwrap()
    }

    #[test]
    fn end_to_end_both_protocols() {
        let addr = fake_nodes(1).addrs[0];
        for proto in ["peerjs", "switchboard"] {
            let r = run_against(addr, proto, None);
            assert_eq!(r["connect"]["ready"], 40, "{proto}: {r}");
            assert_eq!(r["connect"]["paired"], 40, "{proto}: {r}");
            assert_eq!(r["connections_at_end"], 40, "{proto}: {r}");
            assert_eq!(
                r["memory"]["points"].as_array().unwrap().len(),
                3,
                "{proto}: {r}"
            );
            let lat = &r["latency"];
            let sent = lat["sent"].as_u64().unwrap();
            assert!((150..=250).contains(&sent), "{proto}: {lat}");
            assert_eq!(lat["received"], sent, "{proto}: {lat}");
            assert_eq!(lat["lost"], 0, "{proto}: {lat}");
            assert!(
                lat["one_way_us"]["p50"].as_u64().unwrap() > 0,
                "{proto}: {lat}"
            );
            let sat = &r["saturation"];
            assert!(sat["delivered"].as_u64().unwrap() > 100, "{proto}: {sat}");
            assert!(sat["rtt_us"]["p50"].as_u64().unwrap() > 0, "{proto}: {sat}");
            assert!(sat["server_cpu_s"].is_number(), "{proto}: {sat}");
            assert_eq!(r["stray"], 0, "{proto}: {r}");
            assert_eq!(r["events"], json!({}), "{proto}: {r}");
            if proto == "peerjs" {
                assert!(r["heartbeats_sent"].as_u64().unwrap() > 40, "{r}");
            } else {
                assert!(r["acks_sent"].as_u64().unwrap() > 40, "{r}");
            }
        }
    }

    #[test]
    fn server_b_takes_the_second_client_of_every_pair() {
        let nodes = fake_nodes(2);
        let r = run_against(nodes.addrs[0], "switchboard", Some(nodes.addrs[1]));
        assert_eq!(nodes.accepted(0), 20, "{r}");
        assert_eq!(nodes.accepted(1), 20, "{r}");
        assert_eq!(r["server_b"], nodes.addrs[1].to_string(), "{r}");
        assert_eq!(r["connect"]["paired"], 40, "{r}");
        let lat = &r["latency"];
        assert!(lat["sent"].as_u64().unwrap() >= 150, "{lat}");
        assert_eq!(lat["lost"], 0, "{lat}");
        assert_eq!(r["stray"], 0, "{r}");
        // PeerJS has no rooms spanning servers: refused up front.
        let cli = crate::cli::Cli::try_parse_from([
            "switchboard-load",
            "signal",
            "--proto",
            "peerjs",
            "--server-b",
            "127.0.0.1:9",
        ])
        .unwrap();
        let crate::cli::Command::Signal(a) = cli.cmd else {
            unreachable!()
        };
        let e = run(a).unwrap_err();
        assert!(e.to_string().contains("--server-b"), "{e}");
    }

    #[test]
    fn slope_fits_a_line() {
        let pts: Vec<(f64, f64)> = [1000.0, 5000.0, 10000.0]
            .iter()
            .map(|&x| (x, 5e6 + 3000.0 * x))
            .collect();
        let (b, a) = slope(&pts).unwrap();
        assert!((b - 3000.0).abs() < 1e-6, "{b}");
        assert!((a - 5e6).abs() < 1e-3, "{a}");
        assert!(slope(&pts[..1]).is_none());
        assert!(slope(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn reads_own_rss_and_fds() {
        let me = std::process::id();
        assert!(rss_kb(me).unwrap() > 0);
        assert!(open_fds(me).unwrap() > 0);
        assert!(rss_kb(u32::MAX).is_none());
    }
}
