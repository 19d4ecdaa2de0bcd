//! Client connections moving between workers: RFC 6062 ConnectionBind (a data
//! connection must live on the worker that owns its connection id) and connections
//! accepted outside the workers ([`crate::Shared::adopt`]). Each worker has an inbox
//! and a waker; the sender pushes and wakes, the worker takes them in its loop.

use crate::stream::Conn;
use mio::{Registry, Token, Waker};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Per-worker inboxes for connections handed over by other workers.
pub struct Handoffs(Vec<Inbox>);

struct Inbox {
    queue: Mutex<Vec<Conn>>,
    waiting: AtomicBool,
    waker: OnceLock<Waker>,
}

impl Handoffs {
    pub fn new(workers: usize) -> Self {
        Handoffs(
            (0..workers)
                .map(|_| Inbox {
                    queue: Mutex::new(Vec::new()),
                    waiting: AtomicBool::new(false),
                    waker: OnceLock::new(),
                })
                .collect(),
        )
    }

    /// Register worker `id`'s waker (then wake it once, for anything sent before).
    pub fn install(&self, id: usize, registry: &Registry, token: Token) -> io::Result<()> {
        let Some(inbox) = self.0.get(id) else {
            return Ok(());
        };
        let waker = Waker::new(registry, token)?;
        let _ = inbox.waker.set(waker);
        if let Some(w) = inbox.waker.get() {
            w.wake()?;
        }
        Ok(())
    }

    /// Give `conn` to worker `to`; false (and the connection dropped, i.e. closed)
    /// when there is no such worker.
    pub fn send(&self, to: usize, conn: Conn) -> bool {
        let Some(inbox) = self.0.get(to) else {
            return false;
        };
        match inbox.queue.lock() {
            Ok(mut q) => q.push(conn),
            Err(_) => return false,
        }
        inbox.waiting.store(true, Ordering::Release);
        if let Some(w) = inbox.waker.get() {
            let _ = w.wake();
        }
        true
    }

    /// Connections handed to worker `id`.
    pub fn take(&self, id: usize) -> Vec<Conn> {
        let Some(inbox) = self.0.get(id) else {
            return Vec::new();
        };
        if !inbox.waiting.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        inbox
            .queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
}
