//! A client of this SFU's protocol, the way a browser is one (docs/signaling.md "SFU
//! rooms"), for participants that live in a server: a node's end of a node-to-node link
//! ([`crate::link`]). Sans-IO like the SFU: fed signaling relays, datagrams and time, it
//! returns relays to send, datagrams and the RTP it received, tagged with the peer and
//! source the SFU's `tracks` map names.
//!
//! Negotiation is the browser's: the client offers first (a data channel, then a sending
//! m-line per published track, each announced by a `publish`), answers the SFU's offers,
//! and is the polite side of perfect negotiation (a colliding offer of its own is rolled
//! back and made again after the answer). Why our own: no crate speaks this protocol;
//! str0m does the WebRTC.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelConfig;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::layer::{link_rid, link_simulcast};
use crate::message::{PublishedTrack, SfuMessage, Source};
use crate::output::SignalKind;

/// Why the client cannot go on (the SFU sent what no SFU of ours sends, or str0m failed).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A relay that is not the JSON the protocol says.
    #[error("bad {0} from the SFU")]
    BadRelay(&'static str),
    /// str0m refused an input or a description.
    #[error("WebRTC: {0}")]
    Rtc(String),
}

fn rtc_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Rtc(e.to_string())
}

/// A remote track on this client's connection, as the SFU's `tracks` map names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteTrack {
    /// The peer whose track it is.
    pub peer: Arc<str>,
    /// What it carries.
    pub source: Source,
}

/// One RTP packet the client received on a remote track.
#[derive(Debug)]
pub struct ReceivedRtp {
    /// The m-line it came on (see [`SfuClient::remote`]).
    pub mid: Mid,
    /// Its simulcast layer, when the m-line has several (an SFU sends a link every layer
    /// of a video, rid = the layer's index: [`crate::layer::LINK_RIDS`]).
    pub rid: Option<Rid>,
    /// Its codec (payload types differ per connection; the codec does not).
    pub codec: Codec,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub ext: ExtensionValues,
    pub payload: Arc<[u8]>,
}

/// What the client asks its driver to do.
#[derive(Debug)]
pub enum ClientOutput {
    /// Relay this to the SFU participant of the room.
    Signal { kind: SignalKind, payload: String },
    /// Send a datagram.
    Transmit {
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// RTP of a remote track.
    Rtp(ReceivedRtp),
    /// The SFU asks for a keyframe of the published track on `mid` (of its layer `rid`,
    /// for a layered one).
    KeyframeRequest { mid: Mid, rid: Option<Rid> },
    /// The SFU's map of remote tracks changed (see [`SfuClient::remote`]).
    TracksChanged,
    /// ICE and DTLS are up.
    Connected,
}

/// A track this client publishes.
struct Outgoing {
    kind: MediaKind,
    source: Source,
    origin: Option<Arc<str>>,
    /// Sent as simulcast with the [`crate::layer::LINK_RIDS`] layers.
    layered: bool,
    /// Its m-line, once in an offer.
    mid: Option<Mid>,
    /// Answered: packets may flow.
    live: bool,
    /// Unpublished: its m-line goes inactive in the next offer.
    gone: bool,
}

/// A client connection to the SFU (see the module docs).
pub struct SfuClient {
    rtc: Rtc,
    local: SocketAddr,
    outgoing: Vec<Outgoing>,
    /// Our offer waiting for the SFU's answer.
    pending: Option<SdpPendingOffer>,
    /// Tracks were added since the last offer (or the first offer is due).
    offer_due: bool,
    has_channel: bool,
    remote: HashMap<Mid, RemoteTrack>,
    /// The room's dominant speaker as the SFU last named it.
    speaker: Option<Arc<str>>,
    out: VecDeque<ClientOutput>,
    next_timeout: Instant,
}

impl SfuClient {
    /// A client whose datagrams leave from `local` (its one host candidate).
    pub fn new(local: SocketAddr, now: Instant) -> Result<SfuClient, ClientError> {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now);
        let candidate = Candidate::host(local, "udp").map_err(rtc_err)?;
        rtc.add_local_candidate(candidate);
        Ok(SfuClient {
            rtc,
            local,
            outgoing: Vec::new(),
            pending: None,
            offer_due: true,
            has_channel: false,
            remote: HashMap::new(),
            speaker: None,
            out: VecDeque::new(),
            next_timeout: now,
        })
    }

    /// Publish a track of `kind` carrying `source`, on behalf of `origin` (a node link's
    /// peer) or our own: it goes into the next offer. Returns its handle for
    /// [`SfuClient::write_rtp`].
    pub fn publish(&mut self, kind: MediaKind, source: Source, origin: Option<Arc<str>>) -> usize {
        self.push_outgoing(kind, source, origin, false)
    }

    /// Publish a video as simulcast, its layers on the rids [`crate::layer::LINK_RIDS`]
    /// (0 the smallest): the SFU then chooses a layer per subscriber, as for a browser's
    /// simulcast. Write each layer's packets with its rid ([`SfuClient::write_rtp`]).
    pub fn publish_layered(&mut self, source: Source, origin: Option<Arc<str>>) -> usize {
        self.push_outgoing(MediaKind::Video, source, origin, true)
    }

    fn push_outgoing(
        &mut self,
        kind: MediaKind,
        source: Source,
        origin: Option<Arc<str>>,
        layered: bool,
    ) -> usize {
        self.outgoing.push(Outgoing {
            kind,
            source,
            origin,
            layered,
            mid: None,
            live: false,
            gone: false,
        });
        self.offer_due = true;
        self.outgoing.len() - 1
    }

    /// Stop publishing track `handle`: its m-line goes inactive in the next offer and the
    /// SFU takes it off its subscribers.
    pub fn unpublish(&mut self, handle: usize) {
        if let Some(o) = self.outgoing.get_mut(handle).filter(|o| !o.gone) {
            o.gone = true;
            o.live = false;
            self.offer_due = true;
        }
    }

    /// The address its datagrams leave from.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The m-line of published track `handle`, once offered.
    pub fn mid_of(&self, handle: usize) -> Option<Mid> {
        self.outgoing.get(handle).and_then(|o| o.mid)
    }

    /// The remote track on `mid`, as the SFU's last `tracks` map named it.
    pub fn remote(&self, mid: Mid) -> Option<&RemoteTrack> {
        self.remote.get(&mid)
    }

    /// The room's dominant speaker as the SFU last named it (`None`: silence, or not yet).
    pub fn speaker(&self) -> Option<&str> {
        self.speaker.as_deref()
    }

    /// Tell the SFU the tile size each remote video is shown at (`view`; a video left
    /// out is hidden): it chooses the layers by them.
    pub fn send_view(&mut self, tiles: &[(Mid, u32, u32)]) {
        let tiles = tiles
            .iter()
            .map(|(mid, width, height)| crate::message::TileView {
                mid: mid.to_string().into(),
                width: *width,
                height: *height,
            })
            .collect();
        self.out.push_back(ClientOutput::Signal {
            kind: SignalKind::Message,
            payload: SfuMessage::View(tiles).render(),
        });
    }

    /// Every remote track, by m-line.
    pub fn remotes(&self) -> impl Iterator<Item = (Mid, &RemoteTrack)> {
        self.remote.iter().map(|(m, r)| (*m, r))
    }

    /// A relay from the SFU participant (`payload` as the hub hands it over: a JSON string
    /// for offers and answers, an object for messages). The SFU is ICE-lite and sends no
    /// candidates: they are in its descriptions.
    pub fn handle_signal(&mut self, kind: SignalKind, payload: &str) -> Result<(), ClientError> {
        match kind {
            SignalKind::Offer => {
                let sdp: String =
                    serde_json::from_str(payload).map_err(|_| ClientError::BadRelay("offer"))?;
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(rtc_err)?;
                // Polite: our own offer in flight is dropped (str0m discards it on
                // accept) and made again after this answer, with the same tracks.
                // (The SFU offers only once it took our first offer, so the data channel
                // is never in a rolled-back offer alone.)
                if self.pending.take().is_some() {
                    for o in self.outgoing.iter_mut().filter(|o| !o.live) {
                        o.mid = None;
                    }
                    self.offer_due = true;
                }
                let answer = self.rtc.sdp_api().accept_offer(offer).map_err(rtc_err)?;
                let payload = json_string(&answer.to_sdp_string());
                self.out.push_back(ClientOutput::Signal {
                    kind: SignalKind::Answer,
                    payload,
                });
            }
            SignalKind::Answer => {
                let sdp: String =
                    serde_json::from_str(payload).map_err(|_| ClientError::BadRelay("answer"))?;
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(rtc_err)?;
                if let Some(p) = self.pending.take() {
                    match self.rtc.sdp_api().accept_answer(p, answer) {
                        Ok(()) => {
                            for o in &mut self.outgoing {
                                o.live |= o.mid.is_some() && !o.gone;
                            }
                        }
                        Err(e) => {
                            // An answer to an offer of ours that was rolled back (the SFU's
                            // colliding offer, or its offer sent again after a delay, came
                            // first), not to the one pending: that one is void now. Offer
                            // the same tracks again rather than end the connection (seen
                            // on a loaded machine: "Mid in answer is not in offer").
                            tracing::debug!(error = %e, "SFU client: an answer to an earlier offer; offering again");
                            for o in self.outgoing.iter_mut().filter(|o| !o.live) {
                                o.mid = None;
                            }
                            self.offer_due = true;
                        }
                    }
                }
            }
            SignalKind::Message => self.on_message(payload),
        }
        self.negotiate()
    }

    fn on_message(&mut self, payload: &str) {
        let list = match SfuMessage::parse(payload) {
            Ok(SfuMessage::Tracks(list)) => list,
            Ok(SfuMessage::Speaker(peer)) => {
                self.speaker = peer.map(|p| Arc::from(&*p));
                return;
            }
            // Layers, errors: nothing a link acts on.
            _ => return,
        };
        self.remote = list
            .into_iter()
            .map(|t| {
                (
                    Mid::from(&*t.mid),
                    RemoteTrack {
                        peer: Arc::from(&*t.peer),
                        source: t.source,
                    },
                )
            })
            .collect();
        self.out.push_back(ClientOutput::TracksChanged);
    }

    /// Offer when tracks were published or unpublished (or nothing was offered yet) and no
    /// offer is out; else the offer follows the answer.
    pub fn negotiate(&mut self) -> Result<(), ClientError> {
        if !self.offer_due || self.pending.is_some() {
            return Ok(());
        }
        self.offer_due = false;
        let mut api = self.rtc.sdp_api();
        for o in &mut self.outgoing {
            match (o.mid, o.gone) {
                (None, false) => {
                    let simulcast = o.layered.then(link_simulcast);
                    o.mid = Some(api.add_media(o.kind, Direction::SendOnly, None, None, simulcast))
                }
                (Some(mid), true) => api.set_direction(mid, Direction::Inactive),
                _ => {}
            }
        }
        if !self.has_channel {
            // The SDK's negotiated channel: every SFU connection has it.
            api.add_channel_with_config(ChannelConfig {
                label: "switchboard".into(),
                negotiated: Some(0),
                ..Default::default()
            });
            self.has_channel = true;
        }
        let Some((offer, pending)) = api.apply() else {
            return Ok(());
        };
        self.pending = Some(pending);
        let tracks = self
            .outgoing
            .iter()
            .filter(|o| !o.gone)
            .filter_map(|o| {
                Some(PublishedTrack {
                    mid: o.mid?.to_string().into(),
                    source: o.source,
                    peer: o.origin.as_deref().map(Into::into),
                })
            })
            .collect();
        self.out.push_back(ClientOutput::Signal {
            kind: SignalKind::Message,
            payload: SfuMessage::Publish(tracks).render(),
        });
        self.out.push_back(ClientOutput::Signal {
            kind: SignalKind::Offer,
            payload: json_string(&offer.to_sdp_string()),
        });
        Ok(())
    }

    /// A datagram from `source` to our local address.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        contents: &[u8],
    ) -> Result<(), ClientError> {
        let Ok(contents) = contents.try_into() else {
            return Ok(()); // not STUN, DTLS or RTP: ignored, as str0m would
        };
        let r = Receive {
            proto: Protocol::Udp,
            source,
            destination: self.local,
            contents,
        };
        self.rtc
            .handle_input(Input::Receive(now, r))
            .map_err(rtc_err)?;
        self.drain()
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        self.rtc
            .handle_input(Input::Timeout(now))
            .map_err(rtc_err)?;
        self.drain()
    }

    /// When [`SfuClient::handle_timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Result<Instant, ClientError> {
        self.drain()?;
        Ok(self.next_timeout)
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    /// Send an RTP packet on published track `handle` (dropped until it is answered, or
    /// when the connection does not have `codec`); `rid` is its layer on a layered track
    /// (`None` there: layer 0), ignored on others.
    #[allow(clippy::too_many_arguments)]
    pub fn write_rtp(
        &mut self,
        now: Instant,
        handle: usize,
        rid: Option<Rid>,
        codec: Codec,
        seq: u64,
        timestamp: u32,
        marker: bool,
        ext: ExtensionValues,
        payload: Arc<[u8]>,
    ) -> Result<(), ClientError> {
        let Some((mid, layered)) = self
            .outgoing
            .get(handle)
            .filter(|o| o.live)
            .and_then(|o| Some((o.mid?, o.layered)))
        else {
            return Ok(());
        };
        let Some(pt) = self.pt_of(codec) else {
            return Ok(());
        };
        let rid = if layered {
            rid.or_else(|| link_rid(0))
        } else {
            None
        };
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, rid) else {
            return Ok(());
        };
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(seq), timestamp, now, payload)
                .marker(marker)
                .ext_vals(ext)
                .nackable(true),
        );
        self.drain()
    }

    /// Ask the SFU for a keyframe of the remote video on `mid` (of its layer `rid` when
    /// the SFU sends it layered).
    pub fn request_keyframe(&mut self, mid: Mid, rid: Option<Rid>) -> Result<(), ClientError> {
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        self.drain()
    }

    /// Move str0m's output to ours.
    fn drain(&mut self) -> Result<(), ClientError> {
        loop {
            match self.rtc.poll_output().map_err(rtc_err)? {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return Ok(());
                }
                Output::Transmit(t) => self.out.push_back(ClientOutput::Transmit {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.out.push_back(ClientOutput::Connected),
            Event::KeyframeRequest(r) => self.out.push_back(ClientOutput::KeyframeRequest {
                mid: r.mid,
                rid: r.rid,
            }),
            Event::RtpPacket(p) => {
                let Some((mid, rid)) = self
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|s| (s.mid(), s.rid()))
                else {
                    return;
                };
                let Some(codec) = self
                    .rtc
                    .codec_config()
                    .find(|c| c.pt() == p.header.payload_type)
                    .map(|c| c.spec().codec)
                else {
                    return;
                };
                self.out.push_back(ClientOutput::Rtp(ReceivedRtp {
                    mid,
                    rid,
                    codec,
                    seq: *p.seq_no,
                    timestamp: p.header.timestamp,
                    marker: p.header.marker,
                    ext: p.header.ext_vals,
                    payload: p.payload,
                }));
            }
            _ => {}
        }
    }

    fn pt_of(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }
}

fn json_string(s: &str) -> String {
    // A string always serializes.
    serde_json::to_string(s).unwrap_or_default()
}
