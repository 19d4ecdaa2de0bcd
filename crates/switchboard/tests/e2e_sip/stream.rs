//! Calls out over connections the gateway opens, hermetic: the real binary, a room
//! member (str0m, a 1,000 Hz Opus tone), and a far end made of our own SIP stack on a
//! TCP listener (plain, or TLS with a test CA from rcgen) with G.711 RTP. What a user
//! would check:
//!
//! - `sip:bob@host;transport=tcp` is dialled on a TCP connection the gateway opens (Via
//!   and Contact say TCP), the far end answers on it, media flows both ways, the far
//!   end's BYE comes on the same connection and ends the call; the gateway then closes
//!   the connection and every gauge, connections included, is back to 0;
//! - over TLS the far end's certificate is verified against `--sip-tls-ca` and its name:
//!   a certificate for another name fails the call at once (no SIP reaches the far end),
//!   the right one carries a call like TCP does;
//! - a far end whose connection vanishes mid-call (no BYE, no RTP) is hung up after
//!   `--sip-rtp-timeout`: the BYE finds no connection to make and the call still ends
//!   cleanly.

use crate::common;
use crate::sip_far_end;

use sip_far_end::{dial, far_end_hangs_up, gateway, member, talk, FarEnd};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn assert_sent_over(far: &FarEnd, transport: &str) {
    let invite = far
        .received
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .expect("the INVITE");
    assert!(
        invite.contains(&format!("Via: SIP/2.0/{transport} ")),
        "{invite}"
    );
    assert!(
        invite.contains(&format!(";transport={}>", transport.to_ascii_lowercase())),
        "Contact: {invite}"
    );
}

#[test]
fn a_call_out_over_tcp_connects_carries_media_and_ends() {
    let (server, _gw) = gateway(&[]);
    let mut b = member(&server, "dialtcp");
    let mut far = FarEnd::new(None);
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp", far.port());
    let (status, reply) = dial(&server, "dialtcp", &to);
    assert_eq!(status, 201, "{reply}");
    let peer = talk(&mut b, &mut far);
    assert_sent_over(&far, "TCP");
    assert_eq!(server.metric("switchboard_sip_connections"), 1);
    far_end_hangs_up(&server, &mut b, &mut far, &peer);
    assert_eq!(
        server.metric("switchboard_sip_calls_total{outcome=\"ended\"}"),
        1
    );
}

/// A CA, and server configurations for certificates it signed for `names`.
struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "switchboard test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        TestCa { cert, key }
    }

    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
        Arc::new(cfg)
    }
}

#[test]
fn a_call_out_over_tls_verifies_the_certificate_and_its_name() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tmp");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).expect("write CA");
    let ca_path = ca_file.to_str().expect("path");
    let (server, _gw) = gateway(&["--sip-tls-ca", ca_path]);
    let mut b = member(&server, "dialtls");

    // A certificate for another name: the handshake fails, the call ends, nothing of
    // SIP reaches the far end. The call was in B's room for that moment, as the next
    // one will be.
    let mut wrong = FarEnd::new(Some(ca.server("127.0.0.2")));
    let to = format!("sip:bob@127.0.0.1:{};transport=tls", wrong.port());
    let (status, reply) = dial(&server, "dialtls", &to);
    assert_eq!(status, 201, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("switchboard_sip_calls_total{outcome=\"ended\"}") < 1 {
        assert!(
            Instant::now() < deadline,
            "the call to a wrongly named certificate did not end"
        );
        b.pump(Duration::from_millis(5)).expect("pump B");
        wrong.pump();
    }
    while !b
        .left_peers
        .iter()
        .any(|p| b.joined_peers.iter().any(|j| j["id"] == *p))
    {
        assert!(
            Instant::now() < deadline,
            "B did not see the failed call come and go: joined {:?}, left {:?}",
            b.joined_peers,
            b.left_peers
        );
        b.pump(Duration::from_millis(5)).expect("pump B");
    }
    assert!(wrong.received.is_empty(), "{:?}", wrong.received);
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
    assert_eq!(server.metric("switchboard_sip_connections"), 0);
    drop(wrong);

    // The right name (sips: is TLS).
    let mut far = FarEnd::new(Some(ca.server("127.0.0.1")));
    let to = format!("sips:bob@127.0.0.1:{}", far.port());
    let (status, reply) = dial(&server, "dialtls", &to);
    assert_eq!(status, 201, "{reply}");
    let peer = talk(&mut b, &mut far);
    assert_sent_over(&far, "TLS");
    far_end_hangs_up(&server, &mut b, &mut far, &peer);
    assert_eq!(
        server.metric("switchboard_sip_calls_total{outcome=\"ended\"}"),
        2
    );
}

#[test]
fn a_far_end_whose_connection_vanishes_is_hung_up_cleanly() {
    let (server, _gw) = gateway(&["--sip-rtp-timeout", "3"]);
    let mut b = member(&server, "dialgone");
    let mut far = FarEnd::new(None);
    let to = format!("sip:bob@127.0.0.1:{};transport=tcp", far.port());
    let (status, reply) = dial(&server, "dialgone", &to);
    assert_eq!(status, 201, "{reply}");
    let peer = talk(&mut b, &mut far);
    // No BYE, no RTP, the connection and the listener gone.
    far.vanish();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !b.left_peers.contains(&peer) {
        assert!(
            Instant::now() < deadline,
            "the call to a vanished far end stayed"
        );
        b.pump(Duration::from_millis(10)).expect("pump B");
    }
    common::sip::assert_nothing_left(&server, Duration::from_secs(10));
    assert_eq!(server.metric("switchboard_sip_connections"), 0);
}
