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
use str0m::net::TcpType;
use str0m::rtp::Ssrc;
use str0m::{Candidate, IceCreds, Rtc};

use crate::config::{Grants, SfuConfig};
use crate::keyframe::KeyframeRequests;
use crate::layer::{BitrateMeter, LayerConfig, SubscriberLayers, MAX_LAYERS};
use crate::message::Source;
use crate::output::Transport;
use crate::rewrite::Rewriter;

/// Sent video packets kept per outgoing stream for retransmission (see `Participant::new`).
pub(crate) const RTX_CACHE_VIDEO_PACKETS: usize = 256;

/// One incoming simulcast layer of a published track.
pub(crate) struct Layer {
    pub rid: Rid,
    pub meter: BitrateMeter,
    /// From its last keyframe (0: unknown).
    pub size: (u16, u16),
}

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
    /// Simulcast layers by index (0 the smallest), as they show up.
    pub layers: [Option<Layer>; MAX_LAYERS],
    /// The bitrate of a single-layer track.
    pub meter: BitrateMeter,
    /// When the first simulcast packet came; layers are chosen from once the set had
    /// time to show up (they start within a few ms of each other: choosing at the first
    /// one would switch two or three times in a row, each a keyframe).
    pub layers_since: Option<Instant>,
    pub layers_settled: bool,
    /// The offer announced simulcast (rids) for it.
    pub simulcast: bool,
    /// Keyframe-request coalescing per layer (rid, or None without simulcast).
    pub pli: Vec<(Option<Rid>, KeyframeRequests)>,
    /// The peer whose track this is when a node link publishes it on that peer's behalf;
    /// None: the participant's own.
    pub origin: Option<Arc<str>>,
}

impl PubTrack {
    /// The peer subscribers are told this track belongs to: its origin, else the
    /// participant `owner` that publishes it.
    pub fn peer<'a>(&'a self, owner: &'a Arc<str>) -> &'a Arc<str> {
        self.origin.as_ref().unwrap_or(owner)
    }
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
    /// Simulcast layer forwarded now (None without simulcast or paused); the one wanted
    /// is the rewriter's target.
    pub layer: Option<Rid>,
    /// str0m's last queue sample time and the packets written since (queue bound).
    pub queue_sample: Option<Instant>,
    pub written_since_sample: usize,
    /// Tile size the browser reported for this mid (None: never reported).
    pub view: Option<(u32, u32)>,
    /// A node link's video slot carries every layer, each on its own rid
    /// ([`crate::layer::LINK_RIDS`]) through its own rewriter (target fixed to the layer);
    /// `rewriter` is then unused. Empty for every other slot.
    pub link_layers: Vec<LinkLayer>,
}

/// One layer of a node link's video slot.
pub(crate) struct LinkLayer {
    pub rewriter: Rewriter,
    /// Its send stream, found by mid and rid once (str0m looks that up by a scan of all
    /// of the participant's streams; by SSRC it is a map lookup).
    pub ssrc: Option<Ssrc>,
}

impl OutSlot {
    /// The slot carries no track any more: no layer is wanted.
    pub(crate) fn clear_targets(&mut self) {
        self.rewriter.set_target(None);
        for l in &mut self.link_layers {
            l.rewriter.set_target(None);
        }
    }
}

pub(crate) struct Participant {
    pub room: Arc<str>,
    pub peer: Arc<str>,
    pub grants: Grants,
    /// Its SDP is exchanged once (WHIP/WHEP): never offered to; its recvonly m-lines
    /// carry the room's tracks.
    pub fixed: bool,
    pub rtc: Rtc,
    pub ufrag: String,
    /// Local ICE password (the key of the browser's Binding requests' integrity).
    pub ice_pass: String,
    /// Remote addresses (per transport) learned from its accepted STUN requests.
    pub addrs: Vec<(Transport, SocketAddr)>,
    pub last_seen: Instant,
    /// str0m's next deadline, cached after each drain of `poll_output`.
    /// (None while a timeout is being handled.)
    pub rtc_timeout: Option<Instant>,
    /// Queued for a drain of `poll_output`.
    pub dirty: bool,
    /// Packets written to its (unpaced) streams since the last flush; queued in `due`
    /// while above 0.
    pub written: u32,
    /// The first browser offer was accepted (the PC exists on both sides).
    pub described: bool,
    /// The SFU's offer waiting for the browser's answer, when it was (last) sent, and its
    /// payload (sent again if unanswered).
    pub pending: Option<(SdpPendingOffer, Instant, String)>,
    /// Remote tracks changed: an SFU offer is due.
    pub renegotiate: bool,
    pub channel: Option<ChannelId>,
    /// Sources announced by `publish` for the next offer (mid -> source, and the peer
    /// whose track it is when a node link forwards it).
    pub publish_sources: HashMap<String, (Source, Option<Arc<str>>)>,
    pub published: Vec<PubTrack>,
    pub slots: Vec<OutSlot>,
    /// Incoming SSRC -> (mid, rid) (cache of str0m's stream lookup).
    pub rx: HashMap<Ssrc, (Mid, Option<Rid>)>,
    pub bwe: Option<u64>,
    /// The (minimum, desired) bitrates last given to str0m's estimator.
    pub probe_rates: (u64, u64),
    /// Its video streams are paced (the estimate leaves little headroom above what they
    /// send, or `SfuConfig::pace_video`); otherwise video leaves as it arrives.
    pub pace_video: bool,
    /// Layer choice over this participant's incoming videos (by slot mid).
    pub layers: SubscriberLayers<Mid>,
    /// The `tracks` map last sent (to send it again only when it changes).
    pub tracks_sent: String,
    /// Its media is exchanged in-process (`local.rs`), not through its `Rtc`.
    pub local_media: bool,
    /// A node-to-node link (`Sfu::set_link`): its `publish` may name the peer each track
    /// belongs to; it receives every layer of each video (`OutSlot::link_layers`),
    /// unpaced and without layer choice (the SFUs behind it choose).
    pub link: bool,
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
        let ice_pass = switchboard_util::random_hex(16);
        let creds = IceCreds {
            ufrag: ufrag.clone(),
            pass: ice_pass.clone(),
        };
        let mut builder = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_local_ice_credentials(creds)
            .enable_bwe(Some(Bitrate::bps(cfg.initial_bitrate)))
            // The RTX cache of each outgoing video stream (str0m's default 1,000 packets
            // for 3 s): an SFU keeps one per subscriber and track, so it is most of a
            // subscriber's memory. 256 packets answer NACKs for 0.8-1.3 s of a 1-3 Mbit/s
            // layer, longer than a receiver's jitter buffer waits for a repair.
            .set_send_buffer_video(RTX_CACHE_VIDEO_PACKETS)
            .clear_codecs()
            .enable_opus(true, false)
            // G.711 after Opus: Opus stays what an answer prefers, so a browser that states
            // no preference keeps sending it; one that asks for PCMU/PCMA (a room with a
            // phone, docs/sip.md) gets it, and its packets reach the SIP gateway untouched.
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .enable_vp8(true)
            // After VP8 (the preference of our answers): WHIP encoders such as OBS send H264.
            .enable_h264(true);
        if let Some(cert) = cert {
            builder = builder.set_dtls_cert(cert.clone());
        }
        let mut rtc = builder.build(now);
        for addr in &cfg.candidates {
            if let Ok(c) = Candidate::host(*addr, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        for addr in &cfg.tcp_candidates {
            let c = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build();
            if let Ok(c) = c {
                rtc.add_local_candidate(c);
            }
        }
        // Nothing to sustain yet; the layer choice sets what to probe for.
        rtc.bwe()
            .set_bitrate(Bitrate::bps(0), Bitrate::bps(cfg.initial_bitrate));
        Participant {
            room,
            peer,
            grants,
            fixed: false,
            rtc,
            ufrag,
            ice_pass,
            addrs: Vec::new(),
            last_seen: now,
            rtc_timeout: None,
            dirty: false,
            written: 0,
            described: false,
            pending: None,
            renegotiate: false,
            channel: None,
            publish_sources: HashMap::new(),
            published: Vec::new(),
            slots: Vec::new(),
            rx: HashMap::new(),
            bwe: None,
            layers: SubscriberLayers::new(LayerConfig::default()),
            probe_rates: (0, 0),
            // Until an estimate shows headroom.
            pace_video: true,
            tracks_sent: String::new(),
            local_media: false,
            link: false,
        }
    }

    pub fn published(&self, mid: Mid) -> Option<usize> {
        self.published.iter().position(|t| t.mid == mid)
    }
}

/// The str0m send stream of the outgoing m-line `mid` once negotiated, set up for
/// forwarding: its SSRC. Video is paced as the participant's other videos are
/// ([`Participant::pace_video`]); audio is unpaced in str0m already.
pub(crate) fn out_stream(p: &mut Participant, mid: Mid, kind: MediaKind) -> Option<Ssrc> {
    let pace = p.pace_video;
    let mut api = p.rtc.direct_api();
    let tx = api.stream_tx_by_mid(mid, None)?;
    if kind == MediaKind::Video {
        tx.set_unpaced(!pace);
    }
    Some(tx.ssrc())
}

/// The message module's media kind of a str0m one.
pub(crate) fn msg_kind(kind: MediaKind) -> crate::message::MediaKind {
    match kind {
        MediaKind::Audio => crate::message::MediaKind::Audio,
        MediaKind::Video => crate::message::MediaKind::Video,
    }
}
