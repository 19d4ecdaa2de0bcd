//! XMPP federation: the call book's far parties over Jingle. One task per server runs
//! the [`XmppFederation`] component link and, for every call with a user of another
//! server, a [`RemoteRoom`] participant in the call room; it translates between the
//! three: the book's [`FederationAction`]s, the Jingle machine's [`CallEvent`]s, and the
//! browser's offer, answer and candidates ([`FromRoom`]).
//!
//! Caller side (our user dials `bob@b.test`): the participant joins the call room at
//! once and asks the caller's browser for an offer; the offer goes out as a JMI
//! `propose` (ringing) and, once the callee proceeds, a `session-initiate`. The answer
//! and candidates come back to the browser. The far party counts as in the call from
//! its answer on (the book's rule), so an early participant does not connect the call.
//!
//! Callee side (a `propose` for our user): the book rings the user's line; on their
//! accept the participant sends `proceed`, joins the call room and hands the browser the
//! caller's offer when it arrives; the browser's answer goes back as `session-accept`.

use super::remote::{FromRoom, RemoteRoom};
use super::CallsHandle;
use crate::config::federation::XmppConfig;
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_calls::{Address, EndReason, Event, FederationAction, FederationInput};
use switchboard_signal::Signaling;
use switchboard_xmpp::driver::{ComponentConfig, FederationEvent, LinkStats, XmppFederation};
use switchboard_xmpp::{CallEvent, CallsConfig, EndReason as JingleEnd, TrickleCandidate};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

/// One call with a far party.
struct Leg {
    role: Role,
    /// The far party, as the book names it.
    remote: Address,
    /// The Jingle session, once there is one (caller: after the offer was placed).
    sid: Option<String>,
    room: Arc<str>,
    /// The participant's display name in the room.
    name: String,
    /// Our user's address (caller side: who dials).
    local: String,
    part: Option<RemoteRoom>,
    /// Callee side: the caller's offer, until the device is there to take it.
    offer: Option<String>,
    /// Callee side: whether the device has the offer (candidates wait until then).
    offered: bool,
    candidates: Vec<TrickleCandidate>,
}

/// The far parties of every call over XMPP.
pub struct XmppGlue {
    sig: Arc<Signaling>,
    calls: CallsHandle,
    fed: XmppFederation,
    /// By the book's call id.
    legs: HashMap<Arc<str>, Leg>,
    /// Book call id by Jingle sid.
    by_sid: HashMap<String, Arc<str>>,
    /// Incoming calls the book has not taken yet: sid -> the caller.
    incoming: HashMap<String, Address>,
    room_tx: UnboundedSender<(Arc<str>, FromRoom)>,
}

/// Start the component link; the returned stats count its stanzas.
pub fn start(
    cfg: &XmppConfig,
    domain: &str,
    sig: Arc<Signaling>,
    calls: CallsHandle,
    actions: UnboundedReceiver<FederationAction>,
) -> Arc<LinkStats> {
    let link = ComponentConfig::new(&cfg.server, &cfg.component, &cfg.secret);
    let mut jingle = CallsConfig::new(&cfg.component);
    jingle.addresses = cfg.addresses.clone();
    let (fed, events) = XmppFederation::spawn(link, jingle);
    let stats = fed.stats_handle();
    let (room_tx, room_rx) = mpsc::unbounded_channel();
    let glue = XmppGlue {
        sig,
        calls,
        fed,
        legs: HashMap::new(),
        by_sid: HashMap::new(),
        incoming: HashMap::new(),
        room_tx,
    };
    tracing::info!(
        component = cfg.component,
        server = cfg.server,
        "calls: XMPP federation as component {} of {} (users {domain} <-> JIDs by {:?})",
        cfg.component,
        cfg.server,
        cfg.addresses
    );
    tokio::spawn(glue.run(actions, events, room_rx));
    stats
}

impl XmppGlue {
    async fn run(
        mut self,
        mut actions: UnboundedReceiver<FederationAction>,
        mut events: mpsc::Receiver<FederationEvent>,
        mut rooms: UnboundedReceiver<(Arc<str>, FromRoom)>,
    ) {
        loop {
            tokio::select! {
                a = actions.recv() => match a {
                    Some(a) => self.action(a).await,
                    None => break,
                },
                e = events.recv() => match e {
                    Some(e) => self.xmpp(e).await,
                    None => break,
                },
                Some((call, what)) = rooms.recv() => self.room(call, what).await,
            }
        }
        self.fed.stop().await;
        tracing::debug!("XMPP federation stopped");
    }

    /// What the book asks.
    async fn action(&mut self, action: FederationAction) {
        match action {
            FederationAction::Dial {
                id, from, to, room, ..
            } => self.dial(id, from, to, room),
            FederationAction::Notify { to, event, .. } => self.notify(&to, event).await,
        }
    }

    fn dial(&mut self, id: Arc<str>, from: String, to: String, room: Arc<str>) {
        let Ok(remote) = Address::parse(&to, "") else {
            self.gone(&id, &to, EndReason::Unreachable, "not an address");
            return;
        };
        let mut leg = Leg {
            role: Role::Caller,
            remote,
            sid: None,
            room,
            name: to.clone(),
            local: from,
            part: None,
            offer: None,
            offered: false,
            candidates: Vec::new(),
        };
        if let Err(why) = self.join(&id, &mut leg) {
            self.gone(&id, &to, EndReason::Failed, &why);
            return;
        }
        self.legs.insert(id, leg);
    }

    fn join(&self, id: &Arc<str>, leg: &mut Leg) -> Result<(), String> {
        let part = RemoteRoom::join(
            &self.sig,
            &leg.room,
            &leg.name,
            id.clone(),
            self.room_tx.clone(),
        )
        .map_err(|e| format!("cannot join the call room: {e}"))?;
        leg.part = Some(part);
        Ok(())
    }

    /// The book tells the far party `to` about the call.
    async fn notify(&mut self, to: &str, event: Event) {
        match event {
            // Our answer to a `propose`: the call exists, ringing our user.
            Event::Dialing {
                id,
                reference,
                room,
                ..
            } => {
                let Some(sid) = reference.as_ref().and_then(|r| r.as_str()) else {
                    return;
                };
                let Some(remote) = self.incoming.remove(sid) else {
                    return;
                };
                self.by_sid.insert(sid.to_string(), id.clone());
                self.legs.insert(
                    id,
                    Leg {
                        role: Role::Callee,
                        remote,
                        sid: Some(sid.to_string()),
                        room,
                        name: to.to_string(),
                        local: String::new(),
                        part: None,
                        offer: None,
                        offered: false,
                        candidates: Vec::new(),
                    },
                );
            }
            // Our user took the call: `proceed`, and into the room for the offer.
            Event::Answered { id, .. } => {
                let Some(leg) = self.legs.get(&id) else {
                    return;
                };
                if leg.role != Role::Callee || leg.part.is_some() {
                    return;
                }
                let sid = leg.sid.clone().unwrap_or_default();
                if let Err(e) = self.fed.accept(&sid).await {
                    return self.fail(&id, &format!("proceed: {e}"));
                }
                let Some(mut leg) = self.legs.remove(&id) else {
                    return;
                };
                match self.join(&id, &mut leg) {
                    Ok(()) => {
                        self.legs.insert(id, leg);
                    }
                    Err(why) => {
                        let _ = self.fed.hangup(&sid).await;
                        self.legs.insert(id.clone(), leg);
                        self.fail(&id, &why);
                    }
                }
            }
            Event::Ended {
                id,
                reference,
                reason,
                ..
            } => {
                // Refused before the book made a call of it.
                if let Some(sid) = reference.as_ref().and_then(|r| r.as_str()) {
                    if self.incoming.remove(sid).is_some() {
                        self.refuse(sid, reason).await;
                        return;
                    }
                }
                let Some(leg) = self.legs.remove(&id) else {
                    return;
                };
                if let Some(sid) = &leg.sid {
                    self.by_sid.remove(sid);
                    let answered = leg.part.is_some();
                    if leg.role == Role::Callee && !answered {
                        self.refuse(sid, reason).await;
                    } else if let Err(e) = self.fed.hangup(sid).await {
                        tracing::debug!(sid, error = %e, "XMPP hangup");
                    }
                }
            }
            // The far party is told of others leaving when it is in a larger call; a
            // one-to-one Jingle session has nothing to say about it.
            _ => {}
        }
    }

    /// Refuse an incoming Jingle call the way the book ended it.
    async fn refuse(&self, sid: &str, reason: EndReason) {
        let r = match reason {
            EndReason::Busy | EndReason::RateLimited => self.fed.busy(sid).await,
            EndReason::Unreachable => self.fed.unknown(sid).await,
            EndReason::Declined | EndReason::NoAnswer | EndReason::AnsweredElsewhere => {
                self.fed.decline(sid).await
            }
            _ => self.fed.hangup(sid).await,
        };
        if let Err(e) = r {
            tracing::debug!(sid, error = %e, "XMPP refusal");
        }
    }

    /// What the XMPP side reports.
    async fn xmpp(&mut self, event: FederationEvent) {
        let event = match event {
            FederationEvent::Connected => {
                tracing::info!("XMPP federation: component connected");
                return;
            }
            FederationEvent::Disconnected { why } => {
                tracing::warn!(why, "XMPP federation: component disconnected; reconnecting");
                return;
            }
            FederationEvent::Call(e) => e,
        };
        match event {
            CallEvent::Incoming { sid, from, to, .. } => {
                let Ok(caller) = Address::parse(&from, "") else {
                    let _ = self.fed.unknown(&sid).await;
                    return;
                };
                self.incoming.insert(sid.clone(), caller.clone());
                self.calls
                    .federation_dial(caller, from, to, serde_json::Value::String(sid));
            }
            CallEvent::Ringing { sid } => self.report(&sid, FederationInput::Ringing),
            CallEvent::Accepted { sid, sdp_answer } => {
                self.report(&sid, FederationInput::Answered);
                if let Some(leg) = self.leg_of(&sid) {
                    if let Some(p) = &leg.part {
                        p.answer(&sdp_answer);
                    }
                }
            }
            CallEvent::RemoteOffer { sid, sdp_offer } => {
                if let Some(leg) = self.leg_of_mut(&sid) {
                    leg.offer = Some(sdp_offer);
                    offer_to_device(leg);
                }
            }
            CallEvent::RemoteCandidate { sid, candidate } => {
                if let Some(leg) = self.leg_of_mut(&sid) {
                    match &leg.part {
                        Some(p) if leg.role == Role::Caller || leg.offered => {
                            p.candidate(&candidate)
                        }
                        _ => leg.candidates.push(candidate),
                    }
                }
            }
            CallEvent::Ended { sid, reason } => {
                if self.incoming.remove(&sid).is_some() {
                    // Cancelled before the book took it: nothing rings yet.
                    return;
                }
                let Some(id) = self.by_sid.remove(&sid) else {
                    return;
                };
                let Some(leg) = self.legs.remove(&id) else {
                    return;
                };
                let (reason, detail) = end_reason(&reason);
                let input = FederationInput::Gone {
                    reason,
                    detail: detail.clone(),
                };
                // Told before the participant leaves, so the book ends the call for this
                // reason rather than for an emptied room.
                self.calls
                    .federation_event(id.to_string(), leg.remote.clone(), input);
                drop(leg);
            }
        }
    }

    /// What the call room says.
    async fn room(&mut self, id: Arc<str>, what: FromRoom) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        match what {
            FromRoom::Joined(device) => {
                let Some(p) = &mut leg.part else { return };
                if p.device.is_some() {
                    return;
                }
                p.device = Some(device);
                match leg.role {
                    Role::Caller => p.ask_offer(),
                    Role::Callee => offer_to_device(leg),
                }
            }
            FromRoom::Left(device) => {
                // The book ends the call when its room empties; a second device of the
                // call (an invitee) leaving changes nothing here.
                if let Some(p) = &mut leg.part {
                    if p.device.as_deref() == Some(&*device) {
                        p.device = None;
                    }
                }
            }
            FromRoom::Offer { from, sdp } => {
                if !is_device(leg, &from) || leg.role != Role::Caller {
                    return;
                }
                if leg.sid.is_some() {
                    // Jingle content-modify is not supported: the session keeps its
                    // first description.
                    tracing::debug!(call = %id, "renegotiation towards XMPP ignored");
                    return;
                }
                let (local, remote) = (leg.local.clone(), leg.remote.to_string());
                match self.fed.place(&local, &remote, &sdp).await {
                    Ok(sid) => {
                        self.by_sid.insert(sid.clone(), id.clone());
                        let pending = match self.legs.get_mut(&id) {
                            Some(leg) => {
                                leg.sid = Some(sid.clone());
                                std::mem::take(&mut leg.candidates)
                            }
                            None => Vec::new(),
                        };
                        for c in pending {
                            let _ = self.fed.local_candidate(&sid, c).await;
                        }
                    }
                    Err(e) => {
                        let reason = match e {
                            switchboard_xmpp::driver::FederationError::NotConnected => {
                                EndReason::Unreachable
                            }
                            _ => EndReason::Failed,
                        };
                        let remote = leg_remote(&self.legs, &id);
                        self.legs.remove(&id);
                        self.gone(&id, &remote, reason, &e.to_string());
                    }
                }
            }
            FromRoom::Answer { from, sdp } => {
                if !is_device(leg, &from) || leg.role != Role::Callee {
                    return;
                }
                let sid = leg.sid.clone().unwrap_or_default();
                if let Err(e) = self.fed.answer(&sid, &sdp).await {
                    self.fail(&id, &format!("session-accept: {e}"));
                }
            }
            FromRoom::Candidate { from, candidate } => {
                if !is_device(leg, &from) {
                    return;
                }
                match leg.sid.clone() {
                    Some(sid) => {
                        if let Err(e) = self.fed.local_candidate(&sid, candidate).await {
                            tracing::debug!(sid, error = %e, "candidate not sent");
                        }
                    }
                    None if leg.candidates.len() < 64 => leg.candidates.push(candidate),
                    None => {}
                }
            }
            FromRoom::Gone => {
                if let Some(leg) = self.legs.get_mut(&id) {
                    leg.part = None;
                }
            }
        }
    }

    fn leg_of(&self, sid: &str) -> Option<&Leg> {
        self.legs.get(self.by_sid.get(sid)?)
    }

    fn leg_of_mut(&mut self, sid: &str) -> Option<&mut Leg> {
        let id = self.by_sid.get(sid)?;
        self.legs.get_mut(id)
    }

    fn report(&self, sid: &str, input: FederationInput) {
        if let Some(id) = self.by_sid.get(sid) {
            if let Some(leg) = self.legs.get(id) {
                self.calls
                    .federation_event(id.to_string(), leg.remote.clone(), input);
            }
        }
    }

    /// Our side of call `id` cannot go on: the book ends the far party's part.
    fn fail(&mut self, id: &Arc<str>, why: &str) {
        let remote = leg_remote(&self.legs, id);
        if let Some(leg) = self.legs.remove(id) {
            if let Some(sid) = &leg.sid {
                self.by_sid.remove(sid);
            }
        }
        self.gone(id, &remote, EndReason::Failed, why);
    }

    fn gone(&self, id: &Arc<str>, remote: &str, reason: EndReason, detail: &str) {
        tracing::info!(call = %id, remote, reason = reason.as_str(), detail, "XMPP federation");
        let Ok(remote) = Address::parse(remote, "") else {
            return;
        };
        let input = FederationInput::Gone {
            reason,
            detail: detail.to_string(),
        };
        self.calls.federation_event(id.to_string(), remote, input);
    }
}

fn leg_remote(legs: &HashMap<Arc<str>, Leg>, id: &Arc<str>) -> String {
    legs.get(id)
        .map(|l| l.remote.to_string())
        .unwrap_or_default()
}

fn is_device(leg: &Leg, from: &str) -> bool {
    leg.part
        .as_ref()
        .and_then(|p| p.device.as_deref())
        .is_some_and(|d| d == from)
}

/// Callee side: hand the caller's offer, then the candidates that waited, to the device.
fn offer_to_device(leg: &mut Leg) {
    let Some(p) = &leg.part else { return };
    if p.device.is_none() || leg.offered {
        return;
    }
    let Some(offer) = leg.offer.take() else {
        return;
    };
    p.offer(&offer);
    leg.offered = true;
    for c in leg.candidates.drain(..) {
        p.candidate(&c);
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
