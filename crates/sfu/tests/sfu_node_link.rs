//! A room that spans two nodes: SFU A and SFU B, each with its own participants, joined
//! by a `NodeLink` (an `SfuClient` on each SFU, both marked as links). Every endpoint is
//! an `SfuClient` (the browser's protocol in Rust); datagrams and relays move between
//! them in a loop on fake time. No sockets.
//!
//! What a user of a spanning room checks: subscribers on both nodes receive every
//! publisher's tracks under the publisher's name, each track crosses the link once
//! however many subscribers are behind it, nothing comes back through the link, a
//! subscriber's keyframe request on B reaches the publisher on A, and a publisher that
//! leaves A leaves B too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::MediaKind;
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
    /// Published tracks: (handle, codec).
    sends: Vec<(usize, Codec)>,
    /// RTP received, by (peer, kind).
    got: HashMap<(String, &'static str), u64>,
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
        self.sfus[node]
            .add_participant(ROOM, peer, Grants::default(), self.now)
            .unwrap();
        let n = self.eps.len() as u8 + 2;
        let mut client =
            SfuClient::new(SocketAddr::from(([10, 0, node as u8, n], 5000)), self.now).unwrap();
        let mut sends = Vec::new();
        for &s in sources {
            let (kind, codec) = match s {
                Source::Microphone => (MediaKind::Audio, Codec::Opus),
                _ => (MediaKind::Video, Codec::Vp8),
            };
            sends.push((client.publish(kind, s, None), codec));
        }
        client.negotiate().unwrap();
        self.eps.push(Endpoint {
            node,
            peer: peer.into(),
            client,
            sends,
            got: HashMap::new(),
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
            for &(h, codec) in &e.sends {
                let payload: Vec<u8> = if codec == Codec::Vp8 {
                    // VP8 descriptor S=1, then a frame tag (a keyframe with its 640x480 size).
                    let mut v = if keyframe {
                        vec![
                            0x10, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
                        ]
                    } else {
                        vec![0x10, 0x11, 0x00, 0x00]
                    };
                    v.resize(600, 0xAB);
                    v
                } else {
                    vec![0xFC; 80]
                };
                let ticks = if codec == Codec::Vp8 { 1800 } else { 960 };
                e.client
                    .write_rtp(
                        now,
                        h,
                        codec,
                        e.seq,
                        (e.seq as u32).wrapping_mul(ticks),
                        true,
                        ExtensionValues::default(),
                        Arc::from(payload),
                    )
                    .unwrap();
            }
        }
    }
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
    span.eps[bob].client.request_keyframe(mid).unwrap();
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
