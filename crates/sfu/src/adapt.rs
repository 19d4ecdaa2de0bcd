//! Which simulcast layer each subscriber gets: from the tile size its browser reports
//! (`view`; hidden tiles are paused at the SFU) and its share of the egress bandwidth
//! estimate (str0m's TWCC/GCC), among the layers the publisher is sending now. A changed
//! choice is handed to the slot's rewriter, which switches at the new layer's keyframe
//! (asked for through the keyframe coalescer).

use std::time::{Duration, Instant};

use str0m::bwe::BweKind;
use str0m::media::{MediaKind, Rid};

use crate::participant::{Pid, PubTrack};
use crate::sfu::Sfu;

/// A simulcast layer with no packet for this long is not chosen.
const LAYER_STALE: Duration = Duration::from_secs(2);
/// Tile size assumed for a mid the browser never reported (SFU-DESIGN §3).
const DEFAULT_VIEW: (u32, u32) = (640, 360);

impl PubTrack {
    /// Note a packet of layer `rid` at `now`: its index for the rewriter (position in
    /// `layers`, stable), and whether the layer is new or came back (choices change).
    pub(crate) fn see_layer(&mut self, rid: Option<Rid>, now: Instant) -> (u8, bool) {
        let Some(rid) = rid else {
            return (0, false);
        };
        match self.layers.iter_mut().position(|(r, _)| *r == rid) {
            Some(i) => {
                let back = now.saturating_duration_since(self.layers[i].1) > LAYER_STALE;
                self.layers[i].1 = now;
                (i as u8, back)
            }
            None => {
                self.layers.push((rid, now));
                ((self.layers.len() - 1).min(u8::MAX as usize) as u8, true)
            }
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

    /// Pick the layer of every video slot of subscriber `sub`; a changed target asks the
    /// publisher for a keyframe of it.
    pub(crate) fn choose_layers(&mut self, sub: Pid) {
        let now = self.now;
        let Some(s) = self.parts[sub].as_ref() else {
            return;
        };
        let visible = s
            .slots
            .iter()
            .filter(|sl| sl.kind == MediaKind::Video && sl.track.is_some())
            .filter(|sl| !hidden(sl.view.unwrap_or(DEFAULT_VIEW)))
            .count()
            .max(1) as u64;
        let share = s.bwe.map(|b| b / visible);
        let mut changes = Vec::new();
        for (i, sl) in s.slots.iter().enumerate() {
            let Some((pp, mid)) = sl.track else { continue };
            if sl.kind != MediaKind::Video {
                if sl.rewriter.target().is_none() {
                    changes.push((i, None, Some(0), pp, mid));
                }
                continue;
            }
            let (w, h) = sl.view.unwrap_or(DEFAULT_VIEW);
            let Some(track) = self.parts[pp]
                .as_ref()
                .and_then(|o| o.published.iter().find(|t| t.mid == mid))
            else {
                continue;
            };
            let fresh: Vec<(usize, Rid)> = track
                .layers
                .iter()
                .enumerate()
                .filter(|(_, (_, at))| now.saturating_duration_since(*at) <= LAYER_STALE)
                .map(|(i, (r, _))| (i, *r))
                .collect();
            let (target, index) = if hidden((w, h)) {
                (None, None)
            } else if track.layers.is_empty() {
                // No simulcast: the one stream.
                (None, Some(0))
            } else if fresh.is_empty() {
                // Layers known but none sending right now: keep the choice.
                (sl.target, sl.rewriter.target())
            } else {
                let (i, r) = pick_layer(&fresh, h, share);
                (Some(r), Some(i as u8))
            };
            if index != sl.rewriter.target() || target != sl.target {
                changes.push((i, target, index, pp, mid));
            }
        }
        for (i, target, index, pp, mid) in changes {
            let Some(sl) = self.parts[sub].as_mut().and_then(|s| s.slots.get_mut(i)) else {
                continue;
            };
            sl.target = target;
            sl.rewriter.set_target(index);
            if index.is_none() {
                sl.layer = None;
            }
            let wants = sl.kind == MediaKind::Video && sl.rewriter.wants_keyframe().is_some();
            if wants {
                self.request_keyframe(pp, mid, target);
            }
        }
    }
}

fn hidden((w, h): (u32, u32)) -> bool {
    w == 0 || h == 0
}

/// The layer for a tile `height` px high with `share` bit/s of the estimate: q/h/f by
/// size, lowered while the share is small; the best available not above that, else the
/// lowest available. Unknown rids rank by the order the publisher's layers appeared.
fn pick_layer(layers: &[(usize, Rid)], height: u32, share: Option<u64>) -> (usize, Rid) {
    fn rank(i: usize, r: &Rid) -> usize {
        match &**r {
            "q" => 0,
            "h" => 1,
            "f" => 2,
            _ => i,
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
    let mut sorted: Vec<(usize, Rid)> = layers.to_vec();
    sorted.sort_by_key(|(i, r)| rank(*i, r));
    let best = sorted.iter().rev().find(|(i, r)| rank(*i, r) <= want);
    best.or(sorted.first())
        .copied()
        .unwrap_or((0, Rid::from("h")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_pick() {
        let all = [
            (0, Rid::from("q")),
            (1, Rid::from("h")),
            (2, Rid::from("f")),
        ];
        assert_eq!(&*pick_layer(&all, 720, None).1, "f");
        assert_eq!(&*pick_layer(&all, 180, None).1, "q");
        assert_eq!(&*pick_layer(&all, 720, Some(500_000)).1, "h");
        assert_eq!(
            pick_layer(&[(2, Rid::from("f"))], 100, None),
            (2, Rid::from("f"))
        );
    }
}
