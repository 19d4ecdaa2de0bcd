//! The sans-IO SIP user agent (`switchboard_sip::ua::UserAgent`) fed datagrams, requests
//! and responses built on what it sent (its Call-IDs, tags, branches and CSeqs, so that
//! the fuzzer reaches the in-dialog paths), the binary's commands and time.
//!
//! Records (see [`crate::records`]), `op % 7`:
//! - 0 raw: `body` as a datagram from peer `who % 2`;
//! - 1 request: method `body[0] % 9` (INVITE, ACK, BYE, CANCEL, INFO, UPDATE, PRACK,
//!   OPTIONS, REGISTER) from peer `who % 2`; `who & 0x20`: inside dialog `body[1]` of
//!   those the user agent made (its tag in To), else out of dialog; `who & 0x40`: with
//!   SDP; `who & 0x80`: `Require: 100rel`; CSeq `body[2]`; branch `body[3] % 4`; the
//!   rest of the body appended as a DTMF INFO body or Session-Expires value;
//! - 2 response: to request `body[0]` of those the user agent sent, status
//!   `100 + u16(body[1..3]) % 600`, To tag `body[3] % 3`; `who & 0x40`: with SDP; `who &
//!   0x80`: reliable (`Require: 100rel`, RSeq `body[4]`); `who & 0x20`: a digest
//!   challenge (401 or 407 carry one anyway);
//! - 3 time: advance `u16(body) % 40000` ms and run the timers due;
//! - 4 command on call `who` of those known: `body[0] % 8` ring, accept, reject(486),
//!   hangup, reoffer, answer_reoffer, DTMF INFO, hangup;
//! - 5 call out (to peer `who % 2`, with credentials when `who & 1`);
//! - 6 register (`who & 1`) or unregister registration `body[0]`.
//!
//! Checks: no panic; every byte sent parses as SIP; `poll_timeout` never before the latest
//! `now`; every call ends with exactly one `Ended` and only calls the user agent made or
//! announced end. At the end, after hanging up every call and de-registering: nothing
//! is live after a quiet period (no call, registration, transaction or owned transaction,
//! no timer).

use crate::records::{u16_of, Records};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_sip::sdp::{Codec, Direction, LocalAudio, SdpSession, SessionDescription};
use switchboard_sip::transaction::{Config, Transport};
use switchboard_sip::ua::{Account, CallId, Outbound, RegId, UaConfig, UaEvent, UserAgent};
use switchboard_sip::Message;

const PEERS: [&str; 2] = ["192.0.2.1:5060", "192.0.2.2:5070"];
const LOCAL: &str = "192.0.2.100:5060";
const METHODS: [&str; 9] = [
    "INVITE", "ACK", "BYE", "CANCEL", "INFO", "UPDATE", "PRACK", "OPTIONS", "REGISTER",
];

fn peer(who: u8) -> SocketAddr {
    PEERS[usize::from(who) % PEERS.len()]
        .parse()
        .expect("constant address")
}

fn byte(body: &[u8], i: usize) -> u8 {
    body.get(i).copied().unwrap_or(0)
}

fn sdp(port: u16) -> SessionDescription {
    SdpSession::new(7, "192.0.2.100".parse().expect("constant")).offer(&LocalAudio {
        addr: "192.0.2.100".parse().expect("constant"),
        port,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        direction: Direction::SendRecv,
        srtp_key: None,
        rtcp_mux: false,
        ptime: 20,
    })
}

/// What the user agent sent: the headers a peer copies into its answers.
struct Sent {
    request_line: String,
    via: String,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
}

/// A dialog the user agent made or answered: (Call-ID, our tag, their tag or none).
type DialogKey = (String, String, String);

struct Harness {
    ua: UserAgent,
    now: Instant,
    sent: Vec<Sent>,
    dialogs: Vec<DialogKey>,
    calls: Vec<CallId>,
    live: BTreeSet<CallId>,
    ended: BTreeSet<CallId>,
    regs: Vec<RegId>,
}

fn tag_of(value: &str) -> String {
    value
        .split(';')
        .find_map(|p| p.trim().strip_prefix("tag="))
        .unwrap_or("")
        .to_owned()
}

impl Harness {
    fn drain(&mut self) {
        if let Some(at) = self.ua.poll_timeout() {
            assert!(at >= self.now, "poll_timeout went back in time");
        }
        while let Some(t) = self.ua.poll_transmit() {
            let m = match Message::parse(&t.bytes) {
                Ok(m) => m,
                Err(e) => panic!(
                    "the UA sent unparseable bytes ({e}): {:?}",
                    String::from_utf8_lossy(&t.bytes)
                ),
            };
            let h = m.headers();
            let get = |n: &str| h.get(n).unwrap_or("").to_owned();
            match &m {
                Message::Request(r) => {
                    self.sent.push(Sent {
                        request_line: format!("{} {}", r.method, r.uri),
                        via: get("Via"),
                        from: get("From"),
                        to: get("To"),
                        call_id: get("Call-ID"),
                        cseq: get("CSeq"),
                    });
                    self.dialogs
                        .push((get("Call-ID"), tag_of(&get("From")), tag_of(&get("To"))));
                }
                Message::Response(_) => {
                    self.dialogs
                        .push((get("Call-ID"), tag_of(&get("To")), tag_of(&get("From"))));
                }
            }
        }
        while let Some(e) = self.ua.poll_event() {
            match e {
                UaEvent::IncomingCall { call, .. } => {
                    assert!(self.live.insert(call), "call announced twice");
                    self.calls.push(call);
                }
                UaEvent::Ended { call, .. } => {
                    assert!(self.live.remove(&call), "Ended for a call not live: {call:?}");
                    assert!(self.ended.insert(call), "ended twice");
                }
                UaEvent::Ringing { call, .. }
                | UaEvent::Connected { call, .. }
                | UaEvent::Reoffer { call, .. }
                | UaEvent::ReofferAnswered { call, .. }
                | UaEvent::Dtmf { call, .. } => {
                    assert!(self.live.contains(&call), "event for a call not live")
                }
                UaEvent::Registration { .. } => {}
            }
        }
        if self.sent.len() > 64 {
            self.sent.drain(..self.sent.len() - 64);
        }
        if self.dialogs.len() > 64 {
            self.dialogs.drain(..self.dialogs.len() - 64);
        }
    }

    fn advance(&mut self, until: Instant) {
        let mut steps = 0u32;
        while let Some(at) = self.ua.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.ua.handle_timeout(self.now);
            self.drain();
            if let Some(next) = self.ua.poll_timeout() {
                assert!(next > at, "a timer due at {at:?} ran and is still due");
            }
            steps += 1;
            assert!(steps < 1_000_000, "timers never settle");
        }
        self.now = self.now.max(until);
        self.ua.handle_timeout(self.now);
        self.drain();
    }

    fn feed(&mut self, text: &str, who: u8) {
        self.ua
            .handle_datagram(self.now, text.as_bytes(), peer(who), Transport::Udp);
    }

    fn request(&mut self, who: u8, body: &[u8]) {
        let method = METHODS[usize::from(byte(body, 0)) % METHODS.len()];
        let extra = String::from_utf8_lossy(body.get(4..).unwrap_or(&[])).into_owned();
        let (call_id, to_tag, from_tag) = match self.dialogs.get(usize::from(byte(body, 1))) {
            Some((c, ours, theirs)) if who & 0x20 != 0 => (
                c.clone(),
                format!(";tag={ours}"),
                if theirs.is_empty() { "f1".to_owned() } else { theirs.clone() },
            ),
            _ => ("fz-1".to_owned(), String::new(), "f1".to_owned()),
        };
        let mut headers = format!(
            "{method} sip:room1@{LOCAL} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {};branch=z9hG4bKfz{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag={from_tag}\r\n\
             To: <sip:room1@gw.example>{to_tag}\r\nCall-ID: {call_id}\r\n\
             CSeq: {} {method}\r\nContact: <sip:alice@{}>\r\n\
             Supported: timer, 100rel\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE, INFO\r\n",
            peer(who),
            byte(body, 3) % 4,
            byte(body, 2),
            peer(who)
        );
        if who & 0x80 != 0 {
            headers.push_str("Require: 100rel\r\nRAck: 1 1 INVITE\r\n");
        }
        let payload = if who & 0x40 != 0 {
            headers.push_str("Content-Type: application/sdp\r\n");
            sdp(6000).to_string_crlf()
        } else if method == "INFO" {
            headers.push_str("Content-Type: application/dtmf-relay\r\n");
            format!("Signal={extra}\r\nDuration=100\r\n")
        } else {
            if !extra.is_empty() && extra.is_ascii() && !extra.contains('\r') {
                headers.push_str(&format!("Session-Expires: {extra}\r\n"));
            }
            String::new()
        };
        let text = format!(
            "{headers}Content-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        self.feed(&text, who);
    }

    fn response(&mut self, who: u8, body: &[u8]) {
        if self.sent.is_empty() {
            return;
        }
        let s = &self.sent[usize::from(byte(body, 0)) % self.sent.len()];
        if s.request_line.starts_with("ACK ") {
            return;
        }
        let status = 100 + u16_of(body.get(1..).unwrap_or(&[])) % 600;
        let mut text = format!(
            "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=t{}\r\n\
             Call-ID: {}\r\nCSeq: {}\r\nContact: <sip:bob@{}>\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n",
            s.via,
            s.from,
            s.to.split(";tag=").next().unwrap_or(""),
            byte(body, 3) % 3,
            s.call_id,
            s.cseq,
            peer(who)
        );
        if who & 0x80 != 0 {
            text.push_str(&format!("Require: 100rel\r\nRSeq: {}\r\n", byte(body, 4)));
        }
        if who & 0x20 != 0 || status == 401 || status == 407 {
            let name = if status == 407 {
                "Proxy-Authenticate"
            } else {
                "WWW-Authenticate"
            };
            text.push_str(&format!(
                "{name}: Digest realm=\"r\", nonce=\"n{}\", qop=\"auth\", algorithm=MD5\r\n",
                byte(body, 5)
            ));
        }
        if status == 423 {
            text.push_str("Min-Expires: 900\r\n");
        }
        if status == 422 {
            text.push_str("Min-SE: 1800\r\n");
        }
        let payload = if who & 0x40 != 0 {
            text.push_str("Content-Type: application/sdp\r\n");
            sdp(7000).to_string_crlf()
        } else {
            String::new()
        };
        let text = format!("{text}Content-Length: {}\r\n\r\n{payload}", payload.len());
        self.feed(&text, who);
    }

    fn command(&mut self, who: u8, body: &[u8]) {
        if self.calls.is_empty() {
            return;
        }
        let call = self.calls[usize::from(who) % self.calls.len()];
        let now = self.now;
        // Refusals (unknown call, wrong state) are fine; a panic is not.
        let _ = match byte(body, 0) % 8 {
            0 => self.ua.ring(now, call),
            1 => self.ua.accept(now, call, sdp(8000)),
            2 => self.ua.reject(now, call, 486, "Busy Here"),
            4 => self.ua.reoffer(now, call, sdp(8002)),
            5 => self.ua.answer_reoffer(now, call, sdp(8004)),
            6 => self
                .ua
                .send_dtmf_info(now, call, char::from(b'0' + byte(body, 1) % 10), 100),
            _ => self.ua.hangup(now, call),
        };
    }

    fn step(&mut self, op: u8, who: u8, body: &[u8]) {
        match op % 7 {
            0 => self
                .ua
                .handle_datagram(self.now, body, peer(who), Transport::Udp),
            1 => self.request(who, body),
            2 => self.response(who, body),
            3 => {
                let until = self.now + Duration::from_millis(u64::from(u16_of(body) % 40_000));
                self.advance(until);
            }
            4 => self.command(who, body),
            5 => {
                let out = Outbound {
                    target: "sip:+4930123@trunk.example".into(),
                    from: "\"Room\" <sip:gw@gw.example>".into(),
                    dest: peer(who),
                    transport: Transport::Udp,
                    credentials: (who & 1 != 0).then(|| ("gw".into(), "pw".into())),
                    headers: Vec::new(),
                    offer: sdp(9000),
                };
                if let Ok(call) = self.ua.call(self.now, out) {
                    assert!(self.live.insert(call), "call id reused");
                    self.calls.push(call);
                }
            }
            _ => {
                if who & 1 != 0 && self.regs.len() < 4 {
                    let mut account =
                        Account::new("sip:gw@example.com", "gw", "pw", peer(who));
                    account.expires = u32::from(u16_of(body));
                    let reg = self.ua.register(self.now, account);
                    self.regs.push(reg);
                } else if let Some(&reg) =
                    self.regs.get(usize::from(byte(body, 0)) % self.regs.len().max(1))
                {
                    self.ua.unregister(self.now, reg);
                }
            }
        }
        if self.calls.len() > 64 {
            self.calls.drain(..self.calls.len() - 64);
        }
        self.drain();
    }
}

pub fn run(data: &[u8]) {
    let tx = Config {
        max_transactions: 32,
        max_queued: 256,
        timer_c: Config::default().t4,
        ..Config::default()
    };
    let mut cfg = UaConfig::new(LOCAL.parse().expect("constant address"));
    cfg.tx = tx;
    cfg.session_expires = Some(90);
    let now = Instant::now();
    let mut h = Harness {
        ua: UserAgent::new(cfg, now),
        now,
        sent: Vec::new(),
        dialogs: Vec::new(),
        calls: Vec::new(),
        live: BTreeSet::new(),
        ended: BTreeSet::new(),
        regs: Vec::new(),
    };
    for r in Records::new(data).take(256) {
        h.step(r.op, r.who, r.body);
    }
    // Wind down: hang up every call, de-register, then only time passes.
    let live: Vec<CallId> = h.live.iter().copied().collect();
    for call in live {
        let _ = h.ua.hangup(h.now, call);
    }
    for reg in h.regs.clone() {
        h.ua.unregister(h.now, reg);
    }
    h.drain();
    let end = h.now + Duration::from_secs(600);
    h.advance(end);
    let c = h.ua.counters();
    assert_eq!(c.calls, 0, "calls left: {c:?}");
    assert!(h.live.is_empty(), "calls not ended: {:?}", h.live);
    assert_eq!(c.registrations, 0, "registrations left: {c:?}");
    assert_eq!(c.tx.live(), 0, "transactions left: {c:?}");
    assert_eq!(c.tracked_transactions, 0, "owned transactions left: {c:?}");
    assert_eq!(h.ua.poll_timeout(), None, "a timer is left");
}
