//! `switchboard-sfu-load`: loads an SFU with str0m peers (real ICE, DTLS, SRTP) on
//! loopback and measures what it forwards. Publishers send synthetic VP8 + Opus
//! (crate::synth), N subscribers receive them; the run reports what subscribers got in a
//! steady window, the server's CPU-seconds and RSS over it (from /proc, `--server-pid`),
//! added latency and join times, as one JSON object on stdout. bench/sfu.sh runs it
//! against Janus VideoRoom and Switchboard with the same load (docs/benchmarks.md).
//! The `*-sip` targets load a SIP gateway instead: every call is one peer with one audio
//! track calling a SIP far end (crate::calls; bench/sip-janus.sh).
//! `SFU_LOAD_DEBUG=1` prints the publisher's offer and answer (stderr).

mod calls;
mod janus;
mod janus_sip;
mod media;
mod scrape;
mod stats;
mod switchboard;
mod switchboard_sip;
mod synth;
mod sys;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use media::{AudioCodec, Cmd, Media};
use serde_json::json;
use stats::round3;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synth::MediaShape;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Target {
    /// Janus VideoRoom over the Janus HTTP API (`--url http://127.0.0.1:8088/janus`).
    Janus,
    /// Switchboard's SFU over the signaling WebSocket (`--url ws://127.0.0.1:8080/ws`).
    Switchboard,
    /// Calls through Janus's SIP plugin (`--url http://127.0.0.1:8088/janus`).
    JanusSip,
    /// Calls through Switchboard's SIP gateway (`--url ws://…/ws`, `--api-url http://…`).
    SwitchboardSip,
}

#[derive(Parser, Debug)]
#[command(version, about = "SFU load client: str0m publishers and subscribers")]
struct Cli {
    #[arg(long, value_enum)]
    target: Target,
    #[arg(long)]
    url: String,
    /// Room: a number for Janus (configured in bench/janus), any name for Switchboard.
    /// With `--rooms K` the rooms are room, room+1, … (Janus) or room-0, room-1, … (Switchboard).
    #[arg(long, default_value = "1234")]
    room: String,
    /// Rooms, each with `--publishers` publishers; subscribers are spread over them in turn
    /// (more subscribers than one room or one publisher may take).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers in all (each subscribes to every publisher of its room).
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    #[arg(long, default_value_t = 1200)]
    video_kbps: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds between keyframes.
    #[arg(long, default_value_t = 3)]
    keyframe_interval: u32,
    /// Opus frame size without the 12-byte stamp.
    #[arg(long, default_value_t = 68)]
    opus_bytes: usize,
    /// Seconds of steady load before the window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Subscribers joining at the same time.
    #[arg(long, default_value_t = 4)]
    join_concurrency: usize,
    /// Give up waiting for subscribers' first media after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    join_timeout: f64,
    /// The server process, for CPU-seconds and RSS; repeated: the processes of a cluster
    /// (their sum).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Switchboard: the subscribers' signaling URL (another node of a cluster); default
    /// `--url`.
    #[arg(long)]
    sub_url: Option<String>,
    /// Switchboard: the SFU peer subscribers use, by name (an edge of a cluster,
    /// `SFU@<node>`); they wait for it. Default: the room's first SFU peer.
    #[arg(long)]
    sub_sfu: Option<String>,
    /// Prometheus endpoint of the server (Switchboard's `/metrics`): the window's forwarded
    /// and dropped packet counters are read from it as a cross-check.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Address the participants' sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// SIP targets: concurrent calls (placed `--join-concurrency` at a time).
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// SIP targets: the far end every call dials.
    #[arg(long, default_value = "sip:echo@127.0.0.1:5980")]
    far_end: String,
    /// SIP targets: the peers' audio codec.
    #[arg(long, value_enum, default_value = "pcmu")]
    codec: AudioCodec,
    /// Switchboard's HTTP API (`POST /api/sip/calls`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api_url: String,
}

pub(crate) fn ask<T>(media: &Sender<Cmd>, make: impl FnOnce(Sender<T>) -> Cmd) -> Result<T> {
    let (tx, rx) = channel();
    media
        .send(make(tx))
        .map_err(|_| anyhow!("media thread gone"))?;
    rx.recv().map_err(|_| anyhow!("media thread gone"))
}

/// Waits until `done(progress)` or the deadline; the last progress.
pub(crate) fn wait_for(
    media: &Sender<Cmd>,
    deadline: Instant,
    done: impl Fn((usize, usize)) -> bool,
) -> Result<(usize, usize)> {
    loop {
        let p = ask(media, |reply| Cmd::Progress { reply })?;
        if done(p) || Instant::now() >= deadline {
            return Ok(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let shape = MediaShape {
        video_kbps: cli.video_kbps,
        fps: cli.fps.clamp(1, 120),
        keyframe_interval_s: cli.keyframe_interval.max(1),
        opus_bytes: cli.opus_bytes.clamp(2, 1000),
    };
    let (tx, rx) = channel();
    let bind_ip = cli.bind_ip;
    // Built on its own thread: its recvmmsg buffers hold raw pointers (not Send).
    let media_thread = std::thread::Builder::new()
        .name("media".into())
        .spawn(move || match Media::new(shape, bind_ip) {
            Ok(media) => media.run(rx),
            Err(e) => eprintln!("media thread: {e}"),
        })?;
    let call_backend: Option<Arc<dyn calls::CallBackend>> = match cli.target {
        Target::JanusSip => Some(Arc::new(janus_sip::JanusSip::new(
            &cli.url,
            &cli.far_end,
            &cli.bind_ip.to_string(),
            cli.codec,
        )?)),
        Target::SwitchboardSip => Some(Arc::new(switchboard_sip::SwitchboardSip::new(
            &cli.url,
            &cli.api_url,
            &cli.room,
            &cli.far_end,
            cli.codec,
        )?)),
        Target::Janus | Target::Switchboard => None,
    };
    if let Some(backend) = call_backend {
        let run = calls::CallsRun {
            target: match cli.target {
                Target::JanusSip => "janus-sip",
                _ => "switchboard-sip",
            },
            calls: cli.calls,
            codec: cli.codec,
            concurrency: cli.join_concurrency,
            join_timeout_s: cli.join_timeout,
            warmup_s: cli.warmup,
            duration_s: cli.duration,
            server_pid: cli.server_pid.first().copied(),
            metrics_url: cli.metrics_url.clone(),
        };
        let out = calls::run(&run, backend, &tx);
        let _ = tx.send(Cmd::Stop);
        let _ = media_thread.join();
        println!("{}", out?);
        return Ok(());
    }
    let servers = cli.server_pid.clone();
    // Summed over the server processes; None when one cannot be read.
    let sum_of = |f: fn(u32) -> Option<f64>| -> Option<f64> {
        if servers.is_empty() {
            return None;
        }
        servers.iter().map(|p| f(*p)).sum()
    };
    let rss = || sum_of(|p| sys::process_rss_kb(p).map(|kb| kb as f64)).map(|kb| kb as u64);
    let rss_start = rss();
    let rooms = cli.rooms.max(1);
    let publishers = cli.publishers * rooms;

    let backend: Arc<dyn Backend> = match cli.target {
        Target::Janus => Arc::new(JanusBackend {
            url: janus::JanusUrl::parse(&cli.url)?,
            room: cli
                .room
                .parse()
                .context("a Janus room is a number (bench/janus/janus.plugin.videoroom.jcfg)")?,
            feeds: Mutex::new(vec![Vec::new(); rooms]),
        }),
        Target::Switchboard => Arc::new(switchboard::SwitchboardBackend::new(
            &cli.url,
            cli.sub_url.as_deref(),
            cli.sub_sfu.as_deref(),
            &cli.room,
            rooms,
        )?),
        Target::JanusSip | Target::SwitchboardSip => bail!("a SIP target is run by calls::run"),
    };

    // Publishers first: subscribers subscribe to what exists.
    for id in 0..publishers {
        backend
            .publish(id, id % rooms, &tx)
            .with_context(|| format!("publisher {id}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (pubs, _) = wait_for(&tx, deadline, |(p, _)| p == publishers)?;
    if pubs < publishers {
        bail!("only {pubs} of {publishers} publishers connected");
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_publishers = rss();

    // Subscribers, join_concurrency at a time.
    let join_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut joiners = Vec::new();
    for _ in 0..cli.join_concurrency.max(1) {
        let (next, errors, backend, tx) =
            (next.clone(), errors.clone(), backend.clone(), tx.clone());
        let (n, base) = (cli.subscribers, publishers);
        joiners.push(std::thread::spawn(move || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            if let Err(e) = backend.subscribe(base + i, i % rooms, &tx) {
                if let Ok(mut errs) = errors.lock() {
                    errs.push(format!("subscriber {i}: {e:#}"));
                }
            }
        }));
    }
    for j in joiners {
        let _ = j.join();
    }
    let signaled_s = join_start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs_f64(cli.join_timeout);
    let (_, receiving) = wait_for(&tx, deadline, |(_, s)| s == cli.subscribers)?;
    let joined_s = join_start.elapsed().as_secs_f64();
    let errors: Vec<String> = errors.lock().map(|e| e.clone()).unwrap_or_default();
    for e in errors.iter().take(5) {
        eprintln!("{e}");
    }
    std::thread::sleep(Duration::from_secs_f64(cli.warmup.max(0.0)));
    let rss_all = rss();

    // The window.
    let me = std::process::id();
    let cpu = |pid: Option<u32>| pid.and_then(sys::process_cpu_s);
    let server_cpu_now = || sum_of(sys::process_cpu_s);
    // Counters (deltas over the window), then gauges read at its end.
    const COUNTERS: [&str; 6] = [
        "switchboard_sfu_forwarded_packets_total",
        "switchboard_sfu_subscriber_dropped_packets_total",
        "switchboard_sfu_plis_sent_total",
        "switchboard_sfu_bwe_bps{stat=\"min\"}",
        "switchboard_sfu_bwe_bps{stat=\"sum\"}",
        "switchboard_sfu_link_packets_total{dir=\"in\"}",
    ];
    let scrape = || {
        cli.metrics_url.as_deref().and_then(|u| {
            scrape::counters(u, &COUNTERS)
                .map_err(|e| eprintln!("{e:#}"))
                .ok()
        })
    };
    let m0 = scrape();
    let (s0, c0) = (server_cpu_now(), cpu(Some(me)));
    tx.send(Cmd::WindowStart)
        .map_err(|_| anyhow!("media thread gone"))?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(cli.duration.max(0.1)));
    let mut report = ask(&tx, |reply| Cmd::Report { reply })?;
    let wall = t0.elapsed().as_secs_f64();
    let (s1, c1) = (server_cpu_now(), cpu(Some(me)));
    let m1 = scrape();
    let delta = |i: usize| {
        m0.as_ref()
            .zip(m1.as_ref())
            .and_then(|(a, b)| a[i].zip(b[i]))
            .map(|(a, b)| b - a)
    };
    let _ = tx.send(Cmd::Stop);
    let _ = media_thread.join();

    let server_cpu = s0.zip(s1).map(|(a, b)| b - a);
    let client_cpu = c0.zip(c1).map(|(a, b)| b - a);
    let per_sub = |a: Option<u64>, b: Option<u64>| {
        a.zip(b)
            .map(|(a, b)| round3((b as f64 - a as f64) / cli.subscribers.max(1) as f64))
    };
    let out = json!({
        "target": format!("{:?}", cli.target).to_lowercase(),
        "subscribers_asked": cli.subscribers,
        "publishers_asked": publishers,
        "rooms": rooms,
        "media": {"video_kbps": cli.video_kbps, "fps": shape.fps,
                  "keyframe_interval_s": shape.keyframe_interval_s, "opus_bytes": shape.opus_bytes},
        "join": {"signaled_s": round3(signaled_s), "all_receiving_s": round3(joined_s),
                 "receiving": receiving, "errors": errors.len()},
        // What the subscribers got of what was sent (each publisher's packets are owed to
        // every subscriber of its room; rooms hold equal shares of the subscribers).
        "delivery_pct": (report.sent_packets > 0).then(|| round3(
            100.0 * report.rx_packets as f64 * rooms as f64
                / (report.sent_packets as f64 * cli.subscribers.max(1) as f64))),
        "window": report.json(),
        "wall_s": round3(wall),
        "server_cpu_s": server_cpu.map(round3),
        "server_cpu_pct": server_cpu.map(|c| round3(100.0 * c / wall)),
        "client_cpu_pct": client_cpu.map(|c| round3(100.0 * c / wall)),
        "fwd_pkt_per_cpu_s": server_cpu.filter(|c| *c > 0.0)
            .map(|c| round3(report.rx_packets as f64 / c)),
        "server_counters": {"forwarded_packets": delta(0), "subscriber_dropped_packets": delta(1),
            "plis_sent": delta(2),
            // A cluster node's node links (rooms spanning nodes): packets relayed in.
            "link_packets_in": delta(5),
            "bwe_min_bps": m1.as_ref().and_then(|m| m[3]),
            "bwe_mean_bps": m1.as_ref().and_then(|m| m[4])
                .map(|sum| round3(sum / (cli.subscribers + publishers) as f64))},
        "rss_kb": {"start": rss_start, "publishers": rss_publishers, "all": rss_all},
        "rss_per_sub_kb": per_sub(rss_publishers, rss_all),
    });
    println!("{out}");
    Ok(())
}

/// A server's signaling, as the load needs it.
trait Backend: Send + Sync {
    /// Participant `id` publishes in room number `room` (0-based).
    fn publish(&self, id: usize, room: usize, media: &Sender<Cmd>) -> Result<()>;
    /// Participant `id` subscribes to every publisher of room number `room`.
    fn subscribe(&self, id: usize, room: usize, media: &Sender<Cmd>) -> Result<()>;
}

struct JanusBackend {
    url: janus::JanusUrl,
    /// The first room's number; room k is `room + k`.
    room: u64,
    /// Publishers' feed ids per room.
    feeds: Mutex<Vec<Vec<u64>>>,
}

impl Backend for JanusBackend {
    fn publish(&self, id: usize, room: usize, media: &Sender<Cmd>) -> Result<()> {
        let feed = janus::publish(&self.url, self.room + room as u64, id, media)?;
        let mut feeds = self.feeds.lock().map_err(|_| anyhow!("poisoned"))?;
        feeds
            .get_mut(room)
            .ok_or_else(|| anyhow!("no room {room}"))?
            .push(feed);
        Ok(())
    }

    /// Subscribes to every publisher's feed in one Janus subscription (one PC).
    fn subscribe(&self, id: usize, room: usize, media: &Sender<Cmd>) -> Result<()> {
        let feeds = self.feeds.lock().map_err(|_| anyhow!("poisoned"))?;
        let feeds = feeds.get(room).cloned().unwrap_or_default();
        janus::subscribe(&self.url, self.room + room as u64, &feeds, id, media)
    }
}
