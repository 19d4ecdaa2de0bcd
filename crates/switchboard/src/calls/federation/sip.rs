//! The SIP [`FarLink`]: the gateway's [`SipFederation`] (an INVITE carrying the browser's
//! SDP unchanged, no media gateway on the path), its events in the glue's terms. SIP has
//! no trickle here: the glue hands over descriptions with their candidates written in.

use super::link::{FarLink, LinkError, LinkEvent};
use crate::sip::{EndReason as SipEnd, FederationError, FederationEvent, SipFederation};
use switchboard_calls::EndReason;
use switchboard_xmpp::TrickleCandidate;
use tokio::sync::mpsc;

pub struct SipLink(SipFederation);

/// The link over `fed`, and its events from `events` in the glue's terms.
pub fn start(
    fed: SipFederation,
    mut events: mpsc::Receiver<FederationEvent>,
) -> (SipLink, mpsc::Receiver<LinkEvent>) {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if tx.send(link_event(e)).await.is_err() {
                return;
            }
        }
    });
    (SipLink(fed), rx)
}

fn link_event(e: FederationEvent) -> LinkEvent {
    match e {
        FederationEvent::Incoming {
            id,
            from,
            from_name,
            to,
            sdp_offer,
        } => LinkEvent::Incoming {
            sid: id,
            from,
            from_name,
            to,
            offer: Some(sdp_offer),
        },
        FederationEvent::Ringing { id } => LinkEvent::Ringing { sid: id },
        FederationEvent::Accepted { id, sdp_answer } => LinkEvent::Accepted {
            sid: id,
            sdp: sdp_answer,
        },
        FederationEvent::Ended { id, reason } => {
            let (reason, detail) = end_reason(reason);
            LinkEvent::Ended {
                sid: id,
                reason,
                detail,
            }
        }
    }
}

fn end_reason(r: SipEnd) -> (EndReason, String) {
    match r {
        SipEnd::Declined => (EndReason::Declined, "declined (603)".into()),
        SipEnd::Busy => (EndReason::Busy, "busy (486)".into()),
        SipEnd::Unreachable => (
            EndReason::Unreachable,
            "no such user, or their server is not reachable".into(),
        ),
        SipEnd::Cancelled => (EndReason::Cancelled, "the caller cancelled".into()),
        SipEnd::HungUp => (EndReason::Hangup, "hung up".into()),
        SipEnd::Timeout => (EndReason::NoAnswer, "no answer in time".into()),
        SipEnd::Failed(why) => (EndReason::Failed, format!("SIP: {why}")),
    }
}

fn err(e: FederationError) -> LinkError {
    LinkError {
        unreachable: matches!(e, FederationError::Unresolved(_) | FederationError::Stopped),
        detail: e.to_string(),
    }
}

impl FarLink for SipLink {
    fn trickles(&self) -> bool {
        false
    }

    async fn place(
        &self,
        from: &str,
        name: &str,
        to: &str,
        sdp: &str,
    ) -> Result<String, LinkError> {
        let name = Some(name).filter(|n| !n.is_empty());
        self.0.place_named(from, name, to, sdp).await.map_err(err)
    }

    async fn accept(&self, sid: &str) -> Result<(), LinkError> {
        self.0.accept(sid).await.map_err(err)
    }

    async fn answer(&self, sid: &str, sdp: &str) -> Result<(), LinkError> {
        self.0.answer(sid, sdp).await.map_err(err)
    }

    async fn refuse(&self, sid: &str, reason: EndReason) -> Result<(), LinkError> {
        let r = match reason {
            EndReason::Busy | EndReason::RateLimited => self.0.busy(sid).await,
            EndReason::Unreachable => self.0.unknown(sid).await,
            _ => self.0.decline(sid).await,
        };
        r.map_err(err)
    }

    async fn hangup(&self, sid: &str) -> Result<(), LinkError> {
        self.0.hangup(sid).await.map_err(err)
    }

    async fn candidate(&self, _sid: &str, _candidate: TrickleCandidate) -> Result<(), LinkError> {
        // Never asked: the glue writes candidates into the description for this link.
        Ok(())
    }

    async fn stop(self) {}
}
