//! `soak`: hours of mixed, realistic churn against one Switchboard, for leak hunting
//! (bench/soak.sh samples the server's RSS, descriptors and metrics meanwhile).
//!
//! At once, until `--duration` runs out:
//! - allocation churn (`--alloc-rate` a second, cycling through three fates): left to
//!   expire at once; given a permission and released (Refresh 0); refreshed once and then
//!   left to expire;
//! - media: `--media-allocs` long-lived allocations, each with a channel to an echo
//!   peer, sending ChannelData (`--media-pps` in all) and counting the echoes,
//!   refreshing allocation and channel every 50 s, and replaced after a random life of 2
//!   to 6 minutes (half released, half left to expire);
//! - signaling (soak_signal.rs): sessions joining rooms of three over WebSocket,
//!   exchanging messages and acks, then leaving, losing their transport and resuming, or
//!   vanishing (ended by the grace period);
//! - `/api/ice-servers` requests from rotating loopback source addresses.
//!
//! Ends with a RESULT line: what was done, what failed, by kind.

use crate::cli::{check_duration, resolve_target, SoakArgs};
use crate::echo_peer::EchoPeer;
use crate::net::{connected_udp, connected_udp_from, loopback_source, now_ns};
use crate::soak_common::{Rng, Tally};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;

use std::time::Duration;
use switchboard_client::{ClientAuth, Request, Transact, UdpClient};

/// Sleep until `t` (ns of `now_ns`); false once past `end`.
pub fn pace(t: u64, end: u64) -> bool {
    let now = now_ns();
    if t > now {
        std::thread::sleep(Duration::from_nanos(t - now));
    }
    t < end
}

const CHANNEL: u16 = 0x4000;
const REFRESH_EVERY_NS: u64 = 50_000_000_000;

/// Source addresses of the churn (127.0.1.1..16): a new socket then rarely gets the
/// 5-tuple of an allocation that is still waiting to expire (which is a 437).
const CHURN_SOURCES: usize = 16;

/// What every TURN load thread gets: where, as whom, until when.
#[derive(Clone)]
struct Turn {
    server: SocketAddr,
    peer: SocketAddr,
    auth: ClientAuth,
    end: u64,
    seed: u64,
    tally: Tally,
}

fn churn(l: Turn, rate: f64) {
    let Turn {
        server,
        peer,
        auth,
        end,
        seed,
        tally,
    } = l;
    // Nonces are bound to the client's IP: one authentication state per source.
    let mut auths: Vec<ClientAuth> = vec![auth; CHURN_SOURCES];
    let mut rng = Rng::new(seed);
    let step = (1e9 / rate.max(0.01)) as u64;
    let mut t = now_ns();
    let mut k: u64 = 0;
    while pace(t, end) {
        t += step;
        let src = (k as usize) % CHURN_SOURCES;
        let Ok(sock) = connected_udp_from(server, loopback_source(src, CHURN_SOURCES)) else {
            tally.add("churn_socket_errors", 1);
            continue;
        };
        let mut c = UdpClient::with_socket(sock, None, auths[src].clone());
        let fate = (k / CHURN_SOURCES as u64) % 3;
        k += 1;
        let r = c.transact(&Request::Allocate { lifetime: None });
        auths[src] = c.auth.clone();
        if let Err(e) = r {
            // 437: the kernel gave this socket the port of an allocation still waiting
            // to expire (the server is right to refuse).
            tally.add(&format!("churn_allocate_failed_{}", e.label()), 1);
            continue;
        }
        tally.add("churn_allocated", 1);
        let step = match fate {
            0 => Ok(()),
            1 => c
                .transact(&Request::CreatePermission { peer })
                .and_then(|_| c.transact(&Request::Refresh { lifetime: 0 }))
                .map(|_| ()),
            _ => c
                .transact(&Request::Refresh {
                    lifetime: rng.range(60, 121) as u32,
                })
                .map(|_| ()),
        };
        match (fate, step) {
            (_, Err(e)) => tally.add(&format!("churn_step_failed_{}", e.label()), 1),
            (0, Ok(())) => tally.add("churn_left_to_expire", 1),
            (1, Ok(())) => tally.add("churn_released", 1),
            (_, Ok(())) => tally.add("churn_refreshed_then_left", 1),
        }
        // The client socket goes; the server's allocation lives on until it expires.
    }
}

struct MediaAlloc {
    c: UdpClient,
    dies: u64,
    next_refresh: u64,
}

fn media_open(
    server: SocketAddr,
    peer: SocketAddr,
    auth: &mut ClientAuth,
    rng: &mut Rng,
    tally: &Tally,
) -> Option<MediaAlloc> {
    let sock = connected_udp(server).ok()?;
    let mut c = UdpClient::with_socket(sock, None, auth.clone());
    let ok = c
        .transact(&Request::Allocate {
            lifetime: Some(120),
        })
        .and_then(|_| {
            c.transact(&Request::ChannelBind {
                channel: CHANNEL,
                peer,
            })
        });
    *auth = c.auth.clone();
    match ok {
        Ok(_) => {
            tally.add("media_allocated", 1);
            let now = now_ns();
            Some(MediaAlloc {
                c,
                dies: now + rng.range(120, 361) * 1_000_000_000,
                next_refresh: now + REFRESH_EVERY_NS,
            })
        }
        Err(e) => {
            tally.add(&format!("media_setup_failed_{}", e.label()), 1);
            None
        }
    }
}

fn media(l: Turn, n: usize, pps: u64) {
    let Turn {
        server,
        peer,
        auth,
        end,
        seed,
        tally,
    } = l;
    let mut auth = auth;
    let mut rng = Rng::new(seed ^ 0xA5A5);
    let mut slots: Vec<Option<MediaAlloc>> = (0..n).map(|_| None).collect();
    let tick = 10_000_000u64; // 10 ms
    let per_tick = (pps as f64 * tick as f64 / 1e9).max(0.0);
    let mut owed = 0.0;
    let mut pkt = vec![0u8; 4 + 160];
    pkt[..4].copy_from_slice(&[(CHANNEL >> 8) as u8, CHANNEL as u8, 0, 160]);
    let mut inb = vec![0u8; 2048];
    let (mut sent, mut echoed) = (0u64, 0u64);
    let mut t = now_ns();
    let mut turn = 0usize;
    while pace(t, end) {
        t += tick;
        let now = now_ns();
        for slot in slots.iter_mut() {
            match slot {
                None => *slot = media_open(server, peer, &mut auth, &mut rng, &tally),
                Some(m) if now >= m.dies => {
                    // Half released, half left to expire.
                    if rng.next() % 2 == 0 {
                        let _ = m.c.socket().set_nonblocking(false);
                        match m.c.transact(&Request::Refresh { lifetime: 0 }) {
                            Ok(_) => tally.add("media_released", 1),
                            Err(e) => tally.add(&format!("media_release_failed_{}", e.label()), 1),
                        }
                    } else {
                        tally.add("media_left_to_expire", 1);
                    }
                    *slot = None;
                }
                Some(m) if now >= m.next_refresh => {
                    let _ = m.c.socket().set_nonblocking(false);
                    let r =
                        m.c.transact(&Request::Refresh { lifetime: 120 })
                            .and_then(|_| {
                                m.c.transact(&Request::ChannelBind {
                                    channel: CHANNEL,
                                    peer,
                                })
                            });
                    match r {
                        Ok(_) => tally.add("media_refreshed", 1),
                        Err(e) => tally.add(&format!("media_refresh_failed_{}", e.label()), 1),
                    }
                    m.next_refresh = now + REFRESH_EVERY_NS;
                }
                Some(_) => {}
            }
        }
        owed += per_tick;
        let live: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_some()).collect();
        while owed >= 1.0 && !live.is_empty() {
            owed -= 1.0;
            turn = (turn + 1) % live.len();
            if let Some(m) = slots[live[turn]].as_mut() {
                pkt[4..12].copy_from_slice(&sent.to_be_bytes());
                if m.c.socket().send(&pkt).is_ok() {
                    sent += 1;
                }
            }
        }
        for m in slots.iter_mut().flatten() {
            let _ = m.c.socket().set_nonblocking(true);
            while let Ok(k) = m.c.socket().recv(&mut inb) {
                if k >= 4 && inb[0] & 0xC0 == 0x40 {
                    echoed += 1;
                }
            }
        }
    }
    tally.add("media_packets_sent", sent);
    tally.add("media_packets_echoed", echoed);
}

pub fn run(a: SoakArgs) -> Result<Value> {
    let server = resolve_target("server", &a.server, false)?;
    let http = resolve_target("http", &a.http, false)?;
    let duration = check_duration("duration", a.duration)?;
    let creds = a.auth.credentials()?;
    let auth = ClientAuth::new(creds);
    let peer = EchoPeer::start("127.0.0.1:0".parse().context("echo address")?, 2048)?;
    let tally = Tally::default();
    let started = now_ns();
    let end = started + (duration * 1e9) as u64;
    let turn = Turn {
        server,
        peer: peer.addr,
        auth,
        end,
        seed: a.seed,
        tally: tally.clone(),
    };
    let (t, rate) = (turn.clone(), a.alloc_rate);
    let mut threads = vec![std::thread::spawn(move || churn(t, rate))];
    let (n, pps) = (a.media_allocs, a.media_pps);
    threads.push(std::thread::spawn(move || media(turn, n, pps)));
    let signal = {
        let tally = tally.clone();
        let (rate, ice, seed) = (a.session_rate, a.ice_rate, a.seed);
        std::thread::spawn(move || crate::soak_signal::run(http, rate, ice, end, seed, tally))
    };
    for t in threads {
        let _ = t.join();
    }
    let signal_result = signal
        .join()
        .map_err(|_| anyhow::anyhow!("signaling thread panicked"))?;
    let (peer_echoed, peer_failed) = peer.stop();
    signal_result?;
    Ok(json!({
        "mode": "soak",
        "duration_s": (now_ns() - started) as f64 / 1e9,
        "counts": tally.json(),
        "echo_peer": { "echoed": peer_echoed, "failed": peer_failed },
    }))
}
