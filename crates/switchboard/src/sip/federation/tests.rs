//! Two SIP services in this process (`a.test` and `b.test`, each its own agent, UDP
//! socket and user agent, as in two servers) calling each other through their
//! [`SipFederation`] handles, with Chromium's real offer and answer; and the pure parts
//! (the routing rule's SDP test, what SIP carries unchanged, end reasons).

use super::*;
use crate::service::Service;
use crate::sip::SipService;
use std::ffi::OsString;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc::Receiver;

pub(super) const OFFER: &str = include_str!("../../../../xmpp/tests/fixtures/chromium-offer.sdp");
pub(super) const ANSWER: &str = include_str!("../../../../xmpp/tests/fixtures/chromium-answer.sdp");
const WAIT: Duration = Duration::from_secs(10);

/// One server: its SIP service, the signaling it needs, its federation handle and events.
pub(super) struct End {
    pub sip: Box<SipService>,
    _signal: crate::signal::SignalService,
    pub fed: SipFederation,
    pub events: Receiver<FederationEvent>,
}

impl End {
    pub(super) fn start(domain: &str, listen: &str, peer: &str, extra: &[String]) -> End {
        match End::try_start(domain, listen, peer, extra) {
            Ok(end) => end,
            Err(e) => panic!("{domain}: {e}"),
        }
    }

    /// [`End::start`], or why the SIP service did not start (a port taken).
    pub(super) fn try_start(
        domain: &str,
        listen: &str,
        peer: &str,
        extra: &[String],
    ) -> anyhow::Result<End> {
        let mut args: Vec<OsString> = [
            "--sip-listen",
            listen,
            "--call-domain",
            domain,
            "--sip-federation",
            peer,
            "--sip-timer-t1",
            "100",
            "--sfu-threshold",
            "off",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.extend(extra.iter().map(OsString::from));
        let settings = crate::settings::load(&args).unwrap();
        let plan = crate::plan::build(&settings, None).unwrap();
        let signal = crate::signal::SignalService::start(&plan, None);
        let sip = SipService::start(&plan, &signal, None)?
            .ok_or_else(|| anyhow::anyhow!("no SIP service"))?;
        let (fed, events) = sip.federation();
        Ok(End {
            sip: Box::new(sip),
            _signal: signal,
            fed,
            events,
        })
    }

    pub(super) fn udp(&self) -> SocketAddr {
        self.sip.listeners()[0].addr
    }

    pub(super) async fn next(&mut self) -> FederationEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the events go on")
    }

    /// The next event that is not `Ringing` (which may come before it or not at all).
    pub(super) async fn next_but_ringing(&mut self) -> FederationEvent {
        loop {
            match self.next().await {
                FederationEvent::Ringing { .. } => continue,
                e => return e,
            }
        }
    }

    /// Nothing more comes for a while (what the app ended itself is not reported).
    pub(super) async fn quiet(&mut self) {
        let more = tokio::time::timeout(Duration::from_millis(400), self.events.recv()).await;
        assert!(more.is_err(), "unexpected event: {more:?}");
    }

    /// The agent forgot every call (the gauge is published after each message).
    pub(super) async fn settles(&self) {
        for _ in 0..100 {
            if self.sip.stats.calls_live.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("calls still live");
    }
}

/// a.test and b.test, each knowing where the other's SIP service is (over UDP).
fn pair() -> (End, End) {
    pair_over("")
}

/// The same with `params` after each peer's address (`;transport=tcp`).
fn pair_over(params: &str) -> (End, End) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    // b.test's port is picked before it binds (a.test must know it): another test's
    // socket may take its number in between, UDP or the TCP listener on the same number.
    // Then pick again.
    for _ in 0..10 {
        let b_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = End::start(
            "a.test",
            "127.0.0.1:0",
            &format!("b.test=127.0.0.1:{b_port}{params}"),
            &[],
        );
        let b = End::try_start(
            "b.test",
            &format!("127.0.0.1:{b_port}"),
            &format!("a.test={}{params}", a.udp()),
            &[],
        );
        if let Ok(b) = b {
            return (a, b);
        }
    }
    panic!("no free port for b.test in 10 picks");
}

pub(super) fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

pub(super) fn incoming(e: FederationEvent) -> (String, String, String, String) {
    match e {
        FederationEvent::Incoming {
            id,
            from,
            to,
            sdp_offer,
            ..
        } => (id, from, to, sdp_offer),
        other => panic!("not Incoming: {other:?}"),
    }
}

/// `caller` (user `from`) calls `to` on `callee`, who answers with Chromium's answer;
/// both descriptions cross unchanged. The call's id at the caller and at the callee.
pub(super) async fn answered(
    caller: &mut End,
    callee: &mut End,
    from: &str,
    to: &str,
) -> (String, String) {
    let call = caller.fed.place(from, to, OFFER).await.unwrap();
    let (id, _, _, offer) = incoming(callee.next().await);
    assert_eq!(offer, OFFER, "the offer crossed SIP byte for byte");
    callee.fed.answer(&id, ANSWER).await.unwrap();
    match caller.next_but_ringing().await {
        FederationEvent::Accepted { sdp_answer, .. } => assert_eq!(sdp_answer, ANSWER),
        other => panic!("not Accepted: {other:?}"),
    }
    (call, id)
}

/// `by` hangs up its call `id`; `other` sees its call `other_id` end `HungUp`.
pub(super) async fn hung_up(by: &End, id: &str, other: &mut End, other_id: String) {
    by.fed.hangup(id).await.unwrap();
    assert_eq!(
        other.next().await,
        FederationEvent::Ended {
            id: other_id,
            reason: EndReason::HungUp
        }
    );
}

#[test]
fn a_call_is_answered_with_the_sdp_unchanged_both_ways_and_hung_up() {
    let (mut a, mut b) = pair();
    run(async {
        let call = a.fed.place("ada", "bob@b.test", OFFER).await.unwrap();
        let (id, from, to, offer) = incoming(b.next().await);
        assert_eq!((from.as_str(), to.as_str()), ("ada@a.test", "bob"));
        assert_eq!(offer, OFFER, "the offer crossed SIP byte for byte");
        assert_eq!(
            a.next().await,
            FederationEvent::Ringing { id: call.clone() }
        );
        b.fed.accept(&id).await.unwrap();
        b.fed.answer(&id, ANSWER).await.unwrap();
        match a.next().await {
            FederationEvent::Accepted {
                id: got,
                sdp_answer,
            } => {
                assert_eq!(got, call);
                assert_eq!(sdp_answer, ANSWER, "the answer crossed SIP byte for byte");
            }
            other => panic!("not Accepted: {other:?}"),
        }
        // Answered once: no second answer.
        assert!(matches!(
            b.fed.answer(&id, ANSWER).await,
            Err(FederationError::WrongState { .. })
        ));
        a.fed.hangup(&call).await.unwrap();
        assert_eq!(
            b.next().await,
            FederationEvent::Ended {
                id: id.clone(),
                reason: EndReason::HungUp
            }
        );
        a.quiet().await;
        a.settles().await;
        b.settles().await;
        // The call is gone on both sides.
        assert_eq!(
            a.fed.hangup(&call).await,
            Err(FederationError::UnknownCall(call))
        );
        assert!(b.fed.hangup(&id).await.is_err());
    });
}

#[test]
fn the_callee_hangs_up_and_calls_go_the_other_way_too() {
    let (mut a, mut b) = pair();
    run(async {
        let (call, id) = answered(&mut b, &mut a, "bob", "sip:ada@a.test").await;
        hung_up(&a, &id, &mut b, call).await;
        a.settles().await;
        b.settles().await;
    });
}

#[test]
fn a_call_over_tcp_uses_the_connection_and_closes_it_afterwards() {
    let (mut a, mut b) = pair_over(";transport=tcp");
    run(async {
        let (call, id) = answered(&mut a, &mut b, "ada", "bob@b.test").await;
        assert_eq!(b.sip.limits.open(), 1, "the INVITE came over TCP");
        hung_up(&b, &id, &mut a, call).await;
        a.settles().await;
        b.settles().await;
        // The connection a.test opened is closed once nothing uses it.
        for _ in 0..200 {
            if a.sip.limits.open() == 0 && b.sip.limits.open() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "connections left open: a {}, b {}",
            a.sip.limits.open(),
            b.sip.limits.open()
        );
    });
}

/// A CA of the test and, in `dir`, `ca.pem` and a certificate it signed for 127.0.0.1
/// (`cert.pem`, `key.pem`) that both servers present.
fn tls_files(dir: &std::path::Path) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// a.test and b.test over TLS, each with `--sip-tls-listen`; b.test trusts the test's
/// CA only when `b_trusts` (a.test always does).
fn pair_over_tls(dir: &std::path::Path, b_trusts: bool) -> (End, End) {
    tls_files(dir);
    let (a_tls, b_tls) = (free_tcp_port(), free_tcp_port());
    let file = |name: &str| dir.join(name).display().to_string();
    let tls = |port: u16, trust: bool| {
        let mut args = vec![
            "--cert".to_string(),
            file("cert.pem"),
            "--pkey".into(),
            file("key.pem"),
            "--sip-tls-listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        if trust {
            args.extend(["--sip-tls-ca".to_string(), file("ca.pem")]);
        }
        args
    };
    let a = End::start(
        "a.test",
        "127.0.0.1:0",
        &format!("b.test=127.0.0.1:{b_tls};transport=tls"),
        &tls(a_tls, true),
    );
    let b = End::start(
        "b.test",
        "127.0.0.1:0",
        &format!("a.test=127.0.0.1:{a_tls};transport=tls"),
        &tls(b_tls, b_trusts),
    );
    (a, b)
}

#[test]
fn a_call_over_tls_with_the_peers_certificate_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = pair_over_tls(dir.path(), false);
    run(async {
        let (call, id) = answered(&mut a, &mut b, "ada", "bob@b.test").await;
        hung_up(&a, &call, &mut b, id).await;
        // b.test does not trust the test's CA: its call to a.test fails on a.test's
        // certificate, before anything reaches a.test.
        let call = b.fed.place("bob", "ada@a.test", OFFER).await.unwrap();
        assert_eq!(
            b.next_but_ringing().await,
            FederationEvent::Ended {
                id: call,
                reason: EndReason::Unreachable
            }
        );
        a.quiet().await;
        a.settles().await;
        b.settles().await;
    });
}

/// The callee refuses with `refuse`; the caller sees `reason`.
fn refused(refuse: Refusal, reason: EndReason) {
    let (mut a, mut b) = pair();
    run(async {
        let call = a.fed.place("ada", "bob@b.test", OFFER).await.unwrap();
        let (id, ..) = incoming(b.next().await);
        match refuse {
            Refusal::Decline => b.fed.decline(&id).await.unwrap(),
            Refusal::Busy => b.fed.busy(&id).await.unwrap(),
            Refusal::Unknown => b.fed.unknown(&id).await.unwrap(),
        }
        assert_eq!(
            a.next_but_ringing().await,
            FederationEvent::Ended { id: call, reason }
        );
        b.quiet().await;
        a.settles().await;
        b.settles().await;
    });
}

#[test]
fn a_decline_is_declined() {
    refused(Refusal::Decline, EndReason::Declined);
}

#[test]
fn busy_is_busy() {
    refused(Refusal::Busy, EndReason::Busy);
}

#[test]
fn an_unknown_user_is_unreachable() {
    refused(Refusal::Unknown, EndReason::Unreachable);
}

#[test]
fn a_cancel_before_the_answer_is_cancelled_at_the_callee() {
    let (mut a, mut b) = pair();
    run(async {
        let call = a.fed.place("ada", "bob@b.test", OFFER).await.unwrap();
        let (id, ..) = incoming(b.next().await);
        // Ringing first, so that the CANCEL has a transaction to cancel at the callee.
        assert_eq!(
            a.next().await,
            FederationEvent::Ringing { id: call.clone() }
        );
        a.fed.hangup(&call).await.unwrap();
        assert_eq!(
            b.next().await,
            FederationEvent::Ended {
                id: id.clone(),
                reason: EndReason::Cancelled
            }
        );
        // Too late to answer.
        assert!(b.fed.answer(&id, ANSWER).await.is_err());
        a.quiet().await;
        a.settles().await;
        b.settles().await;
    });
}

#[test]
fn a_stopping_server_hangs_up_and_says_why() {
    let (mut a, mut b) = pair();
    let (call, id) = {
        let mut ids = None;
        run(async {
            let call = a.fed.place("ada", "bob@b.test", OFFER).await.unwrap();
            let (id, ..) = incoming(b.next().await);
            b.fed.answer(&id, ANSWER).await.unwrap();
            assert!(matches!(
                a.next_but_ringing().await,
                FederationEvent::Accepted { .. }
            ));
            ids = Some((call, id));
        });
        ids.unwrap()
    };
    let End {
        sip, mut events, ..
    } = a;
    sip.stop();
    run(async {
        assert_eq!(
            b.next().await,
            FederationEvent::Ended {
                id,
                reason: EndReason::HungUp
            }
        );
        assert_eq!(
            events.recv().await,
            Some(FederationEvent::Ended {
                id: call,
                reason: EndReason::Failed("the server is stopping".into())
            })
        );
        b.settles().await;
    });
}

#[test]
fn without_a_consumer_the_invite_goes_to_the_rooms() {
    let (mut a, b) = pair();
    // b.test's consumer goes away: its INVITEs are the rooms' again, and with the SFU off
    // the room gateway refuses them (503), where federation would have rung.
    let End { sip, events, .. } = b;
    drop(events);
    run(async {
        let call = a.fed.place("ada", "bob@b.test", OFFER).await.unwrap();
        assert_eq!(
            a.next_but_ringing().await,
            FederationEvent::Ended {
                id: call,
                reason: EndReason::Unreachable
            }
        );
    });
    assert_eq!(sip.stats.calls_refused.load(Ordering::Relaxed), 1);
}

#[test]
fn what_place_refuses() {
    let (a, _b) = pair();
    run(async {
        let local = a.fed.place("ada", "bob@a.test", OFFER).await;
        assert_eq!(local, Err(FederationError::Local("a.test".into())));
        for bad_user in ["Ada Lovelace", "", "ada@b.test"] {
            let r = a.fed.place(bad_user, "bob@b.test", OFFER).await;
            assert!(matches!(r, Err(FederationError::Address(_))), "{bad_user}");
        }
        let phone = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let r = a.fed.place("ada", "bob@b.test", phone).await;
        assert!(matches!(r, Err(FederationError::Sdp(_))), "{r:?}");
        let odd = OFFER.replacen("m=audio 39562 ", "m=audio  39562 ", 1);
        let r = a.fed.place("ada", "bob@b.test", &odd).await;
        assert!(
            matches!(r, Err(FederationError::Sdp(ref why)) if why.contains("line 8")),
            "{r:?}"
        );
        assert!(matches!(
            a.fed.accept("sip-nope").await,
            Err(FederationError::UnknownCall(_))
        ));
    });
}

#[test]
fn chromium_sdp_is_carried_unchanged_and_is_webrtc() {
    for text in [OFFER, ANSWER] {
        let sdp = carried_sdp(text).unwrap();
        assert_eq!(sdp.to_string_crlf(), text);
        assert!(is_webrtc_offer(&sdp));
    }
    // LF line ends are only line ends.
    assert!(carried_sdp(&OFFER.replace("\r\n", "\n")).is_ok());
    // A phone's DTLS-SRTP offer without ICE, and an SDES one, are not WebRTC.
    let dtls_no_ice = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n";
    let sdes = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
    for text in [dtls_no_ice, sdes] {
        let sdp = SessionDescription::parse(text.as_bytes()).unwrap();
        assert!(!is_webrtc_offer(&sdp), "{text}");
    }
    // ICE and fingerprint at the session level count too.
    let session_level = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AB:CD\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdabcdabcdabcdabcdabcd\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n";
    let sdp = SessionDescription::parse(session_level.as_bytes()).unwrap();
    assert!(is_webrtc_offer(&sdp));
}

#[test]
fn end_reasons_from_sip() {
    let r = |status: Option<u16>, by: EndedBy| {
        EndReason::from_sip(&UaEndReason {
            status,
            reason: "Why".into(),
            by,
        })
    };
    assert_eq!(r(Some(603), EndedBy::Remote), EndReason::Declined);
    assert_eq!(r(Some(486), EndedBy::Remote), EndReason::Busy);
    assert_eq!(r(Some(600), EndedBy::Remote), EndReason::Busy);
    assert_eq!(r(Some(404), EndedBy::Remote), EndReason::Unreachable);
    assert_eq!(r(Some(480), EndedBy::Remote), EndReason::Unreachable);
    assert_eq!(r(Some(503), EndedBy::Error), EndReason::Unreachable);
    assert_eq!(r(Some(487), EndedBy::Remote), EndReason::Cancelled);
    assert_eq!(r(Some(408), EndedBy::Timeout), EndReason::Timeout);
    assert_eq!(r(None, EndedBy::Timeout), EndReason::Timeout);
    assert_eq!(r(None, EndedBy::Remote), EndReason::HungUp);
    assert_eq!(
        r(Some(488), EndedBy::Remote),
        EndReason::Failed("488 Why".into())
    );
    assert_eq!(r(None, EndedBy::Error), EndReason::Failed("Why".into()));
    assert_eq!(
        address_of("sip:Ada@A.test;transport=tcp"),
        Some("ada@a.test".into())
    );
    assert_eq!(address_of("sip:a.test"), None);
}

#[test]
fn the_callers_display_name_crosses_quoted() {
    let (a, mut b) = pair();
    run(async {
        let name = Some(" Ada \"the\" Countess\u{1}\\ ");
        let call = a
            .fed
            .place_named("ada", name, "bob@b.test", OFFER)
            .await
            .unwrap();
        match b.next().await {
            FederationEvent::Incoming { from_name, .. } => {
                assert_eq!(from_name.as_deref(), Some("Ada \"the\" Countess\\"))
            }
            other => panic!("not Incoming: {other:?}"),
        }
        a.fed.hangup(&call).await.unwrap();
    });
}
