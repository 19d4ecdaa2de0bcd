//! The trapezoid over SIP through the real binary: two Switchboards, `a.test` and
//! `b.test`, whose SIP agents call each other directly (`--sip-federation`), the INVITE
//! carrying the caller's browser offer unchanged but for the candidates the server
//! writes in once gathered (SIP has no trickle here). The steps (a call across,
//! declined, busy, cancelled, unreachable) are common to every federation:
//! common/federated.rs.

use crate::common;

use common::federated::{self, Carry, Side};
use common::lines::Line;
use common::Server;

/// One server: `name`.test, its SIP agent on `sip_port` (0: any), federating with
/// `allow` whose SIP service is at `peer`; its user `user` signed in.
fn server(name: &str, sip_port: u16, peer: &str, allow: &str, user: &str) -> (Server, Side) {
    let domain = format!("{name}.test");
    let listen = format!("127.0.0.1:{sip_port}");
    let low = 10_000 + (std::process::id() % 50) * 200 + if name == "a" { 0 } else { 100 };
    let ports = format!("{low}-{}", low + 99);
    let s = Server::start(&[
        "--call-domain",
        &domain,
        "--sip-listen",
        &listen,
        "--sip-rtp-ports",
        &ports,
        "--sip-federation",
        peer,
        "--federation-allow",
        allow,
    ]);
    let addr = s.http.expect("http");
    let line = Line::open(addr, user, None);
    (s, Side { addr, line })
}

/// SIP carries the text: every line sent is there, in order; only candidates were added.
fn same_text(got: &str, sent: &str) -> bool {
    let kept = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| {
                !l.is_empty() && !l.starts_with("a=candidate:") && l != "a=end-of-candidates"
            })
            .collect()
    };
    kept(got) == kept(sent)
}

#[test]
fn ada_on_a_calls_bob_on_b_over_sip_and_every_end_reaches_the_caller() {
    let a_port = common::free_port_pair();
    let (sb, mut bob) = server(
        "b",
        0,
        &format!("a.test=127.0.0.1:{a_port}"),
        "a.test",
        "bob",
    );
    let b_sip = sb.ready["listeners"]["sip-udp"][0]
        .as_str()
        .expect("B's SIP listener")
        .to_string();
    let (_sa, mut ada) = server("a", a_port, &format!("b.test={b_sip}"), "b.test", "ada");

    federated::full_call(&mut ada, &mut bob, Carry::InDescription, same_text);
    federated::refusals(&mut ada, &mut bob);
    federated::cancel(&mut ada, &mut bob);
    federated::unreachable(&mut ada, "nobody@b.test");
}
