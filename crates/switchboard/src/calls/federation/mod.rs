//! Federation: the call book's far parties over another server's protocol. One task per
//! protocol ([`Glue`], generic over its [`FarLink`]: XMPP/Jingle, SIP) keeps, for every
//! call with a user of another server, a [`RemoteRoom`] participant in the call room,
//! and translates between three parties: the book's [`FederationAction`]s, the link's
//! [`LinkEvent`]s, and the browser's offer, answer and candidates ([`FromRoom`]).
//!
//! Caller side (our user dials `bob@b.test`): the participant joins the call room at
//! once and asks the caller's browser for an offer, which the link places (Jingle: a JMI
//! `propose` rings, `session-initiate` follows `proceed`; SIP: the INVITE). The answer and
//! candidates come back to the browser. The far party counts as in the call from its
//! answer on (the book's rule), so an early participant does not connect the call.
//!
//! Callee side (a call for our user): the book rings the user's line; on their accept
//! the link accepts, the participant joins the call room and hands the browser the
//! caller's offer; the browser's answer goes back over the link.
//!
//! A link without trickle (SIP) gets descriptions that hold the candidates: the glue
//! waits for the browser's candidates to settle ([`gather`]) and writes them in.

mod gather;
mod link;
mod room;
pub mod sip;
pub mod xmpp;

pub use link::{FarLink, LinkEvent};

use super::CallsHandle;
use gather::Gathering;
use room::{FromRoom, RemoteRoom};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use switchboard_calls::{Address, EndReason, Event, FederationAction, FederationInput};
use switchboard_signal::Signaling;
use switchboard_xmpp::TrickleCandidate;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// Which link carries a call: the book has one sink for its federation actions.
pub struct Routes {
    /// Domains with a `--sip-federation` entry: SIP even when XMPP runs too.
    pub sip_domains: Vec<String>,
    pub xmpp: Option<UnboundedSender<FederationAction>>,
    pub sip: Option<UnboundedSender<FederationAction>>,
}

impl Routes {
    pub fn any(&self) -> bool {
        self.xmpp.is_some() || self.sip.is_some()
    }

    /// A dial goes to one link: SIP for a domain named in `--sip-federation`, XMPP for
    /// an `xmpp:` address, else XMPP when it runs, else SIP. What the book tells a far
    /// party goes to both: only the link that has the call acts on it.
    pub fn send(&self, action: FederationAction) {
        let link = match &action {
            FederationAction::Dial { domain, to, .. } => {
                let sip_domain = self
                    .sip_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain));
                let to_sip = sip_domain && !to.starts_with("xmpp:");
                let first = if to_sip { &self.sip } else { &self.xmpp };
                first.as_ref().or(self.xmpp.as_ref()).or(self.sip.as_ref())
            }
            FederationAction::Notify { .. } => {
                if let Some(x) = &self.xmpp {
                    let _ = x.send(action.clone());
                }
                self.sip.as_ref()
            }
        };
        if let Some(tx) = link {
            let _ = tx.send(action);
        }
    }
}

/// Candidates kept for a call before its description could carry or precede them.
const MAX_WAITING_CANDIDATES: usize = 64;

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
    /// The link's call, once there is one (caller: after the offer was placed).
    sid: Option<String>,
    room: Arc<str>,
    /// The participant's display name in the room: the far party's address.
    name: String,
    /// Our user's address and display name (caller side: who dials).
    local: String,
    local_name: String,
    part: Option<RemoteRoom>,
    /// Callee side: the caller's offer, until the device is there to take it.
    offer: Option<String>,
    /// Callee side: the device has the offer (candidates from afar wait until then).
    offered: bool,
    /// Candidates waiting: from afar for the device, or from the device for the link.
    candidates: Vec<TrickleCandidate>,
    /// A link without trickle: our description, waiting for the device's candidates.
    gathering: Option<Gathering>,
}

impl Leg {
    fn new(role: Role, remote: Address, room: Arc<str>, name: String) -> Leg {
        Leg {
            role,
            remote,
            sid: None,
            room,
            name,
            local: String::new(),
            local_name: String::new(),
            part: None,
            offer: None,
            offered: false,
            candidates: Vec::new(),
            gathering: None,
        }
    }

    fn device_is(&self, from: &str) -> bool {
        self.part
            .as_ref()
            .and_then(|p| p.device.as_deref())
            .is_some_and(|d| d == from)
    }

    /// Callee side: hand the caller's offer, then the candidates that waited, to the
    /// device, once both are there.
    fn offer_to_device(&mut self) {
        let Some(p) = &self.part else { return };
        if p.device.is_none() || self.offered {
            return;
        }
        let Some(offer) = self.offer.take() else {
            return;
        };
        p.offer(&offer);
        self.offered = true;
        for c in self.candidates.drain(..) {
            p.candidate(&c);
        }
    }
}

/// The far parties of every call over one link.
pub struct Glue<L: FarLink> {
    /// For the log: "XMPP", "SIP".
    name: &'static str,
    sig: Arc<Signaling>,
    calls: CallsHandle,
    link: L,
    /// By the book's call id.
    legs: HashMap<Arc<str>, Leg>,
    /// Book call id by the link's sid.
    by_sid: HashMap<String, Arc<str>>,
    /// Incoming calls the book has not taken yet: sid -> the caller and its offer.
    incoming: HashMap<String, (Address, Option<String>)>,
    room_tx: UnboundedSender<(Arc<str>, FromRoom)>,
}

impl<L: FarLink> Glue<L> {
    /// Run the glue of `link` until the book or the link goes away.
    pub fn spawn(
        name: &'static str,
        link: L,
        events: mpsc::Receiver<LinkEvent>,
        sig: Arc<Signaling>,
        calls: CallsHandle,
        actions: UnboundedReceiver<FederationAction>,
    ) {
        let (room_tx, room_rx) = mpsc::unbounded_channel();
        let glue = Glue {
            name,
            sig,
            calls,
            link,
            legs: HashMap::new(),
            by_sid: HashMap::new(),
            incoming: HashMap::new(),
            room_tx,
        };
        tokio::spawn(glue.run(actions, events, room_rx));
    }

    async fn run(
        mut self,
        mut actions: UnboundedReceiver<FederationAction>,
        mut events: mpsc::Receiver<LinkEvent>,
        mut rooms: UnboundedReceiver<(Arc<str>, FromRoom)>,
    ) {
        loop {
            let due = self
                .legs
                .values()
                .filter_map(|l| l.gathering.as_ref())
                .map(Gathering::due)
                .min();
            let timer = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                a = actions.recv() => match a {
                    Some(a) => self.action(a).await,
                    None => break,
                },
                e = events.recv() => match e {
                    Some(e) => self.link_event(e).await,
                    None => break,
                },
                Some((call, what)) = rooms.recv() => self.room(call, what).await,
                () = timer => self.gathered(Instant::now()).await,
            }
        }
        self.link.stop().await;
        tracing::debug!("{} federation stopped", self.name);
    }

    /// What the book asks.
    async fn action(&mut self, action: FederationAction) {
        match action {
            FederationAction::Dial {
                id,
                from,
                from_name,
                to,
                room,
                ..
            } => self.dial(id, from, from_name, to, room),
            FederationAction::Notify { to, event, .. } => self.notify(&to, event).await,
        }
    }

    fn dial(&mut self, id: Arc<str>, from: String, name: String, to: String, room: Arc<str>) {
        let Ok(remote) = Address::parse(&to, "") else {
            return self.gone(&id, None, EndReason::Unreachable, "not an address");
        };
        let mut leg = Leg::new(Role::Caller, remote, room, to);
        leg.local = from;
        leg.local_name = name;
        if let Err(why) = self.join(&id, &mut leg) {
            return self.gone(&id, Some(leg.remote), EndReason::Failed, &why);
        }
        self.legs.insert(id, leg);
    }

    fn join(&self, id: &Arc<str>, leg: &mut Leg) -> Result<(), String> {
        let tx = self.room_tx.clone();
        let part = RemoteRoom::join(&self.sig, &leg.room, &leg.name, id.clone(), tx)
            .map_err(|e| format!("cannot join the call room: {e}"))?;
        leg.part = Some(part);
        Ok(())
    }

    /// The book tells the far party `to` about the call.
    async fn notify(&mut self, to: &str, event: Event) {
        match event {
            // The incoming call is the book's call `id` now, ringing our user.
            Event::Dialing {
                id,
                reference,
                room,
                ..
            } => {
                let Some(sid) = reference.as_ref().and_then(|r| r.as_str()) else {
                    return;
                };
                let Some((remote, offer)) = self.incoming.remove(sid) else {
                    return;
                };
                self.by_sid.insert(sid.to_string(), id.clone());
                let mut leg = Leg::new(Role::Callee, remote, room, to.to_string());
                leg.sid = Some(sid.to_string());
                leg.offer = offer;
                self.legs.insert(id, leg);
            }
            // Our user took the call: accept it over the link, and into the room.
            Event::Answered { id, .. } => self.answered(id).await,
            Event::Ended {
                id,
                reference,
                reason,
                ..
            } => {
                // Refused before the book made a call of it.
                if let Some(sid) = reference.as_ref().and_then(|r| r.as_str()) {
                    if self.incoming.remove(sid).is_some() {
                        return self.refuse(sid, reason).await;
                    }
                }
                let Some(leg) = self.legs.remove(&id) else {
                    return;
                };
                let Some(sid) = &leg.sid else { return };
                self.by_sid.remove(sid);
                if leg.role == Role::Callee && leg.part.is_none() {
                    self.refuse(sid, reason).await;
                } else if let Err(e) = self.link.hangup(sid).await {
                    tracing::debug!(sid, error = %e, "{} hangup", self.name);
                }
            }
            // A one-to-one session has nothing to say about others of a larger call.
            _ => {}
        }
    }

    async fn answered(&mut self, id: Arc<str>) {
        let Some(mut leg) = self.legs.remove(&id) else {
            return;
        };
        if leg.role != Role::Callee || leg.part.is_some() {
            self.legs.insert(id, leg);
            return;
        }
        let sid = leg.sid.clone().unwrap_or_default();
        let joined = match self.link.accept(&sid).await {
            Ok(()) => self.join(&id, &mut leg),
            Err(e) => Err(format!("accept: {e}")),
        };
        self.legs.insert(id.clone(), leg);
        if let Err(why) = joined {
            let _ = self.link.hangup(&sid).await;
            self.fail(&id, &why);
        }
    }

    async fn refuse(&self, sid: &str, reason: EndReason) {
        if let Err(e) = self.link.refuse(sid, reason).await {
            tracing::debug!(sid, error = %e, "{} refusal", self.name);
        }
    }

    /// What the link reports.
    async fn link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up => tracing::info!("{} federation: connected", self.name),
            LinkEvent::Down(why) => {
                tracing::warn!(why, "{} federation: link down; reconnecting", self.name)
            }
            LinkEvent::Incoming {
                sid,
                from,
                from_name,
                to,
                offer,
            } => {
                // `to` is one of ours (a link only takes calls for our domain): its user.
                let callee = to.split_once('@').map_or(to.as_str(), |(user, _)| user);
                let Ok(caller) = Address::parse(&from, "") else {
                    return self.refuse(&sid, EndReason::Unreachable).await;
                };
                if !switchboard_calls::valid_user(callee) {
                    return self.refuse(&sid, EndReason::Unreachable).await;
                }
                self.incoming.insert(sid.clone(), (caller.clone(), offer));
                let reference = serde_json::Value::String(sid);
                let callee = callee.to_string();
                // A display name from afar is shown on the ringing page: bounded.
                let name = from_name
                    .map(|n| {
                        n.trim()
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(64)
                            .collect::<String>()
                    })
                    .filter(|n| !n.is_empty())
                    .unwrap_or(from);
                self.calls.federation_dial(caller, name, callee, reference);
            }
            LinkEvent::Ringing { sid } => self.report(&sid, FederationInput::Ringing),
            LinkEvent::Accepted { sid, sdp } => {
                self.report(&sid, FederationInput::Answered);
                if let Some(p) = self.leg_of(&sid).and_then(|l| l.part.as_ref()) {
                    p.answer(&sdp);
                }
            }
            LinkEvent::Offer { sid, sdp } => {
                if let Some(leg) = self.leg_of_mut(&sid) {
                    leg.offer = Some(sdp);
                    leg.offer_to_device();
                }
            }
            LinkEvent::Candidate { sid, candidate } => {
                let Some(leg) = self.leg_of_mut(&sid) else {
                    return;
                };
                match &leg.part {
                    Some(p) if leg.role == Role::Caller || leg.offered => p.candidate(&candidate),
                    _ if leg.candidates.len() < MAX_WAITING_CANDIDATES => {
                        leg.candidates.push(candidate)
                    }
                    _ => {}
                }
            }
            LinkEvent::Ended {
                sid,
                reason,
                detail,
            } => {
                if self.incoming.remove(&sid).is_some() {
                    // Gone before the book took it: its `ended` finds nothing to refuse.
                    return;
                }
                let Some(id) = self.by_sid.remove(&sid) else {
                    return;
                };
                if let Some(leg) = self.legs.remove(&id) {
                    // Told while the participant is still in the room, so the book ends
                    // the call for this reason rather than for an emptied room.
                    let input = FederationInput::Gone { reason, detail };
                    self.calls
                        .federation_event(id.to_string(), leg.remote.clone(), input);
                }
            }
        }
    }

    /// What the call room says.
    async fn room(&mut self, id: Arc<str>, what: FromRoom) {
        let trickles = self.link.trickles();
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
                    Role::Callee => leg.offer_to_device(),
                }
            }
            FromRoom::Left(device) => {
                // The book ends the call when its room empties; another device of the
                // call (an invitee) leaving changes nothing here.
                if let Some(p) = &mut leg.part {
                    if p.device.as_deref() == Some(&*device) {
                        p.device = None;
                    }
                }
            }
            FromRoom::Offer { from, sdp } => {
                if !leg.device_is(&from) || leg.role != Role::Caller {
                    return;
                }
                if leg.sid.is_some() || leg.gathering.is_some() {
                    // Renegotiation is not carried: the session keeps its first offer.
                    tracing::debug!(call = %id, "{}: renegotiation not carried", self.name);
                    return;
                }
                if trickles {
                    self.place(id, sdp).await;
                } else {
                    leg.gathering = Some(Gathering::new(sdp, Instant::now()));
                }
            }
            FromRoom::Answer { from, sdp } => {
                if !leg.device_is(&from) || leg.role != Role::Callee || leg.sid.is_none() {
                    return;
                }
                if trickles {
                    self.answer(id, sdp).await;
                } else if leg.gathering.is_none() {
                    leg.gathering = Some(Gathering::new(sdp, Instant::now()));
                }
            }
            FromRoom::Candidate { from, candidate } => {
                if !leg.device_is(&from) {
                    return;
                }
                if let Some(g) = &mut leg.gathering {
                    g.add(candidate, Instant::now());
                    return;
                }
                match leg.sid.clone() {
                    Some(sid) if trickles => {
                        if let Err(e) = self.link.candidate(&sid, candidate).await {
                            tracing::debug!(sid, error = %e, "candidate not sent");
                        }
                    }
                    // Before the offer was placed (or, without trickle, after the
                    // description left: too late to matter).
                    None if leg.candidates.len() < MAX_WAITING_CANDIDATES => {
                        leg.candidates.push(candidate)
                    }
                    _ => {}
                }
            }
            FromRoom::Gone => leg.part = None,
        }
    }

    /// Descriptions whose candidates have settled go out, with them.
    async fn gathered(&mut self, now: Instant) {
        let done: Vec<Arc<str>> = self
            .legs
            .iter()
            .filter(|(_, l)| l.gathering.as_ref().is_some_and(|g| g.due() <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            let Some(leg) = self.legs.get_mut(&id) else {
                continue;
            };
            let Some(g) = leg.gathering.take() else {
                continue;
            };
            let sdp = g.finish();
            match leg.role {
                Role::Caller => self.place(id, sdp).await,
                Role::Callee => self.answer(id, sdp).await,
            }
        }
    }

    /// Caller side: the browser's offer goes out; candidates that waited follow it.
    async fn place(&mut self, id: Arc<str>, sdp: String) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let (local, name) = (leg.local.clone(), leg.local_name.clone());
        let remote = leg.remote.to_string();
        match self.link.place(&local, &name, &remote, &sdp).await {
            Ok(sid) => {
                self.by_sid.insert(sid.clone(), id.clone());
                let waiting = match self.legs.get_mut(&id) {
                    Some(leg) => {
                        leg.sid = Some(sid.clone());
                        std::mem::take(&mut leg.candidates)
                    }
                    None => Vec::new(),
                };
                if self.link.trickles() {
                    for c in waiting {
                        let _ = self.link.candidate(&sid, c).await;
                    }
                }
            }
            Err(e) => {
                let reason = if e.unreachable {
                    EndReason::Unreachable
                } else {
                    EndReason::Failed
                };
                let leg = self.legs.remove(&id);
                self.gone(&id, leg.map(|l| l.remote), reason, &e.detail);
            }
        }
    }

    /// Callee side: the browser's answer goes out.
    async fn answer(&mut self, id: Arc<str>, sdp: String) {
        let Some(sid) = self.legs.get(&id).and_then(|l| l.sid.clone()) else {
            return;
        };
        if let Err(e) = self.link.answer(&sid, &sdp).await {
            let _ = self.link.hangup(&sid).await;
            self.fail(&id, &format!("answer: {e}"));
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
        let Some(id) = self.by_sid.get(sid) else {
            return;
        };
        if let Some(leg) = self.legs.get(id) {
            self.calls
                .federation_event(id.to_string(), leg.remote.clone(), input);
        }
    }

    /// Our side of call `id` cannot go on: the book ends the far party's part.
    fn fail(&mut self, id: &Arc<str>, why: &str) {
        let leg = self.legs.remove(id);
        if let Some(sid) = leg.as_ref().and_then(|l| l.sid.as_ref()) {
            self.by_sid.remove(sid);
        }
        self.gone(id, leg.map(|l| l.remote), EndReason::Failed, why);
    }

    fn gone(&self, id: &Arc<str>, remote: Option<Address>, reason: EndReason, detail: &str) {
        tracing::info!(call = %id, reason = reason.as_str(), detail, "{} federation", self.name);
        let Some(remote) = remote else { return };
        let input = FederationInput::Gone {
            reason,
            detail: detail.to_string(),
        };
        self.calls.federation_event(id.to_string(), remote, input);
    }
}
