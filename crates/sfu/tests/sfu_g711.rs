//! G.711 through the SFU: Opus stays the codec an answer prefers (a browser that states no
//! preference keeps sending Opus), a publisher that offers only PCMU gets PCMU, and its
//! packets reach a subscriber that negotiated PCMU unchanged, under that subscriber's
//! payload type. This is what lets the SIP gateway pass a browser's G.711 to a phone
//! without transcoding (docs/sip.md).

mod common;

use std::time::Duration;

use common::Net;
use str0m::format::Codec;
use str0m::media::MediaKind;
use switchboard_sfu::SignalKind;

/// The payload types of the `m=audio` line of the SFU's answer to client `c`'s offer of
/// one audio m-line, in answer order.
fn answered_audio_pts(net: &mut Net, c: usize) -> Vec<u8> {
    net.clients[c].auto = false;
    net.offer(c, &[(MediaKind::Audio, false)]);
    net.run_until(Duration::from_secs(5), "the SFU's answer", |n| {
        n.clients[c]
            .inbox
            .iter()
            .any(|(k, _)| *k == SignalKind::Answer)
    });
    let (_, payload) = net.clients[c]
        .inbox
        .iter()
        .find(|(k, _)| *k == SignalKind::Answer)
        .cloned()
        .unwrap();
    net.clients[c].auto = true;
    let sdp: String = serde_json::from_str(&payload).unwrap();
    let line = sdp
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_else(|| panic!("no audio m-line in {sdp}"));
    // m=audio <port> <proto> <pt>...
    line.split_whitespace()
        .skip(3)
        .map(|pt| pt.parse().unwrap())
        .collect()
}

fn pt_of(net: &Net, c: usize, codec: Codec) -> u8 {
    *net.clients[c]
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == codec)
        .unwrap()
        .pt()
}

#[test]
fn sfu_answer_keeps_opus_first_and_g711_when_asked() {
    // A browser-like offer: Opus, then PCMU and PCMA (Chromium's order, no preference).
    let mut net = Net::new();
    net.audio_codecs = Some(vec![Codec::Opus, Codec::PCMU, Codec::PCMA]);
    let a = net.join("alice", Default::default());
    let pts = answered_audio_pts(&mut net, a);
    let opus = pt_of(&net, a, Codec::Opus);
    assert_eq!(pts.first(), Some(&opus), "Opus first in {pts:?}");
    assert!(
        pts.contains(&0) && pts.contains(&8),
        "G.711 accepted: {pts:?}"
    );

    // G.711 listed first (a page that prefers it, but would take Opus): the SFU's own
    // preference still puts Opus first, so a page that wants G.711 offers only G.711.
    net.audio_codecs = Some(vec![Codec::PCMU, Codec::Opus]);
    let b = net.join("bob", Default::default());
    let pts = answered_audio_pts(&mut net, b);
    let opus = pt_of(&net, b, Codec::Opus);
    assert_eq!(pts.first(), Some(&opus), "Opus first in {pts:?}");

    // Only PCMU offered (setCodecPreferences([PCMU])): PCMU answered.
    net.audio_codecs = Some(vec![Codec::PCMU]);
    let c = net.join("carol", Default::default());
    assert_eq!(answered_audio_pts(&mut net, c), vec![0]);
}

#[test]
fn sfu_forwards_pcmu_unchanged_to_a_pcmu_subscriber() {
    let mut net = Net::new();
    // The publisher offers PCMU only, under a dynamic payload type; the subscriber takes
    // it under the static 0 of the SFU's offer.
    net.audio_codecs = Some(vec![Codec::PCMU]);
    net.pcmu_pt = Some(110);
    let a = net.join("phoneish", Default::default());
    net.offer(a, &[(MediaKind::Audio, false)]);
    net.pcmu_pt = None;
    net.audio_codecs = Some(vec![Codec::Opus, Codec::PCMU, Codec::PCMA]);
    let b = net.join("bob", Default::default());
    net.offer(b, &[]);
    net.run_until(Duration::from_secs(5), "connected", |n| {
        n.clients
            .iter()
            .all(|c| c.connected && c.pending.is_none() && c.inbox.is_empty())
            && n.client("bob").tracks().len() == 1
    });
    net.run_for(Duration::from_millis(300));
    net.stream(&[a], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    let got = net.client("bob").received_from("phoneish", "audio");
    assert!(got >= 45, "{got} PCMU packets");
    let mid = net.client("bob").mid_of("phoneish", "microphone").unwrap();
    let (pt, payload) = net.client("bob").last_rtp[&str0m::media::Mid::from(mid.as_str())].clone();
    assert_eq!(pt_of(&net, a, Codec::PCMU), 110);
    assert_eq!(pt, 0, "PCMU's payload type at bob");
    // The publisher's bytes (see `send_media`): 160 of them, counting up from its seq.
    assert_eq!(payload.len(), 160);
    assert!(
        payload.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "payload changed on the way: {payload:?}"
    );
}
