//! The SIP gateway load: every call is one WebRTC peer (str0m, one audio track) that calls
//! a SIP far end through the server under test. bench/sip-janus.sh points the far end at
//! a SIPp UAS that echoes RTP, so each peer gets its own audio back and can count what it
//! lost. Two servers:
//! - Janus's SIP plugin (crate::janus_sip): HTTP API session, register as a guest, `call`
//!   with the peer's offer, the answer from the `accepted` event; Janus relays the codec
//!   the peer offered (G.711 without transcoding).
//! - Switchboard's gateway (crate::switchboard_sip): the peer joins its own room through
//!   the SFU, then `POST /api/sip/calls` dials the far end; the gateway joins the room as
//!   the phone and transcodes unless the room speaks the phone's codec.
//!
//! Calls are placed `--join-concurrency` at a time; once every call hears audio (or the
//! join timeout passes), a warm-up, then the window: per call, packets sent against
//! packets back (crate::stats::Report::add_call), the server's CPU over the window, and
//! Switchboard's media counters. Calls are hung up at the end.

use crate::media::{AudioCodec, Cmd};
use crate::stats::round3;
use crate::{ask, scrape, sys, wait_for};
use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server that places calls for the load.
pub trait CallBackend: Send + Sync {
    /// Places call `id` (a new media participant); returns once it is set up on the
    /// signaling side. What `hang_up` needs is kept by the backend.
    fn place(&self, id: usize, media: &Sender<Cmd>) -> Result<()>;
    /// Hangs up every call placed (best effort: errors are printed).
    fn hang_up_all(&self);
}

/// What the run needs besides the backend.
pub struct CallsRun {
    pub target: &'static str,
    pub calls: usize,
    pub codec: AudioCodec,
    pub concurrency: usize,
    pub join_timeout_s: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub server_pid: Option<u32>,
    pub metrics_url: Option<String>,
}

/// Switchboard's media counters read over the window (summed over their label sets).
const SB_COUNTERS: [&str; 6] = [
    "switchboard_sip_media_packets_total",
    "switchboard_sip_media_lost_total",
    "switchboard_sip_media_late_total",
    "switchboard_sip_media_concealed_total",
    "switchboard_sip_media_ticks_missed_total",
    "switchboard_sip_media_decode_errors_total",
];

/// Runs the calls and returns the result as JSON (printed by main).
pub fn run(cfg: &CallsRun, backend: Arc<dyn CallBackend>, media: &Sender<Cmd>) -> Result<Value> {
    let rss = || cfg.server_pid.and_then(sys::process_rss_kb);
    let rss_start = rss();
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut placers = Vec::new();
    for _ in 0..cfg.concurrency.max(1) {
        let (next, errors, backend, media) =
            (next.clone(), errors.clone(), backend.clone(), media.clone());
        let n = cfg.calls;
        placers.push(std::thread::spawn(move || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return;
            }
            if let Err(e) = backend.place(i, &media) {
                if let Ok(mut errs) = errors.lock() {
                    errs.push(format!("call {i}: {e:#}"));
                }
            }
        }));
    }
    for p in placers {
        let _ = p.join();
    }
    let placed_s = start.elapsed().as_secs_f64();
    let errors: Vec<String> = errors.lock().map(|e| e.clone()).unwrap_or_default();
    // A call that failed to set up never hears anything: wait for the others only.
    let placed_ok = cfg.calls.saturating_sub(errors.len());
    let deadline = Instant::now() + Duration::from_secs_f64(cfg.join_timeout_s);
    let (_, hearing) = wait_for(media, deadline, |(_, heard)| heard >= placed_ok)?;
    let all_hearing_s = start.elapsed().as_secs_f64();
    for e in errors.iter().take(5) {
        eprintln!("{e}");
    }
    std::thread::sleep(Duration::from_secs_f64(cfg.warmup_s.max(0.0)));
    let rss_all = rss();

    let scrape = || {
        cfg.metrics_url.as_deref().and_then(|u| {
            scrape::counters(u, &SB_COUNTERS)
                .map_err(|e| eprintln!("{e:#}"))
                .ok()
        })
    };
    let cpu = |pid: Option<u32>| pid.and_then(sys::process_cpu_s);
    let me = Some(std::process::id());
    let m0 = scrape();
    let (s0, c0) = (cpu(cfg.server_pid), cpu(me));
    media
        .send(Cmd::WindowStart)
        .map_err(|_| anyhow!("media thread gone"))?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(cfg.duration_s.max(0.1)));
    let mut report = ask(media, |reply| Cmd::Report { reply })?;
    let wall = t0.elapsed().as_secs_f64();
    let (s1, c1) = (cpu(cfg.server_pid), cpu(me));
    let m1 = scrape();
    let counters: serde_json::Map<String, Value> = SB_COUNTERS
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let d = m0.as_ref()?.get(i).copied().flatten()?;
            let e = m1.as_ref()?.get(i).copied().flatten()?;
            let key = name.trim_start_matches("switchboard_sip_media_");
            Some((key.to_string(), json!(e - d)))
        })
        .collect();
    backend.hang_up_all();

    let server_cpu = s0.zip(s1).map(|(a, b)| b - a);
    let client_cpu = c0.zip(c1).map(|(a, b)| b - a);
    // Server CPU per call per 20 ms of the window (the gateway's cost of one call's tick).
    let ticks = wall / 0.020;
    let per_call_tick_us = server_cpu
        .filter(|_| cfg.calls > 0)
        .map(|c| round3(c * 1e6 / (ticks * cfg.calls as f64)));
    let per_call_kb = rss_start
        .zip(rss_all)
        .map(|(a, b)| round3((b as f64 - a as f64) / cfg.calls.max(1) as f64));
    Ok(json!({
        "target": cfg.target,
        "calls_asked": cfg.calls,
        "codec": format!("{:?}", cfg.codec).to_lowercase(),
        "setup": {"placed_s": round3(placed_s), "all_hearing_s": round3(all_hearing_s),
                  "hearing": hearing, "errors": errors.len(),
                  "calls_per_s": (all_hearing_s > 0.0)
                      .then(|| round3(hearing as f64 / all_hearing_s))},
        "delivery_pct": (report.sent_packets > 0).then(|| round3(
            100.0 * report.rx_packets as f64 / report.sent_packets as f64)),
        "window": report.json(),
        "wall_s": round3(wall),
        "server_cpu_s": server_cpu.map(round3),
        "server_cpu_pct": server_cpu.map(|c| round3(100.0 * c / wall)),
        "client_cpu_pct": client_cpu.map(|c| round3(100.0 * c / wall)),
        "us_per_call_per_20ms": per_call_tick_us,
        "server_counters": counters,
        "rss_kb": {"start": rss_start, "all": rss_all},
        "rss_per_call_kb": per_call_kb,
    }))
}
