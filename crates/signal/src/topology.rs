//! Room topology: whether a room's media goes peer to peer (mesh) or through the SFU.
//!
//! The hub decides it, not the SFU, because the decision is about membership: the room's
//! creator picks a `topology` in its `join` (`auto`, `sfu` or `mesh`, kept for the room's
//! lifetime), and an `auto` room turns SFU when its n-th client member joins
//! (`HubConfig::sfu_threshold`). The turn happens once per room lifetime and is
//! announced to the server as [`crate::Output::ServiceWanted`], so that the SFU driver
//! joins the room as a service participant; clients learn it from `joined.topology` and
//! from the peer whose `service` is `"sfu"`. A room in SFU mode gets the larger
//! `sfu_room_capacity`, and service participants never take a client's place.

use crate::hub::{Hub, Output, SessionKey};
use crate::mode::{mode_name, Topology, CALLS, MAX_SERVICES_PER_ROOM, SFU};
use crate::protocol::ErrorCode;
use std::sync::Arc;

/// What admitting one more member to a room means.
pub(crate) struct JoinPlan {
    /// The room turns SFU with this member.
    pub turns_sfu: bool,
}

impl Hub {
    /// Whether rooms may turn SFU at all: someone serves them
    /// ([`crate::Signaling::service_requests`]) and the threshold is not `off`.
    fn sfu_possible(&self) -> bool {
        self.sfu_available && self.cfg.sfu_threshold.is_some()
    }

    /// Whether a room asked to be `topology` is SFU once it has `clients` client members.
    fn wants_sfu(&self, topology: Topology, clients: usize) -> bool {
        if !self.sfu_possible() {
            return false;
        }
        match (topology, self.cfg.sfu_threshold) {
            (Topology::Mesh, _) | (_, None) => false,
            (Topology::Sfu, _) => true,
            (Topology::Auto, Some(n)) => clients >= n,
        }
    }

    /// Client members (service participants excluded) and service participants of `room`.
    pub(crate) fn member_counts(&self, room: &str) -> (usize, usize) {
        let Some(r) = self.rooms.get(room) else {
            return (0, 0);
        };
        let services = r
            .members
            .iter()
            .filter(|k| self.sessions.get(k).is_some_and(|s| s.service))
            .count();
        (r.members.len() - services, services)
    }

    /// Check that one more member fits in `room` (created with `requested` if it does not
    /// exist yet) and say whether it turns the room SFU.
    pub(crate) fn plan_join(
        &self,
        room: &str,
        requested: Topology,
        service: bool,
    ) -> Result<JoinPlan, (ErrorCode, String)> {
        let (clients, services) = self.member_counts(room);
        if service {
            if services >= MAX_SERVICES_PER_ROOM {
                return Err((
                    ErrorCode::RoomFull,
                    format!("room {room} has {MAX_SERVICES_PER_ROOM} service participants"),
                ));
            }
            return Ok(JoinPlan { turns_sfu: false });
        }
        let (topology, sfu) = self
            .rooms
            .get(room)
            .map_or((requested, false), |r| (r.topology, r.sfu));
        let turns_sfu = !sfu && self.wants_sfu(topology, clients + 1);
        let capacity = if crate::protocol::is_call_room(room) {
            self.cfg.call_room_capacity
        } else if sfu || turns_sfu {
            self.cfg.sfu_room_capacity
        } else {
            self.cfg.room_capacity
        };
        if clients >= capacity {
            let mode = mode_name(sfu || turns_sfu);
            return Err((
                ErrorCode::RoomFull,
                format!("room {room} is full ({capacity} participants, {mode})"),
            ));
        }
        Ok(JoinPlan { turns_sfu })
    }

    /// Record the outcome of [`Hub::plan_join`] once the member `key` is in `room`: the
    /// creator's topology, and the turn to SFU with its request to the server.
    pub(crate) fn settle_join(
        &mut self,
        room: &Arc<str>,
        key: SessionKey,
        requested: Topology,
        plan: &JoinPlan,
    ) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.members.first() == Some(&key) {
            r.topology = requested;
        }
        if plan.turns_sfu {
            r.sfu = true;
            self.out.push(Output::ServiceWanted {
                room: room.clone(),
                kind: SFU,
            });
        }
    }

    /// Turn `room` SFU now (a WHIP publisher joined it: its media can only go through the
    /// SFU), requesting the SFU if it was not yet. False when the room does not exist,
    /// its creator asked for `mesh`, or no SFU runs.
    pub fn require_sfu(&mut self, room: &str) -> bool {
        if !self.sfu_possible() {
            return false;
        }
        let Some((key, r)) = self.rooms.get_key_value(room) else {
            return false;
        };
        if r.topology == Topology::Mesh {
            return false;
        }
        if !r.sfu {
            let key = key.clone();
            if let Some(r) = self.rooms.get_mut(room) {
                r.sfu = true;
            }
            self.record_room(&key);
            self.out.push(Output::ServiceWanted {
                room: key,
                kind: SFU,
            });
        }
        true
    }

    /// Ask for the calls peer in line `room` when a client is in it and none is there
    /// or asked for yet.
    pub(crate) fn want_calls(&mut self, room: &Arc<str>) {
        let (clients, _) = self.member_counts(room);
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.calls_wanted || clients == 0 {
            return;
        }
        let served = r.members.iter().any(|k| {
            self.sessions
                .get(k)
                .is_some_and(|s| s.peer.service.as_deref() == Some(CALLS))
        });
        r.calls_wanted = true;
        if !served {
            self.out.push(Output::ServiceWanted {
                room: room.clone(),
                kind: CALLS,
            });
        }
    }

    /// Whether `room` is in SFU mode.
    pub fn room_is_sfu(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|r| r.sfu)
    }

    /// Whether someone serves SFU rooms (set by [`crate::Signaling::service_requests`];
    /// a hub made alone assumes so, for tests of the rules).
    pub fn set_sfu_available(&mut self, available: bool) {
        self.sfu_available = available;
    }
}
