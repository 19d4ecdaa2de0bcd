//! The trapezoid's signalling over real XMPP servers: two Debian prosody instances,
//! `a.test` on 127.0.0.1 and `b.test` on 127.0.0.2, in a private network namespace with
//! s2s (dialback) between them, and a Switchboard component on each (`sb.a.test`,
//! `sb.b.test`) connected through this crate's driver. ada@a.test calls bob@b.test: B
//! rings, accepts, Chromium's offer and answer and trickled candidates cross both
//! servers, then a hang-up; also a decline, an unknown user and an unknown server.
//!
//! Ignored by default (root for the namespace, Debian's `prosody`); `scripts/test-all.sh`
//! installs prosody and runs the ignored tests. Prosody not starting within 20 s is a
//! harness failure (a panic starting "harness:"), not a verdict on our code.

use std::time::Duration;

use switchboard_xmpp::driver::{ComponentConfig, FederationEvent, XmppFederation};
use switchboard_xmpp::lab::{private_netns, s2s_completed, Pair, SECRET};
use switchboard_xmpp::*;
use tokio::sync::mpsc::Receiver;

const OFFER: &str = include_str!("fixtures/chromium-offer.sdp");
const ANSWER: &str = include_str!("fixtures/chromium-answer.sdp");

/// The next call event (connection events are skipped), within 10 s.
async fn next_call(events: &mut Receiver<FederationEvent>, who: &str) -> CallEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(FederationEvent::Call(e))) => return e,
            Ok(Some(other)) => eprintln!("{who}: {other:?}"),
            Ok(None) => panic!("{who}: the federation task ended"),
            Err(_) => panic!("{who}: no call event within 10 s"),
        }
    }
}

async fn connected(events: &mut Receiver<FederationEvent>, who: &str) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(FederationEvent::Connected)) => return,
            Ok(Some(other)) => eprintln!("{who}: {other:?}"),
            other => panic!("{who}: not connected to prosody within 10 s: {other:?}"),
        }
    }
}

fn stanzas(f: &XmppFederation) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (
        f.stats().stanzas_out.load(Relaxed),
        f.stats().stanzas_in.load(Relaxed),
    )
}

fn candidate(port: u16) -> TrickleCandidate {
    TrickleCandidate {
        mid: "0".into(),
        candidate: format!("candidate:7 1 udp 2122194687 192.0.2.7 {port} typ host generation 0"),
        ufrag: Some("uw68".into()),
    }
}

async fn calls(
    a: XmppFederation,
    mut ae: Receiver<FederationEvent>,
    b: XmppFederation,
    mut be: Receiver<FederationEvent>,
) {
    connected(&mut ae, "A").await;
    connected(&mut be, "B").await;

    // A full call.
    let sid = a
        .place_named("ada@a.test", Some("Ada"), "bob@b.test", OFFER)
        .await
        .unwrap();
    let incoming = next_call(&mut be, "B").await;
    assert_eq!(
        incoming,
        CallEvent::Incoming {
            sid: sid.clone(),
            from: "ada@a.test".into(),
            from_name: Some("Ada".into()),
            to: "bob@b.test".into(),
            media: vec![
                model::MediaKind::Audio,
                model::MediaKind::Video,
                model::MediaKind::Data
            ],
        }
    );
    assert_eq!(
        next_call(&mut ae, "A").await,
        CallEvent::Ringing { sid: sid.clone() }
    );
    b.accept(&sid).await.unwrap();
    let CallEvent::RemoteOffer { sdp_offer, .. } = next_call(&mut be, "B").await else {
        panic!("no offer");
    };
    let model = |s: &str| session_from_sdp(&parse_sdp(s).unwrap()).unwrap();
    assert_eq!(model(&sdp_offer), model(OFFER));
    a.local_candidate(&sid, candidate(40000)).await.unwrap();
    let CallEvent::RemoteCandidate { candidate: c, .. } = next_call(&mut be, "B").await else {
        panic!("no candidate at B");
    };
    assert!(c.candidate.contains(" 40000 "), "{c:?}");
    b.answer(&sid, ANSWER).await.unwrap();
    let CallEvent::Accepted { sdp_answer, .. } = next_call(&mut ae, "A").await else {
        panic!("no answer");
    };
    assert_eq!(model(&sdp_answer), model(ANSWER));
    b.local_candidate(&sid, candidate(50000)).await.unwrap();
    let CallEvent::RemoteCandidate { candidate: c, .. } = next_call(&mut ae, "A").await else {
        panic!("no candidate at A");
    };
    assert!(c.candidate.contains(" 50000 "), "{c:?}");
    a.hangup(&sid).await.unwrap();
    assert_eq!(
        next_call(&mut be, "B").await,
        CallEvent::Ended {
            sid: sid.clone(),
            reason: EndReason::HungUp
        }
    );
    // Let the last IQ results and the finish message arrive, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a_out, a_in) = stanzas(&a);
    let (b_out, b_in) = stanzas(&b);
    eprintln!("full call: A sent {a_out}, received {a_in}; B sent {b_out}, received {b_in}");
    // A: propose, session-initiate, transport-info, 2 results, session-terminate, finish.
    // B: ringing, proceed, 2 results, session-accept, transport-info, result of terminate.
    assert_eq!(
        (a_out, b_in),
        (7, 7),
        "every stanza A sent crossed both servers"
    );
    assert_eq!(
        (b_out, a_in),
        (7, 7),
        "every stanza B sent crossed both servers"
    );

    // Declined.
    let sid = a.place("ada@a.test", "bob@b.test", OFFER).await.unwrap();
    assert!(matches!(
        next_call(&mut be, "B").await,
        CallEvent::Incoming { .. }
    ));
    assert_eq!(
        next_call(&mut ae, "A").await,
        CallEvent::Ringing { sid: sid.clone() }
    );
    b.decline(&sid).await.unwrap();
    assert_eq!(
        next_call(&mut ae, "A").await,
        CallEvent::Ended {
            sid,
            reason: EndReason::Declined
        }
    );

    // Nobody of that name at B.
    let sid = a.place("ada@a.test", "nobody@b.test", OFFER).await.unwrap();
    let CallEvent::Incoming { to, .. } = next_call(&mut be, "B").await else {
        panic!("no incoming call at B");
    };
    assert_eq!(to, "nobody@b.test");
    b.unknown(&sid).await.unwrap();
    let mut reason = None;
    while reason.is_none() {
        match next_call(&mut ae, "A").await {
            CallEvent::Ringing { .. } => {}
            CallEvent::Ended { reason: r, .. } => reason = Some(r),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reason, Some(EndReason::Unreachable));

    // A server that does not exist: prosody a.test bounces the propose.
    let sid = a.place("ada@a.test", "carol@c.test", OFFER).await.unwrap();
    assert_eq!(
        next_call(&mut ae, "A").await,
        CallEvent::Ended {
            sid,
            reason: EndReason::Unreachable
        }
    );

    a.stop().await;
    b.stop().await;
}

#[test]
#[ignore = "needs root and Debian's prosody (scripts/test-all.sh installs it and runs ignored tests)"]
fn a_call_between_two_switchboards_through_two_prosody_servers() {
    private_netns();
    let lab = Pair::start();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("harness: runtime");
    rt.block_on(async {
        let (a, ae) = XmppFederation::spawn(
            ComponentConfig::new("127.0.0.1:5347", "sb.a.test", SECRET),
            CallsConfig::new("sb.a.test"),
        );
        let (b, be) = XmppFederation::spawn(
            ComponentConfig::new("127.0.0.2:5347", "sb.b.test", SECRET),
            CallsConfig::new("sb.b.test"),
        );
        calls(a, ae, b, be).await;
    });

    // The stanzas went over s2s between the two servers (dialback), both ways.
    for (name, p) in [("a", &lab.a), ("b", &lab.b)] {
        let s2s = s2s_completed(p);
        eprintln!("prosody {name}: {}", s2s.as_deref().unwrap_or("-"));
        assert!(
            s2s.is_some(),
            "prosody {name}: no outgoing s2s connection completed"
        );
    }
}
