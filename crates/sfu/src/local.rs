//! Server-side participants: in-process media (the SIP gateway's room leg now, a
//! node-to-node link later) and node links ([`Sfu::set_link`]). Such a participant still
//! negotiates with the SFU as a browser does (offers, answers, ICE and DTLS through its
//! own `Rtc`), so its tracks, slots, grants and the room's `tracks` maps are those of any
//! participant. With in-process media only its RTP skips the PC: what it publishes comes
//! in through [`Sfu::handle_local_rtp`], and what it subscribes to leaves as
//! [`SfuOutput::LocalRtp`](crate::SfuOutput::LocalRtp), after the same rewriting
//! (sequence numbers, timestamps, payload types of its m-lines).
//!
//! Why: on one host the PC hop costs two SRTP operations, a str0m session's per-packet
//! work and two UDP syscalls on each side, per packet and direction; for a G.711 call that
//! was most of the gateway's CPU (docs/benchmarks.md, "SIP gateway against Janus's SIP
//! plugin").

use std::time::Instant;

use str0m::rtp::ExtensionValues;

use crate::forward::RtpIn;
use crate::output::LocalRtp;
use crate::participant::Participant;
use crate::sfu::Sfu;

impl Sfu {
    /// From now on the media of `peer` in `room` is exchanged in-process (see the module
    /// docs). False when no such participant is on this SFU.
    pub fn set_local_media(&mut self, room: &str, peer: &str) -> bool {
        self.set_flag(room, peer, |p| p.local_media = true)
    }

    /// `peer` in `room` is a node-to-node link from now on: the entries of its `publish`
    /// may name the peer each track belongs to (a participant of the room on another
    /// node), and subscribers then see the track as that peer's, in `tracks` and as the
    /// speaker. Any other participant naming a peer is refused (`forbidden`). A link is
    /// subscribed like anyone to every track but its own, so a track that came in through
    /// a link never goes back through it. False when no such participant is here.
    pub fn set_link(&mut self, room: &str, peer: &str) -> bool {
        self.set_flag(room, peer, |p| {
            p.link = true;
            p.pace_video = false;
        })
    }

    /// Apply `set` to participant `peer` of `room`; false when there is none.
    fn set_flag(&mut self, room: &str, peer: &str, set: impl FnOnce(&mut Participant)) -> bool {
        let pid = self.pid(room, peer);
        match pid.and_then(|pid| self.parts[pid].as_mut()) {
            Some(p) => {
                set(p);
                true
            }
            None => false,
        }
    }

    /// A packet that `peer` (with in-process media) publishes on its track `rtp.mid`:
    /// forwarded as one that came through its PC. Packets of unknown participants,
    /// participants without in-process media or m-lines it does not publish are dropped.
    pub fn handle_local_rtp(&mut self, now: Instant, room: &str, peer: &str, rtp: &LocalRtp) {
        self.tick(now);
        let Some(pid) = self.pid(room, peer) else {
            return;
        };
        if !self.parts[pid].as_ref().is_some_and(|p| p.local_media) {
            return;
        }
        let ext = ExtensionValues {
            audio_level: rtp.audio_level,
            voice_activity: rtp.voice_activity,
            ..Default::default()
        };
        let pkt = RtpIn {
            pt: rtp.pt,
            seq: rtp.seq,
            timestamp: rtp.timestamp,
            marker: rtp.marker,
            ext: &ext,
            payload: &rtp.payload,
            arrival: now,
        };
        self.on_rtp_in(pid, rtp.mid, None, &pkt);
    }
}
