//! Which simulcast layer each subscriber gets of each video, from three facts: what the
//! publisher sends now (the active layers and their bitrates measured as they arrive,
//! [`BitrateMeter`]), how large the subscriber shows the video (its `view` tile), and the
//! subscriber's bandwidth estimate (str0m's TWCC/GCC).
//!
//! [`SubscriberLayers::allocate`] shares one subscriber's estimate over all its videos:
//! hidden tiles get nothing (paused at the SFU, which is what makes a 50-person room
//! cost a browser only its visible tiles); then every visible video gets its lowest
//! layer, largest tiles first, as long as the estimate lasts (the largest always gets
//! one); then, again largest first, each is raised towards the smallest layer that
//! covers its tile. Hysteresis keeps the choice from flapping: going down a layer is
//! immediate (congestion hurts everyone), but pausing a shown video for bandwidth waits
//! out [`LayerConfig::pause_hold`] on its lowest layer (a moment's queueing delay also
//! dips the estimate, and a paused video costs a keyframe and a resume hold to come
//! back); going up above what the estimate afforded before needs the estimate to afford
//! it, with a margin, for [`LayerConfig::up_hold`] ([`LayerConfig::resume_hold`] for a
//! paused video's lowest layer); a tile that grows while the estimate already allowed
//! more goes up at once; nothing is paused for bandwidth during a subscriber's first
//! [`LayerConfig::warmup`], while its estimate is still finding its level. Pure: the
//! caller feeds
//! the result to each stream's [`Rewriter`](crate::rewrite::Rewriter) and asks for
//! keyframes.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use str0m::media::{Rid, Simulcast, SimulcastLayer};

/// Layers a video may have (simulcast indices 0..MAX_LAYERS, 0 the smallest).
pub const MAX_LAYERS: usize = 4;

/// The rids of the video m-lines between an SFU and a node link ([`crate::link`]): the
/// publisher's layer index, whatever rids the publisher itself used (the SFU maps a
/// digit rid to that index).
pub const LINK_RIDS: [&str; MAX_LAYERS] = ["0", "1", "2", "3"];

/// The simulcast of a video m-line between an SFU and a link: every [`LINK_RIDS`] layer.
pub fn link_simulcast() -> Simulcast {
    let mut s = Simulcast::new();
    for rid in LINK_RIDS {
        s.add_send_layer(SimulcastLayer::new(rid));
    }
    s
}

/// The rid a link's m-line carries layer `layer` on.
pub fn link_rid(layer: u8) -> Option<Rid> {
    LINK_RIDS.get(usize::from(layer)).map(|r| Rid::from(*r))
}

/// The tile assumed for a video the subscriber never reported (docs: visible, 640×360).
pub const DEFAULT_TILE: Tile = Tile {
    width: 640,
    height: 360,
};

/// Knobs of the layer choice.
#[derive(Clone, Debug)]
pub struct LayerConfig {
    /// How long the estimate must afford a higher layer before a video goes up. Default 3 s.
    pub up_hold: Duration,
    /// How long the estimate must fall short of a shown video's lowest layer before the
    /// video is paused; a shorter dip keeps it on that layer. Default 2 s.
    pub pause_hold: Duration,
    /// How long the estimate must afford the lowest layer again before a video paused
    /// for bandwidth resumes. Default 1 s.
    pub resume_hold: Duration,
    /// For this long after a subscriber's first allocation its estimate is still finding
    /// its level (GCC starts from a guess and ramps up; a busy receiver's delay also pulls
    /// it down): shown videos go down to their lowest layer but are not paused for
    /// bandwidth. Default 10 s.
    pub warmup: Duration,
    /// Headroom a higher layer needs, in per mille of its bitrate. Default 1150 (+15 %).
    pub up_margin_permille: u64,
    /// A layer covers a tile when both its sides reach this per mille of the tile's.
    /// Default 850 (a little upscaling is invisible).
    pub cover_permille: u32,
    /// The least bitrate a layer is counted at (a just-started layer measures ~0).
    /// Default 30 kbit/s.
    pub min_layer_bps: u64,
    /// The size assumed for the top layer when no keyframe told its real size. Default
    /// 1280×720; each layer below is half of the one above.
    pub assumed_top: (u32, u32),
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            up_hold: Duration::from_secs(3),
            pause_hold: Duration::from_secs(2),
            resume_hold: Duration::from_secs(1),
            warmup: Duration::from_secs(10),
            up_margin_permille: 1150,
            cover_permille: 850,
            min_layer_bps: 30_000,
            assumed_top: (1280, 720),
        }
    }
}

/// The size a subscriber shows a video at, in device pixels (either side 0: hidden).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Width in device pixels.
    pub width: u32,
    /// Height in device pixels.
    pub height: u32,
}

impl Tile {
    /// Whether the tile is off screen or collapsed.
    pub fn is_hidden(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// One layer the publisher sends now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerRate {
    /// Simulcast index (0 the smallest; at most `MAX_LAYERS - 1`).
    pub layer: u8,
    /// Measured bitrate ([`BitrateMeter::bitrate_bps`]).
    pub bitrate_bps: u64,
    /// Frame size from its last keyframe (`rewrite::vp8::keyframe_size`), 0×0 unknown.
    pub width: u16,
    /// Frame height, 0 unknown.
    pub height: u16,
}

/// One video of the subscriber, as [`SubscriberLayers::allocate`] needs it.
#[derive(Clone, Copy, Debug)]
pub struct Demand<'a, K> {
    /// The caller's name for the video (its mid, a track id…).
    pub key: K,
    /// The layers the publisher sends now (inactive ones left out), any order.
    pub layers: &'a [LayerRate],
    /// The subscriber's tile for it ([`DEFAULT_TILE`] if never reported).
    pub tile: Tile,
}

/// The decision for one video.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation<K> {
    /// The video.
    pub key: K,
    /// The layer to forward (`None`: paused).
    pub layer: Option<u8>,
    /// Differs from the previous decision for this video.
    pub changed: bool,
}

/// What is remembered per video between allocations.
#[derive(Clone, Copy, Debug, Default)]
struct Selector {
    current: Option<u8>,
    /// Paused for want of bandwidth (not because hidden): resuming waits like going up.
    budget_paused: bool,
    /// Since when the estimate has afforded each layer without a break.
    afforded_since: [Option<Instant>; MAX_LAYERS],
    /// Since when the estimate has fallen short of its lowest layer (while it had one).
    short_since: Option<Instant>,
}

/// The layer choice for all videos of one subscriber. `K` names a video.
#[derive(Debug)]
pub struct SubscriberLayers<K> {
    cfg: LayerConfig,
    videos: HashMap<K, Selector>,
    /// The first allocation (the start of the warm-up).
    started: Option<Instant>,
}

/// The layers of a demand sorted by index, capped at `MAX_LAYERS`, at most one per index.
fn sorted_layers(layers: &[LayerRate]) -> ([LayerRate; MAX_LAYERS], usize) {
    let mut out = [LayerRate {
        layer: 0,
        bitrate_bps: 0,
        width: 0,
        height: 0,
    }; MAX_LAYERS];
    let mut n = 0;
    for l in layers {
        if usize::from(l.layer) < MAX_LAYERS && !out[..n].iter().any(|o| o.layer == l.layer) {
            out[n] = *l;
            n += 1;
        }
    }
    out[..n].sort_by_key(|l| l.layer);
    (out, n)
}

impl<K: Clone + Eq + Hash> SubscriberLayers<K> {
    /// No videos yet.
    pub fn new(cfg: LayerConfig) -> SubscriberLayers<K> {
        SubscriberLayers {
            cfg,
            videos: HashMap::new(),
            started: None,
        }
    }

    /// The video is gone from this subscriber.
    pub fn remove(&mut self, key: &K) {
        self.videos.remove(key);
    }

    /// The last decision for a video.
    pub fn current(&self, key: &K) -> Option<u8> {
        self.videos.get(key).and_then(|s| s.current)
    }

    fn rate(&self, l: &LayerRate) -> u64 {
        l.bitrate_bps.max(self.cfg.min_layer_bps)
    }

    /// The size of layer `i` of `ls` (sorted): its keyframe's, or derived from the
    /// nearest known layer above (or the assumed top) by halving.
    fn size(&self, ls: &[LayerRate], i: usize) -> (u32, u32) {
        for (j, l) in ls.iter().enumerate().skip(i) {
            if l.width > 0 && l.height > 0 {
                let shift = (ls[j].layer - ls[i].layer).min(16);
                return (u32::from(l.width) >> shift, u32::from(l.height) >> shift);
            }
        }
        let top = ls.last().map_or(0, |l| l.layer);
        let shift = (top - ls[i].layer).min(16);
        (
            self.cfg.assumed_top.0 >> shift,
            self.cfg.assumed_top.1 >> shift,
        )
    }

    /// The position in `ls` of the smallest layer that covers `tile` (else the largest).
    fn wanted(&self, ls: &[LayerRate], tile: Tile) -> usize {
        let need = |side: u32| u64::from(side) * u64::from(self.cfg.cover_permille) / 1000;
        (0..ls.len())
            .find(|&i| {
                let (w, h) = self.size(ls, i);
                u64::from(w) >= need(tile.width) && u64::from(h) >= need(tile.height)
            })
            .unwrap_or(ls.len().saturating_sub(1))
    }

    /// The cost of moving to `l` from `current`: going up needs the margin.
    fn cost(&self, l: &LayerRate, current: Option<u8>) -> u64 {
        let r = self.rate(l);
        if current.is_none_or(|c| l.layer > c) {
            r.saturating_mul(self.cfg.up_margin_permille) / 1000
        } else {
            r
        }
    }

    /// Decides every video's layer for an estimate of `estimate_bps` (the bandwidth the
    /// subscriber's videos may use: the caller takes audio off first). Videos not in
    /// `demands` keep their state; [`SubscriberLayers::remove`] forgets one.
    pub fn allocate(
        &mut self,
        estimate_bps: u64,
        demands: &[Demand<'_, K>],
        now: Instant,
    ) -> Vec<Allocation<K>> {
        // Largest visible tiles first; hidden ones last (they get nothing).
        let mut order: Vec<usize> = (0..demands.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(demands[i].tile.area()));
        let mut remaining = estimate_bps;
        // Pass 1: the lowest layer for as many visible videos as the estimate holds. A
        // video that has a layer keeps it through a dip shorter than `pause_hold`: an
        // estimate also dips for a moment's queueing delay, and a paused video takes a
        // resume hold and a keyframe to come back.
        let mut base = vec![false; demands.len()];
        let mut short = vec![None; demands.len()];
        let mut first = true;
        let started = *self.started.get_or_insert(now);
        let warming = now.saturating_duration_since(started) < self.cfg.warmup;
        for &i in &order {
            let d = &demands[i];
            let (ls, n) = sorted_layers(d.layers);
            if d.tile.is_hidden() || n == 0 {
                continue;
            }
            let sel = self.videos.get(&d.key);
            // Resuming from a budget pause pays the margin, like going up.
            let resuming = sel.is_some_and(|s| s.budget_paused);
            let cost = self.cost(&ls[0], if resuming { None } else { Some(ls[0].layer) });
            let affords = first || cost <= remaining;
            // A shortfall counts from the end of the warm-up.
            if !affords && !warming {
                short[i] = Some(sel.and_then(|s| s.short_since).unwrap_or(now));
            }
            let dip =
                short[i].is_some_and(|t| now.saturating_duration_since(t) < self.cfg.pause_hold);
            let had = sel.is_some_and(|s| s.current.is_some());
            if affords || warming || (dip && had) {
                remaining = remaining.saturating_sub(self.rate(&ls[0]));
                base[i] = true;
            }
            first = false;
        }
        // Pass 2: raise each towards its tile, largest first.
        let mut out = Vec::with_capacity(demands.len());
        for &i in &order {
            let d = &demands[i];
            let (ls, n) = sorted_layers(d.layers);
            let mut sel = self.videos.get(&d.key).copied().unwrap_or_default();
            let before = sel.current;
            sel.short_since = short[i];
            if d.tile.is_hidden() || n == 0 {
                sel.current = None;
                sel.budget_paused = false;
            } else if !base[i] {
                sel.current = None;
                sel.budget_paused = true;
                sel.afforded_since = [None; MAX_LAYERS];
            } else {
                sel.current = self.raise(&mut sel, &ls[..n], d.tile, &mut remaining, now);
                sel.budget_paused = sel.current.is_none();
            }
            out.push(Allocation {
                key: d.key.clone(),
                layer: sel.current,
                changed: sel.current != before,
            });
            self.videos.insert(d.key.clone(), sel);
        }
        out
    }

    /// Pass 2 for one video granted its base layer `ls[0]` in pass 1: the layer it gets
    /// now (`None`: still waiting out a budget pause; its base is given back).
    fn raise(
        &self,
        sel: &mut Selector,
        ls: &[LayerRate],
        tile: Tile,
        remaining: &mut u64,
        now: Instant,
    ) -> Option<u8> {
        let base_rate = self.rate(&ls[0]);
        // A current layer the publisher stopped sending is no reference any more.
        let current = sel
            .current
            .filter(|c| ls.iter().any(|l| l.layer == *c) && !sel.budget_paused);
        // The highest layer the estimate affords (margin above the current one).
        let mut afford = 0;
        for (i, l) in ls.iter().enumerate().skip(1) {
            let extra = self.cost(l, current).saturating_sub(base_rate);
            if extra <= *remaining {
                afford = i;
            }
        }
        for (i, l) in ls.iter().enumerate() {
            let slot = &mut sel.afforded_since[usize::from(l.layer)];
            if i <= afford {
                slot.get_or_insert(now);
            } else {
                *slot = None;
            }
        }
        let target = afford.min(self.wanted(ls, tile));
        let held_for = |i: usize, hold: Duration| {
            sel.afforded_since[usize::from(ls[i].layer)]
                .is_some_and(|t| now.saturating_duration_since(t) >= hold)
        };
        let held = |i: usize| held_for(i, self.cfg.up_hold);
        let chosen = match current.and_then(|c| ls.iter().position(|l| l.layer == c)) {
            // New, back from hidden, or its layer vanished: take the target now.
            None if !sel.budget_paused => Some(target),
            // Back from a budget pause: only what the estimate held (the lowest layer
            // for `resume_hold`, higher ones for `up_hold`).
            None => (0..=target).rev().find(|&i| {
                held_for(
                    i,
                    if i == 0 {
                        self.cfg.resume_hold
                    } else {
                        self.cfg.up_hold
                    },
                )
            }),
            Some(c) if target <= c => Some(target),
            Some(c) => Some((c + 1..=target).rev().find(|&i| held(i)).unwrap_or(c)),
        };
        match chosen {
            Some(i) => {
                *remaining =
                    remaining.saturating_sub(self.rate(&ls[i]) - base_rate.min(self.rate(&ls[i])));
                Some(ls[i].layer)
            }
            None => {
                *remaining = remaining.saturating_add(base_rate);
                None
            }
        }
    }
}

/// Bytes per interval over a sliding window: a layer's measured bitrate.
const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);

/// The bitrate of one incoming layer over the last second, from the packets that
/// arrive (`add` per packet: O(1), no allocation).
#[derive(Clone, Debug, Default)]
pub struct BitrateMeter {
    bytes: [u64; BUCKETS],
    head: usize,
    head_start: Option<Instant>,
    first: Option<Instant>,
    last_packet: Option<Instant>,
}

impl BitrateMeter {
    /// A meter with nothing measured.
    pub fn new() -> BitrateMeter {
        BitrateMeter::default()
    }

    /// Buckets `now` is past the head bucket's start.
    fn steps(&self, now: Instant) -> usize {
        self.head_start.map_or(0, |s| {
            let n = now.saturating_duration_since(s).as_nanos() / BUCKET.as_nanos();
            usize::try_from(n).unwrap_or(usize::MAX)
        })
    }

    /// A packet of `bytes` (payload and header) arrived at `now`.
    pub fn add(&mut self, bytes: usize, now: Instant) {
        let start = *self.head_start.get_or_insert(now);
        self.first.get_or_insert(now);
        let steps = self.steps(now);
        for _ in 0..steps.min(BUCKETS) {
            self.head = (self.head + 1) % BUCKETS;
            self.bytes[self.head] = 0;
        }
        if steps > 0 {
            let k = u32::try_from(steps).unwrap_or(u32::MAX);
            self.head_start = Some(start + BUCKET.saturating_mul(k));
        }
        self.bytes[self.head] = self.bytes[self.head].saturating_add(bytes as u64);
        self.last_packet = Some(self.last_packet.map_or(now, |l| l.max(now)));
    }

    /// Bits per second over the last second (less while the meter is younger).
    pub fn bitrate_bps(&self, now: Instant) -> u64 {
        let (Some(start), Some(first)) = (self.head_start, self.first) else {
            return 0;
        };
        let steps = self.steps(now);
        if steps >= BUCKETS {
            return 0;
        }
        // The buckets still inside the window once `now` is reached.
        let kept = BUCKETS - steps;
        let total: u64 = (0..kept)
            .map(|j| self.bytes[(self.head + BUCKETS - j) % BUCKETS])
            .sum();
        let into_head = now.saturating_duration_since(start) - BUCKET * steps as u32;
        let span = (BUCKET * (BUCKETS as u32 - 1) + into_head)
            .min(now.saturating_duration_since(first))
            .max(BUCKET);
        (u128::from(total) * 8 * 1_000_000 / span.as_micros().max(1)) as u64
    }

    /// Whether a packet arrived within `within` (a layer the publisher stopped — its own
    /// bandwidth, a closed tab — is not offered to subscribers).
    pub fn is_active(&self, now: Instant, within: Duration) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) <= within)
    }
}

#[cfg(test)]
mod tests;
