//! The data channel in SFU rooms: the SDK's negotiated channel, `{"to","data"}` from a
//! browser relayed as `{"from","data"}` to the named peer or everyone else.

mod common;

use std::time::Duration;

use common::Net;
use str0m::media::MediaKind;

#[test]
fn sfu_data_reaches_everyone_or_the_named_peer() {
    let mut net = Net::new();
    let none: &[(MediaKind, bool)] = &[];
    net.connect_all(&[
        ("alice", none),
        ("bob", none),
        ("carol", &[(MediaKind::Audio, false)]),
    ]);
    net.run_until(Duration::from_secs(5), "channels open", |n| {
        n.clients.iter().all(|c| c.channel_open)
    });
    let a = net.idx("alice");
    assert!(net.clients[a].send_data(r#"{"data":{"chat":"hello, \"all\"","n":[1,2]}}"#));
    assert!(net.clients[a].send_data(r#"{"to":"bob","data":"just bob"}"#));
    assert!(net.clients[a].send_data("not json"));
    assert!(net.clients[a].send_data(r#"{"to":"bob"}"#));
    net.run_for(Duration::from_millis(300));

    let everyone = r#"{"from":"alice","data":{"chat":"hello, \"all\"","n":[1,2]}}"#;
    assert_eq!(
        net.client("bob").data,
        vec![
            everyone.to_string(),
            r#"{"from":"alice","data":"just bob"}"#.to_string()
        ]
    );
    assert_eq!(net.client("carol").data, vec![everyone.to_string()]);
    assert!(net.client("alice").data.is_empty());
    let st = net.sfu.stats();
    assert_eq!((st.data_relayed, st.data_dropped), (3, 2));
}
