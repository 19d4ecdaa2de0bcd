//! The SFU's side of signaling: for each room the hub turns SFU
//! (`Signaling::service_requests("sfu")`), join it as the service participant `SFU`
//! (`service: "sfu"`), pass the browsers' relays (with their grants) and departures to
//! the room's worker, and leave once no client is left, which ends the room's lifetime.
//! One small tokio runtime on a thread of its own carries all rooms: this is signaling
//! rate, not media rate.

use super::shared::{Command, Shared};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchboard_signal::{Grants, ServiceEvent, ServiceParticipant, Signaling};
use tokio::sync::mpsc::UnboundedReceiver;

/// The name browsers see on the SFU's peer.
pub const SFU_NAME: &str = "SFU";

/// What the SFU may do in a room: send offers (server-initiated renegotiation) and
/// answers.
const SFU_GRANTS: Grants = Grants {
    publish: true,
    subscribe: true,
    admin: false,
};

/// Serve the rooms named by `requests` until the signaling side ends.
pub async fn serve(
    signaling: Arc<Signaling>,
    mut requests: UnboundedReceiver<Arc<str>>,
    shared: Arc<Shared>,
) {
    while let Some(room) = requests.recv().await {
        if shared.draining.load(Ordering::Relaxed) {
            continue;
        }
        match signaling.join_service_as(&room, SFU_NAME, switchboard_signal::SFU, SFU_GRANTS) {
            Ok(p) => {
                shared.counters.rooms_joined.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_room(Arc::new(p), shared.clone()));
            }
            Err(e) => tracing::warn!(%room, error = %e, "the SFU could not join a room"),
        }
    }
}

/// One room: events in, until the last client leaves or the hub ends the participant.
async fn serve_room(p: Arc<ServiceParticipant>, shared: Arc<Shared>) {
    let room: Arc<str> = Arc::from(p.room());
    let worker = shared.worker_of_room(&room);
    let mut clients: HashSet<Arc<str>> = p
        .peers()
        .iter()
        .filter(|peer| peer.service.is_none())
        .map(|peer| peer.id.clone())
        .collect();
    shared.add_participant(room.clone(), p.clone());
    tracing::debug!(%room, worker, peer = %p.peer_id(), "SFU joined the room");
    while !clients.is_empty() {
        let Some(event) = p.recv().await else { break };
        match event {
            ServiceEvent::PeerJoined(peer) => {
                if peer.service.is_none() {
                    clients.insert(peer.id);
                }
            }
            ServiceEvent::PeerLeft { peer, .. } => {
                if clients.remove(&peer) {
                    shared.send(
                        worker,
                        Command::Leave {
                            room: room.clone(),
                            peer,
                        },
                    );
                }
            }
            ServiceEvent::Relay {
                from,
                kind,
                payload,
            } => {
                // The sender is a member (the hub checked); its grants may be gone if it
                // left in between, then the message is moot.
                let Some(grants) = p.peer_grants(&from) else {
                    continue;
                };
                shared.send(
                    worker,
                    Command::Signal {
                        room: room.clone(),
                        from,
                        grants,
                        kind,
                        payload,
                    },
                );
            }
            ServiceEvent::Error {
                code,
                reason,
                fatal,
            } => {
                tracing::debug!(%room, %code, reason, fatal, "SFU participant error");
                if fatal {
                    break;
                }
            }
        }
    }
    // Whoever is still known to the core leaves it with the room.
    for peer in clients {
        shared.send(
            worker,
            Command::Leave {
                room: room.clone(),
                peer,
            },
        );
    }
    shared.remove_participant(&room);
    tracing::debug!(%room, "SFU left the room");
    // The last reference (the workers only borrow it for a send) leaves the hub's room.
    drop(p);
}
