//! Which shard of the server's signaling holds what. Rooms are independent of each other,
//! so the hub is split by room: a room lives on the shard its name hashes to, and every
//! peer id and resume token names the shard that issued it, so that ids are unique across
//! shards and a `resume` finds its session without asking every shard.

use switchboard_util::random_hex;

/// One shard's place among all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardId {
    index: u32,
    count: u32,
}

impl ShardId {
    /// The only shard of an unsharded hub.
    pub const SOLE: ShardId = ShardId { index: 0, count: 1 };

    /// Shard `index` of `count`; None unless `index < count`.
    pub fn new(index: usize, count: usize) -> Option<ShardId> {
        let index = u32::try_from(index).ok()?;
        let count = u32::try_from(count).ok()?;
        (index < count).then_some(ShardId { index, count })
    }

    pub fn index(self) -> usize {
        self.index as usize
    }

    pub fn count(self) -> usize {
        self.count as usize
    }

    /// The shard that holds `room`.
    pub fn of_room(self, room: &str) -> usize {
        shard_of_room(room, self.count())
    }

    /// The shard that issued a resume token; None when it names none of them.
    pub fn of_resume_token(self, token: &str) -> Option<usize> {
        if self.count == 1 {
            return Some(0);
        }
        let (shard, _) = token.split_once('.')?;
        let shard = usize::from_str_radix(shard, 16).ok()?;
        (shard < self.count()).then_some(shard)
    }

    /// A fresh peer id: random, and ending in the shard's index when there are several,
    /// so that two shards never issue the same one.
    pub(crate) fn peer_id(self) -> String {
        if self.count == 1 {
            format!("p{}", random_hex(8))
        } else {
            format!("p{}{:x}", random_hex(8), self.index)
        }
    }

    /// A fresh resume token: random, prefixed with the shard's index when there are several.
    pub(crate) fn resume_token(self) -> Box<str> {
        if self.count == 1 {
            random_hex(16).into()
        } else {
            format!("{:x}.{}", self.index, random_hex(16)).into()
        }
    }
}

/// The shard of `count` that holds `room`: FNV-1a of its name, stable across runs so the
/// mapping can be reasoned about (and tested).
pub fn shard_of_room(room: &str, count: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % count.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_shard() {
        let s = ShardId::new(5, 12).unwrap();
        let t = s.resume_token();
        assert_eq!(s.of_resume_token(&t), Some(5));
        assert_eq!(s.of_resume_token("zz.abc"), None);
        assert_eq!(s.of_resume_token("c.abc"), None, "12 is not a shard of 12");
        assert_eq!(s.of_resume_token("nodot"), None);
        assert!(s.peer_id().ends_with('5'));
        assert_eq!(ShardId::new(3, 3), None);
        assert_eq!(ShardId::SOLE.of_resume_token("anything"), Some(0));
    }

    #[test]
    fn rooms_spread_over_shards() {
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[shard_of_room(&format!("room-{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(shard_of_room("x", 1), 0);
    }
}
