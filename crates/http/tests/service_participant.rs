//! The issue's demonstration: a service participant (a test double of the SFU) in a room
//! with two real WebSocket clients, through the real router on a real socket, with a
//! sharded hub. It joins room "r", answers every offer addressed to it, echoes candidates
//! back; the browsers see it as a peer; a client of room "other" can neither reach it nor
//! be heard by it; when it leaves, both browsers get `peer-left`.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_http::{
    router, Grants, HubConfig, IceApi, IceConfig, NetTest, NetTestConfig, OriginPolicy, Signaling,
};
use switchboard_signal::{shard_of_room, RelayKind, ServiceEvent};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// The answer the double sends for an offer: names the offer's sender, so each browser
/// can tell it got its own answer.
fn answer_for(peer: &str) -> String {
    format!(r#""v=0\r\no=sfu 1 1 IN IP4 127.0.0.1\r\ns=answer for {peer}\r\n""#)
}

/// What the SFU double received, in order, for the test to check.
type Log = Arc<Mutex<Vec<ServiceEvent>>>;

fn connect(port: u16) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{port}/ws")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    ws
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The next text message, as sent (raw) and parsed; fails after 10 s.
fn next(ws: &mut Ws) -> (String, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no message in 10 s");
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v = serde_json::from_str(t.as_str()).unwrap();
                return (t.to_string(), v);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// The next message, which must be of type `kind`; acknowledged if numbered.
fn expect(ws: &mut Ws, kind: &str) -> (String, Value) {
    let (raw, v) = next(ws);
    assert_eq!(v["type"], kind, "{raw}");
    if let Some(seq) = v["seq"].as_u64() {
        send(ws, json!({"type": "ack", "seq": seq}));
    }
    (raw, v)
}

/// Nothing arrives for a while (a ping round trip proves the pipe is flowing).
fn expect_quiet(ws: &mut Ws) {
    send(ws, json!({"type": "ping", "id": "quiet"}));
    let (raw, v) = next(ws);
    assert_eq!(v, json!({"type": "pong", "id": "quiet"}), "{raw}");
}

fn raw_field(text: &str, field: &str) -> String {
    let m: std::collections::HashMap<String, Box<RawValue>> = serde_json::from_str(text).unwrap();
    m[field].get().to_string()
}

#[test]
fn a_service_participant_answers_browsers_of_its_room_only() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Several shards, with "r" and "other" on different ones: isolation must hold across
    // shards (within one shard the sans-IO tests cover it).
    let shards = (2..)
        .find(|&n| shard_of_room("r", n) != shard_of_room("other", n))
        .unwrap();
    let signaling = Signaling::new(HubConfig::default(), shards);
    let ice = IceApi::new(IceConfig {
        host: "127.0.0.1".into(),
        udp_port: None,
        tcp_port: None,
        tls_port: None,
        https_turn_port: None,
        secret: None,
        ttl: 600,
        token_secrets: Vec::new(),
        rate_per_minute: 0,
        node: None,
    });
    let net = NetTest::new(NetTestConfig {
        stun_urls: Vec::new(),
        same_ip: None,
        other_ip: None,
    });
    let app = router(ice, signaling.clone(), OriginPolicy::new(&[]), net);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });

    // The SFU double.
    let sfu = signaling
        .join_service(
            "r",
            "SFU",
            Grants {
                publish: true,
                subscribe: true,
                admin: false,
            },
        )
        .unwrap();
    let sfu_id = sfu.peer_id().to_string();
    let log: Log = Arc::default();
    let (leave_tx, leave_rx) = tokio::sync::oneshot::channel::<()>();
    let double = {
        let log = log.clone();
        rt.spawn(async move {
            let mut leave_rx = leave_rx;
            loop {
                let event = tokio::select! {
                    e = sfu.recv() => e,
                    _ = &mut leave_rx => break,
                };
                let Some(event) = event else { break };
                // Logged before answering: once a browser has the answer, the log has the offer.
                log.lock().unwrap().push(event.clone());
                if let ServiceEvent::Relay {
                    from,
                    kind,
                    payload,
                } = &event
                {
                    match kind {
                        RelayKind::Offer => {
                            let sdp = RawValue::from_string(answer_for(from)).unwrap();
                            sfu.send_answer(from, &sdp).unwrap();
                        }
                        RelayKind::Candidate => sfu.send_candidate(from, payload).unwrap(),
                        _ => {}
                    }
                }
            }
            // Whatever is still queued goes to the log too: the test checks nothing from
            // "other" was among it.
            while let Some(event) = sfu.try_recv() {
                log.lock().unwrap().push(event);
            }
            sfu.leave();
        })
    };

    // Two browsers in "r" (first Ada, then Bob), one in "other".
    let mut ada = connect(port);
    send(
        &mut ada,
        json!({"type": "join", "room": "r", "name": "Ada"}),
    );
    let (_, joined) = expect(&mut ada, "joined");
    let ada_id = joined["peerId"].as_str().unwrap().to_string();
    assert_eq!(joined["peers"], json!([{"id": sfu_id, "name": "SFU"}]));
    let mut bob = connect(port);
    send(
        &mut bob,
        json!({"type": "join", "room": "r", "name": "Bob"}),
    );
    let (_, joined) = expect(&mut bob, "joined");
    let bob_id = joined["peerId"].as_str().unwrap().to_string();
    let peers = joined["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    assert!(
        peers.contains(&json!({"id": sfu_id, "name": "SFU"})),
        "{peers:?}"
    );
    let (_, pj) = expect(&mut ada, "peer-joined");
    assert_eq!(pj["peer"]["id"], bob_id);
    let mut eve = connect(port);
    send(
        &mut eve,
        json!({"type": "join", "room": "other", "name": "Eve"}),
    );
    let (_, joined) = expect(&mut eve, "joined");
    assert_eq!(joined["peers"], json!([]), "the SFU of r is not in other");

    // Each browser offers to the SFU and gets its own answer back, byte for byte.
    for (ws, id) in [(&mut ada, &ada_id), (&mut bob, &bob_id)] {
        send(
            ws,
            json!({"type": "offer", "to": sfu_id, "sdp": format!("v=0\r\ns=offer of {id}\r\n")}),
        );
        let (raw, answer) = expect(ws, "answer");
        assert_eq!(answer["from"], sfu_id);
        assert_eq!(raw_field(&raw, "sdp"), answer_for(id));
        let cand = json!({"candidate": format!("candidate:1 1 udp 1 10.0.0.1 9 typ host {id}"), "sdpMid": "0"});
        send(
            ws,
            json!({"type": "candidate", "to": sfu_id, "candidate": cand}),
        );
        let (_, echoed) = expect(ws, "candidate");
        assert_eq!(echoed["candidate"], cand);
        assert_eq!(echoed["from"], sfu_id);
    }

    // "other" cannot reach the SFU by its id, with any kind of message.
    for msg in [
        json!({"type": "offer", "to": sfu_id, "sdp": "v=0\r\n"}),
        json!({"type": "candidate", "to": sfu_id, "candidate": null}),
        json!({"type": "message", "to": sfu_id, "data": "psst"}),
    ] {
        send(&mut eve, msg);
        let (raw, e) = expect(&mut eve, "error");
        assert_eq!(e["code"], "unknown-peer", "{raw}");
    }
    expect_quiet(&mut ada);
    expect_quiet(&mut bob);

    // What the SFU saw: Bob joining, then per browser its offer and its candidate;
    // nothing from "other" (no peer-joined of Eve either).
    let seen = log.lock().unwrap().clone();
    let summary: Vec<(String, String)> = seen
        .iter()
        .map(|e| match e {
            ServiceEvent::PeerJoined(p) => ("peer-joined".into(), p.id.to_string()),
            ServiceEvent::Relay { from, kind, .. } => (kind.wire().into(), from.to_string()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        summary,
        vec![
            s("peer-joined", &ada_id),
            s("peer-joined", &bob_id),
            s("offer", &ada_id),
            s("candidate", &ada_id),
            s("offer", &bob_id),
            s("candidate", &bob_id),
        ]
    );
    match &seen[2] {
        ServiceEvent::Relay { payload, .. } => {
            assert_eq!(
                payload.get(),
                format!(r#""v=0\r\ns=offer of {ada_id}\r\n""#)
            )
        }
        _ => unreachable!(),
    }

    // The SFU leaves: both browsers are told.
    leave_tx.send(()).unwrap();
    rt.block_on(double).unwrap();
    assert_eq!(
        log.lock().unwrap().len(),
        seen.len(),
        "nothing more reached the SFU"
    );
    for ws in [&mut ada, &mut bob] {
        let (raw, left) = expect(ws, "peer-left");
        assert_eq!(left["peerId"], sfu_id, "{raw}");
        assert_eq!(left["reason"], "left");
    }
    expect_quiet(&mut eve);
    let snap = signaling.snapshot();
    assert_eq!((snap.services, snap.connections), (0, 3));
}
