//! Participants whose SDP is exchanged once, with no renegotiation afterwards: a WHEP
//! player (or a WHIP publisher). The SFU never offers to them. The recvonly audio/video
//! m-lines of their offer become outgoing slots at once (str0m answers them sendonly),
//! each carrying one of the room's tracks of its kind, first come first served; when a
//! slot's track leaves, the next free track of that kind takes its place on the same
//! m-line (same SSRC, the rewriter keeps the numbering continuous).

use str0m::media::MediaKind;

use crate::participant::{out_stream, OutSlot, Pid, SlotState};
use crate::sdp::{Section, SectionKind};
use crate::sfu::Sfu;

impl Sfu {
    /// Slots for the recvonly audio/video m-lines of a fixed participant's offer.
    pub(crate) fn adopt_receive_lines(&mut self, pid: Pid, sections: &[Section]) {
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        if !p.grants.subscribe {
            return;
        }
        for s in sections.iter().filter(|s| !s.sends && !s.stopped) {
            let kind = match s.kind {
                SectionKind::Audio => MediaKind::Audio,
                SectionKind::Video => MediaKind::Video,
                SectionKind::Other => continue,
            };
            let mid = str0m::media::Mid::from(s.mid.as_str());
            if p.slots.iter().any(|sl| sl.mid == mid) {
                continue;
            }
            let ssrc = out_stream(p, mid, kind);
            let mut slot = OutSlot::new(mid, kind);
            slot.state = SlotState::Active;
            slot.ssrc = ssrc;
            p.slots.push(slot);
        }
        p.renegotiate = true;
        self.offers_due = true;
    }

    /// Point the free slots of a fixed participant at tracks it does not receive yet.
    pub(crate) fn fill_fixed(&mut self, pid: Pid) {
        let wanted = self.wanted_tracks(pid);
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        p.renegotiate = false;
        let mut links = Vec::new();
        for (m, mid, kind) in wanted {
            if p.slots.iter().any(|s| s.track == Some((m, mid))) {
                continue;
            }
            let Some(i) = p
                .slots
                .iter()
                .position(|s| s.track.is_none() && s.kind == kind && s.state == SlotState::Active)
            else {
                continue;
            };
            let s = &mut p.slots[i];
            s.track = Some((m, mid));
            s.layer = None;
            s.pt_map = None;
            links.push((m, mid, i));
        }
        for (pp, m, idx) in links {
            if let Some(t) = self.parts[pp]
                .as_mut()
                .and_then(|o| o.published.iter_mut().find(|t| t.mid == m))
            {
                t.subs.push((pid, idx));
            }
        }
        self.choose_layers(pid);
    }
}
