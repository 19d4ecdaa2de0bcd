//! TURN across nodes: `/api/ice-servers?region=` names the TURN of a node of that region,
//! the credentials one node signs get a relay on another, and `--user-quota` counts a
//! user's allocations on every node.

use crate::lab::Lab;
use crate::{poll, DELIVERY};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_client::{ClientAuth, Transact, UdpClient};

const SECRET: &str = "cluster-turn-secret";

/// The JSON body of node `n`'s `/api/ice-servers` + `query`.
fn ice_servers(lab: &Lab, n: usize, query: &str) -> Value {
    let response = lab.http_get(Lab::node_addr(n), &format!("/api/ice-servers{query}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "n{n}: {head}"
    );
    serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("n{n} /api/ice-servers{query}: {e}: {body}"))
}

/// Every URI of the answer.
fn uris(answer: &Value) -> Vec<String> {
    answer["iceServers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["urls"].as_array().into_iter().flatten())
        .filter_map(|u| u.as_str().map(String::from))
        .collect()
}

/// The TURN entry's username and credential.
fn credentials(answer: &Value) -> (String, String) {
    let turn = answer["iceServers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["username"].is_string())
        .unwrap_or_else(|| panic!("no TURN entry in {answer}"));
    let get = |k: &str| turn[k].as_str().unwrap_or_default().to_string();
    (get("username"), get("credential"))
}

/// Whether all `uris` are on node `n`'s address.
fn all_on(uris: &[String], n: usize) -> bool {
    let ip = Lab::node_addr(n).ip().to_string();
    !uris.is_empty() && uris.iter().all(|u| u.contains(&format!(":{ip}:")))
}

#[test]
#[ignore = "needs root and network namespaces: sudo cargo test -p switchboard --test cluster -- --ignored"]
fn turn_across_nodes_region_answers_shared_credentials_and_a_cluster_wide_user_quota() {
    let lab = Lab::up();
    let args = |region| {
        [
            "--region",
            region,
            "--static-auth-secret",
            SECRET,
            "--user-quota",
            "1",
        ]
    };
    lab.start_node(1, &args("eu"));
    lab.start_node(2, &args("us"));

    // Without a region, and for a region nobody serves, each node names its own TURN.
    for n in [1, 2] {
        let own = uris(&ice_servers(&lab, n, ""));
        assert!(all_on(&own, n), "n{n} without a region: {own:?}");
        let mars = uris(&ice_servers(&lab, n, "?region=mars"));
        assert_eq!(mars, own, "n{n} for a region nobody serves");
    }
    // n1 names n2 for `us` once it has seen n2's heartbeat; n2 names itself for `us`.
    let us = poll(
        DELIVERY,
        Duration::from_millis(300),
        || ice_servers(&lab, 1, "?region=us&identity=alice"),
        |answer| all_on(&uris(answer), 2),
    );
    let named = uris(&us);
    assert!(all_on(&named, 2), "n1 for region us: {named:?}");
    assert!(named.iter().any(|u| u.starts_with("stun:")), "{named:?}");
    assert!(
        named
            .iter()
            .any(|u| u.starts_with("turn:") && u.ends_with("transport=udp")),
        "{named:?}"
    );
    assert!(all_on(&uris(&ice_servers(&lab, 2, "?region=us")), 2));
    assert!(all_on(&uris(&ice_servers(&lab, 2, "?region=eu")), 1));

    // The credentials n1 signed get a relay from n2's TURN.
    let (user, pass) = credentials(&us);
    assert!(user.ends_with(":alice"), "{user}");
    let client_of = |n: usize| {
        let turn = SocketAddr::new(Lab::node_addr(n).ip(), 3478);
        let (user, pass) = (user.clone(), pass.clone());
        // Made in the client namespace, the socket stays there whichever thread uses it.
        lab.in_client_ns(move || UdpClient::connect(turn, ClientAuth::user(&user, &pass)))
            .unwrap_or_else(|e| panic!("a TURN client of n{n}: {e}"))
    };
    let allocate = |c: &mut UdpClient, n: usize| {
        c.allocate_udp()
            .unwrap_or_else(|e| panic!("Allocate on n{n}: {e}"))
    };
    let mut held = client_of(2);
    let first = allocate(&mut held, 2);
    assert!(
        first.ok() && !first.relayed().is_empty(),
        "n2 refused n1's credentials: {:?}",
        first.code
    );

    // --user-quota 1: alice's allocation on n2 counts on n1, once n2 has shared its counts
    // (every second). An allocation n1 grants before that is released at once.
    let try_n1 = || {
        let mut c = client_of(1);
        let r = allocate(&mut c, 1);
        if r.ok() {
            let _ = c.refresh(0);
        }
        r
    };
    let refused = poll(DELIVERY, Duration::from_millis(500), try_n1, |r| {
        r.code == Some(486)
    });
    assert_eq!(
        refused.code,
        Some(486),
        "n1 never refused alice (486) while she held an allocation on n2"
    );
    // Released on n2, the quota is free on n1 again.
    let released = held
        .refresh(0)
        .unwrap_or_else(|e| panic!("Refresh 0 on n2: {e}"));
    assert!(
        released.ok(),
        "n2 did not release the allocation: {:?}",
        released.code
    );
    let granted = poll(DELIVERY, Duration::from_millis(500), try_n1, |r| r.ok());
    assert!(
        granted.ok(),
        "n1 still refuses alice after her allocation on n2 ended: {:?}",
        granted.code
    );
}
