//! The signaling half of `soak` (see soak_mode.rs): WebSocket sessions in rooms of
//! three, and `/api/ice-servers` requests, on one tokio thread.
//!
//! A session joins, sends a message to a room mate every 500 ms and acks what it gets,
//! for 10 to 60 s, then ends one of three ways: `leave`; losing its connection and
//! resuming on a new one a second later (then 5 s more and `leave`); or vanishing
//! without a word, which only the server's grace period ends.

use crate::net::now_ns;
use crate::soak_common::{Rng, Tally};
use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a session keeps: its room mates, the last `seq` seen, its resume token.
struct State {
    peers: Vec<String>,
    last_seq: u64,
    resume: String,
    received: u64,
}

async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(within, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).ok();
        }
    }
}

/// Take one server message into `st`; its type.
fn absorb(st: &mut State, v: &Value, tally: &Tally) -> String {
    let ty = v["type"].as_str().unwrap_or("").to_string();
    if let Some(seq) = v["seq"].as_u64() {
        st.last_seq = st.last_seq.max(seq);
    }
    match ty.as_str() {
        "peer-joined" => {
            if let Some(id) = v["peer"]["id"].as_str() {
                st.peers.push(id.to_string());
            }
        }
        "peer-left" => {
            let id = v["peerId"].as_str().unwrap_or("");
            st.peers.retain(|p| p != id);
        }
        "message" => st.received += 1,
        "error" => tally.add(
            &format!("signal_error_{}", v["code"].as_str().unwrap_or("?")),
            1,
        ),
        _ => {}
    }
    ty
}

/// Talk for `secs`: a message to a room mate every 500 ms, acks every 10 messages.
async fn talk(ws: &mut Ws, st: &mut State, secs: u64, n: &mut u64, tally: &Tally) -> bool {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut acked = 0;
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = tick.tick() => {
                if !st.peers.is_empty() {
                    let to = &st.peers[(*n as usize) % st.peers.len()];
                    let m = json!({"type": "message", "to": to, "data": {"n": *n}});
                    if ws.send(Message::text(m.to_string())).await.is_err() { return false; }
                    *n += 1;
                    tally.add("signal_messages_sent", 1);
                }
                if st.last_seq >= acked + 10 {
                    acked = st.last_seq;
                    let a = json!({"type": "ack", "seq": acked});
                    if ws.send(Message::text(a.to_string())).await.is_err() { return false; }
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) { absorb(st, &v, tally); }
                }
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    }
    true
}

async fn connect(http: SocketAddr) -> Option<Ws> {
    tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .ok()
        .map(|(ws, _)| ws)
}

/// Wait for `ty` (absorbing what comes before it) within `within`.
async fn expect(
    ws: &mut Ws,
    st: &mut State,
    ty: &str,
    within: Duration,
    tally: &Tally,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let v = next_json(ws, left).await?;
        if absorb(st, &v, tally) == ty {
            return Some(v);
        }
    }
}

async fn leave(mut ws: Ws, st: &mut State, tally: &Tally) {
    let _ = ws.send(Message::text(r#"{"type":"leave"}"#)).await;
    match expect(&mut ws, st, "left", Duration::from_secs(5), tally).await {
        Some(_) => tally.add("session_left", 1),
        None => tally.add("session_leave_unanswered", 1),
    }
    let _ = ws.close(None).await;
}

async fn session(http: SocketAddr, room: String, i: u64, life: u64, fate: u64, tally: Tally) {
    let Some(mut ws) = connect(http).await else {
        return tally.add("session_connect_failed", 1);
    };
    let mut st = State {
        peers: Vec::new(),
        last_seq: 0,
        resume: String::new(),
        received: 0,
    };
    let join = json!({"type": "join", "room": room, "name": format!("s{i}")});
    if ws.send(Message::text(join.to_string())).await.is_err() {
        return tally.add("session_connect_failed", 1);
    }
    let Some(joined) = expect(&mut ws, &mut st, "joined", Duration::from_secs(5), &tally).await
    else {
        return tally.add("session_join_failed", 1);
    };
    tally.add("session_joined", 1);
    st.resume = joined["resume"].as_str().unwrap_or("").to_string();
    for p in joined["peers"].as_array().into_iter().flatten() {
        if let Some(id) = p["id"].as_str() {
            st.peers.push(id.to_string());
        }
    }
    let mut n = 0;
    if !talk(&mut ws, &mut st, life, &mut n, &tally).await {
        tally.add("session_lost", 1);
        return;
    }
    match fate {
        0 => leave(ws, &mut st, &tally).await,
        1 => {
            // The transport is lost (no close frame), then comes back.
            drop(ws);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(mut ws) = connect(http).await else {
                return tally.add("session_resume_connect_failed", 1);
            };
            let r = json!({"type": "resume", "token": st.resume, "lastSeq": st.last_seq});
            let _ = ws.send(Message::text(r.to_string())).await;
            if expect(&mut ws, &mut st, "resumed", Duration::from_secs(5), &tally)
                .await
                .is_none()
            {
                return tally.add("session_resume_failed", 1);
            }
            tally.add("session_resumed", 1);
            if talk(&mut ws, &mut st, 5, &mut n, &tally).await {
                leave(ws, &mut st, &tally).await;
            }
        }
        _ => {
            drop(ws);
            tally.add("session_vanished", 1);
        }
    }
    tally.add("signal_messages_received", st.received);
}

/// GET /api/ice-servers from `from`; the status code.
async fn ice_request(http: SocketAddr, from: IpAddr) -> Option<u16> {
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::new(from, 0)).ok()?;
    let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(http))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /api/ice-servers HTTP/1.0\r\nHost: soak\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&out)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

async fn ice_requests(http: SocketAddr, rate: f64, end: u64, tally: Tally) {
    if rate <= 0.0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut k: u8 = 0;
    while now_ns() < end {
        tick.tick().await;
        k = k % 254 + 1;
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 2, k));
        match ice_request(http, from).await {
            Some(code) => tally.add(&format!("ice_{code}"), 1),
            None => tally.add("ice_failed", 1),
        }
    }
}

pub fn run(
    http: SocketAddr,
    rate: f64,
    ice_rate: f64,
    end: u64,
    seed: u64,
    tally: Tally,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ice = tokio::spawn(ice_requests(http, ice_rate, end, tally.clone()));
        let mut rng = Rng::new(seed ^ 0x5151);
        let mut tasks = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
        let mut i = 0u64;
        while now_ns() < end {
            tick.tick().await;
            let left = end.saturating_sub(now_ns()) / 1_000_000_000;
            let life = rng.range(10, 61).min(left.max(1));
            tasks.spawn(session(
                http,
                format!("soak-{}", i / 3),
                i,
                life,
                rng.next() % 3,
                tally.clone(),
            ));
            i += 1;
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        let _ = ice.await;
    });
    Ok(())
}
