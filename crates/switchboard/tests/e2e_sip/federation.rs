//! SIP federation against the real binary. The federated calls themselves (two
//! Switchboards' `SipFederation` handles calling each other with Chromium's offer and
//! answer: answered, hung up, declined, busy, unknown, cancelled) are tested in-process,
//! in `src/sip/federation/tests.rs`: the handle is the call book's, inside the binary,
//! and nothing outside it drives one yet. What the binary must show on its own:
//!
//! - a browser's WebRTC INVITE to the server's call domain still reaches the rooms while
//!   nothing takes federated calls (the rule of docs/sip.md, "Federation"): the room
//!   gateway answers it ICE-lite, as before federation existed;
//! - a `--sip-federation` value that cannot be used stops the start, naming the option.

use crate::common;

use common::sip_phone::Phone;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard_sip::sdp::SessionDescription;

const OFFER: &str = include_str!("../../../xmpp/tests/fixtures/chromium-offer.sdp");

fn gateway(extra: &[&str]) -> (common::Server, SocketAddr) {
    let low = 10_000 + (std::process::id() % 100) * 100;
    common::sip::gateway(&format!("{low}-{}", low + 99), "100", extra)
}

#[test]
fn a_webrtc_invite_to_the_call_domain_reaches_the_rooms_without_a_federation_consumer() {
    let (server, gw) = gateway(&["--call-domain", "a.test"]);
    let mut phone = Phone::new();
    // Chromium's offer cut to its audio stream, as JsSIP sends (the room gateway takes
    // one m-line; with all three it refuses 488, as it always did).
    let mut offer = SessionDescription::parse(OFFER.as_bytes()).expect("Chromium's offer");
    offer.media.truncate(1);
    for a in &mut offer.attributes {
        if a.name == "group" {
            a.value = Some("BUNDLE 0".into());
        }
    }
    assert!(offer.to_string_crlf().contains("UDP/TLS/RTP/SAVPF"));
    let call = phone.call("sip:demo@a.test".into(), gw, offer, None);
    let answer = phone
        .outcome(call, Duration::from_secs(15))
        .expect("the room gateway answers");
    let text = answer.to_string_crlf();
    // The gateway's own DTLS-SRTP answer for the room leg, not a browser's.
    assert!(text.contains("a=ice-lite"), "{text}");
    assert!(text.contains("a=setup:passive"), "{text}");
    assert!(
        server
            .wait_log("SIP call in the room", Duration::from_secs(5))
            .is_some_and(|l| l.contains("demo")),
        "the call joined room demo"
    );
    phone.ua.hangup(Instant::now(), call).expect("BYE");
    assert!(phone.ended(call, Duration::from_secs(5)));
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
}

#[test]
fn a_bad_federation_peer_stops_the_start_with_the_option_named() {
    for bad in [
        "b.test",
        "b.test=127.0.0.1;transport=sctp",
        "not a domain=127.0.0.1",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "-p",
                "0",
                "--sip-listen",
                "127.0.0.1:0",
                "--sip-federation",
                bad,
            ])
            .output()
            .expect("run switchboard");
        assert!(!out.status.success(), "{bad}: started");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("sip-federation"), "{bad}: {said}");
    }
}
