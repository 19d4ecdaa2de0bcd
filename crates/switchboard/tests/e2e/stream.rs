//! STUN over TCP and TLS, and TLS certificates reloaded by SIGHUP.

use crate::common;

use common::{self_signed, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method, TransactionId};

fn binding_request() -> (Vec<u8>, TransactionId) {
    let tid = TransactionId(rand::random());
    let mut b = [0u8; 64];
    let mut w = MessageWriter::new(&mut b, Method::BINDING, Class::Request, tid).expect("w");
    w.fingerprint().expect("fp");
    let n = w.finish();
    (b[..n].to_vec(), tid)
}

fn read_message(r: &mut impl Read) -> Vec<u8> {
    let mut head = [0u8; 20];
    r.read_exact(&mut head).expect("header");
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    [head.to_vec(), body].concat()
}

fn check_binding(resp: &[u8], tid: TransactionId, client: SocketAddr) {
    let m = Message::parse(resp).expect("STUN");
    assert_eq!((m.class, m.tid), (Class::Success, tid));
    assert_eq!(m.xor_address(attr_type::XOR_MAPPED_ADDRESS), Some(client));
    assert!(m.verify_fingerprint());
}

#[test]
fn binding_over_tcp() {
    let s = Server::start(&["--user", "a:b"]);
    let mut c = TcpStream::connect(s.tcp.expect("tcp")).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    for _ in 0..3 {
        let (req, tid) = binding_request();
        c.write_all(&req).expect("write");
        let resp = read_message(&mut c);
        check_binding(&resp, tid, c.local_addr().expect("addr"));
    }
}

/// Accepts any certificate and remembers the one the server showed.
#[derive(Debug)]
struct Recorder(Arc<Mutex<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().expect("lock") = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Do a Binding over TLS; returns the server certificate seen.
fn tls_binding(addr: SocketAddr) -> Vec<u8> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(seen.clone())))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"stun.turn".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = tcp.local_addr().expect("addr");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let (req, tid) = binding_request();
    tls.write_all(&req).expect("write");
    let resp = read_message(&mut tls);
    check_binding(&resp, tid, local);
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"stun.turn"[..]));
    let cert = seen.lock().expect("lock").clone();
    cert
}

#[test]
fn binding_over_tls_and_certificate_reload_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let s = Server::start(&[
        "--user",
        "a:b",
        "--tls-listening-port",
        "0",
        "--cert",
        cert.to_str().expect("path"),
        "--pkey",
        key.to_str().expect("path"),
    ]);
    let tls = s.tls.expect("tls listener");
    let first = tls_binding(tls);
    assert!(!first.is_empty());
    // New certificate on disk, SIGHUP: new connections get it.
    self_signed(dir.path());
    s.signal(libc::SIGHUP);
    assert!(s
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .is_some());
    let second = tls_binding(tls);
    assert_ne!(first, second, "the reloaded certificate is served");
}
