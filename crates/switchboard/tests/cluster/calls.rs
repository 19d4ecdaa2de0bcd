//! Direct calls (`user@domain`) in a cluster: every line lives on one node, the oldest
//! live one, whichever node a device signs in through, so that node's call book sees every
//! user and any two can call each other; when that node dies the lines move together to
//! the next oldest as their devices resume, and calls work again.

use crate::lab::Lab;
use crate::peer::{Event, Peer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchboard_client::signal;

const DOMAIN: &str = "lab.test";
const STEP: Duration = Duration::from_secs(15);

/// The id of the `calls` peer in the line of `p`, from what `p` received since message
/// `from` of its log (its `joined` or `resumed` list, or a `peer-joined`), waiting for it.
fn calls_peer(lab: &Lab, p: &mut Peer, from: usize) -> String {
    let find = |ms: &[Value]| {
        ms.iter().rev().find_map(|m| {
            let listed = m["peers"].as_array().into_iter().flatten();
            let joined = (m["type"] == "peer-joined").then_some(&m["peer"]);
            listed
                .chain(joined)
                .find(|peer| peer["service"] == "calls")
                .and_then(|peer| peer["id"].as_str().map(str::to_string))
        })
    };
    if let Some(id) = find(&p.log[from..]) {
        return id;
    }
    let m = p
        .wait_for(lab, &[1, 2, 3], STEP, |m| {
            m["type"] == "peer-joined" && m["peer"]["service"] == "calls"
        })
        .unwrap_or_else(|| panic!("{}: no calls peer in the line", p.name));
    m["peer"]["id"].as_str().expect("id").to_string()
}

/// Wait until `p` resumed once more (its connection closes when its node, or its
/// line's node, dies), resuming on `alive` as the SDK would.
fn resumed(lab: &Lab, p: &mut Peer, alive: &[usize]) {
    let before = p.resumes.len();
    let deadline = Instant::now() + crate::FAILOVER;
    while p.resumes.len() == before {
        assert!(Instant::now() < deadline, "{} did not resume", p.name);
        if let Event::Closed(_) = p.next(Duration::from_millis(200)) {
            p.resume(lab, alive, deadline);
        }
    }
}

/// A call event (`data.call == call`) for `p`, from its line's calls peer.
fn event(lab: &Lab, p: &mut Peer, call: &str) -> Value {
    let m = p
        .wait_for(lab, &[1, 2, 3], STEP, |m| {
            m["type"] == "message" && m["data"]["call"] == call
        })
        .unwrap_or_else(|| panic!("{}: no `{call}` within {STEP:?}: {:?}", p.name, p.log));
    m["data"].clone()
}

/// `from` (on its line, `calls` its calls peer) calls `to`, who accepts: both join the
/// call room through their own nodes and a message crosses it.
fn call(lab: &Lab, from: (&mut Peer, &str), to: (&mut Peer, &str)) {
    let ((caller, caller_calls), (callee, callee_calls)) = (from, to);
    let to_address = format!("{}@{DOMAIN}", callee.name);
    let dial = json!({"call": "dial", "to": to_address, "ref": 1});
    assert!(caller.send_text(&signal::message(caller_calls, &dial)));
    let dialing = event(lab, caller, "dialing");
    let incoming = event(lab, callee, "incoming");
    assert_eq!(incoming["from"], format!("{}@{DOMAIN}", caller.name));
    assert_eq!(incoming["id"], dialing["id"]);
    let accept = json!({"call": "accept", "id": incoming["id"]});
    assert!(callee.send_text(&signal::message(callee_calls, &accept)));
    event(lab, caller, "answered");
    let room = dialing["room"].as_str().expect("the call's room");
    let mut a = Peer::join(lab, caller.node, room, "A");
    let mut b = Peer::join(lab, callee.node, room, "B");
    a.wait_for(lab, &[1, 2, 3], STEP, |m| m["type"] == "peer-joined")
        .expect("the callee joins the call room");
    assert!(a.send_number(&b.id.clone(), 1));
    b.wait_for(lab, &[1, 2, 3], STEP, |m| m["data"]["n"] == 1)
        .expect("the caller's message in the call room");
}

#[test]
#[ignore = "needs root and network namespaces: sudo cargo test -p switchboard --test cluster -- --ignored"]
fn users_signed_in_through_different_nodes_call_each_other_also_after_a_kill() {
    let lab = Lab::up();
    for n in 1..=3 {
        lab.start_node(n, &["--call-domain", DOMAIN]);
    }
    let mut ada = Peer::join(&lab, 1, "@ada", "ada");
    let mut bob = Peer::join(&lab, 2, "@bob", "bob");
    let st = lab.status();
    let home = st.owner("@ada").expect("ada's line has a node").to_string();
    assert_eq!(st.owner("@bob"), Some(home.as_str()), "lines on one node");
    eprintln!("lines on {home}; ada signs in through n1, bob through n2");
    let ada_calls = calls_peer(&lab, &mut ada, 0);
    let bob_calls = calls_peer(&lab, &mut bob, 0);
    call(&lab, (&mut bob, &bob_calls), (&mut ada, &ada_calls));

    // The lines' node dies: the devices resume (on their own node, or another when it
    // was theirs), the lines come back together on one node, and calls work again.
    let dead: usize = home[1..].parse().expect("nN");
    let killed = Instant::now();
    lab.kill_node(dead);
    let (ada_from, bob_from) = (ada.log.len(), bob.log.len());
    let alive: Vec<usize> = (1..=3).filter(|n| *n != dead).collect();
    for p in [&mut ada, &mut bob] {
        resumed(&lab, p, &alive);
    }
    let st = lab.status();
    let new_home = st.owner("@ada").expect("ada's line has a node").to_string();
    assert_ne!(new_home, home);
    assert_eq!(
        st.owner("@bob"),
        Some(new_home.as_str()),
        "lines on one node"
    );
    eprintln!(
        "lines on {new_home} {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let ada_calls = calls_peer(&lab, &mut ada, ada_from);
    let bob_calls = calls_peer(&lab, &mut bob, bob_from);
    call(&lab, (&mut ada, &ada_calls), (&mut bob, &bob_calls));
}
