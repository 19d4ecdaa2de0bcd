//! User agent tests on fake time, no sockets: two [`UserAgent`]s wired by a pump that feeds
//! the transmits of one as datagrams of the other (with a filter to lose messages). Every
//! scenario ends with "nothing live after a quiet period". Calls set up, answered,
//! refused, cancelled; 2xx retransmission and ACK loss; inbound authentication (the
//! caller's 401 retry). Raw peers are in `tests_raw.rs`, in-call tests in
//! `tests_dialog.rs`, registrations in `tests_register.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sdp::{Codec, Direction, LocalAudio, SdpSession};

pub(super) const A: &str = "127.0.0.1:5060";
pub(super) const B: &str = "127.0.0.1:5070";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A description as an [`SdpSession`] of `port` would make it: one session per port, its
/// version moving with the direction (what changes in these tests).
pub(super) fn audio(port: u16, direction: Direction) -> SessionDescription {
    let mut sd = SdpSession::new(u64::from(port), addr(A).ip()).offer(&LocalAudio {
        addr: addr(A).ip(),
        port,
        codecs: vec![Codec::Pcmu],
        direction,
        srtp_key: None,
        rtcp_mux: false,
        ptime: 20,
    });
    sd.origin.version += match direction {
        Direction::SendRecv => 0,
        Direction::SendOnly => 1,
        Direction::RecvOnly => 2,
        Direction::Inactive => 3,
    };
    sd
}

pub(super) fn config(local: &str) -> UaConfig {
    UaConfig::new(addr(local))
}

/// Decides which messages the wire loses: (from A?, text) → lost.
pub(super) type LossFilter = Box<dyn FnMut(bool, &str) -> bool>;

/// Two user agents and the wire between them.
pub(super) struct Net {
    pub a: UserAgent,
    pub b: UserAgent,
    pub now: Instant,
    pub ev_a: Vec<UaEvent>,
    pub ev_b: Vec<UaEvent>,
    /// Every message delivered or lost: (from A?, text).
    pub wire: Vec<(bool, String)>,
    /// Returns true for a message (from A?, text) to lose.
    pub lose: LossFilter,
}

impl Net {
    pub fn new(a: UaConfig, b: UaConfig) -> Net {
        let now = Instant::now();
        Net {
            a: UserAgent::new(a, now),
            b: UserAgent::new(b, now),
            now,
            ev_a: Vec::new(),
            ev_b: Vec::new(),
            wire: Vec::new(),
            lose: Box::new(|_, _| false),
        }
    }

    pub fn pair() -> Net {
        Net::new(config(A), config(B))
    }

    /// Delivers everything queued (no time passes) until both are quiet.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                moved = true;
                self.deliver(true, &t);
            }
            while let Some(t) = self.b.poll_transmit() {
                moved = true;
                self.deliver(false, &t);
            }
            while let Some(e) = self.a.poll_event() {
                self.ev_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.ev_b.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    fn deliver(&mut self, from_a: bool, t: &Transmit) {
        let text = String::from_utf8_lossy(&t.bytes).into_owned();
        // Every transmit parses.
        Message::parse(&t.bytes).unwrap_or_else(|e| panic!("unparseable {e}: {text}"));
        self.wire.push((from_a, text.clone()));
        if (self.lose)(from_a, &text) {
            return;
        }
        let (to, source) = if from_a {
            (&mut self.b, addr(A))
        } else {
            (&mut self.a, addr(B))
        };
        assert_eq!(t.dest, to.config().local, "sent to the peer's address");
        to.handle_datagram(self.now, &t.bytes, source, t.transport);
    }

    /// Lets `d` pass, running timers in order and pumping after each.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
        self.a.handle_timeout(end);
        self.b.handle_timeout(end);
        self.pump();
    }

    /// The quiet period after which nothing of a call may be left on either side.
    pub fn assert_quiet(&mut self) {
        self.run_for(Duration::from_secs(400));
        for (name, ua) in [("A", &self.a), ("B", &self.b)] {
            let c = ua.counters();
            assert_eq!(c.calls, 0, "{name}: calls left");
            assert_eq!(c.tx.live(), 0, "{name}: transactions left {:?}", c.tx);
            assert_eq!(c.tracked_transactions, 0, "{name}: owners left");
            assert!(
                ua.poll_timeout().is_none() || c.registrations > 0,
                "{name}: timer left"
            );
        }
    }

    pub fn take_a(&mut self) -> Vec<UaEvent> {
        std::mem::take(&mut self.ev_a)
    }

    pub fn take_b(&mut self) -> Vec<UaEvent> {
        std::mem::take(&mut self.ev_b)
    }

    /// A calls B (`sip:room1@B`) and returns both ids once B saw the INVITE.
    pub fn call(&mut self, headers: Vec<(String, String)>) -> (CallId, CallId) {
        let out = Outbound {
            target: format!("sip:room1@{B}"),
            from: format!("\"Alice\" <sip:alice@{A}>"),
            dest: addr(B),
            transport: Transport::Udp,
            credentials: Some(("gw".into(), "secret".into())),
            headers,
            offer: audio(4000, Direction::SendRecv),
        };
        let ca = self.a.call(self.now, out).unwrap();
        self.pump();
        let cb = incoming(&self.take_b());
        (ca, cb)
    }

    /// A call from A to B answered and ACKed.
    pub fn connected(&mut self) -> (CallId, CallId) {
        let (ca, cb) = self.call(Vec::new());
        self.b
            .accept(self.now, cb, audio(5000, Direction::SendRecv))
            .unwrap();
        self.pump();
        assert!(matches!(
            self.take_a()[..],
            [UaEvent::Connected {
                remote: Some(_),
                ..
            }]
        ));
        assert!(matches!(self.take_b()[..], [UaEvent::Connected { .. }]));
        (ca, cb)
    }

    pub fn sent_by_a(&self, method_or_status: &str) -> usize {
        self.wire
            .iter()
            .filter(|(a, t)| *a && t.starts_with(method_or_status))
            .count()
    }

    pub fn sent_by_b(&self, method_or_status: &str) -> usize {
        self.wire
            .iter()
            .filter(|(a, t)| !*a && t.starts_with(method_or_status))
            .count()
    }
}

pub(super) fn incoming(events: &[UaEvent]) -> CallId {
    match events {
        [UaEvent::IncomingCall { call, .. }] => *call,
        other => panic!("expected one IncomingCall, got {other:?}"),
    }
}

pub(super) fn ended(events: &[UaEvent]) -> EndReason {
    match events.iter().find_map(|e| match e {
        UaEvent::Ended { reason, .. } => Some(reason.clone()),
        _ => None,
    }) {
        Some(r) => {
            let n = events
                .iter()
                .filter(|e| matches!(e, UaEvent::Ended { .. }))
                .count();
            assert_eq!(n, 1, "exactly one Ended: {events:?}");
            r
        }
        None => panic!("no Ended in {events:?}"),
    }
}

#[test]
fn call_answered_then_caller_hangs_up() {
    let mut n = Net::pair();
    let (ca, cb) = n.call(Vec::new());
    n.b.ring(n.now, cb).unwrap();
    n.pump();
    assert!(matches!(
        n.take_a()[..],
        [UaEvent::Ringing {
            status: 180,
            early: None,
            ..
        }]
    ));
    n.b.accept(n.now, cb, audio(5000, Direction::SendRecv))
        .unwrap();
    n.pump();
    let a = n.take_a();
    assert!(
        matches!(&a[..], [UaEvent::Connected { call, remote: Some(sdp) }] if *call == ca && sdp.media[0].port == 5000),
        "{a:?}"
    );
    assert!(matches!(n.take_b()[..], [UaEvent::Connected { .. }]));
    assert_eq!(n.sent_by_a("ACK "), 1);
    assert_eq!(n.a.counters().calls, 1);
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    let a = ended(&n.take_a());
    assert_eq!((a.by, a.status), (EndedBy::Local, None));
    let b = ended(&n.take_b());
    assert_eq!((b.by, b.status), (EndedBy::Remote, None));
    assert_eq!(n.sent_by_b("SIP/2.0 200 OK"), 2, "200 to INVITE and BYE");
    n.assert_quiet();
    assert_eq!(n.a.counters().calls_ended.local, 1);
    assert_eq!(n.b.counters().calls_ended.remote, 1);
}

#[test]
fn call_answered_then_callee_hangs_up() {
    let mut n = Net::pair();
    let (ca, cb) = n.connected();
    n.b.hangup(n.now, cb).unwrap();
    n.pump();
    assert_eq!(ended(&n.take_b()).by, EndedBy::Local);
    let a = n.take_a();
    assert!(
        matches!(&a[..], [UaEvent::Ended { call, reason }] if *call == ca && reason.by == EndedBy::Remote)
    );
    assert_eq!(n.b.hangup(n.now, cb), Err(UaError::UnknownCall));
    n.assert_quiet();
}

#[test]
fn busy_reject() {
    let mut n = Net::pair();
    let (_, cb) = n.call(Vec::new());
    n.b.reject(n.now, cb, 486, "Busy Here").unwrap();
    n.pump();
    let a = ended(&n.take_a());
    assert_eq!((a.by, a.status), (EndedBy::Remote, Some(486)));
    let b = ended(&n.take_b());
    assert_eq!((b.by, b.status), (EndedBy::Local, Some(486)));
    assert_eq!(n.sent_by_a("ACK "), 1, "the layer ACKs the 486");
    n.assert_quiet();
}

#[test]
fn cancel_while_ringing_ends_both_with_487() {
    let mut n = Net::pair();
    let (ca, cb) = n.call(Vec::new());
    n.b.ring(n.now, cb).unwrap();
    n.pump();
    n.take_a();
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    assert_eq!(n.sent_by_a("CANCEL "), 1);
    let a = ended(&n.take_a());
    assert_eq!((a.by, a.status), (EndedBy::Local, Some(487)));
    let b = ended(&n.take_b());
    assert_eq!((b.by, b.status), (EndedBy::Remote, Some(487)));
    n.assert_quiet();
}

#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut n = Net::pair();
    // B's 100 Trying is lost for a while: the CANCEL must wait (RFC 3261 §9.1).
    n.lose = Box::new(|from_a, t| !from_a && t.starts_with("SIP/2.0 100"));
    let (ca, _) = n.call(Vec::new());
    n.a.hangup(n.now, ca).unwrap();
    n.run_for(Duration::from_secs(1));
    assert_eq!(n.sent_by_a("CANCEL "), 0);
    n.lose = Box::new(|_, _| false);
    // A retransmits the INVITE; B answers the retransmission with its 100.
    n.run_for(Duration::from_secs(3));
    assert_eq!(n.sent_by_a("CANCEL "), 1);
    assert_eq!(ended(&n.take_a()).status, Some(487));
    assert_eq!(ended(&n.take_b()).status, Some(487));
    n.assert_quiet();
}

#[test]
fn lost_acks_end_the_call_after_ack_timeout() {
    let mut n = Net::pair();
    n.lose = Box::new(|from_a, t| from_a && t.starts_with("ACK "));
    let (_, cb) = n.call(Vec::new());
    n.b.accept(n.now, cb, audio(5000, Direction::SendRecv))
        .unwrap();
    n.pump();
    assert!(matches!(n.take_a()[..], [UaEvent::Connected { .. }]));
    n.run_for(Duration::from_secs(31));
    assert!(n.take_b().is_empty(), "still waiting for the ACK");
    let retransmitted = n.sent_by_b("SIP/2.0 200 OK");
    assert!(retransmitted >= 8, "2xx sent {retransmitted} times");
    // Every retransmitted 2xx was ACKed again (and lost).
    assert_eq!(n.sent_by_a("ACK "), retransmitted);
    n.run_for(Duration::from_secs(2));
    let b = ended(&n.take_b());
    assert_eq!((b.by, b.reason.as_str()), (EndedBy::Timeout, "No ACK"));
    assert_eq!(ended(&n.take_a()).by, EndedBy::Remote, "the BYE arrived");
    n.assert_quiet();
}

#[test]
fn inbound_auth_accepts_the_right_password() {
    let mut b = config(B);
    b.inbound_auth = Some(InboundAuth {
        realm: "switchboard".into(),
        users: vec![("gw".into(), "secret".into())],
        algorithm: crate::digest::Algorithm::Sha256,
    });
    let mut n = Net::new(config(A), b);
    let (ca, cb) = n.call(Vec::new());
    assert_eq!(n.sent_by_b("SIP/2.0 401"), 1);
    assert_eq!(n.sent_by_a("INVITE "), 2);
    let second = n
        .wire
        .iter()
        .rfind(|(a, t)| *a && t.starts_with("INVITE "))
        .unwrap();
    assert!(second.1.contains("CSeq: 2 INVITE") && second.1.contains("Authorization: Digest"));
    n.b.accept(n.now, cb, audio(5000, Direction::SendRecv))
        .unwrap();
    n.pump();
    n.a.hangup(n.now, ca).unwrap();
    n.pump();
    n.assert_quiet();
}

#[test]
fn inbound_auth_refuses_a_wrong_password() {
    let mut b = config(B);
    b.inbound_auth = Some(InboundAuth {
        realm: "switchboard".into(),
        users: vec![("gw".into(), "other".into())],
        algorithm: crate::digest::Algorithm::Md5,
    });
    let mut n = Net::new(config(A), b);
    let out = Outbound {
        target: format!("sip:room1@{B}"),
        from: format!("<sip:alice@{A}>"),
        dest: addr(B),
        transport: Transport::Udp,
        credentials: Some(("gw".into(), "secret".into())),
        headers: Vec::new(),
        offer: audio(4000, Direction::SendRecv),
    };
    n.a.call(n.now, out).unwrap();
    n.pump();
    assert!(n.take_b().is_empty(), "no IncomingCall");
    let a = ended(&n.take_a());
    assert_eq!((a.by, a.status), (EndedBy::Remote, Some(403)));
    n.assert_quiet();
}

#[test]
fn what_goes_over_tls_names_the_tls_port() {
    let mut cfg = config("192.0.2.1:5060");
    cfg.tls_port = Some(5061);
    let ua = UserAgent::new(cfg, Instant::now());
    let via = ua.via(Transport::Tls);
    assert!(via.starts_with("SIP/2.0/TLS 192.0.2.1:5061;"), "{via}");
    let via = ua.via(Transport::Udp);
    assert!(via.starts_with("SIP/2.0/UDP 192.0.2.1:5060;"), "{via}");
    assert_eq!(
        ua.contact("gw", Transport::Tls).to_string(),
        "<sip:gw@192.0.2.1:5061;transport=tls>"
    );
    assert_eq!(
        ua.contact("gw", Transport::Tcp).to_string(),
        "<sip:gw@192.0.2.1:5060;transport=tcp>"
    );
}
