//! The per-connection queue between the hub and whoever drains it (a transport task, a
//! service participant). A bounded channel would do, but tokio's allocates a block of
//! slots per connection up front (about 1 KiB); this one costs nothing while empty, which
//! matters for tens of thousands of idle signaling connections.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// Items queued for one consumer.
pub struct Outbox<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
            }),
            notify: Notify::new(),
        }
    }
}

impl<T> Outbox<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item`; false when `limit` items are already waiting or the box is closed.
    pub fn push(&self, item: T, limit: usize) -> bool {
        let mut s = self.state();
        if s.closed || s.queue.len() >= limit {
            return false;
        }
        s.queue.push_back(item);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// No more items: the consumer drains what is queued, then sees the end.
    pub fn close(&self) {
        self.state().closed = true;
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    pub fn try_recv(&self) -> Option<T> {
        let mut s = self.state();
        let item = s.queue.pop_front();
        if s.queue.is_empty() && s.queue.capacity() > 0 {
            // A burst is over: give its memory back, so that an idle connection's queue
            // holds no buffer (one allocation per burst is cheap next to the idle ones).
            s.queue = VecDeque::new();
        }
        item
    }

    /// The next item, or None once closed and drained. Cancel-safe: the queue is checked
    /// before every wait, so an item is never lost with a dropped future.
    pub async fn recv(&self) -> Option<T> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
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
        let b: Arc<Outbox<u16>> = Arc::new(Outbox::default());
        assert!(b.push(1, 2));
        assert!(b.push(2, 2));
        assert!(!b.push(3, 2), "over the limit");
        let c = b.clone();
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(n) = c.recv().await {
                got.push(n);
            }
            got
        });
        // The consumer drains the two, then waits: a push must wake it.
        tokio::task::yield_now().await;
        assert!(b.push(4, 2));
        b.close();
        assert!(!b.push(5, 2), "closed");
        assert_eq!(consumer.await.unwrap_or_default(), vec![1, 2, 4]);
    }
}
