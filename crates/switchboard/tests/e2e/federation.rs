//! The trapezoid over XMPP through the real binary: two Switchboards, `a.test` and
//! `b.test`, each a component of its own Debian prosody, the two prosody servers linked
//! by s2s (dialback), all in a private network namespace. Devices are signaling clients
//! that play the browsers' part with Chromium's real offer and answer: ada on A dials
//! bob@b.test, bob's line on B rings, he accepts, and the offer, answer and candidates
//! cross both XMPP servers between the two call rooms, where the far party is a member
//! with `service: "remote"`. Declined, busy, unreachable (unknown user, a server that is
//! not allowed) and cancelled reach the caller with their reason.
//!
//! Ignored by default (root for the namespace, Debian's `prosody`); scripts/test-all.sh
//! runs it. The lab not coming up is a "harness:" failure, not a verdict.

use crate::calls::{join_call, Line};
use crate::common::signal_client::WsClient;
use crate::common::Server;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_xmpp::lab::{private_netns, s2s_completed, Pair, SECRET};
use switchboard_xmpp::{parse_sdp, session_from_sdp, MediaSession};

const OFFER: &str = include_str!("../../../xmpp/tests/fixtures/chromium-offer.sdp");
const ANSWER: &str = include_str!("../../../xmpp/tests/fixtures/chromium-answer.sdp");

/// One server of the trapezoid: `name`.test, component sb.`name`.test of the prosody on
/// `ip`, federating with `allow`.
fn server(name: &str, ip: &str, allow: &str) -> (Server, SocketAddr) {
    let domain = format!("{name}.test");
    let component = format!("sb.{name}.test");
    let xmpp = format!("{ip}:5347");
    let s = Server::start(&[
        "--call-domain",
        &domain,
        "--xmpp-component",
        &component,
        "--xmpp-server",
        &xmpp,
        "--xmpp-secret",
        SECRET,
        "--federation-allow",
        allow,
    ]);
    // The component link comes up after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.metric("switchboard_xmpp_connects_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "harness: {component} not connected to prosody within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = s.http.expect("http");
    (s, addr)
}

fn model(sdp: &str) -> MediaSession {
    session_from_sdp(&parse_sdp(sdp).expect("SDP")).expect("a session")
}

/// The next relayed message of `kind` (membership changes are skipped).
fn next(ws: &mut WsClient, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(m) = ws.recv(Duration::from_millis(100)) else {
            continue;
        };
        if m["type"] == kind {
            return m;
        }
        assert!(
            m["type"] == "peer-joined" || m["type"] == "peer-left",
            "expected {kind}, got {m}"
        );
    }
    panic!("no {kind} within 10 s");
}

/// The far party's peer id in a call room: from the joined list, or when it joins.
fn remote_peer(ws: &mut WsClient, joined: &Value, name: &str) -> String {
    let is_it = |p: &Value| p["service"] == "remote" && p["name"] == name;
    if let Some(p) = joined["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| is_it(p)))
    {
        return p["id"].as_str().unwrap().to_string();
    }
    let pj = next(ws, "peer-joined");
    assert!(is_it(&pj["peer"]), "{pj}");
    pj["peer"]["id"].as_str().unwrap().to_string()
}

fn candidate(port: u16) -> Value {
    json!({
        "candidate": format!("candidate:7 1 udp 2122194687 127.0.0.1 {port} typ host generation 0"),
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    })
}

/// The next event that is not `ringing`.
fn ended(line: &mut Line) -> Value {
    loop {
        let e = line.event();
        if e["call"] != "ringing" {
            return e;
        }
    }
}

fn stanzas(s: &Server) -> u64 {
    s.metrics()
        .lines()
        .filter(|l| l.starts_with("switchboard_xmpp_stanzas_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
#[ignore = "needs root and Debian's prosody (scripts/test-all.sh installs it and runs ignored tests)"]
fn ada_on_a_calls_bob_on_b_over_xmpp_and_every_end_reaches_the_caller() {
    private_netns();
    let lab = Pair::start();
    let (sa, a) = server("a", "127.0.0.1", "b.test");
    let (sb, b) = server("b", "127.0.0.2", "a.test");
    let mut ada = Line::open(a, "ada", None);
    let mut bob = Line::open(b, "bob", None);

    // A full call: ringing, accept, offer / answer / candidates across, hang-up.
    let before = (stanzas(&sa), stanzas(&sb));
    let dialing = ada.dial("bob@b.test");
    let (mut ada_call, j) = join_call(a, &dialing, "Ada");
    let far_bob = remote_peer(&mut ada_call, &j, "bob@b.test");
    // The far party leads: it asks ada's browser for the offer.
    let ask = next(&mut ada_call, "message");
    assert_eq!(
        (&ask["from"], &ask["data"]),
        (&json!(far_bob), &json!({"$switchboard": "offer-me"}))
    );
    ada_call.send(json!({"type": "offer", "to": far_bob, "sdp": OFFER}));
    ada_call.send(json!({"type": "candidate", "to": far_bob, "candidate": candidate(40000)}));
    let inc = bob.expect("incoming");
    assert_eq!(inc["from"], "ada@a.test", "{inc}");
    assert_eq!(ada.expect("ringing")["to"], "bob@b.test");
    bob.request(json!({"call": "accept", "id": inc["id"]}));
    assert_eq!(bob.expect("answered")["by"], "bob@b.test");
    let (mut bob_call, j) = join_call(b, &inc, "Bob");
    let far_ada = remote_peer(&mut bob_call, &j, "ada@a.test");
    let offer = next(&mut bob_call, "offer");
    assert_eq!(offer["from"], far_ada.as_str());
    assert_eq!(model(offer["sdp"].as_str().unwrap()), model(OFFER));
    let c = next(&mut bob_call, "candidate");
    assert!(
        c["candidate"]["candidate"]
            .as_str()
            .unwrap()
            .contains(" 40000 "),
        "{c}"
    );
    assert_eq!(c["candidate"]["sdpMid"], "0");
    bob_call.send(json!({"type": "answer", "to": far_ada, "sdp": ANSWER}));
    bob_call.send(json!({"type": "candidate", "to": far_ada, "candidate": candidate(50000)}));
    let answer = next(&mut ada_call, "answer");
    assert_eq!(model(answer["sdp"].as_str().unwrap()), model(ANSWER));
    let c = next(&mut ada_call, "candidate");
    assert!(
        c["candidate"]["candidate"]
            .as_str()
            .unwrap()
            .contains(" 50000 "),
        "{c}"
    );
    assert_eq!(ada.expect("answered")["by"], "bob@b.test");
    let used = (stanzas(&sa) - before.0, stanzas(&sb) - before.1);
    eprintln!(
        "stanzas over the component links for one call set-up: A {}, B {}",
        used.0, used.1
    );
    assert!(used.0 >= 5 && used.1 >= 5, "{used:?}");
    ada.request(json!({"call": "hangup", "id": dialing["id"]}));
    assert_eq!(ada.expect("ended")["reason"], "hangup");
    let end = bob.expect("ended");
    assert_eq!(end["reason"], "hangup", "{end}");
    let left = next(&mut bob_call, "peer-left");
    assert_eq!(left["peerId"], far_ada.as_str(), "{left}");
    drop((ada_call, bob_call));
    for (name, p) in [("a", &lab.a), ("b", &lab.b)] {
        assert!(
            s2s_completed(p).is_some(),
            "prosody {name}: no s2s connection"
        );
    }

    // Refusals, each with its reason on the caller's line.
    let mut refused = |how: Value, reason: &str| {
        let dialing = ada.dial("bob@b.test");
        let (mut call, j) = join_call(a, &dialing, "Ada");
        let far = remote_peer(&mut call, &j, "bob@b.test");
        next(&mut call, "message");
        call.send(json!({"type": "offer", "to": far, "sdp": OFFER}));
        let inc = bob.expect("incoming");
        let mut req = how.clone();
        req["id"] = inc["id"].clone();
        bob.request(req);
        let end = ended(&mut ada);
        assert_eq!(
            (&end["call"], &end["reason"]),
            (&json!("ended"), &json!(reason)),
            "{how}: {end}"
        );
        // The device that refused hears the end too.
        assert_eq!(bob.expect("ended")["reason"], reason);
    };
    refused(json!({"call": "decline"}), "declined");
    refused(json!({"call": "decline", "reason": "busy"}), "busy");

    // Cancelled before the answer: bob's ring stops with that reason.
    let dialing = ada.dial("bob@b.test");
    let (mut call, j) = join_call(a, &dialing, "Ada");
    let far = remote_peer(&mut call, &j, "bob@b.test");
    next(&mut call, "message");
    call.send(json!({"type": "offer", "to": far, "sdp": OFFER}));
    bob.expect("incoming");
    ada.request(json!({"call": "cancel", "id": dialing["id"]}));
    assert_eq!(bob.expect("ended")["reason"], "cancelled");
    assert_eq!(ended(&mut ada)["reason"], "cancelled");
    drop(call);

    // Unreachable: nobody on that line, or a domain B does not federate with.
    let unreachable = |line: &mut Line, addr: SocketAddr, to: &str| {
        let dialing = line.dial(to);
        let (mut call, j) = join_call(addr, &dialing, "Caller");
        let far = remote_peer(&mut call, &j, to);
        next(&mut call, "message");
        call.send(json!({"type": "offer", "to": far, "sdp": OFFER}));
        let end = ended(line);
        assert_eq!(end["reason"], "unreachable", "{to}: {end}");
        end
    };
    unreachable(&mut ada, a, "nobody@b.test");
    // Our own allow-list: refused at once, nothing crosses.
    let e = ada.dial_fails("carol@c.test");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("unreachable"), &json!("no federation with c.test"))
    );
    // The far side's allow-list: B restarted to federate with c.test only.
    drop(bob);
    drop(sb);
    let (_sb, b) = server("b", "127.0.0.2", "c.test");
    let _bob = Line::open(b, "bob", None);
    unreachable(&mut ada, a, "bob@b.test");
    drop(sa);
}
