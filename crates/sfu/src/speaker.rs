//! Dominant speaker of a room, from the RFC 6464 audio levels the publishers' audio
//! packets carry (the SFU never decodes audio).
//!
//! The level is −dBov, 0 (loudest) to 127 (silence), per packet (every 20 ms). Each
//! participant gets a loudness score `127 − level`, smoothed with an exponential moving
//! average over irregular packet times (time constant [`SpeakerConfig::smoothing`]) and
//! decaying when its packets stop (mute, DTX). The dominant speaker changes only with
//! hysteresis so tiles do not flicker: a challenger must be above the speech threshold and
//! lead the current speaker by [`SpeakerConfig::margin`] for a whole
//! [`SpeakerConfig::takeover`] (about a second); the room falls back to "nobody" after
//! [`SpeakerConfig::silence`] without anyone above the threshold. Decisions are taken on a
//! fixed tick ([`SpeakerDetector::poll_timeout`]), packets only update a score (O(1)).
//!
//! The voice-activity flag of RFC 6464 is ignored unless [`SpeakerConfig::trust_voice_flag`]:
//! not every sender sets it (it depends on the sender's VAD being on).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Knobs of [`SpeakerDetector`].
#[derive(Clone, Debug)]
pub struct SpeakerConfig {
    /// A level at or below this −dBov counts as speech (lower is louder). Default 55.
    pub speech_level: u8,
    /// Time constant of the smoothing. Default 300 ms.
    pub smoothing: Duration,
    /// How long a challenger must lead before it takes over. Default 1 s.
    pub takeover: Duration,
    /// How long without anyone speaking before the speaker becomes nobody. Default 1.5 s.
    pub silence: Duration,
    /// The lead (in dB of smoothed loudness) a challenger needs over the current speaker.
    /// Default 3.
    pub margin: f32,
    /// How often decisions are taken. Default 100 ms.
    pub tick: Duration,
    /// Count packets without the voice flag as silence. Default false.
    pub trust_voice_flag: bool,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            speech_level: 55,
            smoothing: Duration::from_millis(300),
            takeover: Duration::from_secs(1),
            silence: Duration::from_millis(1500),
            margin: 3.0,
            tick: Duration::from_millis(100),
            trust_voice_flag: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Score {
    /// Smoothed loudness (127 − dBov) as of `at`.
    value: f32,
    at: Instant,
}

/// Packets this much apart or more mean the sender stopped (DTX, mute): the score decays
/// from the last packet instead of holding.
const GAP: Duration = Duration::from_millis(100);

impl Score {
    /// The score at `now`: held while packets flow, decaying once they stop.
    fn at(&self, now: Instant, tau: f32) -> f32 {
        let idle = now.saturating_duration_since(self.at);
        if idle <= GAP {
            return self.value;
        }
        self.value * decay(idle - GAP, tau)
    }
}

/// exp(−dt/τ); τ of zero means no memory.
fn decay(dt: Duration, tau: f32) -> f32 {
    if tau <= 0.0 {
        return 0.0;
    }
    (-dt.as_secs_f32() / tau).exp()
}

/// The dominant-speaker state of one room, over participants named by `K` (peer ids, or
/// any small key the caller prefers).
#[derive(Debug)]
pub struct SpeakerDetector<K> {
    cfg: SpeakerConfig,
    scores: HashMap<K, Score>,
    current: Option<K>,
    /// The participant leading the current speaker, and since when.
    challenger: Option<(K, Instant)>,
    /// Since when nobody was above the speech threshold.
    quiet_since: Option<Instant>,
    next_tick: Instant,
}

impl<K: Clone + Eq + Hash> SpeakerDetector<K> {
    /// A room with no speaker yet.
    pub fn new(cfg: SpeakerConfig, now: Instant) -> SpeakerDetector<K> {
        let next_tick = now + cfg.tick;
        SpeakerDetector {
            cfg,
            scores: HashMap::new(),
            current: None,
            challenger: None,
            quiet_since: None,
            next_tick,
        }
    }

    /// One audio packet of `peer` with its RFC 6464 level (−dBov, values above 127 read
    /// as 127) and voice flag.
    pub fn observe(&mut self, peer: &K, level: u8, voice: bool, now: Instant) {
        let loud = if self.cfg.trust_voice_flag && !voice {
            0.0
        } else {
            f32::from(127 - level.min(127))
        };
        let tau = self.cfg.smoothing.as_secs_f32();
        match self.scores.get_mut(peer) {
            Some(s) => {
                let dt = now.saturating_duration_since(s.at);
                let a = decay(dt, tau);
                s.value = s.value * a + loud * (1.0 - a);
                s.at = s.at.max(now);
            }
            None => {
                // A newcomer starts from silence: one loud packet is not a speaker.
                let a = decay(Duration::from_millis(20), tau);
                let value = loud * (1.0 - a);
                self.scores.insert(peer.clone(), Score { value, at: now });
            }
        }
    }

    /// The participant left: forgotten. True when it was the speaker (now nobody; the
    /// caller announces the change).
    pub fn remove(&mut self, peer: &K) -> bool {
        self.scores.remove(peer);
        if self.challenger.as_ref().is_some_and(|(c, _)| c == peer) {
            self.challenger = None;
        }
        if self.current.as_ref() == Some(peer) {
            self.current = None;
            return true;
        }
        false
    }

    /// The dominant speaker now.
    pub fn current(&self) -> Option<&K> {
        self.current.as_ref()
    }

    /// The smoothed loudness of `peer` at `now` (127 − dBov), for stats and tests.
    pub fn loudness(&self, peer: &K, now: Instant) -> Option<f32> {
        let tau = self.cfg.smoothing.as_secs_f32();
        self.scores.get(peer).map(|s| s.at(now, tau))
    }

    /// When to call [`SpeakerDetector::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// Takes the decisions due at `now`. True when the speaker changed: read it with
    /// [`SpeakerDetector::current`] and announce it.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if now < self.next_tick {
            return false;
        }
        self.next_tick = now + self.cfg.tick;
        let tau = self.cfg.smoothing.as_secs_f32();
        let threshold = f32::from(127 - self.cfg.speech_level.min(127));
        // The loudest participant at or above the threshold.
        let mut best: Option<(&K, f32)> = None;
        for (k, s) in &self.scores {
            let v = s.at(now, tau);
            if v >= threshold && best.is_none_or(|(_, b)| v > b) {
                best = Some((k, v));
            }
        }
        let Some((leader, lead_score)) = best else {
            self.challenger = None;
            let since = *self.quiet_since.get_or_insert(now);
            if self.current.is_some() && now.saturating_duration_since(since) >= self.cfg.silence {
                self.current = None;
                return true;
            }
            return false;
        };
        self.quiet_since = None;
        if self.current.as_ref() == Some(leader) {
            self.challenger = None;
            return false;
        }
        let current_score = self
            .current
            .as_ref()
            .and_then(|c| self.scores.get(c))
            .map_or(0.0, |s| s.at(now, tau));
        if self.current.is_some() && lead_score < current_score + self.cfg.margin {
            // Not clearly ahead: keep the current speaker, restart the challenge.
            self.challenger = None;
            return false;
        }
        match &self.challenger {
            Some((c, since)) if c == leader => {
                if now.saturating_duration_since(*since) >= self.cfg.takeover {
                    self.current = Some(leader.clone());
                    self.challenger = None;
                    return true;
                }
            }
            _ => self.challenger = Some((leader.clone(), now)),
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TALK: u8 = 25;
    const MURMUR: u8 = 45;
    const QUIET: u8 = 110;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds 20 ms packets of the given levels (None: no packet) from `from` for `dur`,
    /// ticking the detector; returns (time, new speaker) of every change.
    fn run(
        d: &mut SpeakerDetector<&'static str>,
        from: Instant,
        dur: Duration,
        levels: &[(&'static str, Option<u8>)],
    ) -> Vec<(Duration, Option<&'static str>)> {
        let mut changes = Vec::new();
        let mut t = Duration::ZERO;
        while t < dur {
            let now = from + t;
            for (p, l) in levels {
                if let Some(l) = l {
                    d.observe(p, *l, true, now);
                }
            }
            if now >= d.poll_timeout() && d.handle_timeout(now) {
                changes.push((t, d.current().copied()));
            }
            t += ms(20);
        }
        changes
    }

    #[test]
    fn a_single_talker_becomes_speaker_after_about_a_second_and_silence_clears_it() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(SpeakerConfig::default(), t0);
        let c = run(
            &mut d,
            t0,
            ms(3000),
            &[("a", Some(TALK)), ("b", Some(QUIET))],
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].1, Some("a"));
        assert!(c[0].0 >= ms(1000) && c[0].0 <= ms(1500), "{c:?}");
        // a stops sending (mute): nobody after the decay and the silence time.
        let c = run(&mut d, t0 + ms(3000), ms(4000), &[("b", Some(QUIET))]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].1, None);
        assert!(c[0].0 >= ms(1500) && c[0].0 <= ms(2500), "{c:?}");
    }

    #[test]
    fn a_short_interjection_does_not_take_over_a_sustained_one_does() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(SpeakerConfig::default(), t0);
        run(
            &mut d,
            t0,
            ms(2000),
            &[("a", Some(MURMUR)), ("b", Some(QUIET))],
        );
        assert_eq!(d.current(), Some(&"a"));
        // b talks loudly for 600 ms: no change.
        let c = run(
            &mut d,
            t0 + ms(2000),
            ms(600),
            &[("a", Some(MURMUR)), ("b", Some(TALK))],
        );
        assert!(c.is_empty(), "{c:?}");
        let c = run(
            &mut d,
            t0 + ms(2600),
            ms(600),
            &[("a", Some(MURMUR)), ("b", Some(QUIET))],
        );
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(d.current(), Some(&"a"));
        // b talks for 2 s: takes over once, after the takeover time.
        let c = run(
            &mut d,
            t0 + ms(3200),
            ms(2000),
            &[("a", Some(MURMUR)), ("b", Some(TALK))],
        );
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].1, Some("b"));
        assert!(c[0].0 >= ms(1000) && c[0].0 <= ms(1600), "{c:?}");
    }

    #[test]
    fn two_equally_loud_talkers_do_not_flap() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(SpeakerConfig::default(), t0);
        let c = run(&mut d, t0, ms(1500), &[("a", Some(TALK))]);
        assert_eq!(c.len(), 1);
        // Alternating 1-dB differences: never a 3-dB lead, never a change.
        let mut changes = 0;
        for i in 0..50u64 {
            let (la, lb) = if i % 2 == 0 {
                (TALK + 1, TALK)
            } else {
                (TALK, TALK + 1)
            };
            changes += run(
                &mut d,
                t0 + ms(1500 + i * 200),
                ms(200),
                &[("a", Some(la)), ("b", Some(lb))],
            )
            .len();
        }
        assert_eq!(changes, 0);
        assert_eq!(d.current(), Some(&"a"));
    }

    #[test]
    fn removing_the_speaker_reports_it_and_voice_flag_is_used_only_when_trusted() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(SpeakerConfig::default(), t0);
        run(&mut d, t0, ms(2000), &[("a", Some(TALK))]);
        assert!(!d.remove(&"b"));
        assert!(d.remove(&"a"));
        assert_eq!(d.current(), None);
        assert_eq!(d.loudness(&"a", t0 + ms(2000)), None);

        let cfg = SpeakerConfig {
            trust_voice_flag: true,
            ..SpeakerConfig::default()
        };
        let mut d = SpeakerDetector::new(cfg, t0);
        for i in 0..100u64 {
            let now = t0 + ms(i * 20);
            d.observe(&"a", TALK, false, now);
            d.handle_timeout(now);
        }
        assert_eq!(d.current(), None);
        assert!(d.loudness(&"a", t0 + ms(2000)).is_some_and(|l| l < 1.0));
    }

    #[test]
    fn the_score_follows_the_level_and_decays_when_packets_stop() {
        let t0 = Instant::now();
        let mut d: SpeakerDetector<u32> = SpeakerDetector::new(SpeakerConfig::default(), t0);
        for i in 0..100u64 {
            d.observe(&7, 27, true, t0 + ms(i * 20));
        }
        let held = d.loudness(&7, t0 + ms(2000)).unwrap();
        assert!((held - 100.0).abs() < 1.0, "{held}");
        let later = d.loudness(&7, t0 + ms(1980 + 100 + 300)).unwrap();
        assert!((later - held / std::f32::consts::E).abs() < 1.0, "{later}");
        // Out-of-range levels read as silence; ticks before their time do nothing.
        d.observe(&8, 200, true, t0);
        assert_eq!(d.loudness(&8, t0), Some(0.0));
        assert!(!d.handle_timeout(t0));
    }
}
