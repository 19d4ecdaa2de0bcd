//! The tokio driver of a node link (`switchboard_sfu::link::NodeLink`): the media between
//! the SFU edge this node runs for a room of another node and that room's SFU. The link
//! is one service participant of the room (`link@<node>`, service `link`, joined through
//! the room's node like the edge), which talks to both SFUs through the room's relays:
//! its `up` client to the owner's SFU (peer name `SFU`), its `down` client to the edge
//! (`SFU@<node>`). Both clients send from one UDP socket on this node's SFU address;
//! what arrives is handed to the client that sent to its source.
//!
//! The link ends with its edge (the edge's task aborts it), when the owner's SFU leaves,
//! or when its participant's events end (the room's node died): the edge then serves its
//! members without the far side until the room's new owner asks for an edge again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use switchboard_sfu::client::{ClientError, ClientOutput, SfuClient};
use switchboard_sfu::link::{LinkStats, NodeLink, Side};
use switchboard_sfu::SignalKind;
use switchboard_signal::{Grants, RelayKind, ServiceEvent, ServiceParticipant, Signaling};
use tokio::net::UdpSocket;

use super::rooms::{LINK, SFU_NAME};
use super::shared::Shared;

/// A link publishes and subscribes (its offers carry the far node's tracks).
const LINK_GRANTS: Grants = Grants {
    publish: true,
    subscribe: true,
    admin: false,
};

/// How long the link waits for the owner's SFU to be in the room.
const OWNER_SFU_WAIT: Duration = Duration::from_secs(10);

/// What a node link needs to start: the room, this node's name, the edge's peer id, the
/// address its socket binds.
pub(super) struct LinkPlan {
    pub signaling: Arc<Signaling>,
    pub room: Arc<str>,
    pub node: String,
    pub edge: Arc<str>,
    pub link_ip: IpAddr,
    pub shared: Arc<Shared>,
}

impl LinkPlan {
    /// Run the link until the owner's SFU or the edge goes.
    pub(super) async fn run(self) {
        run(self).await
    }
}

async fn run(plan: LinkPlan) {
    let LinkPlan {
        signaling,
        room,
        node,
        edge,
        link_ip,
        shared,
    } = plan;
    let name = format!("link@{node}");
    let p = match signaling
        .join_service_anywhere(&room, &name, LINK, LINK_GRANTS)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(%room, error = %e, "node link could not join the room");
            return;
        }
    };
    let mut gauges = Gauges {
        shared: &shared,
        counted: LinkStats::default(),
    };
    match drive(&p, &edge, link_ip, &mut gauges).await {
        Ok(()) => tracing::info!(%room, "node link ended"),
        Err(e) => tracing::warn!(%room, error = %e, "node link failed"),
    }
}

/// The link's share of the SFU's metrics; its tracks leave the gauges with it, also
/// when its task is aborted (its edge ended).
struct Gauges<'a> {
    shared: &'a Shared,
    counted: LinkStats,
}

impl Gauges<'_> {
    /// Move the link's counters into the metrics (gauges by difference).
    fn publish(&mut self, now: LinkStats) {
        let c = &self.shared.counters;
        let gauge = |g: &std::sync::atomic::AtomicU64, was: usize, is: usize| {
            if is > was {
                g.fetch_add((is - was) as u64, Ordering::Relaxed);
            } else if was > is {
                g.fetch_sub((was - is) as u64, Ordering::Relaxed);
            }
        };
        gauge(&c.link_tracks_in, self.counted.tracks_in, now.tracks_in);
        gauge(&c.link_tracks_out, self.counted.tracks_out, now.tracks_out);
        c.link_packets_in
            .fetch_add(now.packets_in - self.counted.packets_in, Ordering::Relaxed);
        c.link_packets_out.fetch_add(
            now.packets_out - self.counted.packets_out,
            Ordering::Relaxed,
        );
        self.counted = now;
    }
}

impl Drop for Gauges<'_> {
    fn drop(&mut self) {
        self.publish(LinkStats {
            tracks_in: 0,
            tracks_out: 0,
            ..self.counted
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("the room's SFU did not join within {0:?}")]
    NoOwnerSfu(Duration),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The owner's SFU among the room's peers (its name is `SFU`; an edge's is `SFU@…`).
fn owner_sfu(peer: &switchboard_signal::PeerInfo) -> bool {
    peer.service.as_deref() == Some(switchboard_signal::SFU) && &*peer.name == SFU_NAME
}

async fn drive(
    p: &ServiceParticipant,
    edge: &Arc<str>,
    link_ip: IpAddr,
    gauges: &mut Gauges<'_>,
) -> Result<(), LinkError> {
    let mut owner: Option<Arc<str>> = p
        .peers()
        .iter()
        .find(|peer| owner_sfu(peer))
        .map(|peer| peer.id.clone());
    let deadline = tokio::time::Instant::now() + OWNER_SFU_WAIT;
    while owner.is_none() {
        match tokio::time::timeout_at(deadline, p.recv()).await {
            Ok(Some(ServiceEvent::PeerJoined(peer))) if owner_sfu(&peer) => owner = Some(peer.id),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(_) => return Err(LinkError::NoOwnerSfu(OWNER_SFU_WAIT)),
        }
    }
    let Some(owner) = owner else { return Ok(()) };
    let sock = UdpSocket::bind(SocketAddr::new(link_ip, 0)).await?;
    let local = sock.local_addr()?;
    let now = Instant::now();
    let mut link = NodeLink::new(SfuClient::new(local, now)?, SfuClient::new(local, now)?);
    for side in [Side::Up, Side::Down] {
        link.client(side).negotiate()?;
    }
    tracing::info!(room = p.room(), %local, "node link started");
    // The side each remote address belongs to, from what each client sent.
    let mut sides: HashMap<SocketAddr, Side> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        while let Some((side, out)) = link.poll_output(now)? {
            match out {
                ClientOutput::Signal { kind, payload } => {
                    let to = match side {
                        Side::Up => &owner,
                        Side::Down => edge,
                    };
                    let kind = match kind {
                        SignalKind::Offer => RelayKind::Offer,
                        SignalKind::Answer => RelayKind::Answer,
                        SignalKind::Message => RelayKind::Message,
                    };
                    let Ok(raw) = RawValue::from_string(payload) else {
                        continue;
                    };
                    if let Err(e) = p.send(to, kind, &raw) {
                        tracing::debug!(error = %e, "node link relay refused");
                    }
                }
                ClientOutput::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    // Learned once per remote address, not rewritten per packet.
                    sides.entry(destination).or_insert(side);
                    // A full socket buffer drops the datagram, as the network would.
                    let _ = sock.try_send_to(&contents, destination);
                }
                ClientOutput::Connected => {
                    tracing::info!(room = p.room(), ?side, "node link connected")
                }
                _ => {}
            }
        }
        gauges.publish(link.stats());
        let wake = tokio::time::Instant::from_std(link.poll_timeout()?);
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = r?;
                if let Some(side) = sides.get(&from).copied() {
                    link.client(side).handle_datagram(Instant::now(), from, &buf[..n])?;
                }
            }
            ev = p.recv() => match ev {
                None => return Ok(()),
                Some(ServiceEvent::Relay { from, kind, payload }) => {
                    let side = if from == owner {
                        Side::Up
                    } else if from == *edge {
                        Side::Down
                    } else {
                        continue;
                    };
                    let kind = match kind {
                        RelayKind::Offer => SignalKind::Offer,
                        RelayKind::Answer => SignalKind::Answer,
                        RelayKind::Message => SignalKind::Message,
                        RelayKind::Candidate => continue, // the SFUs are ICE-lite
                    };
                    link.client(side).handle_signal(kind, payload.get())?;
                }
                Some(ServiceEvent::PeerLeft { peer, .. }) if peer == owner || peer == *edge => {
                    return Ok(());
                }
                Some(ServiceEvent::Error { fatal: true, .. }) => return Ok(()),
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(wake) => link.handle_timeout(Instant::now())?,
        }
    }
}
