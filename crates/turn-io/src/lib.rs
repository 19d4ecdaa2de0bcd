//! The TURN service on the network driver (`switchboard-net`).
//!
//! `threads` workers each hold one SO_REUSEPORT socket per listening address (UDP
//! ports of the driver; TCP and TLS listeners of the TURN service), and one TURN
//! service: a core [`Server`] and the relay sockets of its allocations. The kernel
//! spreads clients over workers by 5-tuple. UDP moves in batches through the driver.
//! Configuration reloads and drain/shutdown requests reach workers through [`Shared`],
//! and so do client connections accepted elsewhere ([`Shared::adopt`]: the HTTPS port
//! shared with TURN).

#![forbid(unsafe_code)]

mod handoff;
mod relay;
mod relay_ip;
mod service;
mod stream;
mod tcp_relay;

pub use relay_ip::RelayIp;

use mio::net::TcpListener;
use socket2::Socket;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;
use switchboard_net::socket::{tcp_socket, udp_socket};
use switchboard_net::{Router, WorkerBuilder};
use switchboard_turn::{Quotas, Server, ServerConfig, Stats, PEER_HEADROOM, PEER_TAILROOM};

/// Where to listen and relay.
#[derive(Clone, Debug)]
pub struct IoConfig {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub relay_v4: Option<RelayIp>,
    pub relay_v6: Option<RelayIp>,
    pub min_port: u16,
    pub max_port: u16,
    pub threads: usize,
}

/// Counters one worker publishes a few times a second.
#[derive(Default, Clone, Copy, Debug)]
pub struct WorkerStats {
    pub core: Stats,
    pub send_errors: u64,
    pub connections: u64,
    /// Stream output counters (see stream.rs), closed connections included: relayed
    /// media dropped for a slow reader, TLS writes rustls could not take whole (kept
    /// and sent later), connections closed for owing more than `MAX_OWED`.
    pub stream_dropped: u64,
    pub stream_tls_deferred: u64,
    pub stream_overflows: u64,
    /// Open RFC 6062 peer connections.
    pub tcp_connections: u64,
}

/// State shared between the workers and the control plane (signals, metrics).
pub struct Shared {
    pub core_config: RwLock<Arc<ServerConfig>>,
    pub tls: RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// Bumped after `core_config` changes; workers pick the new one up.
    pub generation: AtomicU64,
    pub quotas: Arc<Quotas>,
    pub stats: Vec<Mutex<WorkerStats>>,
    pub draining: AtomicBool,
    pub shutdown: AtomicBool,
    /// Client connections moving between workers (RFC 6062 ConnectionBind, and
    /// connections accepted elsewhere: [`Shared::adopt`]).
    pub(crate) handoffs: handoff::Handoffs,
    /// Round robin over workers for adopted connections.
    next_adopt: AtomicUsize,
}

impl Shared {
    pub fn reload(&self, cfg: ServerConfig, tls: Option<Arc<rustls::ServerConfig>>) {
        if let Ok(mut c) = self.core_config.write() {
            *c = Arc::new(cfg);
        }
        if let Ok(mut t) = self.tls.write() {
            *t = tls;
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Serve a client connection accepted outside the workers (the HTTPS port's
    /// demultiplexer): one worker takes it, through the same inbox RFC 6062 hand-overs
    /// use, and from then on treats it exactly like a connection accepted on its own
    /// TCP listener (`tls` None) or TLS listener. `tls` is a session whose handshake
    /// the caller completed; `read` is what the caller already took from the
    /// connection (plaintext, after the handshake), handled before anything else.
    /// Workers are picked round robin; RFC 6062 data connections still reach the
    /// owner of their connection id by a second hand-over.
    pub fn adopt(
        &self,
        stream: std::net::TcpStream,
        tls: Option<rustls::ServerConnection>,
        read: &[u8],
    ) -> std::io::Result<()> {
        use std::io::{Error, ErrorKind};
        stream.set_nonblocking(true)?;
        let _ = stream.set_nodelay(true);
        let tuple = switchboard_turn::FiveTuple {
            transport: match tls {
                Some(_) => switchboard_turn::Transport::Tls,
                None => switchboard_turn::Transport::Tcp,
            },
            client: stream.peer_addr()?,
            server: stream.local_addr()?,
        };
        let tls = match tls {
            Some(mut t) => {
                // Records read with the handshake's last flight (a request sent right
                // after Finished) become plaintext now, not at the next socket read.
                t.process_new_packets()
                    .map_err(|e| Error::new(ErrorKind::InvalidData, e))?;
                Some(Box::new(t))
            }
            None => None,
        };
        let mut conn = stream::Conn::new(mio::net::TcpStream::from_std(stream), tls, tuple);
        if !conn.preload(read) {
            return Err(Error::new(ErrorKind::InvalidData, "too much read ahead"));
        }
        let workers = self.stats.len().max(1);
        let to = self.next_adopt.fetch_add(1, Ordering::Relaxed) % workers;
        if self.handoffs.send(to, conn) {
            Ok(())
        } else {
            Err(Error::other("no worker to take the connection"))
        }
    }

    /// Sum of all workers' counters.
    pub fn totals(&self) -> WorkerStats {
        let mut t = WorkerStats::default();
        for s in &self.stats {
            if let Ok(s) = s.lock() {
                t.core.add(&s.core);
                t.send_errors += s.send_errors;
                t.connections += s.connections;
                t.stream_dropped += s.stream_dropped;
                t.stream_tls_deferred += s.stream_tls_deferred;
                t.stream_overflows += s.stream_overflows;
                t.tcp_connections += s.tcp_connections;
            }
        }
        t
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {proto} {addr}: {error}")]
    Listen {
        proto: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
}

pub struct Running {
    pub shared: Arc<Shared>,
    /// The addresses actually bound (port 0 resolved), per protocol.
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Wait for all workers to stop (after `shared.shutdown` is set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Bind `threads` sockets to `addr` in one SO_REUSEPORT group (see
/// [`switchboard_net::socket::bind_group`]: an exclusive probe bind comes first).
fn bind_group(
    addr: SocketAddr,
    threads: usize,
    proto: &'static str,
    make: fn(SocketAddr, bool) -> std::io::Result<Socket>,
) -> Result<(SocketAddr, Vec<Socket>), StartError> {
    switchboard_net::socket::bind_group(addr, threads, make).map_err(|error| StartError::Listen {
        proto,
        addr,
        error,
    })
}

/// What one worker listens on.
struct Listeners {
    udp: Vec<(std::net::UdpSocket, SocketAddr)>,
    tcp: Vec<(TcpListener, SocketAddr, bool)>,
}

/// Bind every listener and start the workers.
pub fn start(
    io: IoConfig,
    core: ServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Running, StartError> {
    let threads = io.threads.max(1);
    let mut per_worker: Vec<Listeners> = (0..threads)
        .map(|_| Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
        })
        .collect();
    let (mut udp, mut tcp, mut tls_addrs) = (Vec::new(), Vec::new(), Vec::new());
    for &a in &io.udp {
        let (bound, socks) = bind_group(a, threads, "UDP", udp_socket)?;
        udp.push(bound);
        for (w, s) in per_worker.iter_mut().zip(socks) {
            w.udp.push((s.into(), bound));
        }
    }
    for (addrs, is_tls, out) in [(&io.tcp, false, &mut tcp), (&io.tls, true, &mut tls_addrs)] {
        for &a in addrs {
            let proto = if is_tls { "TLS" } else { "TCP" };
            let (bound, socks) = bind_group(a, threads, proto, tcp_socket)?;
            out.push(bound);
            for (w, s) in per_worker.iter_mut().zip(socks) {
                w.tcp.push((TcpListener::from_std(s.into()), bound, is_tls));
            }
        }
    }
    let shared = Arc::new(Shared {
        core_config: RwLock::new(Arc::new(core)),
        tls: RwLock::new(tls),
        generation: AtomicU64::new(0),
        quotas: Arc::new(Quotas::default()),
        stats: (0..threads)
            .map(|_| Mutex::new(WorkerStats::default()))
            .collect(),
        draining: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
        handoffs: handoff::Handoffs::new(threads),
        next_adopt: AtomicUsize::new(0),
    });
    let unix_now = switchboard_util::unix_now();
    let reserved = relay::ReservationPool::default();
    let mut handles = Vec::new();
    for (id, listeners) in per_worker.into_iter().enumerate() {
        let cfg = shared
            .core_config
            .read()
            .map(|c| c.clone())
            .map_err(|_| StartError::Worker(std::io::Error::other("config lock poisoned")))?;
        let mut core = Server::new(cfg, shared.quotas.clone(), Instant::now(), unix_now);
        // RFC 6062 connection ids name their worker: a ConnectionBind may reach any.
        core.set_connection_id_space(threads as u32, id as u32);
        let mut builder =
            WorkerBuilder::new(id, PEER_HEADROOM, PEER_TAILROOM).map_err(StartError::Worker)?;
        let turn = builder.next_service();
        for (sock, local) in listeners.udp {
            builder.port(sock, local, Router::new(turn));
        }
        let registry = builder.registry().try_clone().map_err(StartError::Worker)?;
        let relays = relay::Relays::new(
            registry,
            turn,
            io.relay_v4,
            io.relay_v6,
            io.min_port,
            io.max_port,
            reserved.clone(),
        );
        let service =
            service::TurnService::new(id, turn, listeners.tcp, relays, core, shared.clone());
        builder.service(Box::new(service));
        let worker = builder.build().map_err(StartError::Worker)?;
        let h = std::thread::Builder::new()
            .name(format!("turn-worker-{id}"))
            .spawn(move || worker.run())
            .map_err(StartError::Worker)?;
        handles.push(h);
    }
    Ok(Running {
        shared,
        udp,
        tcp,
        tls: tls_addrs,
        threads: handles,
    })
}
