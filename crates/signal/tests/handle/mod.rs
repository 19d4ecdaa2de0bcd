//! What the runtime-handle tests (shards.rs, service.rs) share: reading a transport's
//! queue as a client would see it, and writing to it.

use serde_json::{json, Value};
use std::future::Future;
use switchboard_signal::{Connection, Out};

/// Everything queued for `c`, parsed; closes and keepalives as marker objects.
pub fn take(c: &Connection) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(out) = c.try_recv() {
        match out {
            Out::Text(t) => got.push(serde_json::from_str(&t).unwrap()),
            Out::Close(code) => got.push(json!({"closed": code})),
            Out::Keepalive => got.push(json!({"keepalive": true})),
        }
    }
    got
}

/// The one message queued for `c`.
pub fn take_one(c: &Connection) -> Value {
    let mut got = take(c);
    assert_eq!(got.len(), 1, "{got:?}");
    got.pop().unwrap()
}

pub fn send(c: &Connection, v: Value) {
    receive(c, &v.to_string());
}

/// `c.receive(text)` on a server that is not clustered, which never waits: it is done
/// when first polled.
pub fn receive(c: &Connection, text: &str) {
    struct NoWake;
    impl std::task::Wake for NoWake {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let fut = std::pin::pin!(c.receive(text));
    let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        fut.poll(&mut cx).is_ready(),
        "an unclustered receive waited"
    );
}
