//! The book's lookups and outputs: who is reachable, busy or over a limit, and how an
//! event reaches a party (its devices, or its federation).

use super::{Action, CallBook, FederationAction, RATE_WINDOW};
use crate::address::{Address, Route};
use crate::call::{Leg, LegState, Who};
use crate::wire::{EndReason, Event};
use crate::DeviceId;
use std::sync::Arc;
use std::time::Instant;

impl CallBook {
    pub(super) fn send(&mut self, user: &str, device: &DeviceId, event: Event) {
        self.out.push(Action::Send {
            user: user.to_string(),
            device: device.clone(),
            event,
        });
    }

    pub(super) fn federate(&mut self, action: FederationAction) {
        self.out.push(Action::Federation(action));
    }

    pub(super) fn refuse(&mut self, user: &str, device: &DeviceId, id: &str, reason: &str) {
        let event = Event::Error {
            id: Some(id.to_string()),
            reference: None,
            reason: reason.to_string(),
        };
        self.send(user, device, event);
    }

    /// Tell one party: its device(s), or its federation.
    pub(super) fn tell_leg(&mut self, leg: &Leg, event: &Event) {
        match (&leg.who, &leg.state) {
            (Who::Local(user), LegState::In { device: Some(d) }) => {
                self.send(user, d, event.clone())
            }
            (Who::Local(_), LegState::In { device: None }) => {}
            (Who::Local(user), LegState::Ringing { devices, .. }) => {
                for d in devices {
                    self.send(user, d, event.clone());
                }
            }
            (Who::Remote(a), _) => self.federate(FederationAction::Notify {
                domain: a.domain.clone(),
                to: a.to_string(),
                event: event.clone(),
            }),
        }
    }

    /// Tell every party in call `id` (but leg `except`).
    pub(super) fn tell_inside(&mut self, id: &str, except: Option<usize>, event: &Event) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let legs: Vec<Leg> = call
            .legs
            .iter()
            .enumerate()
            .filter(|(i, l)| l.is_in() && Some(*i) != except)
            .map(|(_, l)| l.clone())
            .collect();
        for leg in &legs {
            self.tell_leg(leg, event);
        }
    }

    pub(super) fn fresh_id(&mut self) -> Arc<str> {
        loop {
            let id = (self.new_id)();
            if !self.calls.contains_key(id.as_str()) {
                return Arc::from(id);
            }
        }
    }

    pub(super) fn federates(&self, domain: &str) -> bool {
        self.cfg
            .federated_domains
            .iter()
            .any(|d| d == "*" || d.eq_ignore_ascii_case(domain))
    }

    pub(super) fn devices(&self, user: &str) -> Vec<DeviceId> {
        self.lines
            .get(user)
            .map(|ds| ds.iter().map(|d| d.id.clone()).collect())
            .unwrap_or_default()
    }

    pub(super) fn device_name(&self, user: &str, device: &DeviceId) -> String {
        self.lines
            .get(user)
            .and_then(|ds| ds.iter().find(|d| &d.id == device))
            .map_or_else(|| user.to_string(), |d| d.name.clone())
    }

    /// Calls `user` is in or rung by.
    pub(super) fn calls_of(&self, user: &str) -> usize {
        self.calls
            .values()
            .filter(|c| c.leg_of_user(user).is_some())
            .count()
    }

    /// In a call someone answered.
    pub(super) fn busy(&self, user: &str) -> bool {
        self.calls.values().any(|c| {
            (c.answered || c.connected) && c.leg_of_user(user).is_some_and(|i| c.legs[i].is_in())
        })
    }

    /// Count a dial or invite of `user`; false when over the rate.
    pub(super) fn rate_ok(&mut self, user: &str, now: Instant) -> bool {
        self.count_dial(user, self.cfg.dials_per_minute, now)
    }

    /// Count a call from a user of `domain` (keyed `@domain`: no user name has an `@`);
    /// false when over the rate.
    pub(super) fn remote_rate_ok(&mut self, domain: &str, now: Instant) -> bool {
        let key = format!("@{domain}");
        self.count_dial(&key, self.cfg.remote_dials_per_minute, now)
    }

    fn count_dial(&mut self, key: &str, limit: usize, now: Instant) -> bool {
        if limit == 0 {
            return true;
        }
        let times = self.dials.entry(key.to_string()).or_default();
        while times.front().is_some_and(|t| *t + RATE_WINDOW <= now) {
            times.pop_front();
        }
        if times.len() >= limit {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Whether `address` can be rung now by `caller` (None: a remote caller); why not.
    pub(super) fn reach(
        &self,
        address: &Address,
        caller: Option<&str>,
    ) -> Result<(), (EndReason, String)> {
        match address.route(&self.cfg.domain) {
            Route::Local { user } => {
                if caller == Some(user.as_str()) {
                    return Err((EndReason::Failed, "you cannot call yourself".into()));
                }
                if self
                    .cfg
                    .known_users
                    .as_ref()
                    .is_some_and(|known| !known.contains(&user))
                {
                    return Err((EndReason::Unreachable, format!("no user {address}")));
                }
                if !self.lines.contains_key(&user) {
                    return Err((
                        EndReason::Unreachable,
                        format!("{address} is not signed in"),
                    ));
                }
                if self.busy(&user) {
                    return Err((EndReason::Busy, format!("{address} is in another call")));
                }
                if self.calls_of(&user) >= self.cfg.max_calls_per_user {
                    return Err((EndReason::Busy, format!("{address} has too many calls")));
                }
                Ok(())
            }
            Route::Remote { domain } => {
                if self.federates(&domain) {
                    Ok(())
                } else {
                    Err((
                        EndReason::Unreachable,
                        format!("no federation with {domain}"),
                    ))
                }
            }
        }
    }
}
