//! `switchboard serve`, the supervisor: start the services, say where they listen (log
//! and `--ready-file`), then handle signals for all of them alike: SIGHUP reloads
//! (the whole configuration is validated first, then each service takes its part),
//! SIGTERM/SIGINT drain then stop.

use crate::calls::CallsService;
use crate::cluster::ClusterService;
use crate::heap::HeapService;
use crate::http::HttpService;
use crate::metrics::MetricsService;
use crate::plan::{self, Plan};
use crate::service::Service;
use crate::sfu::SfuService;
use crate::signal::SignalService;
use crate::sip::SipService;
use crate::turn::TurnService;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Let the process hold one descriptor per relay socket: raise the soft limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Start every service, in dependency order. A new subsystem adds its line here (and its
/// section in `config/`); everything after start goes through [`Service`].
fn start(plan: &Plan) -> anyhow::Result<Vec<Box<dyn Service>>> {
    let turn = TurnService::start(plan)?;
    let cluster = ClusterService::start(plan, &turn)?;
    if let Some(c) = &cluster {
        c.share_turn_quotas(turn.quotas());
    }
    let signal = SignalService::start(plan, cluster.as_ref());
    let sfu = SfuService::start(plan, &signal)?;
    let sip = SipService::start(
        plan,
        &signal,
        sfu.as_ref().map(|s| (s.local_addr(), s.local_media())),
    )?;
    let calls = CallsService::start(plan, &signal, sip.as_ref())?;
    let http = HttpService::start(plan, &turn, &signal, sip.as_ref().map(SipService::routes))?;
    if let (Some(http), Some(cluster)) = (&http, &cluster) {
        http.set_region_turn(cluster.region_turn());
        if let Some(f) = cluster.overflow() {
            http.set_overflow(f);
        }
    }
    let heap = HeapService::start(plan.process.heap_trim)?;
    let mut services: Vec<Box<dyn Service>> = vec![Box::new(turn)];
    if let Some(cluster) = cluster {
        services.push(Box::new(cluster));
    }
    services.push(Box::new(signal));
    if let Some(sfu) = sfu {
        services.push(Box::new(sfu));
    }
    if let Some(sip) = sip {
        services.push(Box::new(sip));
    }
    services.push(Box::new(calls));
    if let Some(http) = http {
        services.push(Box::new(http));
    }
    services.push(Box::new(heap));
    if let Some(addr) = plan.metrics {
        let sources = services.iter().filter_map(|s| s.metrics()).collect();
        services.push(Box::new(MetricsService::start(addr, sources)?));
    }
    Ok(services)
}

/// Run until SIGTERM/SIGINT. `args` (the command line after `serve`) are parsed again,
/// with the `--config` file, on every SIGHUP.
pub fn run(args: Vec<OsString>, mut plan: Plan) -> anyhow::Result<()> {
    raise_fd_limit();
    // Before anything is logged: a supervisor may signal as soon as it sees us start.
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let mut services = start(&plan)?;
    if let Some(m) = &plan.tls {
        let kind = if m.self_signed {
            "self-signed, generated at start"
        } else {
            "from --cert"
        };
        info!(
            "TLS certificate ({kind}) SHA-256 fingerprint {}",
            m.fingerprint
        );
    }
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        services = names.join(", "),
        "switchboard started"
    );
    if let Some(path) = &plan.process.ready_file {
        write_ready_file(path, &services, &plan)?;
    }

    for sig in signals.forever() {
        if sig == SIGHUP {
            let reloaded = crate::settings::load(&args).and_then(|s| plan::build(&s, Some(&plan)));
            match reloaded {
                Ok(new) => {
                    let what: Vec<&str> =
                        services.iter_mut().filter_map(|s| s.reload(&new)).collect();
                    plan = new;
                    info!("configuration reloaded ({})", what.join("; "));
                }
                Err(e) => warn!("reload refused, keeping the running configuration: {e}"),
            }
            continue;
        }
        drain(&mut services, &mut signals, plan.process.drain_timeout);
        break;
    }
    for s in services.into_iter().rev() {
        s.stop();
    }
    info!("stopped");
    Ok(())
}

/// What is still in flight, e.g. `(3, "3 allocations")`.
fn in_flight(services: &[Box<dyn Service>]) -> (usize, String) {
    let parts: Vec<(usize, &str)> = services.iter().filter_map(|s| s.in_flight()).collect();
    let total = parts.iter().map(|(n, _)| n).sum();
    let text = parts
        .iter()
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ");
    (total, text)
}

/// Refuse new work, then wait until what is in flight ends, `timeout` passes or another
/// signal comes.
fn drain(
    services: &mut [Box<dyn Service>],
    signals: &mut signal_hook::iterator::Signals,
    timeout: Duration,
) {
    for s in services.iter_mut() {
        s.drain();
    }
    let (n, text) = in_flight(services);
    info!("draining: refusing new work; {text} live, exiting when they end or after {timeout:?} (signal again to exit now)");
    let deadline = Instant::now() + timeout;
    let mut last = n;
    while Instant::now() < deadline && last > 0 {
        if signals.pending().next().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let (n, text) = in_flight(services);
        if n != last {
            info!("draining: {text} left");
            last = n;
        }
    }
}

/// The listeners by kind, as JSON, written whole (a reader never sees half of it).
fn write_ready_file(
    path: &std::path::Path,
    services: &[Box<dyn Service>],
    plan: &Plan,
) -> anyhow::Result<()> {
    let mut listeners = serde_json::Map::new();
    for l in services.iter().flat_map(|s| s.listeners()) {
        let list = listeners
            .entry(l.kind)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(v) = list {
            v.push(l.addr.to_string().into());
        }
    }
    let ready = serde_json::json!({
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "listeners": listeners,
        "tls_fingerprint": plan.tls.as_ref().map(|m| m.fingerprint.clone()),
    });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{ready}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write --ready-file {}: {e}", path.display()))
}
