//! The SFU service: `--sfu-threads` `net` workers, each with one socket of the SFU
//! port's SO_REUSEPORT group and one sans-IO `switchboard_sfu::Sfu` (the rooms hashed
//! to it), and a small signaling thread whose tokio tasks are the rooms' `SFU` service
//! participants. The binary's only user of `switchboard_sfu`.
//!
//! Why this shape (SFU-DESIGN §2): one port for every participant (firewall friendly,
//! one candidate), rooms on one worker each so that forwarding inside a room takes no
//! lock and one room never blocks another, and the kernel's 5-tuple hashing plus a
//! ufrag prefix per worker to find the owning worker of a datagram ([`demux`]).

mod demux;
mod local;
mod node_link;
mod rooms;
mod shared;
mod tcp;
mod worker;

use crate::config::sfu::SfuRun;
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Listener, Metrics, Service};
use crate::signal::SignalService;
pub use local::{LocalLink, LocalMedia};
use shared::Shared;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use switchboard_net::{Router, WorkerBuilder};
use tracing::info;

/// Headroom and tailroom of the receive slots: the SFU frames nothing in place.
const HEADROOM: usize = 0;
const TAILROOM: usize = 0;

pub struct SfuService {
    bound: SocketAddr,
    /// The ICE-TCP listener's address (`--sfu-tcp`).
    tcp_bound: Option<SocketAddr>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl SfuService {
    /// Where the SFU's UDP port is bound (the SIP gateway's room legs reach it there).
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// In-process media for the SIP gateway's room legs ([`local`]).
    pub fn local_media(&self) -> LocalMedia {
        LocalMedia::new(self.shared.clone())
    }

    /// Start when the SFU is on (`--sfu-threshold` not `off`); rooms start turning SFU
    /// from here on.
    pub fn start(plan: &Plan, signal: &SignalService) -> anyhow::Result<Option<SfuService>> {
        let Some(run) = &plan.sfu.run else {
            info!("SFU off (--sfu-threshold off): every room is a mesh");
            return Ok(None);
        };
        // ICE-TCP on the same port number (bound before any worker runs: a clear error).
        // With `--sfu-port 0` the UDP port is the kernel's pick, whose number a TCP socket
        // (another process's outgoing connection) may hold: pick again, a few times.
        let attempts = if run.bind.port() == 0 && run.tcp {
            16
        } else {
            1
        };
        let mut attempt = 0;
        let (bound, socks, tcp_listener) = loop {
            attempt += 1;
            let (bound, socks) = switchboard_net::socket::bind_group(
                run.bind,
                run.threads,
                switchboard_net::socket::udp_socket,
            )
            .map_err(|e| anyhow::anyhow!("cannot listen on UDP {} (--sfu-port): {e}", run.bind))?;
            if !run.tcp {
                break (bound, socks, None);
            }
            let addr = SocketAddr::new(run.bind.ip(), bound.port());
            match std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
                Ok(l) => break (bound, socks, Some(l)),
                Err(e) if attempt < attempts => {
                    tracing::debug!(%addr, error = %e, "SFU port picked again (its number is taken on TCP)");
                }
                Err(e) => anyhow::bail!("cannot listen on TCP {addr} (--sfu-tcp): {e}"),
            }
        };
        let candidates = resolve_candidates(run, bound.port());
        let tcp_bound = tcp_listener.as_ref().and_then(|l| l.local_addr().ok());
        let tcp_candidates = if run.tcp {
            candidates.clone()
        } else {
            Vec::new()
        };
        let shared = Arc::new(Shared::new(run.threads));
        let now = Instant::now();
        let mut workers = Vec::with_capacity(run.threads);
        for (id, sock) in socks.into_iter().enumerate() {
            let cfg = switchboard_sfu::SfuConfig {
                ufrag_prefix: demux::ufrag_prefix(id),
                candidates: candidates.clone(),
                limits: switchboard_sfu::Limits {
                    // The hub's capacity counts clients; WHIP publishers come on top.
                    participants_per_room: plan.sfu.room_capacity
                        + switchboard_signal::MAX_SERVICES_PER_ROOM,
                    ..run.limits.clone()
                },
                idle_timeout: run.idle_timeout,
                tcp_candidates: tcp_candidates.clone(),
                ..switchboard_sfu::SfuConfig::default()
            };
            let sfu = switchboard_sfu::Sfu::new(cfg, now)
                .map_err(|e| anyhow::anyhow!("SFU worker {id}: {e}"))?;
            let mut builder = WorkerBuilder::new(id, HEADROOM, TAILROOM)?;
            let service = builder.next_service();
            builder.port(sock.into(), bound, Router::new(service));
            builder.service(Box::new(worker::SfuWorker::new(
                id,
                sfu,
                shared.clone(),
                candidates.clone(),
                now,
            )));
            let worker = builder.build()?;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("sfu-worker-{id}"))
                    .spawn(move || worker.run())?,
            );
        }
        // Registering makes rooms turn SFU; the workers are ready for them.
        let requests = signal.handle().service_requests(switchboard_signal::SFU);
        let signaling = signal.handle();
        // In a cluster: edges for the members this node bridges into other nodes' SFU
        // rooms, linked from this node's SFU address.
        let edges = match (&plan.cluster, candidates.first()) {
            (Some(c), Some(addr)) => Some(rooms::Edges {
                requests: signaling.service_requests(switchboard_signal::SFU_EDGE),
                node: c.node_name.clone(),
                link_ip: addr.ip(),
            }),
            _ => None,
        };
        let rooms_shared = shared.clone();
        std::thread::Builder::new()
            .name("sfu-signal".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(rooms::serve(signaling, requests, rooms_shared, edges)),
                    Err(e) => tracing::error!("SFU signaling runtime: {e}; no room turns SFU"),
                }
            })?;
        if let Some(listener) = tcp_listener {
            let (tcp_shared, tcp_cands) = (shared.clone(), candidates.clone());
            std::thread::Builder::new()
                .name("sfu-tcp".into())
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let served = rt.and_then(|rt| {
                        rt.block_on(async {
                            let l = tokio::net::TcpListener::from_std(listener)?;
                            tcp::serve(l, tcp_shared, tcp_cands).await;
                            Ok(())
                        })
                    });
                    if let Err(e) = served {
                        tracing::error!("SFU ICE-TCP listener: {e}; UDP only");
                    }
                })?;
        }
        let list: Vec<String> = candidates.iter().map(ToString::to_string).collect();
        info!(
            threads = run.threads,
            threshold = %crate::config::sfu::Threshold(plan.sfu.threshold),
            room_capacity = plan.sfu.room_capacity,
            max_publishers = run.limits.publishers_per_room,
            max_subscribers = run.limits.subscribers_per_publisher,
            queue_ms = run.limits.queue_time.as_millis(),
            "SFU listening on udp://{bound}{}, announcing {}",
            tcp_bound.map_or(String::new(), |t| format!(" and tcp://{t} (ICE-TCP)")),
            list.join(", ")
        );
        Ok(Some(SfuService {
            bound,
            tcp_bound,
            shared,
            workers,
        }))
    }
}

/// The configured candidates, with port 0 (from `--sfu-port 0`) made the bound port.
fn resolve_candidates(run: &SfuRun, port: u16) -> Vec<SocketAddr> {
    run.candidates
        .iter()
        .map(|c| {
            if c.port() == 0 {
                SocketAddr::new(c.ip(), port)
            } else {
                *c
            }
        })
        .collect()
}

impl Service for SfuService {
    fn name(&self) -> &'static str {
        "sfu"
    }

    fn listeners(&self) -> Vec<Listener> {
        let mut l = vec![Listener {
            kind: "sfu-udp",
            addr: self.bound,
        }];
        l.extend(self.tcp_bound.map(|addr| Listener {
            kind: "sfu-tcp",
            addr,
        }));
        l
    }

    fn metrics(&self) -> Option<Metrics> {
        let shared = self.shared.clone();
        Some(Arc::new(move |out: &mut String| render(out, &shared)))
    }

    fn drain(&mut self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        let n = self
            .shared
            .figures
            .iter()
            .map(|f| f.lock().map_or(0, |f| f.stats.participants))
            .sum();
        Some((n, "SFU participants"))
    }

    fn stop(self: Box<Self>) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        for id in 0..self.shared.workers() {
            self.shared.wake(id);
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// The SFU's part of `/metrics`: the workers' last published figures, summed, and the
/// driver's counters.
fn render(s: &mut String, shared: &Shared) {
    let mut t = switchboard_sfu::SfuStats::default();
    let mut bwe = Vec::new();
    for f in &shared.figures {
        let f = f.lock().unwrap_or_else(|e| e.into_inner());
        let x = &f.stats;
        t.rooms += x.rooms;
        t.participants += x.participants;
        t.tracks += x.tracks;
        t.forwarded_packets += x.forwarded_packets;
        t.forwarded_bytes += x.forwarded_bytes;
        t.dropped_packets += x.dropped_packets;
        t.layer_switches += x.layer_switches;
        t.plis_sent += x.plis_sent;
        t.data_relayed += x.data_relayed;
        t.data_dropped += x.data_dropped;
        t.unknown_datagrams += x.unknown_datagrams;
        bwe.extend_from_slice(&x.bwe_estimates);
    }
    let c = &shared.counters;
    let gauge = |s: &mut String, name: &str, help: &str, v: usize| {
        family(s, name, "gauge", help, &[("", v as u64)]);
    };
    let counter = |s: &mut String, name: &str, help: &str, v: u64| {
        family(s, name, "counter", help, &[("", v)]);
    };
    gauge(
        s,
        "switchboard_sfu_rooms",
        "Rooms with SFU participants (media connections).",
        t.rooms,
    );
    gauge(
        s,
        "switchboard_sfu_signaling_rooms",
        "Rooms the SFU is a member of in signaling.",
        shared.rooms(),
    );
    gauge(
        s,
        "switchboard_sfu_participants",
        "SFU participants (one peer connection each).",
        t.participants,
    );
    gauge(s, "switchboard_sfu_tracks", "Published tracks.", t.tracks);
    counter(
        s,
        "switchboard_sfu_forwarded_packets_total",
        "RTP packets forwarded to subscribers.",
        t.forwarded_packets,
    );
    counter(
        s,
        "switchboard_sfu_forwarded_bytes_total",
        "Payload bytes of the forwarded RTP packets.",
        t.forwarded_bytes,
    );
    counter(
        s,
        "switchboard_sfu_subscriber_dropped_packets_total",
        "RTP packets not forwarded because the subscriber's queue was full.",
        t.dropped_packets,
    );
    counter(
        s,
        "switchboard_sfu_layer_switches_total",
        "Simulcast layer switches.",
        t.layer_switches,
    );
    counter(
        s,
        "switchboard_sfu_plis_sent_total",
        "PLIs sent to publishers (after coalescing).",
        t.plis_sent,
    );
    counter(
        s,
        "switchboard_sfu_data_relayed_total",
        "Data-channel messages relayed.",
        t.data_relayed,
    );
    counter(
        s,
        "switchboard_sfu_data_dropped_total",
        "Data-channel messages dropped.",
        t.data_dropped,
    );
    counter(
        s,
        "switchboard_sfu_rooms_joined_total",
        "Rooms the SFU joined (rooms that turned SFU).",
        c.rooms_joined.load(Ordering::Relaxed),
    );
    family(
        s,
        "switchboard_sfu_demux_dropped_total",
        "counter",
        "Datagrams on the SFU port that were dropped before a participant: `unknown` (no participant owns the ufrag or source), `handoff_full` (the owning worker's inbox was full).",
        &[
            ("{reason=\"unknown\"}", t.unknown_datagrams),
            ("{reason=\"handoff_full\"}", c.handoff_full.load(Ordering::Relaxed)),
        ],
    );
    counter(
        s,
        "switchboard_sfu_local_dropped_total",
        "RTP packets for in-process participants (the SIP gateway's room legs) lost to a full queue.",
        c.local_dropped.load(Ordering::Relaxed),
    );
    family(
        s,
        "switchboard_sfu_link_tracks",
        "gauge",
        "Tracks that node links (rooms spanning nodes) relay now: `in` from other nodes, `out` to them. Each track crosses a link once, however many subscribers are behind it.",
        &[
            ("{dir=\"in\"}", c.link_tracks_in.load(Ordering::Relaxed)),
            ("{dir=\"out\"}", c.link_tracks_out.load(Ordering::Relaxed)),
        ],
    );
    family(
        s,
        "switchboard_sfu_link_packets_total",
        "counter",
        "RTP packets node links relayed: `in` from other nodes, `out` to them.",
        &[
            ("{dir=\"in\"}", c.link_packets_in.load(Ordering::Relaxed)),
            ("{dir=\"out\"}", c.link_packets_out.load(Ordering::Relaxed)),
        ],
    );
    gauge(
        s,
        "switchboard_sfu_edges",
        "SFU edges this node runs for rooms held by other nodes of the cluster.",
        c.edges.load(Ordering::Relaxed) as usize,
    );
    counter(
        s,
        "switchboard_sfu_handoffs_total",
        "Datagrams handed from the worker that received them to the one that owns them.",
        c.handoffs.load(Ordering::Relaxed),
    );
    counter(
        s,
        "switchboard_sfu_signal_dropped_total",
        "SFU signaling not delivered (full worker inbox, or refused by the hub).",
        c.signal_dropped.load(Ordering::Relaxed),
    );
    tcp::render(s, &shared.tcp);
    let sum: u64 = bwe.iter().sum();
    let min = bwe.iter().copied().min().unwrap_or(0);
    let count = bwe.len() as u64;
    family(
        s,
        "switchboard_sfu_bwe_bps",
        "gauge",
        "Egress bandwidth estimates of the connected participants (bit/s): sum, lowest, and how many have one.",
        &[
            ("{stat=\"sum\"}", sum),
            ("{stat=\"min\"}", min),
            ("{stat=\"count\"}", count),
        ],
    );
}
