//! `SfuClient`, the browser's side of the SFU protocol in Rust (a node link's two ends),
//! against a real `Sfu`, without sockets: an answer that belongs to another offer than
//! the one pending (seen on a loaded machine, after an offer of ours was rolled back)
//! does not end the connection: the client offers its tracks again.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::media::MediaKind;
use switchboard_sfu::client::{ClientOutput, SfuClient};
use switchboard_sfu::message::Source;
use switchboard_sfu::{Grants, Sfu, SfuConfig, SfuOutput, SignalIn, SignalKind};

const ROOM: &str = "r";

/// The offer (and the `publish` before it) a client has queued, as the SFU takes them.
fn offer_of(c: &mut SfuClient) -> Vec<(SignalKind, String)> {
    let mut out = Vec::new();
    while let Some(o) = c.poll_output() {
        if let ClientOutput::Signal { kind, payload } = o {
            out.push((kind, payload));
        }
    }
    out
}

#[test]
fn an_answer_to_another_offer_makes_the_client_offer_again() {
    let now = Instant::now();
    let cfg = SfuConfig {
        candidates: vec![SocketAddr::from(([10, 0, 0, 1], 3480))],
        ..SfuConfig::default()
    };
    let mut sfu = Sfu::new(cfg, now).unwrap();
    for peer in ["a", "b"] {
        sfu.add_participant(ROOM, peer, Grants::default(), now)
            .unwrap();
    }
    let mut a = SfuClient::new("10.0.0.2:5000".parse().unwrap(), now).unwrap();
    let mut b = SfuClient::new("10.0.0.3:5000".parse().unwrap(), now).unwrap();
    a.publish(MediaKind::Audio, Source::Microphone, None);
    b.publish(MediaKind::Video, Source::Camera, None);
    b.publish(MediaKind::Audio, Source::Microphone, None);
    a.negotiate().unwrap();
    b.negotiate().unwrap();
    assert!(offer_of(&mut a)
        .iter()
        .any(|(k, _)| *k == SignalKind::Offer));
    // b's offer reaches the SFU; its answer goes to a instead, whose own offer is pending.
    for (kind, payload) in offer_of(&mut b) {
        let s = match kind {
            SignalKind::Offer => SignalIn::Offer(&payload),
            SignalKind::Answer => SignalIn::Answer(&payload),
            SignalKind::Message => SignalIn::Message(&payload),
        };
        sfu.handle_signal(ROOM, "b", s, now).unwrap();
    }
    let mut answer = None;
    while let Some(o) = sfu.poll_output() {
        if let SfuOutput::Signal {
            kind: SignalKind::Answer,
            payload,
            ..
        } = o
        {
            answer = Some(payload);
        }
    }
    let answer = answer.expect("the SFU answers b");
    a.handle_signal(SignalKind::Answer, &answer)
        .expect("an answer to another offer does not end the client");
    let again = offer_of(&mut a);
    assert!(
        again.iter().any(|(k, _)| *k == SignalKind::Offer),
        "a offers again: {again:?}"
    );
    assert!(
        again
            .iter()
            .any(|(k, p)| *k == SignalKind::Message && p.contains("microphone")),
        "with its microphone announced again: {again:?}"
    );
}
