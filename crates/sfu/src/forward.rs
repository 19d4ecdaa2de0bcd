//! Media and data between participants. Each publisher's RTP goes to every subscriber
//! slot carrying its track through str0m's `StreamTx::write_rtp` (the payload `Arc` is
//! shared, never copied here; str0m maps SSRC, header extension ids and keeps the RTX
//! cache), with the sequence numbers and timestamps rewritten into one continuous space
//! per slot (so a slot can change layer or track). A subscriber whose queue is full loses
//! packets. Keyframe requests are coalesced per publisher layer (at most one PLI a
//! second, a request inside the window is sent at its end). Data-channel messages are
//! relayed as `{"from","data"}` without re-encoding `data`.

use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::channel::ChannelData;
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};

use crate::output::SignalKind;
use crate::participant::{Pid, SlotState};
use crate::sfu::Sfu;
use crate::wire;

/// At most one PLI per publisher layer in this interval.
pub(crate) const PLI_INTERVAL: Duration = Duration::from_secs(1);
/// A simulcast layer with no packet for this long is not offered to subscribers.
const LAYER_STALE: Duration = Duration::from_secs(2);
/// Tile size assumed for a mid the browser never reported (SFU-DESIGN §3).
const DEFAULT_VIEW: (u32, u32) = (640, 360);

/// One slot's outgoing sequence-number and timestamp space: incoming packets of whichever
/// source is selected map onto it by offsets, re-based at every switch so the receiver
/// sees no jump backwards.
#[derive(Default)]
pub(crate) struct SeqRewriter {
    started: bool,
    rebase: bool,
    seq_off: i64,
    ts_off: u32,
    /// First incoming sequence number after the last re-base (older ones are dropped).
    base_in: u64,
    last_seq: u64,
    last_ts: u32,
    last_at: Option<Instant>,
}

impl SeqRewriter {
    /// The next packet starts a new source (another layer or track).
    pub(crate) fn switch(&mut self) {
        self.rebase = true;
    }

    /// Outgoing (sequence number, timestamp), or None for a packet from before the switch.
    pub(crate) fn map(&mut self, seq: u64, ts: u32, at: Instant, clock: u32) -> Option<(u64, u32)> {
        if !self.started || self.rebase {
            let (out_seq, out_ts) = if self.started {
                let gap = self
                    .last_at
                    .map(|l| at.saturating_duration_since(l).as_secs_f64())
                    .unwrap_or(0.0);
                let ticks = ((gap * clock as f64) as u32).max(1);
                (self.last_seq + 1, self.last_ts.wrapping_add(ticks))
            } else {
                // Start low: a first sequence number with a rollover count above 0 would
                // need out-of-band signalling.
                (1000, 0)
            };
            self.seq_off = out_seq as i64 - seq as i64;
            self.ts_off = out_ts.wrapping_sub(ts);
            self.base_in = seq;
            self.started = true;
            self.rebase = false;
        } else if seq < self.base_in {
            return None;
        }
        let out = (seq as i64 + self.seq_off).max(1) as u64;
        let ts = ts.wrapping_add(self.ts_off);
        if out > self.last_seq {
            self.last_seq = out;
            self.last_ts = ts;
            self.last_at = Some(at);
        }
        Some((out, ts))
    }
}

/// Whether a VP8 RTP payload starts a keyframe (RFC 7741 §4.2-4.3).
pub(crate) fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !start || pid != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            match payload.get(i) {
                Some(b) if b & 0x80 != 0 => i += 2,
                Some(_) => i += 1,
                None => return false,
            }
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    matches!(payload.get(i), Some(b) if b & 0x01 == 0)
}

impl Sfu {
    pub(crate) fn on_rtp(&mut self, pid: Pid, pkt: RtpPacket) {
        let now = self.now;
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
        let Some(t) = p.published(mid) else {
            return;
        };
        let params = p
            .rtc
            .codec_config()
            .find(|c| c.pt() == pkt.header.payload_type)
            .copied();
        let Some(params) = params else {
            return;
        };
        let track = &mut p.published[t];
        let kind = track.kind;
        let mut new_layer = false;
        if let Some(rid) = rid {
            match track.layers.iter_mut().find(|(r, _)| *r == rid) {
                Some(l) => {
                    new_layer = now.saturating_duration_since(l.1) > LAYER_STALE;
                    l.1 = now;
                }
                None => {
                    track.layers.push((rid, now));
                    new_layer = true;
                }
            }
        }
        let nsubs = track.subs.len();
        if new_layer {
            let subs: Vec<Pid> = track.subs.iter().map(|(s, _)| *s).collect();
            for s in subs {
                self.choose_layers(s);
            }
        }
        let keyframe = kind == MediaKind::Video && vp8_is_keyframe(&pkt.payload);
        let clock = if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
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
            self.forward_one(pid, mid, rid, sub, slot, &pkt, params, keyframe, clock);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_one(
        &mut self,
        pid: Pid,
        mid: Mid,
        rid: Option<Rid>,
        sub: Pid,
        slot_idx: usize,
        pkt: &RtpPacket,
        params: str0m::format::PayloadParams,
        keyframe: bool,
        clock: u32,
    ) {
        let queue_limit = self.cfg.limits.queue_packets;
        let Some(s) = self.parts[sub].as_mut() else {
            return;
        };
        let Some(slot) = s.slots.get_mut(slot_idx) else {
            return;
        };
        if slot.state != SlotState::Active || slot.track != Some((pid, mid)) {
            return;
        }
        let Some(ssrc) = slot.ssrc else {
            return;
        };
        let mut switched = None;
        if slot.kind == MediaKind::Video {
            let Some(target) = slot.target else {
                return; // paused (hidden tile)
            };
            if rid.is_some() && rid != slot.layer {
                if rid != Some(target) || !keyframe {
                    return;
                }
                slot.layer = rid;
                slot.rewriter.switch();
                switched = rid;
            }
        }
        let pt = match slot.pt_map {
            Some((i, o)) if i == pkt.header.payload_type => o,
            _ => {
                let Some(o) = s.rtc.codec_config().match_params(params).map(|p| p.pt()) else {
                    return;
                };
                let slot = &mut s.slots[slot_idx];
                slot.pt_map = Some((pkt.header.payload_type, o));
                o
            }
        };
        let slot = &mut s.slots[slot_idx];
        let Some((seq, ts)) =
            slot.rewriter
                .map(*pkt.seq_no, pkt.header.timestamp, pkt.timestamp, clock)
        else {
            return;
        };
        let out_mid = slot.mid;
        let mut api = s.rtc.direct_api();
        let Some(tx) = api.stream_tx(&ssrc) else {
            return;
        };
        if tx
            .queue_info()
            .is_some_and(|q| q.packet_count() >= queue_limit)
        {
            self.counters.dropped_packets += 1;
            return;
        }
        let mut ext = pkt.header.ext_vals.clone();
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), ts, pkt.timestamp, pkt.payload.clone())
                .marker(pkt.header.marker)
                .ext_vals(ext)
                .nackable(slot_kind_nackable(params)),
        );
        self.counters.forwarded_packets += 1;
        self.counters.forwarded_bytes += pkt.payload.len() as u64;
        self.mark(sub);
        if let Some(rid) = switched {
            self.counters.layer_switches += 1;
            self.signal(
                sub,
                SignalKind::Message,
                wire::render_layers(&out_mid, &rid),
            );
        }
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
        let rid = slot.layer.or(slot.target);
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
        let i = match t.pli.iter().position(|(r, _, _)| *r == rid) {
            Some(i) => i,
            None => {
                t.pli.push((rid, None, false));
                t.pli.len() - 1
            }
        };
        let entry = &mut t.pli[i];
        if entry.1.is_some_and(|last| now < last + PLI_INTERVAL) {
            entry.2 = true;
            return;
        }
        entry.1 = Some(now);
        entry.2 = false;
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.counters.plis_sent += 1;
            self.mark(pp);
        }
    }

    /// Deferred keyframe requests whose window ended.
    pub(crate) fn keyframe_timers(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        for (pp, p) in self.parts.iter().enumerate() {
            let Some(p) = p else { continue };
            for t in &p.published {
                for (rid, last, wanted) in &t.pli {
                    if *wanted && last.is_none_or(|l| now >= l + PLI_INTERVAL) {
                        due.push((pp, t.mid, *rid));
                    }
                }
            }
        }
        for (pp, mid, rid) in due {
            self.request_keyframe(pp, mid, rid);
        }
    }

    pub(crate) fn on_bwe(&mut self, pid: Pid, bwe: BweKind) {
        if let BweKind::Twcc { estimate, .. } = bwe {
            if let Some(p) = self.parts[pid].as_mut() {
                p.bwe = Some(estimate.as_u64());
            }
            self.choose_layers(pid);
        }
    }

    /// Pick the layer of every video slot of subscriber `sub` from its tile sizes and
    /// bandwidth estimate; a changed target asks the publisher for a keyframe.
    pub(crate) fn choose_layers(&mut self, sub: Pid) {
        let now = self.now;
        let Some(s) = self.parts[sub].as_ref() else {
            return;
        };
        let visible = s
            .slots
            .iter()
            .filter(|sl| sl.kind == MediaKind::Video && sl.track.is_some())
            .filter(|sl| sl.view.unwrap_or(DEFAULT_VIEW) != (0, 0))
            .count()
            .max(1) as u64;
        let share = s.bwe.map(|b| b / visible);
        let mut changes = Vec::new();
        for (i, sl) in s.slots.iter().enumerate() {
            if sl.kind != MediaKind::Video {
                continue;
            }
            let Some((pp, mid)) = sl.track else { continue };
            let (w, h) = sl.view.unwrap_or(DEFAULT_VIEW);
            let layers: Vec<Rid> = self.parts[pp]
                .as_ref()
                .and_then(|o| o.published.iter().find(|t| t.mid == mid))
                .map(|t| {
                    t.layers
                        .iter()
                        .filter(|(_, at)| now.saturating_duration_since(*at) <= LAYER_STALE)
                        .map(|(r, _)| *r)
                        .collect()
                })
                .unwrap_or_default();
            let target = if w == 0 || h == 0 {
                None
            } else if layers.is_empty() {
                // No simulcast (or nothing seen yet): forward the one stream.
                Some(sl.target.unwrap_or(Rid::from("-")))
            } else {
                Some(pick_layer(&layers, h, share))
            };
            if target != sl.target {
                changes.push((i, target, pp, mid));
            }
        }
        for (i, target, pp, mid) in changes {
            if let Some(sl) = self.parts[sub].as_mut().and_then(|s| s.slots.get_mut(i)) {
                sl.target = target;
                if sl.layer.is_some() && sl.layer == target {
                    continue;
                }
            }
            if let Some(t) = target.filter(|r| &**r != "-") {
                self.request_keyframe(pp, mid, Some(t));
            }
        }
    }

    pub(crate) fn on_channel_data(&mut self, pid: Pid, d: ChannelData) {
        let Some(p) = self.parts[pid].as_ref() else {
            return;
        };
        let parsed = (!d.binary)
            .then(|| std::str::from_utf8(&d.data).ok())
            .flatten()
            .and_then(wire::parse_data);
        let Some(msg) = parsed else {
            self.counters.data_dropped += 1;
            return;
        };
        let text = wire::render_data(&p.peer, msg.data);
        let targets: Vec<Pid> = match self.rooms.get(&p.room) {
            Some(r) => match msg.to {
                Some(to) => r.by_peer.get(to).copied().into_iter().collect(),
                None => r.members.iter().copied().filter(|m| *m != pid).collect(),
            },
            None => Vec::new(),
        };
        if targets.is_empty() {
            self.counters.data_dropped += 1;
        }
        for t in targets {
            self.send_data(t, &text);
        }
    }

    fn send_data(&mut self, to: Pid, text: &str) {
        let limit = self.cfg.limits.data_queue_bytes;
        let Some(p) = self.parts[to].as_mut() else {
            return;
        };
        let sent = p
            .channel
            .and_then(|id| p.rtc.channel(id))
            .is_some_and(|mut ch| {
                ch.buffered_amount() + text.len() <= limit
                    && ch.write(false, text.as_bytes()).unwrap_or(false)
            });
        if sent {
            self.counters.data_relayed += 1;
            self.mark(to);
        } else {
            self.counters.data_dropped += 1;
        }
    }
}

fn slot_kind_nackable(params: str0m::format::PayloadParams) -> bool {
    params.resend().is_some()
}

/// The layer for a tile `height` px high with `share` bit/s of the estimate: q/h/f by
/// size, lowered while the share is small; the best available not above that, else the
/// lowest available.
fn pick_layer(layers: &[Rid], height: u32, share: Option<u64>) -> Rid {
    fn rank(r: &Rid) -> u8 {
        match &**r {
            "q" => 0,
            "h" => 1,
            _ => 2,
        }
    }
    let by_size = if height <= 180 {
        0
    } else if height <= 360 {
        1
    } else {
        2
    };
    let by_rate = match share {
        Some(b) if b < 350_000 => 0,
        Some(b) if b < 900_000 => 1,
        _ => 2,
    };
    let want = by_size.min(by_rate);
    let mut sorted: Vec<&Rid> = layers.iter().collect();
    sorted.sort_by_key(|r| rank(r));
    sorted
        .iter()
        .rev()
        .find(|r| rank(r) <= want)
        .or(sorted.first())
        .map(|r| **r)
        .unwrap_or_else(|| Rid::from("h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriter_is_continuous_across_switches() {
        let t0 = Instant::now();
        let mut r = SeqRewriter::default();
        assert_eq!(r.map(5000, 100, t0, 90_000), Some((1000, 0)));
        assert_eq!(r.map(5001, 3100, t0, 90_000), Some((1001, 3000)));
        r.switch();
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.map(70_000, 9, t1, 90_000), Some((1002, 3000 + 9000)));
        assert_eq!(r.map(69_999, 9, t1, 90_000), None, "older than the switch");
        assert_eq!(r.map(70_001, 12, t1, 90_000), Some((1003, 12003)));
    }

    #[test]
    fn vp8_keyframes() {
        // S=1 PID=0, no extension, P=0: keyframe.
        assert!(vp8_is_keyframe(&[0x10, 0x00]));
        assert!(!vp8_is_keyframe(&[0x10, 0x01]));
        assert!(!vp8_is_keyframe(&[0x00, 0x00]), "not a partition start");
        // X=1, I=1 with 15-bit picture id, L=1: header 5 bytes.
        assert!(vp8_is_keyframe(&[0x90, 0xC0, 0x80, 0x01, 0x05, 0x00]));
        assert!(!vp8_is_keyframe(&[0x90, 0xC0, 0x80]));
    }

    #[test]
    fn layer_pick() {
        let all = [Rid::from("q"), Rid::from("h"), Rid::from("f")];
        assert_eq!(&*pick_layer(&all, 720, None), "f");
        assert_eq!(&*pick_layer(&all, 180, None), "q");
        assert_eq!(&*pick_layer(&all, 720, Some(500_000)), "h");
        assert_eq!(&*pick_layer(&[Rid::from("f")], 100, None), "f");
    }
}
