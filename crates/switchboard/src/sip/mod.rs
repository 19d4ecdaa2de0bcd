//! The SIP gateway service (`--sip-listen`): phones and SIP trunks call into rooms, and
//! a phone caller is a participant of the room like anyone else (docs/sip.md).
//!
//! - `agent.rs`: the SIP signaling task (UDP socket + the sans-IO `switchboard_sip::ua`
//!   user agent: registrations, transactions, dialogs) and the per-call decisions;
//! - `dispatch.rs`: which room a call joins;
//! - `call.rs`: one task per call moving media between the phone's RTP port and the
//!   room leg through `switchboard_media::bridge::CallMedia` (G.711/Opus, the mix);
//! - `room_leg.rs`: the call's participant of the room, a WebRTC client of its SFU;
//! - `ports.rs`: the RTP port pool;
//! - `stream.rs`, `connect.rs`: SIP over TCP, TLS and WebSocket, the connections peers
//!   open and those the gateway opens to TCP/TLS next hops;
//! - `api.rs`, `outbound.rs`: calls the app places (`POST /api/sip/calls`) and where
//!   they go (an account's registrar, the trunk, a host);
//! - `federation/`: direct calls between people of two Switchboards (`ada@a.test` →
//!   `bob@b.test`), the browsers' SDP carried unchanged and no media here.
//!
//! All of it runs on one tokio runtime of its own (`sip` threads): signaling and media
//! of calls are light next to the SFU's forwarding, which stays on its `net` workers.

mod agent;
mod api;
mod call;
mod connect;
mod dispatch;
mod dtls_leg;
mod federation;
mod flood;
mod outbound;
mod pin;
mod ports;
mod room_leg;
mod stream;

pub use federation::{EndReason, FederationError, FederationEvent, SipFederation};
pub(crate) use outbound::host_name;

use crate::config::sip::FederationPeer;
use crate::metrics::family;
use crate::plan::Plan;
use crate::service::{Listener, Metrics, Service};
use crate::signal::SignalService;
use ports::RtpPorts;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use switchboard_media::bridge::MediaStats;
use tokio::sync::watch;
use tracing::info;

/// Counters and gauges of the gateway, for `/metrics` and the drain.
#[derive(Default)]
pub struct SipStats {
    pub calls_in: AtomicU64,
    pub calls_out: AtomicU64,
    pub calls_refused: AtomicU64,
    pub calls_ended: AtomicU64,
    /// Calls the agent holds (ringing or up).
    pub calls_live: AtomicUsize,
    /// Dialogs and transactions the user agent holds.
    pub dialogs_live: AtomicUsize,
    pub transactions_live: AtomicUsize,
    /// Call media tasks running.
    pub media_live: AtomicUsize,
    pub registered: AtomicUsize,
    pub rtp_refused: AtomicU64,
    /// The calls' media, summed (`call.rs` adds each call's counts every second).
    pub media: MediaCounters,
    /// SIP messages dropped by the per-source bound.
    pub flood_dropped: AtomicU64,
    pub dtmf_received: AtomicU64,
}

/// Media counters of every call, for `/metrics`: packets each way on each leg, and what
/// the jitter buffers lost, got late or concealed.
#[derive(Default)]
pub struct MediaCounters {
    pub phone_in: AtomicU64,
    pub phone_out: AtomicU64,
    pub room_in: AtomicU64,
    pub room_out: AtomicU64,
    pub phone_lost: AtomicU64,
    pub phone_late: AtomicU64,
    pub room_lost: AtomicU64,
    pub room_late: AtomicU64,
    pub concealed: AtomicU64,
    pub decode_errors: AtomicU64,
    /// 20 ms ticks the calls' media tasks ran too late for (the host is overloaded):
    /// each is a frame the phone and the room did not get.
    pub ticks_missed: AtomicU64,
    /// Audio frames to the phones and to the rooms: G.711 passed through as it came,
    /// or encoded by the gateway.
    pub to_phone_passed: AtomicU64,
    pub to_phone_transcoded: AtomicU64,
    pub to_room_passed: AtomicU64,
    pub to_room_transcoded: AtomicU64,
}

impl MediaCounters {
    /// Add what happened between `before` and `now` (one call's counts).
    pub fn add(&self, before: &MediaStats, now: &MediaStats) {
        let add = |c: &AtomicU64, a: u64, b: u64| {
            c.fetch_add(b.saturating_sub(a), Ordering::Relaxed);
        };
        add(
            &self.phone_in,
            before.phone_packets_in,
            now.phone_packets_in,
        );
        add(
            &self.phone_out,
            before.phone_packets_out,
            now.phone_packets_out,
        );
        add(&self.room_in, before.room_packets_in, now.room_packets_in);
        add(
            &self.room_out,
            before.room_packets_out,
            now.room_packets_out,
        );
        add(&self.phone_lost, before.phone_lost, now.phone_lost);
        add(&self.phone_late, before.phone_late, now.phone_late);
        add(&self.room_lost, before.room_lost, now.room_lost);
        add(&self.room_late, before.room_late, now.room_late);
        let concealed = |s: &MediaStats| s.phone_concealed + s.room_concealed;
        add(&self.concealed, concealed(before), concealed(now));
        add(&self.decode_errors, before.decode_errors, now.decode_errors);
        add(
            &self.to_phone_passed,
            before.frames_to_phone_passed,
            now.frames_to_phone_passed,
        );
        add(
            &self.to_phone_transcoded,
            before.frames_to_phone_transcoded,
            now.frames_to_phone_transcoded,
        );
        add(
            &self.to_room_passed,
            before.frames_to_room_passed,
            now.frames_to_room_passed,
        );
        add(
            &self.to_room_transcoded,
            before.frames_to_room_transcoded,
            now.frames_to_room_transcoded,
        );
    }
}

pub struct SipService {
    bound: SocketAddr,
    tcp_bound: Option<SocketAddr>,
    tls_bound: Option<SocketAddr>,
    limits: Arc<stream::ConnLimits>,
    /// `/api/sip/calls`, for the HTTP service to serve.
    routes: axum::Router,
    stats: Arc<SipStats>,
    ports: Arc<RtpPorts>,
    draining: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// Commands of federation handles, to the agent.
    federation: tokio::sync::mpsc::UnboundedSender<federation::Command>,
    consumer: federation::Consumer,
    call_domain: String,
    peers: Arc<[FederationPeer]>,
}

/// The SIP UDP socket and, with `--sip-tcp`, the TCP listener on the same port: bound
/// now, for a clear error at start. With port 0 the kernel's UDP pick may be a number a
/// TCP socket (another process's connection) holds: pick again, a few times.
fn bind_listeners(
    listen: SocketAddr,
    tcp: bool,
) -> anyhow::Result<(std::net::UdpSocket, Option<std::net::TcpListener>)> {
    let attempts = if listen.port() == 0 && tcp { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on UDP {listen} (--sip-listen): {e}"))?;
        if !tcp {
            return Ok((udp, None));
        }
        let bound = udp.local_addr()?;
        match std::net::TcpListener::bind(bound) {
            Ok(l) => return Ok((udp, Some(l))),
            Err(e) => last = Some((bound, e)),
        }
    }
    let (bound, e) = last.ok_or_else(|| anyhow::anyhow!("no SIP listener bound"))?;
    Err(anyhow::anyhow!(
        "cannot listen on TCP {bound} (--sip-tcp): {e}"
    ))
}

impl SipService {
    /// Start when `--sip-listen` is set.
    pub fn start(
        plan: &Plan,
        signal: &SignalService,
        sfu: Option<(SocketAddr, crate::sfu::LocalMedia)>,
    ) -> anyhow::Result<Option<SipService>> {
        let Some(cfg) = &plan.sip else {
            return Ok(None);
        };
        let (std_sock, tcp) = bind_listeners(cfg.listen, cfg.tcp)?;
        std_sock.set_nonblocking(true)?;
        let bound = std_sock.local_addr()?;
        let mut cfg = cfg.clone();
        if cfg.listen.port() == 0 {
            // Port 0 asked for any port: say the one we got.
            cfg.listen = bound;
            if cfg.advertise.ends_with(":0") {
                cfg.advertise = SocketAddr::new(cfg.media_ip, bound.port()).to_string();
            }
        }
        let cfg = Arc::new(cfg);
        let stats = Arc::new(SipStats::default());
        let ports = RtpPorts::new(cfg.rtp_ports.clone());
        let (draining, control) = watch::channel(false);
        let (api_tx, api_rx) = tokio::sync::mpsc::unbounded_channel();
        let (stream_tx, stream_rx) = tokio::sync::mpsc::unbounded_channel();
        let (federation_tx, federation_rx) = tokio::sync::mpsc::unbounded_channel();
        let (consumer, consumer_rx) = watch::channel(None);
        let call_domain = plan.calls.book.domain.clone();
        let limits = Arc::new(stream::ConnLimits::default());
        let mut routes = api::routes(cfg.clone(), signal.handle(), api_tx);
        if cfg.ws {
            let state = stream::ws::WsState {
                events: stream_tx.clone(),
                limits: limits.clone(),
                secure: plan.http.as_ref().is_some_and(|h| h.https.is_some()),
            };
            routes = routes.merge(
                axum::Router::new()
                    .route("/sip", axum::routing::get(stream::ws::upgrade))
                    .with_state(state),
            );
        }
        // Stream listeners bound now: a clear error at start, not later.
        let tls = match cfg.tls_listen {
            None => None,
            Some(addr) => {
                let material = plan.tls.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("--sip-tls-listen needs a certificate (--cert and --pkey, or --tls-self-signed)")
                })?;
                let config = crate::tls::server_config(material, &[])?;
                let l = std::net::TcpListener::bind(addr).map_err(|e| {
                    anyhow::anyhow!("cannot listen on TCP {addr} (--sip-tls-listen): {e}")
                })?;
                Some((l, tokio_rustls::TlsAcceptor::from(config)))
            }
        };
        let tls_client = connect::client_config(cfg.tls_ca.as_deref())?;
        let tcp_bound = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let tls_bound = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let sfu = sfu.map(|(addr, media)| room_leg::SfuAccess {
            addr,
            media: cfg.room_media_local.then_some(media),
        });
        if sfu.is_none() {
            tracing::warn!("the SFU is off (--sfu-threshold off): SIP calls will be refused");
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(4);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sip")
            .enable_all()
            .build()?;
        let agent = agent::Agent {
            cfg: cfg.clone(),
            sock: {
                let _guard = runtime.enter();
                tokio::net::UdpSocket::from_std(std_sock)?
            },
            signaling: signal.handle(),
            sfu,
            ports: ports.clone(),
            stats: stats.clone(),
            dialer: connect::Dialer {
                tls: tokio_rustls::TlsConnector::from(tls_client),
                events: stream_tx.clone(),
                limits: limits.clone(),
            },
            tls_port: tls_bound.map(|a| a.port()),
            call_domain: call_domain.clone(),
            federation: consumer_rx,
        };
        let stream_limits = limits.clone();
        let thread = std::thread::Builder::new()
            .name("sip-gateway".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for (listener, acceptor) in tcp
                        .map(|l| (l, None))
                        .into_iter()
                        .chain(tls.map(|(l, a)| (l, Some(a))))
                    {
                        let listener = listener
                            .set_nonblocking(true)
                            .and_then(|()| tokio::net::TcpListener::from_std(listener));
                        match listener {
                            Ok(l) => {
                                tokio::spawn(stream::serve_tcp(
                                    l,
                                    acceptor,
                                    stream_tx.clone(),
                                    stream_limits.clone(),
                                ));
                            }
                            Err(e) => tracing::error!("SIP stream listener: {e}"),
                        }
                    }
                    drop(stream_tx);
                    agent
                        .run(agent::Control {
                            draining: control,
                            api: api_rx,
                            streams: stream_rx,
                            federation: federation_rx,
                        })
                        .await
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        info!(
            "SIP gateway on udp://{bound} (advertised {}), RTP ports {}-{}, {} account(s), {} route(s), direct rooms {}",
            cfg.advertise,
            cfg.rtp_ports.start(),
            cfg.rtp_ports.end(),
            cfg.accounts.len(),
            cfg.routes.len(),
            if cfg.direct_rooms { "on" } else { "off" },
        );
        Ok(Some(SipService {
            bound,
            tcp_bound,
            tls_bound,
            limits,
            routes,
            stats,
            ports,
            draining,
            thread: Some(thread),
            federation: federation_tx,
            consumer,
            call_domain,
            peers: cfg.federation.clone().into(),
        }))
    }
}

impl SipService {
    /// The HTTP routes of the gateway (`/api/sip/calls`).
    pub fn routes(&self) -> axum::Router {
        self.routes.clone()
    }

    /// Direct calls with other Switchboards over SIP: the handle, and the events of the
    /// calls. Until this is called, and again once the receiver is dropped, every INVITE
    /// goes to the rooms; a second call replaces the first consumer.
    pub fn federation(&self) -> (SipFederation, tokio::sync::mpsc::Receiver<FederationEvent>) {
        SipFederation::attach(
            self.federation.clone(),
            &self.consumer,
            self.call_domain.clone(),
            self.peers.clone(),
        )
    }
}

impl Service for SipService {
    fn name(&self) -> &'static str {
        "sip"
    }

    fn listeners(&self) -> Vec<Listener> {
        let mut l = vec![Listener {
            kind: "sip-udp",
            addr: self.bound,
        }];
        if let Some(addr) = self.tcp_bound {
            l.push(Listener {
                kind: "sip-tcp",
                addr,
            });
        }
        if let Some(addr) = self.tls_bound {
            l.push(Listener {
                kind: "sip-tls",
                addr,
            });
        }
        l
    }

    fn metrics(&self) -> Option<Metrics> {
        let stats = self.stats.clone();
        let ports = self.ports.clone();
        let limits = self.limits.clone();
        Some(Arc::new(move |out: &mut String| {
            let s = &stats;
            let g = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
            let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
            family(out, "switchboard_sip_calls_total", "counter", "SIP calls by outcome: in = INVITEs taken, out = calls placed, refused = answered with an error, ended = calls the gateway took (answered or ringing) that ended, however", &[
                ("{outcome=\"in\"}", c(&s.calls_in)),
                ("{outcome=\"out\"}", c(&s.calls_out)),
                ("{outcome=\"refused\"}", c(&s.calls_refused)),
                ("{outcome=\"ended\"}", c(&s.calls_ended)),
            ]);
            family(
                out,
                "switchboard_sip_calls",
                "gauge",
                "SIP calls ringing or up",
                &[("", g(&s.calls_live))],
            );
            family(
                out,
                "switchboard_sip_dialogs",
                "gauge",
                "SIP dialogs the user agent holds",
                &[("", g(&s.dialogs_live))],
            );
            family(
                out,
                "switchboard_sip_transactions",
                "gauge",
                "SIP transactions live",
                &[("", g(&s.transactions_live))],
            );
            family(
                out,
                "switchboard_sip_media_tasks",
                "gauge",
                "Call media tasks running",
                &[("", g(&s.media_live))],
            );
            family(
                out,
                "switchboard_sip_rtp_ports_in_use",
                "gauge",
                "RTP ports of --sip-rtp-ports bound by calls",
                &[("", ports.in_use() as u64)],
            );
            family(
                out,
                "switchboard_sip_registrations",
                "gauge",
                "Accounts registered at their registrar",
                &[("", g(&s.registered))],
            );
            family(out, "switchboard_sip_rtp_refused_total", "counter", "Datagrams on a call's RTP port that were not its media (garbage, SRTP auth failure)", &[("", c(&s.rtp_refused))]);
            family(out, "switchboard_sip_flood_dropped_total", "counter", "SIP messages dropped because their source sent more than --sip-rate-limit per second", &[("", c(&s.flood_dropped))]);
            family(
                out,
                "switchboard_sip_connections",
                "gauge",
                "SIP over TCP, TLS and WebSocket connections open",
                &[("", limits.open() as u64)],
            );
            let m = &s.media;
            family(out, "switchboard_sip_media_packets_total", "counter", "Media packets of the calls: `leg` phone (RTP to and from the phones) or room (Opus or G.711 to and from the rooms' SFU), `direction` in (received) or out (sent)", &[
                ("{leg=\"phone\",direction=\"in\"}", c(&m.phone_in)),
                ("{leg=\"phone\",direction=\"out\"}", c(&m.phone_out)),
                ("{leg=\"room\",direction=\"in\"}", c(&m.room_in)),
                ("{leg=\"room\",direction=\"out\"}", c(&m.room_out)),
            ]);
            family(
                out,
                "switchboard_sip_media_lost_total",
                "counter",
                "Frames the calls' jitter buffers never got (`leg` phone or room)",
                &[
                    ("{leg=\"phone\"}", c(&m.phone_lost)),
                    ("{leg=\"room\"}", c(&m.room_lost)),
                ],
            );
            family(
                out,
                "switchboard_sip_media_late_total",
                "counter",
                "Packets that came after their playout time (`leg` phone or room)",
                &[
                    ("{leg=\"phone\"}", c(&m.phone_late)),
                    ("{leg=\"room\"}", c(&m.room_late)),
                ],
            );
            family(
                out,
                "switchboard_sip_media_concealed_total",
                "counter",
                "Frames concealed (G.711 repeat/fade, Opus PLC or FEC), both legs",
                &[("", c(&m.concealed))],
            );
            family(out, "switchboard_sip_media_frames_total", "counter", "Audio frames of the calls by `direction` (to_phone, to_room) and `path`: passthrough (G.711 as it came) or transcoded (encoded by the gateway)", &[
                ("{direction=\"to_phone\",path=\"passthrough\"}", c(&m.to_phone_passed)),
                ("{direction=\"to_phone\",path=\"transcoded\"}", c(&m.to_phone_transcoded)),
                ("{direction=\"to_room\",path=\"passthrough\"}", c(&m.to_room_passed)),
                ("{direction=\"to_room\",path=\"transcoded\"}", c(&m.to_room_transcoded)),
            ]);
            family(out, "switchboard_sip_media_ticks_missed_total", "counter", "20 ms media ticks the calls' tasks ran too late for (an overloaded host): each a frame neither side got", &[("", c(&m.ticks_missed))]);
            family(
                out,
                "switchboard_sip_media_decode_errors_total",
                "counter",
                "Opus payloads libopus could not decode",
                &[("", c(&m.decode_errors))],
            );
            family(
                out,
                "switchboard_sip_dtmf_total",
                "counter",
                "DTMF digits received from phones (RFC 4733)",
                &[("", c(&s.dtmf_received))],
            );
        }))
    }

    fn drain(&mut self) {
        let _ = self.draining.send(true);
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        Some((self.stats.calls_live.load(Ordering::Relaxed), "SIP calls"))
    }

    fn stop(mut self: Box<Self>) {
        // Dropping the sender tells the agent to unregister and hang up, then end.
        let (closed, _) = watch::channel(false);
        drop(std::mem::replace(&mut self.draining, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bind_listeners;

    #[test]
    fn udp_and_tcp_listeners_share_a_port_or_the_error_names_the_option() {
        let (udp, tcp) = bind_listeners("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let port = udp.local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(tcp.unwrap().local_addr().unwrap().port(), port);
        let (_, none) = bind_listeners("127.0.0.1:0".parse().unwrap(), false).unwrap();
        assert!(none.is_none());
        // A fixed port whose TCP number is taken: no second pick, a clear error.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        match bind_listeners(addr, true) {
            Err(e) => assert!(e.to_string().contains("--sip-tcp"), "{e}"),
            Ok(_) => panic!("bound a TCP port that is taken"),
        }
    }
}
