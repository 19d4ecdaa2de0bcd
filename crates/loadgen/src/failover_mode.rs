//! `failover`: how long clients wait when the node that owns their room dies (issue 14).
//!
//! `--rooms` rooms, each created by a client of `--owner` (the owner under
//! `--cluster-placement local`) and joined by `--bridged` clients of `--via`, whose
//! signaling that node bridges to the owner. Once every member is in, the generator
//! kills the owner (`SIGKILL` to `--owner-pid`) and every client does what the SDK
//! does: when its connection ends (the bridged ones get close code 1012 once the
//! surviving node sees the owner's heartbeat expire; the owner's own clients lose
//! theirs at once) it connects to `--via` and sends `resume` with its token and last
//! `seq`, again after every close or `unavailable`, until `resumed`. Then every client
//! sends one `message` to the others of its pair of roles (creator to each bridged
//! client, bridged client to the creator): the call goes on.
//!
//! Reported per role: kill to connection closed, kill to `resumed` (exact
//! percentiles, ms), close codes, attempts; `resumed` with `gap`, any `peer-left` after
//! the kill (there should be none), and the messages delivered after the failover.

use crate::cli::{check_duration, check_range, resolve_target, FailoverArgs};
use crate::net::{now_ns, round3};
use crate::sb_session::{self, summary_ms, Got, Resume};
use crate::signal_proto::{self as sp, Event};
use crate::ws_conn::{open_ws, small_buffers, Ws};
use anyhow::{anyhow, bail, Context, Result};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// Phases the driver announces to the client tasks.
const SETUP: u8 = 0;
const KILLED: u8 = 1;
const VERIFY: u8 = 2;
const STOP: u8 = 3;

/// What happened to one client.
#[derive(Default, Debug)]
struct Outcome {
    creator: bool,
    /// ms from the kill to the end of its connection, and its close code.
    closed_ms: Option<f64>,
    close_code: Option<u16>,
    resumed_ms: Option<f64>,
    attempts: u32,
    gap: bool,
    error: Option<String>,
}

struct Shared {
    via: SocketAddr,
    kill_at: AtomicU64,
    deadline: AtomicU64,
    retry: Duration,
    resumed: AtomicU64,
    gave_up: AtomicU64,
    peer_left: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    outcomes: Mutex<Vec<Outcome>>,
}

/// A member of a test room, joined and holding its connection.
struct Member {
    ws: Ws,
    creator: bool,
    token: String,
    /// Who it messages after the failover: the creator, or (for the creator) the
    /// bridged clients as they joined.
    others: Vec<String>,
}

pub fn run(a: FailoverArgs) -> Result<Value> {
    let owner = resolve_target("owner", &a.owner, a.allow_any_target)?;
    let via = resolve_target("via", &a.via, a.allow_any_target)?;
    check_range("rooms", a.rooms, 1, 10_000)?;
    check_range("bridged", a.bridged, 1, 100)?;
    check_duration("timeout", a.timeout)?;
    if !(a.settle >= 0.0 && a.settle.is_finite()) {
        bail!("--settle: must be seconds >= 0");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let out = rt.block_on(drive(&a, owner, via));
    rt.shutdown_timeout(Duration::from_millis(200));
    out
}

async fn connect_join(
    addr: SocketAddr,
    room: &str,
    name: &str,
) -> Result<(Ws, sb_session::Joined)> {
    let url = format!("ws://{addr}/ws");
    let mut ws = open_ws(addr, None, &url, small_buffers()).await?;
    let j = sb_session::join(&mut ws, room, name).await?;
    Ok((ws, j))
}

/// One room: its creator through the owner, then the bridged clients through `via`.
async fn set_up_room(
    room: String,
    owner: SocketAddr,
    via: SocketAddr,
    bridged: usize,
) -> Result<Vec<Member>> {
    let (ws, j) = connect_join(owner, &room, "creator").await?;
    let mut creator = Member {
        ws,
        creator: true,
        token: j.resume,
        others: Vec::new(),
    };
    let mut members = Vec::with_capacity(bridged);
    for k in 0..bridged {
        let (ws, b) = connect_join(via, &room, &format!("bridged{k}")).await?;
        if b.partner.as_deref() != Some(j.peer_id.as_str()) {
            bail!(
                "{room}: a bridged client did not see the creator in `joined` (saw {:?})",
                b.partner
            );
        }
        creator.others.push(b.peer_id);
        members.push(Member {
            ws,
            creator: false,
            token: b.resume,
            others: vec![j.peer_id.clone()],
        });
    }
    members.insert(0, creator);
    Ok(members)
}

async fn drive(a: &FailoverArgs, owner: SocketAddr, via: SocketAddr) -> Result<Value> {
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    println!(
        "failover: {} rooms owned by {owner} (pid {}), {} bridged client(s) each via {via}",
        a.rooms, a.owner_pid, a.bridged
    );
    let mut setups = Vec::with_capacity(a.rooms);
    for r in 0..a.rooms {
        let room = format!("f{tag}-{r}");
        setups.push(tokio::spawn(set_up_room(room, owner, via, a.bridged)));
    }
    let mut members = Vec::new();
    for s in setups {
        match tokio::time::timeout(Duration::from_secs(20), s).await {
            Ok(Ok(Ok(m))) => members.extend(m),
            Ok(Ok(Err(e))) => bail!("setting up a room: {e:#}"),
            Ok(Err(e)) => bail!("room task: {e}"),
            Err(_) => bail!("setting up a room timed out"),
        }
    }
    let n = members.len();
    let shared = Arc::new(Shared {
        via,
        kill_at: AtomicU64::new(0),
        deadline: AtomicU64::new(u64::MAX),
        retry: Duration::from_millis(a.retry_ms),
        resumed: AtomicU64::new(0),
        gave_up: AtomicU64::new(0),
        peer_left: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        outcomes: Mutex::new(Vec::with_capacity(n)),
    });
    let (phase_tx, phase_rx) = watch::channel(SETUP);
    let tasks: Vec<_> = members
        .into_iter()
        .map(|m| tokio::spawn(life(m, shared.clone(), phase_rx.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;

    let kill_at = now_ns();
    shared.kill_at.store(kill_at, Relaxed);
    shared
        .deadline
        .store(kill_at + (a.timeout * 1e9) as u64, Relaxed);
    let _ = phase_tx.send(KILLED);
    // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
    if unsafe { libc::kill(a.owner_pid as libc::pid_t, libc::SIGKILL) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = phase_tx.send(STOP);
        bail!("--owner-pid {}: kill failed: {e}", a.owner_pid);
    }
    println!("killed the owner (SIGKILL to {})", a.owner_pid);
    let deadline = kill_at + (a.timeout * 1e9) as u64 + 1_000_000_000;
    while shared.resumed.load(Relaxed) + shared.gave_up.load(Relaxed) < n as u64
        && now_ns() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_back_ms = (now_ns() - kill_at) as f64 / 1e6;
    // The call goes on: one message each way within every room.
    let _ = phase_tx.send(VERIFY);
    let verify_until = now_ns() + 5_000_000_000;
    while now_ns() < verify_until
        && (shared.sent.load(Relaxed) == 0
            || shared.delivered.load(Relaxed) < shared.sent.load(Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = phase_tx.send(STOP);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let outcomes = std::mem::take(&mut *shared.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    let role = |creator: bool| role_summary(outcomes.iter().filter(|o| o.creator == creator));
    let (sent, delivered) = (shared.sent.load(Relaxed), shared.delivered.load(Relaxed));
    let out = json!({
        "mode": "failover",
        "owner": owner.to_string(),
        "via": via.to_string(),
        "rooms": a.rooms,
        "bridged_per_room": a.bridged,
        "clients": n,
        "resumed": shared.resumed.load(Relaxed),
        "gave_up": shared.gave_up.load(Relaxed),
        "gaps": outcomes.iter().filter(|o| o.gap).count(),
        "peer_left_after_kill": shared.peer_left.load(Relaxed),
        "all_resumed_ms": round3(all_back_ms),
        "bridged": role(false),
        "owner_clients": role(true),
        "after": { "sent": sent, "delivered": delivered },
    });
    println!(
        "failover: {} of {n} resumed ({} gave up, {} with gap), {} peer-left; kill->resumed bridged {} owner's {}; after: {delivered}/{sent} delivered",
        out["resumed"], out["gave_up"], out["gaps"], out["peer_left_after_kill"],
        out["bridged"]["kill_to_resumed_ms"], out["owner_clients"]["kill_to_resumed_ms"]
    );
    Ok(out)
}

fn role_summary<'a>(os: impl Iterator<Item = &'a Outcome>) -> Value {
    let os: Vec<&Outcome> = os.collect();
    let closed: Vec<f64> = os.iter().filter_map(|o| o.closed_ms).collect();
    let resumed: Vec<f64> = os.iter().filter_map(|o| o.resumed_ms).collect();
    let attempts: Vec<f64> = os.iter().map(|o| f64::from(o.attempts)).collect();
    let mut codes = BTreeMap::<String, u64>::new();
    for o in &os {
        let k = o
            .close_code
            .map_or_else(|| "none".to_string(), |c| c.to_string());
        *codes.entry(k).or_default() += 1;
    }
    let errors: Vec<&str> = os
        .iter()
        .filter_map(|o| o.error.as_deref())
        .take(5)
        .collect();
    json!({
        "clients": os.len(),
        "kill_to_closed_ms": summary_ms(&closed),
        "kill_to_resumed_ms": summary_ms(&resumed),
        "close_codes": codes,
        "attempts": summary_ms(&attempts),
        "first_errors": errors,
    })
}

fn ms_since(t: u64) -> f64 {
    now_ns().saturating_sub(t) as f64 / 1e6
}

/// A member's life: hold the connection, resume after the kill, take part in the check.
async fn life(mut m: Member, sh: Arc<Shared>, mut phase: watch::Receiver<u8>) {
    let mut o = Outcome {
        creator: m.creator,
        ..Outcome::default()
    };
    let mut last_seq = 0u64;
    let mut verified = false;
    loop {
        tokio::select! {
            got = sb_session::next(&mut m.ws) => match got {
                Got::Event(ev) => {
                    if let Some(s) = seq_of(&ev) {
                        last_seq = last_seq.max(s);
                    }
                    match ev {
                        Event::PeerLeft { .. } if sh.kill_at.load(Relaxed) > 0 => {
                            sh.peer_left.fetch_add(1, Relaxed);
                        }
                        Event::Relay { .. } if verified || *phase.borrow() == VERIFY => {
                            sh.delivered.fetch_add(1, Relaxed);
                        }
                        _ => {}
                    }
                }
                Got::Closed(code) => {
                    let kill_at = sh.kill_at.load(Relaxed);
                    if kill_at == 0 {
                        o.error = Some(format!("connection closed before the kill (code {code:?})"));
                        sh.gave_up.fetch_add(1, Relaxed);
                        break;
                    }
                    if o.resumed_ms.is_some() {
                        o.error = Some(format!("closed again after resuming (code {code:?})"));
                        break;
                    }
                    o.closed_ms = Some(ms_since(kill_at));
                    o.close_code = code;
                    match come_back(&mut m, &sh, last_seq, &mut o).await {
                        Ok(ws) => {
                            m.ws = ws;
                            o.resumed_ms = Some(ms_since(kill_at));
                            sh.resumed.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            o.error = Some(format!("{e:#}"));
                            sh.gave_up.fetch_add(1, Relaxed);
                            break;
                        }
                    }
                }
            },
            changed = phase.changed() => {
                let p = if changed.is_ok() { *phase.borrow() } else { STOP };
                if p == STOP {
                    break;
                }
                if p == VERIFY && !verified && o.resumed_ms.is_some() {
                    verified = true;
                    for to in &m.others {
                        let text = sp::relay(crate::cli::SignalProto::Switchboard, to, now_ns(), 1, "");
                        if m.ws.send(Message::text(text)).await.is_ok() {
                            sh.sent.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
        }
    }
    sh.outcomes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(o);
}

fn seq_of(ev: &Event) -> Option<u64> {
    match ev {
        Event::PeerJoined { seq, .. }
        | Event::PeerLeft { seq, .. }
        | Event::Relay { seq, .. }
        | Event::Other { seq, .. } => *seq,
        _ => None,
    }
}

/// Connect to the surviving node and resume, again after each close or refusal, until
/// `resumed` or the deadline.
async fn come_back(m: &mut Member, sh: &Shared, last_seq: u64, o: &mut Outcome) -> Result<Ws> {
    let url = format!("ws://{}/ws", sh.via);
    loop {
        let left = sh.deadline.load(Relaxed).saturating_sub(now_ns());
        if left == 0 {
            bail!("not resumed before --timeout ({} attempts)", o.attempts);
        }
        o.attempts += 1;
        let attempt = async {
            let mut ws = open_ws(sh.via, None, &url, small_buffers()).await?;
            let r = sb_session::resume(&mut ws, &m.token, last_seq).await?;
            anyhow::Ok((ws, r))
        };
        match tokio::time::timeout(Duration::from_nanos(left), attempt).await {
            Err(_) => bail!("not resumed before --timeout ({} attempts)", o.attempts),
            Ok(Err(_)) => tokio::time::sleep(sh.retry).await, // not connected: try again
            Ok(Ok((ws, Resume::Resumed { resume, gap }))) => {
                m.token = resume;
                o.gap = gap;
                return Ok(ws);
            }
            Ok(Ok((_, Resume::Refused(code)))) if code == "bad-resume" => {
                return Err(anyhow!("resume refused: bad-resume (the session is gone)"));
            }
            Ok(Ok((_, Resume::Refused(_)))) => tokio::time::sleep(sh.retry).await,
            // Closed (1012 when the room was still bridged to the dead node): again now.
            Ok(Ok((_, Resume::Closed))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::fake_nodes;
    use clap::Parser;

    #[test]
    fn every_client_resumes_through_the_surviving_node() {
        let nodes = fake_nodes(2);
        let (a, b) = (nodes.addrs[0].to_string(), nodes.addrs[1].to_string());
        // The "owner process": its death makes the fake node A die.
        let mut owner = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = owner.id().to_string();
        std::thread::spawn(move || {
            let _ = owner.wait();
            nodes.kill(0);
            std::thread::sleep(Duration::from_secs(30));
        });
        let args = [
            "switchboard-load",
            "failover",
            "--owner",
            &a,
            "--owner-pid",
            &pid,
            "--via",
            &b,
            "--rooms",
            "3",
            "--bridged",
            "2",
            "--settle",
            "0.1",
            "--timeout",
            "20",
        ];
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Failover(args) = cli.cmd else {
            unreachable!()
        };
        let r = run(args).unwrap();
        assert_eq!(r["clients"], 9, "{r}");
        assert_eq!(r["resumed"], 9, "{r}");
        assert_eq!(r["gave_up"], 0, "{r}");
        assert_eq!(r["peer_left_after_kill"], 0, "{r}");
        // Bridged clients are closed with 1012; the dead node's own just lose theirs.
        assert_eq!(r["bridged"]["close_codes"], json!({"1012": 6}), "{r}");
        assert_eq!(r["owner_clients"]["close_codes"], json!({"none": 3}), "{r}");
        assert_eq!(r["bridged"]["kill_to_resumed_ms"]["n"], 6, "{r}");
        assert_eq!(r["owner_clients"]["kill_to_resumed_ms"]["n"], 3, "{r}");
        // Creator to each bridged client and back: 2 x 2 per room.
        assert_eq!(r["after"], json!({"sent": 12, "delivered": 12}), "{r}");
    }

    #[test]
    fn refuses_a_missing_owner_pid() {
        let nodes = fake_nodes(2);
        let (a, b) = (nodes.addrs[0].to_string(), nodes.addrs[1].to_string());
        let args = [
            "switchboard-load",
            "failover",
            "--owner",
            &a,
            "--owner-pid",
            "2147483646",
            "--via",
            &b,
            "--rooms",
            "1",
            "--settle",
            "0",
        ];
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        let crate::cli::Command::Failover(args) = cli.cmd else {
            unreachable!()
        };
        let e = run(args).unwrap_err();
        assert!(e.to_string().contains("kill failed"), "{e}");
    }
}
