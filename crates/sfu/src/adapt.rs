//! Which simulcast layer each subscriber gets: every incoming layer is metered
//! ([`BitrateMeter`]) and its keyframes tell its size; on each bandwidth estimate of a
//! subscriber (str0m's TWCC/GCC), each `view` it reports and each change of a publisher's
//! layers, [`SubscriberLayers::allocate`] shares its estimate over its videos (hidden
//! tiles paused at the SFU, hysteresis against flapping). A changed choice goes to the
//! slot's rewriter, which switches at the new layer's keyframe (asked for through the
//! keyframe coalescer). The same choice decides whether the subscriber's video is paced
//! ([`PACE_HEADROOM_PCT`]).

use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{MediaKind, Mid, Rid};

use crate::layer::{BitrateMeter, Demand, LayerRate, Tile, DEFAULT_TILE, MAX_LAYERS};
use crate::participant::{Layer, Participant, Pid, PubTrack};
use crate::rewrite::vp8;
use crate::sfu::Sfu;

/// A layer with no packet for this long is not chosen.
const LAYER_STALE: Duration = Duration::from_secs(2);
/// How long after a track's first simulcast packet its layers are chosen from: they
/// start within a few ms of each other, and choosing at the first one would switch two
/// or three times in a row, each needing a keyframe.
const LAYER_SETTLE: Duration = Duration::from_millis(300);
/// Bandwidth set aside for each audio stream a subscriber receives.
const AUDIO_BPS: u64 = 40_000;

/// The simulcast index of a rid: 0 the smallest. The SDK's `q`/`h`/`f`, common
/// low/mid/high spellings and digits are known; others take the next free index.
fn layer_index(rid: &str, taken: &[Option<Layer>; MAX_LAYERS]) -> Option<usize> {
    let known = match rid {
        "q" | "l" | "low" | "lo" => Some(0),
        "h" | "m" | "mid" | "medium" => Some(1),
        "f" | "high" | "hi" | "full" => Some(2),
        _ => rid.parse::<usize>().ok().filter(|i| *i < MAX_LAYERS),
    };
    known.or_else(|| taken.iter().position(Option::is_none))
}

impl PubTrack {
    /// Note a packet of layer `rid` (`bytes` long) at `now`: the layer's index for the
    /// rewriter, and whether the choices of its subscribers should be made again (a new
    /// layer, one that came back, or the layer set just settled). None: a rid that maps
    /// to no free index (not forwarded).
    pub(crate) fn see_layer(
        &mut self,
        rid: Option<Rid>,
        payload: &[u8],
        now: Instant,
    ) -> Option<(u8, bool)> {
        let Some(rid) = rid else {
            return Some((0, false));
        };
        let since = *self.layers_since.get_or_insert(now);
        let settled_now =
            !self.layers_settled && now.saturating_duration_since(since) >= LAYER_SETTLE;
        self.layers_settled |= settled_now;
        let i = match self
            .layers
            .iter()
            .position(|l| l.as_ref().is_some_and(|l| l.rid == rid))
        {
            Some(i) => i,
            None => {
                let i = layer_index(&rid, &self.layers)?;
                if self.layers[i].is_some() {
                    return None;
                }
                self.layers[i] = Some(Layer {
                    rid,
                    meter: BitrateMeter::new(),
                    size: (0, 0),
                });
                i
            }
        };
        let layer = self.layers[i].as_mut()?;
        let back = !layer.meter.is_active(now, LAYER_STALE);
        layer.meter.add(payload.len() + 12, now);
        if let Some(size) = vp8::keyframe_size(payload) {
            layer.size = size;
        }
        Some((i as u8, (back && self.layers_settled) || settled_now))
    }

    /// The layers sending now, for the allocator (a single-layer track is layer 0).
    fn rates(&self, now: Instant) -> Vec<LayerRate> {
        if !self.simulcast {
            return vec![LayerRate {
                layer: 0,
                bitrate_bps: self.meter.bitrate_bps(now),
                width: 0,
                height: 0,
            }];
        }
        if !self.layers_settled {
            return Vec::new();
        }
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.as_ref()?)))
            .filter(|(_, l)| l.meter.is_active(now, LAYER_STALE))
            .map(|(i, l)| LayerRate {
                layer: i as u8,
                bitrate_bps: l.meter.bitrate_bps(now),
                width: l.size.0,
                height: l.size.1,
            })
            .collect()
    }

    pub(crate) fn rid_of(&self, layer: u8) -> Option<Rid> {
        self.layers
            .get(usize::from(layer))
            .and_then(|l| l.as_ref())
            .map(|l| l.rid)
    }
}

/// Video to a subscriber is paced (str0m's pacer, 1.1x the estimate) only while its
/// estimate is below this percentage of what its chosen layers send. With headroom, video
/// leaves as it arrives (as mediasoup, LiveKit and Janus forward it): pacing a keyframe at
/// an estimate holds it back ~160 ms at 1.9 Mbit/s and the frames after it wait behind it.
/// Near or under the estimate, pacing spreads the bursts so the bottleneck's queue does not
/// overflow and the delay-based estimator sees it grow (unpaced bursts into a full
/// drop-tail queue keep the estimate up while packets are lost: the layer never drops).
pub(crate) const PACE_HEADROOM_PCT: u64 = 125;

/// Pace (or not) every negotiated video stream of `p`.
fn set_video_pacing(p: &mut Participant, pace: bool) {
    let mut api = p.rtc.direct_api();
    for sl in p.slots.iter().filter(|sl| sl.kind == MediaKind::Video) {
        if let Some(tx) = sl.ssrc.and_then(|ssrc| api.stream_tx(&ssrc)) {
            tx.set_unpaced(!pace);
        }
    }
}

impl Sfu {
    pub(crate) fn on_bwe(&mut self, pid: Pid, bwe: BweKind) {
        if let BweKind::Twcc { estimate, .. } = bwe {
            if let Some(p) = self.parts[pid].as_mut() {
                p.bwe = Some(estimate.as_u64());
            }
            self.choose_layers(pid);
        }
    }

    /// Decide the layer of every video slot of subscriber `sub`; a changed choice asks
    /// the publisher for a keyframe of it.
    pub(crate) fn choose_layers(&mut self, sub: Pid) {
        let now = self.now;
        let Some(s) = self.parts[sub].as_mut() else {
            return;
        };
        if s.link {
            // A link gets every layer of each video (`Sfu::forward_layer`): nothing to
            // choose, and no rate to probe for; its audio slots just get going.
            for sl in &mut s.slots {
                if sl.kind == MediaKind::Audio
                    && sl.track.is_some()
                    && sl.rewriter.target().is_none()
                {
                    sl.rewriter.set_target(Some(0));
                }
            }
            return;
        }
        let Some(s) = self.parts[sub].as_ref() else {
            return;
        };
        let mut audio = 0u64;
        let mut rates: Vec<(Mid, Vec<LayerRate>, Tile)> = Vec::new();
        let mut audio_slots = Vec::new();
        for (i, sl) in s.slots.iter().enumerate() {
            let Some((pp, mid)) = sl.track else { continue };
            if sl.kind == MediaKind::Audio {
                audio += AUDIO_BPS;
                if sl.rewriter.target().is_none() {
                    audio_slots.push(i);
                }
                continue;
            }
            let Some(track) = self.parts[pp]
                .as_ref()
                .and_then(|o| o.published.iter().find(|t| t.mid == mid))
            else {
                continue;
            };
            let tile = sl
                .view
                .map_or(DEFAULT_TILE, |(width, height)| Tile { width, height });
            rates.push((sl.mid, track.rates(now), tile));
        }
        let estimate = s
            .bwe
            .unwrap_or(self.cfg.initial_bitrate)
            .saturating_sub(audio);
        let demands: Vec<Demand<'_, Mid>> = rates
            .iter()
            .map(|(mid, layers, tile)| Demand {
                key: *mid,
                layers,
                tile: *tile,
            })
            .collect();
        let Some(s) = self.parts[sub].as_mut() else {
            return;
        };
        let alloc = s.layers.allocate(estimate, &demands, now);
        // Tell the estimator what to probe for: the layers the tiles want (desired), and
        // enough traffic (padding) to start the next layer up of the largest tile below
        // its wanted layer (minimum), so a subscriber on a low layer can climb back.
        let (mut minimum, mut desired, mut step) = (audio, audio, 0u64);
        for (d, a) in demands.iter().zip(&alloc) {
            let (now_bps, next_bps, want_bps) = probe_rates(d, a.layer);
            minimum += now_bps;
            desired += want_bps;
            if step == 0 && next_bps > now_bps {
                step = next_bps - now_bps;
            }
        }
        // `minimum` is what the chosen layers send: pace the videos while the estimate
        // leaves under a quarter of headroom above it, or while a video is below the
        // layer its tile wants (`step`): the climb back rests on str0m's probes, which
        // are padding clusters its pacer times (without pacing the estimate was seen to
        // stay where it was).
        // Not while the estimate is below what the chosen layers send (the warm-up, or a
        // dip ridden out on the lowest layers): the pacer would hold packets to the
        // estimate and the queue bound would drop them, breaking every video instead of
        // pausing one.
        let estimate = estimate.saturating_add(audio);
        let pace = self.cfg.pace_video
            || (estimate >= minimum
                && (step > 0 || estimate < minimum.saturating_mul(PACE_HEADROOM_PCT) / 100));
        if s.pace_video != pace {
            s.pace_video = pace;
            set_video_pacing(s, pace);
        }
        // What the tiles want, but never less than the starting rate: a low desired rate
        // keeps the estimate down to what is sent (app-limited), which then pauses
        // videos that would fit.
        let desired = desired
            .max(self.cfg.initial_bitrate)
            .min(self.cfg.max_bitrate);
        let minimum = (minimum + step).min(desired);
        if s.probe_rates != (minimum, desired) {
            s.probe_rates = (minimum, desired);
            s.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
        }
        for i in audio_slots {
            s.slots[i].rewriter.set_target(Some(0));
        }
        let mut keyframes = Vec::new();
        for a in alloc {
            let Some(sl) = s.slots.iter_mut().find(|sl| sl.mid == a.key) else {
                continue;
            };
            if sl.rewriter.target() == a.layer {
                continue;
            }
            if tracing::enabled!(tracing::Level::DEBUG) {
                let layers: Vec<(u8, u64)> = rates
                    .iter()
                    .find(|(m, _, _)| *m == a.key)
                    .map(|(_, ls, _)| ls.iter().map(|l| (l.layer, l.bitrate_bps)).collect())
                    .unwrap_or_default();
                tracing::debug!(sub = %s.peer, mid = %sl.mid, from = ?sl.rewriter.target(), to = ?a.layer, estimate, ?layers, videos = rates.len(), "sfu: layer target");
            }
            sl.rewriter.set_target(a.layer);
            if a.layer.is_none() {
                sl.layer = None;
            }
            if let (Some(l), Some(t)) = (a.layer, sl.track) {
                keyframes.push((t, l));
            }
        }
        for ((pp, mid), layer) in keyframes {
            let Some(t) = self.parts[pp]
                .as_ref()
                .and_then(|o| o.published.iter().find(|t| t.mid == mid))
            else {
                continue;
            };
            let rid = if t.simulcast { t.rid_of(layer) } else { None };
            self.request_keyframe(pp, mid, rid);
        }
    }
}

/// For one video: the bitrate of the layer it gets, of the next layer up if its tile
/// wants more, and of the layer its tile wants (+15 % headroom), from the measured
/// rates. Layer sizes come from keyframes, else halving down from 1280x720.
fn probe_rates(d: &Demand<'_, Mid>, chosen: Option<u8>) -> (u64, u64, u64) {
    if d.tile.is_hidden() || d.layers.is_empty() {
        return (0, 0, 0);
    }
    let mut ls: Vec<LayerRate> = d.layers.to_vec();
    ls.sort_by_key(|l| l.layer);
    let top = ls.last().map_or(0, |l| l.layer);
    let height = |l: &LayerRate| {
        if l.height > 0 {
            u32::from(l.height)
        } else {
            720 >> (top - l.layer).min(16)
        }
    };
    let want = ls
        .iter()
        .position(|l| height(l) * 1000 >= d.tile.height * 850)
        .unwrap_or(ls.len() - 1);
    let rate = |i: usize| ls[i].bitrate_bps.max(30_000);
    let cur = chosen.and_then(|c| ls.iter().position(|l| l.layer == c));
    let now_bps = cur.map_or(0, rate);
    let next = match cur {
        Some(c) if c < want => rate(c + 1),
        Some(_) => now_bps,
        None => rate(0),
    };
    (now_bps, next, rate(want) * 115 / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_indices() {
        let none: [Option<Layer>; MAX_LAYERS] = Default::default();
        assert_eq!(layer_index("q", &none), Some(0));
        assert_eq!(layer_index("h", &none), Some(1));
        assert_eq!(layer_index("f", &none), Some(2));
        assert_eq!(layer_index("2", &none), Some(2));
        assert_eq!(layer_index("x", &none), Some(0));
        let mut taken: [Option<Layer>; MAX_LAYERS] = Default::default();
        taken[0] = Some(Layer {
            rid: Rid::from("q"),
            meter: BitrateMeter::new(),
            size: (0, 0),
        });
        assert_eq!(layer_index("x", &taken), Some(1));
    }
}
