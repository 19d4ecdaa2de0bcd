//! Allocation quotas shared by all worker threads. Touched only when allocations are
//! created or freed, never per packet, so a mutex is fine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Quotas {
    total: AtomicU32,
    per_user: Mutex<HashMap<Box<[u8]>, u32>>,
}

impl Quotas {
    /// Reserve one allocation for `identity`; false when a quota is reached.
    pub fn acquire(&self, identity: &[u8], user_quota: u32, total_quota: u32) -> bool {
        let Ok(mut users) = self.per_user.lock() else {
            return false;
        };
        let total = self.total.load(Ordering::Relaxed);
        if total_quota != 0 && total >= total_quota {
            return false;
        }
        let n = users.get(identity).copied().unwrap_or(0);
        if user_quota != 0 && n >= user_quota {
            return false;
        }
        users.insert(identity.into(), n + 1);
        self.total.store(total + 1, Ordering::Relaxed);
        true
    }

    pub fn release(&self, identity: &[u8]) {
        let Ok(mut users) = self.per_user.lock() else {
            return;
        };
        if let Some(n) = users.get_mut(identity) {
            *n -= 1;
            if *n == 0 {
                users.remove(identity);
            }
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }
}
