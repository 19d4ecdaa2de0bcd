//! G.711 end to end without transcoding (docs/sip.md "When calls are not transcoded"),
//! hermetic: the real binary, our phone on PCMU (`common::sip_phone`), and a room member
//! whose audio is PCMU (a str0m client, as a page with `audioCodec: 'pcmu'`).
//!
//! - While the member is the only one talking, the member's PCMU payloads reach the phone
//!   byte for byte, and the phone's reach the member byte for byte; the gateway's metrics
//!   count those frames as passed through, and no more frames as transcoded.
//! - A second member that sends Opus joins: the phone gets the mix (both tones) and the
//!   room gets Opus from the phone again.

use crate::lab;

use crate::common;

use common::sip::{decode_opus, heard_from, sip_peer, OpusTone};
use common::sip_phone::{mark_frame, Phone, PhoneMedia};
use common::Server;
use lab::{tone_of, tone_share_db};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use switchboard_client::sfu::{MediaPeer, SfuClient};
use switchboard_media::g711::Law;
use switchboard_sip::sdp::Codec;
use switchboard_sip::ua::UaEvent;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ROOM: &str = "narrowband";

fn gateway() -> (Server, SocketAddr) {
    let low = 20_000 + (std::process::id() % 100) * 100;
    common::sip::gateway(&format!("{low}-{}", low + 99), "100", &[])
}

/// The gateway's frame counter of `direction` (to_phone, to_room) and `path`.
fn frames(server: &Server, direction: &str, path: &str) -> u64 {
    server.metric(&format!(
        "switchboard_sip_media_frames_total{{direction=\"{direction}\",path=\"{path}\"}}"
    ))
}

/// The frame counters: to_phone passthrough, transcoded, to_room passthrough, transcoded.
fn all_frames(server: &Server) -> [u64; 4] {
    [
        frames(server, "to_phone", "passthrough"),
        frames(server, "to_phone", "transcoded"),
        frames(server, "to_room", "passthrough"),
        frames(server, "to_room", "transcoded"),
    ]
}

/// G.711 payloads `b` received on the audio m-lines of `peer`'s tracks, in sequence order.
fn g711_from(b: &SfuClient, peer: &str) -> Vec<Vec<u8>> {
    let mids: Vec<String> = b
        .tracks()
        .into_iter()
        .filter(|t| t.1 == peer && t.3 == "audio")
        .map(|t| t.0)
        .collect();
    let mut out = Vec::new();
    for (mid, packets) in &b.media.g711 {
        if mids.contains(&mid.to_string()) {
            let mut p = packets.clone();
            p.sort_by_key(|(seq, _)| *seq);
            out.extend(p.into_iter().map(|(_, payload)| payload));
        }
    }
    out
}

/// A member sending a 600 Hz tone as 20 ms PCMU frames, each marked with its number.
struct PcmuTone {
    n: usize,
    sent: Vec<Vec<u8>>,
}

impl PcmuTone {
    fn frame(&mut self) -> Vec<u8> {
        let pcm: Vec<i16> = (0..160)
            .map(|i| {
                let t = (self.n * 160 + i) as f64 / 8000.0;
                ((2.0 * std::f64::consts::PI * 600.0 * t).sin() * 8000.0) as i16
            })
            .collect();
        let mut payload = vec![0u8; 160];
        Law::Mu.encode(&pcm, &mut payload).expect("encode");
        mark_frame(&mut payload, self.n);
        self.n += 1;
        self.sent.push(payload.clone());
        payload
    }
}

#[test]
fn g711_crosses_the_gateway_unchanged_until_an_opus_member_joins() {
    let (server, gw) = gateway();
    let http = server.http.expect("http");
    let peer = MediaPeer::new_g711(LOOPBACK).expect("media");
    let mut g = SfuClient::join_with(http, ROOM, "G", Some("sfu"), peer).expect("G joins");
    g.media.capture = true;
    let sfu = g
        .pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump G");
    assert!(sfu, "the SFU did not join the room");
    g.publish_audio().expect("G publishes");

    let mut phone = Phone::new();
    let offer = phone.offer();
    let call = phone.call(format!("sip:{ROOM}@{gw}"), gw, offer.clone(), None);
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        assert!(Instant::now() < deadline, "not answered within 15 s");
        g.pump(Duration::from_millis(2)).expect("pump G");
        phone.pump();
        let mut done = None;
        for e in phone.events.drain(..) {
            match e {
                UaEvent::Connected { call: c, remote } if c == call => done = Some(remote),
                UaEvent::Ended { call: c, reason } if c == call => {
                    panic!("refused: {:?} {}", reason.status, reason.reason)
                }
                _ => {}
            }
        }
        if let Some(remote) = done {
            break remote.expect("the 200 carries SDP");
        }
    };
    let negotiated = phone
        .sdp
        .accept_answer(&offer, &answer, &phone.local)
        .expect("the answer fits");
    assert_eq!(negotiated.codec, Codec::Pcmu);
    let mut media = PhoneMedia::new(&negotiated);
    media.keep = true;
    phone.media.set_nonblocking(true).expect("non-blocking");
    let mut tone = PcmuTone {
        n: 0,
        sent: Vec::new(),
    };

    // 1. G alone with the phone: 5 s of both tones.
    let mut next = Instant::now();
    let mut run = |g: &mut SfuClient,
                   phone: &mut Phone,
                   media: &mut PhoneMedia,
                   tone: &mut PcmuTone,
                   other: &mut Option<(SfuClient, OpusTone)>,
                   d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            // Every frame due (a slow turn of this loop sends a burst, as a busy page does).
            while Instant::now() >= next {
                next += Duration::from_millis(20);
                if g.media.connected {
                    let f = tone.frame();
                    g.media.send_pcmu_packet(&f);
                }
                if let Some((o, opus)) = other.as_mut().filter(|(o, _)| o.media.connected) {
                    let f = opus.frame();
                    o.media.send_audio_packet(&f);
                }
            }
            g.pump(Duration::from_millis(1)).expect("pump G");
            if let Some((o, _)) = other.as_mut() {
                o.pump(Duration::from_millis(1)).expect("pump O");
            }
            phone.pump();
            // The phone's socket is non-blocking: take what came, send what is due.
            for _ in 0..8 {
                media.step(&phone.media);
            }
        }
    };
    let mut other = None;
    // Until 3 s of G.711 crossed each way (the set-up of G's and the call's WebRTC legs
    // takes a moment), at most 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sip = loop {
        run(
            &mut g,
            &mut phone,
            &mut media,
            &mut tone,
            &mut other,
            Duration::from_millis(200),
        );
        let sip = sip_peer(&g);
        let g_heard = sip.as_deref().map_or(0, |p| g711_from(&g, p).len());
        if g_heard >= 150 && media.received.len() >= 150 {
            break sip.expect("the sip peer");
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s: G got {g_heard} PCMU payloads from the call, the phone {}",
            media.received.len()
        );
    };

    // The member heard the phone's payloads as the phone sent them.
    let sent: HashSet<&Vec<u8>> = media.sent.iter().collect();
    let heard = g711_from(&g, &sip);
    let exact = heard.iter().filter(|p| sent.contains(p)).count();
    eprintln!(
        "G got {} PCMU payloads from the call, {exact} as the phone sent them",
        heard.len()
    );
    assert!(heard.len() >= 150, "G got {} PCMU payloads", heard.len());
    // A frame the gateway's jitter buffer had to conceal (a packet of this test's loop
    // that came late, more of them on a loaded machine) is coded, not passed: allow 5 %.
    assert!(
        exact * 100 >= heard.len() * 95,
        "{exact} of {} unchanged",
        heard.len()
    );
    // And the phone heard G's payloads as G sent them.
    let g_sent: HashSet<Vec<u8>> = tone.sent.iter().cloned().collect();
    let got = media.received.len();
    let exact = media
        .received
        .iter()
        .filter(|p| g_sent.contains(*p))
        .count();
    eprintln!("the phone got {got} payloads, {exact} as G sent them");
    assert!(
        exact >= 150 && exact + 60 >= got,
        "{exact} of {got} unchanged"
    );
    // Of the last 2 s, a frame or two may be a concealed one (a packet of this loop came
    // late to the gateway's jitter buffer): coded, not passed.
    let tail = &media.received[got - 100..];
    let coded: Vec<usize> = (0..100).filter(|&i| !g_sent.contains(&tail[i])).collect();
    assert!(coded.len() <= 3, "not passed in the last 2 s: {coded:?}");

    // The metrics: passed through both ways; no more transcoding once G is heard.
    run(
        &mut g,
        &mut phone,
        &mut media,
        &mut tone,
        &mut other,
        Duration::from_millis(1200),
    );
    let before = all_frames(&server);
    // 100 more frames each way (2 s; longer on a loaded machine: the counts reach the
    // metrics once a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        run(
            &mut g,
            &mut phone,
            &mut media,
            &mut tone,
            &mut other,
            Duration::from_millis(500),
        );
        let after = all_frames(&server);
        if after[0] >= before[0] + 100 && after[2] >= before[2] + 100 {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "passthrough stalled: {before:?} -> {after:?}"
        );
    };
    eprintln!(
        "frames (to_phone passed, transcoded, to_room passed, transcoded): {before:?} -> {after:?}"
    );
    assert!(before[0] >= 150 && before[2] >= 150, "{before:?}");
    // Nothing transcoded with G alone but what a late packet makes the jitter buffer
    // conceal (this test's loop is not a paced sender): at most 3 of the 100 or more.
    assert!(
        after[1] <= before[1] + 3 && after[3] <= before[3] + 3,
        "transcoded while G was alone: {before:?} -> {after:?}"
    );

    // 2. An Opus member joins: the phone hears the mix, the room gets Opus.
    let mut o = SfuClient::join(http, ROOM, "O", Some("sfu"), LOOPBACK).expect("O joins");
    o.media.capture = true;
    o.pump_until(Duration::from_secs(10), |b| b.sfu_peer.is_some())
        .expect("pump O");
    o.publish_audio().expect("O publishes");
    other = Some((o, OpusTone::new(1000.0)));
    let mark = media.received.len();
    // Until O heard 3 s of the phone as Opus (then the gateway hears O too), at most 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        run(
            &mut g,
            &mut phone,
            &mut media,
            &mut tone,
            &mut other,
            Duration::from_millis(200),
        );
        let o_heard = other.as_ref().map_or(0, |(o, _)| heard_from(o, &sip).len());
        if o_heard >= 150 && media.received.len() >= mark + 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 20 s O got {o_heard} Opus payloads, the phone {} packets since O joined",
            media.received.len() - mark
        );
    }
    let g_sent: HashSet<Vec<u8>> = tone.sent.iter().cloned().collect();
    let late = &media.received[media.received.len() - 100..];
    assert!(
        late.iter().all(|p| !g_sent.contains(p)),
        "G's payloads still reach the phone unchanged with two members"
    );
    assert!(
        media.received.len() >= mark + 200,
        "{} after {mark}",
        media.received.len()
    );
    let pcm = &media.heard[media.heard.len() - 16_000..];
    let (g_db, o_db) = (
        tone_share_db(pcm, 8000, 600.0),
        tone_share_db(pcm, 8000, 1000.0),
    );
    eprintln!("the phone hears the mix: 600 Hz at {g_db:.1} dB, 1000 Hz at {o_db:.1} dB");
    assert!(
        g_db > -8.0 && o_db > -8.0,
        "600 Hz {g_db:.1} dB, 1000 Hz {o_db:.1} dB"
    );
    let (o, _) = other.take().expect("O");
    let from_phone = heard_from(&o, &sip);
    let pcm = decode_opus(&from_phone[from_phone.len() - 100..]);
    let (hz, rms) = tone_of(&pcm, 48_000);
    eprintln!("O hears the phone: {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 440.0).abs() < 10.0 && rms > 1000.0,
        "O hears {hz:.0} Hz at RMS {rms:.0}"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(frames(&server, "to_phone", "transcoded") >= after[1] + 200);
    assert!(frames(&server, "to_room", "transcoded") >= after[3] + 200);

    phone.ua.hangup(Instant::now(), call).expect("BYE");
    assert!(
        phone.ended(call, Duration::from_secs(5)),
        "BYE not answered"
    );
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
}
