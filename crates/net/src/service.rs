//! What a service on the driver implements, and what the driver lends it.
//!
//! A service is sans-IO at heart (TURN's `Server`, later an SFU's `Rtc`s) wrapped in a
//! small adapter that implements [`Service`]: it is handed the datagrams the
//! demultiplexer routed to it, queues what it sends into the worker's [`Tx`], says
//! when it next needs time ([`Service::poll_timeout`]), and may own sockets of its own
//! (registered with tokens from [`Io::token`]) whose events come back to it.

use crate::batch::{Batch, Received, Tx};
use crate::token::{Kind, ServiceId, Tok};
use mio::{Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Instant;

/// A driver UDP port of this worker, as services see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Index among the worker's ports.
    pub index: usize,
    /// The address the port is bound to (its SO_REUSEPORT group's).
    pub local: SocketAddr,
    /// Its socket, to queue answers on.
    pub fd: RawFd,
}

/// Whether a service keeps running after a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The service has shut down; the worker ends once all of its services have.
    Stop,
}

/// A datagram service on a worker.
pub trait Service: Send {
    /// Once, on the worker, before its loop: register the service's own sockets.
    fn attach(&mut self, io: &mut Io) -> io::Result<()> {
        let _ = io;
        Ok(())
    }

    /// A datagram the port's demultiplexer routed to this service. `d` may be
    /// rewritten in place and queued (zero copy) or answered from `d.out`.
    fn on_datagram(&mut self, port: &PortInfo, d: Received<'_>, tx: &mut Tx<'_>, now: Instant);

    /// Readiness of a socket this service registered with [`Io::token`].
    fn on_event(&mut self, io: &mut Io, tok: Tok, readable: bool, writable: bool, now: Instant) {
        let _ = (io, tok, readable, writable, now);
    }

    /// After each loop pass has handed out its datagrams and events, before the queued
    /// datagrams are sent: work a service defers per datagram to do once per batch (the
    /// SFU moves the packets it forwarded here) queues into this pass's send.
    fn before_flush(&mut self, io: &mut Io, now: Instant) {
        let _ = (io, now);
    }

    /// After each loop pass, once the queued datagrams are sent.
    fn after_flush(&mut self, io: &mut Io, now: Instant) {
        let _ = (io, now);
    }

    /// When the service next needs [`Service::handle_timeout`]; None: not until an
    /// input arrives.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Its deadline came.
    fn handle_timeout(&mut self, io: &mut Io, now: Instant) -> Flow;
}

/// The worker's I/O lent to a service: the registry for its own sockets, the batch
/// (receive slots and send queue), and the list of sources to read again.
pub struct Io {
    registry: Registry,
    pub batch: Batch,
    pub(crate) pending: Vec<Token>,
    pub(crate) ports: Vec<PortInfo>,
    pub(crate) service: ServiceId,
    worker: usize,
}

impl Io {
    pub(crate) fn new(registry: Registry, batch: Batch, worker: usize) -> Self {
        Io {
            registry,
            batch,
            pending: Vec::new(),
            ports: Vec::new(),
            service: 0,
            worker,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The worker's index among the driver's workers.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The service being called.
    pub fn service(&self) -> ServiceId {
        self.service
    }

    /// The token for the calling service's source `kind` number `index`.
    pub fn token(&self, kind: Kind, index: usize) -> Token {
        Tok::new(self.service, kind, index).encode()
    }

    /// Handle `token` again in the next pass, as if it were readable (a source left
    /// with data for fairness, or one that needs a first look).
    pub fn again(&mut self, token: Token) {
        self.pending.push(token);
    }

    /// The worker's UDP ports.
    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }
}
