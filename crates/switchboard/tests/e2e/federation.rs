//! The trapezoid over XMPP through the real binary: two Switchboards, `a.test` and
//! `b.test`, each a component of its own Debian prosody, the two prosody servers linked
//! by s2s (dialback), all in a private network namespace. The steps (a call across with
//! trickled candidates, declined, busy, cancelled, unreachable) are common to every
//! federation: common/federated.rs. Here also: the stanzas a call takes, our allow-list
//! and the far side's.
//!
//! Ignored by default (root for the namespace, Debian's `prosody`); scripts/test-all.sh
//! runs it. The lab not coming up is a "harness:" failure, not a verdict.

use crate::common::federated::{self, Carry, Side};
use crate::common::lines::Line;
use crate::common::Server;
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_xmpp::lab::{private_netns, s2s_completed, Pair, SECRET};
use switchboard_xmpp::{parse_sdp, session_from_sdp};

/// One server of the trapezoid: `name`.test, component sb.`name`.test of the prosody on
/// `ip`, federating with `allow`; its user `user` signed in.
fn server(name: &str, ip: &str, allow: &str, user: &str) -> (Server, Side) {
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
    let line = Line::open(addr, user, None);
    (s, Side { addr, line })
}

/// Jingle carries the session, not the text: the same session model.
fn same_session(got: &str, sent: &str) -> bool {
    let model = |s: &str| parse_sdp(s).ok().and_then(|p| session_from_sdp(&p).ok());
    model(got).is_some() && model(got) == model(sent)
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
    let (sa, mut ada) = server("a", "127.0.0.1", "b.test", "ada");
    let (sb, mut bob) = server("b", "127.0.0.2", "a.test", "bob");

    let before = (stanzas(&sa), stanzas(&sb));
    federated::full_call(&mut ada, &mut bob, Carry::Trickle, same_session);
    let used = (stanzas(&sa) - before.0, stanzas(&sb) - before.1);
    eprintln!(
        "stanzas over the component links for one call (set-up and hang-up): A {}, B {}",
        used.0, used.1
    );
    assert!(used.0 >= 5 && used.1 >= 5, "{used:?}");
    for (name, p) in [("a", &lab.a), ("b", &lab.b)] {
        let s2s = s2s_completed(p);
        assert!(s2s.is_some(), "prosody {name}: no s2s connection");
    }
    federated::refusals(&mut ada, &mut bob);
    federated::cancel(&mut ada, &mut bob);
    federated::unreachable(&mut ada, "nobody@b.test");
    // Our own allow-list: refused at once, nothing crosses.
    let e = ada.line.dial_fails("carol@c.test");
    assert_eq!(
        (&e["reason"], &e["detail"]),
        (&json!("unreachable"), &json!("no federation with c.test"))
    );
    // The far side's allow-list: B restarted to federate with c.test only.
    drop(bob);
    drop(sb);
    let (_sb, _bob) = server("b", "127.0.0.2", "c.test", "bob");
    federated::unreachable(&mut ada, "bob@b.test");
    drop(sa);
}
