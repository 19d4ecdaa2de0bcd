//! Signaling across the nodes of a cluster, three nodes in one process sharing the
//! in-memory cluster store (`switchboard_cluster::memory`): the same rules as one server
//! (isolation, order, resume) whatever node each client reached, and what happens when a
//! node dies, is cut off, or the store forgets everything. The Redis store is tested in
//! crates/cluster and, under real nodes, in crates/switchboard/tests/cluster.rs.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchboard_cluster::memory::{MemoryCluster, MemoryNet};
use switchboard_cluster::{Cluster, NodeId};
use switchboard_signal::{Connection, HubConfig, Out, Placement, Signaling, MOVE_CODE};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

struct Node {
    sig: Arc<Signaling>,
    store: Arc<MemoryCluster>,
}

impl Node {
    fn id(&self) -> NodeId {
        self.store.me().id.clone()
    }
}

fn start(net: &MemoryNet, name: &str, cfg: &HubConfig) -> Node {
    let store = net.join(name);
    let sig = Signaling::clustered(cfg.clone(), 2, store.clone(), Placement::Local);
    tokio::spawn(sig.clone().run_cluster());
    Node { sig, store }
}

fn three(cfg: &HubConfig) -> (MemoryNet, Vec<Node>) {
    let net = MemoryNet::new();
    let nodes = ["n1", "n2", "n3"]
        .iter()
        .map(|n| start(&net, n, cfg))
        .collect();
    (net, nodes)
}

/// Three nodes whose rooms turn SFU at `threshold` members: node 1's SFU registered (its
/// rooms can turn SFU), and the edge requests nodes 2 and 3 get.
struct EdgeNodes {
    _net: MemoryNet,
    nodes: Vec<Node>,
    _sfu: tokio::sync::mpsc::UnboundedReceiver<std::sync::Arc<str>>,
    edges2: tokio::sync::mpsc::UnboundedReceiver<std::sync::Arc<str>>,
    edges3: tokio::sync::mpsc::UnboundedReceiver<std::sync::Arc<str>>,
}

fn edge_nodes(threshold: usize) -> EdgeNodes {
    let cfg = HubConfig {
        sfu_threshold: Some(threshold),
        ..HubConfig::default()
    };
    let (net, nodes) = three(&cfg);
    EdgeNodes {
        _net: net,
        _sfu: nodes[0].sig.service_requests(switchboard_signal::SFU),
        edges2: nodes[1].sig.service_requests(switchboard_signal::SFU_EDGE),
        edges3: nodes[2].sig.service_requests(switchboard_signal::SFU_EDGE),
        nodes,
    }
}

/// `name` joins `room` through `node`, naming `sfu_node` as the node whose SFU it uses;
/// the connection and its `joined`.
async fn join_naming(node: &Node, room: &str, name: &str, sfu_node: &str) -> (Connection, Value) {
    let c = node.sig.connect();
    let msg = json!({"type": "join", "room": room, "name": name, "sfuNode": sfu_node});
    send(&c, msg).await;
    let j = next_of(&c, "joined").await;
    (c, j)
}

async fn send(c: &Connection, v: Value) {
    c.receive(&v.to_string()).await;
}

/// The next thing for `c`: a message, or `{"closed": code}`, or `{"ended": true}`.
async fn next(c: &Connection) -> Value {
    loop {
        match timeout(WAIT, c.recv()).await {
            Ok(Some(Out::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Out::Close(code))) => return json!({ "closed": code }),
            Ok(Some(Out::Keepalive)) => continue,
            Ok(None) => return json!({ "ended": true }),
            Err(_) => panic!("nothing came within {WAIT:?}"),
        }
    }
}

/// The next message of type `kind` for `c`, skipping others (peer-joined, ...).
async fn next_of(c: &Connection, kind: &str) -> Value {
    for _ in 0..50 {
        let m = next(c).await;
        if m["type"] == kind {
            return m;
        }
        assert!(
            m.get("closed").is_none() && m.get("ended").is_none(),
            "closed while waiting for {kind}: {m}"
        );
    }
    panic!("no {kind}");
}

/// Nothing more comes for `c` for a while.
async fn quiet(c: &Connection) {
    if let Ok(Some(out)) = timeout(Duration::from_millis(300), c.recv()).await {
        panic!("unexpected {out:?}");
    }
}

/// Join `room` on `node`; the `joined` message.
async fn join(node: &Node, room: &str, name: &str) -> (Connection, Value) {
    let c = node.sig.connect();
    send(&c, json!({"type": "join", "room": room, "name": name})).await;
    let j = next_of(&c, "joined").await;
    (c, j)
}

#[tokio::test]
async fn one_room_over_three_nodes_relays_in_order_and_stays_isolated() {
    // No rate limit: 300 messages go at once.
    let cfg = HubConfig {
        rate: 0,
        ..HubConfig::default()
    };
    let (net, nodes) = three(&cfg);
    let (a, ja) = join(&nodes[0], "demo", "Ada").await;
    let (b, jb) = join(&nodes[1], "demo", "Bob").await;
    let (c, jc) = join(&nodes[2], "demo", "Cy").await;
    assert_eq!(
        net.stored_owner("demo"),
        Some(nodes[0].id()),
        "the first joiner's node"
    );
    assert_eq!(jb["peers"].as_array().unwrap().len(), 1);
    assert_eq!(jc["peers"].as_array().unwrap().len(), 2, "{jc}");
    let (ida, idb, idc) = (&ja["peerId"], &jb["peerId"], &jc["peerId"]);
    assert_eq!(next_of(&a, "peer-joined").await["peer"]["id"], *idb);
    assert_eq!(next_of(&a, "peer-joined").await["peer"]["id"], *idc);
    assert_eq!(next_of(&b, "peer-joined").await["peer"]["id"], *idc);
    // A stranger in another room, on the node that bridges Bob.
    let (x, _) = join(&nodes[1], "other", "Xena").await;

    // Bob (node 2) to Cy (node 3), both bridged to node 1: 300 messages, in order.
    for i in 0..300 {
        send(&b, json!({"type": "message", "to": idc, "data": {"i": i}})).await;
    }
    for i in 0..300 {
        let m = next_of(&c, "message").await;
        assert_eq!(m["from"], *idb);
        assert_eq!(m["data"]["i"], i, "in order, none twice");
    }
    // Cy offers to Ada (on the owner).
    send(&c, json!({"type": "offer", "to": ida, "sdp": "v=0\r\n"})).await;
    let o = next_of(&a, "offer").await;
    assert_eq!((&o["from"], &o["sdp"]), (idc, &json!("v=0\r\n")));
    // Xena cannot reach them, and hears nothing of them.
    send(&x, json!({"type": "message", "to": ida, "data": 1})).await;
    assert_eq!(next(&x).await["code"], "unknown-peer");
    quiet(&x).await;
    quiet(&a).await;
    let snap = nodes[1].sig.snapshot();
    assert_eq!(
        (snap.bridged, snap.hosted),
        (1, 0),
        "Bob is bridged; Xena's room is here"
    );
    assert_eq!(
        nodes[0].sig.snapshot().hosted,
        2,
        "Bob and Cy are hosted by the owner"
    );
}

#[tokio::test]
async fn a_session_resumes_on_another_node_and_nobody_sees_a_leave() {
    let (_net, nodes) = three(&HubConfig::default());
    let (a, _) = join(&nodes[0], "r", "Ada").await;
    let (b, jb) = join(&nodes[1], "r", "Bob").await;
    next_of(&a, "peer-joined").await;
    // Bob's transport to node 2 breaks; he resumes on node 3.
    b.close();
    let token = jb["resume"].as_str().unwrap();
    let b2 = nodes[2].sig.connect();
    send(&b2, json!({"type": "resume", "token": token, "lastSeq": 0})).await;
    let r = next_of(&b2, "resumed").await;
    assert_eq!(r["peerId"], jb["peerId"]);
    assert_eq!(r["gap"], false, "the owner kept his messages");
    send(
        &a,
        json!({"type": "message", "to": jb["peerId"], "data": "hi"}),
    )
    .await;
    assert_eq!(next_of(&b2, "message").await["data"], "hi");
    quiet(&a).await;
}

#[tokio::test]
async fn the_room_survives_the_death_of_its_node() {
    let (net, nodes) = three(&HubConfig::default());
    let (a, ja) = join(&nodes[0], "r", "Ada").await;
    let (b, jb) = join(&nodes[1], "r", "Bob").await;
    let (c, jc) = join(&nodes[2], "r", "Cy").await;
    for _ in 0..2 {
        next_of(&a, "peer-joined").await;
    }
    next_of(&b, "peer-joined").await;
    // Bob has seen one numbered message (Cy's arrival): his lastSeq is 1.
    net.kill(&nodes[0].id());
    drop(a);
    // The bridges close their clients' transports so that they resume.
    assert_eq!(next(&b).await, json!({ "closed": MOVE_CODE }));
    assert_eq!(next(&c).await, json!({ "closed": MOVE_CODE }));
    // Bob resumes where he was (node 2), which takes the room over from the records.
    let b2 = nodes[1].sig.connect();
    let tb = jb["resume"].as_str().unwrap();
    send(&b2, json!({"type": "resume", "token": tb, "lastSeq": 1})).await;
    let r = next_of(&b2, "resumed").await;
    assert_eq!(r["peerId"], jb["peerId"]);
    assert_eq!(r["gap"], true, "what the dead node had queued is gone");
    assert_eq!(
        r["peers"].as_array().unwrap().len(),
        2,
        "Ada and Cy, suspended: {r}"
    );
    assert_eq!(net.stored_owner("r"), Some(nodes[1].id()));
    // Ada, whose node died, resumes on node 3: bridged to node 2.
    let a2 = nodes[2].sig.connect();
    let ta = ja["resume"].as_str().unwrap();
    send(&a2, json!({"type": "resume", "token": ta, "lastSeq": 2})).await;
    assert_eq!(next_of(&a2, "resumed").await["peerId"], ja["peerId"]);
    // Messages flow again, numbered on from what each had seen.
    send(
        &a2,
        json!({"type": "message", "to": jb["peerId"], "data": "back"}),
    )
    .await;
    let m = next_of(&b2, "message").await;
    assert_eq!(m["data"], "back");
    assert_eq!(m["seq"], 2, "after Bob's lastSeq 1");
    // Cy has not resumed yet: his messages wait for him.
    send(
        &b2,
        json!({"type": "message", "to": jc["peerId"], "data": "wait"}),
    )
    .await;
    let c2 = nodes[2].sig.connect();
    let tc = jc["resume"].as_str().unwrap();
    send(&c2, json!({"type": "resume", "token": tc, "lastSeq": 0})).await;
    next_of(&c2, "resumed").await;
    assert_eq!(next_of(&c2, "message").await["data"], "wait");
    // Nobody saw anybody leave.
    for conn in [&a2, &b2, &c2] {
        quiet(conn).await;
    }
}

#[tokio::test]
async fn clients_of_a_dead_bridge_are_suspended_then_time_out() {
    let cfg = HubConfig {
        grace: Duration::from_millis(500),
        ..HubConfig::default()
    };
    let (net, nodes) = three(&cfg);
    let (a, _) = join(&nodes[0], "r", "Ada").await;
    let (_b, jb) = join(&nodes[1], "r", "Bob").await;
    next_of(&a, "peer-joined").await;
    assert_eq!(nodes[0].sig.snapshot().hosted, 1);
    net.kill(&nodes[1].id());
    // The owner suspends Bob's session; he never comes back, so after the grace period
    // Ada sees him leave, by timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(nodes[0].sig.snapshot().suspended, 1);
    tokio::time::sleep(cfg.grace).await;
    nodes[0].sig.handle_timeouts(std::time::Instant::now());
    let left = next_of(&a, "peer-left").await;
    assert_eq!(
        (&left["peerId"], &left["reason"]),
        (&jb["peerId"], &json!("timeout"))
    );
}

#[tokio::test]
async fn a_node_cut_off_hands_its_room_over_when_it_is_back() {
    let (net, nodes) = three(&HubConfig::default());
    let (a, ja) = join(&nodes[0], "r", "Ada").await;
    let (b, jb) = join(&nodes[1], "r", "Bob").await;
    next_of(&a, "peer-joined").await;
    net.cut(&nodes[0].id());
    // Bob's bridge sees node 1 down; Bob resumes on node 2, which takes the room over.
    assert_eq!(next(&b).await, json!({ "closed": MOVE_CODE }));
    let b2 = nodes[1].sig.connect();
    send(
        &b2,
        json!({"type": "resume", "token": jb["resume"], "lastSeq": 0}),
    )
    .await;
    assert_eq!(
        next_of(&b2, "resumed").await["peers"][0]["id"],
        ja["peerId"]
    );
    assert_eq!(net.stored_owner("r"), Some(nodes[1].id()));
    // Node 1 comes back: it finds the room taken and sends Ada to the new owner.
    net.heal(&nodes[0].id());
    assert_eq!(next(&a).await, json!({ "closed": MOVE_CODE }));
    let a2 = nodes[0].sig.connect();
    send(
        &a2,
        json!({"type": "resume", "token": ja["resume"], "lastSeq": 1}),
    )
    .await;
    let r = next_of(&a2, "resumed").await;
    assert_eq!(r["peers"][0]["id"], jb["peerId"]);
    assert_eq!(
        nodes[0].sig.snapshot().rooms,
        0,
        "node 1 holds no copy of the room"
    );
    send(
        &b2,
        json!({"type": "message", "to": ja["peerId"], "data": "one room"}),
    )
    .await;
    assert_eq!(next_of(&a2, "message").await["data"], "one room");
    quiet(&b2).await;
}

#[tokio::test]
async fn after_the_store_forgets_everything_each_node_writes_its_rooms_again() {
    let (net, nodes) = three(&HubConfig::default());
    let (_a, ja) = join(&nodes[0], "r", "Ada").await;
    let (_b, jb) = join(&nodes[1], "r", "Bob").await;
    let (_x, _) = join(&nodes[2], "s", "Xena").await;
    let stored = |room: &str| net.stored_records(room).len();
    assert_eq!(stored("r"), 3, "two members and the room");
    net.reset();
    assert_eq!(stored("r"), 0);
    for _ in 0..50 {
        if stored("r") == 3 && stored("s") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((stored("r"), stored("s")), (3, 2));
    assert_eq!(net.stored_owner("r"), Some(nodes[0].id()));
    assert_eq!(net.stored_owner("s"), Some(nodes[2].id()));
    let ids: Vec<String> = net
        .stored_records("r")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for id in [&ja["peerId"], &jb["peerId"]] {
        assert!(ids.contains(&id.as_str().unwrap().to_string()), "{ids:?}");
    }
}

#[tokio::test]
async fn a_room_ends_everywhere_when_its_last_member_leaves() {
    let (net, nodes) = three(&HubConfig::default());
    let (a, _) = join(&nodes[0], "r", "Ada").await;
    let (b, _) = join(&nodes[1], "r", "Bob").await;
    send(&b, json!({"type": "leave"})).await;
    assert_eq!(next_of(&b, "left").await["type"], "left");
    send(&a, json!({"type": "leave"})).await;
    next_of(&a, "left").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(net.stored_owner("r"), None);
    assert!(net.stored_records("r").is_empty());
    // Bob's connection, now without a session, joins another room owned by node 3.
    let (_z, _) = join(&nodes[2], "t", "Zed").await;
    send(&b, json!({"type": "join", "room": "t", "name": "Bob"})).await;
    let j = next_of(&b, "joined").await;
    assert_eq!(j["peers"][0]["name"], "Zed");
}

#[tokio::test]
async fn services_open_rooms_only_where_the_cluster_says() {
    let (net, nodes) = three(&HubConfig::default());
    let (_a, _) = join(&nodes[0], "r", "Ada").await;
    // A service that joins without asking (a call room the calls peer opens) claims it
    // afterwards; when another node held it, this node's copy goes and the service sees
    // the end of its events.
    let sp = nodes[2]
        .sig
        .join_service_as("r", "SIP", "sip", switchboard_signal::Grants::DEFAULT)
        .unwrap();
    let ended = timeout(WAIT, async {
        loop {
            match sp.recv().await {
                None => break,
                Some(_) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the copy on node 3 was not dropped");
    assert_eq!(nodes[2].sig.snapshot().rooms, 0);
    assert_eq!(net.stored_owner("r"), Some(nodes[0].id()), "still node 1's");
    let own = nodes[2]
        .sig
        .join_service_as(
            "call-1",
            "calls",
            "calls",
            switchboard_signal::Grants::DEFAULT,
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(net.stored_owner("call-1"), Some(nodes[2].id()));
    drop(own);
}

/// A phone call or a WHIP session for a room of another node: its participant joins the
/// room there, the room turns SFU there, and its own node is asked for an edge, whose
/// name it is told to talk to. A mesh-only room says so; a room nobody holds is claimed
/// for the node the call reached.
#[tokio::test]
async fn a_media_member_joins_a_room_of_another_node_through_its_own_edge() {
    use switchboard_signal::{Grants, SFU, SFU_EDGE};
    let cfg = HubConfig {
        sfu_threshold: Some(3),
        ..HubConfig::default()
    };
    let (net, nodes) = three(&cfg);
    let mut sfu1 = nodes[0].sig.service_requests(SFU);
    let mut sfu2 = nodes[1].sig.service_requests(SFU);
    let mut edges2 = nodes[1].sig.service_requests(SFU_EDGE);
    let (a, ja) = join(&nodes[0], "r", "Ada").await;
    assert_eq!(ja["topology"], "mesh", "one member, under the threshold");
    let phone = nodes[1]
        .sig
        .join_sfu_service("r", "Carol", "sip", Grants::DEFAULT)
        .await
        .unwrap()
        .expect("an SFU room");
    assert!(phone.participant.is_remote());
    assert_eq!(&*phone.sfu, "SFU@n2");
    assert_eq!(net.stored_owner("r"), Some(nodes[0].id()), "still node 1's");
    let asked = timeout(WAIT, sfu1.recv()).await.unwrap().unwrap();
    assert_eq!(&*asked, "r", "node 1's SFU joins the room, now SFU");
    let asked = timeout(WAIT, edges2.recv()).await.unwrap().unwrap();
    assert_eq!(&*asked, "r", "node 2 runs an edge of it");
    let pj = next_of(&a, "peer-joined").await;
    assert_eq!(
        (pj["peer"]["name"].as_str(), pj["peer"]["service"].as_str()),
        (Some("Carol"), Some("sip"))
    );
    // The edge joins (as node 2's SFU task would): the phone finds it, not node 1's SFU.
    let room_sfu = nodes[0]
        .sig
        .join_service_as("r", "SFU", SFU, Grants::DEFAULT)
        .unwrap();
    let edge = nodes[1]
        .sig
        .join_service_anywhere("r", "SFU@n2", SFU, Grants::DEFAULT)
        .await
        .unwrap();
    let found = phone.find_sfu(WAIT).await;
    assert_eq!(found.as_deref(), Some(&**edge.peer_id()));
    assert_ne!(found.as_deref(), Some(&**room_sfu.peer_id()));

    // A room its creator made mesh: no SFU, and the caller is told so.
    let m = nodes[0].sig.connect();
    send(
        &m,
        json!({"type": "join", "room": "m", "name": "Bea", "topology": "mesh"}),
    )
    .await;
    next_of(&m, "joined").await;
    let mesh = nodes[1]
        .sig
        .join_sfu_service("m", "Dan", "sip", Grants::DEFAULT)
        .await
        .unwrap();
    assert!(mesh.is_none(), "a mesh-only room took a phone");

    // A room nobody holds is claimed for node 2, whose own SFU serves it.
    let fresh = nodes[1]
        .sig
        .join_sfu_service("fresh", "Eve", "whip", Grants::DEFAULT)
        .await
        .unwrap()
        .expect("an SFU room");
    assert!(!fresh.participant.is_remote());
    assert_eq!(&*fresh.sfu, "SFU");
    assert_eq!(net.stored_owner("fresh"), Some(nodes[1].id()));
    let asked = timeout(WAIT, sfu2.recv()).await.unwrap().unwrap();
    assert_eq!(&*asked, "fresh");
}

#[tokio::test]
async fn a_service_joins_a_room_that_lives_on_another_node() {
    use serde_json::value::RawValue;
    use switchboard_signal::{Grants, RelayKind, ServiceEvent};
    let (net, nodes) = three(&HubConfig::default());
    let (a, ja) = join(&nodes[0], "r", "Ada").await;
    let ida = ja["peerId"].as_str().unwrap().to_string();
    // An SFU edge on node 2 joins room r, which node 1 holds.
    let edge = nodes[1]
        .sig
        .join_service_anywhere("r", "SFU@n2", "sfu", Grants::DEFAULT)
        .await
        .unwrap();
    assert!(edge.is_remote());
    assert_eq!(net.stored_owner("r"), Some(nodes[0].id()), "still node 1's");
    assert_eq!(edge.peers().len(), 1);
    assert_eq!(&*edge.peers()[0].id, ida);
    assert_eq!(
        edge.peer_grants(&ida),
        Some(Grants::DEFAULT),
        "Ada's grants came along"
    );
    // Ada sees it as a peer of her room, with its service kind.
    let pj = next_of(&a, "peer-joined").await;
    assert_eq!(
        (pj["peer"]["name"].as_str(), pj["peer"]["service"].as_str()),
        (Some("SFU@n2"), Some("sfu"))
    );
    let id_edge = pj["peer"]["id"].as_str().unwrap().to_string();
    assert_eq!(&**edge.peer_id(), id_edge);

    // Relays both ways, in order.
    send(
        &a,
        json!({"type": "offer", "to": id_edge, "sdp": "v=0\r\n"}),
    )
    .await;
    for i in 0..20 {
        send(
            &a,
            json!({"type": "message", "to": id_edge, "data": {"i": i}}),
        )
        .await;
    }
    let ev = timeout(WAIT, edge.recv()).await.unwrap().unwrap();
    match ev {
        ServiceEvent::Relay {
            from,
            kind,
            payload,
        } => {
            assert_eq!(
                (&*from, kind, payload.get()),
                (ida.as_str(), RelayKind::Offer, "\"v=0\\r\\n\"")
            );
        }
        other => panic!("{other:?}"),
    }
    for i in 0..20 {
        match timeout(WAIT, edge.recv()).await.unwrap().unwrap() {
            ServiceEvent::Relay { payload, .. } => {
                assert_eq!(payload.get(), format!("{{\"i\":{i}}}"))
            }
            other => panic!("{other:?}"),
        }
    }
    let answer = RawValue::from_string("\"v=0 answer\"".into()).unwrap();
    edge.send_answer(&ida, &answer).unwrap();
    let an = next_of(&a, "answer").await;
    assert_eq!(
        (an["from"].as_str(), an["sdp"].as_str()),
        (Some(id_edge.as_str()), Some("v=0 answer"))
    );

    // A later joiner (on node 3) reaches the edge too, with its grants.
    let (c, jc) = join(&nodes[2], "r", "Cy").await;
    let idc = jc["peerId"].as_str().unwrap().to_string();
    match timeout(WAIT, edge.recv()).await.unwrap().unwrap() {
        ServiceEvent::PeerJoined(p) => assert_eq!(&*p.id, idc),
        other => panic!("{other:?}"),
    }
    assert_eq!(edge.peer_grants(&idc), Some(Grants::DEFAULT));
    // A relay the owner refuses comes back as an error event (not to a stranger).
    let hi = RawValue::from_string("1".into()).unwrap();
    edge.send_message("p-nobody", &hi).unwrap();
    match timeout(WAIT, edge.recv()).await.unwrap().unwrap() {
        ServiceEvent::Error { fatal, .. } => assert!(!fatal),
        other => panic!("{other:?}"),
    }
    // Isolation: a member of another room cannot reach the edge.
    let (x, _) = join(&nodes[0], "other", "Xena").await;
    send(&x, json!({"type": "message", "to": id_edge, "data": 1})).await;
    assert_eq!(next(&x).await["code"], "unknown-peer");

    // The edge leaves: its room's members see it go.
    drop(edge);
    let left = next_of(&c, "peer-left").await;
    assert_eq!(left["peerId"].as_str(), Some(id_edge.as_str()));
    assert_eq!(
        next_of(&a, "peer-left").await["peerId"].as_str(),
        Some(id_edge.as_str())
    );
}

#[tokio::test]
async fn a_remote_service_ends_with_the_node_of_its_room_and_leaves_with_its_own() {
    use switchboard_signal::Grants;
    let (net, nodes) = three(&HubConfig::default());
    let (_a, _) = join(&nodes[0], "r", "Ada").await;
    let (b, _) = join(&nodes[0], "s", "Bea").await;
    // Room r's node dies: node 2's service participant in it sees its events end.
    let edge = nodes[1]
        .sig
        .join_service_anywhere("r", "SFU@n2", "sfu", Grants::DEFAULT)
        .await
        .unwrap();
    // Node 3's service in room s (node 1's) stays until node 3 dies.
    let other = nodes[2]
        .sig
        .join_service_anywhere("s", "SFU@n3", "sfu", Grants::DEFAULT)
        .await
        .unwrap();
    next_of(&b, "peer-joined").await;
    net.kill(&nodes[2].id());
    let left = next_of(&b, "peer-left").await;
    assert_eq!(left["peerId"].as_str(), Some(&**other.peer_id()));
    net.kill(&nodes[0].id());
    let ended = timeout(WAIT, async { while edge.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the service's events did not end");
    // A room nobody holds: joined here, as a local service.
    let local = nodes[1]
        .sig
        .join_service_anywhere("fresh", "SFU", "sfu", Grants::DEFAULT)
        .await
        .unwrap();
    assert!(!local.is_remote());
    assert_eq!(net.stored_owner("fresh"), Some(nodes[1].id()));
}

#[tokio::test]
async fn a_node_that_bridges_members_of_an_sfu_room_is_asked_for_an_edge() {
    let mut e = edge_nodes(3);
    // A mesh room of node 1 with a member bridged by node 2: no edge yet.
    let (_a, _) = join(&e.nodes[0], "r", "Ada").await;
    let (_b, _) = join(&e.nodes[1], "r", "Bob").await;
    assert!(
        timeout(Duration::from_millis(300), e.edges2.recv())
            .await
            .is_err(),
        "an edge for a mesh room"
    );
    // The third member turns it SFU: node 2 is asked (node 3 not: nobody of it is in).
    let (_c, jc) = join(&e.nodes[0], "r", "Cy").await;
    assert_eq!(jc["topology"], "sfu");
    let room = timeout(WAIT, e.edges2.recv()).await.unwrap().unwrap();
    assert_eq!(&*room, "r");
    assert!(timeout(Duration::from_millis(300), e.edges3.recv())
        .await
        .is_err());
    // A member joining the SFU room through node 3: node 3 is asked.
    let (_d, _) = join(&e.nodes[2], "r", "Dan").await;
    let room = timeout(WAIT, e.edges3.recv()).await.unwrap().unwrap();
    assert_eq!(&*room, "r");
}

#[tokio::test]
async fn a_member_naming_another_nodes_sfu_gets_that_node_an_edge() {
    let mut e = edge_nodes(1);
    let quiet =
        |rx: &mut tokio::sync::mpsc::UnboundedReceiver<std::sync::Arc<str>>| rx.try_recv().is_err();
    // An SFU room of node 1; a member of node 1 that uses node 1's SFU: no edge.
    let (_a, ja) = join(&e.nodes[0], "r", "Ada").await;
    assert_eq!(ja["topology"], "sfu");
    let (_b, _) = join_naming(&e.nodes[0], "r", "Bob", "n1").await;
    // A member of node 1 (a full node sends it elsewhere) that uses node 3's SFU.
    let (_c, _) = join_naming(&e.nodes[0], "r", "Cy", "n3").await;
    let room = timeout(WAIT, e.edges3.recv()).await.unwrap().unwrap();
    assert_eq!(&*room, "r");
    // A member bridged by node 2 that uses node 3's SFU: node 3 is asked, node 2 not.
    let (_d, _) = join_naming(&e.nodes[1], "r", "Dan", "n3").await;
    let room = timeout(WAIT, e.edges3.recv()).await.unwrap().unwrap();
    assert_eq!(&*room, "r");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        quiet(&mut e.edges2),
        "node 2 was asked for an edge nobody uses"
    );
    // A node name that is no live node asks nobody (and the join works) ...
    let (_e, _) = join_naming(&e.nodes[0], "r", "Eve", "n9").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        quiet(&mut e.edges2) && quiet(&mut e.edges3),
        "an edge for a node that is not there"
    );
    // ... but the bridging node, for a member it bridges (a client that failed over to it
    // still names the dead node it first used).
    let (_f, _) = join_naming(&e.nodes[1], "r", "Fay", "n9").await;
    let room = timeout(WAIT, e.edges2.recv()).await.unwrap().unwrap();
    assert_eq!(&*room, "r");
}

/// Lines (`@user`) all live on one node, the oldest (here the lowest id, all started
/// together), whichever node their devices reach; when it dies, a line comes back on the
/// next one as its device resumes, and that node's calls peer is asked to join it.
#[tokio::test]
async fn lines_live_on_one_node_and_get_their_calls_peer_back_after_it_dies() {
    use switchboard_signal::CALLS;
    let (net, nodes) = three(&HubConfig::default());
    let mut calls: Vec<_> = nodes
        .iter()
        .map(|n| n.sig.service_requests(CALLS))
        .collect();
    let (_c, jc) = join(&nodes[2], "@cy", "cy").await;
    let (b, jb) = join(&nodes[1], "@bob", "bob").await;
    assert_eq!(net.stored_owner("@cy"), Some(nodes[0].id()));
    assert_eq!(net.stored_owner("@bob"), Some(nodes[0].id()));
    for line in ["@cy", "@bob"] {
        let asked = timeout(WAIT, calls[0].recv()).await.unwrap().unwrap();
        assert_eq!(&*asked, line, "node 1's calls peer joins every line");
    }
    // A room that is no line still goes where placement says (here: local).
    let _r = join(&nodes[2], "room", "Ann").await;
    assert_eq!(net.stored_owner("room"), Some(nodes[2].id()));

    net.kill(&nodes[0].id());
    assert_eq!(next(&b).await, json!({ "closed": MOVE_CODE }));
    let b2 = nodes[1].sig.connect();
    let token = jb["resume"].as_str().unwrap();
    send(&b2, json!({"type": "resume", "token": token, "lastSeq": 0})).await;
    assert_eq!(next_of(&b2, "resumed").await["peerId"], jb["peerId"]);
    assert_eq!(net.stored_owner("@bob"), Some(nodes[1].id()));
    let asked = timeout(WAIT, calls[1].recv()).await.unwrap().unwrap();
    assert_eq!(
        &*asked, "@bob",
        "node 2's calls peer joins the line it took over"
    );
    // Cy, resuming through node 3, is led to node 2 too: the lines stay together.
    let c2 = nodes[2].sig.connect();
    let token = jc["resume"].as_str().unwrap();
    send(&c2, json!({"type": "resume", "token": token, "lastSeq": 0})).await;
    next_of(&c2, "resumed").await;
    assert_eq!(net.stored_owner("@cy"), Some(nodes[1].id()));
    assert!(calls[2].try_recv().is_err(), "node 3 holds no line");
}

/// A room that turns SFU after its members joined: the node each member named as the one
/// whose SFU it uses is asked for an edge then, as is every node that bridges members
/// (a full node sent them there while the room was still mesh).
#[tokio::test]
async fn a_room_turning_sfu_later_asks_the_nodes_its_members_named() {
    let mut e = edge_nodes(3);
    let (_a, ja) = join(&e.nodes[0], "r", "Ada").await;
    assert_eq!(ja["topology"], "mesh");
    // Bob signals through node 1 but uses node 3's SFU; Cy is bridged by node 2.
    let (_b, jb) = join_naming(&e.nodes[0], "r", "Bob", "n3").await;
    assert_eq!(jb["topology"], "mesh");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(e.edges3.try_recv().is_err(), "an edge for a mesh room");
    let (_c, jc) = join(&e.nodes[1], "r", "Cy").await;
    assert_eq!(jc["topology"], "sfu", "the third member turns it SFU");
    let asked = timeout(WAIT, e.edges3.recv()).await.unwrap().unwrap();
    assert_eq!(&*asked, "r", "node 3, named by Bob");
    let asked = timeout(WAIT, e.edges2.recv()).await.unwrap().unwrap();
    assert_eq!(&*asked, "r", "node 2, which bridges Cy");
}
