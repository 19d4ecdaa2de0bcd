//! Allocation quotas shared by all worker threads. Touched only when allocations are
//! created or freed, never per packet, so a mutex is fine.
//!
//! In a cluster the per-user quota counts every node: each node publishes its users'
//! allocation counts and learns the others' ([`Quotas::set_elsewhere`], refreshed every
//! second by the binary's cluster link), so a user can exceed the quota only by what
//! other nodes granted within that second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Quotas {
    total: AtomicU32,
    per_user: Mutex<HashMap<Box<[u8]>, u32>>,
    /// Live allocations per user on the other nodes of a cluster.
    elsewhere: Mutex<HashMap<Box<[u8]>, u32>>,
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
        if user_quota != 0 {
            let others = self
                .elsewhere
                .lock()
                .map_or(0, |e| e.get(identity).copied().unwrap_or(0));
            if n.saturating_add(others) >= user_quota {
                return false;
            }
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

    /// Live allocations per user on this node.
    pub fn per_user(&self) -> Vec<(Box<[u8]>, u32)> {
        self.per_user.lock().map_or_else(
            |_| Vec::new(),
            |u| u.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )
    }

    /// Live allocations per user on the other nodes of the cluster (replaces the last).
    pub fn set_elsewhere(&self, counts: HashMap<Box<[u8]>, u32>) {
        if let Ok(mut e) = self.elsewhere.lock() {
            *e = counts;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_quota_counts_other_nodes() {
        let q = Quotas::default();
        assert!(q.acquire(b"ada", 3, 0));
        q.set_elsewhere(HashMap::from([(Box::from(&b"ada"[..]), 2)]));
        assert!(!q.acquire(b"ada", 3, 0), "1 here + 2 elsewhere = 3");
        assert!(q.acquire(b"bob", 3, 0), "only ada's count moved");
        q.set_elsewhere(HashMap::new());
        assert!(q.acquire(b"ada", 3, 0));
        let mut mine = q.per_user();
        mine.sort();
        assert_eq!(
            mine,
            vec![(Box::from(&b"ada"[..]), 2), (Box::from(&b"bob"[..]), 1)]
        );
        assert!(q.acquire(b"ada", 0, 0), "0 = no quota");
    }
}
