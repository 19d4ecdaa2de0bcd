//! `switchboard nat-probe` in the NAT lab (tests/nat/lab.sh): one client behind each
//! kind of NAT, the real binary as the RFC 5780 server (and coturn's turnserver as
//! another), and nat-probe must name each NAT's mapping and filtering.
//!
//! The lab tests need root (network namespaces, iptables) or passwordless sudo, so plain
//! `cargo test` leaves them out (`#[ignore]`); `scripts/test-all.sh` runs them with
//! `-- --ignored`, and there they fail and say so rather than skip without root. The
//! loopback tests at the end (exit codes, a server without RFC 5780) need neither and
//! always run.

mod common;

use serde_json::Value;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/nat/lab.sh")
}

/// `[]` as root, `["sudo", "-n"]` with passwordless sudo; otherwise a loud failure.
fn privilege() -> Vec<&'static str> {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Vec::new();
    }
    let sudo = Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if sudo.is_ok_and(|s| s.success()) {
        return vec!["sudo", "-n"];
    }
    panic!(
        "the NAT lab needs root (network namespaces and iptables): run the tests as root \
         (CI does), with passwordless sudo, or as `sudo -E cargo test -p switchboard --test \
         nat_probe -- --ignored`; this test does not skip itself"
    );
}

/// Run `lab.sh probe` and return each client's (exit code, JSON, text).
fn probe_lab(server: &str) -> HashMap<String, (i32, Value, String)> {
    for tool in ["ip", "iptables", "ss"] {
        common::require(tool);
    }
    let sudo = privilege();
    let out = tempfile::tempdir().expect("tempdir");
    // `env VAR=... lab.sh`, behind `sudo -n` when not root.
    let mut argv: Vec<String> = sudo.iter().map(|s| s.to_string()).collect();
    argv.extend([
        "env".to_string(),
        format!("SWITCHBOARD_BIN={}", env!("CARGO_BIN_EXE_switchboard")),
        format!("NATLAB_SERVER={server}"),
        lab_script().display().to_string(),
        "probe".to_string(),
        out.path().display().to_string(),
    ]);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let mut child = cmd.spawn().expect("run tests/nat/lab.sh");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for lab.sh") {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            // TERM lets the script's trap remove the lab.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            panic!("the NAT lab took more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "tests/nat/lab.sh probe failed: {status}");
    eprintln!("NAT lab with {server} took {:?}", t0.elapsed());
    let mut results = HashMap::new();
    for kind in ["open", "fullcone", "restricted", "symmetric", "fw443"] {
        let read = |ext: &str| {
            std::fs::read_to_string(out.path().join(format!("{kind}.{ext}")))
                .unwrap_or_else(|e| panic!("{kind}.{ext}: {e}"))
        };
        let rc: i32 = read("rc").trim().parse().expect("exit code");
        let json: Value = serde_json::from_str(read("json").trim())
            .unwrap_or_else(|e| panic!("{kind}.json is not JSON ({e}): {}", read("json")));
        let text = read("txt");
        eprintln!("== {kind} (exit {rc})\n{text}");
        results.insert(kind.to_string(), (rc, json, text));
    }
    results
}

fn check(results: &HashMap<String, (i32, Value, String)>, fw443_udp: &str) {
    // kind, public IP, mapping, filtering, hairpinning, direct_calls
    let cases = [
        (
            "open",
            "203.0.113.50",
            "endpoint-independent",
            "endpoint-independent",
            true,
            "most-peers",
        ),
        (
            "fullcone",
            "203.0.113.11",
            "endpoint-independent",
            "endpoint-independent",
            true,
            "most-peers",
        ),
        (
            "restricted",
            "203.0.113.12",
            "endpoint-independent",
            "address-and-port-dependent",
            false,
            "most-peers-except-symmetric",
        ),
        (
            "symmetric",
            "203.0.113.13",
            "address-and-port-dependent",
            "address-and-port-dependent",
            false,
            "relay-needed-with-restrictive-peers",
        ),
    ];
    for (kind, public_ip, mapping, filtering, hairpin, direct) in cases {
        let (rc, j, text) = &results[kind];
        assert_eq!(*rc, 0, "{kind}: exit code\n{text}");
        assert_eq!(j["udp"], "ok", "{kind}: {j}");
        assert_eq!(j["rfc5780"], true, "{kind}: {j}");
        assert_eq!(j["mapping"], mapping, "{kind}: {j}");
        assert_eq!(j["filtering"], filtering, "{kind}: {j}");
        assert_eq!(j["hairpinning"], hairpin, "{kind}: {j}");
        assert_eq!(j["direct_calls"], direct, "{kind}: {j}");
        assert_eq!(j["behind_nat"], kind != "open", "{kind}: {j}");
        let public = j["public_address"].as_str().unwrap_or_default();
        assert!(public.starts_with(&format!("{public_ip}:")), "{kind}: {j}");
        assert!(
            text.contains(&format!("{mapping} mapping")),
            "{kind}:\n{text}"
        );
        assert!(
            text.contains(&format!("{filtering} filtering")),
            "{kind}:\n{text}"
        );
    }
    let (rc, j, text) = &results["fw443"];
    assert_eq!(
        *rc, 1,
        "fw443: a probe without a UDP answer exits 1\n{text}"
    );
    assert_eq!(j["udp"], fw443_udp, "fw443: {j}");
    assert_eq!(j["tcp"]["3478"], "closed", "fw443: {j}");
    assert!(
        j["mapping"].is_null() && j["public_address"].is_null(),
        "{j}"
    );
    if fw443_udp == "blocked" {
        assert_eq!(j["tcp"]["443"], "open", "fw443: {j}");
        assert!(text.contains("UDP blocked"), "fw443:\n{text}");
    }
}

#[test]
#[ignore = "NAT lab: needs root (network namespaces, iptables); scripts/test-all.sh runs it"]
fn nat_probe_names_every_nat_kind_against_switchboard() {
    let results = probe_lab("switchboard");
    // The lab's switchboard also listens for TLS on 443, the one port the firewall opens.
    check(&results, "blocked");
}

#[test]
#[ignore = "NAT lab: needs root (network namespaces, iptables) and coturn's turnserver; scripts/test-all.sh runs it"]
fn nat_probe_names_every_nat_kind_against_coturn() {
    common::require("turnserver");
    let results = probe_lab("coturn");
    // coturn runs without TLS in the lab, so nothing answers through the firewall.
    check(&results, "no-answer");
}

/// Run `switchboard nat-probe ARGS`: (exit code, stdout, stderr).
fn nat_probe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("nat-probe")
        .args(args)
        .output()
        .expect("run switchboard nat-probe");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn loopback_probe_against_rfc5780_switchboard_sees_no_nat() {
    let port = common::free_port_pair().to_string();
    let _s = common::Server::start_raw(&[
        "serve",
        "-p",
        &port,
        "-L",
        "127.0.0.1",
        "-L",
        "127.0.0.2",
        "--user",
        "a:b",
        "--metrics-listen",
        "off",
    ]);
    let (code, out, err) = nat_probe(&["--server", &format!("127.0.0.1:{port}"), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let j: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(j["rfc5780"], true, "{j}");
    assert_eq!(
        j["other_address"],
        format!("127.0.0.2:{}", port.parse::<u16>().expect("port") + 1)
    );
    assert_eq!(j["behind_nat"], false, "{j}");
    assert_eq!(j["mapping"], "endpoint-independent", "{j}");
    assert_eq!(j["filtering"], "endpoint-independent", "{j}");
    assert_eq!(j["local_address"], j["public_address"], "{j}");
}

#[test]
fn server_without_rfc5780_gives_the_address_and_says_so() {
    let s = common::Server::start(&["--user", "a:b"]);
    let udp = s.udp.expect("udp").to_string();
    let (code, out, err) = nat_probe(&["--server", &udp]);
    assert_eq!(code, 0, "a probe that ran exits 0: {out}{err}");
    assert!(out.contains("RFC 5780: no"), "{out}");
    assert!(out.contains("does not support RFC 5780"), "{out}");
    assert!(out.contains("public address: 127.0.0.1:"), "{out}");
    let (code, out, _) = nat_probe(&["--server", &udp, "--json"]);
    assert_eq!(code, 0);
    let j: Value = serde_json::from_str(out.trim()).expect("json");
    assert!(j["mapping"].is_null() && j["filtering"].is_null(), "{j}");
    assert_eq!(j["direct_calls"], "most-peers", "no NAT on loopback: {j}");
}

#[test]
fn unreachable_server_exits_1_and_bad_arguments_exit_2() {
    // A UDP port nobody listens on (bound, then released).
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port();
    let t0 = Instant::now();
    let (code, out, err) = nat_probe(&["--server", &format!("127.0.0.1:{port}"), "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let j: Value = serde_json::from_str(out.trim()).expect("json");
    assert_ne!(j["udp"], "ok", "{j}");
    assert!(err.contains("no answer over UDP"), "{err}");
    for bad in [
        &["--server", "a b"][..],
        &["--server", "host:0"],
        &["--server", "[::1"],
        &[],
    ] {
        let (code, out, err) = nat_probe(bad);
        assert_eq!(code, 2, "{bad:?}: {out}{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
