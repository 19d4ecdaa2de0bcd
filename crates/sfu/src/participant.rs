//! One participant of the SFU: its str0m `Rtc` (ICE-lite, RTP mode, BWE), the state of
//! the negotiation with its browser, the tracks it publishes and the outgoing m-lines
//! ("slots") that carry other participants' tracks to it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::change::SdpPendingOffer;
use str0m::channel::ChannelId;
use str0m::config::DtlsCert;
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::rtp::Ssrc;
use str0m::{Candidate, IceCreds, Rtc};

use crate::config::{Grants, SfuConfig};
use crate::keyframe::KeyframeRequests;
use crate::message::Source;
use crate::rewrite::Rewriter;

/// Index of a participant in the SFU's slab.
pub(crate) type Pid = usize;

/// Most source addresses remembered per participant (candidate pairs the browser tries).
pub(crate) const MAX_ADDRS: usize = 8;

/// A published track (a sending m-line of the participant's browser).
pub(crate) struct PubTrack {
    pub mid: Mid,
    pub kind: MediaKind,
    pub source: Source,
    /// Subscribers and the slot that carries this track to each.
    pub subs: Vec<(Pid, usize)>,
    /// Simulcast layers seen (rid, last packet time).
    pub layers: Vec<(Rid, Instant)>,
    /// Keyframe-request coalescing per layer (rid, or None without simulcast).
    pub pli: Vec<(Option<Rid>, KeyframeRequests)>,
}

/// Where an outgoing slot is in its negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// In the SFU's pending offer (sendonly).
    Offered,
    /// Answered: packets flow.
    Active,
    /// In the pending offer as inactive (its track left).
    Stopping,
    /// Inactive, reusable for a new track of the same kind.
    Free,
}

/// An outgoing m-line of this participant's PC.
pub(crate) struct OutSlot {
    pub mid: Mid,
    pub kind: MediaKind,
    pub state: SlotState,
    /// The publisher's participant and mid, while the slot carries a track.
    pub track: Option<(Pid, Mid)>,
    /// The str0m send stream once negotiated.
    pub ssrc: Option<Ssrc>,
    /// Last incoming PT and the outgoing PT it maps to.
    pub pt_map: Option<(Pt, Pt)>,
    pub rewriter: Rewriter,
    /// Simulcast layer forwarded now, and the one wanted (None without simulcast).
    pub layer: Option<Rid>,
    pub target: Option<Rid>,
    /// Tile size the browser reported for this mid (None: never reported).
    pub view: Option<(u32, u32)>,
}

pub(crate) struct Participant {
    pub room: Arc<str>,
    pub peer: Arc<str>,
    pub grants: Grants,
    pub rtc: Rtc,
    pub ufrag: String,
    pub addrs: Vec<SocketAddr>,
    pub last_seen: Instant,
    /// str0m's next deadline, cached after each drain of `poll_output`.
    pub rtc_timeout: Instant,
    /// Queued for a drain of `poll_output`.
    pub dirty: bool,
    /// The first browser offer was accepted (the PC exists on both sides).
    pub described: bool,
    /// The SFU's offer waiting for the browser's answer, when it was (last) sent, and its
    /// payload (sent again if unanswered).
    pub pending: Option<(SdpPendingOffer, Instant, String)>,
    /// Remote tracks changed: an SFU offer is due.
    pub renegotiate: bool,
    pub channel: Option<ChannelId>,
    /// Sources announced by `publish` for the next offer (mid -> source).
    pub publish_sources: HashMap<String, Source>,
    pub published: Vec<PubTrack>,
    pub slots: Vec<OutSlot>,
    /// Incoming SSRC -> (mid, rid) (cache of str0m's stream lookup).
    pub rx: HashMap<Ssrc, (Mid, Option<Rid>)>,
    pub bwe: Option<u64>,
    /// The `tracks` map last sent (to send it again only when it changes).
    pub tracks_sent: String,
}

impl Participant {
    pub fn new(
        cfg: &SfuConfig,
        cert: Option<&DtlsCert>,
        room: Arc<str>,
        peer: Arc<str>,
        grants: Grants,
        ufrag: String,
        now: Instant,
    ) -> Participant {
        let creds = IceCreds {
            ufrag: ufrag.clone(),
            pass: switchboard_util::random_hex(16),
        };
        let mut builder = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_local_ice_credentials(creds)
            .enable_bwe(Some(Bitrate::bps(cfg.initial_bitrate)))
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true);
        if let Some(cert) = cert {
            builder = builder.set_dtls_cert(cert.clone());
        }
        let mut rtc = builder.build(now);
        for addr in &cfg.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        rtc.bwe().set_bitrate(
            Bitrate::bps(cfg.initial_bitrate.min(300_000)),
            Bitrate::bps(cfg.max_bitrate),
        );
        Participant {
            room,
            peer,
            grants,
            rtc,
            ufrag,
            addrs: Vec::new(),
            last_seen: now,
            rtc_timeout: now,
            dirty: false,
            described: false,
            pending: None,
            renegotiate: false,
            channel: None,
            publish_sources: HashMap::new(),
            published: Vec::new(),
            slots: Vec::new(),
            rx: HashMap::new(),
            bwe: None,
            tracks_sent: String::new(),
        }
    }

    pub fn published(&self, mid: Mid) -> Option<usize> {
        self.published.iter().position(|t| t.mid == mid)
    }
}

/// The message module's media kind of a str0m one.
pub(crate) fn msg_kind(kind: MediaKind) -> crate::message::MediaKind {
    match kind {
        MediaKind::Audio => crate::message::MediaKind::Audio,
        MediaKind::Video => crate::message::MediaKind::Video,
    }
}
