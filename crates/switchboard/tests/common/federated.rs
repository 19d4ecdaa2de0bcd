//! The trapezoid's direct calls as two servers' devices see them, whatever federation
//! carries them (XMPP/Jingle or SIP): ada on server A (`a.test`) calls bob on server B
//! (`b.test`); devices are signaling clients that play the browsers with Chromium's real
//! offer and answer. Each protocol's test starts its servers and runs these steps.

use super::lines::{candidate, ended, join_call, next, remote_peer, Line};
use serde_json::{json, Value};
use std::net::SocketAddr;

pub const OFFER: &str = include_str!("../../../xmpp/tests/fixtures/chromium-offer.sdp");
pub const ANSWER: &str = include_str!("../../../xmpp/tests/fixtures/chromium-answer.sdp");

/// How candidates cross: trickled one by one (Jingle `transport-info`), or written into
/// the description once gathered (SIP).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    Trickle,
    InDescription,
}

/// One server of the pair: where its devices connect, and its user's line.
pub struct Side {
    pub addr: SocketAddr,
    pub line: Line,
}

/// Whether a description that crossed (`got`) is the one sent (`sent`), as the protocol
/// may rewrite it: the caller's test decides (Jingle: the same session model; SIP: the
/// same text with candidates added).
pub type Same = fn(got: &str, sent: &str) -> bool;

/// The candidate on `port` reaches `ws`'s device: as a candidate message, or inside the
/// description `sdp` it got.
fn candidate_arrived(ws: &mut super::signal_client::WsClient, sdp: &str, port: u16, carry: Carry) {
    let needle = format!(" {port} typ host");
    match carry {
        Carry::Trickle => {
            let c = next(ws, "candidate");
            let text = c["candidate"]["candidate"].as_str().unwrap_or_default();
            assert!(text.contains(&needle), "{c}");
            assert_eq!(c["candidate"]["sdpMid"], "0", "{c}");
        }
        Carry::InDescription => {
            let line = sdp.lines().find(|l| l.contains(&needle));
            assert!(
                line.is_some_and(|l| l.starts_with("a=candidate:")),
                "no candidate on {port} in {sdp}"
            );
            assert!(sdp.contains("a=end-of-candidates"), "{sdp}");
        }
    }
}

/// A full call: bob's line rings naming ada, he accepts, offer, answer and candidates
/// cross between the two call rooms (the far party leading), then ada hangs up and bob
/// hears it. Returns once both sides saw the end.
pub fn full_call(ada: &mut Side, bob: &mut Side, carry: Carry, same: Same) {
    let dialing = ada.line.dial("bob@b.test");
    let (mut ada_call, j) = join_call(ada.addr, &dialing, "Ada");
    let far_bob = remote_peer(&mut ada_call, &j, "bob@b.test");
    // The far party leads: it asks ada's browser for the offer.
    let ask = next(&mut ada_call, "message");
    assert_eq!(
        (&ask["from"], &ask["data"]),
        (&json!(far_bob), &json!({"$switchboard": "offer-me"}))
    );
    ada_call.send(json!({"type": "offer", "to": far_bob, "sdp": OFFER}));
    ada_call.send(json!({"type": "candidate", "to": far_bob, "candidate": candidate(40000)}));
    let inc = bob.line.expect("incoming");
    // Her address, and the display name of her device (crossed as XMPP nick or SIP
    // From display name).
    assert_eq!(
        (&inc["from"], &inc["fromName"]),
        (&json!("ada@a.test"), &json!("ada")),
        "{inc}"
    );
    assert_eq!(ada.line.expect("ringing")["to"], "bob@b.test");
    bob.line.request(json!({"call": "accept", "id": inc["id"]}));
    assert_eq!(bob.line.expect("answered")["by"], "bob@b.test");
    let (mut bob_call, j) = join_call(bob.addr, &inc, "Bob");
    let far_ada = remote_peer(&mut bob_call, &j, "ada@a.test");
    let offer = next(&mut bob_call, "offer");
    assert_eq!(offer["from"], far_ada.as_str());
    let sdp = offer["sdp"].as_str().unwrap_or_default();
    assert!(same(sdp, OFFER), "the offer changed on the way: {sdp}");
    candidate_arrived(&mut bob_call, sdp, 40000, carry);
    bob_call.send(json!({"type": "answer", "to": far_ada, "sdp": ANSWER}));
    bob_call.send(json!({"type": "candidate", "to": far_ada, "candidate": candidate(50000)}));
    let answer = next(&mut ada_call, "answer");
    let sdp = answer["sdp"].as_str().unwrap_or_default();
    assert!(same(sdp, ANSWER), "the answer changed on the way: {sdp}");
    candidate_arrived(&mut ada_call, sdp, 50000, carry);
    assert_eq!(ada.line.expect("answered")["by"], "bob@b.test");
    // Nothing of ada's room but this call crosses: another member's offer, candidate and
    // message to the far party reach nobody on B.
    let (mut eve, j) = super::lines::try_join(
        ada.addr,
        dialing["room"].as_str().unwrap_or_default(),
        "Eve",
        None,
    );
    assert_eq!(j["type"], "joined", "{j}");
    for m in [
        json!({"type": "offer", "to": far_bob, "sdp": OFFER}),
        json!({"type": "candidate", "to": far_bob, "candidate": candidate(60000)}),
        json!({"type": "message", "to": far_bob, "data": {"chat": "hello B"}}),
    ] {
        eve.send(m);
    }
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_millis(800);
    while let Some(m) =
        bob_call.recv(quiet_until.saturating_duration_since(std::time::Instant::now()))
    {
        assert!(
            m["type"] == "peer-joined" || m["type"] == "peer-left",
            "B got something of A's room: {m}"
        );
    }
    drop(eve);
    ada.line
        .request(json!({"call": "hangup", "id": dialing["id"]}));
    assert_eq!(ada.line.expect("ended")["reason"], "hangup");
    let end = bob.line.expect("ended");
    assert_eq!(end["reason"], "hangup", "{end}");
    let left = next(&mut bob_call, "peer-left");
    assert_eq!(left["peerId"], far_ada.as_str(), "{left}");
}

/// ada dials `to` and her device gives the far party its offer; the `dialing` event and
/// her device's connection to the call room.
fn dial_with_offer(ada: &mut Side, to: &str) -> (Value, super::signal_client::WsClient) {
    let dialing = ada.line.dial(to);
    let (mut call, j) = join_call(ada.addr, &dialing, "Ada");
    let far = remote_peer(&mut call, &j, to);
    next(&mut call, "message");
    call.send(json!({"type": "offer", "to": far, "sdp": OFFER}));
    (dialing, call)
}

/// bob declines, then says busy: ada's line ends with that reason, and so does bob's.
pub fn refusals(ada: &mut Side, bob: &mut Side) {
    for (how, reason) in [
        (json!({"call": "decline"}), "declined"),
        (json!({"call": "decline", "reason": "busy"}), "busy"),
    ] {
        let (_dialing, _call) = dial_with_offer(ada, "bob@b.test");
        let inc = bob.line.expect("incoming");
        let mut req = how.clone();
        req["id"] = inc["id"].clone();
        bob.line.request(req);
        let end = ended(&mut ada.line);
        assert_eq!(
            (&end["call"], &end["reason"]),
            (&json!("ended"), &json!(reason)),
            "{how}: {end}"
        );
        assert_eq!(bob.line.expect("ended")["reason"], reason);
    }
}

/// ada cancels while bob's line rings: his ringing stops as cancelled.
pub fn cancel(ada: &mut Side, bob: &mut Side) {
    let (dialing, _call) = dial_with_offer(ada, "bob@b.test");
    bob.line.expect("incoming");
    ada.line
        .request(json!({"call": "cancel", "id": dialing["id"]}));
    assert_eq!(bob.line.expect("ended")["reason"], "cancelled");
    assert_eq!(ended(&mut ada.line)["reason"], "cancelled");
}

/// ada calls `to`, which the far side cannot reach: `unreachable` on her line.
pub fn unreachable(ada: &mut Side, to: &str) -> Value {
    let (_dialing, _call) = dial_with_offer(ada, to);
    let end = ended(&mut ada.line);
    assert_eq!(end["reason"], "unreachable", "{to}: {end}");
    end
}
