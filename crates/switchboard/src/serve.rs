//! `switchboard serve`: start the workers, log what is in force, handle signals
//! (SIGHUP reloads, SIGTERM/SIGINT drain then exit).

use crate::plan::{self, Plan};
use crate::settings::Settings;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::atomic::Ordering;
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

pub fn run(cli: Settings, plan: Plan) -> anyhow::Result<()> {
    raise_fd_limit();
    // Before anything is logged: a supervisor may signal as soon as it sees us start.
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let nonce_key = plan.core.nonce_key;
    let listen_ips: Vec<_> =
        plan.io
            .udp
            .iter()
            .chain(&plan.io.tcp)
            .map(|a| a.ip())
            .fold(Vec::new(), |mut v, ip| {
                if !v.contains(&ip) {
                    v.push(ip);
                }
                v
            });
    let relay: Vec<_> = plan
        .io
        .relay_v4
        .iter()
        .chain(plan.io.relay_v6.iter())
        .copied()
        .collect();
    let core = plan.core.clone();
    let running = switchboard_turn_io::start(plan.io.clone(), plan.core, plan.tls)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        threads = plan.io.threads,
        "switchboard started"
    );
    for a in &running.udp {
        info!("STUN/TURN listening on udp://{a}");
    }
    for a in &running.tcp {
        info!("STUN/TURN listening on tcp://{a}");
    }
    for a in &running.tls {
        info!("STUN/TURN listening on tls://{a}");
    }
    for r in &relay {
        info!(
            "relay address {} (bound on {}), ports {}-{}",
            r.public, r.bind, plan.io.min_port, plan.io.max_port
        );
    }
    info!(realm = %core.realm, "auth: long-term credentials, {} static user(s), {} REST secret(s)", core.user_count(), core.secrets.len());
    if let Some(s) = &plan.dev_secret {
        info!("auth: no --user or --static-auth-secret given; development REST secret for this run: {s}");
        info!(
            "      make a credential with: switchboard turn-credentials --secret {s} --user NAME"
        );
    }
    match core.rfc5780 {
        Some(r) => info!(
            "RFC 5780 behaviour discovery on: {}/{} ports {}/{}",
            r.ips[0], r.ips[1], r.ports[0], r.ports[1]
        ),
        None => info!("RFC 5780 behaviour discovery off (needs two --listening-ip)"),
    }
    info!(
        user_quota = core.user_quota,
        total_quota = core.total_quota,
        max_bps = core.max_bps,
        "limits (0 = unlimited); peers in private, loopback and other special ranges are denied unless --allowed-peer-ip"
    );
    if let Some(m) = &plan.tls_material {
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
    let signaling = switchboard_http::Signaling::new(
        plan.signal.clone(),
        switchboard_http::Signaling::default_shards(),
    );
    let https = plan
        .https
        .clone()
        .map(|c| std::sync::Arc::new(std::sync::RwLock::new(c)));
    let mut ice_api = None;
    if let Some(addr) = plan.http {
        let public = relay.first().map(|r| r.public).unwrap_or(listen_ips[0]);
        // Bound first: /api/ice-servers names its port (`turns:HOST:443`).
        let listener = crate::web::bind("http", addr)?;
        let bound = listener.local_addr()?;
        let ice = switchboard_http::IceConfig {
            host: plan
                .ice_host
                .clone()
                .unwrap_or_else(|| switchboard_http::IceConfig::host_for(public)),
            udp_port: running.udp.first().map(|a| a.port()),
            tcp_port: running.tcp.first().map(|a| a.port()),
            tls_port: running.tls.first().map(|a| a.port()),
            https_turn_port: plan.http_turn.then_some(bound.port()),
            secret: core.secrets.first().cloned(),
            ttl: plan.ice_ttl,
            token_secrets: plan.signal.token_secrets.clone(),
            rate_per_minute: plan.ice_rate,
        };
        let net_test = net_test_config(&ice, core.rfc5780, &relay, &listen_ips, &running.udp);
        let timer = signaling.clone();
        let api = switchboard_http::IceApi::new(ice);
        ice_api = Some(api.clone());
        crate::web::serve(
            "http",
            listener,
            switchboard_http::router(
                api,
                signaling.clone(),
                switchboard_http::OriginPolicy::new(&plan.origins),
                switchboard_http::NetTest::new(net_test),
            ),
            https.clone(),
            plan.http_turn.then(|| running.shared.clone()),
            move || switchboard_http::spawn_signal_timer(&timer),
        )?;
        let scheme = if https.is_some() { "https" } else { "http" };
        info!("HTTP API on {scheme}://{bound}/ (web app at /, signaling at /ws and /sse, ICE servers at /api/ice-servers)");
        if plan.http_turn {
            info!("TURN over TLS (ALPN stun.turn, or none) and over TCP also on the HTTPS port {bound}; plain HTTP there is redirected to HTTPS");
        }
        let s = &plan.signal;
        info!(
            room_capacity = s.room_capacity,
            grace_s = s.grace.as_secs(),
            max_message = s.max_message,
            rate = s.rate,
            "signaling: rooms {}; origins: this host{}",
            if s.token_secrets.is_empty() {
                "open (no --room-token-secret)"
            } else {
                "need a room token"
            },
            if plan.origins.is_empty() {
                String::new()
            } else {
                format!(", {}", plan.origins.join(", "))
            }
        );
        let ice = ice_api.as_ref().map(|a| a.config());
        if let Some(ice) = ice {
            info!(
                "ICE servers: relay credentials for {}; at most {} requests a minute per source address",
                if ice.secret.is_none() {
                    "nobody (no --static-auth-secret: STUN only)"
                } else if ice.token_secrets.is_empty() {
                    "anyone who can reach this port (no --room-token-secret)"
                } else {
                    "holders of a room token"
                },
                if ice.rate_per_minute == 0 {
                    "unlimited".to_string()
                } else {
                    ice.rate_per_minute.to_string()
                }
            );
        }
    }
    if let Some(addr) = plan.metrics {
        let bound = crate::metrics::spawn(
            addr,
            running.shared.clone(),
            signaling.clone(),
            ice_api.clone(),
        )?;
        info!("metrics on http://{bound}/metrics");
    }

    crate::heap::spawn_trimmer(plan.heap_trim)?;

    let shared = running.shared.clone();
    for sig in signals.forever() {
        if sig == SIGHUP {
            match reload(
                &cli,
                &listen_ips,
                &relay,
                nonce_key,
                plan.dev_secret.as_deref(),
                plan.tls_material.as_ref(),
                plan.http_turn,
            ) {
                Ok(r) => {
                    shared.reload(r.core.clone(), r.tls);
                    if let (Some(slot), Some(new)) = (&https, r.https) {
                        *slot.write().unwrap_or_else(|e| e.into_inner()) = new;
                    }
                    if let Some(api) = &ice_api {
                        let mut ice = (*api.config()).clone();
                        ice.secret = r.core.secrets.first().cloned();
                        ice.token_secrets = r.signal.token_secrets.clone();
                        ice.rate_per_minute = r.ice_rate;
                        api.reconfigure(ice);
                    }
                    signaling.reconfigure(r.signal);
                    info!("configuration reloaded (users, secrets, peer filters, limits, certificates, signaling limits, room token secrets and the ICE servers' secret and rate)");
                }
                Err(e) => warn!("reload refused, keeping the running configuration: {e}"),
            }
            continue;
        }
        let n = shared.quotas.total();
        info!("draining: refusing new allocations; {n} live, exiting when they end or after {:?} (signal again to exit now)", plan.drain_timeout);
        shared.draining.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + plan.drain_timeout;
        let mut last = n;
        while Instant::now() < deadline {
            if signals.pending().next().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            // The quota counter is exact at once; the stats snapshot lags 250 ms.
            let n = shared.quotas.total();
            if n == 0 {
                break;
            }
            if n != last {
                info!("draining: {n} allocations left");
                last = n;
            }
        }
        break;
    }
    signaling.shutdown();
    shared.shutdown.store(true, Ordering::Relaxed);
    running.join();
    info!("stopped");
    Ok(())
}

struct Reloaded {
    core: switchboard_turn::ServerConfig,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    https: Option<std::sync::Arc<rustls::ServerConfig>>,
    signal: switchboard_http::HubConfig,
    ice_rate: u32,
}

fn reload(
    cli: &Settings,
    listen_ips: &[std::net::IpAddr],
    relay: &[switchboard_turn_io::RelayIp],
    nonce_key: [u8; 32],
    dev_secret: Option<&str>,
    generated: Option<&crate::tls::TlsMaterial>,
    http_turn: bool,
) -> anyhow::Result<Reloaded> {
    let mut s = cli.clone();
    s.load_file()?;
    let core = plan::core_config(&s, listen_ips, relay, Some(nonce_key), dev_secret)?;
    let generated = generated.filter(|g| g.self_signed);
    let material = crate::tls::material(&s, generated, listen_ips)?;
    let tls = material.as_ref().map(crate::tls::turn_config).transpose()?;
    let https = material
        .as_ref()
        .map(|m| crate::tls::https_config(m, http_turn))
        .transpose()?;
    let signal = plan::signal_config(&s)?;
    Ok(Reloaded {
        core,
        tls,
        https,
        signal,
        ice_rate: plan::ice_rate(&s)?,
    })
}

/// The app's network test (`/network`): STUN URIs for the mapping test (the primary
/// address, its other port and the other IP when RFC 5780 is on) and the IPs the
/// filtering checks come from.
fn net_test_config(
    ice: &switchboard_http::IceConfig,
    rfc5780: Option<switchboard_turn::config::Rfc5780>,
    relay: &[switchboard_turn_io::RelayIp],
    listen_ips: &[std::net::IpAddr],
    udp: &[std::net::SocketAddr],
) -> switchboard_http::NetTestConfig {
    let Some(first) = udp.first() else {
        return switchboard_http::NetTestConfig::default();
    };
    match rfc5780 {
        Some(r) => {
            // The other IP as clients reach it (its relay mapping, if it has one).
            let other = relay
                .iter()
                .find(|a| a.bind == r.ips[1])
                .map(|a| a.public)
                .unwrap_or(r.ips[1]);
            let other = switchboard_http::IceConfig::host_for(other);
            let h = &ice.host;
            switchboard_http::NetTestConfig {
                stun_urls: vec![
                    format!("stun:{h}:{}", r.ports[0]),
                    format!("stun:{h}:{}", r.ports[1]),
                    format!("stun:{other}:{}", r.ports[0]),
                ],
                same_ip: Some(r.ips[0]),
                other_ip: Some(r.ips[1]),
            }
        }
        None => switchboard_http::NetTestConfig {
            stun_urls: vec![format!("stun:{}:{}", ice.host, first.port())],
            same_ip: listen_ips.first().copied(),
            other_ip: None,
        },
    }
}
