//! The book's transitions: the requests of devices and what they share with federation
//! events and timeouts (ringing a party, a party answering or leaving, ending a call).

use super::{Action, CallBook, FederationAction};
use crate::address::{Address, Route};
use crate::call::{Call, Leg, LegState, Who};
use crate::wire::{CallResult, EndReason, Event, Reference};
use crate::DeviceId;
use std::sync::Arc;
use std::time::Instant;

/// Who a dial or invite reaches, once checked.
enum Target {
    Local {
        user: String,
        devices: Vec<DeviceId>,
    },
    Remote,
}

impl CallBook {
    pub(super) fn dial(
        &mut self,
        user: &str,
        device: DeviceId,
        to: &str,
        reference: Option<Reference>,
        now: Instant,
    ) {
        let address = match Address::parse(to, &self.cfg.domain) {
            Ok(a) => a,
            Err(e) => {
                let event = Event::Error {
                    id: None,
                    reference,
                    reason: e.to_string(),
                };
                return self.send(user, &device, event);
            }
        };
        let refused = if !self.rate_ok(user, now) {
            Some((
                EndReason::RateLimited,
                format!("more than {} calls a minute", self.cfg.dials_per_minute),
            ))
        } else if self.calls.len() >= self.cfg.max_calls {
            Some((EndReason::Failed, "the server is at its call limit".into()))
        } else if self.calls_of(user) >= self.cfg.max_calls_per_user {
            Some((
                EndReason::Failed,
                format!("you are in {} calls already", self.cfg.max_calls_per_user),
            ))
        } else {
            self.reach(&address, Some(user)).err()
        };
        if let Some((reason, detail)) = refused {
            let id = self.fresh_id();
            let event = Event::Ended {
                id,
                reference,
                reason,
                detail,
            };
            self.send(user, &device, event);
            self.out
                .push(Action::Finished(CallResult::Unanswered(reason)));
            return;
        }
        let me = Address::local(user, &self.cfg.domain).to_string();
        let name = self.device_name(user, &device);
        let caller = Leg {
            who: Who::Local(user.to_string()),
            address: me.clone(),
            from: String::new(),
            from_name: String::new(),
            state: LegState::In {
                device: Some(device.clone()),
            },
        };
        let id = self.open_call(caller);
        if let Some(room) = self.calls.get(&id).map(|c| c.room.clone()) {
            let event = Event::Dialing {
                id: id.clone(),
                reference,
                to: address.to_string(),
                room,
            };
            self.send(user, &device, event);
        }
        self.ring(&id, address, me, name, now);
    }

    pub(super) fn accept(&mut self, user: &str, device: DeviceId, id: &str, now: Instant) {
        let found = self.calls.get(id).and_then(|c| {
            let i = c.leg_of_user(user)?;
            match &c.legs[i].state {
                LegState::Ringing { devices, .. } if devices.contains(&device) => {
                    Some((c.id.clone(), i))
                }
                _ => None,
            }
        });
        let Some((id, i)) = found else {
            return self.refuse(user, &device, id, "no call ringing on this device");
        };
        self.answer(&id, i, Some(device), now);
    }

    pub(super) fn decline(
        &mut self,
        user: &str,
        device: DeviceId,
        id: &str,
        busy: bool,
        now: Instant,
    ) {
        let found = self.calls.get(id).and_then(|c| {
            let i = c.leg_of_user(user)?;
            match &c.legs[i].state {
                LegState::Ringing { devices, .. } if devices.contains(&device) => {
                    Some((c.id.clone(), i, c.legs[i].clone()))
                }
                _ => None,
            }
        });
        let Some((id, i, leg)) = found else {
            return self.refuse(user, &device, id, "no call ringing on this device");
        };
        let reason = if busy {
            EndReason::Busy
        } else {
            EndReason::Declined
        };
        let detail = format!("{} {}", leg.address, reason.as_str());
        let ended = Event::Ended {
            id: id.clone(),
            reference: None,
            reason,
            detail: detail.clone(),
        };
        self.tell_leg(&leg, &ended);
        self.leg_out(&id, i, reason, &detail, now);
    }

    pub(super) fn cancel(&mut self, user: &str, device: DeviceId, id: &str, now: Instant) {
        let found = self
            .calls
            .get(id)
            .and_then(|c| Some((c.id.clone(), c.leg_of_user(user)?, c.answered)));
        match found {
            Some((id, i, false)) if self.calls[&id].legs[i].is_in() => {
                let detail = format!("{} cancelled", self.calls[&id].legs[i].address);
                self.end_call(&id, EndReason::Cancelled, &detail);
            }
            // Answered in the meantime: the caller still wants out.
            Some((id, _, true)) => self.hangup(user, device, &id, now),
            _ => self.refuse(user, &device, id, "no call of yours to cancel"),
        }
    }

    pub(super) fn hangup(&mut self, user: &str, device: DeviceId, id: &str, now: Instant) {
        let found = self
            .calls
            .get(id)
            .and_then(|c| Some((c.id.clone(), c.leg_of_user(user)?)));
        let Some((id, i)) = found else {
            return self.refuse(user, &device, id, "you are not in this call");
        };
        let leg = self.calls[&id].legs[i].clone();
        if !leg.is_in() {
            // Hanging up a call that rings here is declining it.
            return self.decline(user, device, &id, false, now);
        }
        let detail = format!("{} hung up", leg.address);
        if self.calls[&id].answered {
            let ended = Event::Ended {
                id: id.clone(),
                reference: None,
                reason: EndReason::Hangup,
                detail: detail.clone(),
            };
            self.tell_leg(&leg, &ended);
        }
        self.party_leaves(&id, i, EndReason::Hangup, &detail, now);
    }

    pub(super) fn invite(
        &mut self,
        user: &str,
        device: DeviceId,
        id: &str,
        to: &str,
        now: Instant,
    ) {
        let found = self
            .calls
            .get(id)
            .and_then(|c| Some((c.id.clone(), c.leg_of_user(user)?)))
            .filter(|(id, i)| self.calls[id].legs[*i].is_in());
        let Some((id, _)) = found else {
            return self.refuse(user, &device, id, "you are not in this call");
        };
        let address = match Address::parse(to, &self.cfg.domain) {
            Ok(a) => a,
            Err(e) => return self.refuse(user, &device, &id, &e.to_string()),
        };
        let call = &self.calls[&id];
        let already = match address.route(&self.cfg.domain) {
            Route::Local { user } => call.leg_of_user(&user).is_some(),
            Route::Remote { .. } => call.leg_of_remote(&address).is_some(),
        };
        if already {
            return self.refuse(user, &device, &id, "already in the call");
        }
        if call.legs.len() >= self.cfg.max_parties {
            let reason = format!("the call is full ({} parties)", self.cfg.max_parties);
            return self.refuse(user, &device, &id, &reason);
        }
        let refused = if self.rate_ok(user, now) {
            self.reach(&address, Some(user)).err()
        } else {
            let limit = self.cfg.dials_per_minute;
            Some((
                EndReason::RateLimited,
                format!("more than {limit} calls a minute"),
            ))
        };
        if let Some((reason, detail)) = refused {
            let event = Event::Left {
                id: id.clone(),
                who: address.to_string(),
                reason,
                detail,
            };
            return self.send(user, &device, event);
        }
        let me = Address::local(user, &self.cfg.domain).to_string();
        let name = self.device_name(user, &device);
        self.ring(&id, address, me, name, now);
    }

    // ---- shared transitions ----

    /// A new call with `caller` in it, its room opened; its id.
    pub(super) fn open_call(&mut self, caller: Leg) -> Arc<str> {
        let id = self.fresh_id();
        let room: Arc<str> = Arc::from(format!("call-{id}"));
        self.rooms.insert(room.clone(), id.clone());
        self.calls.insert(
            id.clone(),
            Call {
                id: id.clone(),
                room: room.clone(),
                legs: vec![caller],
                members: 0,
                connected: false,
                answered: false,
                connect_by: None,
            },
        );
        self.out.push(Action::OpenRoom { room });
        id
    }

    /// Add `address` to call `id` as a ringing party, rung by `from` (`from_name`), and
    /// ring it: every device of a local user, or the federation of its domain. Checked
    /// beforehand with [`CallBook::reach`].
    pub(super) fn ring(
        &mut self,
        id: &Arc<str>,
        address: Address,
        from: String,
        from_name: String,
        now: Instant,
    ) {
        let target = match address.route(&self.cfg.domain) {
            Route::Local { user } => {
                let devices = self.devices(&user);
                Target::Local { user, devices }
            }
            Route::Remote { .. } => Target::Remote,
        };
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let room = call.room.clone();
        let (who, devices) = match target {
            Target::Local { user, devices } => (Who::Local(user), devices),
            Target::Remote => (Who::Remote(address.clone()), Vec::new()),
        };
        call.legs.push(Leg {
            who: who.clone(),
            address: address.to_string(),
            from: from.clone(),
            from_name: from_name.clone(),
            state: LegState::Ringing {
                since: now,
                devices: devices.clone(),
            },
        });
        match who {
            Who::Local(user) => {
                let incoming = Event::Incoming {
                    id: id.clone(),
                    from,
                    from_name,
                    room,
                };
                for d in &devices {
                    self.send(&user, d, incoming.clone());
                }
                let ringing = Event::Ringing {
                    id: id.clone(),
                    to: address.to_string(),
                };
                self.tell_inside(id, None, &ringing);
            }
            Who::Remote(_) => self.federate(FederationAction::Dial {
                domain: address.domain.clone(),
                id: id.clone(),
                from,
                from_name,
                to: address.to_string(),
                room,
            }),
        }
    }

    /// Leg `i` of call `id` takes the call (on `device`, None for a remote party).
    pub(super) fn answer(
        &mut self,
        id: &Arc<str>,
        i: usize,
        device: Option<DeviceId>,
        now: Instant,
    ) {
        let connect_timeout = self.cfg.connect_timeout;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let leg = call.legs[i].clone();
        call.legs[i].state = LegState::In {
            device: device.clone(),
        };
        if !call.answered {
            call.answered = true;
            if !call.connected {
                call.connect_by = Some(now + connect_timeout);
            }
        }
        // A far party is in the call from its answer on: with the caller in the room,
        // the call is connected now.
        if !call.connected && call.parties() >= 2 {
            call.connected = true;
            call.connect_by = None;
        }
        if let (Who::Local(user), LegState::Ringing { devices, .. }) = (&leg.who, &leg.state) {
            let elsewhere = Event::Ended {
                id: id.clone(),
                reference: None,
                reason: EndReason::AnsweredElsewhere,
                detail: "answered on another device".into(),
            };
            for d in devices.iter().filter(|d| Some(*d) != device.as_ref()) {
                self.send(user, d, elsewhere.clone());
            }
        }
        let answered = Event::Answered {
            id: id.clone(),
            by: leg.address,
        };
        // The accepting device hears that its accept won; a remote party knows already.
        let except = device.is_none().then_some(i);
        self.tell_inside(id, except, &answered);
    }

    /// Party `i` of call `id` leaves: a ringing one is out of it; the caller of a call
    /// nobody answered cancels it; anyone else hangs up.
    pub(super) fn party_leaves(
        &mut self,
        id: &Arc<str>,
        i: usize,
        reason: EndReason,
        detail: &str,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        if !call.legs[i].is_in() {
            self.leg_out(id, i, reason, detail, now);
        } else if !call.answered {
            self.end_call(id, EndReason::Cancelled, detail);
        } else {
            self.leg_out(id, i, EndReason::Hangup, detail, now);
        }
    }

    /// Leg `i` of call `id` is out (it was told already): the call ends when nobody is
    /// left to talk to, else the parties in it hear who left.
    pub(super) fn leg_out(
        &mut self,
        id: &Arc<str>,
        i: usize,
        reason: EndReason,
        detail: &str,
        _now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if i >= call.legs.len() {
            return;
        }
        let leg = call.legs.remove(i);
        let inside = call.inside().count();
        let ringing = call.legs.len() - inside;
        if inside == 0 || (inside == 1 && ringing == 0) {
            let reason = if call.answered {
                EndReason::Hangup
            } else {
                reason
            };
            return self.end_call(id, reason, detail);
        }
        let left = Event::Left {
            id: id.clone(),
            who: leg.address,
            reason,
            detail: detail.to_string(),
        };
        self.tell_inside(id, None, &left);
    }

    /// The call is over for everyone still in it or rung by it.
    pub(super) fn end_call(&mut self, id: &Arc<str>, reason: EndReason, detail: &str) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        self.rooms.remove(&call.room);
        for leg in &call.legs {
            let reason = match (&leg.state, reason) {
                (LegState::In { .. }, r) => r,
                (_, r @ (EndReason::NoAnswer | EndReason::Failed | EndReason::Cancelled)) => r,
                _ => EndReason::Cancelled,
            };
            let ended = Event::Ended {
                id: id.clone(),
                reference: None,
                reason,
                detail: detail.to_string(),
            };
            self.tell_leg(leg, &ended);
        }
        self.out.push(Action::CloseRoom { room: call.room });
        let result = if call.answered {
            CallResult::Answered
        } else {
            CallResult::Unanswered(reason)
        };
        self.out.push(Action::Finished(result));
    }
}
