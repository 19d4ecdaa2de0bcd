//! The tokio driver against a scripted component server on loopback: the XEP-0114
//! handshake with the right digest, a dropped connection followed by a reconnect, a
//! stanza answered through the connection, a refused secret reported, and a clean stop
//! that ends the stream with `</stream:stream>`.

use std::time::Duration;

use switchboard_xmpp::component::handshake_digest;
use switchboard_xmpp::driver::{ComponentConfig, FederationEvent, XmppFederation};
use switchboard_xmpp::CallsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='s-1' from='sb.a.test'>";

/// Reads until `needle` has arrived; returns all read.
async fn read_until(socket: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("the driver went quiet")
            .expect("read");
        assert!(
            n > 0,
            "the driver closed the connection; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Accepts one connection and completes the handshake for `secret`.
async fn handshake(listener: &TcpListener, secret: &str) -> TcpStream {
    let (mut socket, _) = listener.accept().await.unwrap();
    let hello = read_until(&mut socket, "<stream:stream").await;
    assert!(hello.contains("to='sb.a.test'"), "{hello}");
    socket.write_all(HEADER.as_bytes()).await.unwrap();
    let handshake = read_until(&mut socket, "</handshake>").await;
    assert!(
        handshake.contains(&handshake_digest("s-1", secret)),
        "{handshake}"
    );
    socket.write_all(b"<handshake/>").await.unwrap();
    socket
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<FederationEvent>) -> FederationEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("no event within 5 s")
        .expect("the task ended")
}

#[tokio::test]
async fn handshake_reconnect_stanzas_and_clean_stop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = ComponentConfig::new(&addr, "sb.a.test", "s3cret");
    config.backoff_min = Duration::from_millis(20);
    let (fed, mut events) = XmppFederation::spawn(config, CallsConfig::new("sb.a.test"));

    let first = handshake(&listener, "s3cret").await;
    assert_eq!(next(&mut events).await, FederationEvent::Connected);
    drop(first);
    assert!(matches!(
        next(&mut events).await,
        FederationEvent::Disconnected { .. }
    ));

    let mut second = handshake(&listener, "s3cret").await;
    assert_eq!(next(&mut events).await, FederationEvent::Connected);
    second
        .write_all(b" <iq type='get' id='q1' from='carol@b.test/dino' to='ada@sb.a.test/switchboard'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await
        .unwrap();
    let reply = read_until(&mut second, "</iq>").await;
    assert!(
        reply.contains("id='q1'") || reply.contains("id=\"q1\""),
        "{reply}"
    );
    assert!(reply.contains("urn:xmpp:jingle-message:0"), "{reply}");
    let stats = fed.stats();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            stats.stanzas_in.load(Relaxed),
            stats.stanzas_out.load(Relaxed)
        ),
        (1, 1)
    );
    assert_eq!(stats.connects.load(Relaxed), 2);

    fed.stop().await;
    let rest = read_until(&mut second, "</stream:stream>").await;
    assert!(rest.ends_with("</stream:stream>"), "{rest}");
}

#[tokio::test]
async fn a_refused_secret_is_reported_and_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = ComponentConfig::new(&addr, "sb.a.test", "wrong");
    config.backoff_min = Duration::from_millis(20);
    let (fed, mut events) = XmppFederation::spawn(config, CallsConfig::new("sb.a.test"));
    for _ in 0..2 {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_until(&mut socket, "<stream:stream").await;
        socket.write_all(HEADER.as_bytes()).await.unwrap();
        read_until(&mut socket, "</handshake>").await;
        socket
            .write_all(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
            .await
            .unwrap();
        let FederationEvent::Disconnected { why } = next(&mut events).await else {
            panic!("connected with a wrong secret");
        };
        assert!(why.contains("not-authorized"), "{why}");
    }
    fed.stop().await;
}

#[tokio::test]
async fn no_server_is_reported_and_a_new_call_is_refused_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (fed, mut events) = XmppFederation::spawn(
        ComponentConfig::new(&addr, "sb.a.test", "x"),
        CallsConfig::new("sb.a.test"),
    );
    let FederationEvent::Disconnected { why } = next(&mut events).await else {
        panic!("connected to nothing");
    };
    assert!(why.contains("connecting"), "{why}");
    let offer = include_str!("fixtures/chromium-offer.sdp");
    assert_eq!(
        fed.place("ada@a.test", "bob@b.test", offer).await,
        Err(switchboard_xmpp::driver::FederationError::NotConnected)
    );
    fed.stop().await;
}
