//! The calls peer's event loop: one task owns the `CallBook`; every line and call room
//! the peer is in has a small task that forwards its events here, so the book sees one
//! ordered stream of inputs and needs no lock.

use super::Counters;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_calls::{
    Action, Address, CallBook, CallConfig, Event, FederationAction, FederationInput, Reference,
};
use switchboard_signal::token::{mint, Claims};
use switchboard_signal::{
    Grants, PeerInfo, RelayKind, ServiceEvent, ServiceParticipant, Signaling, CALLS,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// The name devices see on the calls peer.
const CALLS_NAME: &str = "calls";

/// The calls peer sends messages only.
const CALLS_GRANTS: Grants = Grants {
    publish: false,
    subscribe: false,
    admin: false,
};

/// How long a room token minted for a call room stays valid (to join it, not to stay).
const CALL_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// What the loop takes in.
pub enum Input {
    /// An event of the calls peer in `room` (a line or a call room).
    Room {
        room: Arc<str>,
        event: ServiceEvent,
    },
    /// The peer is out of `room` (the hub ended it).
    Gone {
        room: Arc<str>,
    },
    /// From a federation ([`super::CallsHandle`]).
    FederationDial {
        from: Address,
        from_name: String,
        to: String,
        reference: Reference,
    },
    FederationEvent {
        id: String,
        from: Address,
        input: FederationInput,
    },
    Reload {
        cfg: CallConfig,
        secrets: Vec<Vec<u8>>,
    },
    Stop,
}

/// The calls peer in one room, and the clients it sees there. Dropping it leaves the
/// room: its forwarding task lets go of the participant too.
struct Membership {
    peer: Arc<ServiceParticipant>,
    _stop: oneshot::Sender<()>,
    /// Client devices (lines) or members (call rooms; service participants not counted).
    members: HashMap<Arc<str>, PeerInfo>,
}

pub struct Driver {
    signaling: Arc<Signaling>,
    book: CallBook,
    secrets: Vec<Vec<u8>>,
    federation: Option<super::FederationSink>,
    counters: Arc<Counters>,
    tx: UnboundedSender<Input>,
    rooms: HashMap<Arc<str>, Membership>,
}

impl Driver {
    pub fn new(
        signaling: Arc<Signaling>,
        cfg: CallConfig,
        secrets: Vec<Vec<u8>>,
        federation: Option<super::FederationSink>,
        counters: Arc<Counters>,
        tx: UnboundedSender<Input>,
    ) -> Driver {
        let ids = Box::new(|| switchboard_util::random_hex(16));
        Driver {
            signaling,
            book: CallBook::new(cfg, ids),
            secrets,
            federation,
            counters,
            tx,
            rooms: HashMap::new(),
        }
    }

    /// Serve the lines named by `lines` and the inputs of `rx` until stopped.
    pub async fn run(
        mut self,
        mut lines: UnboundedReceiver<Arc<str>>,
        mut rx: UnboundedReceiver<Input>,
    ) {
        loop {
            let deadline = self.book.poll_timeout();
            let timer = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(room) = lines.recv() => self.join_line(room),
                input = rx.recv() => match input {
                    None | Some(Input::Stop) => break,
                    Some(input) => self.input(input),
                },
                () = timer => self.book.handle_timeout(Instant::now()),
            }
            self.carry_out();
        }
        tracing::debug!("calls peer stopped");
    }

    fn input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Room { room, event } => self.room_event(room, event, now),
            Input::Gone { room } => {
                if let Some(m) = self.rooms.remove(&room) {
                    self.room_emptied(&room, m, now);
                }
            }
            Input::FederationDial {
                from,
                from_name,
                to,
                reference,
            } => self
                .book
                .federation_dial(from, &from_name, &to, reference, now),
            Input::FederationEvent { id, from, input } => {
                self.book.federation_event(&id, &from, input, now)
            }
            Input::Reload { cfg, secrets } => {
                self.book.set_config(cfg);
                self.secrets = secrets;
            }
            Input::Stop => {}
        }
    }

    /// Join line `room` (the hub asked): its devices go on the book's line.
    fn join_line(&mut self, room: Arc<str>) {
        if self.rooms.contains_key(&room) {
            return;
        }
        let Some(user) = switchboard_signal::protocol::line_user(&room).map(str::to_string) else {
            return;
        };
        let Some(m) = self.join(&room) else { return };
        let now = Instant::now();
        for (id, peer) in &m.members {
            self.book.line_up(&user, id.clone(), &peer.name, now);
        }
        self.rooms.insert(room, m);
    }

    /// Join `room` as the calls peer, forwarding its events to the loop.
    fn join(&mut self, room: &Arc<str>) -> Option<Membership> {
        let peer = match self
            .signaling
            .join_service_as(room, CALLS_NAME, CALLS, CALLS_GRANTS)
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%room, error = %e, "the calls peer could not join");
                return None;
            }
        };
        let members = peer
            .peers()
            .iter()
            // Clients only: the calls peer and a far party's participant are no members
            // (a far party counts from its answer, which the federation reports).
            .filter(|p| p.service.is_none())
            .map(|p| (p.id.clone(), p.clone()))
            .collect();
        let peer = Arc::new(peer);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (tx, room_name, events) = (self.tx.clone(), room.clone(), peer.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // Dropped by the loop: the room is left, nothing to report.
                    _ = &mut stopped => return,
                    event = events.recv() => {
                        let Some(event) = event else { break };
                        let input = Input::Room { room: room_name.clone(), event };
                        if tx.send(input).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Input::Gone { room: room_name });
        });
        Some(Membership {
            peer,
            _stop: stop,
            members,
        })
    }

    fn room_event(&mut self, room: Arc<str>, event: ServiceEvent, now: Instant) {
        let line = switchboard_signal::protocol::line_user(&room).map(str::to_string);
        let Some(m) = self.rooms.get_mut(&room) else {
            return;
        };
        match event {
            ServiceEvent::PeerJoined(peer) => {
                if peer.service.is_some() {
                    return;
                }
                let (id, name) = (peer.id.clone(), peer.name.clone());
                m.members.insert(peer.id.clone(), peer);
                match &line {
                    Some(user) => self.book.line_up(user, id, &name, now),
                    None => {
                        let n = m.members.len();
                        self.book.room_members(&room, n, now)
                    }
                }
            }
            ServiceEvent::PeerLeft { peer, .. } => {
                if m.members.remove(&peer).is_none() {
                    return;
                }
                let left = m.members.len();
                match &line {
                    Some(user) => self.book.line_down(user, &peer, now),
                    None => self.book.room_members(&room, left, now),
                }
                if left == 0 && line.is_some() {
                    // Nobody left to call: the line ends with the peer (the hub asks
                    // again if a device came in meanwhile).
                    self.rooms.remove(&room);
                }
            }
            ServiceEvent::Relay {
                from,
                kind,
                payload,
            } => {
                if let (Some(user), RelayKind::Message) = (&line, kind) {
                    self.book.message(user, from, payload.get(), now);
                }
            }
            ServiceEvent::Error { fatal, reason, .. } => {
                tracing::debug!(%room, reason, fatal, "calls peer error");
            }
        }
    }

    /// The calls peer was put out of `room` (server stopping, or too slow).
    fn room_emptied(&mut self, room: &Arc<str>, m: Membership, now: Instant) {
        match switchboard_signal::protocol::line_user(room) {
            Some(user) => {
                for id in m.members.keys() {
                    self.book.line_down(user, id, now);
                }
            }
            None => self.book.room_members(room, 0, now),
        }
    }

    /// Carry out what the book decided.
    fn carry_out(&mut self) {
        let actions: Vec<Action> = self.book.drain().collect();
        for action in actions {
            match action {
                Action::Send {
                    user,
                    device,
                    event,
                } => self.send(&user, &device, &event),
                Action::OpenRoom { room } => {
                    if let Some(m) = self.join(&room) {
                        self.rooms.insert(room, m);
                    }
                }
                Action::CloseRoom { room } => {
                    // Leaving is dropping the participant.
                    self.rooms.remove(&room);
                }
                Action::Federation(f) => self.federate(f),
                Action::Finished(result) => self.counters.count(result),
            }
        }
        self.counters
            .calls
            .store(self.book.calls(), Ordering::Relaxed);
        self.counters
            .lines
            .store(self.book.lines(), Ordering::Relaxed);
    }

    fn send(&self, user: &str, device: &str, event: &Event) {
        let line: Arc<str> = Arc::from(format!("@{user}"));
        let Some(m) = self.rooms.get(&line) else {
            return;
        };
        let token = event.room().and_then(|room| self.mint(room, user));
        let text = event.to_json(token.as_deref()).to_string();
        let Ok(raw) = serde_json::value::RawValue::from_string(text) else {
            return;
        };
        if let Err(e) = m.peer.send_message(device, &raw) {
            tracing::debug!(user, device, error = %e, "call event not delivered");
        }
    }

    /// A room token for `room` naming `user`, when the server uses room tokens.
    fn mint(&self, room: &str, user: &str) -> Option<String> {
        let secret = self.secrets.first()?;
        let claims = Claims {
            room: room.to_string(),
            sub: Some(user.to_string()),
            exp: switchboard_util::unix_now() + CALL_TOKEN_LIFETIME.as_secs(),
            nbf: None,
            grants: None,
        };
        match mint(secret, &claims) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(room, error = %e, "cannot mint a call room token");
                None
            }
        }
    }

    fn federate(&self, action: FederationAction) {
        match &self.federation {
            Some(sink) => sink(action),
            None => tracing::debug!(?action, "no federation for this action"),
        }
    }
}
