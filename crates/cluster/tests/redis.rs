//! The Redis store against a real `redis-server` (Debian's), one per test on a free
//! loopback port, killed at the end. Run with `cargo test -p switchboard-cluster --features
//! redis`.
#![cfg(feature = "redis")]

mod common;

use common::*;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_cluster::redis_store::{RedisCluster, RedisOptions};
use switchboard_cluster::{Cluster, ClusterError, ClusterEvent, Load, NodeId, RecordOp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_other_with_their_info_and_load() {
    let server = RedisServer::start();
    let (a, mut a_events) = node_with(&server, "a", Duration::from_secs(1), 7).await;
    let (b, _b_events) = node(&server, "b").await;
    let both = sorted(vec![a.me().id.clone(), b.me().id.clone()]);
    assert_eq!(ids(&b.nodes()), both, "b sees a from its first heartbeat");
    let a_seen_by_b = b
        .nodes()
        .into_iter()
        .find(|n| n.id == a.me().id)
        .expect("a in b's view");
    assert_eq!(a_seen_by_b.url, "wss://a.example.com/ws");
    assert_eq!(
        a_seen_by_b.turn,
        vec!["turn:a.example.com:3478".to_string()]
    );
    assert_eq!(a_seen_by_b.load.participants, 7, "the load a reports");

    let b_id = b.me().id.clone();
    wait_for(&mut a_events, "NodeUp(b) at a", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    assert_eq!(ids(&a.nodes()), both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_gives_the_room_to_the_first_candidate() {
    let server = RedisServer::start();
    let (a, _ae) = node(&server, "a").await;
    let (b, _be) = node(&server, "b").await;
    let (a_id, b_id) = (a.me().id.clone(), b.me().id.clone());
    assert_eq!(b.owner("r1").await.expect("owner"), None);
    assert_eq!(a.claim("r1", &a_id).await.expect("claim"), a_id);
    assert_eq!(
        b.claim("r1", &b_id).await.expect("claim"),
        a_id,
        "a later claim gets the owner"
    );
    assert_eq!(a.claim("r1", &b_id).await.expect("claim"), a_id);
    assert_eq!(b.owner("r1").await.expect("owner"), Some(a_id.clone()));
    assert_eq!(
        a.claim("r2", &b_id).await.expect("claim"),
        b_id,
        "any node may place a room on another"
    );
    let rooms: Vec<(String, NodeId)> = a
        .rooms()
        .await
        .expect("rooms")
        .into_iter()
        .map(|r| (r.room, r.owner))
        .collect();
    assert_eq!(
        rooms,
        vec![("r1".to_string(), a_id), ("r2".to_string(), b_id)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_rooms_go_to_the_next_claimer_after_its_ttl() {
    let server = RedisServer::start();
    let (a, mut a_events) = node(&server, "a").await;
    let (c, mut c_events) = node(&server, "c").await;
    let (b, _be) = node(&server, "b").await;
    let b_id = b.me().id.clone();
    assert_eq!(b.claim("r", &b_id).await.expect("claim"), b_id);
    b.write(RecordOp::Put {
        room: "r".into(),
        key: "m1".into(),
        value: "x".into(),
    });
    wait_for(&mut a_events, "NodeUp(b) at a", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    wait_for(&mut c_events, "NodeUp(b) at c", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    assert_eq!(
        a.claim("r", &a.me().id).await.expect("claim"),
        b_id,
        "b is alive: its room stays"
    );

    drop(b); // no leave(): its tasks stop like a kill -9
    wait_for(&mut a_events, "NodeDown(b) at a", |e| {
        *e == ClusterEvent::NodeDown(b_id.clone())
    })
    .await;
    wait_for(&mut c_events, "NodeDown(b) at c", |e| {
        *e == ClusterEvent::NodeDown(b_id.clone())
    })
    .await;
    assert!(!ids(&a.nodes()).contains(&b_id));
    assert_eq!(
        a.owner("r").await.expect("owner"),
        None,
        "a dead owner is no owner"
    );
    let a_id = a.me().id.clone();
    assert_eq!(a.claim("r", &a_id).await.expect("claim"), a_id);
    assert_eq!(c.claim("r", &c.me().id).await.expect("claim"), a_id);
    assert_eq!(
        a.records("r").await.expect("records"),
        vec![("m1".to_string(), "x".to_string())],
        "the new owner rebuilds the room from the dead owner's records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_written_in_order_and_release_is_for_the_owner_only() {
    let server = RedisServer::start();
    let (a, mut a_events) = node(&server, "a").await;
    let (b, mut b_events) = node(&server, "b").await;
    let (a_id, b_id) = (a.me().id.clone(), b.me().id.clone());
    wait_for(&mut a_events, "NodeUp(b) at a", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    assert_eq!(a.claim("room", &a_id).await.expect("claim"), a_id);
    let put = |k: &str, v: &str| RecordOp::Put {
        room: "room".into(),
        key: k.into(),
        value: v.into(),
    };
    a.write(put("k1", "v1"));
    a.write(put("k2", "v2"));
    a.write(RecordOp::Delete {
        room: "room".into(),
        key: "k1".into(),
    });
    a.write(put("k3", "v3"));
    a.write(put("k2", "v2b"));
    // One queue: once b has the message sent after the writes, they are stored.
    a.send(&b_id, b"after writes".to_vec());
    assert_eq!(
        messages(&mut b_events, 1).await,
        vec![(a_id.clone(), b"after writes".to_vec())]
    );
    let expected = vec![
        ("k2".to_string(), "v2b".to_string()),
        ("k3".to_string(), "v3".to_string()),
    ];
    assert_eq!(b.records("room").await.expect("records"), expected);

    b.release("room".into()); // b does not own it: nothing happens
    b.send(&a_id, b"after b's release".to_vec());
    messages(&mut a_events, 1).await;
    assert_eq!(a.owner("room").await.expect("owner"), Some(a_id.clone()));
    assert_eq!(a.records("room").await.expect("records"), expected);

    a.release("room".into());
    a.send(&b_id, b"after a's release".to_vec());
    messages(&mut b_events, 1).await;
    assert_eq!(b.owner("room").await.expect("owner"), None);
    assert_eq!(b.records("room").await.expect("records"), vec![]);
    assert_eq!(b.claim("room", &b_id).await.expect("claim"), b_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_all_in_order_once() {
    let server = RedisServer::start();
    let (a, mut a_events) = node(&server, "a").await;
    let (b, mut b_events) = node(&server, "b").await;
    let b_id = b.me().id.clone();
    // a sends only to nodes it has seen (b's heartbeats are ttl/5 apart).
    wait_for(&mut a_events, "NodeUp(b) at a", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    for i in 0..10_000 {
        a.send(&b_id, numbered(i));
    }
    a.send(&b_id, b"end".to_vec());
    let got = messages(&mut b_events, 10_001).await;
    assert_eq!(
        numbers_from(&got[..10_000], &a.me().id),
        (0..10_000).collect::<Vec<u32>>()
    );
    assert_eq!(
        got[10_000],
        (a.me().id.clone(), b"end".to_vec()),
        "nothing twice before the end mark"
    );
    assert_eq!(a.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_two_senders_each_arrive_in_order() {
    let server = RedisServer::start();
    let (a, mut a_events) = node(&server, "a").await;
    let (c, mut c_events) = node(&server, "c").await;
    let (b, mut b_events) = node(&server, "b").await;
    let b_id = b.me().id.clone();
    wait_for(&mut a_events, "NodeUp(b) at a", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    wait_for(&mut c_events, "NodeUp(b) at c", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    let senders: Vec<_> = [a.clone(), c.clone()]
        .into_iter()
        .map(|from| {
            let to = b_id.clone();
            tokio::spawn(async move {
                for i in 0..3_000 {
                    from.send(&to, numbered(i));
                    if i % 100 == 0 {
                        tokio::task::yield_now().await; // interleave the two senders
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("sender task");
    }
    let got = messages(&mut b_events, 6_000).await;
    let want: Vec<u32> = (0..3_000).collect();
    assert_eq!(numbers_from(&got, &a.me().id), want);
    assert_eq!(numbers_from(&got, &c.me().id), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_lost_then_back_with_reset_and_queued_messages_arrive() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let mut server = RedisServer::start();
    let ttl = Duration::from_secs(2);
    let (a, mut a_events) = node_with(&server, "a", ttl, 0).await;
    let (b, mut b_events) = node_with(&server, "b", ttl, 0).await;
    let (a_id, b_id) = (a.me().id.clone(), b.me().id.clone());
    wait_for(&mut a_events, "NodeUp(b) at a", |e| {
        *e == ClusterEvent::NodeUp(b_id.clone())
    })
    .await;
    a.send(&b_id, numbered(0));
    assert_eq!(
        numbers_from(&messages(&mut b_events, 1).await, &a_id),
        vec![0]
    );

    server.kill();
    wait_for(&mut a_events, "StoreLost at a", |e| {
        *e == ClusterEvent::StoreLost
    })
    .await;
    wait_for(&mut b_events, "StoreLost at b", |e| {
        *e == ClusterEvent::StoreLost
    })
    .await;
    assert!(a
        .claim("r", &a_id)
        .await
        .is_err_and(|e| matches!(e, ClusterError::Unavailable(_))));
    for i in 1..=100 {
        a.send(&b_id, numbered(i));
    }
    server.restart();
    let back = ClusterEvent::StoreBack { reset: true };
    wait_for(&mut a_events, "StoreBack{reset} at a", |e| *e == back).await;
    // b's reader may deliver before its heartbeat notices the reset: both, in any order.
    let mut got = Vec::new();
    let mut b_back = false;
    while got.len() < 100 || !b_back {
        let what = format!(
            "StoreBack{{reset}} and message {} of 100 at b",
            got.len() + 1
        );
        match wait_for(&mut b_events, &what, |e| {
            *e == back || matches!(e, ClusterEvent::Message { .. })
        })
        .await
        {
            ClusterEvent::Message { from, bytes } => got.push((from, bytes.to_vec())),
            _ => b_back = true,
        }
    }
    assert_eq!(numbers_from(&got, &a_id), (1..=100).collect::<Vec<u32>>());
    assert_eq!(
        a.claim("r", &a_id).await.expect("claim after the restart"),
        a_id
    );
    // Both registered again.
    let deadline = Instant::now() + PATIENCE;
    while ids(&a.nodes()) != sorted(vec![a_id.clone(), b_id.clone()]) || b.nodes().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "a and b never saw each other again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_is_seen_before_the_ttl_runs_out() {
    let server = RedisServer::start();
    // Heartbeats every 6 s; without leave() b would be down only after 30 s.
    let ttl = Duration::from_secs(30);
    let (b, _be) = node_with(&server, "b", ttl, 0).await;
    let (a, mut a_events) = node_with(&server, "a", ttl, 0).await;
    let b_id = b.me().id.clone();
    assert!(ids(&a.nodes()).contains(&b_id));
    b.leave().await;
    let down = tokio::time::timeout(
        ttl / 2,
        wait_for(&mut a_events, "NodeDown(b) at a", |e| {
            *e == ClusterEvent::NodeDown(b_id.clone())
        }),
    )
    .await;
    assert!(
        down.is_ok(),
        "a did not see b leave before b's ttl could have run out"
    );
    assert_eq!(ids(&a.nodes()), vec![a.me().id.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_what_does_not_fit() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(10); // so that no call times out during the pause
    let (b, mut b_events) = node_with(&server, "b", ttl, 0).await;
    let opts = RedisOptions {
        url: server.url(),
        ttl,
        queue: 10,
        ..RedisOptions::default()
    };
    let a = RedisCluster::start(opts, info("a"), Arc::new(Load::default))
        .await
        .expect("start a");
    let (a_id, b_id) = (a.me().id.clone(), b.me().id.clone());
    let mut raw = server.raw().await;
    // Writes wait for 2 s: a's writer is stuck on its first batch while a sends.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("WRITE")
        .exec_async(&mut raw)
        .await
        .expect("CLIENT PAUSE");
    for i in 0..1_000 {
        a.send(&b_id, numbered(i));
    }
    assert!(
        a.dropped() > 0,
        "1,000 sends into a queue of 10 while writes wait"
    );
    // Then an end mark, once there is room for it.
    let mut end_drops = 0;
    loop {
        let before = a.dropped();
        a.send(&b_id, b"end".to_vec());
        if a.dropped() == before {
            break;
        }
        end_drops += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = Vec::new();
    loop {
        let (from, bytes) = messages(&mut b_events, 1).await.remove(0);
        assert_eq!(from, a_id);
        if bytes == b"end" {
            break;
        }
        got.push((from, bytes));
    }
    let delivered = numbers_from(&got, &a_id);
    let k = u32::try_from(delivered.len()).expect("count");
    // Which ones fit depends on when the writer took its first batch; they went in order.
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {delivered:?}"
    );
    assert_eq!(delivered.first(), Some(&0), "the queue was empty at first");
    assert!(k >= 10, "at least a queue's worth went through, got {k}");
    assert_eq!(
        a.dropped() - end_drops,
        u64::from(1_000 - k),
        "every dropped send counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_in_the_node_list_is_skipped() {
    let server = RedisServer::start();
    let (a, _ae) = node(&server, "a").await;
    let mut raw = server.raw().await;
    redis::pipe()
        .set("sb:alive:junk", 1)
        .hset("sb:nodes", "junk", "not json")
        .set("sb:alive:other", 1)
        .hset("sb:nodes", "other", r#"{"id":"someone-else"}"#)
        .exec_async(&mut raw)
        .await
        .expect("write junk");
    let (b, _be) = node(&server, "b").await;
    assert_eq!(
        ids(&b.nodes()),
        sorted(vec![a.me().id.clone(), b.me().id.clone()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_entry_written_twice_is_delivered_once_and_junk_is_skipped() {
    let server = RedisServer::start();
    let (b, mut b_events) = node(&server, "b").await;
    let (a, _ae) = node(&server, "a").await;
    let (a_id, b_id) = (a.me().id.clone(), b.me().id.clone());
    a.send(&b_id, b"one".to_vec());
    assert_eq!(
        messages(&mut b_events, 1).await,
        vec![(a_id.clone(), b"one".to_vec())]
    );
    // What a writer does when EXEC ran but its reply was lost: the same entry again.
    let mut raw = server.raw().await;
    let inbox = format!("sb:in:{b_id}");
    type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>); // id, fields
    let stored: Vec<Entry> = redis::cmd("XRANGE")
        .arg(&inbox)
        .arg("-")
        .arg("+")
        .query_async(&mut raw)
        .await
        .expect("XRANGE");
    let [(_, fields)] = stored.as_slice() else {
        panic!("one entry in b's inbox, got {stored:?}");
    };
    let mut again = redis::cmd("XADD");
    again.arg(&inbox).arg("*");
    for (name, value) in fields {
        again.arg(name).arg(value);
    }
    again.exec_async(&mut raw).await.expect("XADD the copy");
    redis::cmd("XADD")
        .arg(&inbox)
        .arg("*")
        .arg("junk")
        .arg("entry")
        .exec_async(&mut raw)
        .await
        .expect("XADD junk");
    a.send(&b_id, b"two".to_vec());
    assert_eq!(
        messages(&mut b_events, 1).await,
        vec![(a_id, b"two".to_vec())]
    );
}

#[tokio::test]
async fn start_fails_clearly_when_redis_is_unreachable() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let opts = RedisOptions {
        url: format!("redis://127.0.0.1:{port}/"),
        ..RedisOptions::default()
    };
    let err = RedisCluster::start(opts, info("a"), Arc::new(Load::default))
        .await
        .err()
        .expect("no redis there");
    match err {
        ClusterError::Unavailable(msg) => {
            assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
