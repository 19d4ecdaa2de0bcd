//! A node-to-node link of a room that spans nodes: the relay between two [`SfuClient`]s,
//! one connected to the room's SFU on the far node (`up`), one to this node's SFU
//! (`down`). Each is a participant marked as a link on its SFU ([`Sfu::set_link`]):
//! whatever the far SFU sends `up` is published `down` in the name of the peer the far
//! `tracks` map gives, and the other way round. Each SFU leaves a link's own tracks out of
//! what it sends that link, so a track crosses once, whatever the number of subscribers
//! behind it, and never comes back.
//!
//! Keyframe requests follow the media backwards (a subscriber's PLI at this node reaches
//! the publisher on the far node, for the layer it asked about).
//!
//! Simulcast crosses whole: an SFU sends a link every layer of a video (each once), on
//! one m-line whose rids are the layer indices ([`LINK_RIDS`](crate::layer::LINK_RIDS)), and the link publishes
//! it on the other side as a simulcast track with the same rids. So layer choice is each
//! SFU's own, per subscriber, exactly as for a browser's simulcast: a small tile on this
//! node gets the low layer while a large one gets the high one, whatever the far side's
//! subscribers want. Audio crosses with its level header extension, so the dominant
//! speaker is found on both nodes.
//!
//! [`Sfu::set_link`]: crate::Sfu::set_link

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::{MediaKind, Mid, Rid};

use crate::client::{ClientError, ClientOutput, ReceivedRtp, RemoteTrack, SfuClient};
use crate::message::Source;

/// Which of a link's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// To the room's SFU on the far node.
    Up,
    /// To this node's SFU.
    Down,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Up => Side::Down,
            Side::Down => Side::Up,
        }
    }
}

/// A remote track of one side relayed as a published track of the other.
struct Relayed {
    track: RemoteTrack,
    /// Its handle on the other side's client.
    handle: usize,
}

/// Counters of a link (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Tracks relayed from the far node to this one, now.
    pub tracks_in: usize,
    /// Tracks relayed from this node to the far one, now.
    pub tracks_out: usize,
    /// RTP packets relayed, far node to this one.
    pub packets_in: u64,
    /// RTP packets relayed, this node to the far one.
    pub packets_out: u64,
}

/// The relay (see the module docs). The driver moves each side's signals and datagrams
/// ([`NodeLink::poll_output`]) and feeds each side's input to [`NodeLink::client`].
pub struct NodeLink {
    up: SfuClient,
    down: SfuClient,
    /// By the m-line of a remote track on the side it arrives on.
    from_up: HashMap<Mid, Relayed>,
    from_down: HashMap<Mid, Relayed>,
    stats: LinkStats,
}

impl NodeLink {
    /// A link from two fresh clients (see [`SfuClient::new`]).
    pub fn new(up: SfuClient, down: SfuClient) -> NodeLink {
        NodeLink {
            up,
            down,
            from_up: HashMap::new(),
            from_down: HashMap::new(),
            stats: LinkStats::default(),
        }
    }

    /// One side's client, to feed it signals, datagrams and time.
    pub fn client(&mut self, side: Side) -> &mut SfuClient {
        match side {
            Side::Up => &mut self.up,
            Side::Down => &mut self.down,
        }
    }

    /// The link's counters.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            tracks_in: self.from_up.len(),
            tracks_out: self.from_down.len(),
            ..self.stats
        }
    }

    /// The next signal or datagram of either side for the driver; media, keyframe
    /// requests and track changes are relayed here and not returned.
    pub fn poll_output(
        &mut self,
        now: Instant,
    ) -> Result<Option<(Side, ClientOutput)>, ClientError> {
        loop {
            let (side, out) = match self.up.poll_output() {
                Some(o) => (Side::Up, o),
                None => match self.down.poll_output() {
                    Some(o) => (Side::Down, o),
                    None => return Ok(None),
                },
            };
            match out {
                ClientOutput::Rtp(rtp) => self.relay_rtp(now, side, rtp)?,
                ClientOutput::KeyframeRequest { mid, rid } => {
                    self.relay_keyframe_request(side, mid, rid)?
                }
                ClientOutput::TracksChanged => self.sync_tracks(side)?,
                other => return Ok(Some((side, other))),
            }
        }
    }

    /// The earlier of the two clients' deadlines.
    pub fn poll_timeout(&mut self) -> Result<Instant, ClientError> {
        Ok(self.up.poll_timeout()?.min(self.down.poll_timeout()?))
    }

    /// Time passed, on both sides.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        self.up.handle_timeout(now)?;
        self.down.handle_timeout(now)
    }

    fn split(&mut self, side: Side) -> (&mut HashMap<Mid, Relayed>, &mut SfuClient) {
        match side {
            Side::Up => (&mut self.from_up, &mut self.down),
            Side::Down => (&mut self.from_down, &mut self.up),
        }
    }

    /// `side`'s map of remote tracks changed: publish the new ones on the other side,
    /// unpublish the ones that went (or whose m-line now carries another track).
    fn sync_tracks(&mut self, side: Side) -> Result<(), ClientError> {
        let now_tracks: Vec<(Mid, RemoteTrack)> = match side {
            Side::Up => self.up.remotes().map(|(m, t)| (m, t.clone())).collect(),
            Side::Down => self.down.remotes().map(|(m, t)| (m, t.clone())).collect(),
        };
        let (relayed, other) = self.split(side);
        relayed.retain(|mid, r| {
            let keep = now_tracks.iter().any(|(m, t)| m == mid && *t == r.track);
            if !keep {
                other.unpublish(r.handle);
            }
            keep
        });
        for (mid, track) in now_tracks {
            if relayed.contains_key(&mid) {
                continue;
            }
            let kind = kind_of(track.source);
            let handle = if kind == MediaKind::Video {
                other.publish_layered(track.source, Some(track.peer.clone()))
            } else {
                other.publish(kind, track.source, Some(track.peer.clone()))
            };
            relayed.insert(mid, Relayed { track, handle });
        }
        other.negotiate()
    }

    fn relay_rtp(&mut self, now: Instant, side: Side, rtp: ReceivedRtp) -> Result<(), ClientError> {
        let (relayed, other) = self.split(side);
        let Some(r) = relayed.get(&rtp.mid) else {
            return Ok(());
        };
        other.write_rtp(
            now,
            r.handle,
            rtp.rid,
            rtp.codec,
            rtp.seq,
            rtp.timestamp,
            rtp.marker,
            rtp.ext,
            rtp.payload,
        )?;
        match side {
            Side::Up => self.stats.packets_in += 1,
            Side::Down => self.stats.packets_out += 1,
        }
        Ok(())
    }

    /// `side`'s SFU wants a keyframe of (a layer of) a track we publish there: ask for one
    /// where it comes from.
    fn relay_keyframe_request(
        &mut self,
        side: Side,
        mid: Mid,
        rid: Option<Rid>,
    ) -> Result<(), ClientError> {
        // What we publish on `side` came from the other side.
        let (relayed, client) = match side {
            Side::Up => (&self.from_down, &self.up),
            Side::Down => (&self.from_up, &self.down),
        };
        let found = relayed
            .iter()
            .find(|(_, r)| client.mid_of(r.handle) == Some(mid))
            .map(|(m, _)| *m);
        match found {
            Some(source_mid) => self.client(side.other()).request_keyframe(source_mid, rid),
            None => Ok(()),
        }
    }
}

/// The str0m media kind of a source.
fn kind_of(source: Source) -> MediaKind {
    match source.kind() {
        crate::message::MediaKind::Audio => MediaKind::Audio,
        crate::message::MediaKind::Video => MediaKind::Video,
    }
}
