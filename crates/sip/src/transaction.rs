//! The RFC 3261 §17 transaction layer, sans-IO: every client and server transaction of one
//! SIP endpoint, fed parsed messages (or raw datagrams) and `Instant`s, returning the bytes
//! to send ([`TransactionLayer::poll_transmit`]), the events for the transaction user
//! ([`TransactionLayer::poll_event`]) and when to call back ([`TransactionLayer::poll_timeout`]).
//!
//! Why here and by hand: the transaction layer is the core of the gateway's reliability
//! (retransmissions over UDP, absorbing duplicates, timeouts that free calls), and the
//! crates that have one (ezk-sip-core, rsipstack) drive it from tokio tasks with their own
//! sockets and clocks, which the sans-IO rule of the repo excludes.
//!
//! What it implements:
//! - client INVITE (Calling → Proceeding → Completed / Accepted, timers A, B, D and
//!   RFC 6026's M), client non-INVITE (Trying → Proceeding → Completed, E, F, K), server
//!   INVITE (Proceeding → Completed → Confirmed, or Accepted; G, H, I, L, and a `100 Trying`
//!   sent by the layer when the TU has not answered within 200 ms), server non-INVITE
//!   (Trying → Proceeding → Completed, J). Over reliable transports nothing is retransmitted
//!   and D, I, J, K are zero.
//! - Matching (§17.1.3, §17.2.3): responses by the top Via branch and the CSeq method;
//!   requests by branch, sent-by and method (ACK matches its INVITE). Requests whose branch
//!   lacks the RFC 3261 magic cookie `z9hG4bK` (RFC 2543 peers) are **refused with 400**
//!   (an ACK is dropped) rather than matched the old way: no peer of the lab or the trunks
//!   in the research sends them, and the old matching needs the whole request kept.
//! - CANCEL (§9.2): answered by the layer itself (200 when it matches an INVITE server
//!   transaction, 481 otherwise, as its own server transaction); the TU gets
//!   [`TxEvent::Cancelled`] naming the INVITE's transaction and answers that INVITE 487.
//!   A CANCEL of a non-INVITE request is answered 481 (§9.1 says not to send those).
//! - ACK for a non-2xx final response is built and sent by the client INVITE transaction;
//!   2xx responses and ACKs for 2xx go to the TU (the dialog layer), which sends its ACK
//!   with [`TransactionLayer::send_stateless`].
//! - Bounds: at most [`Config::max_transactions`] live transactions (beyond it a new
//!   server transaction is refused with 503, counted), output queues capped at
//!   [`Config::max_queued`] (overflow dropped, counted), and every transaction ends when
//!   only time passes: a TU that never answers an INVITE, or a peer that never answers
//!   ours past a provisional response, is bounded by [`Config::timer_c`].
//!
//! Responses of a server transaction go back to the address and transport the request came
//! from (symmetric response routing as in RFC 3581), which is what works behind NAT; the
//! top Via of every request handed to the TU is stamped with `received` (§18.2.1) and a
//! requested `rport` filled in, so responses built with [`response_to`] say so too.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::message::Message;

mod build;
mod client;
mod server;
mod types;

pub use build::response_to;
pub use types::{Config, Counters, Transmit, Transport, TxError, TxEvent, TxId};

/// The RFC 3261 branch prefix that says "this branch is unique" (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

/// Matching key: branch, sent-by (servers only; empty for clients), method (ACK as INVITE).
type Key = (String, String, String);

struct Tx {
    kind: Kind,
    state: State,
    key: Key,
    created: Instant,
    peer: SocketAddr,
    transport: Transport,
    /// Client: the request sent; server: the request received.
    request: Message<'static>,
    /// Client: the request's bytes.
    request_bytes: Arc<[u8]>,
    /// Client INVITE: the ACK for a non-2xx; server: the last response sent.
    reply: Option<Arc<[u8]>>,
    /// Next retransmission and the interval that led to it.
    retransmit: Option<(Instant, Duration)>,
    /// The end of the state (B, D, F, H, I, J, K, L, M or Timer C); what happens then
    /// depends on the state.
    deadline: Option<Instant>,
    /// Server INVITE: when to send `100 Trying` if the TU has not answered.
    trying_at: Option<Instant>,
    /// The instant this transaction is filed under in the timer index.
    wake: Option<Instant>,
}

impl Tx {
    fn next_wake(&self) -> Option<Instant> {
        [
            self.retransmit.map(|(at, _)| at),
            self.deadline,
            self.trying_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// All transactions of one endpoint. See the module doc.
pub struct TransactionLayer {
    config: Config,
    next_id: u64,
    txs: HashMap<TxId, Tx>,
    keys: HashMap<Key, TxId>,
    timers: BTreeSet<(Instant, TxId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    counters: Counters,
    /// The latest `now` seen: time never goes back inside the layer.
    now: Option<Instant>,
}

impl TransactionLayer {
    pub fn new(config: Config) -> Self {
        TransactionLayer {
            config,
            next_id: 1,
            txs: HashMap::new(),
            keys: HashMap::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            now: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether a transaction is still live.
    pub fn contains(&self, tx: TxId) -> bool {
        self.txs.contains_key(&tx)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// When [`TransactionLayer::handle_timeout`] is next due (never before the latest `now`
    /// passed in).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let first = self.timers.first().map(|(at, _)| *at)?;
        Some(match self.now {
            Some(now) => first.max(now),
            None => first,
        })
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, id));
            if let Some(tx) = self.txs.get_mut(&id) {
                tx.wake = None;
            }
            self.run_timers(id, now);
            self.reschedule(id);
        }
    }

    /// Sends a message outside any transaction (the TU's ACK for a 2xx, §13.2.2.4).
    pub fn send_stateless(
        &mut self,
        message: &Message<'_>,
        dest: SocketAddr,
        transport: Transport,
    ) {
        let mut bytes = Vec::new();
        message.to_bytes(&mut bytes);
        self.transmit(None, dest, transport, bytes.into());
    }

    /// The driver could not send a transaction's bytes (connection refused, ICMP error,
    /// closed stream): the transaction ends with [`TxEvent::TransportError`].
    pub fn transport_error(&mut self, tx: TxId) {
        if self.txs.contains_key(&tx) {
            self.counters.transport_errors += 1;
            self.event(TxEvent::TransportError { tx });
            self.terminate(tx);
        }
    }

    /// Parses a datagram (or a frame of a stream) and handles it. A request that does not
    /// parse is answered 400 (or 413/505/416 as the error says) when its Via, From, To,
    /// Call-ID and CSeq can still be read; anything else unparseable is dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) {
        match Message::parse_with(bytes, &self.config.limits) {
            Ok(message) => self.handle_message(now, message, source, transport),
            Err(crate::message::ParseError::Empty) => {}
            Err(e) => {
                self.clock(now);
                if let Some(answer) = build::stateless_error(bytes, e.status(), e.reason()) {
                    self.counters.bad_requests += 1;
                    self.transmit(None, source, transport, answer.into());
                } else {
                    self.counters.stray += 1;
                }
            }
        }
    }

    /// Handles a parsed message.
    pub fn handle_message(
        &mut self,
        now: Instant,
        message: Message<'_>,
        source: SocketAddr,
        transport: Transport,
    ) {
        let now = self.clock(now);
        match message {
            Message::Request(_) => self.on_request(now, message, source, transport),
            Message::Response(_) => self.on_response(now, message),
        }
    }

    // ---- plumbing shared by the client and server halves ----

    fn clock(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(last) => last.max(now),
            None => now,
        };
        self.now = Some(now);
        now
    }

    fn transmit(
        &mut self,
        tx: Option<TxId>,
        dest: SocketAddr,
        transport: Transport,
        bytes: Arc<[u8]>,
    ) {
        if self.transmits.len() >= self.config.max_queued {
            self.counters.dropped += 1;
            return;
        }
        self.transmits.push_back(Transmit {
            tx,
            dest,
            transport,
            bytes,
        });
    }

    fn event(&mut self, event: TxEvent) {
        if self.events.len() >= self.config.max_queued {
            self.counters.dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// Sends the transaction's bytes of `which` again (counted as a retransmission).
    fn resend(&mut self, id: TxId, which: Resend) {
        let Some(tx) = self.txs.get(&id) else {
            return;
        };
        let bytes = match which {
            Resend::Request => Some(tx.request_bytes.clone()),
            Resend::Reply => tx.reply.clone(),
        };
        if let Some(bytes) = bytes {
            let (dest, transport) = (tx.peer, tx.transport);
            self.counters.retransmissions += 1;
            self.transmit(Some(id), dest, transport, bytes);
        }
    }

    fn live_count(&mut self, kind: Kind) -> &mut usize {
        let c = &mut self.counters;
        match kind {
            Kind::InviteClient => &mut c.live_client_invite,
            Kind::NonInviteClient => &mut c.live_client_non_invite,
            Kind::InviteServer => &mut c.live_server_invite,
            Kind::NonInviteServer => &mut c.live_server_non_invite,
        }
    }

    fn at_limit(&self) -> bool {
        self.txs.len() >= self.config.max_transactions
    }

    fn insert(&mut self, tx: Tx) -> TxId {
        let id = TxId(self.next_id);
        self.next_id += 1;
        *self.live_count(tx.kind) += 1;
        self.keys.insert(tx.key.clone(), id);
        self.txs.insert(id, tx);
        self.reschedule(id);
        id
    }

    fn terminate(&mut self, id: TxId) {
        if let Some(tx) = self.txs.remove(&id) {
            *self.live_count(tx.kind) -= 1;
            if self.keys.get(&tx.key) == Some(&id) {
                self.keys.remove(&tx.key);
            }
            if let Some(at) = tx.wake {
                self.timers.remove(&(at, id));
            }
        }
    }

    /// Files the transaction under its next timer (after any change of its timers).
    fn reschedule(&mut self, id: TxId) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let next = tx.next_wake();
        if next == tx.wake {
            return;
        }
        if let Some(old) = tx.wake {
            self.timers.remove(&(old, id));
        }
        tx.wake = next;
        if let Some(at) = next {
            self.timers.insert((at, id));
        }
    }

    /// Ends the state after `wait`, or at once when `wait` is zero (reliable transports).
    fn end_after(&mut self, id: TxId, now: Instant, wait: Duration) {
        if wait.is_zero() {
            self.terminate(id);
        } else if let Some(tx) = self.txs.get_mut(&id) {
            tx.retransmit = None;
            tx.deadline = Some(now + wait);
        }
    }

    /// 64·T1: timers B, F, H, J (UDP), L, M.
    fn timeout_64t1(&self) -> Duration {
        self.config.t1.saturating_mul(64)
    }

    fn run_timers(&mut self, id: TxId, now: Instant) {
        let Some(tx) = self.txs.get(&id) else {
            return;
        };
        let trying_due = tx.trying_at.is_some_and(|at| at <= now);
        let retransmit_due = tx.retransmit.filter(|(at, _)| *at <= now);
        let deadline_due = tx.deadline.is_some_and(|at| at <= now);
        if trying_due {
            self.send_trying(id);
        }
        if let Some((at, interval)) = retransmit_due {
            self.retransmit_timer(id, now, at, interval);
        }
        if deadline_due {
            self.deadline_timer(id, now);
        }
    }

    /// Timers A, E (client) and G (server).
    fn retransmit_timer(&mut self, id: TxId, now: Instant, at: Instant, interval: Duration) {
        let t2 = self.config.t2;
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        let which = match tx.kind {
            Kind::InviteClient | Kind::NonInviteClient => Resend::Request,
            Kind::InviteServer | Kind::NonInviteServer => Resend::Reply,
        };
        let grow = |i: Duration| match (tx.kind, tx.state) {
            // Timer A doubles without a cap (§17.1.1.2).
            (Kind::InviteClient, _) => i.saturating_mul(2),
            // Timer E in Proceeding fires every T2 (§17.1.2.2).
            (Kind::NonInviteClient, State::Proceeding) => t2,
            _ => i.saturating_mul(2).min(t2),
        };
        let mut next_interval = grow(interval);
        let mut next = at + next_interval;
        // A late call skips the retransmissions it missed instead of bursting them.
        while next <= now {
            next_interval = grow(next_interval);
            next += next_interval;
        }
        tx.retransmit = Some((next, next_interval));
        self.resend(id, which);
    }

    fn deadline_timer(&mut self, id: TxId, now: Instant) {
        let Some(tx) = self.txs.get(&id) else {
            return;
        };
        match (tx.kind, tx.state) {
            (Kind::InviteServer, State::Proceeding) => {
                // Timer C: the TU never answered; answer for it so that the caller stops.
                let mut response = response_to(&tx.request, 408, "Request Timeout");
                server::add_to_tag(&mut response);
                // Cannot fail: a server INVITE in Proceeding accepts a final response.
                let _ = self.respond(now, id, response);
            }
            (Kind::InviteClient, State::Calling | State::Proceeding)
            | (Kind::NonInviteClient, State::Trying | State::Proceeding)
            | (Kind::InviteServer, State::Completed)
            | (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                self.counters.timeouts += 1;
                self.event(TxEvent::Timeout { tx: id });
                self.terminate(id);
            }
            _ => self.terminate(id),
        }
    }
}

#[derive(Clone, Copy)]
enum Resend {
    Request,
    Reply,
}

#[cfg(test)]
mod tests;
