//! Transports for the signaling hub: WebSocket at `/ws`, and EventSource at `/sse` with
//! `POST /signal` as the fallback. They stay thin: each feeds the sans-IO
//! [`switchboard_signal::Hub`] and writes out what it returns.

use crate::origin::OriginPolicy;
use switchboard_signal::{ConnId, ErrorCode, Hub, HubConfig, HubStats, Output};

use crate::outbox::Outbox;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the server pings a WebSocket (and comments an SSE stream).
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Silence after which a WebSocket counts as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Largest WebSocket frame or POST body read at all; the hub's own limit is lower.
pub const TRANSPORT_LIMIT: usize = 1 << 20;
/// Messages queued for one connection before it counts as too slow and is cut off
/// (its session is suspended and can resume with nothing lost).
const QUEUE: usize = 512;

/// What a transport task writes.
#[derive(Debug)]
pub enum Out {
    Text(Arc<str>),
    Close(u16),
}

struct Inner {
    hub: Hub,
    senders: HashMap<ConnId, Arc<Outbox>>,
    /// SSE capabilities (`conn` of `/signal?conn=`) to connections, and back.
    sse: HashMap<String, ConnId>,
    sse_tokens: HashMap<ConnId, String>,
    /// Reused for every batch of hub outputs.
    scratch: Vec<Output>,
}

/// Shared signaling state of one server.
pub struct Signaling {
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
    pub(crate) origin: OriginPolicy,
}

/// A gauge snapshot for metrics.
#[derive(Debug, Clone, Default)]
pub struct SignalingSnapshot {
    pub connections: usize,
    pub sessions: usize,
    pub suspended: usize,
    pub rooms: usize,
    pub stats: HubStats,
}

/// The hub locked, with the duty to carry out its outputs when done.
pub(crate) struct Locked<'a>(MutexGuard<'a, Inner>);

impl Locked<'_> {
    pub fn hub(&mut self) -> &mut Hub {
        &mut self.0.hub
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let inner = &mut *self.0;
        let mut outputs = std::mem::take(&mut inner.scratch);
        outputs.extend(inner.hub.drain_outputs());
        for o in outputs.drain(..) {
            match o {
                Output::Send { conn, text } => {
                    let Some(tx) = inner.senders.get(&conn) else {
                        continue;
                    };
                    if !tx.push(Out::Text(text), QUEUE) {
                        // Too slow or gone: drop the transport; the session waits for a resume.
                        if let Some(tx) = inner.senders.remove(&conn) {
                            tx.close();
                        }
                        inner.hub.disconnect(conn, Instant::now());
                    }
                }
                Output::Close { conn, code } => {
                    if let Some(tx) = inner.senders.remove(&conn) {
                        tx.push(Out::Close(code), usize::MAX);
                        tx.close();
                    }
                }
            }
        }
        inner.scratch = outputs;
    }
}

impl Signaling {
    pub fn new(cfg: HubConfig, origin: OriginPolicy) -> Arc<Signaling> {
        Arc::new(Signaling {
            inner: Mutex::new(Inner {
                hub: Hub::new(cfg),
                senders: HashMap::new(),
                sse: HashMap::new(),
                sse_tokens: HashMap::new(),
                scratch: Vec::new(),
            }),
            next_conn: AtomicU64::new(1),
            origin,
        })
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Register a new transport; returns its id and the queue its task drains.
    pub(crate) fn open(&self) -> (ConnId, Arc<Outbox>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::default());
        let mut l = self.lock();
        l.0.senders.insert(conn, outbox.clone());
        l.hub().connect(conn, Instant::now());
        (conn, outbox)
    }

    /// A transport ended (any side): suspend its session.
    pub(crate) fn close(&self, conn: ConnId) {
        let mut l = self.lock();
        if let Some(tx) = l.0.senders.remove(&conn) {
            tx.close();
        }
        if let Some(token) = l.0.sse_tokens.remove(&conn) {
            l.0.sse.remove(&token);
        }
        l.hub().disconnect(conn, Instant::now());
    }

    pub(crate) fn receive(&self, conn: ConnId, text: &str) {
        self.lock()
            .hub()
            .receive(conn, text, Instant::now(), switchboard_util::unix_now());
    }

    pub(crate) fn report(&self, conn: ConnId, code: ErrorCode, reason: &str, fatal: bool) {
        self.lock().hub().report(conn, code, reason, fatal);
    }

    pub(crate) fn register_sse(&self, token: String, conn: ConnId) {
        let mut l = self.lock();
        l.0.sse_tokens.insert(conn, token.clone());
        l.0.sse.insert(token, conn);
    }

    pub(crate) fn sse_conn(&self, token: &str) -> Option<ConnId> {
        self.lock().0.sse.get(token).copied()
    }

    /// Apply new hub settings (SIGHUP).
    pub fn reconfigure(&self, cfg: HubConfig) {
        self.lock().hub().set_config(cfg);
    }

    /// Tell every client the server stops.
    pub fn shutdown(&self) {
        self.lock().hub().shutdown();
    }

    pub fn snapshot(&self) -> SignalingSnapshot {
        let mut l = self.lock();
        let (connections, sessions, suspended, rooms) = l.hub().counts();
        SignalingSnapshot {
            connections,
            sessions,
            suspended,
            rooms,
            stats: l.hub().stats().clone(),
        }
    }

    /// End sessions whose grace ran out, once a second, for as long as the runtime lives.
    pub fn spawn_timer(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(s) = me.upgrade() else { return };
                s.lock().hub().handle_timeout(Instant::now());
            }
        });
    }
}
