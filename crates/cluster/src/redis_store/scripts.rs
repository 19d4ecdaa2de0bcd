//! The Lua scripts: each is one atomic step on the server, so two nodes racing for a room
//! or a heartbeat racing a death see one order. They touch keys they build from a prefix
//! (alive keys, inboxes), which a single Redis server allows; a Redis Cluster would need
//! hash tags first.

use redis::Script;

/// KEYS[1] the room's owner key; ARGV[1] the candidate, ARGV[2] the alive-key prefix.
/// The stored owner if its alive key exists, else the candidate (now stored).
const CLAIM: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#;

/// KEYS[1] the room's owner key; ARGV[1] the alive-key prefix. The owner if alive, else nil.
const OWNER: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner and redis.call('EXISTS', ARGV[1] .. owner) == 1 then
  return owner
end
return false
"#;

/// KEYS[1] the room's owner key, KEYS[2] its records; ARGV[1] this node. Both go only if
/// this node still owns the room (another may have taken it over meanwhile). Sent with EVAL
/// (not EVALSHA) inside the writer's MULTI, where a NOSCRIPT after a Redis restart could
/// not be answered by loading the script.
pub(super) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"#;

/// KEYS[1] the epoch marker; ARGV[1] a fresh value. The stored marker, or nil when there
/// was none (a fresh or reset store); then ARGV[1] is stored.
const EPOCH: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if epoch and epoch ~= '' then
  return epoch
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"#;

/// The heartbeat. KEYS[1] this node's alive key, KEYS[2] the nodes hash, KEYS[3] the epoch
/// marker; ARGV[1] this node's id, ARGV[2] its NodeInfo JSON, ARGV[3] the ttl in ms,
/// ARGV[4] a fresh epoch value, ARGV[5] the alive-key prefix, ARGV[6] the inbox prefix,
/// ARGV[7] the dead-mark prefix, ARGV[8] '1' to acknowledge (remove) this node's dead
/// mark, ARGV[9] how long a dead mark stays, in seconds.
/// Refreshes this node, removes every node whose alive key is gone (entry and inbox) and
/// marks it dead, and returns {epoch or '' if it was missing (ARGV[4] is now stored), '1'
/// if this node is marked dead (another node removed it) or '', id1, json1, id2, ...} for
/// the live nodes. The mark stays until acknowledged, so that a heartbeat whose answer is
/// lost (sent during a partition, run by Redis after it healed) does not hide it.
const HEARTBEAT: &str = r#"
redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local epoch = redis.call('GET', KEYS[3])
if not epoch or epoch == '' then
  redis.call('SET', KEYS[3], ARGV[4])
  epoch = ''
end
local marked = ''
if ARGV[8] == '1' then
  redis.call('DEL', ARGV[7] .. ARGV[1])
elseif redis.call('EXISTS', ARGV[7] .. ARGV[1]) == 1 then
  marked = '1'
end
local out = {epoch, marked}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  if redis.call('EXISTS', ARGV[5] .. all[i]) == 1 then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  else
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('DEL', ARGV[6] .. all[i])
    redis.call('SET', ARGV[7] .. all[i], '1', 'EX', ARGV[9])
  end
end
return out
"#;

/// The scripts, hashed once (EVALSHA, loaded on NOSCRIPT by redis-rs).
pub(super) struct Scripts {
    pub claim: Script,
    pub owner: Script,
    pub epoch: Script,
    pub heartbeat: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            claim: Script::new(CLAIM),
            owner: Script::new(OWNER),
            epoch: Script::new(EPOCH),
            heartbeat: Script::new(HEARTBEAT),
        }
    }
}
