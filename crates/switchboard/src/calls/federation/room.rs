//! The room side of a far party of a direct call: a service participant of kind
//! [`REMOTE`] in the call room that stands for the user on the other server. Browsers
//! treat it as a mesh peer that leads the negotiation, so it relays their offer, answer
//! and candidates to the federation (XMPP/Jingle, SIP) and the far side's back; media
//! goes browser to browser. Protocol-neutral: what arrives is handed to the federation's
//! task as [`FromRoom`], tagged with the call id.

use serde_json::{json, value::RawValue, Value};
use std::sync::Arc;
use switchboard_signal::{
    Grants, JoinError, RelayKind, ServiceEvent, ServiceParticipant, Signaling, REMOTE,
};
use switchboard_xmpp::TrickleCandidate;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

/// A far party offers and answers for a user who publishes and subscribes.
const REMOTE_GRANTS: Grants = Grants {
    publish: true,
    subscribe: true,
    admin: false,
};

/// What the room says to the far party.
#[derive(Debug)]
pub enum FromRoom {
    /// A client is in the room (it was there when the participant joined, or joined).
    Joined(Arc<str>),
    Left(Arc<str>),
    Offer {
        from: Arc<str>,
        sdp: String,
    },
    Answer {
        from: Arc<str>,
        sdp: String,
    },
    Candidate {
        from: Arc<str>,
        candidate: TrickleCandidate,
    },
    /// The participant is out of the room (server stopping, or too slow).
    Gone,
}

/// The far party's participant; dropping it leaves the room.
pub struct RemoteRoom {
    peer: Arc<ServiceParticipant>,
    _stop: oneshot::Sender<()>,
    /// The client the far party talks to (the first in the room).
    pub device: Option<Arc<str>>,
}

impl RemoteRoom {
    /// Join `room` as `name`; its events go to `tx` tagged with `call`.
    pub fn join(
        sig: &Arc<Signaling>,
        room: &str,
        name: &str,
        call: Arc<str>,
        tx: UnboundedSender<(Arc<str>, FromRoom)>,
    ) -> Result<RemoteRoom, JoinError> {
        let peer = Arc::new(sig.join_service_as(room, name, REMOTE, REMOTE_GRANTS)?);
        for p in peer.peers().iter().filter(|p| p.service.is_none()) {
            let _ = tx.send((call.clone(), FromRoom::Joined(p.id.clone())));
        }
        let (stop, mut stopped) = oneshot::channel::<()>();
        let events = peer.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = &mut stopped => return,
                    event = events.recv() => event,
                };
                let Some(event) = event else { break };
                if let Some(what) = from_room(event) {
                    if tx.send((call.clone(), what)).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send((call, FromRoom::Gone));
        });
        Ok(RemoteRoom {
            peer,
            _stop: stop,
            device: None,
        })
    }

    /// Ask the device for an offer (the SDK's `offer-me` control message).
    pub fn ask_offer(&self) {
        self.relay(RelayKind::Message, &json!({"$switchboard": "offer-me"}));
    }

    pub fn offer(&self, sdp: &str) {
        self.relay(RelayKind::Offer, &Value::String(sdp.to_string()));
    }

    pub fn answer(&self, sdp: &str) {
        self.relay(RelayKind::Answer, &Value::String(sdp.to_string()));
    }

    pub fn candidate(&self, c: &TrickleCandidate) {
        let mut v = json!({"candidate": c.candidate, "sdpMid": c.mid});
        if let Some(u) = &c.ufrag {
            v["usernameFragment"] = json!(u);
        }
        self.relay(RelayKind::Candidate, &v);
    }

    fn relay(&self, kind: RelayKind, v: &Value) {
        let Some(device) = &self.device else { return };
        let Ok(raw) = RawValue::from_string(v.to_string()) else {
            return;
        };
        if let Err(e) = self.peer.send(device, kind, &raw) {
            tracing::debug!(room = self.peer.room(), error = %e, "far party: not relayed");
        }
    }
}

fn from_room(event: ServiceEvent) -> Option<FromRoom> {
    match event {
        ServiceEvent::PeerJoined(p) if p.service.is_none() => Some(FromRoom::Joined(p.id)),
        ServiceEvent::PeerLeft { peer, .. } => Some(FromRoom::Left(peer)),
        ServiceEvent::Relay {
            from,
            kind,
            payload,
        } => match kind {
            RelayKind::Offer | RelayKind::Answer => {
                let sdp: String = serde_json::from_str(payload.get()).ok()?;
                Some(if kind == RelayKind::Offer {
                    FromRoom::Offer { from, sdp }
                } else {
                    FromRoom::Answer { from, sdp }
                })
            }
            RelayKind::Candidate => {
                let candidate = browser_candidate(payload.get())?;
                Some(FromRoom::Candidate { from, candidate })
            }
            RelayKind::Message => None,
        },
        ServiceEvent::Error { fatal: true, .. } => Some(FromRoom::Gone),
        _ => None,
    }
}

/// An `RTCIceCandidateInit` as the SDK relays it; None for the end of candidates or
/// anything else.
fn browser_candidate(json: &str) -> Option<TrickleCandidate> {
    let v: Value = serde_json::from_str(json).ok()?;
    let candidate = v.get("candidate")?.as_str()?;
    let mid = v.get("sdpMid")?.as_str()?;
    if candidate.is_empty() || candidate.len() > 1024 || mid.is_empty() || mid.len() > 64 {
        return None;
    }
    Some(TrickleCandidate {
        mid: mid.to_string(),
        candidate: candidate.to_string(),
        ufrag: v
            .get("usernameFragment")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= 256)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_candidates_are_read_and_odd_ones_dropped() {
        let c = browser_candidate(
            r#"{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#,
        )
        .unwrap();
        assert_eq!((c.mid.as_str(), c.ufrag.as_deref()), ("0", Some("abcd")));
        for odd in [
            "null",
            r#"{"candidate":"","sdpMid":"0"}"#,
            r#"{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}"#,
            "[1]",
        ] {
            assert!(browser_candidate(odd).is_none(), "{odd}");
        }
    }
}
