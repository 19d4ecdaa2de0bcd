//! One worker thread: a mio loop over its driver ports (one socket of each
//! SO_REUSEPORT group), the sockets its services registered, and its services'
//! timers. The kernel hashes each client 5-tuple to one worker, so service state is
//! per worker and the packet path takes no lock.
//!
//! One pass: wait for readiness (or the earliest timer), read ready ports in batches
//! and hand each datagram to the service its port's [`Router`] picks, pass the
//! services their own events, let them finish the batch (`before_flush`), send
//! everything queued in one flush, then run the services whose deadline came.

use crate::batch::{Batch, BATCH};
use crate::demux::Router;
use crate::service::{Flow, Io, PortInfo, Service};
use crate::timer::TimerHeap;
use crate::token::{Kind, ServiceId, Tok};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Receive batches per readiness before yielding to other sockets (fairness).
pub const ROUNDS: usize = 8;

struct Port {
    sock: UdpSocket,
    info: PortInfo,
    router: Router,
}

/// A worker being assembled: its ports and services.
pub struct WorkerBuilder {
    id: usize,
    poll: Poll,
    ports: Vec<(UdpSocket, SocketAddr, Router)>,
    services: Vec<Box<dyn Service>>,
    headroom: usize,
    tailroom: usize,
}

impl WorkerBuilder {
    /// Worker `id`; receive slots keep `headroom` bytes before each datagram and
    /// `tailroom` after it (for framing in place).
    pub fn new(id: usize, headroom: usize, tailroom: usize) -> io::Result<Self> {
        Ok(WorkerBuilder {
            id,
            poll: Poll::new()?,
            ports: Vec::new(),
            services: Vec::new(),
            headroom,
            tailroom,
        })
    }

    /// The worker's registry: services created before [`WorkerBuilder::build`] may
    /// keep a clone to register their own sockets later.
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// The id the next [`WorkerBuilder::service`] call will return.
    pub fn next_service(&self) -> ServiceId {
        self.services.len() as ServiceId
    }

    /// Add a service; its id is what routers and tokens name it by.
    pub fn service(&mut self, s: Box<dyn Service>) -> ServiceId {
        let id = self.next_service();
        self.services.push(s);
        id
    }

    /// Add a UDP port (bound to `local`) whose datagrams `router` distributes.
    pub fn port(&mut self, sock: std::net::UdpSocket, local: SocketAddr, router: Router) {
        self.ports.push((UdpSocket::from_std(sock), local, router));
    }

    /// Register everything and attach the services (on the calling thread; the
    /// worker then moves to its own).
    pub fn build(self) -> io::Result<Worker> {
        if self.services.len() > ServiceId::MAX as usize + 1 {
            return Err(io::Error::other("more than 256 services on one worker"));
        }
        let poll = self.poll;
        let batch = Batch::new(self.headroom, self.tailroom);
        let mut io = Io::new(poll.registry().try_clone()?, batch, self.id);
        let mut ports = Vec::with_capacity(self.ports.len());
        for (index, (mut sock, local, router)) in self.ports.into_iter().enumerate() {
            let token = Tok::new(0, Kind::Port, index).encode();
            poll.registry()
                .register(&mut sock, token, Interest::READABLE)?;
            let info = PortInfo {
                index,
                local,
                fd: sock.as_raw_fd(),
            };
            io.ports.push(info);
            ports.push(Port { sock, info, router });
        }
        let mut services = self.services;
        for (i, s) in services.iter_mut().enumerate() {
            io.service = i as u8;
            s.attach(&mut io)?;
        }
        let stopped = vec![false; services.len()];
        Ok(Worker {
            id: self.id,
            poll,
            ports,
            services,
            stopped,
            io,
            timers: TimerHeap::default(),
            ready: Vec::new(),
        })
    }
}

/// A worker, ready to [`Worker::run`] on its thread.
pub struct Worker {
    id: usize,
    poll: Poll,
    ports: Vec<Port>,
    services: Vec<Box<dyn Service>>,
    stopped: Vec<bool>,
    io: Io,
    timers: TimerHeap,
    ready: Vec<(Token, bool, bool)>,
}

impl Worker {
    /// Loop until every service has stopped (or polling fails).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        self.update_timers();
        loop {
            let timeout = if self.io.pending.is_empty() {
                self.timers.timeout(Instant::now())
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(worker = self.id, error = %e, "poll failed; worker stops");
                    return;
                }
            }
            let now = Instant::now();
            let mut ready = std::mem::take(&mut self.ready);
            ready.extend(self.io.pending.drain(..).map(|t| (t, true, false)));
            ready.extend(events.iter().map(|ev| {
                let readable = ev.is_readable() || ev.is_read_closed();
                (ev.token(), readable, ev.is_writable())
            }));
            for (token, readable, writable) in ready.drain(..) {
                self.dispatch(token, readable, writable, now);
            }
            self.ready = ready;
            for (i, s) in self.services.iter_mut().enumerate() {
                if !self.stopped[i] {
                    self.io.service = i as u8;
                    s.before_flush(&mut self.io, now);
                }
            }
            self.io.batch.flush();
            for (i, s) in self.services.iter_mut().enumerate() {
                if !self.stopped[i] {
                    self.io.service = i as u8;
                    s.after_flush(&mut self.io, now);
                }
            }
            while let Some(i) = self.timers.pop_due(now) {
                let Some(s) = self.services.get_mut(i) else {
                    continue;
                };
                self.io.service = i as u8;
                if s.handle_timeout(&mut self.io, now) == Flow::Stop {
                    self.stopped[i] = true;
                }
            }
            if self.stopped.iter().all(|&s| s) {
                self.io.batch.flush();
                return;
            }
            self.update_timers();
        }
    }

    fn update_timers(&mut self) {
        for (i, s) in self.services.iter().enumerate() {
            let deadline = if self.stopped[i] {
                None
            } else {
                s.poll_timeout()
            };
            self.timers.set(i, deadline);
        }
    }

    fn dispatch(&mut self, token: Token, readable: bool, writable: bool, now: Instant) {
        let Some(tok) = Tok::decode(token) else {
            return;
        };
        if tok.kind == Kind::Port {
            if readable && self.port_readable(tok.index, now) {
                self.io.pending.push(token);
            }
            return;
        }
        let i = tok.service as usize;
        if let Some(s) = self.services.get_mut(i).filter(|_| !self.stopped[i]) {
            self.io.service = tok.service;
            s.on_event(&mut self.io, tok, readable, writable, now);
        }
    }

    /// Datagrams on a driver port, through its router. True when the socket may still
    /// hold more.
    fn port_readable(&mut self, index: usize, now: Instant) -> bool {
        let Some(port) = self.ports.get(index) else {
            return false;
        };
        let fd = port.sock.as_raw_fd();
        for _ in 0..ROUNDS {
            let slots = match self.io.batch.recv(fd) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg on port");
                    return false;
                }
            };
            let n = slots.len();
            for i in slots {
                let (d, mut tx) = self.io.batch.slot(i);
                if d.from.is_none() {
                    continue;
                }
                let s = port.router.route(d.payload()) as usize;
                match self.services.get_mut(s) {
                    Some(svc) if !self.stopped[s] => svc.on_datagram(&port.info, d, &mut tx, now),
                    _ => {}
                }
            }
            if n < BATCH {
                return false;
            }
        }
        true
    }
}
