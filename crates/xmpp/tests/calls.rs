//! Two `JingleCalls` machines (Switchboard A, component `sb.a.test`, and B, `sb.b.test`)
//! wired back to back through a simulated pair of XMPP servers: every stanza is written
//! as XML text and parsed again, as it would cross the wire. The "servers" bounce
//! stanzas for domains that do not exist (`remote-server-not-found`) and can lose IQ
//! replies. Chromium's real offer and answer are the descriptions.

use std::time::{Duration, Instant};

use switchboard_xmpp::xmpp_parsers::minidom::Element;
use switchboard_xmpp::*;

const OFFER: &str = include_str!("fixtures/chromium-offer.sdp");
const ANSWER: &str = include_str!("fixtures/chromium-answer.sdp");

struct Net {
    a: JingleCalls,
    b: JingleCalls,
    now: Instant,
    /// Stanzas that crossed, in order: (from A?, short description).
    log: Vec<(bool, String)>,
    /// Lose IQ results and errors sent by B.
    lose_b_replies: bool,
}

impl Net {
    fn new() -> Net {
        Net {
            a: JingleCalls::new(CallsConfig::new("sb.a.test")),
            b: JingleCalls::new(CallsConfig::new("sb.b.test")),
            now: Instant::now(),
            log: Vec::new(),
            lose_b_replies: false,
        }
    }

    /// Moves stanzas until both machines are quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(s) = self.a.poll_stanza() {
                moved = true;
                self.deliver(true, s);
            }
            while let Some(s) = self.b.poll_stanza() {
                moved = true;
                self.deliver(false, s);
            }
            if !moved {
                return;
            }
        }
    }

    fn deliver(&mut self, from_a: bool, stanza: Element) {
        let wire = String::from(&stanza);
        let stanza: Element = wire.parse().expect("our stanzas are XML");
        self.log.push((from_a, calls::describe(&stanza)));
        let to = stanza.attr("to").unwrap_or_default().to_string();
        let is_reply = matches!(stanza.attr("type"), Some("result" | "error"));
        if !from_a && self.lose_b_replies && stanza.name() == "iq" && is_reply {
            return;
        }
        let now = self.now;
        if to.contains("@sb.b.test") && from_a {
            let _ = self.b.feed(now, &stanza);
        } else if to.contains("@sb.a.test") && !from_a {
            let _ = self.a.feed(now, &stanza);
        } else if !is_reply {
            // No such server: the sender's server bounces it (RFC 6120 §8.3.3.15).
            let bounce = stanza::error_reply(&stanza, "cancel", "remote-server-not-found", None);
            let bounce = bounce_from_server(bounce);
            let back = if from_a { &mut self.a } else { &mut self.b };
            let _ = back.feed(now, &bounce);
        }
    }

    fn a_events(&mut self) -> Vec<CallEvent> {
        std::iter::from_fn(|| self.a.poll_event()).collect()
    }

    fn b_events(&mut self) -> Vec<CallEvent> {
        std::iter::from_fn(|| self.b.poll_event()).collect()
    }

    fn count(&self) -> usize {
        self.log.len()
    }

    /// A places a call to bob and B sees it ring: the sid.
    fn ring(&mut self) -> String {
        let sid = self
            .a
            .place_named(
                self.now,
                "ada@a.test",
                Some(" Ada\u{7} Lovelace "),
                "bob@b.test",
                OFFER,
            )
            .unwrap();
        self.pump();
        assert_eq!(
            self.b_events(),
            vec![CallEvent::Incoming {
                sid: sid.clone(),
                from: "ada@a.test".into(),
                // XEP-0172's nick: trimmed, control characters dropped.
                from_name: Some("Ada Lovelace".into()),
                to: "bob@b.test".into(),
                media: vec![
                    model::MediaKind::Audio,
                    model::MediaKind::Video,
                    model::MediaKind::Data
                ],
            }]
        );
        assert_eq!(
            self.a_events(),
            vec![CallEvent::Ringing { sid: sid.clone() }]
        );
        sid
    }
}

/// A server's bounce comes from the server itself (no user part).
fn bounce_from_server(mut e: Element) -> Element {
    use switchboard_xmpp::xmpp_parsers::minidom::rxml::Namespace;
    let from = e.attr("from").unwrap_or_default().to_string();
    let domain = from
        .split('@')
        .nth(1)
        .unwrap_or(&from)
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    e.set_attr(Namespace::NONE, "from".try_into().unwrap(), domain);
    e
}

fn model_of(sdp: &str) -> MediaSession {
    session_from_sdp(&parse_sdp(sdp).unwrap()).unwrap()
}

fn candidate(mid: &str, port: u16) -> TrickleCandidate {
    TrickleCandidate {
        mid: mid.into(),
        candidate: format!("candidate:1 1 udp 2122194687 192.0.2.7 {port} typ host generation 0"),
        ufrag: Some("uw68".into()),
    }
}

fn ended(sid: &str, reason: EndReason) -> Vec<CallEvent> {
    vec![CallEvent::Ended {
        sid: sid.into(),
        reason,
    }]
}

#[test]
fn a_full_call_offer_answer_candidates_and_hangup() {
    let mut net = Net::new();
    let sid = net.ring();
    // A candidate before the session exists waits for it.
    net.a
        .local_candidate(net.now, &sid, candidate("0", 40000))
        .unwrap();
    net.pump();
    assert!(net.b_events().is_empty());
    net.b.accept(net.now, &sid).unwrap();
    net.pump();
    let events = net.b_events();
    let [CallEvent::RemoteOffer { sid: s, sdp_offer }, CallEvent::RemoteCandidate { candidate: c, .. }] =
        &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!(s, &sid);
    // The offer arrives as the model Chromium's SDP maps to (the mapper's own tests
    // check that model line by line against the SDP).
    assert_eq!(model_of(sdp_offer), model_of(OFFER));
    assert!(c.candidate.contains("40000"), "{c:?}");
    // Trickled after the session-initiate, and a candidate before the answer.
    net.a
        .local_candidate(net.now, &sid, candidate("1", 40001))
        .unwrap();
    net.pump();
    let events = net.b_events();
    assert!(
        matches!(&events[..], [CallEvent::RemoteCandidate { candidate, .. }] if candidate.mid == "1")
    );

    net.b
        .local_candidate(net.now, &sid, candidate("0", 50000))
        .unwrap();
    net.b.answer(net.now, &sid, ANSWER).unwrap();
    net.pump();
    let events = net.a_events();
    let [CallEvent::Accepted { sdp_answer, .. }, CallEvent::RemoteCandidate { candidate: c, .. }] =
        &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!(model_of(sdp_answer), model_of(ANSWER));
    assert!(c.candidate.contains("50000"));
    net.b
        .local_candidate(net.now, &sid, candidate("0", 50001))
        .unwrap();
    net.pump();
    assert_eq!(net.a_events().len(), 1);

    net.a.hangup(&sid).unwrap();
    net.pump();
    assert_eq!(net.b_events(), ended(&sid, EndReason::HungUp));
    assert!(net.a_events().is_empty(), "our own hangup is no event");
    assert!(net.a.is_empty() && net.b.is_empty());
    assert_eq!(net.a.poll_timeout(), None, "no IQ left waiting");
    assert_eq!(net.b.poll_timeout(), None);
    let crossed: Vec<&str> = net.log.iter().map(|(_, d)| d.as_str()).collect();
    // propose, ringing, proceed, session-initiate + result, 2 transport-info + results,
    // transport-info + session-accept + results, transport-info + result,
    // session-terminate + result, finish.
    assert_eq!(net.count(), 18, "{crossed:#?}");
    assert!(crossed.contains(&"iq session-initiate") && crossed.contains(&"iq session-accept"));
}

#[test]
fn decline_and_busy_reach_the_caller_with_their_reason() {
    for (busy, reason) in [(false, EndReason::Declined), (true, EndReason::Busy)] {
        let mut net = Net::new();
        let sid = net.ring();
        if busy {
            net.b.busy(&sid).unwrap();
        } else {
            net.b.decline(&sid).unwrap();
        }
        net.pump();
        assert_eq!(net.a_events(), ended(&sid, reason));
        assert!(net.a.is_empty() && net.b.is_empty());
        assert_eq!(net.count(), 3, "propose, ringing, reject");
    }
}

#[test]
fn cancel_before_the_answer_before_and_after_proceed() {
    let mut net = Net::new();
    let sid = net.ring();
    net.a.hangup(&sid).unwrap();
    net.pump();
    assert_eq!(net.b_events(), ended(&sid, EndReason::Cancelled));
    assert!(net.b.is_empty());

    let mut net = Net::new();
    let sid = net.ring();
    net.b.accept(net.now, &sid).unwrap();
    net.pump();
    assert!(matches!(
        net.b_events()[..],
        [CallEvent::RemoteOffer { .. }]
    ));
    net.a.hangup(&sid).unwrap();
    net.pump();
    assert_eq!(net.b_events(), ended(&sid, EndReason::Cancelled));
    assert!(net.a.is_empty() && net.b.is_empty());
    assert!(
        net.b.answer(net.now, &sid, ANSWER).is_err(),
        "the call is gone"
    );
}

#[test]
fn unknown_user_and_unknown_server_are_unreachable() {
    let mut net = Net::new();
    let sid = net.ring();
    net.b.unknown(&sid).unwrap();
    net.pump();
    assert_eq!(net.a_events(), ended(&sid, EndReason::Unreachable));
    assert!(net.a.is_empty() && net.b.is_empty());

    let mut net = Net::new();
    let sid = net
        .a
        .place(net.now, "ada@a.test", "carol@c.test", OFFER)
        .unwrap();
    net.pump();
    assert_eq!(net.a_events(), ended(&sid, EndReason::Unreachable));
    assert!(net.a.is_empty());
}

#[test]
fn ring_timeout_and_lost_iq_replies_end_the_call() {
    let mut net = Net::new();
    let sid = net.ring();
    let ring = net.a.config().ring_timeout;
    assert_eq!(net.a.poll_timeout(), Some(net.now + ring));
    net.now += ring;
    net.a.handle_timeout(net.now);
    net.b.handle_timeout(net.now);
    assert_eq!(net.a_events(), ended(&sid, EndReason::Timeout));
    assert_eq!(net.b_events(), ended(&sid, EndReason::Timeout));
    net.pump();
    assert!(net.a.is_empty() && net.b.is_empty());

    let mut net = Net::new();
    net.lose_b_replies = true;
    let sid = net.ring();
    net.b.accept(net.now, &sid).unwrap();
    net.pump();
    let _ = net.b_events();
    net.now += net.a.config().iq_timeout + Duration::from_millis(1);
    net.a.handle_timeout(net.now);
    assert_eq!(net.a_events(), ended(&sid, EndReason::Unreachable));
    net.pump();
    // B learns of it from A's session-terminate.
    assert!(matches!(&net.b_events()[..], [CallEvent::Ended { .. }]));
}

#[test]
fn garbage_and_strangers_disturb_nobody() {
    let mut net = Net::new();
    let sid = net.ring();
    let garbage = [
        "<message xmlns='jabber:component:accept'/>".to_string(),
        "<message xmlns='jabber:component:accept' from='x@y' to='bob@sb.b.test'><body>hi</body></message>".into(),
        format!("<message xmlns='jabber:component:accept' from='eve@e.test/x' to='bob@sb.b.test'><retract xmlns='urn:xmpp:jingle-message:0' id='{sid}'/></message>"),
        format!("<message xmlns='jabber:component:accept' from='eve@e.test/x' to='bob@sb.b.test'><propose xmlns='urn:xmpp:jingle-message:0' id='{sid}'/></message>"),
        "<message xmlns='jabber:component:accept' from='eve@e.test/x' to='bob@sb.b.test'><propose xmlns='urn:xmpp:jingle-message:0' id='a b'/></message>".into(),
        "<message xmlns='jabber:component:accept' from='eve@e.test/x' to='bob@sb.b.test'><proceed xmlns='urn:xmpp:jingle-message:0'/></message>".into(),
        format!("<iq xmlns='jabber:component:accept' type='set' id='e1' from='eve@e.test/x' to='bob@sb.b.test/switchboard'><jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{sid}'/></iq>"),
        "<iq xmlns='jabber:component:accept' type='set' id='e2' from='eve@e.test/x' to='bob@sb.b.test/switchboard'><jingle xmlns='urn:xmpp:jingle:1' action='nonsense' sid='s'/></iq>".into(),
        "<iq xmlns='jabber:component:accept' type='set' id='e3' from='eve@e.test/x' to='bob@sb.b.test/switchboard'><jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s'><content creator='initiator' name='0'><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'><fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'>8F:77E</fingerprint></transport></content></jingle></iq>".into(),
        "<iq xmlns='jabber:component:accept' type='get' id='e4' from='eve@e.test/x' to='sb.b.test'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
        "<iq xmlns='jabber:component:accept' type='result' id='nothing' from='eve@e.test/x' to='bob@sb.b.test'/>".into(),
        "<iq xmlns='jabber:component:accept' type='set' id='e5' from='eve@e.test/x' to='bob@sb.other.test'><jingle xmlns='urn:xmpp:jingle:1'/></iq>".into(),
        "<iq xmlns='jabber:component:accept' type='get' id='&#9;x' from='eve@e.test/x' to='sb.b.test'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
        "<iq xmlns='jabber:component:accept' type='get' id='y' from='eve@e.test/&#10;' to='sb.b.test'><ping xmlns='urn:xmpp:ping'/></iq>".into(),
        "<presence xmlns='jabber:component:accept' from='eve@e.test/x' to='bob@sb.b.test'/>".into(),
        format!("<message xmlns='jabber:component:accept' type='error' id='{sid}' from='eve@e.test/x' to='bob@sb.b.test'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"),
    ];
    let mut replies = Vec::new();
    for text in &garbage {
        let stanza: Element = text.parse().unwrap();
        assert!(net.b.feed(net.now, &stanza).is_err(), "{text} was taken");
        replies.extend(std::iter::from_fn(|| net.b.poll_stanza()));
    }
    // Every IQ set/get to us got an error reply, nothing else was sent.
    let ids: Vec<_> = replies
        .iter()
        .map(|r| (r.attr("id").unwrap_or(""), r.attr("type").unwrap_or("")))
        .collect();
    assert_eq!(
        ids,
        [
            ("e1", "error"),
            ("e2", "error"),
            ("e3", "error"),
            ("e4", "error")
        ]
    );
    assert!(net.b_events().is_empty());
    // The call goes on: B can still accept it.
    net.b.accept(net.now, &sid).unwrap();
    net.pump();
    assert!(matches!(
        net.b_events()[..],
        [CallEvent::RemoteOffer { .. }]
    ));
}

#[test]
fn disco_info_names_the_jingle_features() {
    let mut b = JingleCalls::new(CallsConfig::new("sb.b.test"));
    let q: Element = "<iq xmlns='jabber:component:accept' type='get' id='d1' from='carol@b.test/dino' to='bob@sb.b.test/switchboard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>".parse().unwrap();
    b.feed(Instant::now(), &q).unwrap();
    let reply = String::from(&b.poll_stanza().unwrap());
    for feature in [
        "urn:xmpp:jingle:1",
        "urn:xmpp:jingle-message:0",
        "urn:xmpp:jingle:apps:dtls:0",
    ] {
        assert!(reply.contains(feature), "{reply}");
    }
}

#[test]
fn wrong_requests_are_errors() {
    let mut net = Net::new();
    let now = net.now;
    assert!(matches!(
        net.a.place(now, "ada@b.test", "bob@b.test", OFFER),
        Err(CallError::NotLocal(_))
    ));
    assert!(matches!(
        net.a.place(now, "ada@a.test", "bob", OFFER),
        Err(CallError::Address(_))
    ));
    assert!(matches!(
        net.a.place(now, "ada@a.test", "bob@b.test", "v=0"),
        Err(CallError::Map(_))
    ));
    let sid = net.ring();
    assert!(
        matches!(net.a.accept(now, &sid), Err(CallError::WrongState { .. })),
        "the caller cannot accept"
    );
    assert!(
        matches!(
            net.b.answer(now, &sid, ANSWER),
            Err(CallError::WrongState { .. })
        ),
        "no offer yet"
    );
    assert!(matches!(
        net.b.decline("nope"),
        Err(CallError::UnknownCall(_))
    ));
    for i in 0..64 {
        net.a
            .local_candidate(now, &sid, candidate("0", 1000 + i))
            .unwrap();
    }
    assert_eq!(
        net.a.local_candidate(now, &sid, candidate("0", 9)),
        Err(CallError::TooManyCandidates)
    );
}
