//! Which shard of the server's signaling holds what. Rooms are independent of each other,
//! so the hub is split by room: a room lives on the shard its name hashes to. Every peer
//! id names the shard that issued it, so ids are unique across shards; every resume token
//! names its room, so that a `resume` finds its session without asking every shard (or,
//! in a cluster, every node: the room's owner holds it).

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

    /// The shard that holds the session of a resume token; None when it names no room.
    pub fn of_resume_token(self, token: &str) -> Option<usize> {
        if self.count == 1 {
            return Some(0);
        }
        Some(self.of_room(room_of_resume_token(token)?))
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
}

/// A fresh resume token for a session of `room`: 128 random bits, then the room's name
/// (a room name never holds `~`).
pub(crate) fn resume_token(room: &str) -> Box<str> {
    format!("{}~{room}", random_hex(16)).into()
}

/// The room a resume token names; None when it is not one of ours.
pub fn room_of_resume_token(token: &str) -> Option<&str> {
    let (_, room) = token.split_once('~')?;
    crate::protocol::valid_room(room).then_some(room)
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
    fn tokens_name_their_room_and_so_its_shard() {
        let s = ShardId::new(5, 12).unwrap();
        let t = resume_token("room-7");
        assert_eq!(room_of_resume_token(&t), Some("room-7"));
        assert_eq!(s.of_resume_token(&t), Some(shard_of_room("room-7", 12)));
        let line = resume_token("@bob");
        assert_eq!(room_of_resume_token(&line), Some("@bob"));
        assert_eq!(s.of_resume_token("abc~"), None, "no room");
        assert_eq!(s.of_resume_token("abc~a b"), None, "not a room name");
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
