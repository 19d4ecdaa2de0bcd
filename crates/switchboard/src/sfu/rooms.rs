//! The SFU's side of signaling: for each room the hub turns SFU
//! (`Signaling::service_requests("sfu")`), join it as the service participant `SFU`
//! (`service: "sfu"`), pass the browsers' (and WHIP publishers') relays, with their
//! grants, and departures to the room's worker, and leave once nobody it serves is left,
//! which ends the room's lifetime.
//! One small tokio runtime on a thread of its own carries all rooms: this is signaling
//! rate, not media rate.

use super::shared::{Command, Shared};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchboard_signal::{Grants, ServiceEvent, ServiceParticipant, Signaling};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Notify;

/// The name browsers see on the SFU's peer (an edge's is `SFU@<node>`).
pub const SFU_NAME: &str = switchboard_signal::SFU_PEER;

/// The service kind of a node link's participant.
pub const LINK: &str = "link";

/// What the SFU may do in a room: send offers (server-initiated renegotiation) and
/// answers.
const SFU_GRANTS: Grants = Grants {
    publish: true,
    subscribe: true,
    admin: false,
};

/// A one-shot participant of the SFU: a WHIP publisher or a WHEP player.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fixed {
    Publisher,
    Player,
}

impl Fixed {
    fn of(peer: &switchboard_signal::PeerInfo) -> Option<Fixed> {
        match peer.service.as_deref()? {
            "whip" => Some(Fixed::Publisher),
            "whep" => Some(Fixed::Player),
            _ => None,
        }
    }
}

/// In a cluster: serve the members this node bridges into SFU rooms of other nodes from
/// an SFU edge here, linked to the room's SFU ([`super::node_link`]).
pub struct Edges {
    /// The rooms the owners ask an edge for (`sfu-edge` service requests).
    pub requests: UnboundedReceiver<Arc<str>>,
    /// This node's name (the edge is `SFU@<node>`).
    pub node: String,
    /// The address the node links' UDP sockets bind (this node's SFU candidate).
    pub link_ip: std::net::IpAddr,
}

/// An edge serving a room here now: how to end it, and its task.
struct EdgeTask {
    /// Tells its room loop to end (and so leave the SFU core's room).
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

type EdgeRooms = Arc<std::sync::Mutex<HashMap<Arc<str>, EdgeTask>>>;

/// Serve the rooms named by `requests` (and, in a cluster, edges) until the signaling
/// side ends.
pub async fn serve(
    signaling: Arc<Signaling>,
    mut requests: UnboundedReceiver<Arc<str>>,
    shared: Arc<Shared>,
    mut edges: Option<Edges>,
) {
    let edge_rooms: EdgeRooms = Arc::default();
    loop {
        let edge_request = async {
            match edges.as_mut() {
                Some(e) => e.requests.recv().await,
                None => std::future::pending().await,
            }
        };
        let (room, edge) = tokio::select! {
            r = requests.recv() => match r {
                Some(room) => (room, false),
                None => return,
            },
            Some(room) = edge_request => (room, true),
        };
        if shared.draining.load(Ordering::Relaxed) {
            continue;
        }
        if !edge {
            // The room is this node's now (it took it over from a dead node that this
            // node had an edge to): the edge leaves the SFU core's room first, or its
            // end would take the room's members out of it after the room's SFU joined.
            let ended = super::shared::lock(&edge_rooms).remove(&room);
            let (sig, sh) = (signaling.clone(), shared.clone());
            tokio::spawn(async move {
                if let Some(edge) = ended {
                    edge.stop.notify_one();
                    let _ = edge.task.await;
                }
                match sig.join_service_as(&room, SFU_NAME, switchboard_signal::SFU, SFU_GRANTS) {
                    Ok(p) => {
                        sh.counters.rooms_joined.fetch_add(1, Ordering::Relaxed);
                        serve_room(Arc::new(p), sh, None, None).await;
                    }
                    Err(e) => tracing::warn!(%room, error = %e, "the SFU could not join a room"),
                }
            });
            continue;
        }
        let Some(e) = edges.as_ref() else { continue };
        if super::shared::lock(&edge_rooms).contains_key(&room) {
            continue; // one edge per room
        }
        let stop = Arc::new(Notify::new());
        let (sig, sh, rooms) = (signaling.clone(), shared.clone(), edge_rooms.clone());
        let (node, link_ip, edge_stop) = (e.node.clone(), e.link_ip, stop.clone());
        let key = room.clone();
        // Registered before it runs: its own end removes the entry (if still its own).
        let mut map = super::shared::lock(&edge_rooms);
        let task = tokio::spawn(async move {
            let name = format!("{SFU_NAME}@{node}");
            match sig
                .join_service_anywhere(&room, &name, switchboard_signal::SFU, SFU_GRANTS)
                .await
            {
                Ok(p) if !p.is_remote() => {
                    // The room came to this node meanwhile: its own SFU serves it.
                    drop(p);
                }
                Ok(p) => {
                    tracing::info!(%room, "SFU edge joined a room of another node");
                    sh.counters.rooms_joined.fetch_add(1, Ordering::Relaxed);
                    sh.counters.edges.fetch_add(1, Ordering::Relaxed);
                    let p = Arc::new(p);
                    let link = super::node_link::LinkPlan {
                        signaling: sig.clone(),
                        room: room.clone(),
                        node,
                        edge: p.peer_id().clone(),
                        link_ip,
                        shared: sh.clone(),
                    };
                    serve_room(p, sh.clone(), Some(link), Some(edge_stop.clone())).await;
                    sh.counters.edges.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(%room, error = %e, "the SFU edge could not join a room"),
            }
            // Its own entry only: a later edge of the same room has another `stop`.
            let mut map = super::shared::lock(&rooms);
            if map
                .get(&room)
                .is_some_and(|t| Arc::ptr_eq(&t.stop, &edge_stop))
            {
                map.remove(&room);
            }
        });
        map.insert(key, EdgeTask { stop, task });
    }
}

/// One room: events in, until the last client leaves or the hub ends the participant.
/// An edge (`link`) starts its node link when a member first signals to it: an edge that
/// nobody of its node uses pulls no media across.
async fn serve_room(
    p: Arc<ServiceParticipant>,
    shared: Arc<Shared>,
    mut link: Option<super::node_link::LinkPlan>,
    stop: Option<Arc<Notify>>,
) {
    let mut link_task: Option<tokio::task::JoinHandle<()>> = None;
    let room: Arc<str> = Arc::from(p.room());
    let worker = shared.worker_of_room(&room);
    // Everyone but another SFU is served: browsers and WHIP publishers alike, and node
    // links, which are counted apart: a room whose only members are links (two nodes'
    // SFUs keeping each other) is over.
    let served = |peer: &switchboard_signal::PeerInfo| {
        peer.service.as_deref() != Some(switchboard_signal::SFU)
            && peer.service.as_deref() != Some(LINK)
    };
    let mut clients: HashSet<Arc<str>> = p
        .peers()
        .iter()
        .filter(|peer| served(peer))
        .map(|peer| peer.id.clone())
        .collect();
    // The one-shot participants (WHIP publishers, WHEP players), by kind.
    let mut fixed: HashMap<Arc<str>, Fixed> = p
        .peers()
        .iter()
        .filter_map(|peer| Some((peer.id.clone(), Fixed::of(peer)?)))
        .collect();
    // The node links (rooms spanning nodes).
    let is_link = |peer: &switchboard_signal::PeerInfo| peer.service.as_deref() == Some(LINK);
    let mut links: HashSet<Arc<str>> = p
        .peers()
        .iter()
        .filter(|peer| is_link(peer))
        .map(|peer| peer.id.clone())
        .collect();
    shared.add_participant(room.clone(), p.clone());
    tracing::debug!(%room, worker, peer = %p.peer_id(), "SFU joined the room");
    let stopped = async {
        match &stop {
            Some(s) => s.notified().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    while !clients.is_empty() {
        let event = tokio::select! {
            e = p.recv() => e,
            () = &mut stopped => {
                tracing::debug!(%room, "SFU edge ended: the room is this node's now");
                None
            }
        };
        let Some(event) = event else { break };
        match event {
            ServiceEvent::PeerJoined(peer) => {
                if let Some(f) = Fixed::of(&peer) {
                    fixed.insert(peer.id.clone(), f);
                }
                if is_link(&peer) {
                    links.insert(peer.id.clone());
                }
                if served(&peer) {
                    clients.insert(peer.id);
                }
            }
            ServiceEvent::PeerLeft { peer, .. } => {
                fixed.remove(&peer);
                let link = links.remove(&peer);
                if clients.remove(&peer) || link {
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
                let Some(mut grants) = p.peer_grants(&from) else {
                    continue;
                };
                if link_task.is_none() && clients.contains(&from) {
                    if let Some(plan) = link.take() {
                        link_task = Some(tokio::spawn(plan.run()));
                    }
                }
                let kind_of = fixed.get(&from).copied();
                let link = links.contains(&from);
                if kind_of == Some(Fixed::Player) {
                    // A player offers (the hub needs `publish` for that) but sends nothing.
                    grants.publish = false;
                }
                shared.send(
                    worker,
                    Command::Signal {
                        room: room.clone(),
                        from,
                        grants,
                        fixed: kind_of.is_some(),
                        link,
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
    if let Some(t) = link_task {
        t.abort();
    }
    for peer in clients.into_iter().chain(links) {
        shared.send(
            worker,
            Command::Leave {
                room: room.clone(),
                peer,
            },
        );
    }
    shared.remove_participant(&room, &p);
    tracing::debug!(%room, "SFU left the room");
    // The last reference (the workers only borrow it for a send) leaves the hub's room.
    drop(p);
}
