//! Interop with coturn's own client tools (Debian package `coturn`, clients only):
//! turnutils_stunclient, and turnutils_uclient relaying through switchboard with
//! ChannelData and with Send indications, over UDP, TCP and TLS, with a static user
//! and with TURN REST API (`-W`) credentials, and in uclient's default RTP/RTCP mode
//! (EVEN-PORT reservations claimed by RESERVATION-TOKEN), and RFC 6062 TCP relaying
//! (`-T`) over TCP and TLS. Every run must lose nothing.
//!
//! They need coturn's client tools, so plain `cargo test` leaves them out (`#[ignore]`);
//! `scripts/test-all.sh` runs them with `-- --ignored`, and they fail rather than skip
//! when the tools are missing.

mod common;

use common::{echo_peer, require, self_signed, Server};
use std::process::Command;

#[test]
#[ignore = "interop: needs coturn's client tools (apt-get install coturn); scripts/test-all.sh runs it"]
fn stunclient_gets_its_reflexive_address() {
    require("turnutils_stunclient");
    let s = Server::start(&["--user", "alice:alicepw"]);
    let udp = s.udp.expect("udp");
    let out = Command::new("turnutils_stunclient")
        .args(["-p", &udp.port().to_string(), "127.0.0.1"])
        .output()
        .expect("run turnutils_stunclient");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UDP reflexive addr: 127.0.0.1:"),
        "unexpected stunclient output:\n{text}"
    );
}

struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    tls: bool,
}

/// Parse uclient's summary: (sent, received, lost-line-present-with-zero).
fn uclient_result(text: &str) -> (u64, u64, bool) {
    let mut sent = 0;
    let mut recv = 0;
    for line in text.lines() {
        if let Some(i) = line.find("start_mclient: tot_send_msgs=") {
            let rest = &line[i + "start_mclient: tot_send_msgs=".len()..];
            let mut parts = rest.split(", tot_recv_msgs=");
            sent = parts
                .next()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            recv = parts
                .next()
                .and_then(|v| {
                    v.trim()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
        }
    }
    let zero_loss = text.contains("Total lost packets 0 (0.000000%)");
    (sent, recv, zero_loss)
}

#[test]
#[ignore = "interop: needs coturn's client tools (apt-get install coturn); scripts/test-all.sh runs it"]
fn uclient_relays_without_loss_over_udp_tcp_tls_with_static_user_and_rest_secret() {
    require("turnutils_uclient");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let s = Server::start(&[
        "--user",
        "alice:alicepw",
        "--static-auth-secret",
        "labsecret",
        "--realm",
        "lab.test",
        "--allowed-peer-ip",
        "127.0.0.1",
        "--tls-listening-port",
        "0",
        "--cert",
        cert.to_str().expect("path"),
        "--pkey",
        key.to_str().expect("path"),
    ]);
    let peer = echo_peer();
    let mut cases = Vec::new();
    // "-c" turns off uclient's RTCP companion allocations; without it each session
    // pairs an EVEN-PORT(R) allocation with a RESERVATION-TOKEN one.
    for (mode, mode_args) in [
        ("channel", vec!["-c"]),
        ("send", vec!["-c", "-s"]),
        ("channel+rtcp-pair", vec![]),
    ] {
        for (transport, t_args, tls) in [
            ("udp", vec![], false),
            ("tcp", vec!["-t"], false),
            ("tls", vec!["-t", "-S"], true),
        ] {
            for (auth, a_args) in [
                ("static", vec!["-u", "alice", "-w", "alicepw"]),
                ("rest", vec!["-W", "labsecret", "-u", "bob"]),
            ] {
                let mut args = mode_args.clone();
                args.extend(t_args.iter());
                args.extend(a_args.iter());
                cases.push(Case {
                    name: Box::leak(format!("{mode}/{transport}/{auth}").into_boxed_str()),
                    args,
                    tls,
                });
            }
        }
    }
    let handles: Vec<_> = cases
        .into_iter()
        .map(|case| {
            let port = if case.tls { s.tls } else { s.udp.or(s.tcp) }
                .expect("port")
                .port();
            let tcp_port = s.tcp.expect("tcp").port();
            let port = if case.args.contains(&"-t") && !case.tls {
                tcp_port
            } else {
                port
            };
            std::thread::spawn(move || {
                let mut cmd = Command::new("turnutils_uclient");
                cmd.args(["-n", "40", "-m", "2", "-l", "200", "-z", "5"])
                    .args(["-e", "127.0.0.1", "-r", &peer.port().to_string()])
                    .args(["-p", &port.to_string()])
                    .args(&case.args)
                    .arg("127.0.0.1");
                let out = cmd.output().expect("run turnutils_uclient");
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                (case.name, uclient_result(&text), text)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        let (name, (sent, recv, zero_loss), text) = h.join().expect("thread");
        eprintln!("{name}: sent {sent} received {recv} zero-loss {zero_loss}");
        if sent != 80 || recv != 80 || !zero_loss {
            failures.push(format!("{name}: sent {sent}, received {recv}\n{text}"));
        }
    }
    assert!(
        failures.is_empty(),
        "uclient runs failed:\n{}",
        failures.join("\n---\n")
    );
    assert!(s.metric("switchboard_turn_relayed_packets_total") >= 80);
}

/// RFC 6062: `uclient -T` pairs clients that each allocate a TCP relay; one Connects
/// to the other's relayed address, the other gets ConnectionAttempt, both bind data
/// connections (over TCP or TLS) and exchange raw bytes. `-T` ignores `-e/-r`: the
/// peers are this server's own relay addresses, allowed without `--allowed-peer-ip`.
/// (`-P`, uclient's passive-peer mode, reports 50 % loss against coturn itself, so it
/// is not used.)
#[test]
#[ignore = "interop: needs coturn's client tools (apt-get install coturn); scripts/test-all.sh runs it"]
fn uclient_tcp_relay_without_loss_over_tcp_and_tls() {
    require("turnutils_uclient");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let s = Server::start(&[
        "--user",
        "alice:alicepw",
        "--static-auth-secret",
        "labsecret",
        "--realm",
        "lab.test",
        "--no-udp",
        "--tls-listening-port",
        "0",
        "--cert",
        cert.to_str().expect("path"),
        "--pkey",
        key.to_str().expect("path"),
    ]);
    let tcp = s.tcp.expect("tcp").port();
    let tls = s.tls.expect("tls").port();
    let cases: Vec<(&str, u16, Vec<&str>)> = vec![
        ("tcp/static", tcp, vec!["-u", "alice", "-w", "alicepw"]),
        ("tcp/rest", tcp, vec!["-W", "labsecret", "-u", "bob"]),
        (
            "tls/static",
            tls,
            vec!["-S", "-u", "alice", "-w", "alicepw"],
        ),
    ];
    let (n, m) = (40, 4);
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, port, args)| {
            std::thread::spawn(move || {
                let out = Command::new("turnutils_uclient")
                    .args(["-T", "-n", &n.to_string(), "-m", &m.to_string()])
                    .args(["-l", "200", "-z", "5", "-p", &port.to_string()])
                    .args(&args)
                    .arg("127.0.0.1")
                    .output()
                    .expect("run turnutils_uclient");
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                (name, uclient_result(&text), text)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        let (name, (sent, recv, zero_loss), text) = h.join().expect("thread");
        eprintln!("{name}: sent {sent} received {recv} zero-loss {zero_loss}");
        if sent != n * m || recv != n * m || !zero_loss {
            failures.push(format!("{name}: sent {sent}, received {recv}\n{text}"));
        }
    }
    assert!(
        failures.is_empty(),
        "uclient -T runs failed:\n{}",
        failures.join("\n---\n")
    );
    // 3 runs x 160 messages x 200 bytes, counted once per direction.
    assert!(
        s.metric_reaching("switchboard_turn_relayed_bytes_total", 3 * 160 * 200) >= 3 * 160 * 200
    );
}
