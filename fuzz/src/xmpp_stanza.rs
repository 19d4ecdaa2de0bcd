//! The XMPP call signalling (`switchboard_xmpp::JingleCalls`) of two Switchboards, A
//! (`sb.a.test`) and B (`sb.b.test`), wired back to back, with B's component stream
//! (`ComponentStream`, handshake done) fed raw bytes from the fuzzer.
//!
//! Records (see [`crate::records`]), `op % 5`:
//! - 0 raw: `body` as bytes from B's XMPP server into its component stream; each stanza
//!   it yields goes to B (a stream error starts a new stream, as the driver reconnects);
//! - 1 stanza to A from `bob@sb.b.test` about known call `who`: kind `body[0] % 10`
//!   (a Jingle IQ of one of six actions, or a JMI message of four kinds), the rest of
//!   `body` as the payload's inner XML;
//! - 2 time: advance `u16(body) * 10` ms and run both machines' timers;
//! - 3 command on known call `who`: `body[0] % 10` place a new call, accept, answer,
//!   decline, busy, unknown, hang up at A, hang up at B, candidate from A, from B;
//! - 4 loss: drop what both machines have queued.
//!
//! After each record what is queued crosses (written as XML and parsed back). Checks:
//! no panic; every stanza written parses back as XML; `poll_timeout` is after `now` once
//! the timers ran; each call ends at most once per side, and only calls that side knew
//! end. At the end, after both sides hang up everything and a day passes: no call, IQ or
//! timer is left.

use crate::records::{u16_of, Records};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use switchboard_xmpp::component::ComponentStream;
use switchboard_xmpp::component::StreamEvent;
use switchboard_xmpp::xmpp_parsers::minidom::Element;
use switchboard_xmpp::{CallEvent, CallsConfig, JingleCalls, TrickleCandidate};

const OFFER: &str = include_str!("../../crates/xmpp/tests/fixtures/chromium-offer.sdp");
const ANSWER: &str = include_str!("../../crates/xmpp/tests/fixtures/chromium-answer.sdp");
const HEADER: &[u8] = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='f'><handshake/>";
const ACTIONS: [&str; 6] = [
    "session-initiate",
    "session-accept",
    "transport-info",
    "session-terminate",
    "session-info",
    "content-add",
];
const JMI: [&str; 4] = ["ringing", "proceed", "reject", "finish"];

struct Side {
    calls: JingleCalls,
    known: BTreeSet<String>,
    ended: BTreeSet<String>,
}

impl Side {
    fn new(domain: &str) -> Side {
        Side {
            calls: JingleCalls::new(CallsConfig::new(domain)),
            known: BTreeSet::new(),
            ended: BTreeSet::new(),
        }
    }

    fn events(&mut self) {
        while let Some(event) = self.calls.poll_event() {
            match event {
                CallEvent::Incoming { sid, .. } => {
                    assert!(self.known.insert(sid), "a call announced twice");
                }
                CallEvent::Ended { sid, .. } => {
                    assert!(self.known.contains(&sid), "an unknown call ended: {sid}");
                    assert!(self.ended.insert(sid), "a call ended twice");
                }
                CallEvent::Ringing { sid }
                | CallEvent::Accepted { sid, .. }
                | CallEvent::RemoteOffer { sid, .. }
                | CallEvent::RemoteCandidate { sid, .. } => {
                    assert!(self.known.contains(&sid), "an event of an unknown call");
                }
            }
        }
    }

    fn outgoing(&mut self) -> Vec<Element> {
        let out: Vec<Element> = std::iter::from_fn(|| self.calls.poll_stanza()).collect();
        out.iter()
            .map(|s| {
                let text = String::from(s);
                text.parse().expect("a stanza we wrote does not parse")
            })
            .collect()
    }
}

fn ready_stream() -> ComponentStream {
    let mut stream = ComponentStream::new("sb.b.test", "secret");
    let ready = stream.feed(HEADER).expect("the handshake");
    assert_eq!(ready, vec![StreamEvent::Ready]);
    stream
}

fn candidate() -> TrickleCandidate {
    TrickleCandidate {
        mid: "0".into(),
        candidate: "candidate:1 1 udp 2122194687 192.0.2.7 40000 typ host generation 0".into(),
        ufrag: Some("uw68".into()),
    }
}

pub fn run(data: &[u8]) {
    let mut now = Instant::now();
    let mut a = Side::new("sb.a.test");
    let mut b = Side::new("sb.b.test");
    let mut stream = ready_stream();
    let mut placed: Vec<String> = Vec::new();
    for r in Records::new(data) {
        let pick = |list: &[String]| {
            (!list.is_empty()).then(|| list[usize::from(r.who) % list.len()].clone())
        };
        match r.op % 5 {
            0 => match stream.feed(r.body) {
                Ok(events) => {
                    for e in events {
                        if let StreamEvent::Stanza(s) = e {
                            let _ = b.calls.feed(now, &s);
                        }
                    }
                }
                Err(_) => stream = ready_stream(),
            },
            1 => {
                let sid = pick(&placed).unwrap_or_else(|| "none".into());
                let kind = usize::from(r.body.first().copied().unwrap_or(0)) % 10;
                let inner = String::from_utf8_lossy(r.body.get(1..).unwrap_or_default());
                let text = if kind < 6 {
                    format!("<iq xmlns='jabber:component:accept' type='set' id='f{kind}' from='bob@sb.b.test/switchboard' to='ada@sb.a.test/switchboard'><jingle xmlns='urn:xmpp:jingle:1' action='{}' sid='{sid}'>{inner}</jingle></iq>", ACTIONS[kind])
                } else {
                    format!("<message xmlns='jabber:component:accept' id='m' from='bob@sb.b.test/switchboard' to='ada@sb.a.test/switchboard'><{0} xmlns='urn:xmpp:jingle-message:0' id='{sid}'>{inner}</{0}></message>", JMI[kind - 6])
                };
                if let Ok(stanza) = text.parse::<Element>() {
                    let _ = a.calls.feed(now, &stanza);
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(u16_of(r.body)) * 10);
                for side in [&mut a, &mut b] {
                    side.calls.handle_timeout(now);
                    assert!(side.calls.poll_timeout().is_none_or(|t| t > now));
                }
            }
            3 => {
                let command = r.body.first().copied().unwrap_or(0) % 10;
                if command == 0 {
                    if let Ok(sid) = a.calls.place(now, "ada@a.test", "bob@b.test", OFFER) {
                        a.known.insert(sid.clone());
                        placed.push(sid);
                    }
                } else if let Some(sid) = pick(&placed) {
                    let _ = match command {
                        1 => b.calls.accept(now, &sid),
                        2 => b.calls.answer(now, &sid, ANSWER),
                        3 => b.calls.decline(&sid),
                        4 => b.calls.busy(&sid),
                        5 => b.calls.unknown(&sid),
                        6 => a.calls.hangup(&sid),
                        7 => b.calls.hangup(&sid),
                        8 => a.calls.local_candidate(now, &sid, candidate()),
                        _ => b.calls.local_candidate(now, &sid, candidate()),
                    };
                }
            }
            _ => {
                a.outgoing();
                b.outgoing();
            }
        }
        exchange(now, &mut a, &mut b, &mut stream);
    }
    // Everything ends, and nothing is left.
    for side in [&mut a, &mut b] {
        for sid in side.calls.sids() {
            side.calls.hangup(&sid).expect("hang up a call in progress");
        }
    }
    exchange(now, &mut a, &mut b, &mut stream);
    now += Duration::from_secs(86_400);
    for side in [&mut a, &mut b] {
        side.calls.handle_timeout(now);
        side.events();
        assert!(side.calls.is_empty(), "calls left after the end");
        assert_eq!(side.calls.poll_timeout(), None, "timers left after the end");
    }
}

/// Moves stanzas between the two until both are quiet; B's go through its stream writer.
fn exchange(now: Instant, a: &mut Side, b: &mut Side, stream: &mut ComponentStream) {
    for _ in 0..64 {
        let from_a = a.outgoing();
        let from_b = b.outgoing();
        if from_a.is_empty() && from_b.is_empty() {
            break;
        }
        for s in &from_b {
            stream.send(s);
        }
        let written = stream.take_output();
        assert!(std::str::from_utf8(&written).is_ok());
        for s in from_a {
            let _ = b.calls.feed(now, &s);
        }
        for s in from_b {
            let _ = a.calls.feed(now, &s);
        }
        a.events();
        b.events();
    }
    a.events();
    b.events();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::record;

    /// A full call, a declined one, garbage on the stream, and time.
    pub(crate) fn seeds() -> Vec<Vec<u8>> {
        let call = [
            record(3, 0, &[0]),
            record(3, 0, &[8]),
            record(3, 0, &[1]),
            record(3, 0, &[2]),
            record(3, 0, &[9]),
            record(2, 0, &[0, 10]),
            record(3, 0, &[6]),
        ]
        .concat();
        let declined = [record(3, 0, &[0]), record(3, 0, &[3])].concat();
        let garbage = [
            record(3, 0, &[0]),
            record(0, 0, b"<iq type='get' id='&#9;' from='x@y/z' to='sb.b.test'><ping xmlns='urn:xmpp:ping'/></iq>"),
            record(1, 0, &[3, b'<', b'x', b'/', b'>']),
            record(0, 0, b"<message from='a@b' to='bob@sb.b.test'><propose xmlns='urn:xmpp:jingle-message:0' id='p1'/></message>"),
            record(4, 0, &[]),
            record(2, 0, &[255, 255]),
        ]
        .concat();
        vec![call, declined, garbage]
    }

    #[test]
    fn seeds_and_random_inputs_run_clean() {
        for seed in seeds() {
            run(&seed);
        }
        // A cheap xorshift stream of mutated seeds (the fuzzer proper does better).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let mut input = seeds()[(next() % 3) as usize].clone();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % input.len();
                input[i] = next() as u8;
            }
            run(&input);
        }
    }
}
