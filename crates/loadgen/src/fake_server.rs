//! For the generator's own tests: a tiny in-process signaling server speaking just
//! enough of both protocols: PeerJS (`OPEN`, `OFFER` routed by `dst` with `src` added)
//! on /peerjs, Switchboard (`join` -> `joined`/`peer-joined`, `message` routed with
//! `from` and `seq`, `resume` -> `resumed`) on /ws. It listens on several ports that
//! share one set of rooms, like the nodes of a cluster; "killing" one drops its
//! connections without a close frame and closes every other connection with 1012
//! shortly after, as the surviving nodes of a real cluster do.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

type Peers = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>;

#[derive(Default)]
struct State {
    peers: Peers,
    rooms: Mutex<HashMap<String, Vec<String>>>,
    /// Resume token -> peer id.
    tokens: Mutex<HashMap<String, String>>,
    next: AtomicU64,
    /// WebSocket connections accepted, by node.
    accepted: Mutex<HashMap<usize, u64>>,
}

pub struct FakeNodes {
    pub addrs: Vec<SocketAddr>,
    kill: Vec<watch::Sender<bool>>,
    state: Arc<State>,
}

impl FakeNodes {
    /// WebSocket connections node `i` has accepted so far.
    pub fn accepted(&self, i: usize) -> u64 {
        self.state
            .accepted
            .lock()
            .unwrap()
            .get(&i)
            .copied()
            .unwrap_or(0)
    }

    /// Drop node `i`'s connections now; close the others' with 1012 after 200 ms.
    pub fn kill(&self, i: usize) {
        let _ = self.kill[i].send(true);
    }
}

/// `n` listeners sharing one set of rooms, on a thread of their own.
pub fn fake_nodes(n: usize) -> FakeNodes {
    let state = Arc::new(State::default());
    let (kill, kill_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| watch::channel(false)).unzip();
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let shared = state.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut all = Vec::new();
            for (i, l) in listeners.into_iter().enumerate() {
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let (state, kills) = (state.clone(), kill_rx.clone());
                all.push(tokio::spawn(async move {
                    loop {
                        let (tcp, _) = l.accept().await.unwrap();
                        tokio::spawn(serve(tcp, state.clone(), i, kills.clone()));
                    }
                }));
            }
            for t in all {
                let _ = t.await;
            }
        });
    });
    FakeNodes {
        addrs,
        kill,
        state: shared,
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
async fn serve(
    tcp: tokio::net::TcpStream,
    st: Arc<State>,
    node: usize,
    mut kills: Vec<watch::Receiver<bool>>,
) {
    let mut uri = String::new();
    let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        uri = req.uri().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
        return;
    };
    *st.accepted.lock().unwrap().entry(node).or_default() += 1;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let peerjs = uri.starts_with("/peerjs");
    let mut me = String::new();
    let mut seq = 0u64;
    if peerjs {
        me = uri
            .split("id=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .into();
        st.peers.lock().unwrap().insert(me.clone(), tx.clone());
        ws.send(Message::text(r#"{"type":"OPEN"}"#)).await.unwrap();
    }
    // Any node's death: ours ends this connection at once, another's with 1012.
    let (dead_tx, mut dead) = mpsc::unbounded_channel::<usize>();
    for (i, k) in kills.iter_mut().enumerate() {
        if *k.borrow() {
            continue; // that node died before this connection
        }
        let (mut k, dead_tx) = (k.clone(), dead_tx.clone());
        tokio::spawn(async move {
            if k.wait_for(|&d| d).await.is_ok() {
                let _ = dead_tx.send(i);
            }
        });
    }
    loop {
        tokio::select! {
            d = dead.recv() => {
                let Some(i) = d else { continue };
                if i == node {
                    return; // dropped: no close frame
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let f = CloseFrame { code: CloseCode::Restart, reason: "moved".into() };
                let _ = ws.send(Message::Close(Some(f))).await;
                return;
            }
            m = ws.next() => {
                let Some(Ok(Message::Text(t))) = m else { break };
                let mut v: Value = serde_json::from_str(t.as_str()).unwrap();
                match v["type"].as_str().unwrap() {
                    "OFFER" => {
                        v["src"] = json!(me);
                        let dst = v["dst"].as_str().unwrap().to_string();
                        let _ = st.peers.lock().unwrap()[&dst].send(v.to_string());
                    }
                    "join" => {
                        me = format!("p{}", st.next.fetch_add(1, Relaxed));
                        st.peers.lock().unwrap().insert(me.clone(), tx.clone());
                        let room = v["room"].as_str().unwrap().to_string();
                        let mut r = st.rooms.lock().unwrap();
                        let members = r.entry(room).or_default();
                        let list: Vec<Value> =
                            members.iter().map(|id| json!({"id": id, "name": "x"})).collect();
                        for id in members.iter() {
                            let _ = st.peers.lock().unwrap()[id].send(
                                json!({"type": "peer-joined", "peer": {"id": me, "name": "x"}}).to_string());
                        }
                        members.push(me.clone());
                        let token = format!("t{me}");
                        st.tokens.lock().unwrap().insert(token.clone(), me.clone());
                        let _ = tx.send(json!({"type": "joined", "protocol": 1, "peerId": me,
                            "peers": list, "resume": token, "grace": 30}).to_string());
                    }
                    "resume" => {
                        let token = v["token"].as_str().unwrap_or_default();
                        let Some(id) = st.tokens.lock().unwrap().remove(token) else {
                            let _ = tx.send(json!({"type": "error", "code": "bad-resume"}).to_string());
                            continue;
                        };
                        me = id;
                        st.peers.lock().unwrap().insert(me.clone(), tx.clone());
                        let token = format!("{token}x");
                        st.tokens.lock().unwrap().insert(token.clone(), me.clone());
                        let _ = tx.send(json!({"type": "resumed", "protocol": 1, "peerId": me,
                            "peers": [], "resume": token, "gap": true}).to_string());
                    }
                    "message" => {
                        let to = v["to"].as_str().unwrap().to_string();
                        let out = json!({"type": "message", "from": me, "data": v["data"]});
                        let _ = st.peers.lock().unwrap()[&to].send(out.to_string());
                    }
                    "HEARTBEAT" | "ack" => {}
                    other => panic!("unexpected {other}"),
                }
            }
            out = rx.recv() => {
                let Some(mut out) = out else { break };
                if !peerjs && !out.contains(r#""type":"joined""#) && !out.contains(r#""type":"resumed""#) {
                    seq += 1;
                    let mut v: Value = serde_json::from_str(&out).unwrap();
                    v["seq"] = json!(seq);
                    out = v.to_string();
                }
                if ws.send(Message::text(out)).await.is_err() { break }
            }
        }
    }
}
