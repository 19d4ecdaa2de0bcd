//! Media between participants. Each publisher's RTP goes to every subscriber slot
//! carrying its track through str0m's `StreamTx::write_rtp`: the payload `Arc` is shared,
//! never copied here (VP8 PictureID/TL0PICIDX renumbering is a str0m `Vp8Patch` applied
//! while str0m serializes), str0m maps the SSRC and header-extension ids and keeps the
//! RTX cache for NACKs. Sequence numbers and timestamps go through the slot's
//! [`Rewriter`](crate::rewrite::Rewriter), which also switches simulcast layers at
//! keyframes. A subscriber whose str0m queue is full (in packets, or its oldest packet
//! waiting longer than `Limits::queue_time`) loses packets, never memory or seconds.
//! Video is paced only while the estimate is close to what it carries ([`crate::adapt`]).
//! Keyframe requests are coalesced per publisher layer ([`crate::keyframe`]); audio levels
//! feed the room's dominant-speaker detector ([`crate::speaker`]).

use std::sync::Arc;
use std::time::Instant;
use str0m::format::Codec;
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Vp8Descriptor};

use crate::keyframe::KeyframeRequests;
use crate::layer::link_rid;
use crate::message::SfuMessage;
use crate::output::{LocalRtp, SfuOutput, SignalKind};
use crate::participant::{LinkLayer, Participant, Pid, SlotState};
use crate::rewrite::{self, vp8, Rewriter};
use crate::sfu::Sfu;

/// One received RTP packet, from a participant's PC (str0m) or in-process (`local.rs`).
pub(crate) struct RtpIn<'a> {
    pub pt: Pt,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub ext: &'a ExtensionValues,
    pub payload: &'a Arc<[u8]>,
    /// When it arrived.
    pub arrival: Instant,
}

/// What forwarding needs of one incoming packet, computed once for all subscribers.
struct Incoming<'a> {
    pid: Pid,
    mid: Mid,
    rid: Option<Rid>,
    pkt: &'a RtpIn<'a>,
    params: str0m::format::PayloadParams,
    rw: rewrite::Packet,
    /// str0m's view of the VP8 descriptor, to patch the ids at serialization.
    vp8: Option<Vp8Descriptor>,
}

impl Sfu {
    pub(crate) fn on_rtp(&mut self, pid: Pid, pkt: RtpPacket) {
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let (mid, rid) = match p.rx.get(&ssrc) {
            Some(v) => *v,
            None => {
                let mut api = p.rtc.direct_api();
                let Some(v) = api.stream_rx(&ssrc).map(|s| (s.mid(), s.rid())) else {
                    return;
                };
                if p.rx.len() >= 64 {
                    p.rx.clear();
                }
                p.rx.insert(ssrc, v);
                v
            }
        };
        let rtp = RtpIn {
            pt: pkt.header.payload_type,
            seq: *pkt.seq_no,
            timestamp: pkt.header.timestamp,
            marker: pkt.header.marker,
            ext: &pkt.header.ext_vals,
            payload: &pkt.payload,
            arrival: pkt.timestamp,
        };
        self.on_rtp_in(pid, mid, rid, &rtp);
    }

    /// A packet of `pid`'s published track `mid` (layer `rid`): to every subscriber.
    pub(crate) fn on_rtp_in(&mut self, pid: Pid, mid: Mid, rid: Option<Rid>, pkt: &RtpIn<'_>) {
        let now = self.now;
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let Some(t) = p.published(mid) else {
            return;
        };
        let Some(params) = p.rtc.codec_config().find(|c| c.pt() == pkt.pt).copied() else {
            return;
        };
        let track = &mut p.published[t];
        let kind = track.kind;
        if !track.simulcast {
            track.meter.add(pkt.payload.len() + 12, now);
        }
        let Some((layer, new_layer)) = track.see_layer(rid, pkt.payload, now) else {
            return;
        };
        let (desc, vp8) = if kind == MediaKind::Video {
            (
                vp8::Descriptor::parse(pkt.payload),
                Vp8Descriptor::parse(pkt.payload).ok(),
            )
        } else {
            (None, None)
        };
        let keyframe = match params.spec().codec {
            Codec::Vp8 => desc.is_some_and(|d| d.keyframe),
            Codec::H264 => h264_is_keyframe(pkt.payload),
            _ => kind == MediaKind::Audio,
        };
        if keyframe && kind == MediaKind::Video {
            if let Some((_, kr)) = track.pli.iter_mut().find(|(r, _)| *r == rid) {
                kr.keyframe_received(now);
            }
        }
        let nsubs = track.subs.len();
        let speaker = (kind == MediaKind::Audio
            && track.source == crate::message::Source::Microphone)
            .then_some(pkt.ext.audio_level)
            .flatten()
            .map(|l| {
                (
                    l.unsigned_abs().min(127),
                    pkt.ext.voice_activity.unwrap_or(true),
                )
            });
        if let Some((level, voice)) = speaker {
            let (room, peer) = (p.room.clone(), track.peer(&p.peer).clone());
            if let Some(r) = self.rooms.get_mut(&room) {
                r.speaker.observe(&peer, level, voice, now);
            }
        }
        if new_layer {
            let subs: Vec<Pid> = self.parts[pid]
                .as_ref()
                .map(|p| p.published[t].subs.iter().map(|(s, _)| *s).collect())
                .unwrap_or_default();
            for s in subs {
                self.choose_layers(s);
            }
        }
        let inc = Incoming {
            pid,
            mid,
            rid,
            pkt,
            params,
            rw: rewrite::Packet {
                layer,
                seq: pkt.seq,
                timestamp: pkt.timestamp,
                keyframe,
                vp8: desc,
                arrival: pkt.arrival,
            },
            vp8,
        };
        for i in 0..nsubs {
            let Some((sub, slot)) = self.parts[pid]
                .as_ref()
                .and_then(|p| p.published.get(t))
                .and_then(|t| t.subs.get(i))
                .copied()
            else {
                break;
            };
            self.forward_one(&inc, sub, slot);
        }
    }

    fn forward_one(&mut self, inc: &Incoming<'_>, sub: Pid, slot_idx: usize) {
        let queue_limit = self.cfg.limits.queue_packets;
        let (queue_time, now) = (self.cfg.limits.queue_time, self.now);
        let Some(s) = self.parts[sub].as_mut() else {
            return;
        };
        let Some(slot) = s.slots.get_mut(slot_idx) else {
            return;
        };
        if slot.state != SlotState::Active || slot.track != Some((inc.pid, inc.mid)) {
            return;
        }
        if s.link && slot.kind == MediaKind::Video {
            return self.forward_layer(inc, sub, slot_idx);
        }
        let Some(ssrc) = slot.ssrc else {
            return;
        };
        let Some(out) = slot.rewriter.rewrite(&inc.rw) else {
            // Waiting for a keyframe of the layer it switches to: keep asking (coalesced).
            let wants = slot.rewriter.wants_keyframe().is_some() && slot.kind == MediaKind::Video;
            if wants && slot.rewriter.target() == Some(inc.rw.layer) {
                self.request_keyframe(inc.pid, inc.mid, inc.rid);
            }
            return;
        };
        let mut switched = None;
        if out.switched && slot.kind == MediaKind::Video {
            tracing::debug!(sub = %s.peer, mid = %slot.mid, rid = ?inc.rid, "sfu: layer switched at a keyframe");
        }
        if out.switched && slot.kind == MediaKind::Video && inc.rid.is_some() {
            if slot.layer.is_some() {
                self.counters.layer_switches += 1;
            }
            slot.layer = inc.rid;
            switched = inc.rid;
        }
        let Some(pt) = out_pt(s, slot_idx, inc) else {
            return;
        };
        let out_mid = s.slots[slot_idx].mid;
        if s.local_media {
            let rtp = LocalRtp {
                mid: out_mid,
                pt,
                seq: out.seq,
                timestamp: out.timestamp,
                marker: inc.pkt.marker,
                audio_level: inc.pkt.ext.audio_level,
                voice_activity: inc.pkt.ext.voice_activity,
                payload: inc.pkt.payload.clone(),
            };
            self.out.push_back(SfuOutput::LocalRtp {
                room: s.room.clone(),
                peer: s.peer.clone(),
                rtp,
            });
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += inc.pkt.payload.len() as u64;
            return;
        }
        let mut api = s.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else {
            return;
        };
        // str0m samples its queue when time moves; packets written since the sample
        // (a burst within one instant) are counted here.
        let (sampled, count, oldest) = tx.queue_info().map_or((None, 0, None), |q| {
            (Some(q.created_at()), q.packet_count(), q.first_unsent())
        });
        let slot = &mut s.slots[slot_idx];
        if slot.queue_sample != sampled {
            slot.queue_sample = sampled;
            slot.written_since_sample = 0;
        }
        // Bounded in packets (memory) and in time (latency): what would queue behind a
        // packet waiting longer than `queue_time` is dropped; the subscriber's NACK, then
        // its keyframe request, bring the stream back once the queue has drained.
        let pending = slot.written_since_sample;
        let stale = oldest.is_some_and(|t| now.saturating_duration_since(t) > queue_time);
        if stale || count + pending >= queue_limit {
            self.counters.dropped_packets += 1;
            return;
        }
        slot.written_since_sample += 1;
        tx.write_rtp(rtp_write(inc, &out, pt));
        self.counters.forwarded_packets += 1;
        self.counters.forwarded_bytes += inc.pkt.payload.len() as u64;
        // An unpaced subscriber moves the packet to the wire on a timeout right now; a
        // paced one is left to its pacer's own deadline (a timeout per written packet
        // was seen to keep a shaped subscriber's estimate from steering it down a layer:
        // `sfu_policy::sfu_shaped_subscriber_gets_the_low_layer_and_climbs_back`).
        if self.parts[sub].as_ref().is_some_and(|p| !p.pace_video) {
            self.mark_written(sub);
        } else {
            self.mark(sub);
        }
        if let Some(rid) = switched {
            let msg = SfuMessage::Layers {
                mid: (*out_mid).into(),
                layer: Some((*rid).into()),
            };
            self.signal(sub, SignalKind::Message, msg.render());
        }
    }

    /// A packet of a video to a node link: every layer goes, each on its own rid through
    /// its own rewriter (the link's SFU on the other side chooses per subscriber). Unpaced;
    /// bounded like any stream by str0m's queue.
    fn forward_layer(&mut self, inc: &Incoming<'_>, sub: Pid, slot_idx: usize) {
        let (queue_limit, queue_time, now) = (
            self.cfg.limits.queue_packets,
            self.cfg.limits.queue_time,
            self.now,
        );
        let layer = inc.rw.layer;
        let Some(rid) = link_rid(layer) else {
            return;
        };
        let Some(s) = self.parts[sub].as_mut() else {
            return;
        };
        let Some(slot) = s.slots.get_mut(slot_idx) else {
            return;
        };
        let i = usize::from(layer);
        while slot.link_layers.len() <= i {
            slot.link_layers.push(LinkLayer {
                rewriter: Rewriter::new(90_000, 1000),
                ssrc: None,
            });
        }
        let rw = &mut slot.link_layers[i].rewriter;
        if rw.target() != Some(layer) {
            rw.set_target(Some(layer));
        }
        let Some(out) = rw.rewrite(&inc.rw) else {
            // Waiting for this layer's keyframe (a new track on the slot): ask for one.
            if rw.wants_keyframe().is_some() {
                self.request_keyframe(inc.pid, inc.mid, inc.rid);
            }
            return;
        };
        let Some(pt) = out_pt(s, slot_idx, inc) else {
            return;
        };
        let out_mid = s.slots[slot_idx].mid;
        let cached = s.slots[slot_idx].link_layers[i].ssrc;
        let mut api = s.rtc.direct_api();
        let ssrc = match cached {
            Some(ssrc) => ssrc,
            None => {
                let Some(tx) = api.stream_tx_by_mid(out_mid, Some(rid)) else {
                    return;
                };
                let ssrc = tx.ssrc();
                s.slots[slot_idx].link_layers[i].ssrc = Some(ssrc);
                ssrc
            }
        };
        let Some(tx) = api.stream_tx(&ssrc) else {
            return;
        };
        let (count, oldest) = tx
            .queue_info()
            .map_or((0, None), |q| (q.packet_count(), q.first_unsent()));
        let stale = oldest.is_some_and(|t| now.saturating_duration_since(t) > queue_time);
        if stale || count >= queue_limit {
            self.counters.dropped_packets += 1;
            return;
        }
        tx.write_rtp(rtp_write(inc, &out, pt));
        self.counters.forwarded_packets += 1;
        self.counters.forwarded_bytes += inc.pkt.payload.len() as u64;
        self.mark_written(sub);
    }

    /// A subscriber asks for a keyframe on one of its slots: ask the publisher (coalesced).
    pub(crate) fn on_keyframe_request(&mut self, sub: Pid, req: KeyframeRequest) {
        let Some(s) = self.parts[sub].as_ref() else {
            return;
        };
        let Some(slot) = s.slots.iter().find(|sl| sl.mid == req.mid) else {
            return;
        };
        let Some((pp, mid)) = slot.track else {
            return;
        };
        let layer = if s.link && slot.kind == MediaKind::Video {
            // A link asks about one of the layers it gets: the rid is its index.
            req.rid.and_then(|r| r.parse::<u8>().ok())
        } else {
            slot.rewriter.current().or(slot.rewriter.target())
        };
        let Some(layer) = layer else {
            return;
        };
        let rid = self.parts[pp]
            .as_ref()
            .and_then(|o| o.published.iter().find(|t| t.mid == mid))
            .and_then(|t| if t.simulcast { t.rid_of(layer) } else { None });
        self.request_keyframe(pp, mid, rid);
    }

    /// A PLI to the publisher's `mid`/`rid` now, or at the end of the current window.
    pub(crate) fn request_keyframe(&mut self, pp: Pid, mid: Mid, rid: Option<Rid>) {
        let now = self.now;
        let Some(p) = self.parts[pp].as_mut() else {
            return;
        };
        let Some(t) = p.published.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        let i = match t.pli.iter().position(|(r, _)| *r == rid) {
            Some(i) => i,
            None => {
                t.pli.push((rid, KeyframeRequests::default()));
                t.pli.len() - 1
            }
        };
        if t.pli[i].1.request(now) {
            self.send_pli(pp, mid, rid);
        }
    }

    fn send_pli(&mut self, pp: Pid, mid: Mid, rid: Option<Rid>) {
        let Some(p) = self.parts[pp].as_mut() else {
            return;
        };
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            tracing::debug!(publisher = %p.peer, %mid, ?rid, "sfu: PLI");
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.counters.plis_sent += 1;
            self.mark(pp);
        }
    }

    /// Deferred keyframe requests whose window ended; speaker decisions.
    pub(crate) fn keyframe_timers(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        for (pp, p) in self.parts.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            for t in &mut p.published {
                for (rid, kr) in &mut t.pli {
                    if kr.poll_timeout().is_some_and(|at| at <= now) && kr.poll(now) {
                        due.push((pp, t.mid, *rid));
                    }
                }
            }
        }
        for (pp, mid, rid) in due {
            self.send_pli(pp, mid, rid);
        }
    }

    /// Speaker decisions due in every room; a change goes to everyone in the room.
    pub(crate) fn speaker_timers(&mut self) {
        let now = self.now;
        let mut changed = Vec::new();
        for r in self.rooms.values_mut() {
            if r.speaker.poll_timeout() <= now && r.speaker.handle_timeout(now) {
                tracing::debug!(speaker = ?r.speaker.current(), "sfu: dominant speaker changed");
                let msg = SfuMessage::Speaker(r.speaker.current().map(|p| (**p).into()));
                changed.push((r.members.clone(), msg.render()));
            }
        }
        for (members, msg) in changed {
            for m in members {
                self.signal(m, SignalKind::Message, msg.clone());
            }
        }
    }
}

/// The payload type `inc`'s codec has on subscriber `s`'s connection (cached per slot).
fn out_pt(s: &mut Participant, slot_idx: usize, inc: &Incoming<'_>) -> Option<Pt> {
    let slot = s.slots.get(slot_idx)?;
    match slot.pt_map {
        Some((i, o)) if i == inc.pkt.pt => Some(o),
        _ => {
            let o = s
                .rtc
                .codec_config()
                .match_params(inc.params)
                .map(|p| p.pt())?;
            s.slots[slot_idx].pt_map = Some((inc.pkt.pt, o));
            Some(o)
        }
    }
}

/// The packet to write for `inc` as rewritten (`out`): the publisher's header extensions
/// but those str0m sets per stream, the VP8 ids patched at serialization.
fn rtp_write(inc: &Incoming<'_>, out: &rewrite::Rewritten, pt: Pt) -> RtpWrite {
    let mut ext = inc.pkt.ext.clone();
    ext.mid = None;
    ext.rid = None;
    ext.rid_repair = None;
    ext.transport_cc = None;
    let mut write = RtpWrite::new(
        pt,
        SeqNo::from(out.seq),
        out.timestamp,
        inc.pkt.arrival,
        inc.pkt.payload.clone(),
    )
    .marker(inc.pkt.marker)
    .ext_vals(ext)
    .nackable(inc.params.resend().is_some());
    if let (Some(ids), Some(d)) = (out.vp8, inc.vp8) {
        let mut b = d.patch();
        if let Some(p) = ids.picture_id {
            b = b.picture_id(p);
        }
        if let Some(t) = ids.tl0_pic_idx {
            b = b.tl0_pic_idx(t);
        }
        if let Ok(patch) = b.build() {
            write = write.vp8_patch(patch);
        }
    }
    write
}

/// Whether an H264 RTP payload (RFC 6184) starts a keyframe: an IDR slice or the SPS
/// that precedes one, alone, in a STAP-A aggregate, or as the first FU-A fragment.
pub(crate) fn h264_is_keyframe(payload: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    let key = |nal: u8| matches!(nal & 0x1f, IDR | SPS);
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        // STAP-A: [size u16][NAL]...
        24 => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(&nal) = rest.get(2) else {
                    return false;
                };
                if size > 0 && key(nal) {
                    return true;
                }
                rest = rest.get(2 + size..).unwrap_or(&[]);
            }
            false
        }
        // FU-A: the start fragment's header carries the NAL type.
        28 => payload.get(1).is_some_and(|&h| h & 0x80 != 0 && key(h)),
        nal => key(nal),
    }
}

#[cfg(test)]
mod tests {
    use super::h264_is_keyframe;

    #[test]
    fn h264_keyframes() {
        assert!(h264_is_keyframe(&[0x65, 0x88])); // IDR
        assert!(h264_is_keyframe(&[0x67, 0x42])); // SPS
        assert!(!h264_is_keyframe(&[0x41, 0x9a])); // non-IDR slice
                                                   // STAP-A with SPS, PPS.
        assert!(h264_is_keyframe(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68
        ]));
        assert!(!h264_is_keyframe(&[0x78, 0x00, 0x02, 0x41, 0x42]));
        assert!(!h264_is_keyframe(&[0x78, 0xff, 0xff])); // truncated: no panic
                                                         // FU-A: start of an IDR, middle of one.
        assert!(h264_is_keyframe(&[0x7c, 0x85, 0x00]));
        assert!(!h264_is_keyframe(&[0x7c, 0x05, 0x00]));
        assert!(!h264_is_keyframe(&[]));
    }
}
