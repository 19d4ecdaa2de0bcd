//! Switchboard's signaling (protocol v1, docs/signaling.md).
//!
//! The sans-IO core is the [`Hub`]: rooms, peers and resumable sessions. It is fed
//! connection events, client messages and time, and returns [`Output`]s; it never touches
//! a socket or the clock, so every rule is tested directly. Messages are routed by peer id
//! within one room only. Server messages are typed ([`wire`]), with relayed payloads kept
//! as raw JSON.
//!
//! The runtime side is [`Signaling`]: the hub split into shards by room, each behind its
//! own lock, with the per-connection queues. Transports use it through a [`Connection`];
//! members of rooms that the server itself creates through a [`ServiceParticipant`].
#![forbid(unsafe_code)]

mod bus;
mod cluster;
mod dispatch;
mod event;
mod glue;
mod handle;
mod hub;
mod limits;
mod link;
mod membership;
mod mode;
mod outbox;
pub mod protocol;
mod records;
mod remote_service;
mod service;
mod service_hub;
mod service_wire;
mod session;
mod shard;
pub mod token;
mod topology;
pub mod wire;

pub use event::{JoinError, SendError, ServiceEvent, ServiceJoined, SignalError};
pub use glue::{Placement, MOVE_CODE};
pub use handle::{Connection, Signaling, SignalingSnapshot};
pub use hub::{ConnId, DetachedConn, Hub, HubConfig, HubStats, Output, Received};
pub use link::Out;
pub use mode::{Topology, CALLS, MAX_SERVICES_PER_ROOM, REMOTE, SFU, SFU_EDGE};
pub use outbox::Outbox;
pub use protocol::ErrorCode;
pub use records::ROOM_RECORD;
pub use remote_service::{SfuService, SFU_PEER};
pub use service::ServiceParticipant;
pub use shard::{room_of_resume_token, shard_of_room, ShardId};
pub use token::{Claims, Grants, TokenError};
pub use wire::{LeaveReason, PeerInfo, RelayKind, ServerMessage};
