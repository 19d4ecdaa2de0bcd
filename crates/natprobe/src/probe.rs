//! The probe state machine: which Binding requests to send when, and what the answers mean.

use crate::report::{Behaviour, Report, Udp};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_stun::{
    attr_type, decode_error_code, Class, Message, MessageWriter, Method, TransactionId,
};

/// CHANGE-REQUEST flag: answer from the other IP (RFC 5780 §7.2).
pub const CHANGE_IP: u32 = 0x4;
/// CHANGE-REQUEST flag: answer from the other port.
pub const CHANGE_PORT: u32 = 0x2;

/// The driver's three UDP sockets, each bound to its own local port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sock {
    /// Mapping tests I-III; also where a hairpinned request should arrive.
    Mapping,
    /// Filtering tests II and III, on a mapping no other test has touched.
    Filtering,
    /// Sends one request to the mapping socket's public address.
    Hairpin,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub sock: Sock,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Retransmission and transaction ids.
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// First retransmission timeout (RFC 8489 §6.2.1: 500 ms); it doubles after each try.
    pub rto: Duration,
    /// Transmissions per request; after the last the probe waits once more as long as
    /// the interval before it, then counts the test as unanswered.
    pub tries: u32,
    /// Transaction ids are this XOR a counter; give it 12 random bytes.
    pub tid_seed: [u8; 12],
}

impl ProbeConfig {
    /// 500 ms doubling, 3 tries: sends at 0, 0.5 and 1.5 s, gives up at 3.5 s.
    pub fn new(tid_seed: [u8; 12]) -> Self {
        ProbeConfig {
            rto: Duration::from_millis(500),
            tries: 3,
            tid_seed,
        }
    }

    /// How long one unanswered request keeps a test open.
    pub fn give_up_after(&self) -> Duration {
        (0..self.tries).map(|k| self.rto * (1 << k.min(16))).sum()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    MapI,
    MapII,
    MapIII,
    FilterII,
    FilterIII,
    Hairpin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Answer {
    from: SocketAddr,
    mapped: Option<SocketAddr>,
    other: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Pending,
    Answered(Answer),
    Error(u16),
    TimedOut,
    Cancelled,
}

struct Txn {
    test: Test,
    sock: Sock,
    to: SocketAddr,
    tid: TransactionId,
    data: Vec<u8>,
    sent: u32,
    deadline: Instant,
    outcome: Outcome,
}

/// One run of NAT behaviour discovery against one server.
pub struct Probe {
    cfg: ProbeConfig,
    server: SocketAddr,
    local: Option<SocketAddr>,
    txns: Vec<Txn>,
    queue: VecDeque<Transmit>,
    counter: u32,
    started: bool,
    notes: Vec<String>,
}

impl Probe {
    /// Start with test I to `server`. `local` is the mapping socket's own address (its
    /// port and the IP the route to the server uses), which tells "no NAT" apart.
    pub fn new(
        server: SocketAddr,
        local: Option<SocketAddr>,
        cfg: ProbeConfig,
        now: Instant,
    ) -> Self {
        let mut p = Probe {
            cfg,
            server,
            local,
            txns: Vec::new(),
            queue: VecDeque::new(),
            counter: 0,
            started: false,
            notes: Vec::new(),
        };
        p.start(Test::MapI, Sock::Mapping, server, 0, now);
        p
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// When [`Probe::handle_timeout`] wants to be called; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending().map(|t| t.deadline).min()
    }

    /// True when every test has an outcome; [`Probe::report`] is then final.
    pub fn is_done(&self) -> bool {
        self.pending().next().is_none() && self.queue.is_empty()
    }

    /// Retransmit or give up on requests whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (rto, tries) = (self.cfg.rto, self.cfg.tries);
        for t in self.txns.iter_mut() {
            if t.outcome != Outcome::Pending || t.deadline > now {
                continue;
            }
            if t.sent < tries {
                self.queue.push_back(Transmit {
                    sock: t.sock,
                    to: t.to,
                    data: t.data.clone(),
                });
                t.deadline = now + rto * (1 << t.sent.min(16));
                t.sent += 1;
            } else {
                t.outcome = Outcome::TimedOut;
            }
        }
        self.advance(now);
    }

    /// A datagram arrived on `sock` from `from`. Anything that is not an answer to one
    /// of our requests (or our own hairpinned request) is ignored.
    pub fn handle_input(&mut self, sock: Sock, from: SocketAddr, data: &[u8], now: Instant) {
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        if msg.method != Method::BINDING {
            return;
        }
        let Some(t) = self
            .txns
            .iter_mut()
            .find(|t| t.tid == msg.tid && t.outcome == Outcome::Pending)
        else {
            return;
        };
        let hairpinned = t.test == Test::Hairpin && sock == Sock::Mapping;
        match msg.class {
            Class::Request if hairpinned => {
                t.outcome = Outcome::Answered(Answer {
                    from,
                    mapped: None,
                    other: None,
                });
            }
            Class::Success if t.sock == sock && t.test != Test::Hairpin => {
                let mapped = msg
                    .xor_address(attr_type::XOR_MAPPED_ADDRESS)
                    .or_else(|| msg.address(attr_type::MAPPED_ADDRESS));
                t.outcome = Outcome::Answered(Answer {
                    from,
                    mapped,
                    other: msg.address(attr_type::OTHER_ADDRESS),
                });
            }
            Class::Error if t.sock == sock && t.test != Test::Hairpin => {
                let code = msg
                    .get(attr_type::ERROR_CODE)
                    .and_then(decode_error_code)
                    .map_or(0, |c| c.0);
                t.outcome = Outcome::Error(code);
            }
            _ => return,
        }
        self.advance(now);
    }

    /// What is known so far (final once [`Probe::is_done`]).
    pub fn report(&self) -> Report {
        let mut notes = self.notes.clone();
        let map1 = self.outcome(Test::MapI);
        let udp = match map1 {
            Some(Outcome::Answered(_)) => Udp::Answered,
            Some(Outcome::Error(code)) => Udp::ErrorResponse(code),
            _ => Udp::NoAnswer,
        };
        let first = self.answer(Test::MapI);
        let public = first.and_then(|a| a.mapped);
        let other = first.and_then(|a| a.other).filter(|_| self.valid_other());
        let mapping = other.and_then(|o| self.mapping(public?, o, &mut notes));
        let filtering = other.and_then(|o| self.filtering(o, &mut notes));
        let hairpinning = match self.outcome(Test::Hairpin) {
            Some(Outcome::Answered(_)) => Some(true),
            Some(Outcome::TimedOut) => Some(false),
            _ => None,
        };
        Report {
            server: self.server,
            udp,
            local: self.local,
            public,
            other,
            mapping,
            filtering,
            hairpinning,
            notes,
        }
    }

    fn pending(&self) -> impl Iterator<Item = &Txn> {
        self.txns.iter().filter(|t| t.outcome == Outcome::Pending)
    }

    fn outcome(&self, test: Test) -> Option<Outcome> {
        self.txns.iter().find(|t| t.test == test).map(|t| t.outcome)
    }

    fn answer(&self, test: Test) -> Option<Answer> {
        match self.outcome(test)? {
            Outcome::Answered(a) => Some(a),
            _ => None,
        }
    }

    /// OTHER-ADDRESS must differ from the primary address in IP and port, same family.
    fn valid_other(&self) -> bool {
        let Some(o) = self.answer(Test::MapI).and_then(|a| a.other) else {
            return false;
        };
        o.is_ipv4() == self.server.is_ipv4()
            && o.ip() != self.server.ip()
            && o.port() != self.server.port()
    }

    fn mapping(
        &self,
        m1: SocketAddr,
        other: SocketAddr,
        notes: &mut Vec<String>,
    ) -> Option<Behaviour> {
        let alt_ip = SocketAddr::new(other.ip(), self.server.port());
        let m2 = match self.outcome(Test::MapII)? {
            Outcome::Answered(a) => a.mapped?,
            Outcome::Pending | Outcome::Cancelled => return None,
            _ => {
                notes.push(format!(
                    "no answer from the server's other address {alt_ip}, so the mapping is unknown"
                ));
                return None;
            }
        };
        if m2 == m1 {
            return Some(Behaviour::EndpointIndependent);
        }
        match self.outcome(Test::MapIII)? {
            Outcome::Answered(a) if a.mapped? == m2 => Some(Behaviour::AddressDependent),
            Outcome::Answered(_) => Some(Behaviour::AddressAndPortDependent),
            Outcome::Pending | Outcome::Cancelled => None,
            _ => {
                notes.push(format!(
                    "no answer from {other}: the mapping is address-dependent or \
                     address-and-port-dependent"
                ));
                None
            }
        }
    }

    fn filtering(&self, other: SocketAddr, notes: &mut Vec<String>) -> Option<Behaviour> {
        let want2 = other;
        let want3 = SocketAddr::new(self.server.ip(), other.port());
        let test2 = self.outcome(Test::FilterII)?;
        let test3 = self.outcome(Test::FilterIII)?;
        let mut verdict = |test: Outcome, want: SocketAddr| -> Option<bool> {
            match test {
                Outcome::Answered(a) if a.from == want => Some(true),
                Outcome::Answered(a) => {
                    notes.push(format!(
                        "the server answered a CHANGE-REQUEST from {} instead of {want}, so \
                         the filtering is unknown",
                        a.from
                    ));
                    None
                }
                Outcome::TimedOut => Some(false),
                Outcome::Error(code) => {
                    notes.push(format!(
                        "the server answered a CHANGE-REQUEST with error {code}, so the \
                         filtering is unknown"
                    ));
                    None
                }
                Outcome::Pending | Outcome::Cancelled => None,
            }
        };
        if verdict(test2, want2)? {
            return Some(Behaviour::EndpointIndependent);
        }
        Some(if verdict(test3, want3)? {
            Behaviour::AddressDependent
        } else {
            Behaviour::AddressAndPortDependent
        })
    }

    /// Start the tests that test I's answer makes possible; cancel the ones an answer
    /// makes moot; nothing else to do once everything has an outcome.
    fn advance(&mut self, now: Instant) {
        if !self.started {
            let Some(first) = self.answer(Test::MapI) else {
                return;
            };
            self.started = true;
            let Some(m1) = first.mapped else {
                self.notes
                    .push("the server's answer carried no mapped address".into());
                return;
            };
            if first.from != self.server {
                self.notes.push(format!(
                    "test I was answered from {} rather than {}",
                    first.from, self.server
                ));
            }
            if let Some(o) = first.other.filter(|_| !self.valid_other()) {
                self.notes.push(format!(
                    "OTHER-ADDRESS {o} does not differ from {} in both IP and port, so \
                     RFC 5780 tests cannot run",
                    self.server
                ));
            }
            if m1.is_ipv4() == self.server.is_ipv4() {
                self.start(Test::Hairpin, Sock::Hairpin, m1, 0, now);
            }
            if let Some(o) = first.other.filter(|_| self.valid_other()) {
                let alt_ip = SocketAddr::new(o.ip(), self.server.port());
                self.start(Test::MapII, Sock::Mapping, alt_ip, 0, now);
                self.start(Test::MapIII, Sock::Mapping, o, 0, now);
                let server = self.server;
                self.start(
                    Test::FilterII,
                    Sock::Filtering,
                    server,
                    CHANGE_IP | CHANGE_PORT,
                    now,
                );
                self.start(Test::FilterIII, Sock::Filtering, server, CHANGE_PORT, now);
            }
        }
        let m1 = self.answer(Test::MapI).and_then(|a| a.mapped);
        if m1.is_some() && self.answer(Test::MapII).and_then(|a| a.mapped) == m1 {
            self.cancel(Test::MapIII);
        }
        let other = self.answer(Test::MapI).and_then(|a| a.other);
        if let (Some(a), Some(o)) = (self.answer(Test::FilterII), other) {
            if a.from == o {
                self.cancel(Test::FilterIII);
            }
        }
    }

    fn cancel(&mut self, test: Test) {
        for t in self.txns.iter_mut() {
            if t.test == test && t.outcome == Outcome::Pending {
                t.outcome = Outcome::Cancelled;
            }
        }
    }

    fn start(&mut self, test: Test, sock: Sock, to: SocketAddr, change: u32, now: Instant) {
        self.counter += 1;
        let mut tid = self.cfg.tid_seed;
        for (b, c) in tid[8..].iter_mut().zip(self.counter.to_be_bytes()) {
            *b ^= c;
        }
        let tid = TransactionId(tid);
        let mut buf = [0u8; 64];
        let Ok(n) = binding_request(&mut buf, tid, change) else {
            // 64 bytes always hold a Binding request with CHANGE-REQUEST and FINGERPRINT.
            self.notes.push("could not encode a Binding request".into());
            return;
        };
        let data = buf[..n].to_vec();
        self.queue.push_back(Transmit {
            sock,
            to,
            data: data.clone(),
        });
        self.txns.push(Txn {
            test,
            sock,
            to,
            tid,
            data,
            sent: 1,
            deadline: now + self.cfg.rto,
            outcome: Outcome::Pending,
        });
    }
}

/// A Binding request, with CHANGE-REQUEST when `change` is not zero.
fn binding_request(
    out: &mut [u8],
    tid: TransactionId,
    change: u32,
) -> Result<usize, switchboard_stun::WriteError> {
    let mut w = MessageWriter::new(out, Method::BINDING, Class::Request, tid)?;
    if change != 0 {
        w.u32(attr_type::CHANGE_REQUEST, change)?;
    }
    w.fingerprint()?;
    Ok(w.finish())
}
