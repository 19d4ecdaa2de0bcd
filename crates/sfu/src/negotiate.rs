//! Offer/answer with each browser (SFU-DESIGN §3). The browser offers its own tracks; the
//! SFU answers, refusing sending m-lines it must not accept (no `publish` grant, limits).
//! The SFU offers when remote tracks come or go: new remote tracks get a sendonly m-line
//! (a free inactive one of the same kind is reused), departed ones turn inactive, and
//! the `tracks` map goes out BEFORE the offer. Glare: the SFU is impolite, a browser offer
//! that arrives while the SFU's own offer waits is ignored (the browser rolls back,
//! answers and offers again). Bad SDP gets an `error` message to that browser only.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelConfig;
use str0m::media::{Direction, MediaKind, Mid, Rid};
use str0m::Candidate;

use crate::layer::BitrateMeter;
use crate::layer::{link_simulcast, LINK_RIDS};
use crate::message::{ErrorCode, RemoteTrack, SfuMessage, Source};
use crate::output::{GoneReason, SignalKind};
use crate::participant::{msg_kind, out_stream, OutSlot, Pid, PubTrack, SlotState};
use crate::rewrite::Rewriter;
use crate::sdp::{self, SectionKind};
use crate::sfu::{Sfu, OFFER_TIMEOUT};
use crate::wire;

/// The SDK's negotiated data channel (crates/http/web/sdk/peer.js CHANNEL_LABEL/_ID).
pub(crate) const CHANNEL_LABEL: &str = "switchboard";
pub(crate) const CHANNEL_ID: u16 = 0;

impl Sfu {
    pub(crate) fn on_offer(&mut self, pid: Pid, payload: &str) {
        let Some(text) = wire::sdp_of(payload) else {
            return self.send_error(pid, ErrorCode::BadSdp, "offer: not an SDP string");
        };
        let Some(p) = self.parts[pid].as_ref() else {
            return;
        };
        if p.pending.is_some() {
            // Glare: our offer wins; the browser rolls back and offers again.
            tracing::debug!(peer = %p.peer, "sfu: browser offer ignored (own offer pending)");
            return;
        }
        let Some(sections) = sdp::sections(&text) else {
            return self.send_error(pid, ErrorCode::BadSdp, "offer: an m-line has no a=mid");
        };
        if !text.contains("a=fingerprint:") {
            // str0m would tear the whole connection down for this; refuse the offer only.
            return self.send_error(pid, ErrorCode::BadSdp, "offer: no a=fingerprint");
        }

        // Which sending m-lines are accepted.
        let (refused, forbidden, limited) = self.refusals(pid, &sections);
        let munged = sdp::refuse_sending(&text, &refused);
        let offer = match SdpOffer::from_sdp_string(&munged) {
            Ok(o) => o,
            Err(e) => return self.send_error(pid, ErrorCode::BadSdp, &format!("offer: {e}")),
        };
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let answer = match p.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                return self.send_error(pid, ErrorCode::BadSdp, &format!("offer refused: {e}"))
            }
        };
        p.described = true;
        if sections
            .iter()
            .any(|s| s.kind == SectionKind::Other && !s.stopped)
            && p.channel.is_none()
        {
            let id = p.rtc.direct_api().create_data_channel(ChannelConfig {
                label: CHANNEL_LABEL.into(),
                negotiated: Some(CHANNEL_ID),
                ..Default::default()
            });
            p.channel = Some(id);
        }
        let answer = serde_json::to_string(&answer.to_sdp_string()).unwrap_or_default();
        self.signal(pid, SignalKind::Answer, answer);
        if forbidden {
            self.send_error(
                pid,
                ErrorCode::Forbidden,
                "no publish grant: sending m-lines refused",
            );
        }
        if limited {
            self.send_error(
                pid,
                ErrorCode::Limit,
                "track or publisher limit reached: m-lines refused",
            );
        }

        // Published tracks now: the sending audio/video m-lines that were accepted.
        let sending: Vec<(Mid, MediaKind)> = sections
            .iter()
            .filter(|s| s.sends && !s.stopped && !refused.contains(&s.mid))
            .filter_map(|s| match s.kind {
                SectionKind::Audio => Some((Mid::from(s.mid.as_str()), MediaKind::Audio)),
                SectionKind::Video => Some((Mid::from(s.mid.as_str()), MediaKind::Video)),
                SectionKind::Other => None,
            })
            .collect();
        self.update_published(pid, &sending);
        if self.parts[pid].as_ref().is_some_and(|p| p.fixed) {
            self.adopt_receive_lines(pid, &sections);
        }
        // A new participant gets the room's tracks with the SFU's first offer.
        if let Some(p) = self.parts[pid].as_mut() {
            if p.grants.subscribe {
                p.renegotiate = true;
                self.offers_due = true;
            }
        }
    }

    /// The mids of new sending m-lines to refuse, and whether for the grant or a limit.
    fn refusals(&self, pid: Pid, sections: &[sdp::Section]) -> (Vec<String>, bool, bool) {
        let (mut refused, mut forbidden, mut limited) = (Vec::new(), false, false);
        let Some(p) = self.parts[pid].as_ref() else {
            return (refused, forbidden, limited);
        };
        let l = &self.cfg.limits;
        let members = self
            .rooms
            .get(&p.room)
            .map(|r| r.members.as_slice())
            .unwrap_or(&[]);
        let others = || {
            members
                .iter()
                .filter(|m| **m != pid)
                .filter_map(|m| self.parts[*m].as_ref())
        };
        let mut room_tracks: usize = others().map(|o| o.published.len()).sum();
        let publishers = others().filter(|o| !o.published.is_empty()).count();
        let mut mine = 0;
        for s in sections {
            if !s.sends || s.stopped || s.kind == SectionKind::Other {
                continue;
            }
            let known = p.published(Mid::from(s.mid.as_str())).is_some();
            let refuse = if !p.grants.publish {
                forbidden = true;
                true
            } else if !known
                && (mine >= l.tracks_per_publisher
                    || room_tracks >= l.tracks_per_room
                    || (mine == 0 && publishers >= l.publishers_per_room))
            {
                limited = true;
                true
            } else {
                false
            };
            if refuse {
                refused.push(s.mid.clone());
            } else {
                mine += 1;
                room_tracks += 1;
            }
        }
        (refused, forbidden, limited)
    }

    /// Make the participant's published set `sending`; subscribers renegotiate if it changed.
    fn update_published(&mut self, pid: Pid, sending: &[(Mid, MediaKind)]) {
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let mut changed = false;
        let mut gone = Vec::new();
        p.published.retain(|t| {
            let keep = sending.iter().any(|(m, _)| *m == t.mid);
            if !keep {
                gone.extend(t.subs.iter().copied());
                changed = true;
            }
            keep
        });
        for &(mid, kind) in sending {
            if p.published(mid).is_some() {
                continue;
            }
            let announced = p
                .publish_sources
                .get(&*mid)
                .filter(|(s, _)| s.kind() == msg_kind(kind));
            let source = announced
                .map(|(s, _)| *s)
                .unwrap_or_else(|| Source::default_for(msg_kind(kind)));
            let origin = announced.and_then(|(_, o)| o.clone());
            let simulcast = p.rtc.media(mid).is_some_and(
                |m| matches!(m.rids_rx(), str0m::media::Rids::Specific(r) if !r.is_empty()),
            );
            p.published.push(PubTrack {
                mid,
                kind,
                source,
                subs: Vec::new(),
                layers: Default::default(),
                meter: BitrateMeter::new(),
                layers_since: None,
                layers_settled: false,
                simulcast,
                pli: Vec::new(),
                origin,
            });
            changed = true;
        }
        for (sub, slot) in gone {
            self.detach_slot(sub, slot);
        }
        if changed {
            self.renegotiate_room(pid);
        }
    }

    /// Every other subscriber of `pid`'s room needs an offer.
    pub(crate) fn renegotiate_room(&mut self, pid: Pid) {
        let Some(room) = self.parts[pid].as_ref().map(|p| p.room.clone()) else {
            return;
        };
        let members = match self.rooms.get(&room) {
            Some(r) => r.members.clone(),
            None => return,
        };
        for m in members {
            if m == pid {
                continue;
            }
            if let Some(o) = self.parts[m].as_mut() {
                if o.grants.subscribe {
                    o.renegotiate = true;
                    self.offers_due = true;
                }
            }
        }
    }

    /// The slot's track left: stop forwarding now, turn the m-line inactive next offer.
    pub(crate) fn detach_slot(&mut self, sub: Pid, slot: usize) {
        if let Some(s) = self.parts[sub].as_mut() {
            if let Some(sl) = s.slots.get_mut(slot) {
                sl.track = None;
                sl.layer = None;
                s.layers.remove(&sl.mid);
                sl.pt_map = None;
                sl.clear_targets();
                s.renegotiate = true;
                self.offers_due = true;
            }
        }
    }

    pub(crate) fn on_answer(&mut self, pid: Pid, payload: &str) {
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let Some((pending, _, _)) = p.pending.take() else {
            tracing::debug!(peer = %p.peer, "sfu: answer without an offer ignored");
            return;
        };
        let answer = wire::sdp_of(payload)
            .ok_or_else(|| "answer: not an SDP string".to_string())
            .and_then(|t| SdpAnswer::from_sdp_string(&t).map_err(|e| format!("answer: {e}")))
            .and_then(|a| {
                p.rtc
                    .sdp_api()
                    .accept_answer(pending, a)
                    .map_err(|e| format!("answer refused: {e}"))
            });
        if let Err(e) = answer {
            // The offer is void; whatever it carried is offered again.
            self.rollback_offer(pid);
            return self.send_error(pid, ErrorCode::BadSdp, &e);
        }
        for i in 0..p.slots.len() {
            let mid = p.slots[i].mid;
            let (kind, offered) = (p.slots[i].kind, p.slots[i].state == SlotState::Offered);
            let ssrc = if offered {
                out_stream(p, mid, kind)
            } else {
                None
            };
            if offered && p.link && kind == MediaKind::Video {
                // Its streams are one per layer: unpaced (no layer choice on a link
                // either; the SFU behind it chooses per subscriber).
                let mut api = p.rtc.direct_api();
                for rid in LINK_RIDS {
                    if let Some(tx) = api.stream_tx_by_mid(mid, Some(Rid::from(rid))) {
                        tx.set_unpaced(true);
                    }
                }
            }
            let s = &mut p.slots[i];
            match s.state {
                SlotState::Offered => {
                    s.state = SlotState::Active;
                    s.ssrc = ssrc;
                }
                SlotState::Stopping => s.state = SlotState::Free,
                SlotState::Active | SlotState::Free => {}
            }
        }
        // New slots get their layer (and ask their publisher for a keyframe).
        self.choose_layers(pid);
    }

    /// Forget an offer that failed: new slots go, reused ones are free again, and the
    /// next offer carries the wanted state.
    fn rollback_offer(&mut self, pid: Pid) {
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let mut unlinks = Vec::new();
        while let Some(last) = p.slots.last() {
            if last.state == SlotState::Offered && p.rtc.media(last.mid).is_none() {
                if let Some((pp, m)) = last.track {
                    unlinks.push((pp, m));
                }
                p.slots.pop();
            } else {
                break;
            }
        }
        for s in &mut p.slots {
            if s.state == SlotState::Offered || s.state == SlotState::Stopping {
                // str0m applied the direction already; treat it as live and let the next
                // offer settle it.
                s.state = SlotState::Active;
            }
        }
        p.renegotiate = true;
        self.offers_due = true;
        for (pp, m) in unlinks {
            self.unlink(pp, m, pid);
        }
    }

    pub(crate) fn on_candidate(&mut self, pid: Pid, payload: &str) {
        let Some(line) = wire::candidate_of(payload) else {
            return;
        };
        let line = line.strip_prefix("a=").unwrap_or(&line);
        if let (Ok(c), Some(p)) = (Candidate::from_sdp_string(line), self.parts[pid].as_mut()) {
            p.rtc.add_remote_candidate(c);
        }
    }

    pub(crate) fn on_message(&mut self, pid: Pid, payload: &str) {
        match SfuMessage::parse(payload) {
            Ok(SfuMessage::Publish(list)) => {
                let link = self.parts[pid].as_ref().is_some_and(|p| p.link);
                if !link && list.iter().any(|t| t.peer.is_some()) {
                    self.send_error(
                        pid,
                        ErrorCode::Forbidden,
                        "only a node link publishes tracks for another peer",
                    );
                    return;
                }
                if let Some(p) = self.parts[pid].as_mut() {
                    p.publish_sources = list
                        .into_iter()
                        .map(|t| (t.mid.into_owned(), (t.source, t.peer.map(|o| o.into()))))
                        .collect();
                    // A source (or a link's origin) can change without an offer (same
                    // m-line, new meaning).
                    let mut changed = false;
                    for t in &mut p.published {
                        if let Some((s, origin)) = p.publish_sources.get(&*t.mid) {
                            if s.kind() == msg_kind(t.kind)
                                && (t.source != *s || t.origin != *origin)
                            {
                                t.source = *s;
                                t.origin = origin.clone();
                                changed = true;
                            }
                        }
                    }
                    if changed {
                        self.renegotiate_room(pid);
                    }
                }
            }
            Ok(SfuMessage::Leave) => self.drop_participant(pid, Some(GoneReason::Left)),
            Ok(SfuMessage::View(list)) => {
                if let Some(p) = self.parts[pid].as_mut() {
                    // A mid absent from the message is hidden; a mid never reported at
                    // all is visible at the default size.
                    for s in &mut p.slots {
                        s.view = Some(
                            list.iter()
                                .find(|v| *v.mid == *s.mid)
                                .map(|v| (v.width, v.height))
                                .unwrap_or((0, 0)),
                        );
                    }
                }
                self.choose_layers(pid);
            }
            Ok(_) => tracing::debug!("sfu: a server-to-browser message from a browser ignored"),
            Err(e) => self.send_error(pid, ErrorCode::BadMessage, &e.to_string()),
        }
    }

    /// Offers due: participants whose remote tracks changed and who have no offer out.
    pub(crate) fn offer_due(&mut self) {
        if !std::mem::take(&mut self.offers_due) {
            return;
        }
        for pid in 0..self.parts.len() {
            let (due, fixed) = match &self.parts[pid] {
                Some(p) => (p.renegotiate && p.described && p.pending.is_none(), p.fixed),
                None => (false, false),
            };
            if due && fixed {
                self.fill_fixed(pid);
            } else if due {
                self.make_offer(pid);
            }
        }
    }

    /// Offers unanswered for too long are sent again (the browser may have missed them).
    pub(crate) fn offer_timers(&mut self) {
        let now = self.now;
        for pid in 0..self.parts.len() {
            let resend = match self.parts[pid].as_mut() {
                Some(p) => match &mut p.pending {
                    Some((_, at, offer)) if now >= *at + OFFER_TIMEOUT => {
                        *at = now;
                        Some((offer.clone(), p.tracks_sent.clone()))
                    }
                    _ => None,
                },
                None => None,
            };
            if let Some((offer, tracks)) = resend {
                self.signal(pid, SignalKind::Message, tracks);
                self.signal(pid, SignalKind::Offer, offer);
            }
        }
    }

    /// The room's tracks participant `pid` should receive, in member order.
    pub(crate) fn wanted_tracks(&self, pid: Pid) -> Vec<(Pid, Mid, MediaKind)> {
        let mut wanted = Vec::new();
        let Some(p) = self.parts[pid].as_ref() else {
            return wanted;
        };
        if !p.grants.subscribe {
            return wanted;
        }
        let Some(r) = self.rooms.get(&p.room) else {
            return wanted;
        };
        for &m in r.members.iter().filter(|m| **m != pid) {
            let Some(o) = self.parts[m].as_ref() else {
                continue;
            };
            for t in &o.published {
                let has = p.slots.iter().any(|s| s.track == Some((m, t.mid)));
                if has || t.subs.len() < self.cfg.limits.subscribers_per_publisher {
                    wanted.push((m, t.mid, t.kind));
                }
            }
        }
        wanted
    }

    fn make_offer(&mut self, pid: Pid) {
        let now: Instant = self.now;
        let wanted = self.wanted_tracks(pid);
        let publisher_peers: Vec<std::sync::Arc<str>> = wanted
            .iter()
            .map(|(m, _, _)| {
                self.parts[*m]
                    .as_ref()
                    .map(|o| o.peer.clone())
                    .unwrap_or_else(|| "".into())
            })
            .collect();

        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        p.renegotiate = false;
        // Slots whose track is no longer wanted.
        let mut unlinks = Vec::new();
        for s in &mut p.slots {
            if let Some(t) = s.track {
                if !wanted.iter().any(|(m, mid, _)| (*m, *mid) == t) {
                    unlinks.push(t);
                    s.track = None;
                    s.layer = None;
                    s.pt_map = None;
                    s.clear_targets();
                    p.layers.remove(&s.mid);
                }
            }
        }
        let mut links = Vec::new();
        let mut api = p.rtc.sdp_api();
        for s in &mut p.slots {
            if s.track.is_none() && s.state == SlotState::Active {
                api.set_direction(s.mid, Direction::Inactive);
                s.state = SlotState::Stopping;
            }
        }
        for (i, &(m, mid, kind)) in wanted.iter().enumerate() {
            if p.slots.iter().any(|s| s.track == Some((m, mid))) {
                continue;
            }
            let reuse = p
                .slots
                .iter()
                .position(|s| s.state == SlotState::Free && s.kind == kind && s.track.is_none());
            let idx = match reuse {
                Some(idx) => {
                    api.set_direction(p.slots[idx].mid, Direction::SendOnly);
                    idx
                }
                None => {
                    let stream = publisher_peers[i].to_string();
                    // A link gets every layer of a video: a simulcast m-line (all its
                    // video slots alike, so any one can be reused for any video).
                    let simulcast = (p.link && kind == MediaKind::Video).then(link_simulcast);
                    let smid =
                        api.add_media(kind, Direction::SendOnly, Some(stream), None, simulcast);
                    p.slots.push(OutSlot::new(smid, kind));
                    p.slots.len() - 1
                }
            };
            let s = &mut p.slots[idx];
            s.track = Some((m, mid));
            s.state = SlotState::Offered;
            s.layer = None;
            s.pt_map = None;
            links.push((m, mid, idx));
        }
        let applied = if api.has_changes() { api.apply() } else { None };
        let Some((offer, pending)) = applied else {
            drop(links);
            for (pp, m) in unlinks {
                self.unlink(pp, m, pid);
            }
            // No m-line changed, but a track's source may have (camera -> screen): the
            // map still goes out when it differs from the last one sent.
            self.send_tracks(pid, false);
            return;
        };
        let offer = serde_json::to_string(&offer.to_sdp_string()).unwrap_or_default();
        p.pending = Some((pending, now, offer.clone()));
        for (pp, m) in unlinks {
            self.unlink(pp, m, pid);
        }
        for (pp, m, idx) in links {
            if let Some(t) = self.parts[pp]
                .as_mut()
                .and_then(|o| o.published.iter_mut().find(|t| t.mid == m))
            {
                t.subs.push((pid, idx));
            }
        }
        self.send_tracks(pid, true);
        self.signal(pid, SignalKind::Offer, offer);
    }

    /// The `tracks` map of this participant's PC (`force`: even if unchanged).
    pub(crate) fn send_tracks(&mut self, pid: Pid, force: bool) {
        let Some(p) = self.parts[pid].as_ref() else {
            return;
        };
        let mut list = Vec::new();
        for s in &p.slots {
            let Some((pp, m)) = s.track else { continue };
            let Some(o) = self.parts[pp].as_ref() else {
                continue;
            };
            let Some(t) = o.published.iter().find(|t| t.mid == m) else {
                continue;
            };
            list.push(RemoteTrack {
                mid: s.mid.to_string().into(),
                peer: t.peer(&o.peer).to_string().into(),
                source: t.source,
            });
        }
        let msg = SfuMessage::Tracks(list).render();
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        if force || p.tracks_sent != msg {
            p.tracks_sent = msg.clone();
            self.signal(pid, SignalKind::Message, msg);
        }
    }
}

impl OutSlot {
    pub(crate) fn new(mid: Mid, kind: MediaKind) -> OutSlot {
        OutSlot {
            mid,
            kind,
            state: SlotState::Offered,
            track: None,
            ssrc: None,
            pt_map: None,
            // Continuous across the tracks the slot carries (same SSRC): one rewriter for
            // the slot's life; its first sequence number is low for str0m's ROC.
            rewriter: Rewriter::new(
                if kind == MediaKind::Audio {
                    48_000
                } else {
                    90_000
                },
                1000,
            ),
            layer: None,
            queue_sample: None,
            written_since_sample: 0,
            view: None,
            link_layers: Vec::new(),
        }
    }
}
