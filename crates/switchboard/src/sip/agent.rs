//! The gateway's SIP signaling, as one task: the UDP socket, the sans-IO
//! `switchboard_sip::ua::UserAgent` (transactions, dialogs, registrations), and the
//! decisions the UA leaves to its user: which room a call joins (dispatch.rs), its RTP
//! port and SDP answer, and one media task per call (call.rs). Signaling is light: one
//! task carries every call's; the media of each call runs in its own task.
//!
//! The UA names a transport and an address for each message; the agent picks the
//! socket: UDP, the stream connection of that peer, or (TCP and TLS) a connection it
//! opens (`agent/conns.rs`, `connect.rs`).

use super::call::{call_label, AgentCmd, CallCmd};
use super::connect::Dialer;
use super::dtls_leg;
use super::federation::{self, FederationCalls};
use super::flood::Flood;
use super::outbound::{host_name, Target};
use super::ports::RtpPorts;
use super::room_leg::SfuAccess;
use super::stream::{ConnId, ConnKey, StreamEvent};
use super::SipStats;
use crate::config::sip::SipConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_signal::Signaling;
use switchboard_sip::digest::Algorithm;
use switchboard_sip::sdp::{LocalAudio, SdpSession, SessionDescription};
use switchboard_sip::transaction::{Transport, TxId};
use switchboard_sip::ua::{
    Account, CallId, EndReason, InboundAuth, RegId, RegState, UaConfig, UaEvent, UserAgent,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};

mod conns;
mod setup;

/// How long a stop waits for unregistrations and BYEs to be answered.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the service tells the agent.
pub struct Control {
    /// true: draining (refuse new calls); the sender dropped: stop.
    pub draining: watch::Receiver<bool>,
    /// Calls the app places and hangs up (`POST`/`DELETE /api/sip/calls`).
    pub api: UnboundedReceiver<ApiCmd>,
    /// SIP over TCP, TLS and WebSocket connections (stream.rs).
    pub streams: UnboundedReceiver<StreamEvent>,
    /// What the federation handles ask (`federation/`).
    pub federation: UnboundedReceiver<federation::Command>,
}

/// A request of the HTTP API, with where its answer goes.
pub enum ApiCmd {
    /// Call `target` from `room`, shown in the room as `name`: the call's label, or
    /// (status, reason).
    Dial {
        room: String,
        name: String,
        target: Box<Target>,
        dest: SocketAddr,
        reply: oneshot::Sender<Result<String, (u16, String)>>,
    },
    /// Hang up the call labelled `call` of `room`: false when there is none.
    Hangup {
        room: String,
        call: String,
        reply: oneshot::Sender<bool>,
    },
}

/// A call the agent knows.
struct CallEntry {
    room: String,
    /// The call's media task (None once it ended).
    media: Option<UnboundedSender<CallCmd>>,
    sdp: SdpSession,
    local: LocalAudio,
    /// Inbound: our answer, sent when the room is joined.
    answer: Option<SessionDescription>,
    /// Outbound: our offer, to read the answer against.
    offer: Option<SessionDescription>,
    /// A DTLS-SRTP call's answer: what every re-offer gets (the DTLS leg keeps ICE and DTLS
    /// going; a re-INVITE of such a phone updates its default candidate).
    dtls_answer: Option<SessionDescription>,
    /// Outbound with `srtp=dtls`: our side of the DTLS-SRTP offer (the answer must be
    /// DTLS-SRTP; re-offers are answered with these terms).
    dtls_offer: Option<dtls_leg::LocalTerms>,
    /// Outbound over TCP/TLS: the connection to the next hop, kept while the call lasts.
    conn: Option<ConnKey>,
    /// Outbound with `srtp=sdes`: media must stay SRTP (no answer or re-offer may drop it).
    srtp_required: bool,
    /// Why the gateway ended the call itself (an answer it could not take), for the room.
    failure: Option<String>,
}

/// An open stream connection.
struct Conn {
    id: ConnId,
    tx: UnboundedSender<Arc<[u8]>>,
    /// The gateway opened it (and closes it when unused).
    ours: bool,
}

impl CallEntry {
    fn tell(&self, cmd: CallCmd) {
        if let Some(tx) = &self.media {
            let _ = tx.send(cmd);
        }
    }
}

/// Everything the agent task runs with.
pub struct Agent {
    pub cfg: Arc<SipConfig>,
    pub sock: UdpSocket,
    pub signaling: Arc<Signaling>,
    /// The room's SFU on this host (None: the SFU is off and calls are refused).
    pub sfu: Option<SfuAccess>,
    pub ports: Arc<RtpPorts>,
    pub stats: Arc<SipStats>,
    pub dialer: Dialer,
    /// The TLS listener's port, when there is one.
    pub tls_port: Option<u16>,
    /// `--call-domain`: INVITEs to it may be federated calls.
    pub call_domain: String,
    /// Who takes federated calls (`SipService::federation`).
    pub federation: tokio::sync::watch::Receiver<
        Option<tokio::sync::mpsc::Sender<federation::FederationEvent>>,
    >,
}

struct State {
    cfg: Arc<SipConfig>,
    ua: UserAgent,
    /// Open stream connections, by transport and peer.
    conns: HashMap<ConnKey, Conn>,
    dialer: Dialer,
    /// Connections being opened: the transactions whose request waits in them.
    connecting: HashMap<ConnId, Vec<TxId>>,
    /// The name a TLS next hop's certificate must carry, by address.
    tls_names: HashMap<SocketAddr, String>,
    /// Connections the gateway opened that nothing uses any more, since when.
    unused: HashMap<ConnKey, Instant>,
    /// Registrations over TCP/TLS: their connection.
    reg_conns: HashMap<RegId, ConnKey>,
    flood: Flood,
    calls: HashMap<CallId, CallEntry>,
    /// Direct calls with other Switchboards (no room, no media here).
    federation: FederationCalls,
    regs: HashMap<RegId, (String, RegState)>,
    signaling: Arc<Signaling>,
    sfu: Option<SfuAccess>,
    ports: Arc<RtpPorts>,
    stats: Arc<SipStats>,
    to_agent: UnboundedSender<AgentCmd>,
    draining: bool,
    /// The service's drain flag, read when a call comes: set before the supervisor says
    /// it drains, so no call is taken after that (the loop's copy may lag a message).
    drain_watch: watch::Receiver<bool>,
    pins: Arc<[(String, String)]>,
}

/// `tls_port`: the TLS listener's port (`--sip-tls-listen`), for what goes over TLS.
fn ua_config(cfg: &SipConfig, local: SocketAddr, tls_port: Option<u16>) -> UaConfig {
    let inbound_auth = (!cfg.auth.is_empty()).then(|| InboundAuth {
        realm: cfg.advertise.clone(),
        users: cfg.auth.clone(),
        algorithm: Algorithm::Md5,
    });
    UaConfig {
        local,
        advertised: Some(cfg.advertise.clone()),
        tls_port,
        domain: None,
        user_agent: format!("switchboard/{}", env!("CARGO_PKG_VERSION")),
        session_expires: Some(1800),
        ack_timeout: Duration::from_secs(32),
        inbound_auth,
        tx: switchboard_sip::transaction::Config {
            t1: cfg.t1,
            ..Default::default()
        },
    }
}

impl Agent {
    /// Serve until `control`'s sender is dropped; then unregister every account, hang
    /// up every call and wait (at most 3 s) for the answers.
    pub async fn run(self, control: Control) {
        let Control {
            mut draining,
            mut api,
            mut streams,
            federation: mut federation_rx,
        } = control;
        let local = self.sock.local_addr().unwrap_or(self.cfg.listen);
        let now = Instant::now();
        let (to_agent, mut from_calls) = unbounded_channel();
        let mut st = State {
            ua: UserAgent::new(ua_config(&self.cfg, local, self.tls_port), now),
            conns: HashMap::new(),
            dialer: self.dialer,
            connecting: HashMap::new(),
            tls_names: HashMap::new(),
            unused: HashMap::new(),
            reg_conns: HashMap::new(),
            flood: Flood::new(self.cfg.rate_limit),
            cfg: self.cfg.clone(),
            calls: HashMap::new(),
            federation: FederationCalls::new(self.call_domain, self.cfg.max_calls, self.federation),
            regs: HashMap::new(),
            signaling: self.signaling,
            sfu: self.sfu,
            ports: self.ports,
            stats: self.stats,
            to_agent,
            draining: false,
            drain_watch: draining.clone(),
            pins: self.cfg.pins.clone().into(),
        };
        for a in &self.cfg.accounts {
            let account = Account {
                aor: format!("sip:{}@{}", a.user, a.host),
                username: a.user.clone(),
                password: a.password.clone(),
                registrar: a.registrar,
                transport: a.transport,
                expires: a.expires,
                contact_user: a.user.clone(),
            };
            if a.transport == Transport::Tls {
                st.tls_names.insert(a.registrar, host_name(&a.host));
            }
            let id = st.ua.register(now, account);
            if a.transport != Transport::Udp {
                st.reg_conns.insert(id, (a.transport, a.registrar));
            }
            st.regs.insert(
                id,
                (format!("{}@{}", a.user, a.host), RegState::Registering),
            );
        }
        let sock = self.sock;
        let mut buf = vec![0u8; 65_536];
        let mut stopping: Option<Instant> = None;
        loop {
            st.flush(&sock);
            if let Some(since) = stopping {
                if st.settled() || since.elapsed() > STOP_GRACE {
                    break;
                }
            }
            let mut deadline = st
                .ua
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            if !st.unused.is_empty() {
                // Unused connections are looked at again within a second.
                deadline = deadline.min(Instant::now() + Duration::from_secs(1));
            }
            let grace = stopping.map_or(deadline, |s| deadline.min(s + STOP_GRACE));
            tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => st.receive(&buf[..n], (Transport::Udp, from)),
                    Err(e) => tracing::debug!(error = %e, "SIP socket"),
                },
                Some(ev) = streams.recv() => st.on_stream(ev),
                _ = tokio::time::sleep_until(grace.into()) => st.ua.handle_timeout(Instant::now()),
                Some(cmd) = from_calls.recv() => st.on_call(cmd),
                Some(cmd) = api.recv() => st.on_api(cmd),
                Some(cmd) = federation_rx.recv() => st.on_federation(cmd),
                changed = draining.changed(), if stopping.is_none() => {
                    match changed {
                        Ok(()) => st.draining = *draining.borrow(),
                        Err(_) => {
                            st.stop();
                            stopping = Some(Instant::now());
                        }
                    }
                }
            }
        }
        tracing::info!("SIP gateway stopped");
    }
}

impl State {
    /// Draining or stopping: new calls are refused.
    fn refusing(&self) -> bool {
        self.draining || *self.drain_watch.borrow()
    }

    /// A message from a peer, unless it floods.
    fn receive(&mut self, bytes: &[u8], (transport, from): ConnKey) {
        if !self.flood.admit(from.ip(), Instant::now()) {
            self.stats.flood_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.ua
            .handle_datagram(Instant::now(), bytes, from, transport);
    }

    /// Send what the UA has to send, act on its events, publish its counters.
    fn flush(&mut self, sock: &UdpSocket) {
        loop {
            let mut progress = false;
            while let Some(t) = self.ua.poll_transmit() {
                progress = true;
                if t.transport == Transport::Udp {
                    // UDP: a lost datagram is what retransmissions are for.
                    if let Err(e) = sock.try_send_to(&t.bytes, t.dest) {
                        tracing::debug!(dest = %t.dest, error = %e, "SIP send failed");
                    }
                } else {
                    self.send_stream(t);
                }
            }
            while let Some(ev) = self.ua.poll_event() {
                progress = true;
                self.on_event(ev);
            }
            if !progress {
                break;
            }
        }
        self.close_unused();
        let c = self.ua.counters();
        self.stats
            .calls_live
            .store(self.calls.len() + self.federation.len(), Ordering::Relaxed);
        self.stats.dialogs_live.store(c.calls, Ordering::Relaxed);
        self.stats
            .transactions_live
            .store(c.tx.live(), Ordering::Relaxed);
        let registered = self
            .regs
            .values()
            .filter(|(_, s)| matches!(s, RegState::Registered { .. }))
            .count();
        self.stats.registered.store(registered, Ordering::Relaxed);
    }

    /// Nothing left to wait for after a stop.
    fn settled(&self) -> bool {
        self.calls.is_empty()
            && self.federation.is_empty()
            && self
                .regs
                .values()
                .all(|(_, s)| !matches!(s, RegState::Registering | RegState::Registered { .. }))
    }

    fn stop(&mut self) {
        let now = Instant::now();
        self.draining = true;
        let regs: Vec<RegId> = self.regs.keys().copied().collect();
        for r in regs {
            self.ua.unregister(now, r);
        }
        self.federation.stop_all(&mut self.ua, now);
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for c in calls {
            let _ = self.ua.hangup(now, c);
        }
    }

    fn on_event(&mut self, ev: UaEvent) {
        let now = Instant::now();
        if federation::call_of(&ev).is_some_and(|c| self.federation.owns(c)) {
            let done = self.federation.on_event(&mut self.ua, now, &self.stats, ev);
            if let Some(key) = done {
                self.maybe_unused(key);
            }
            return;
        }
        match ev {
            UaEvent::Registration { reg, state } => {
                if let Some((name, s)) = self.regs.get_mut(&reg) {
                    match &state {
                        RegState::Registered { expires } => {
                            tracing::info!(account = %name, expires, "SIP account registered")
                        }
                        RegState::Failed {
                            status,
                            reason,
                            retry_in,
                        } => {
                            tracing::warn!(account = %name, ?status, %reason, ?retry_in, "SIP registration failed")
                        }
                        RegState::Unregistered => {
                            tracing::info!(account = %name, "SIP account unregistered")
                        }
                        RegState::Registering => {}
                    }
                    *s = state;
                }
                if let Some(key) = self.reg_conns.get(&reg).copied() {
                    self.maybe_unused(key);
                }
            }
            UaEvent::IncomingCall {
                call,
                from,
                from_display,
                to_user,
                offer,
                to_host,
                source,
                ..
            } => {
                self.stats.calls_in.fetch_add(1, Ordering::Relaxed);
                let result = if self.federation.takes(&to_host, offer.as_ref()) {
                    let refusing = self.refusing();
                    self.federation.incoming(
                        &mut self.ua,
                        now,
                        refusing,
                        call,
                        &from,
                        from_display,
                        to_user.as_deref(),
                        offer,
                    )
                } else {
                    self.incoming(call, &from, from_display, to_user.as_deref(), offer)
                };
                if let Err((status, reason)) = result {
                    tracing::info!(%from, %source, status, %reason, "SIP call refused");
                    self.stats.calls_refused.fetch_add(1, Ordering::Relaxed);
                    let _ = self.ua.reject(now, call, status, &reason);
                    self.calls.remove(&call);
                }
            }
            UaEvent::Ringing { call, early, .. } => {
                if let Some(entry) = self.calls.get(&call) {
                    entry.tell(CallCmd::Ringing);
                }
                if let Some(sdp) = early {
                    self.answered(call, &sdp);
                }
            }
            UaEvent::Connected { call, remote } => {
                if let Some(sdp) = remote {
                    self.answered(call, &sdp);
                }
                // An answer we could not take is being hung up: the room never sees it up.
                if let Some(entry) = self.calls.get(&call).filter(|e| e.failure.is_none()) {
                    entry.tell(CallCmd::Connected);
                }
            }
            UaEvent::Reoffer { call, offer } => self.reoffer(call, &offer),
            UaEvent::Dtmf { call, digit, .. } => {
                if let Some(entry) = self.calls.get(&call) {
                    entry.tell(CallCmd::Dtmf(digit));
                }
            }
            UaEvent::Ended { call, reason } => self.ended(call, &reason),
            UaEvent::ReofferAnswered { .. } => {}
        }
    }

    /// A command of a federation handle.
    fn on_federation(&mut self, cmd: federation::Command) {
        if let federation::Command::Place(place, _) = &cmd {
            if place.transport == Transport::Tls {
                self.remember_tls_name(place.dest, place.tls_name.clone());
            }
        }
        let refusing = self.refusing();
        self.federation
            .command(&mut self.ua, Instant::now(), refusing, &self.stats, cmd);
    }

    fn on_api(&mut self, cmd: ApiCmd) {
        match cmd {
            ApiCmd::Dial {
                room,
                name,
                target,
                dest,
                reply,
            } => {
                let _ = reply.send(self.dial(room, name, *target, dest));
            }
            ApiCmd::Hangup { room, call, reply } => {
                let found = self
                    .calls
                    .iter()
                    .find(|(id, c)| call_label(**id) == call && c.room == room)
                    .map(|(id, _)| *id);
                if let Some(id) = found {
                    let _ = self.ua.hangup(Instant::now(), id);
                }
                let _ = reply.send(found.is_some());
            }
        }
    }

    fn ended(&mut self, call: CallId, reason: &EndReason) {
        // Dropping the entry drops the media task's channel: it leaves the room.
        if let Some(entry) = self.calls.remove(&call) {
            let why = entry
                .failure
                .clone()
                .or_else(|| reason.status.map(|s| format!("{s} {}", reason.reason)));
            entry.tell(CallCmd::Ended(why));
            tracing::info!(status = ?reason.status, reason = %reason.reason, by = ?reason.by, "SIP call ended");
            self.stats.calls_ended.fetch_add(1, Ordering::Relaxed);
            if let Some(key) = entry.conn {
                self.maybe_unused(key);
            }
        }
    }

    fn on_call(&mut self, cmd: AgentCmd) {
        let now = Instant::now();
        match cmd {
            AgentCmd::Accept(call) => {
                let answer = self.calls.get_mut(&call).and_then(|c| c.answer.take());
                if let Some(answer) = answer {
                    if let Err(e) = self.ua.accept(now, call, answer) {
                        tracing::debug!(error = %e, "SIP accept after the call ended");
                    }
                }
            }
            AgentCmd::Reject(call, status, reason) => {
                tracing::info!(status, %reason, "SIP call refused: the room cannot take it");
                self.stats.calls_refused.fetch_add(1, Ordering::Relaxed);
                let _ = self.ua.reject(now, call, status, &reason);
                self.calls.remove(&call);
            }
            AgentCmd::Hangup(call, reason) => {
                tracing::info!(%reason, "SIP call: hanging up");
                let _ = self.ua.hangup(now, call);
            }
            AgentCmd::InfoDtmf(call, digit) => {
                let _ = self.ua.send_dtmf_info(now, call, digit, 160);
            }
            AgentCmd::Finished(call) => {
                // The media ended; if the call still stands, it goes too.
                if let Some(entry) = self.calls.get_mut(&call) {
                    entry.media = None;
                    let _ = self.ua.hangup(now, call);
                }
            }
        }
    }
}
