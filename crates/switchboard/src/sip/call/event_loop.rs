//! The call's event loop ([`bridge`]): the phone's socket, the room leg's signaling and
//! datagrams, the room's in-process packets, the 20 ms tick and the agent's commands, and
//! a leg that joins its room again after the room's node died.

use super::{AgentCmd, MIN_ROOM_OUT, PUBLISH_TICKS};
use super::{Bridge, CallCmd, CallSetup, Mixer, PhoneOut, PinEntry, Prompt, FRAME, LOCAL_BATCH};
use crate::sip::room_leg::{LegError, RoomLeg, SfuAccess};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_sfu::LocalRtp;
use switchboard_signal::Signaling;
use tokio::net::UdpSocket;

/// How long a call whose room's node died tries to join the room again: the room's
/// members resume at another node within the grace period, and the room with them.
const REJOIN_FOR: Duration = Duration::from_secs(30);

/// A leg joining its room again ([`join_again`]).
type Rejoin =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<RoomLeg, LegError>> + Send>>;

/// Join `room` again after the node that held it died: the room is found (or claimed
/// for this node, rebuilt from its records) once the cluster sees that node dead, a few
/// seconds on; tried every second for [`REJOIN_FOR`].
async fn join_again(
    signaling: Arc<Signaling>,
    room: String,
    name: String,
    sfu: SfuAccess,
) -> Result<RoomLeg, LegError> {
    let until = Instant::now() + REJOIN_FOR;
    loop {
        match RoomLeg::join(&signaling, &room, &name, &sfu).await {
            Ok(leg) => return Ok(leg),
            Err(e @ LegError::MeshOnly) => return Err(e),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(e) => {
                tracing::debug!(%room, error = %e, "SIP call: the room is not back yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The media loop. `Err` carries why the call should end.
pub(super) async fn bridge(setup: CallSetup) -> Result<(), String> {
    let CallSetup {
        call,
        outbound,
        room,
        pins,
        name,
        negotiated,
        dtls,
        port,
        signaling,
        sfu,
        agent,
        mut commands,
        stats,
        rtp_timeout,
    } = setup;
    let sock = port
        .socket
        .try_clone()
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UdpSocket::from_std)
        .map_err(|e| format!("RTP socket: {e}"))?;
    let mut b = Bridge {
        call,
        leg: None,
        pin: None,
        prompt: None,
        typed: None,
        dtls,
        media: None,
        ssrc: rand::random(),
        held: false,
        phone: None,
        last_rx: Instant::now(),
        keys: VecDeque::new(),
        rfc4733: false,
        agent: agent.clone(),
        stats,
        rtp_timeout,
        published: Default::default(),
        until_publish: PUBLISH_TICKS,
        last_tick: None,
        room_buf: vec![0u8; MIN_ROOM_OUT],
        last_state: None,
    };
    if let Some(n) = &negotiated {
        b.negotiated(n)?;
    }
    // The room's packets when the leg's media is in-process (`--sip-room-media local`).
    let mut local_rx: Option<tokio::sync::mpsc::Receiver<LocalRtp>> = None;
    let mut local_in: Vec<LocalRtp> = Vec::with_capacity(LOCAL_BATCH);
    // The room the call is in (known from the start, or once the PIN is typed), and a
    // leg that is joining it again after the room's node died.
    let mut in_room = room.clone();
    let mut rejoin: Option<Rejoin> = None;
    match &room {
        Some(room) => {
            match RoomLeg::join(&signaling, room, &name, &sfu).await {
                Ok(mut leg) => {
                    local_rx = leg.take_local_receiver();
                    b.leg = Some(leg);
                }
                Err(e) => {
                    let status = match e {
                        LegError::MeshOnly | LegError::NoSfu => 480,
                        _ => 503,
                    };
                    let reason = e.to_string();
                    if outbound {
                        return Err(reason);
                    }
                    let _ = agent.send(AgentCmd::Reject(call, status, reason));
                    return Ok(());
                }
            }
            tracing::info!(%room, name = %name, outbound, "SIP call in the room");
            if outbound {
                b.state("dialing", None);
            } else {
                let _ = agent.send(AgentCmd::Accept(call));
                b.state("connected", None);
            }
        }
        None => {
            // Answered now: the caller types the PIN to a room it is not in yet.
            let _ = agent.send(AgentCmd::Accept(call));
            b.pin = Some(PinEntry::new(Instant::now()));
            b.prompt = Some(Prompt::welcome()?);
            tracing::info!(name = %name, "SIP call: asking for a PIN");
        }
    }
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut phone_buf = vec![0u8; 2048];
    let mut leg_buf = vec![0u8; 2048];
    let mut forward_buf = vec![0u8; 1500];
    let mut phone_out = vec![0u8; 1500];
    let mut room_out = vec![0u8; 1500];
    let mut leg_deadline = Instant::now();
    let mut dtls_deadline = Instant::now();
    // str0m's turn is needed after its own input (signaling, datagrams, its deadline)
    // and after we wrote RTP into it; an in-process leg's packets never touch it.
    let mut poll_leg = true;
    loop {
        let wake = leg_deadline.min(dtls_deadline);
        let writes_rtc = b.leg.as_ref().is_some_and(|l| !l.is_local());
        tokio::select! {
            n = next_local(&mut local_rx, &mut local_in) => {
                if n == 0 {
                    local_rx = None;
                }
            }
            ev = next_signal(&b.leg) => {
                poll_leg = true;
                let outcome = match (ev, &mut b.leg) {
                    (None, _) => Err(LegError::Gone),
                    (Some(ev), Some(leg)) => leg.on_signal(ev),
                    (Some(_), None) => Ok(None),
                };
                match outcome {
                    Ok(Some(req)) => b.member(req),
                    Ok(None) => {}
                    Err(e) => {
                        // A leg in a room of another node lost it (that node died, or the
                        // room moved): the call joins the room again wherever it went.
                        let again = matches!(e, LegError::Gone)
                            && b.leg.as_ref().is_some_and(RoomLeg::is_remote);
                        let Some(room) = in_room.clone().filter(|_| again) else {
                            return Err(e.to_string());
                        };
                        b.leg_lost(&mut local_rx);
                        tracing::info!(%room, name = %name, "SIP call lost its room's node: joining the room again");
                        rejoin = Some(Box::pin(join_again(signaling.clone(), room, name.clone(), sfu.clone())));
                    }
                }
            }
            joined = next_rejoin(&mut rejoin) => {
                rejoin = None;
                let mut leg = joined.map_err(|e| format!("joining the room again: {e}"))?;
                tracing::info!(room = leg.room(), name = %name, remote = leg.is_remote(), "SIP call in the room again");
                local_rx = leg.take_local_receiver();
                b.leg = Some(leg);
                if let Some((state, reason)) = b.last_state.clone() {
                    b.state(&state, reason.as_deref());
                }
                poll_leg = true;
            }
            r = leg_recv(&b.leg, &mut leg_buf) => {
                if let (Ok((n, from)), Some(leg)) = (r, &mut b.leg) {
                    leg.on_datagram(from, &leg_buf[..n]);
                    poll_leg = true;
                }
            }
            r = sock.recv_from(&mut phone_buf) => {
                if let Ok((n, from)) = r {
                    b.phone_packet(from, &mut phone_buf[..n]);
                    poll_leg |= writes_rtc;
                }
            }
            _ = tick.tick() => {
                b.tick(&sock, &mut phone_out, &mut room_out)?;
                poll_leg |= writes_rtc;
            }
            _ = tokio::time::sleep_until(wake.into()) => poll_leg = true,
            cmd = commands.recv() => match cmd {
                None => {
                    b.state("ended", None);
                    return Ok(());
                }
                Some(CallCmd::Ended(reason)) => {
                    b.state("ended", reason.as_deref());
                    return Ok(());
                }
                Some(CallCmd::Ringing) => b.state("ringing", None),
                Some(CallCmd::Media(n)) => b.negotiated(&n)?,
                Some(CallCmd::DtlsAnswer(terms)) => b.dtls_answered(&terms)?,
                Some(CallCmd::Connected) => {
                    if outbound {
                        b.state("connected", None);
                    }
                }
                Some(CallCmd::Dtmf(d)) => b.dtmf_heard(d),
            },
        }
        if let Some(typed) = b.typed.take() {
            if let Some(room) = b.check_pin(&typed, &pins)? {
                let mut leg = RoomLeg::join(&signaling, &room, &name, &sfu)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(%room, name = %name, "SIP call in the room (by PIN)");
                in_room = Some(room);
                local_rx = leg.take_local_receiver();
                b.leg = Some(leg);
                poll_leg = true;
                b.state("connected", None);
            }
        }
        let now = Instant::now();
        // str0m's turn only when it has something to do (an in-process leg's packets never
        // touch it).
        let poll_now = poll_leg || now >= leg_deadline;
        match &mut b.leg {
            Some(leg) if poll_now || !local_in.is_empty() => {
                let mut mixer = Mixer {
                    media: b.media.as_mut(),
                    now,
                    phone: PhoneOut {
                        dtls: &mut b.dtls,
                        to: b.phone,
                        sock: &sock,
                    },
                    buf: &mut forward_buf,
                };
                for rtp in local_in.drain(..) {
                    leg.on_local(&rtp, &mut mixer);
                }
                if poll_now {
                    leg_deadline = leg.poll(&mut mixer).map_err(|e| e.to_string())?;
                }
            }
            Some(_) => {}
            None => leg_deadline = now + Duration::from_secs(1),
        }
        local_in.clear();
        poll_leg &= !poll_now;
        // After the leg: what it passed through to a DTLS-SRTP phone leaves now.
        dtls_deadline = b.dtls_poll(&sock)?;
    }
}

/// The room's next in-process packets into `into` (those queued with it, up to
/// [`LOCAL_BATCH`]); 0 when the SFU side is gone; never, without in-process media.
async fn next_local(
    rx: &mut Option<tokio::sync::mpsc::Receiver<LocalRtp>>,
    into: &mut Vec<LocalRtp>,
) -> usize {
    match rx {
        Some(rx) => rx.recv_many(into, LOCAL_BATCH).await,
        None => std::future::pending().await,
    }
}

/// The leg joined again (or gave up); never, while no leg is joining.
async fn next_rejoin(rejoin: &mut Option<Rejoin>) -> Result<RoomLeg, LegError> {
    match rejoin {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

/// The leg's next signaling event; never, while there is no leg.
async fn next_signal(leg: &Option<RoomLeg>) -> Option<switchboard_signal::ServiceEvent> {
    match leg {
        Some(l) => l.next_signal().await,
        None => std::future::pending().await,
    }
}

/// A datagram on the leg's socket; never, while there is no leg.
async fn leg_recv(leg: &Option<RoomLeg>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match leg {
        Some(l) => l.socket().recv_from(buf).await,
        None => std::future::pending().await,
    }
}
