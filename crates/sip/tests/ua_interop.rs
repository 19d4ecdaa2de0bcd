//! The user agent (`switchboard_sip::ua::UserAgent`) against real SIP software, driven by
//! a std `UdpSocket` and a small loop (receive with the UA's `poll_timeout` as the
//! timeout), the way the binary's gateway drives it:
//! 1. it registers at Debian's kamailio (digest), refreshes, and de-registers (the
//!    registrar's answers list our binding, then no longer);
//! 2. baresip calls it directly: IncomingCall, ring, accept with an `SdpSession` answer,
//!    Connected on the ACK, G.711 both ways, baresip hangs up → Ended{Remote};
//! 3. it calls baresip (registered as bob) through kamailio, which asks for proxy
//!    authentication (407): Connected, tone both ways, our BYE → Ended{Local};
//! 4. it calls baresip (answering manually) and hangs up while it rings: CANCEL, 487.
//!
//! Ignored by default (they need `kamailio` and `baresip`); `scripts/test-all.sh`
//! installs both and runs the ignored tests.

mod lab;
use lab::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_media::g711::Law;
use switchboard_sip::sdp::{Codec, Direction, LocalAudio, SdpSession, SessionDescription};
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{
    Account, CallId, EndedBy, Outbound, RegState, UaConfig, UaEvent, UserAgent,
};
use switchboard_sip::Message;

/// A user agent on its own UDP socket, and what it received (parsed) for the checks.
struct Driver {
    ua: UserAgent,
    sock: UdpSocket,
    received: Vec<Message<'static>>,
}

impl Driver {
    fn new() -> Driver {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut cfg = UaConfig::new(sock.local_addr().expect("addr"));
        cfg.user_agent = "switchboard-ua-interop".into();
        Driver {
            ua: UserAgent::new(cfg, Instant::now()),
            sock,
            received: Vec::new(),
        }
    }

    fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }

    fn flush(&mut self) {
        while let Some(t) = self.ua.poll_transmit() {
            let _ = self.sock.send_to(&t.bytes, t.dest);
        }
    }

    /// Drives the UA until an event `want` accepts (returned), panicking after `wait`.
    fn until(&mut self, wait: Duration, mut want: impl FnMut(&UaEvent) -> bool) -> UaEvent {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        loop {
            self.flush();
            while let Some(e) = self.ua.poll_event() {
                eprintln!("event: {e:?}");
                if want(&e) {
                    self.flush();
                    return e;
                }
            }
            let now = Instant::now();
            assert!(now < deadline, "no expected event within {wait:?}");
            let timeout = self
                .ua
                .poll_timeout()
                .map_or(Duration::from_millis(50), |at| {
                    at.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            self.receive(timeout, &mut buf);
        }
    }

    /// One datagram (waiting at most `timeout`) into the UA, then its timers.
    fn receive(&mut self, timeout: Duration, buf: &mut [u8]) {
        self.sock.set_read_timeout(Some(timeout)).expect("timeout");
        if let Ok((len, from)) = self.sock.recv_from(buf) {
            if let Ok(m) = Message::parse(&buf[..len]) {
                self.received.push(m.into_owned());
            }
            self.ua
                .handle_datagram(Instant::now(), &buf[..len], from, Transport::Udp);
        }
        self.ua.handle_timeout(Instant::now());
    }

    /// Runs the UA for `d` (answering whatever comes), returning the events.
    fn run_for(&mut self, d: Duration) -> Vec<UaEvent> {
        let mut events = Vec::new();
        let end = Instant::now() + d;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            self.flush();
            while let Some(e) = self.ua.poll_event() {
                events.push(e);
            }
            self.receive(Duration::from_millis(20), &mut buf);
        }
        self.flush();
        events.extend(std::iter::from_fn(|| self.ua.poll_event()));
        events
    }
}

fn audio(media: &UdpSocket) -> LocalAudio {
    LocalAudio {
        addr: media.local_addr().expect("addr").ip(),
        port: media.local_addr().expect("addr").port(),
        codecs: vec![Codec::Pcmu],
        direction: Direction::SendRecv,
        srtp_key: None,
        rtcp_mux: false,
        ptime: 20,
    }
}

/// The remote RTP address of a description's first audio stream.
fn rtp_of(sd: &SessionDescription) -> SocketAddr {
    let m = &sd.media[0];
    let ip = sd.connection(m).and_then(|c| c.ip()).expect("a c= address");
    SocketAddr::new(ip, m.port)
}

fn ended_with(e: &UaEvent) -> Option<(EndedBy, Option<u16>)> {
    match e {
        UaEvent::Ended { reason, .. } => Some((reason.by, reason.status)),
        _ => None,
    }
}

#[test]
#[ignore = "needs Debian's kamailio (scripts/test-all.sh installs it and runs ignored tests)"]
fn ua_registers_refreshes_and_unregisters_at_kamailio() {
    let k = start_kamailio(&[]);
    let mut d = Driver::new();
    let mut account = Account::new("sip:alice@127.0.0.1", "alice", "alicepw", k.addr);
    // Granted 40 s: refreshed after min(20, 10) = 10 s.
    account.expires = 40;
    let reg = d.ua.register(Instant::now(), account);
    let registered = |e: &UaEvent| {
        matches!(
            e,
            UaEvent::Registration {
                state: RegState::Registered { .. },
                ..
            }
        )
    };
    let first = d.until(Duration::from_secs(5), registered);
    assert!(
        matches!(
            first,
            UaEvent::Registration {
                state: RegState::Registered { expires: 40 },
                ..
            }
        ),
        "{first:?}"
    );
    let ours = format!("sip:alice@{}", d.local());
    let listed = |m: &Message<'_>| m.headers().values("Contact").any(|c| c.contains(&ours));
    assert!(d.received.iter().any(&listed), "kamailio lists our binding");
    let started = Instant::now();
    d.until(Duration::from_secs(13), registered);
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "refreshed at about 10 s"
    );
    let before = d.received.len();
    d.ua.unregister(Instant::now(), reg);
    d.until(Duration::from_secs(5), |e| {
        matches!(
            e,
            UaEvent::Registration {
                state: RegState::Unregistered,
                ..
            }
        )
    });
    let last_ok = d.received[before..]
        .iter()
        .rfind(|m| matches!(m, Message::Response(r) if r.status == 200))
        .expect("a 200 to the de-registration");
    assert!(!listed(last_ok), "binding gone: {last_ok:?}");
    let c = d.ua.counters();
    assert_eq!((c.registrations, c.calls), (0, 0));
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn baresip_calls_the_ua_and_hangs_up() {
    let mut phone = start_baresip(false, "PCMU/8000/1");
    let mut d = Driver::new();
    let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    ctrl_command(&mut phone, "dial", &format!("sip:room1@{}", d.local()));
    let incoming = d.until(Duration::from_secs(10), |e| {
        matches!(e, UaEvent::IncomingCall { .. })
    });
    let UaEvent::IncomingCall {
        call,
        to_user,
        offer: Some(offer),
        ..
    } = incoming
    else {
        panic!("an INVITE with an offer: {incoming:?}");
    };
    assert_eq!(to_user.as_deref(), Some("room1"));
    d.ua.ring(Instant::now(), call).expect("ring");
    d.run_for(Duration::from_millis(200));
    let mut sdp = SdpSession::new(42, media.local_addr().expect("addr").ip());
    let (answer, negotiated) = sdp.answer(&offer, &audio(&media)).expect("an answer");
    d.ua.accept(Instant::now(), call, answer).expect("accept");
    d.until(
        Duration::from_secs(5),
        |e| matches!(e, UaEvent::Connected { call: c, .. } if *c == call),
    );
    let remote = negotiated.remote_rtp.expect("baresip's RTP address");
    let heard = exchange_tone(&media, remote, Law::Mu, &mut None, &mut None, 100);
    ctrl_command(&mut phone, "hangup", "");
    let ended = d.until(Duration::from_secs(5), |e| ended_with(e).is_some());
    assert_eq!(ended_with(&ended), Some((EndedBy::Remote, None)));
    assert_tones_crossed(&heard, &phone);
    d.run_for(Duration::from_millis(300));
    assert_eq!(d.ua.counters().calls, 0);
}

fn outbound(target: String, dest: SocketAddr, offer: SessionDescription) -> Outbound {
    Outbound {
        target,
        from: "\"Room 1\" <sip:alice@127.0.0.1>".into(),
        dest,
        transport: Transport::Udp,
        credentials: Some(("alice".into(), "alicepw".into())),
        headers: Vec::new(),
        offer,
    }
}

#[test]
#[ignore = "needs Debian's kamailio and baresip-core (scripts/test-all.sh installs them and runs ignored tests)"]
fn ua_calls_baresip_through_kamailio_with_proxy_auth() {
    let k = start_kamailio(&[]);
    let kport = k.addr.port();
    let phone = start_baresip_with(|_| {
        format!(
            "<sip:bob@127.0.0.1:{kport};transport=udp>;auth_pass=bobpw;answermode=auto;audio_codecs=PCMU/8000/1;regint=60"
        )
    });
    let mut d = Driver::new();
    let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let mut sdp = SdpSession::new(43, media.local_addr().expect("addr").ip());
    let offer = sdp.offer(&audio(&media));
    // baresip registers in the background: a 404 means not yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (call, remote) = loop {
        let target = format!("sip:bob@127.0.0.1:{kport}");
        let call: CallId =
            d.ua.call(Instant::now(), outbound(target, k.addr, offer.clone()))
                .expect("call");
        let e = d.until(Duration::from_secs(10), |e| {
            matches!(e, UaEvent::Connected { .. }) || ended_with(e).is_some()
        });
        match e {
            UaEvent::Connected {
                remote: Some(sd), ..
            } => break (call, sd),
            other
                if Instant::now() < deadline
                    && ended_with(&other) == Some((EndedBy::Remote, Some(404))) =>
            {
                std::thread::sleep(Duration::from_millis(300));
            }
            other => panic!("not connected: {other:?}"),
        }
    };
    assert!(
        d.received
            .iter()
            .any(|m| matches!(m, Message::Response(r) if r.status == 407)),
        "kamailio asked for proxy authentication"
    );
    let heard = exchange_tone(&media, rtp_of(&remote), Law::Mu, &mut None, &mut None, 100);
    d.ua.hangup(Instant::now(), call).expect("hangup");
    let ended = d.until(Duration::from_secs(2), |e| ended_with(e).is_some());
    assert_eq!(ended_with(&ended), Some((EndedBy::Local, None)));
    // The BYE's 200 comes back through kamailio.
    d.run_for(Duration::from_millis(500));
    assert!(d.received.iter().any(
        |m| m.headers().get("CSeq").is_some_and(|c| c.ends_with("BYE"))
            && matches!(m, Message::Response(r) if r.status == 200)
    ));
    assert_tones_crossed(&heard, &phone);
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn ua_cancels_a_ringing_call() {
    let _phone = start_baresip_with(|port| {
        format!("<sip:alice@127.0.0.1:{port};transport=udp>;regint=0;answermode=manual;audio_codecs=PCMU/8000/1")
    });
    let phone_sip = _phone.sip;
    let mut d = Driver::new();
    let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let offer = SdpSession::new(44, media.local_addr().expect("addr").ip()).offer(&audio(&media));
    let target = format!("sip:alice@{phone_sip}");
    let call =
        d.ua.call(Instant::now(), outbound(target, phone_sip, offer))
            .expect("call");
    d.until(Duration::from_secs(5), |e| {
        matches!(e, UaEvent::Ringing { .. })
    });
    d.ua.hangup(Instant::now(), call).expect("hangup");
    let ended = d.until(Duration::from_secs(5), |e| ended_with(e).is_some());
    assert_eq!(ended_with(&ended), Some((EndedBy::Local, Some(487))));
    d.run_for(Duration::from_millis(300));
    assert_eq!(d.ua.counters().calls, 0);
}
