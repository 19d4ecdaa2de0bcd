//! Negotiation edge cases: glare (the SFU is impolite), bad SDP (an error to that browser
//! only), the publish grant.

mod common;

use std::time::Duration;

use common::{Net, ROOM};
use str0m::media::MediaKind;
use switchboard_sfu::{Grants, SignalIn, SignalKind};

const AV: &[(MediaKind, bool)] = &[(MediaKind::Audio, false), (MediaKind::Video, false)];

#[test]
fn sfu_glare_browser_rolls_back_and_offers_again() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    let b = net.idx("bob");
    net.clients[b].auto = false;

    // Carol publishes: the SFU offers to bob; bob (not reading yet) offers a screen share.
    let c = net.join("carol", Grants::default());
    net.offer(c, AV);
    net.run_until(Duration::from_secs(5), "SFU offer to bob", |n| {
        n.clients[b]
            .inbox
            .iter()
            .any(|(k, _)| *k == SignalKind::Offer)
    });
    net.offer_sources(b, &[(MediaKind::Video, false, "screen")]);
    net.run_for(Duration::from_millis(300));
    // The SFU ignored bob's colliding offer: no answer to it.
    assert!(
        !net.clients[b]
            .inbox
            .iter()
            .any(|(k, _)| *k == SignalKind::Answer),
        "the SFU must not answer an offer that collides with its own"
    );
    // The `tracks` map came before the SFU's offer.
    let kinds: Vec<SignalKind> = net.clients[b].inbox.iter().map(|(k, _)| *k).collect();
    let first_offer = kinds.iter().position(|k| *k == SignalKind::Offer).unwrap();
    assert!(
        kinds[..first_offer].contains(&SignalKind::Message),
        "{kinds:?}"
    );

    // Bob is polite: rolls back, answers, offers again; everyone ends up with everything.
    net.clients[b].auto = true;
    net.run_until(Duration::from_secs(5), "glare resolved", |n| {
        n.clients
            .iter()
            .all(|c| c.pending.is_none() && c.inbox.is_empty())
            && n.client("alice").tracks().len() == 5
            && n.client("carol").tracks().len() == 5
            && n.client("bob").tracks().len() == 4
    });
    assert_eq!(net.clients[b].rollbacks, 1);
    let screen: Vec<_> = net
        .client("alice")
        .tracks()
        .into_iter()
        .filter(|t| t.1 == "bob" && t.2 == "screen")
        .collect();
    assert_eq!(screen.len(), 1, "{:?}", net.client("alice").tracks());

    // Media flows on the renegotiated m-lines, the screen share included.
    net.run_for(Duration::from_millis(300));
    net.stream(&[b], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    let alice = net.client("alice");
    let on_screen = alice
        .rtp
        .get(&str0m::media::Mid::from(screen[0].0.as_str()))
        .copied();
    assert!(
        on_screen.unwrap_or(0) >= 48,
        "screen packets at alice: {on_screen:?}"
    );
    assert!(alice.received_from("bob", "video") >= 96);
}

#[test]
fn sfu_bad_sdp_gets_an_error_and_disturbs_nobody() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV), ("bob", AV)]);
    let (a, b) = (net.idx("alice"), net.idx("bob"));
    let alice_msgs = net.clients[a].messages.len();
    let alice_offers = net.clients[a].offers_received;

    for bad in [
        r#""this is not SDP""#,
        r#"{"no":"sdp"}"#,
        // Parses as SDP text but has no fingerprint (str0m would drop the connection).
        r#""v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n""#,
    ] {
        net.sfu
            .handle_signal(ROOM, "bob", SignalIn::Offer(bad), net.now)
            .unwrap();
        net.run_for(Duration::from_millis(50));
    }
    let errors = net.clients[b].msgs("error");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors
        .iter()
        .all(|e| e["code"] == "bad-sdp" && e["reason"].is_string()));
    // An answer nobody asked for is ignored; a bad one to nothing pending too.
    net.sfu
        .handle_signal(ROOM, "bob", SignalIn::Answer(r#""garbage""#), net.now)
        .unwrap();
    // Alice saw nothing of it, and media still flows both ways.
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.clients[a].messages.len(), alice_msgs);
    assert_eq!(net.clients[a].offers_received, alice_offers);
    net.stream(&[a, b], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    assert!(net.client("alice").received_from("bob", "video") >= 48);
    assert!(net.client("bob").received_from("alice", "video") >= 48);
    assert!(net.gone.is_empty());
    // Unknown participants are an error of the call, not a panic.
    assert!(net
        .sfu
        .handle_signal(ROOM, "nobody", SignalIn::Offer("\"\""), net.now)
        .is_err());
}

#[test]
fn sfu_publish_grant_is_enforced() {
    let mut net = Net::new();
    net.connect_all(&[("alice", AV)]);
    let v = net.join(
        "viewer",
        Grants {
            publish: false,
            subscribe: true,
        },
    );
    net.offer(v, AV);
    net.run_until(Duration::from_secs(5), "viewer connected", |n| {
        n.clients
            .iter()
            .all(|c| c.connected && c.pending.is_none() && c.inbox.is_empty())
    });
    net.run_for(Duration::from_millis(300));
    let errors = net.clients[v].msgs("error");
    assert!(
        errors.iter().any(|e| e["code"] == "forbidden"),
        "{errors:?}"
    );
    // Alice got no track of the viewer; the viewer gets alice's.
    assert!(net.client("alice").tracks().is_empty());
    assert_eq!(net.client("viewer").tracks().len(), 2);
    let a = net.idx("alice");
    net.stream(&[a, v], Duration::from_secs(1), 10);
    net.run_for(Duration::from_millis(200));
    assert!(net.client("viewer").received_from("alice", "video") >= 48);
    assert_eq!(net.sfu.stats().tracks, 2);
    assert!(net.client("alice").rtp.values().all(|n| *n == 0));
}
