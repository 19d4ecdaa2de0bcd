//! Member records: what a room's owner writes to the cluster store as members come and
//! go (with `HubConfig::records`), and from which another node rebuilds the room when
//! its owner dies ([`Hub::restore`]). A record is one member's peer id, name, identity,
//! grants and resume token; the key `$room` holds the room's topology. Restored members
//! are suspended sessions: their clients resume on the new owner within the grace
//! period (with `gap: true`, as their replay buffers died with the old owner), and the
//! other members never see them leave.

use crate::hub::{Hub, Output, SessionKey};
use crate::mode::Topology;
use crate::session::{Replay, Session};
use crate::token::Grants;
use crate::wire::PeerInfo;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// The key of a room's own record.
pub const ROOM_RECORD: &str = "$room";

#[derive(Serialize, Deserialize)]
struct MemberRecord<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a str>,
    grants: Vec<&'a str>,
    resume: &'a str,
}

#[derive(Serialize, Deserialize)]
struct RoomRecord<'a> {
    topology: &'a str,
    sfu: bool,
}

fn topology_name(t: Topology) -> &'static str {
    match t {
        Topology::Auto => "auto",
        Topology::Sfu => "sfu",
        Topology::Mesh => "mesh",
    }
}

impl Hub {
    /// Write (or rewrite) the record of session `key`; services have none.
    pub(crate) fn record_member(&mut self, key: SessionKey) {
        if !self.cfg.records {
            return;
        }
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        if s.service {
            return;
        }
        let rec = MemberRecord {
            id: &s.peer.id,
            name: &s.peer.name,
            identity: s.peer.identity.as_deref(),
            grants: s.grants.names(),
            resume: &s.resume,
        };
        let Ok(value) = serde_json::to_string(&rec) else {
            return;
        };
        self.out.push(Output::Record {
            room: s.room.clone(),
            key: s.peer.id.clone(),
            value: Some(Arc::from(value)),
        });
    }

    /// Write the record of `room` itself (its topology and whether it turned SFU).
    pub(crate) fn record_room(&mut self, room: &Arc<str>) {
        if !self.cfg.records {
            return;
        }
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let rec = RoomRecord {
            topology: topology_name(r.topology),
            sfu: r.sfu,
        };
        let Ok(value) = serde_json::to_string(&rec) else {
            return;
        };
        self.out.push(Output::Record {
            room: room.clone(),
            key: Arc::from(ROOM_RECORD),
            value: Some(Arc::from(value)),
        });
    }

    /// A client session ended: its record goes; an emptied room goes altogether.
    pub(crate) fn record_gone(&mut self, room: &Arc<str>, peer: &Arc<str>, room_gone: bool) {
        if !self.cfg.records {
            return;
        }
        if room_gone {
            self.out.push(Output::RoomGone { room: room.clone() });
        } else {
            self.out.push(Output::Record {
                room: room.clone(),
                key: peer.clone(),
                value: None,
            });
        }
    }

    /// Whether this hub holds `room`.
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The rooms this hub holds.
    pub fn room_names(&self) -> Vec<Arc<str>> {
        self.rooms.keys().cloned().collect()
    }

    /// Every record of `room` as its owner would write them now (to write them again
    /// after the store lost them).
    pub fn records_of(&mut self, room: &str) -> Vec<Output> {
        let Some((name, r)) = self.rooms.get_key_value(room) else {
            return Vec::new();
        };
        let (name, members) = (name.clone(), r.members.clone());
        let before = self.out.len();
        self.record_room(&name);
        for key in members {
            self.record_member(key);
        }
        self.out.split_off(before)
    }

    /// The connections attached to `room`'s sessions now.
    pub fn room_conns(&self, room: &str) -> Vec<crate::hub::ConnId> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        r.members
            .iter()
            .filter_map(|key| self.sessions.get(key)?.conn)
            .collect()
    }

    /// Drop `room` and its sessions without telling anyone (another node of the cluster
    /// took it over); the connections that were attached to them, now without a session.
    pub fn hand_over(&mut self, room: &str) -> Vec<crate::hub::ConnId> {
        let Some(r) = self.rooms.remove(room) else {
            return Vec::new();
        };
        let mut conns = Vec::new();
        for key in r.members {
            let Some(s) = self.sessions.remove(&key) else {
                continue;
            };
            self.suspended.remove(&key);
            self.by_peer.remove(&s.peer.id);
            self.by_resume.remove(&s.resume);
            if let Some(conn) = s.conn {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = None;
                }
                conns.push(conn);
            }
        }
        conns
    }

    /// Rebuild `room` from its records (key, value), as suspended sessions whose grace
    /// starts `now`, when this hub does not hold it. Records that do not read, and members
    /// whose peer id or resume token this hub already knows, are skipped. Returns the number
    /// of members restored.
    pub fn restore(&mut self, room: &str, records: &[(String, String)], now: Instant) -> usize {
        self.now = now;
        if self.rooms.contains_key(room) || !crate::protocol::valid_room(room) {
            return 0;
        }
        let room_key: Arc<str> = Arc::from(room);
        let mut topology = Topology::Auto;
        let mut sfu = false;
        let mut restored = 0;
        for (key, value) in records {
            if key == ROOM_RECORD {
                if let Ok(r) = serde_json::from_str::<RoomRecord>(value) {
                    topology = Topology::from_wire(r.topology).unwrap_or_default();
                    sfu = r.sfu;
                }
                continue;
            }
            let Ok(m) = serde_json::from_str::<MemberRecord>(value) else {
                continue;
            };
            let Ok(grants) = Grants::from_names(&m.grants) else {
                continue;
            };
            if m.id != key
                || self.by_peer.contains_key(m.id)
                || self.by_resume.contains_key(m.resume)
                || crate::shard::room_of_resume_token(m.resume) != Some(room)
            {
                continue;
            }
            let skey = self.next_key;
            self.next_key += 1;
            let peer_id: Arc<str> = Arc::from(m.id);
            let mut replay = Replay::new(self.cfg.replay_messages, self.cfg.replay_bytes);
            replay.mark_restored();
            let session = Session {
                peer: PeerInfo {
                    id: peer_id.clone(),
                    name: Arc::from(m.name),
                    identity: m.identity.map(Arc::from),
                    service: None,
                },
                room: room_key.clone(),
                grants,
                conn: None,
                service: false,
                resume: Box::from(m.resume),
                suspended_at: Some(now),
                replay,
            };
            self.sessions.insert(skey, Box::new(session));
            self.by_peer.insert(peer_id, skey);
            self.by_resume.insert(Box::from(m.resume), skey);
            self.suspended.insert(skey);
            self.rooms
                .entry(room_key.clone())
                .or_default()
                .members
                .push(skey);
            restored += 1;
        }
        if let Some(r) = self.rooms.get_mut(&room_key) {
            r.topology = topology;
            r.sfu = sfu;
            if sfu {
                self.out.push(Output::ServiceWanted {
                    room: room_key.clone(),
                    kind: crate::mode::SFU,
                });
            }
        }
        // A line's devices must stay reachable on its new node: its calls peer joins.
        if restored > 0 && crate::protocol::line_user(&room_key).is_some() {
            self.want_calls(&room_key);
        }
        restored
    }
}
