//! Thin I/O driver around the sans-IO TURN core.
//!
//! `threads` workers each own one SO_REUSEPORT socket per listening address (UDP, TCP,
//! TLS), a core [`Server`] and the relay sockets of its allocations; the kernel spreads
//! clients over workers by 5-tuple. UDP moves in batches through recvmmsg/sendmmsg.
//! Configuration reloads and drain/shutdown requests reach workers through [`Shared`],
//! and so do client connections accepted elsewhere ([`Shared::adopt`]: the HTTPS port
//! shared with TURN).

pub mod batch;
mod relay;
pub mod sockaddr;
mod stream;
mod tcp_relay;
mod worker;

pub use relay::RelayIp;

use mio::net::{TcpListener, UdpSocket};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;
use switchboard_turn::{Quotas, Server, ServerConfig, Stats};
use worker::{Listeners, Worker};

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
    pub(crate) handoffs: tcp_relay::Handoffs,
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

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s)
}

fn tcp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    if reuse_port {
        s.listen(1024)?;
    }
    Ok(s)
}

/// Bind `threads` sockets to `addr` in one SO_REUSEPORT group. An exclusive probe bind
/// comes first: SO_REUSEPORT would otherwise let us join another process's group on
/// the same port (say, a coturn left running) and silently share its traffic. Port 0
/// is resolved by the probe.
fn bind_group(
    addr: SocketAddr,
    threads: usize,
    proto: &'static str,
    make: fn(SocketAddr, bool) -> std::io::Result<Socket>,
) -> Result<(SocketAddr, Vec<Socket>), StartError> {
    let err = |error| StartError::Listen { proto, addr, error };
    let probe = make(addr, false).map_err(err)?;
    let bound = probe.local_addr().map_err(err)?.as_socket().unwrap_or(addr);
    drop(probe);
    let mut all = Vec::with_capacity(threads);
    for _ in 0..threads {
        all.push(make(bound, true).map_err(err)?);
    }
    Ok((bound, all))
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
            w.udp.push((UdpSocket::from_std(s.into()), bound));
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
        handoffs: tcp_relay::Handoffs::new(threads),
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
        let io2 = io.clone();
        let reserved = reserved.clone();
        let worker = Worker::new(
            id,
            listeners,
            move |registry| {
                relay::Relays::new(
                    registry,
                    io2.relay_v4,
                    io2.relay_v6,
                    io2.min_port,
                    io2.max_port,
                    reserved,
                )
            },
            core,
            shared.clone(),
        )
        .map_err(StartError::Worker)?;
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
