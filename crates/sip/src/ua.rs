//! The SIP user agent of the gateway (the transaction user, RFC 3261 §8, §12–§15), sans-IO:
//! calls in both directions and registrations at registrars, on top of the
//! [`TransactionLayer`], [`Dialog`](crate::dialog::Dialog), digest and SDP types of this
//! crate. The binary owns the sockets, the clock, the rooms and the media; it feeds
//! datagrams and times in, sends what [`UserAgent::poll_transmit`] returns, and acts on
//! [`UaEvent`]s with the call methods ([`UserAgent::accept`], [`UserAgent::call`], …).
//!
//! Why one object for everything SIP: the transaction layer, the dialogs and the
//! registrations share one Via sent-by, one Contact and one set of transactions, and every
//! call must end with exactly one [`UaEvent::Ended`] after which nothing of it is left (no
//! dialog, no timer; its transactions end by their own timers). Keeping that invariant is
//! easier in one place that sees every message than across layers wired together by the
//! binary.
//!
//! Layout: the public vocabulary and the event loop are here; out-of-dialog requests and
//! inbound calls in [`inbound`](self) (`ua/inbound.rs`), outbound calls in `ua/outbound.rs`,
//! requests inside a call (BYE, re-INVITE, UPDATE, INFO, PRACK, session timers) in
//! `ua/in_dialog.rs`, registrations in `ua/register.rs`, message building in `ua/build.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::digest::{Algorithm, NonceIssuer};
use crate::message::Message;
use crate::sdp::SessionDescription;
use crate::transaction::{self, TransactionLayer, Transmit, Transport, TxError, TxEvent, TxId};

mod build;
mod call;
mod in_dialog;
mod inbound;
mod outbound;
mod register;

pub use register::{Account, RegState};

use call::Call;
use register::Registration;

/// The interval (seconds) below which we refuse a session timer (RFC 4028 `Min-SE`).
pub const MIN_SE: u32 = 90;

/// How the user agent presents itself and its limits.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// Our UDP/TCP listen address; Via sent-by and Contact use `advertised` or this.
    pub local: SocketAddr,
    /// `host[:port]` written in Via/Contact when the reachable address differs (NAT).
    pub advertised: Option<String>,
    /// The port TLS peers reach us on when it is not that of `advertised`/`local` (a TLS
    /// listener of its own): Via and Contact of what is sent over TLS name it, so that a
    /// peer opening a connection back (RFC 3261 §18.2.2, in-dialog requests) finds TLS.
    pub tls_port: Option<u16>,
    /// Our SIP domain (informational; requests for any host are accepted).
    pub domain: Option<String>,
    /// User-Agent / Server header.
    pub user_agent: String,
    /// RFC 4028 interval we ask for and accept (default 1800 s); `None`: no session timer
    /// asked for (a peer's request is still honoured).
    pub session_expires: Option<u32>,
    /// How long a 2xx to an INVITE is retransmitted without an ACK before the call is ended
    /// with a BYE (default 64·T1 = 32 s).
    pub ack_timeout: Duration,
    /// When set, out-of-dialog INVITEs must carry valid digest credentials.
    pub inbound_auth: Option<InboundAuth>,
    pub tx: transaction::Config,
}

impl UaConfig {
    /// Defaults around a listen address.
    pub fn new(local: SocketAddr) -> UaConfig {
        UaConfig {
            local,
            advertised: None,
            tls_port: None,
            domain: None,
            user_agent: "Switchboard".to_owned(),
            session_expires: Some(1800),
            ack_timeout: Duration::from_secs(32),
            inbound_auth: None,
            tx: transaction::Config::default(),
        }
    }
}

/// Digest authentication of inbound calls.
#[derive(Clone)]
pub struct InboundAuth {
    pub realm: String,
    /// `(user, password)`.
    pub users: Vec<(String, String)>,
    pub algorithm: Algorithm,
}

/// Without the passwords (configurations get logged).
impl std::fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("InboundAuth")
            .field("realm", &self.realm)
            .field("users", &users)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// A call of the user agent (ours, not the SIP Call-ID).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A registration of the user agent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegId(pub u64);

/// An outbound call.
#[derive(Clone)]
pub struct Outbound {
    /// Request-URI, e.g. `sip:bob@example.com` or `sip:+4930123@trunk`.
    pub target: String,
    /// From name-addr, e.g. `"Room x" <sip:gw@example.com>` (a tag is added).
    pub from: String,
    /// Next hop (outbound proxy, trunk or the target's host), resolved by the binary.
    pub dest: SocketAddr,
    pub transport: Transport,
    /// `(user, password)` to answer one 401/407 with.
    pub credentials: Option<(String, String)>,
    /// Extra headers, e.g. `("P-Asserted-Identity", "<sip:+4930…@trunk>")`.
    pub headers: Vec<(String, String)>,
    /// Our SDP offer.
    pub offer: SessionDescription,
}

/// Without the password.
impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("target", &self.target)
            .field("from", &self.from)
            .field("dest", &self.dest)
            .field("transport", &self.transport)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReason {
    /// The SIP status that ended it (486, 487, 408, …), `None` for a BYE.
    pub status: Option<u16>,
    pub reason: String,
    pub by: EndedBy,
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndedBy {
    Local,
    Remote,
    Timeout,
    Error,
}

/// What the binary has to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    Registration {
        reg: RegId,
        state: RegState,
    },
    /// A new out-of-dialog INVITE (authentication already checked): answer it with
    /// [`UserAgent::ring`], [`UserAgent::accept`] or [`UserAgent::reject`].
    IncomingCall {
        call: CallId,
        /// The From URI.
        from: String,
        from_display: Option<String>,
        /// The Request-URI's user.
        to_user: Option<String>,
        to_host: String,
        offer: Option<SessionDescription>,
        source: SocketAddr,
        transport: Transport,
    },
    /// Outbound: a 180/183 (with early-media SDP when the response has one).
    Ringing {
        call: CallId,
        status: u16,
        early: Option<SessionDescription>,
    },
    /// Outbound: the 2xx (its answer SDP), ACK already sent. Inbound: our 2xx's ACK came.
    Connected {
        call: CallId,
        remote: Option<SessionDescription>,
    },
    /// An in-dialog re-INVITE or UPDATE with SDP: answer with [`UserAgent::answer_reoffer`].
    Reoffer {
        call: CallId,
        offer: SessionDescription,
    },
    /// The answer to our re-INVITE ([`UserAgent::reoffer`]).
    ReofferAnswered {
        call: CallId,
        answer: Option<SessionDescription>,
        status: u16,
    },
    /// A digit from SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    Dtmf {
        call: CallId,
        digit: char,
        duration_ms: u32,
    },
    /// The call is over and forgotten.
    Ended {
        call: CallId,
        reason: EndReason,
    },
}

/// Why a call method was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    #[error("no such call")]
    UnknownCall,
    #[error("not possible in the call's state")]
    WrongState,
    #[error("another offer/answer exchange is in progress")]
    Busy,
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
    #[error("bad target URI or From: {0}")]
    BadAddress(String),
    #[error("transaction layer: {0}")]
    Tx(#[from] TxError),
}

/// Calls ended, by who ended them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndedCounts {
    pub local: u64,
    pub remote: u64,
    pub timeout: u64,
    pub error: u64,
}

/// Metrics of the user agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UaCounters {
    /// Live calls (any state).
    pub calls: usize,
    /// Live registrations.
    pub registrations: usize,
    /// Client transactions whose answers the user agent still waits for or absorbs.
    pub tracked_transactions: usize,
    pub tx: transaction::Counters,
    pub calls_ended: EndedCounts,
}

/// Who a client or server transaction belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The initial INVITE of an outbound call (its data is in `out_invites`) or the
    /// INVITE server transaction of an inbound call.
    Invite(CallId),
    /// Our re-INVITE with an offer from [`UserAgent::reoffer`].
    Reoffer(CallId),
    /// Our session refresh (UPDATE or re-INVITE).
    Refresh(CallId),
    /// Requests whose answer changes nothing (BYE, INFO, PRACK, CANCEL).
    Ignore,
    Register(RegId),
}

/// The sans-IO user agent. See the module doc.
pub struct UserAgent {
    cfg: UaConfig,
    tx: TransactionLayer,
    start: Instant,
    unix_start: u64,
    now: Instant,
    next_id: u64,
    calls: BTreeMap<CallId, Call>,
    /// `(SIP Call-ID, our tag)` → call.
    dialogs: HashMap<(String, String), CallId>,
    owners: HashMap<TxId, Owner>,
    out_invites: HashMap<TxId, outbound::OutInvite>,
    regs: BTreeMap<RegId, Registration>,
    events: VecDeque<UaEvent>,
    issuer: Option<NonceIssuer>,
    ended: EndedCounts,
}

impl UserAgent {
    pub fn new(cfg: UaConfig, now: Instant) -> UserAgent {
        let issuer = cfg.inbound_auth.as_ref().map(|a| {
            let key = switchboard_util::random_hex(16);
            NonceIssuer::new(key.as_bytes(), &a.realm, a.algorithm, 300)
        });
        UserAgent {
            tx: TransactionLayer::new(cfg.tx),
            cfg,
            start: now,
            unix_start: switchboard_util::unix_now(),
            now,
            next_id: 1,
            calls: BTreeMap::new(),
            dialogs: HashMap::new(),
            owners: HashMap::new(),
            out_invites: HashMap::new(),
            regs: BTreeMap::new(),
            events: VecDeque::new(),
            issuer,
            ended: EndedCounts::default(),
        }
    }

    pub fn config(&self) -> &UaConfig {
        &self.cfg
    }

    /// A datagram (or a stream frame) from `source`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) {
        let now = self.clock(now);
        self.tx.handle_datagram(now, bytes, source, transport);
        self.drain_tx_events(now);
        self.forget_ended_transactions();
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        // Ours first: an unanswered INVITE is answered 408 by us before the layer's Timer C.
        let due: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.next_wake().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.call_timers(now, id);
        }
        let due: Vec<RegId> = self
            .regs
            .iter()
            .filter(|(_, r)| r.next_wake().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.reg_timer(now, id);
        }
        self.tx.handle_timeout(now);
        self.drain_tx_events(now);
        self.forget_ended_transactions();
    }

    /// Transactions that ended by their own timers without telling us (Accepted INVITEs,
    /// completed non-INVITEs) are no longer owned.
    fn forget_ended_transactions(&mut self) {
        let tx = &self.tx;
        self.owners.retain(|id, _| tx.contains(*id));
        self.out_invites.retain(|id, _| tx.contains(*id));
    }

    /// The driver could not send a transmit of transaction `tx` (ICMP error, refused or
    /// closed connection): the transaction ends as a 503, and what it was for with it (an
    /// outbound call ends with [`EndedBy::Error`], a registration is retried later).
    pub fn transport_error(&mut self, now: Instant, tx: TxId) {
        let now = self.clock(now);
        self.tx.transport_error(tx);
        self.drain_tx_events(now);
        self.forget_ended_transactions();
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// When [`UserAgent::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(Call::next_wake);
        let regs = self.regs.values().filter_map(Registration::next_wake);
        let first = calls.chain(regs).chain(self.tx.poll_timeout()).min()?;
        Some(first.max(self.now))
    }

    pub fn counters(&self) -> UaCounters {
        UaCounters {
            calls: self.calls.len(),
            registrations: self.regs.len(),
            tracked_transactions: self.owners.len() + self.out_invites.len(),
            tx: self.tx.counters(),
            calls_ended: self.ended,
        }
    }

    // ---- shared plumbing ----

    fn clock(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Unix seconds at `now` (for the stateless nonces).
    fn unix_at(&self, now: Instant) -> u64 {
        self.unix_start + now.saturating_duration_since(self.start).as_secs()
    }

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(event) = self.tx.poll_event() {
            self.on_tx_event(now, event);
        }
    }

    fn on_tx_event(&mut self, now: Instant, event: TxEvent) {
        match event {
            TxEvent::Request {
                tx,
                request,
                source,
                transport,
            } => self.on_request(now, tx, request, source, transport),
            TxEvent::Ack { request, .. } => self.on_ack(now, &request),
            TxEvent::Response { tx, response } => {
                let Message::Response(r) = &response else {
                    return;
                };
                let status = r.status;
                let owner = self.owners.get(&tx).copied();
                // INVITE owners stay for the 2xx retransmissions (until the layer ends them).
                if status >= 200 && matches!(owner, Some(Owner::Register(_) | Owner::Ignore)) {
                    self.owners.remove(&tx);
                }
                match owner {
                    Some(Owner::Invite(_)) => self.on_invite_response(now, tx, response),
                    Some(Owner::Register(reg)) => {
                        self.on_register_response(now, reg, tx, &response)
                    }
                    Some(Owner::Reoffer(call)) => {
                        self.on_reoffer_response(now, call, tx, &response)
                    }
                    Some(Owner::Refresh(call)) => {
                        self.on_refresh_response(now, call, tx, &response)
                    }
                    Some(Owner::Ignore) | None => {}
                }
            }
            TxEvent::Cancelled { invite, .. } => self.on_cancelled(now, invite),
            TxEvent::Timeout { tx } | TxEvent::TransportError { tx } => {
                let timeout = matches!(event, TxEvent::Timeout { .. });
                self.on_tx_failed(now, tx, timeout);
            }
        }
    }

    fn on_tx_failed(&mut self, now: Instant, tx: TxId, timeout: bool) {
        let owner = self.owners.remove(&tx);
        self.out_invites.remove(&tx);
        let (status, reason, by) = if timeout {
            (408, "Request Timeout", EndedBy::Timeout)
        } else {
            (503, "Transport Error", EndedBy::Error)
        };
        match owner {
            Some(Owner::Invite(call)) => {
                let outbound = self.calls.get(&call).is_some_and(|c| c.out.is_some());
                // A server INVITE times out only after its final answer (no ACK): the call
                // already ended then.
                if outbound {
                    self.end_call(call, Some(status), reason, by);
                }
            }
            Some(Owner::Reoffer(call)) | Some(Owner::Refresh(call)) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.our_invite = None;
                }
                self.bye_and_end(now, call, Some(status), reason, by);
            }
            Some(Owner::Register(reg)) => self.on_register_failed(now, reg, tx, reason),
            Some(Owner::Ignore) | None => {}
        }
    }

    /// Forgets a call and reports it ended (once: a call not in the table is not reported).
    fn end_call(&mut self, call: CallId, status: Option<u16>, reason: &str, by: EndedBy) {
        let Some(c) = self.calls.remove(&call) else {
            return;
        };
        self.dialogs
            .remove(&(c.sip_call_id.clone(), c.local_tag.clone()));
        match by {
            EndedBy::Local => self.ended.local += 1,
            EndedBy::Remote => self.ended.remote += 1,
            EndedBy::Timeout => self.ended.timeout += 1,
            EndedBy::Error => self.ended.error += 1,
        }
        self.events.push_back(UaEvent::Ended {
            call,
            reason: EndReason {
                status,
                reason: reason.to_owned(),
                by,
            },
        });
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dialog;
#[cfg(test)]
mod tests_raw;
#[cfg(test)]
mod tests_register;
