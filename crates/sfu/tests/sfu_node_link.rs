//! A room that spans two nodes: SFU A and SFU B, each with its own participants, joined
//! by a `NodeLink` (an `SfuClient` on each SFU, both marked as links). Every endpoint is
//! an `SfuClient` (the browser's protocol in Rust); datagrams and relays move between
//! them in a loop on fake time. No sockets.
//!
//! What a user of a spanning room checks: subscribers on both nodes receive every
//! publisher's tracks under the publisher's name, each track crosses the link once
//! however many subscribers are behind it, nothing comes back through the link, a
//! subscriber's keyframe request on B reaches the publisher on A, and a publisher that
//! leaves A leaves B too. With simulcast: every layer crosses once, and each subscriber
//! on B gets the layer its own tile wants (one small, one large); the speaker on A is
//! the speaker on B.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Rid};
use str0m::rtp::ExtensionValues;
use switchboard_sfu::client::{ClientOutput, SfuClient};
use switchboard_sfu::link::{NodeLink, Side};
use switchboard_sfu::message::Source;
use switchboard_sfu::{Grants, Sfu, SfuConfig, SfuOutput, SignalIn, SignalKind};

const ROOM: &str = "span";
const A: usize = 0;
const B: usize = 1;

fn sfu_addr(node: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, node as u8, 1], 3480))
}

/// A browser stand-in on one node.
struct Endpoint {
    node: usize,
    peer: String,
    client: SfuClient,
    /// Published tracks: (handle, codec, layers: 1, or 3 for a simulcast camera).
    sends: Vec<(usize, Codec, u8)>,
    /// Its audio level (−dBov, str0m's negated form: −127 silence, 0 loudest).
    level: i8,
    /// RTP received, by (peer, kind).
    got: HashMap<(String, &'static str), u64>,
    /// Video packets received, by (peer, layer): each layer's payload is tagged with it.
    layers: HashMap<(String, u8), u64>,
    keyframe_requests: u64,
    seq: u64,
}

struct Span {
    now: Instant,
    sfus: [Sfu; 2],
    eps: Vec<Endpoint>,
    link: NodeLink,
}

impl Span {
    fn new() -> Span {
        let now = Instant::now();
        let sfu = |node: usize| {
            Sfu::new(
                SfuConfig {
                    ufrag_prefix: format!("n{node}"),
                    candidates: vec![sfu_addr(node)],
                    ..SfuConfig::default()
                },
                now,
            )
            .unwrap()
        };
        let mut sfus = [sfu(A), sfu(B)];
        // The link: participant "link-b" on A (its up side), "link-a" on B (its down side).
        for (node, peer) in [(A, "link-b"), (B, "link-a")] {
            sfus[node]
                .add_participant(ROOM, peer, Grants::default(), now)
                .unwrap();
            assert!(sfus[node].set_link(ROOM, peer));
        }
        let up = SfuClient::new("10.0.9.1:5000".parse().unwrap(), now).unwrap();
        let down = SfuClient::new("10.0.9.2:5000".parse().unwrap(), now).unwrap();
        let mut span = Span {
            now,
            sfus,
            eps: Vec::new(),
            link: NodeLink::new(up, down),
        };
        for side in [Side::Up, Side::Down] {
            span.link.client(side).negotiate().unwrap();
        }
        span
    }

    /// A participant joins `node`, publishing `sources`.
    fn join(&mut self, node: usize, peer: &str, sources: &[Source]) -> usize {
        self.join_with(node, peer, sources, false, -127)
    }

    /// A participant joins `node`, publishing `sources`, its camera in three simulcast
    /// layers when `simulcast`, its microphone at `level`.
    fn join_with(
        &mut self,
        node: usize,
        peer: &str,
        sources: &[Source],
        simulcast: bool,
        level: i8,
    ) -> usize {
        self.sfus[node]
            .add_participant(ROOM, peer, Grants::default(), self.now)
            .unwrap();
        let n = self.eps.len() as u8 + 2;
        let mut client =
            SfuClient::new(SocketAddr::from(([10, 0, node as u8, n], 5000)), self.now).unwrap();
        let mut sends = Vec::new();
        for &s in sources {
            let send = match s {
                Source::Microphone => (client.publish(MediaKind::Audio, s, None), Codec::Opus, 1),
                _ if simulcast => (client.publish_layered(s, None), Codec::Vp8, 3),
                _ => (client.publish(MediaKind::Video, s, None), Codec::Vp8, 1),
            };
            sends.push(send);
        }
        client.negotiate().unwrap();
        self.eps.push(Endpoint {
            node,
            peer: peer.into(),
            client,
            sends,
            level,
            got: HashMap::new(),
            layers: HashMap::new(),
            keyframe_requests: 0,
            seq: 0,
        });
        self.eps.len() - 1
    }

    fn ep(&self, peer: &str) -> &Endpoint {
        self.eps.iter().find(|e| e.peer == peer).unwrap()
    }

    /// Route everything that is waiting until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.eps.len() {
                while let Some(o) = self.eps[i].client.poll_output() {
                    moved = true;
                    let (node, peer) = (self.eps[i].node, self.eps[i].peer.clone());
                    match o {
                        ClientOutput::Rtp(rtp) => {
                            let e = &mut self.eps[i];
                            if let Some(t) = e.client.remote(rtp.mid) {
                                let kind = match t.source {
                                    Source::Microphone | Source::ScreenAudio => "audio",
                                    _ => "video",
                                };
                                *e.got.entry((t.peer.to_string(), kind)).or_default() += 1;
                                if kind == "video" {
                                    let tag = rtp.payload.get(LAYER_TAG_AT).map_or(0, |b| b & 0x0f);
                                    *e.layers.entry((t.peer.to_string(), tag)).or_default() += 1;
                                }
                            }
                        }
                        ClientOutput::KeyframeRequest { .. } => self.eps[i].keyframe_requests += 1,
                        other => self.deliver_to_sfu(node, &peer, other),
                    }
                }
            }
            while let Some((side, o)) = self.link.poll_output(self.now).unwrap() {
                moved = true;
                let (node, peer) = match side {
                    Side::Up => (A, "link-b"),
                    Side::Down => (B, "link-a"),
                };
                self.deliver_to_sfu(node, peer, o);
            }
            for node in [A, B] {
                self.sfus[node].flush(self.now);
                while let Some(o) = self.sfus[node].poll_output() {
                    moved = true;
                    self.deliver_from_sfu(node, o);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never settled");
    }

    fn deliver_to_sfu(&mut self, node: usize, peer: &str, o: ClientOutput) {
        match o {
            ClientOutput::Signal { kind, payload } => {
                let s = match kind {
                    SignalKind::Offer => SignalIn::Offer(&payload),
                    SignalKind::Answer => SignalIn::Answer(&payload),
                    SignalKind::Message => SignalIn::Message(&payload),
                };
                self.sfus[node]
                    .handle_signal(ROOM, peer, s, self.now)
                    .unwrap();
            }
            ClientOutput::Transmit {
                source,
                destination,
                contents,
            } => {
                assert_eq!(
                    destination,
                    sfu_addr(node),
                    "{peer} sends to its own node's SFU only"
                );
                self.sfus[node].handle_datagram(self.now, source, destination, &contents);
            }
            _ => {}
        }
    }

    fn deliver_from_sfu(&mut self, node: usize, o: SfuOutput) {
        match o {
            SfuOutput::Transmit {
                source,
                destination,
                contents,
                ..
            } => {
                let now = self.now;
                if let Some(e) = self
                    .eps
                    .iter_mut()
                    .find(|e| e.client.local() == destination)
                {
                    e.client.handle_datagram(now, source, &contents).unwrap();
                } else {
                    let side = if node == A { Side::Up } else { Side::Down };
                    let c = self.link.client(side);
                    if c.local() == destination {
                        c.handle_datagram(now, source, &contents).unwrap();
                    }
                }
            }
            SfuOutput::Signal {
                to, kind, payload, ..
            } => {
                if let Some(e) = self
                    .eps
                    .iter_mut()
                    .find(|e| e.node == node && *e.peer == *to)
                {
                    e.client.handle_signal(kind, &payload).unwrap();
                } else {
                    let side = if node == A { Side::Up } else { Side::Down };
                    self.link
                        .client(side)
                        .handle_signal(kind, &payload)
                        .unwrap();
                }
            }
            _ => {}
        }
    }

    /// Advance time by 1 ms steps for `d`, every publisher sending a frame each 20 ms
    /// (a keyframe every 10th) when `media`.
    fn run(&mut self, d: Duration, media: bool) {
        let end = self.now + d;
        let mut tick = 0u64;
        while self.now < end {
            if media && tick.is_multiple_of(20) {
                self.send_frame();
            }
            self.now += Duration::from_millis(1);
            tick += 1;
            let now = self.now;
            for node in [A, B] {
                if self.sfus[node].poll_timeout().is_some_and(|t| t <= now) {
                    self.sfus[node].handle_timeout(now);
                }
            }
            for e in &mut self.eps {
                if e.client.poll_timeout().unwrap() <= now {
                    e.client.handle_timeout(now).unwrap();
                }
            }
            if self.link.poll_timeout().unwrap() <= now {
                self.link.handle_timeout(now).unwrap();
            }
            self.pump();
        }
    }

    fn send_frame(&mut self) {
        let now = self.now;
        for e in &mut self.eps {
            e.seq += 1;
            let keyframe = e.seq % 10 == 1;
            for &(h, codec, layers) in &e.sends {
                for layer in 0..layers {
                    let (payload, ticks) = if codec == Codec::Vp8 {
                        (vp8_frame(keyframe, layer, layers), 1800)
                    } else {
                        (vec![0xFC; 80], 960)
                    };
                    let ext = ExtensionValues {
                        audio_level: (codec == Codec::Opus).then_some(e.level),
                        voice_activity: (codec == Codec::Opus).then_some(e.level > -127),
                        ..Default::default()
                    };
                    let rid = (layers > 1).then(|| Rid::from(["0", "1", "2"][layer as usize]));
                    e.client
                        .write_rtp(
                            now,
                            h,
                            rid,
                            codec,
                            e.seq,
                            (e.seq as u32).wrapping_mul(ticks),
                            true,
                            ext,
                            Arc::from(payload),
                        )
                        .unwrap();
                }
            }
        }
    }

    /// Tell `peer`'s SFU it shows every video of `of` at `width`×`height`.
    fn show(&mut self, peer: &str, of: &str, width: u32, height: u32) {
        let e = self.eps.iter_mut().find(|e| e.peer == peer).unwrap();
        let tiles: Vec<_> = e
            .client
            .remotes()
            .filter(|(_, t)| &*t.peer == of && t.source == Source::Camera)
            .map(|(m, _)| (m, width, height))
            .collect();
        assert!(!tiles.is_empty(), "{peer} has no video of {of}");
        e.client.send_view(&tiles);
    }
}

/// Where a video payload carries its layer (after the VP8 descriptor, frame tag and
/// keyframe header).
const LAYER_TAG_AT: usize = 12;

/// A VP8 frame of simulcast layer `layer` (of `layers`): a keyframe carries its size
/// (the top layer 640x480, each layer below half of the one above), the payload (150
/// bytes on the bottom layer, doubling per layer) is tagged with the layer.
fn vp8_frame(keyframe: bool, layer: u8, layers: u8) -> Vec<u8> {
    let shift = layers - 1 - layer;
    let (w, h) = (640u16 >> shift, 480u16 >> shift);
    let [w0, w1] = w.to_le_bytes();
    let [h0, h1] = h.to_le_bytes();
    // VP8 descriptor S=1, then a frame tag (P=0 for a keyframe) and a keyframe's header.
    let mut v = if keyframe {
        vec![0x10, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, w0, w1, h0, h1]
    } else {
        vec![0x10, 0x11, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0]
    };
    v.push(0xA0 | layer);
    v.resize(150 << layer, 0xA0 | layer);
    v
}

#[test]
fn a_room_spans_two_nodes_each_track_crosses_the_link_once() {
    let mut span = Span::new();
    let cam_mic = [Source::Microphone, Source::Camera];
    span.join(A, "ada", &cam_mic);
    span.join(A, "abe", &cam_mic);
    span.join(A, "amy", &[]);
    span.join(B, "bea", &cam_mic);
    for who in ["bob", "bud", "bux"] {
        span.join(B, who, &[]);
    }
    span.run(Duration::from_secs(3), false);
    span.run(Duration::from_secs(3), true);

    // Every subscriber got every publisher's audio and video, under the publisher's name.
    let publishers = ["ada", "abe", "bea"];
    for sub in ["ada", "abe", "amy", "bea", "bob", "bud", "bux"] {
        for p in publishers.iter().filter(|p| **p != sub) {
            for kind in ["audio", "video"] {
                let n = span
                    .ep(sub)
                    .got
                    .get(&(p.to_string(), kind))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    n >= 50,
                    "{sub} got {n} {kind} packets of {p}: {:?}",
                    span.ep(sub).got
                );
            }
        }
        let strangers: Vec<_> = span
            .ep(sub)
            .got
            .keys()
            .filter(|(p, _)| !publishers.contains(&p.as_str()))
            .collect();
        assert!(strangers.is_empty(), "{sub} got tracks of {strangers:?}");
    }

    // Each track crossed once: A's 4 tracks in, B's 2 out, whatever the subscribers.
    let st = span.link.stats();
    eprintln!(
        "link: {st:?}; {} frames per track; bob got {:?}",
        span.ep("ada").seq,
        span.ep("bob").got
    );
    assert_eq!((st.tracks_in, st.tracks_out), (4, 2), "{st:?}");
    let sent_per_track = span.ep("ada").seq;
    assert!(
        st.packets_in <= 4 * sent_per_track && st.packets_in >= 4 * (sent_per_track - 20),
        "{st:?}, {sent_per_track} frames per track"
    );
    assert!(st.packets_out <= 2 * sent_per_track, "{st:?}");
    // Nothing came back: A's publishers never received their own tracks through the link.
    for p in ["ada", "abe"] {
        assert!(!span.ep(p).got.contains_key(&(p.to_string(), "video")));
    }

    // A keyframe request of a subscriber on B reaches the publisher on A.
    let before = span.ep("ada").keyframe_requests;
    let bob = span.eps.iter().position(|e| e.peer == "bob").unwrap();
    let mid = span.eps[bob]
        .client
        .remotes()
        .find(|(_, t)| &*t.peer == "ada" && t.source == Source::Camera)
        .map(|(m, _)| m)
        .unwrap();
    span.eps[bob].client.request_keyframe(mid, None).unwrap();
    span.run(Duration::from_millis(1500), true);
    assert!(
        span.ep("ada").keyframe_requests > before,
        "ada was asked for a keyframe"
    );

    // ada leaves A: her tracks leave B's subscribers.
    span.sfus[A].remove_participant(ROOM, "ada", span.now);
    span.run(Duration::from_secs(2), true);
    assert!(span.eps[bob]
        .client
        .remotes()
        .all(|(_, t)| &*t.peer != "ada"));
    assert_eq!(span.link.stats().tracks_in, 2);
}

#[test]
fn simulcast_crosses_whole_each_subscriber_gets_its_layer_and_the_speaker_is_the_same() {
    let mut span = Span::new();
    // ada on A: a simulcast camera (160x120, 320x240, 640x480) and a loud microphone.
    span.join_with(A, "ada", &[Source::Microphone, Source::Camera], true, -10);
    span.join_with(A, "abe", &[Source::Microphone], false, -127);
    span.join(A, "amy", &[]);
    // bob shows ada small, bud large; both on B.
    span.join(B, "bob", &[]);
    span.join(B, "bud", &[]);
    span.run(Duration::from_secs(3), false);
    span.run(Duration::from_secs(2), true);
    span.show("bob", "ada", 160, 120);
    span.show("bud", "ada", 640, 480);
    span.show("amy", "ada", 160, 120);
    // Past the layer hold (3 s) and the estimate's climb.
    span.run(Duration::from_secs(12), true);
    for e in &mut span.eps {
        e.layers.clear();
    }
    span.run(Duration::from_secs(3), true);
    let layers_of = |sub: &str| {
        let mut v: Vec<(u8, u64)> = span
            .ep(sub)
            .layers
            .iter()
            .filter(|((p, _), _)| p == "ada")
            .map(|((_, l), n)| (*l, *n))
            .collect();
        v.sort();
        v
    };
    let st = span.link.stats();
    eprintln!(
        "link {st:?}; ada's layers at bob {:?}, bud {:?}, amy {:?}",
        layers_of("bob"),
        layers_of("bud"),
        layers_of("amy")
    );
    // Each subscriber behind the link gets only the layer its tile wants, with frames.
    let only = |sub: &str, layer: u8| {
        let got = layers_of(sub);
        assert!(
            got.len() == 1 && got[0].0 == layer && got[0].1 >= 100,
            "{sub} gets layer {layer} of ada only: {got:?}"
        );
    };
    only("bob", 0);
    only("bud", 2);
    only("amy", 0);
    // Every layer crossed, once: ada's camera is one track in (three layers on it), and
    // the packets in are her three layers' and two microphones', not more.
    assert_eq!(
        st.tracks_in, 3,
        "ada's camera and microphone, abe's microphone: {st:?}"
    );
    let frames = span.ep("ada").seq;
    assert!(
        st.packets_in <= 5 * frames,
        "{st:?}: at most 3 layers and 2 microphones per frame, {frames} frames"
    );
    assert!(
        st.packets_in >= 5 * (frames - 150),
        "{st:?}: every layer crossed, {frames} frames"
    );
    // The speaker found on A (ada, the only loud one) is the speaker on B.
    for sub in ["amy", "bob", "bud"] {
        assert_eq!(
            span.ep(sub).client.speaker(),
            Some("ada"),
            "the speaker at {sub}"
        );
    }
}
