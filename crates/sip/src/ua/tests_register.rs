//! Registration tests on fake time against a tiny registrar written here with the
//! stateless digest server ([`NonceIssuer`]): challenge and answer (SHA-256 and MD5),
//! the granted expiry and its refresh, 423 with Min-Expires, failures retried with
//! backoff (503, silence), a wrong password, and de-registration.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::tests::{addr, config, A};
use super::*;
use crate::digest::{Credentials, NonceIssuer, Secret};
use crate::message::Method;
use crate::transaction::response_to;

const R: &str = "127.0.0.1:5080";

struct Registrar {
    issuer: NonceIssuer,
    password: String,
    /// Granted expiry cap.
    max: u32,
    min: u32,
    /// Answer this many REGISTERs 503 first.
    fail: u32,
    silent: bool,
    bindings: HashMap<String, u32>,
    seen: Vec<Message<'static>>,
}

impl Registrar {
    fn new(algorithm: crate::digest::Algorithm) -> Registrar {
        Registrar {
            issuer: NonceIssuer::new(b"registrar-key-0123", "example.com", algorithm, 300),
            password: "alicepw".into(),
            max: 120,
            min: 0,
            fail: 0,
            silent: false,
            bindings: HashMap::new(),
            seen: Vec::new(),
        }
    }

    fn answer(&mut self, m: &Message<'_>) -> Option<Message<'static>> {
        let Message::Request(req) = m else {
            return None;
        };
        assert_eq!(req.method, Method::Register);
        self.seen.push(m.clone().into_owned());
        if self.silent {
            return None;
        }
        let tagged = |mut r: Message<'static>| {
            let to = format!("{};tag=reg", r.headers().get("To").unwrap());
            r.headers_mut().set("To", to);
            Some(r)
        };
        if self.fail > 0 {
            self.fail -= 1;
            return tagged(response_to(m, 503, "Service Unavailable"));
        }
        let unix = switchboard_util::unix_now();
        let Some(auth) = req.headers.get("Authorization") else {
            let mut r = response_to(m, 401, "Unauthorized");
            let c = self.issuer.challenge(unix, "5a17", false);
            r.headers_mut()
                .push("WWW-Authenticate", c.to_header_value());
            return tagged(r);
        };
        let creds = Credentials::parse(auth).unwrap();
        assert_eq!(creds.uri, "sip:example.com");
        assert_eq!(creds.username, "alice");
        if self
            .issuer
            .verify(
                &creds,
                "REGISTER",
                &[],
                Secret::Password(&self.password),
                unix,
            )
            .is_err()
        {
            return tagged(response_to(m, 403, "Forbidden"));
        }
        let asked = req.headers.expires().unwrap().unwrap();
        let contact = req.headers.get("Contact").unwrap().to_owned();
        if asked > 0 && asked < self.min {
            let mut r = response_to(m, 423, "Interval Too Brief");
            r.headers_mut().push("Min-Expires", self.min.to_string());
            return tagged(r);
        }
        let mut r = response_to(m, 200, "OK");
        if asked == 0 {
            self.bindings.remove(&contact);
        } else {
            let granted = asked.min(self.max);
            self.bindings.insert(contact.clone(), granted);
            r.headers_mut().push(
                "Contact",
                format!("<sip:other@192.0.2.1>;expires=3600, {contact};expires={granted}"),
            );
        }
        tagged(r)
    }
}

struct Lab {
    ua: UserAgent,
    registrar: Registrar,
    now: Instant,
    events: Vec<RegState>,
}

impl Lab {
    fn new(registrar: Registrar) -> Lab {
        let now = Instant::now();
        Lab {
            ua: UserAgent::new(config(A), now),
            registrar,
            now,
            events: Vec::new(),
        }
    }

    fn account(&self, expires: u32) -> Account {
        let mut a = Account::new("sip:alice@example.com", "alice", "alicepw", addr(R));
        a.expires = expires;
        a
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.ua.poll_transmit() {
                moved = true;
                assert_eq!(t.dest, addr(R));
                let m = Message::parse(&t.bytes).unwrap();
                if let Some(answer) = self.registrar.answer(&m) {
                    let mut bytes = Vec::new();
                    answer.to_bytes(&mut bytes);
                    self.ua
                        .handle_datagram(self.now, &bytes, addr(R), Transport::Udp);
                }
            }
            while let Some(e) = self.ua.poll_event() {
                match e {
                    UaEvent::Registration { state, .. } => self.events.push(state),
                    other => panic!("{other:?}"),
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        while let Some(at) = self.ua.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.ua.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.ua.handle_timeout(end);
        self.pump();
    }

    fn take(&mut self) -> Vec<RegState> {
        std::mem::take(&mut self.events)
    }

    fn assert_quiet(&mut self) {
        self.run_for(Duration::from_secs(400));
        let c = self.ua.counters();
        assert_eq!(
            (c.registrations, c.tx.live(), c.tracked_transactions),
            (0, 0, 0)
        );
        assert!(self.ua.poll_timeout().is_none());
    }
}

#[test]
fn register_refresh_and_unregister() {
    let mut lab = Lab::new(Registrar::new(crate::digest::Algorithm::Sha256));
    let account = lab.account(600);
    let reg = lab.ua.register(lab.now, account);
    lab.pump();
    assert_eq!(
        lab.take(),
        vec![RegState::Registering, RegState::Registered { expires: 120 }]
    );
    assert_eq!(lab.registrar.bindings.len(), 1);
    let first = &lab.registrar.seen[0];
    assert_eq!(
        first.headers().get("Contact"),
        Some(format!("<sip:alice@{A}>").as_str())
    );
    // Refreshed at min(120/2, 120-30) = 60 s, on the same Call-ID with CSeq counting up.
    lab.run_for(Duration::from_secs(59));
    assert!(lab.take().is_empty());
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.take(), vec![RegState::Registered { expires: 120 }]);
    let seen = &lab.registrar.seen;
    assert_eq!(seen.len(), 4);
    assert_eq!(
        seen[3].headers().get("Call-ID"),
        seen[0].headers().get("Call-ID")
    );
    assert_eq!(seen[3].headers().cseq().unwrap().seq, 4);
    lab.ua.unregister(lab.now, reg);
    lab.pump();
    assert_eq!(lab.take(), vec![RegState::Unregistered]);
    assert!(lab.registrar.bindings.is_empty(), "binding removed");
    let last = lab.registrar.seen.last().unwrap();
    assert_eq!(last.headers().get("Expires"), Some("0"));
    lab.assert_quiet();
}

#[test]
fn interval_too_brief_is_retried_with_min_expires() {
    let mut registrar = Registrar::new(crate::digest::Algorithm::Md5);
    registrar.min = 300;
    registrar.max = 3600;
    let mut lab = Lab::new(registrar);
    let account = lab.account(60);
    let reg = lab.ua.register(lab.now, account);
    lab.pump();
    assert_eq!(
        lab.take(),
        vec![RegState::Registering, RegState::Registered { expires: 300 }]
    );
    lab.ua.unregister(lab.now, reg);
    lab.pump();
    assert_eq!(lab.take(), vec![RegState::Unregistered]);
    lab.assert_quiet();
}

#[test]
fn failures_are_retried_with_backoff() {
    let mut registrar = Registrar::new(crate::digest::Algorithm::Md5);
    registrar.fail = 2;
    let mut lab = Lab::new(registrar);
    let account = lab.account(600);
    let reg = lab.ua.register(lab.now, account);
    lab.pump();
    let failed = |retry: u64| RegState::Failed {
        status: Some(503),
        reason: "Service Unavailable".into(),
        retry_in: Duration::from_secs(retry),
    };
    assert_eq!(lab.take(), vec![RegState::Registering, failed(5)]);
    lab.run_for(Duration::from_secs(5));
    assert_eq!(lab.take(), vec![failed(10)]);
    lab.run_for(Duration::from_secs(10));
    assert_eq!(lab.take(), vec![RegState::Registered { expires: 120 }]);
    // A registrar that goes silent: the refresh times out (64·T1) and is retried from 5 s.
    lab.registrar.silent = true;
    lab.run_for(Duration::from_secs(60 + 32));
    assert_eq!(
        lab.take(),
        vec![RegState::Failed {
            status: None,
            reason: "Request Timeout".into(),
            retry_in: Duration::from_secs(5)
        }]
    );
    lab.registrar.silent = false;
    lab.run_for(Duration::from_secs(5));
    assert_eq!(lab.take(), vec![RegState::Registered { expires: 120 }]);
    lab.ua.unregister(lab.now, reg);
    lab.pump();
    assert_eq!(lab.take(), vec![RegState::Unregistered]);
    lab.assert_quiet();
}

#[test]
fn wrong_password_fails_and_is_retried_later() {
    let mut registrar = Registrar::new(crate::digest::Algorithm::Sha256);
    registrar.password = "other".into();
    let mut lab = Lab::new(registrar);
    let account = lab.account(600);
    let reg = lab.ua.register(lab.now, account);
    lab.pump();
    assert_eq!(
        lab.take(),
        vec![
            RegState::Registering,
            RegState::Failed {
                status: Some(403),
                reason: "Forbidden".into(),
                retry_in: Duration::from_secs(5)
            }
        ]
    );
    assert_eq!(
        lab.registrar.seen.len(),
        2,
        "one challenge answered, no loop"
    );
    lab.run_for(Duration::from_secs(5));
    assert_eq!(lab.registrar.seen.len(), 4);
    lab.ua.unregister(lab.now, reg);
    lab.pump();
    assert_eq!(lab.take().last(), Some(&RegState::Unregistered));
    lab.assert_quiet();
}
