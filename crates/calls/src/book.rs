//! The [`CallBook`]: every call of one server as a sans-IO state machine. Inputs are
//! lines going up and down, requests from devices, the membership of call rooms,
//! federation events and time; outputs are [`Action`]s, drained by the driver. Rules
//! (docs/signaling.md, "Direct calls"): a dial rings every device on the callee's line;
//! the first to accept takes the call and the others hear `answered-elsewhere`; a call
//! ends when its last party but one leaves, or when nobody answers in time; limits bound
//! calls per user and per server, dials per minute per user, and calls per minute from
//! each other domain.

use crate::address::Address;
use crate::call::{Call, Leg, LegState, Who};
use crate::wire::{CallResult, EndReason, Event, Reference, Request};
use crate::DeviceId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod helpers;
mod ops;

/// The window of the dial rate.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Settings of the call book (`[calls]`).
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// This server's calling domain: `bob` and `bob@<domain>` are local.
    pub domain: String,
    /// How long a party rings before `no-answer`.
    pub ring_timeout: Duration,
    /// After an answer, how long the call room may take to hold two members.
    pub connect_timeout: Duration,
    /// Calls one user may be in at once (ringing ones included).
    pub max_calls_per_user: usize,
    /// Calls of the whole server at once.
    pub max_calls: usize,
    /// Parties of one call (the caller included).
    pub max_parties: usize,
    /// Dials and invites one user may make per minute; 0 = no bound.
    pub dials_per_minute: usize,
    /// Calls from the users of one other domain per minute; 0 = no bound.
    pub remote_dials_per_minute: usize,
    /// The users that exist (configured users); None = whoever signs in.
    pub known_users: Option<HashSet<String>>,
    /// Domains a federation reaches (`*`: any); empty = no federation.
    pub federated_domains: Vec<String>,
}

impl Default for CallConfig {
    fn default() -> CallConfig {
        CallConfig {
            domain: "localhost".into(),
            ring_timeout: Duration::from_secs(45),
            connect_timeout: Duration::from_secs(30),
            max_calls_per_user: 4,
            max_calls: 1000,
            max_parties: 4,
            dials_per_minute: 10,
            remote_dials_per_minute: 60,
            known_users: None,
            federated_domains: Vec::new(),
        }
    }
}

/// What a federation reports about its party of call `id`.
#[derive(Clone, Debug, PartialEq)]
pub enum FederationInput {
    /// The remote callee is being rung.
    Ringing,
    /// The remote callee took the call (its participant joins the room).
    Answered,
    /// The remote party is out: declined, busy, unreachable, cancelled, hung up…
    Gone { reason: EndReason, detail: String },
}

/// What the book asks of a federation.
#[derive(Clone, Debug, PartialEq)]
pub enum FederationAction {
    /// Ring `to` on `domain` for call `id`; once it answers, its participant joins `room`.
    Dial {
        domain: String,
        id: Arc<str>,
        from: String,
        from_name: String,
        to: String,
        room: Arc<str>,
    },
    /// Tell the remote party `to` what a device would be told (ringing, answered, ended…).
    Notify {
        domain: String,
        to: String,
        event: Event,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send `event` to `device` of `user`'s line (with a token for `event.room()`, minted
    /// for identity `user`, when the server uses room tokens).
    Send {
        user: String,
        device: DeviceId,
        event: Event,
    },
    /// A call room exists from now on: watch its membership ([`CallBook::room_members`]).
    OpenRoom {
        room: Arc<str>,
    },
    /// The call of this room is over: stop watching it.
    CloseRoom {
        room: Arc<str>,
    },
    Federation(FederationAction),
    /// A call attempt ended this way (metrics).
    Finished(CallResult),
}

/// One device of a line: its peer id and display name.
struct Device {
    id: DeviceId,
    name: String,
}

/// Every call of one server.
pub struct CallBook {
    cfg: CallConfig,
    new_id: Box<dyn FnMut() -> String + Send>,
    lines: HashMap<String, Vec<Device>>,
    dials: HashMap<String, VecDeque<Instant>>,
    calls: HashMap<Arc<str>, Call>,
    /// Call id by room name.
    rooms: HashMap<Arc<str>, Arc<str>>,
    out: Vec<Action>,
}

impl CallBook {
    /// A book whose call ids come from `new_id` (random hex; the room is `call-<id>`).
    pub fn new(cfg: CallConfig, new_id: Box<dyn FnMut() -> String + Send>) -> CallBook {
        CallBook {
            cfg,
            new_id,
            lines: HashMap::new(),
            dials: HashMap::new(),
            calls: HashMap::new(),
            rooms: HashMap::new(),
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &CallConfig {
        &self.cfg
    }

    /// New settings (reload); calls in progress keep going.
    pub fn set_config(&mut self, cfg: CallConfig) {
        self.cfg = cfg;
    }

    /// What to do, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Action> {
        self.out.drain(..)
    }

    /// Calls in progress.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Users with at least one device on their line.
    pub fn lines(&self) -> usize {
        self.lines.len()
    }

    /// The call whose room is `room`, if any.
    pub fn call_of_room(&self, room: &str) -> Option<&str> {
        self.rooms.get(room).map(|id| &**id)
    }

    // ---- inputs ----

    /// `device` (display name `name`) joined `user`'s line; calls ringing for `user`
    /// ring on it too.
    pub fn line_up(&mut self, user: &str, device: DeviceId, name: &str, _now: Instant) {
        let devices = self.lines.entry(user.to_string()).or_default();
        if devices.iter().any(|d| d.id == device) {
            return;
        }
        devices.push(Device {
            id: device.clone(),
            name: name.to_string(),
        });
        let mut rings = Vec::new();
        for call in self.calls.values_mut() {
            let Some(i) = call.leg_of_user(user) else {
                continue;
            };
            let leg = &mut call.legs[i];
            if let LegState::Ringing { devices, .. } = &mut leg.state {
                devices.push(device.clone());
                rings.push(Event::Incoming {
                    id: call.id.clone(),
                    from: leg.from.clone(),
                    from_name: leg.from_name.clone(),
                    room: call.room.clone(),
                });
            }
        }
        for event in rings {
            self.send(user, &device, event);
        }
    }

    /// `device` left `user`'s line for good: it stops ringing; a caller's unanswered call
    /// is cancelled.
    pub fn line_down(&mut self, user: &str, device: &str, now: Instant) {
        if let Some(devices) = self.lines.get_mut(user) {
            devices.retain(|d| &*d.id != device);
            if devices.is_empty() {
                self.lines.remove(user);
            }
        }
        let ids: Vec<Arc<str>> = self.calls.keys().cloned().collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let Some(i) = call.leg_of_user(user) else {
                continue;
            };
            let address = call.legs[i].address.clone();
            match &mut call.legs[i].state {
                LegState::Ringing { devices, .. } => {
                    let before = devices.len();
                    devices.retain(|d| &**d != device);
                    if devices.is_empty() && before > 0 {
                        let detail = format!("{address} signed off");
                        self.leg_out(&id, i, EndReason::Unreachable, &detail, now);
                    }
                }
                LegState::In { device: Some(d) } if &**d == device && !call.answered => {
                    let detail = format!("{address} signed off");
                    self.end_call(&id, EndReason::Cancelled, &detail);
                }
                LegState::In { .. } => {}
            }
        }
    }

    /// The `data` of a message that `device` on `user`'s line sent to the calls peer.
    pub fn message(&mut self, user: &str, device: DeviceId, data: &str, now: Instant) {
        match Request::parse(data) {
            Ok(req) => self.request(user, device, req, now),
            Err(e) => self.send(
                user,
                &device,
                Event::Error {
                    id: e.id,
                    reference: e.reference,
                    reason: e.reason,
                },
            ),
        }
    }

    /// A request of `device` on `user`'s line.
    pub fn request(&mut self, user: &str, device: DeviceId, req: Request, now: Instant) {
        match req {
            Request::Dial { to, reference } => self.dial(user, device, &to, reference, now),
            Request::Accept { id } => self.accept(user, device, &id, now),
            Request::Decline { id, busy } => self.decline(user, device, &id, busy, now),
            Request::Cancel { id } => self.cancel(user, device, &id, now),
            Request::Hangup { id } => self.hangup(user, device, &id, now),
            Request::Invite { id, to } => self.invite(user, device, &id, &to, now),
        }
    }

    /// The call room `room` now holds `count` members (the calls peer not counted).
    pub fn room_members(&mut self, room: &str, count: usize, _now: Instant) {
        let Some(id) = self.rooms.get(room).cloned() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let before = std::mem::replace(&mut call.members, count);
        let parties = call.parties();
        if parties >= 2 {
            call.connected = true;
            call.connect_by = None;
        }
        if call.connected && parties <= 1 {
            self.end_call(&id, EndReason::Hangup, "everyone else left the call");
        } else if !call.connected && !call.answered && before >= 1 && count == 0 {
            self.end_call(&id, EndReason::Cancelled, "the caller left the call room");
        }
    }

    /// `from` (a party of another domain, named `from_name`) calls local user `to`; the
    /// federation's own `reference` comes back in the `dialing` (or `ended`) it is told.
    pub fn federation_dial(
        &mut self,
        from: Address,
        from_name: &str,
        to: &str,
        reference: Reference,
        now: Instant,
    ) {
        let domain = from.domain.clone();
        let target = Address::local(to, &self.cfg.domain);
        let refused = if !self.federates(&domain) {
            Some((
                EndReason::Unreachable,
                format!("no federation with {domain}"),
            ))
        } else if !self.remote_rate_ok(&domain, now) {
            Some((
                EndReason::RateLimited,
                format!(
                    "more than {} calls a minute from {domain}",
                    self.cfg.remote_dials_per_minute
                ),
            ))
        } else if self.calls.len() >= self.cfg.max_calls {
            Some((EndReason::Busy, "the server is at its call limit".into()))
        } else {
            self.reach(&target, None).err()
        };
        if let Some((reason, detail)) = refused {
            let id = self.fresh_id();
            let event = Event::Ended {
                id,
                reference: Some(reference),
                reason,
                detail,
            };
            self.federate(FederationAction::Notify {
                domain,
                to: from.to_string(),
                event,
            });
            self.out
                .push(Action::Finished(CallResult::Unanswered(reason)));
            return;
        }
        let caller = Leg {
            who: Who::Remote(from.clone()),
            address: from.to_string(),
            from: String::new(),
            from_name: String::new(),
            state: LegState::In { device: None },
        };
        let id = self.open_call(caller);
        let room = self.calls.get(&id).map(|c| c.room.clone());
        if let Some(room) = room {
            self.federate(FederationAction::Notify {
                domain,
                to: from.to_string(),
                event: Event::Dialing {
                    id: id.clone(),
                    reference: Some(reference),
                    to: target.to_string(),
                    room,
                },
            });
        }
        self.ring(&id, target, from.to_string(), from_name.to_string(), now);
    }

    /// The federation reports on its party `from` of call `id`.
    pub fn federation_event(
        &mut self,
        id: &str,
        from: &Address,
        input: FederationInput,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let (id, Some(i)) = (call.id.clone(), call.leg_of_remote(from)) else {
            return;
        };
        let ringing = !call.legs[i].is_in();
        match input {
            FederationInput::Ringing if ringing => {
                let to = call.legs[i].address.clone();
                self.tell_inside(&id, None, &Event::Ringing { id: id.clone(), to });
            }
            FederationInput::Answered if ringing => self.answer(&id, i, None, now),
            FederationInput::Gone { reason, detail } => {
                self.party_leaves(&id, i, reason, &detail, now)
            }
            FederationInput::Ringing | FederationInput::Answered => {}
        }
    }

    /// When [`CallBook::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ring = self.cfg.ring_timeout;
        self.calls.values().filter_map(|c| c.deadline(ring)).min()
    }

    /// Ring timeouts (`no-answer`) and answered calls whose room never gathered.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ring = self.cfg.ring_timeout;
        let due: Vec<Arc<str>> = self
            .calls
            .values()
            .filter(|c| c.deadline(ring).is_some_and(|t| t <= now))
            .map(|c| c.id.clone())
            .collect();
        for id in due {
            while let Some(call) = self.calls.get(&id) {
                let expired = call.legs.iter().position(
                    |l| matches!(l.state, LegState::Ringing { since, .. } if since + ring <= now),
                );
                let Some(i) = expired else {
                    if call.connect_by.is_some_and(|t| t <= now) {
                        self.end_call(&id, EndReason::Failed, "nobody joined the call room");
                    }
                    break;
                };
                let detail = format!("no answer from {}", call.legs[i].address);
                let leg = call.legs[i].clone();
                let ended = Event::Ended {
                    id: id.clone(),
                    reference: None,
                    reason: EndReason::NoAnswer,
                    detail: detail.clone(),
                };
                self.tell_leg(&leg, &ended);
                self.leg_out(&id, i, EndReason::NoAnswer, &detail, now);
            }
        }
        self.dials.retain(|_, times| {
            while times.front().is_some_and(|t| *t + RATE_WINDOW <= now) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }
}
