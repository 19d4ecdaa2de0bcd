//! In-process media between the SFU's workers and server-side participants of the same
//! process (the SIP gateway's room legs): see `switchboard_sfu`'s `local.rs`. The
//! participant negotiates through signaling as a browser does; [`LocalMedia::attach`]
//! tells the room's worker, before that, that its RTP comes and goes here instead:
//! packets it publishes go into the worker's inbox (bounded like handed-over
//! datagrams, waking the worker), and those it receives come out of a bounded channel
//! whose sender the worker keeps (no lock per packet) until the participant leaves.

use super::shared::{Command, Shared};
use std::sync::Arc;
use switchboard_sfu::LocalRtp;
use tokio::sync::mpsc;

/// Packets queued for one local participant; more are dropped, as a full socket buffer
/// would (a call receives 50 per second and member).
const LOCAL_QUEUE: usize = 512;

/// The SFU's door for in-process participants (cheap to clone).
#[derive(Clone)]
pub struct LocalMedia {
    shared: Arc<Shared>,
}

impl LocalMedia {
    pub(super) fn new(shared: Arc<Shared>) -> LocalMedia {
        LocalMedia { shared }
    }

    /// From now on `peer` of `room` exchanges its RTP in-process. Call before its first
    /// signaling reaches the SFU; the worker forgets the link when the peer leaves the room.
    pub fn attach(&self, room: &str, peer: &Arc<str>) -> (LocalLink, mpsc::Receiver<LocalRtp>) {
        let (tx, rx) = mpsc::channel(LOCAL_QUEUE);
        let room: Arc<str> = room.into();
        let worker = self.shared.worker_of_room(&room);
        self.shared.send(
            worker,
            Command::LocalAttach {
                room: room.clone(),
                peer: peer.clone(),
                sink: tx,
            },
        );
        let link = LocalLink {
            shared: self.shared.clone(),
            worker,
            room,
            peer: peer.clone(),
        };
        (link, rx)
    }
}

/// One participant's in-process media: its way in (what it receives comes out of the
/// receiver [`LocalMedia::attach`] returned).
pub struct LocalLink {
    shared: Arc<Shared>,
    worker: usize,
    room: Arc<str>,
    peer: Arc<str>,
}

impl LocalLink {
    /// A packet the participant publishes; false when the worker's inbox is full (lost,
    /// and counted with the handed-over datagrams).
    pub fn send(&self, rtp: LocalRtp) -> bool {
        self.shared.send(
            self.worker,
            Command::LocalRtp {
                room: self.room.clone(),
                peer: self.peer.clone(),
                rtp,
            },
        )
    }
}
