//! The sans-IO SIP transaction layer (`switchboard_sip::transaction`) fed datagrams,
//! well-formed requests and responses on a few branches, the TU's answers, its own
//! requests and CANCELs, transport errors and time, from three peers over UDP and TCP.
//!
//! Records (see [`crate::records`]), `op % 7`:
//! - 0 raw: `body` as a datagram from peer `who % 3` (`who & 0x10`: over TCP);
//! - 1 request: a well-formed request from peer `who % 3`: method `body[0] % 6` (INVITE,
//!   ACK, CANCEL, BYE, OPTIONS, REGISTER), branch `body[1] % 6` (with the magic cookie
//!   unless `who & 0x80`), sent-by `body[2] % 2`, CSeq `body[3]`;
//! - 2 response: a response to our requests: status `100 + u16(body) % 600`, branch
//!   `body[2] % 6`, CSeq method `body[3] % 6`, To tag `body[4] % 3`;
//! - 3 time: advance `u16(body) % 40000` ms and run the timers due;
//! - 4 the TU answers server transaction `who` of those it was told about, status
//!   `100 + u16(body) % 600`;
//! - 5 the TU sends a request (method `who % 6`, branch `body[0] % 6`, to peer `who % 3`,
//!   `who & 0x10`: TCP), or with `who & 0x40` cancels its INVITE `body[0]`;
//! - 6 the driver reports a transport error for the transaction of a recent transmit.
//!
//! Checks: no panic; never more live transactions than the limit; `poll_timeout` never
//! before the latest `now` and always later after the timers due ran; every byte the layer
//! sends parses as a SIP message; events name only transactions the layer made. At the
//! end, with only time passing: after `64·T1 + T4 + timer C` (timer C set to T4 here,
//! so that a TU that never answers an INVITE is bounded too) nothing is live and no timer
//! is left.

use crate::records::{u16_of, Records};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_sip::transaction::{
    response_to, Config, TransactionLayer, Transport, TxError, TxEvent, TxId,
};
use switchboard_sip::{message::Method, Message};

const PEERS: [&str; 3] = ["192.0.2.1:5060", "192.0.2.2:5070", "[2001:db8::3]:5060"];
const METHODS: [&str; 6] = ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"];
const MAX_TRANSACTIONS: usize = 8;

fn peer(who: u8) -> SocketAddr {
    PEERS[usize::from(who) % PEERS.len()]
        .parse()
        .expect("constant address")
}

fn transport(who: u8) -> Transport {
    if who & 0x10 != 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

fn byte(body: &[u8], i: usize) -> u8 {
    body.get(i).copied().unwrap_or(0)
}

fn request_text(method: &str, branch: &str, sent_by: &str, seq: u8) -> String {
    format!(
        "{method} sip:room@gw.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:room@gw.example>\r\n\
         From: <sip:alice@a.example>;tag=a1\r\n\
         Call-ID: call-1\r\n\
         CSeq: {seq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

struct Harness {
    layer: TransactionLayer,
    now: Instant,
    server_txs: Vec<TxId>,
    client_txs: Vec<TxId>,
    recent: Vec<TxId>,
}

impl Harness {
    fn drain(&mut self) {
        let live = self.layer.counters().live();
        assert!(live <= MAX_TRANSACTIONS, "{live} live transactions");
        if let Some(at) = self.layer.poll_timeout() {
            assert!(at >= self.now, "poll_timeout went back in time");
        }
        while let Some(t) = self.layer.poll_transmit() {
            if let Err(e) = Message::parse(&t.bytes) {
                let text = String::from_utf8_lossy(&t.bytes);
                panic!("the layer sent unparseable bytes ({e}): {text:?}");
            }
            if let Some(tx) = t.tx {
                self.recent.push(tx);
            }
        }
        while let Some(event) = self.layer.poll_event() {
            match event {
                TxEvent::Request { tx, .. } => self.server_txs.push(tx),
                TxEvent::Cancelled { invite, .. } => {
                    assert!(
                        self.server_txs.contains(&invite),
                        "CANCEL of an unknown INVITE"
                    )
                }
                TxEvent::Response { tx, .. } => {
                    assert!(
                        self.client_txs.contains(&tx),
                        "response to a transaction not ours"
                    )
                }
                TxEvent::Ack { .. } | TxEvent::Timeout { .. } | TxEvent::TransportError { .. } => {}
            }
        }
        for list in [&mut self.server_txs, &mut self.client_txs, &mut self.recent] {
            if list.len() > 64 {
                list.drain(..list.len() - 64);
            }
        }
    }

    /// Runs the timers up to `until`, checking that each run moves the next one on.
    fn advance(&mut self, until: Instant) {
        let mut steps = 0u32;
        while let Some(at) = self.layer.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.layer.handle_timeout(at);
            self.drain();
            if let Some(next) = self.layer.poll_timeout() {
                assert!(next > at, "a timer due at {at:?} ran and is still due");
            }
            steps += 1;
            assert!(steps < 1_000_000, "timers never settle");
        }
        self.now = self.now.max(until);
    }

    fn step(&mut self, op: u8, who: u8, body: &[u8]) {
        match op % 7 {
            0 => self
                .layer
                .handle_datagram(self.now, body, peer(who), transport(who)),
            1 => {
                let method = METHODS[usize::from(byte(body, 0)) % METHODS.len()];
                let cookie = if who & 0x80 != 0 { "old" } else { "z9hG4bK" };
                let branch = format!("{cookie}b{}", byte(body, 1) % 6);
                let sent_by = ["pc.a.example", "pc.a.example:5062"][usize::from(byte(body, 2) % 2)];
                let text = request_text(method, &branch, sent_by, byte(body, 3));
                self.layer
                    .handle_datagram(self.now, text.as_bytes(), peer(who), transport(who));
            }
            2 => {
                let status = 100 + u16_of(body) % 600;
                let method = METHODS[usize::from(byte(body, 3)) % METHODS.len()];
                let text = format!(
                    "SIP/2.0 {status} X\r\n\
                     Via: SIP/2.0/UDP gw.example;branch=z9hG4bKc{}\r\n\
                     To: <sip:bob@b.example>;tag=t{}\r\n\
                     From: <sip:gw@gw.example>;tag=g1\r\n\
                     Call-ID: out-1\r\n\
                     CSeq: 1 {method}\r\n\
                     Content-Length: 0\r\n\r\n",
                    byte(body, 2) % 6,
                    byte(body, 4) % 3
                );
                self.layer
                    .handle_datagram(self.now, text.as_bytes(), peer(who), transport(who));
            }
            3 => {
                let until = self.now + Duration::from_millis(u64::from(u16_of(body) % 40_000));
                self.advance(until);
            }
            4 => {
                if self.server_txs.is_empty() {
                    return;
                }
                let tx = self.server_txs[usize::from(who) % self.server_txs.len()];
                let status = 100 + u16_of(body) % 600;
                let request = request_text("INVITE", "z9hG4bKx", "pc.a.example", 1);
                let Ok(request) = Message::parse(request.as_bytes()) else {
                    return;
                };
                let mut response = response_to(&request, status, "X");
                response
                    .headers_mut()
                    .set("To", "<sip:room@gw.example>;tag=r1");
                // Refusals (wrong state, gone) are fine; a panic is not.
                let _ = self.layer.respond(self.now, tx, response);
            }
            5 => {
                if who & 0x40 != 0 {
                    if let Some(&tx) = self
                        .client_txs
                        .get(usize::from(byte(body, 0)) % self.client_txs.len().max(1))
                    {
                        if let Ok(id) = self.layer.cancel(self.now, tx) {
                            self.client_txs.push(id);
                        }
                    }
                    return;
                }
                let method = METHODS[usize::from(who) % METHODS.len()];
                let text = format!(
                    "{method} sip:bob@b.example SIP/2.0\r\n\
                     Via: SIP/2.0/UDP gw.example;branch=z9hG4bKc{}\r\n\
                     To: <sip:bob@b.example>\r\n\
                     From: <sip:gw@gw.example>;tag=g1\r\n\
                     Call-ID: out-1\r\n\
                     CSeq: 1 {method}\r\n\
                     Content-Length: 0\r\n\r\n",
                    byte(body, 0) % 6
                );
                let Ok(request) = Message::parse(text.as_bytes()) else {
                    return;
                };
                let is_ack = matches!(&request, Message::Request(r) if r.method == Method::Ack);
                let result = self.layer.send_request(
                    self.now,
                    request.into_owned(),
                    peer(who),
                    transport(who),
                );
                if is_ack {
                    assert_eq!(result, Err(TxError::AckNotATransaction));
                }
                if let Ok(id) = result {
                    self.client_txs.push(id);
                }
            }
            _ => {
                if let Some(&tx) = self.recent.get(usize::from(who) % self.recent.len().max(1)) {
                    self.layer.transport_error(tx);
                }
            }
        }
        self.drain();
    }
}

pub fn run(data: &[u8]) {
    let config = Config {
        max_transactions: MAX_TRANSACTIONS,
        max_queued: 64,
        timer_c: Config::default().t4,
        ..Config::default()
    };
    let mut h = Harness {
        layer: TransactionLayer::new(config),
        now: Instant::now(),
        server_txs: Vec::new(),
        client_txs: Vec::new(),
        recent: Vec::new(),
    };
    for r in Records::new(data).take(512) {
        h.step(r.op, r.who, r.body);
    }
    let c = h.layer.config();
    let quiet = c.t1 * 64 + c.t4 + c.timer_c;
    let end = h.now + quiet;
    h.advance(end);
    assert_eq!(
        h.layer.counters().live(),
        0,
        "transactions left after {quiet:?} of quiet"
    );
    assert_eq!(
        h.layer.poll_timeout(),
        None,
        "a timer left with nothing live"
    );
}
