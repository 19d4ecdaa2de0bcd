//! What a federation protocol offers the glue ([`super::Glue`]): a [`FarLink`] to act on
//! calls with users of other servers, and the [`LinkEvent`]s it reports. XMPP/Jingle and
//! SIP each implement it over their own driver; the glue is the same for both.

use std::future::Future;
use switchboard_calls::EndReason;
use switchboard_xmpp::TrickleCandidate;

/// Why a request to the link failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct LinkError {
    /// The far side cannot be reached at all (link down): `unreachable`, not `failed`.
    pub unreachable: bool,
    pub detail: String,
}

/// What the link reports. `sid` is the link's own name for the call.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    Up,
    Down(String),
    /// `from` (an app address, `xmpp:` for a plain JID) calls our user `to` (an address of
    /// our domain); a link that carries the offer with the call (SIP) gives it here.
    Incoming {
        sid: String,
        from: String,
        /// The caller's display name, when the protocol carries one.
        from_name: Option<String>,
        to: String,
        offer: Option<String>,
    },
    Ringing {
        sid: String,
    },
    /// The callee answered with this description.
    Accepted {
        sid: String,
        sdp: String,
    },
    /// The caller's offer (callee side, after `accept`), for links that send it then.
    Offer {
        sid: String,
        sdp: String,
    },
    Candidate {
        sid: String,
        candidate: TrickleCandidate,
    },
    Ended {
        sid: String,
        reason: EndReason,
        detail: String,
    },
}

/// Calls with users of other servers over one protocol.
pub trait FarLink: Send + Sync + 'static {
    /// Whether candidates trickle after the description (Jingle `transport-info`); when
    /// not (SIP), the glue puts the gathered candidates in the description it hands over.
    fn trickles(&self) -> bool;

    /// Call `to` from our user `from` (display name `name`) with this offer; the
    /// link's sid.
    fn place(
        &self,
        from: &str,
        name: &str,
        to: &str,
        sdp: &str,
    ) -> impl Future<Output = Result<String, LinkError>> + Send;

    /// Our callee took the call (the offer follows as [`LinkEvent::Offer`] when the
    /// link did not carry it with [`LinkEvent::Incoming`]).
    fn accept(&self, sid: &str) -> impl Future<Output = Result<(), LinkError>> + Send;

    fn answer(&self, sid: &str, sdp: &str) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Refuse an incoming call for `reason` (declined, busy, unreachable…).
    fn refuse(
        &self,
        sid: &str,
        reason: EndReason,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Cancel before the answer, hang up after it.
    fn hangup(&self, sid: &str) -> impl Future<Output = Result<(), LinkError>> + Send;

    fn candidate(
        &self,
        sid: &str,
        candidate: TrickleCandidate,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;

    fn stop(self) -> impl Future<Output = ()> + Send;
}
