//! One call as the [`crate::CallBook`] keeps it: its room and its legs. Every party is a
//! leg, the caller included (in from the start): a leg is either ringing (a local user's
//! devices, or a remote address a federation rings) or in the call (one device, or a
//! remote party). Three-party calls are the same shape with one more leg.

use crate::{Address, DeviceId};
use std::sync::Arc;
use std::time::Instant;

/// Who a leg is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// A user of this server.
    Local(String),
    /// A party on another domain, reached through federation.
    Remote(Address),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LegState {
    /// Rung since `since` on these devices (none for a remote leg).
    Ringing {
        since: Instant,
        devices: Vec<DeviceId>,
    },
    /// In the call, on this device (None for a remote party).
    In { device: Option<DeviceId> },
}

#[derive(Clone, Debug)]
pub(crate) struct Leg {
    pub who: Who,
    /// Its address, as events name it.
    pub address: String,
    /// Who rang it, and their display name (empty for the caller's own leg).
    pub from: String,
    pub from_name: String,
    pub state: LegState,
}

impl Leg {
    pub fn is_in(&self) -> bool {
        matches!(self.state, LegState::In { .. })
    }

    pub fn is_local(&self, user: &str) -> bool {
        matches!(&self.who, Who::Local(u) if u == user)
    }

    pub fn is_remote(&self, address: &Address) -> bool {
        matches!(&self.who, Who::Remote(a) if a == address)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub id: Arc<str>,
    pub room: Arc<str>,
    pub legs: Vec<Leg>,
    /// Client members of the call room (the calls peer and far parties' participants
    /// not counted: a far party counts from its answer on, see [`Call::parties`]).
    pub members: usize,
    /// The room has held two members: from now on, one left alone ends the call.
    pub connected: bool,
    /// Someone besides the caller took the call.
    pub answered: bool,
    /// Answered but not connected yet: the room must gather two members by then.
    pub connect_by: Option<Instant>,
}

impl Call {
    /// Who is in the call now: the room's client members and the far parties that
    /// answered (their participant may join the room before that, to carry the offer).
    pub fn parties(&self) -> usize {
        let remote = self
            .legs
            .iter()
            .filter(|l| matches!(l.who, Who::Remote(_)) && l.is_in())
            .count();
        self.members + remote
    }

    /// Legs in the call.
    pub fn inside(&self) -> impl Iterator<Item = &Leg> {
        self.legs.iter().filter(|l| l.is_in())
    }

    /// The index of the leg of local user `user`.
    pub fn leg_of_user(&self, user: &str) -> Option<usize> {
        self.legs.iter().position(|l| l.is_local(user))
    }

    pub fn leg_of_remote(&self, address: &Address) -> Option<usize> {
        self.legs.iter().position(|l| l.is_remote(address))
    }

    /// When a ringing leg or the connect deadline next expires.
    pub fn deadline(&self, ring_timeout: std::time::Duration) -> Option<Instant> {
        let rings = self.legs.iter().filter_map(|l| match &l.state {
            LegState::Ringing { since, .. } => Some(*since + ring_timeout),
            LegState::In { .. } => None,
        });
        rings.chain(self.connect_by).min()
    }
}
