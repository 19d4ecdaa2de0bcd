//! What the shards hold for each connection: the queue its consumer drains (a transport
//! task, a service participant) and, for a transport, the shard it is bound to.

use crate::event::{ServiceEvent, ServiceJoined, SignalError};
use crate::hub::ConnId;
use crate::outbox::Outbox;
use crate::token::Grants;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use switchboard_cluster::NodeId;
use tokio::sync::oneshot;

/// What a transport task writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Text(Arc<str>),
    Close(u16),
    /// Time to show the connection is alive (a WebSocket ping) and to check that the
    /// client still is: queued by [`crate::Signaling::keepalive`] for a share of the
    /// transports at a time, so that no connection needs a timer of its own.
    Keepalive,
}

/// A transport connection's state shared by its task and the shards.
pub(crate) struct Link {
    pub(crate) id: ConnId,
    /// The shard the connection is bound to; held while a message is handled, so that a
    /// move between shards is never seen half done.
    pub(crate) shard: Mutex<usize>,
    pub(crate) outbox: Outbox<Out>,
}

/// Where a shard sends a connection's outputs.
pub(crate) enum Sink {
    Transport(Arc<Link>),
    Service(Arc<ServiceLink>),
    /// A client connection another node of the cluster holds (see `crate::cluster`).
    Remote(Arc<RemoteLink>),
    /// A service participant another node runs (see `crate::remote_service`).
    RemoteService(Arc<HostedService>),
}

/// A client connection held by another node (the bridge) in a room this node owns.
pub(crate) struct RemoteLink {
    /// The bridge node.
    pub(crate) node: switchboard_cluster::NodeId,
    /// The connection's number on the bridge.
    pub(crate) conn: ConnId,
    /// Its number and shard here.
    pub(crate) link: Arc<Link>,
}

/// A service participant's state shared with its shard.
pub(crate) struct ServiceLink {
    pub(crate) id: ConnId,
    /// The shard of its room, for good.
    pub(crate) shard: usize,
    pub(crate) outbox: Outbox<ServiceEvent>,
}

impl ServiceLink {
    pub(crate) fn new(id: ConnId, shard: usize) -> ServiceLink {
        ServiceLink {
            id,
            shard,
            outbox: Outbox::default(),
        }
    }
}

/// Lock `m`, taking the data of a poisoned lock as it is (a panic elsewhere must not stop
/// signaling).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bridge's side of a remote service participant.
pub(crate) struct RemoteService {
    pub(crate) owner: NodeId,
    pub(crate) conn: ConnId,
    pub(crate) link: Arc<ServiceLink>,
    /// The grants of the room's members, from their `peer-joined` (and the join's list).
    pub(crate) grants: Mutex<HashMap<Arc<str>, Grants>>,
    /// Answered with the owner's reply to the open.
    pub(crate) joined: Mutex<Option<oneshot::Sender<OpenAnswer>>>,
}

/// The owner's answer to a bridge's open: the participant's view of the room, and whether
/// the room is SFU (for an open that asked for it); or why it was refused.
pub(crate) type OpenAnswer = Result<(ServiceJoined, bool), SignalError>;

/// The owner's side: the participant it joined for a bridge.
pub(crate) struct HostedService {
    pub(crate) node: NodeId,
    /// The connection number on the bridge.
    pub(crate) conn: ConnId,
    /// Its number and shard here.
    pub(crate) id: ConnId,
    pub(crate) shard: usize,
    pub(crate) room: Arc<str>,
}
