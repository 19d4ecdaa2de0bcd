//! The words of room topology that the hub, its membership rules and the runtime handle
//! share: the `topology` a room's creator asks for, the service kind of the SFU, and the
//! bound on service participants. Kept apart from `topology` (the hub's decisions) so that
//! the hub's state can name them without importing the code that acts on them.

/// The service kind of the SFU, in `PeerInfo.service` and [`crate::Output::ServiceWanted`].
pub const SFU: &str = "sfu";
/// The service requests (`Signaling::service_requests`) for an SFU edge: a room another
/// node holds turned SFU while this node bridges some of its members (cluster).
pub const SFU_EDGE: &str = "sfu-edge";

/// The service kind of the server's calls peer, which the hub asks for in every line
/// room (`@user`) that has a client and none ([`crate::Output::ServiceWanted`]).
pub const CALLS: &str = "calls";

/// The service kind of a far party of a direct call (a user of another server reached
/// over XMPP or SIP federation). Browsers treat it as a mesh peer that always leads the
/// negotiation: it sends the offer, or asks for one.
pub const REMOTE: &str = "remote";

/// Service participants one room may hold (the SFU, a recorder, gateways…). They do not
/// count against the room's capacity, so they get a small bound of their own.
pub const MAX_SERVICES_PER_ROOM: usize = 8;

/// What the creator of a room asked for in its `join`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Topology {
    /// Mesh while small, SFU from the `sfu_threshold`-th client member on.
    #[default]
    Auto,
    /// SFU from the first member on.
    Sfu,
    /// Never SFU.
    Mesh,
}

impl Topology {
    /// The `topology` field of `join`.
    pub fn from_wire(s: &str) -> Option<Topology> {
        Some(match s {
            "auto" => Topology::Auto,
            "sfu" => Topology::Sfu,
            "mesh" => Topology::Mesh,
            _ => return None,
        })
    }
}

/// How a room's media flows now, as `joined.topology` says it.
pub(crate) fn mode_name(sfu: bool) -> &'static str {
    if sfu {
        "sfu"
    } else {
        "mesh"
    }
}
