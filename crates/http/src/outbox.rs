//! The per-connection queue between the hub and a transport task. A bounded channel
//! would do, but tokio's allocates a block of slots per connection up front (about 1 KiB);
//! this one costs nothing while empty, which matters for tens of thousands of idle
//! signaling connections.

use crate::signaling::Out;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Messages queued for one connection (single consumer).
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Out>,
    closed: bool,
}

impl Outbox {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `out`; false when `limit` messages are already waiting or the box is closed.
    pub fn push(&self, out: Out, limit: usize) -> bool {
        let mut s = self.state();
        if s.closed || s.queue.len() >= limit {
            return false;
        }
        s.queue.push_back(out);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// No more messages: the consumer drains what is queued, then sees the end.
    pub fn close(&self) {
        self.state().closed = true;
        self.notify.notify_one();
    }

    pub fn try_recv(&self) -> Option<Out> {
        let mut s = self.state();
        let out = s.queue.pop_front();
        if s.queue.is_empty() && s.queue.capacity() > 16 {
            // A burst is over: give its memory back.
            s.queue = VecDeque::new();
        }
        out
    }

    /// The next message, or None once closed and drained. Cancel-safe: the queue is
    /// checked before every wait, so a message is never lost with a dropped future.
    pub async fn recv(&self) -> Option<Out> {
        loop {
            if let Some(out) = self.try_recv() {
                return Some(out);
            }
            if self.state().closed {
                return None;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn delivers_in_order_then_ends_after_close() {
        let b = Arc::new(Outbox::default());
        assert!(b.push(Out::Close(1), 2));
        assert!(b.push(Out::Close(2), 2));
        assert!(!b.push(Out::Close(3), 2), "over the limit");
        let c = b.clone();
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Out::Close(n)) = c.recv().await {
                got.push(n);
            }
            got
        });
        tokio::task::yield_now().await;
        assert!(b.push(Out::Close(4), 2));
        b.close();
        assert!(!b.push(Out::Close(5), 2), "closed");
        assert_eq!(consumer.await.unwrap_or_default(), vec![1, 2, 4]);
    }
}
