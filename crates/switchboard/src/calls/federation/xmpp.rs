//! The XMPP/Jingle [`FarLink`]: the component link of `switchboard_xmpp` (XEP-0114, JMI
//! then Jingle, candidates trickled as `transport-info`), its events in the glue's terms.

use super::link::{FarLink, LinkError, LinkEvent};
use crate::config::federation::XmppConfig;
use std::sync::Arc;
use switchboard_calls::EndReason;
use switchboard_xmpp::driver::{
    ComponentConfig, FederationError, FederationEvent, LinkStats, XmppFederation,
};
use switchboard_xmpp::{CallEvent, CallsConfig, EndReason as JingleEnd, TrickleCandidate};
use tokio::sync::mpsc;

pub struct XmppLink(XmppFederation);

/// Start the component link: the link, its events, and its stanza counters.
pub fn start(cfg: &XmppConfig) -> (XmppLink, mpsc::Receiver<LinkEvent>, Arc<LinkStats>) {
    let link = ComponentConfig::new(&cfg.server, &cfg.component, &cfg.secret);
    let mut jingle = CallsConfig::new(&cfg.component);
    jingle.addresses = cfg.addresses.clone();
    let (fed, mut events) = XmppFederation::spawn(link, jingle);
    let stats = fed.stats_handle();
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if tx.send(link_event(e)).await.is_err() {
                return;
            }
        }
    });
    (XmppLink(fed), rx, stats)
}

fn link_event(e: FederationEvent) -> LinkEvent {
    let call = match e {
        FederationEvent::Connected => return LinkEvent::Up,
        FederationEvent::Disconnected { why } => return LinkEvent::Down(why),
        FederationEvent::Call(c) => c,
    };
    match call {
        CallEvent::Incoming {
            sid,
            from,
            from_name,
            to,
            ..
        } => LinkEvent::Incoming {
            sid,
            from,
            from_name,
            to,
            offer: None,
        },
        CallEvent::Ringing { sid } => LinkEvent::Ringing { sid },
        CallEvent::Accepted { sid, sdp_answer } => LinkEvent::Accepted {
            sid,
            sdp: sdp_answer,
        },
        CallEvent::RemoteOffer { sid, sdp_offer } => LinkEvent::Offer {
            sid,
            sdp: sdp_offer,
        },
        CallEvent::RemoteCandidate { sid, candidate } => LinkEvent::Candidate { sid, candidate },
        CallEvent::Ended { sid, reason } => {
            let (reason, detail) = end_reason(&reason);
            LinkEvent::Ended {
                sid,
                reason,
                detail,
            }
        }
    }
}

/// A Jingle end as the book's reason, with the detail a caller's page shows.
fn end_reason(r: &JingleEnd) -> (EndReason, String) {
    match r {
        JingleEnd::Declined => (EndReason::Declined, "declined".into()),
        JingleEnd::Busy => (EndReason::Busy, "busy".into()),
        JingleEnd::Cancelled => (EndReason::Cancelled, "the caller cancelled".into()),
        JingleEnd::HungUp => (EndReason::Hangup, "hung up".into()),
        JingleEnd::Unreachable => (
            EndReason::Unreachable,
            "no such user, or their server is not reachable".into(),
        ),
        JingleEnd::Timeout => (EndReason::NoAnswer, "no answer".into()),
        JingleEnd::Gone => (EndReason::Hangup, "the far party is gone".into()),
        JingleEnd::Failed(why) => (EndReason::Failed, format!("XMPP: {why}")),
    }
}

fn err(e: FederationError) -> LinkError {
    LinkError {
        unreachable: matches!(e, FederationError::NotConnected),
        detail: e.to_string(),
    }
}

impl FarLink for XmppLink {
    fn trickles(&self) -> bool {
        true
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
            EndReason::Declined | EndReason::NoAnswer | EndReason::AnsweredElsewhere => {
                self.0.decline(sid).await
            }
            _ => self.0.hangup(sid).await,
        };
        r.map_err(err)
    }

    async fn hangup(&self, sid: &str) -> Result<(), LinkError> {
        self.0.hangup(sid).await.map_err(err)
    }

    async fn candidate(&self, sid: &str, candidate: TrickleCandidate) -> Result<(), LinkError> {
        self.0.local_candidate(sid, candidate).await.map_err(err)
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}
