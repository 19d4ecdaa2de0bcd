//! `switchboard-load`: a STUN/TURN and WebSocket signaling load generator for lab
//! benchmarks, usable against any server (Switchboard, coturn, PeerJS, ...).
//!
//! Why our own tool: coturn's `turnutils_uclient` tops out near 36k messages/s in one
//! process (one message per syscall, per-message bookkeeping), so on a 2-core box it
//! saturates before the server does and cannot load it. This tool keeps the client
//! side cheap: preallocated buffers, `sendmmsg`/`recvmmsg` batches, no per-request
//! state (STUN transaction ids and relay payloads carry their own send timestamps),
//! and fixed-bucket histograms, so nearly all CPU is left to the server under test.
//!
//! Modes: `stun` (Binding flood), `relay` (TURN allocations relaying to an echo peer,
//! via ChannelData or Send/Data indications, or raw ChannelData with `--raw`), `churn`
//! (Allocate/release loop) and `forward` (a raw batched UDP forwarder with the server's
//! threading model and I/O: the floor a TURN server's data path is measured against)
//! and `signal` (WebSocket signaling clients in pairs against Switchboard's `/ws` or a
//! PeerJS server: connections and RSS, paced relay latency, saturation; tokio), and
//! `soak` (an hour or more of mixed allocation, media and signaling churn, for leaks),
//! and for a cluster of nodes `joins` (joins per second through a node that does or
//! does not own the rooms) and `failover` (kill -9 a room's node: time to `resumed`).
//! Every run ends with one `RESULT {json}` line for bench scripts. Targets outside
//! loopback/private/documentation ranges are refused unless `--allow-any-target`.

mod churn_mode;
mod cli;
mod echo_peer;
mod failover_mode;
#[cfg(test)]
mod fake_server;
mod forward_mode;
mod histogram;
mod joins_mode;
mod keepalive;
mod net;
mod relay_mode;
mod relay_rx;
mod sb_session;
mod signal_mode;
mod signal_proto;
mod soak_common;
mod soak_mode;
mod soak_signal;
mod stun_mode;
mod ws_conn;

use clap::Parser;
use std::process::ExitCode;

/// Raise the open-file soft limit to the hard limit (many allocations = many sockets).
fn raise_nofile_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            let _ = e.print();
            let text = e.to_string();
            let msg = text.lines().next().unwrap_or("invalid command line");
            let msg = msg.strip_prefix("error: ").unwrap_or(msg);
            println!(
                "RESULT {}",
                serde_json::json!({ "mode": null, "error": msg })
            );
            return ExitCode::from(2);
        }
    };
    raise_nofile_limit();
    let (mode, result) = match cli.cmd {
        cli::Command::Stun(a) => ("stun", stun_mode::run(a)),
        cli::Command::Relay(a) => ("relay", relay_mode::run(a)),
        cli::Command::Churn(a) => ("churn", churn_mode::run(a)),
        cli::Command::Forward(a) => ("forward", forward_mode::run(a)),
        cli::Command::Signal(a) => ("signal", signal_mode::run(a)),
        cli::Command::Soak(a) => ("soak", soak_mode::run(a)),
        cli::Command::Joins(a) => ("joins", joins_mode::run(a)),
        cli::Command::Failover(a) => ("failover", failover_mode::run(a)),
    };
    match result {
        Ok(summary) => {
            println!("RESULT {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            let summary = serde_json::json!({ "mode": mode, "error": format!("{e:#}") });
            println!("RESULT {summary}");
            ExitCode::FAILURE
        }
    }
}
