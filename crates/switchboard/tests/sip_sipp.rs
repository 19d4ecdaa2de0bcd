//! The SIP gateway against SIPp (Debian `sip-tester`), the usual tool for testing SIP
//! trunks and PBXs: one test per scenario of `tests/sip/` (what each checks is written at
//! the top of its XML and in `tests/sip/README.md`).
//!
//! - inbound (SIPp is a trunk calling `sip:trunkroom@gateway`): a basic call, CANCEL
//!   while ringing, digest authentication, hold/resume by re-INVITE, 100rel/PRACK, a
//!   session timer the gateway refreshes, a caller that vanishes;
//! - outbound (SIPp is the trunk behind `--sip-trunk`, the test places the call with
//!   `POST /api/sip/calls`): 407 and early media, the far end hangs up (also over TCP,
//!   `-t t1`), CANCEL while ringing, a far end that vanishes.
//!
//! Each test starts its own server and SIPp (own ports), requires SIPp's exit status 0
//! (every call of the scenario passed; its error log and message trace are printed
//! otherwise), then that the gateway's gauges are back to 0 within 5 s and its call
//! counters say what happened. SIPp plays RTP from a pcap (`play_pcap_audio`, raw
//! sockets: root or CAP_NET_RAW) that the test writes: 60 s of a 440 Hz tone in PCMU,
//! the codec the gateway prefers.
//!
//! Ignored by default (needs `sipp`); `scripts/test-all.sh` installs `sip-tester` and runs
//! the ignored tests: `cargo test -p switchboard --test sip_sipp -- --ignored`.

mod common;

use common::Server;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use switchboard_client::sfu::http_request;

/// How long the gauges may take to settle after SIPp is done.
const SETTLE: Duration = Duration::from_secs(5);

/// SIPp's own bound on a run (`-timeout`); the test waits a little longer.
const SIPP_TIMEOUT_S: u64 = 60;

/// The pcap the inbound scenarios play (their `play_pcap_audio`), in SIPp's directory.
const PCAP: &str = "tone-pcmu.pcap";

/// The room the inbound scenarios call (`-s`), and the outbound calls' room.
const IN_ROOM: &str = "trunkroom";
const OUT_ROOM: &str = "out";

/// The trunk options of the outbound tests (the scenarios check what they lead to).
const TRUNK_AUTH: (&str, &str) = ("acct", "acctpw");

/// Tests of this binary run side by side: each takes its own 10 RTP ports of the
/// process's 120 (a port another process holds is skipped by the gateway anyway).
fn rtp_ports() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 45_000 + (std::process::id() % 100) as u16 * 120;
    let low = base + NEXT.fetch_add(1, Ordering::Relaxed) % 12 * 10;
    format!("{low}-{}", low + 9)
}

/// A server with the SFU and the SIP gateway on loopback; its SIP address.
fn gateway(extra: &[&str]) -> (Server, SocketAddr) {
    // Transactions are remembered 64×T1 after their last message (RFC 3261 §17):
    // 3.2 s with the smallest T1, which the 5 s for the gauges leaves room for.
    common::sip::gateway(&rtp_ports(), "50", extra)
}

/// A UDP port free on 127.0.0.1 right now (SIPp binds it a moment later).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// An even port P with P..=P+3 free: SIPp's media port (RTP, RTCP) and the one above
/// (its video echo port and RTCP).
fn free_media_port() -> u16 {
    for _ in 0..100 {
        let p = free_udp_port() & !1;
        if !(1024..=65_530).contains(&p) {
            continue;
        }
        let held: Vec<UdpSocket> = (p..p + 4)
            .filter_map(|q| UdpSocket::bind(("127.0.0.1", q)).ok())
            .collect();
        if held.len() == 4 {
            return p;
        }
    }
    panic!("harness failure: no four free UDP ports in a row for SIPp's media");
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sip")
        .join(name)
}

/// µ-law (G.711) of one 16-bit sample.
fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.abs().min(32_635) + BIAS;
    // The segment: the highest set bit above the 8 lowest.
    let mut exponent = 7;
    while exponent > 0 && magnitude & (0x80 << exponent) == 0 {
        exponent -= 1;
    }
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// A pcap (Ethernet/IPv4/UDP) of `secs` seconds of 20 ms PCMU RTP packets (PT 0) of a
/// 440 Hz tone. SIPp takes the RTP and the timing from it and rewrites the addresses.
fn write_tone_pcap(path: &Path, secs: u32) {
    let mut out = Vec::new();
    // Global header: magic, v2.4, GMT offset, accuracy, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for w in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    let mut phase = 0.0f64;
    for i in 0..secs * 50 {
        let mut rtp = vec![0x80, 0];
        rtp.extend_from_slice(&((i + 1) as u16).to_be_bytes());
        rtp.extend_from_slice(&(i * 160).to_be_bytes());
        rtp.extend_from_slice(&0x5eed_u32.to_be_bytes());
        for _ in 0..160 {
            phase += 2.0 * std::f64::consts::PI * 440.0 / 8000.0;
            rtp.push(ulaw((phase.sin() * 8000.0) as i16));
        }
        let udp_len = 8 + rtp.len() as u16;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&(20 + udp_len).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        for w in [6000u16, 20_000, udp_len, 0] {
            frame.extend_from_slice(&w.to_be_bytes());
        }
        frame.extend_from_slice(&rtp);
        let micros = u64::from(i) * 20_000;
        for w in [
            (micros / 1_000_000) as u32,
            (micros % 1_000_000) as u32,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).expect("write the pcap");
}

/// One SIPp run in a directory of its own (its logs, the pcap, the files the scenarios
/// touch to tell the test where they are).
struct Sipp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    started: Instant,
}

impl Sipp {
    /// Start SIPp with `scenario` and the test's `args` (a UAC adds the remote address).
    fn start(scenario_file: &str, args: &[String]) -> Sipp {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tone_pcap(&dir.path().join(PCAP), 60);
        let port = free_udp_port();
        let path = scenario(scenario_file);
        let d = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir.path())
            .arg("-sf")
            .arg(&path)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &free_media_port().to_string()])
            .args(["-cp", &free_udp_port().to_string()])
            .args([
                "-m",
                "1",
                "-timeout",
                &format!("{SIPP_TIMEOUT_S}s"),
                "-timeout_error",
            ])
            .args(["-nostdin", "-trace_err", "-error_file", &d("errors.log")])
            .args(["-trace_msg", "-message_file", &d("messages.log")])
            .args(["-trace_logs", "-log_file", &d("scenario.log")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("screen.txt")).expect("screen file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.txt")).expect("stderr file"),
            ));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("harness failure: cannot start sipp ({e}): install sip-tester (scripts/test-all.sh)")
        });
        Sipp {
            child,
            dir,
            port,
            started: Instant::now(),
        }
    }

    /// SIPp calling the gateway (`-s trunkroom`).
    fn call(scenario_file: &str, gw: SocketAddr, extra: &[&str]) -> Sipp {
        let mut args: Vec<String> = vec!["-s".into(), IN_ROOM.into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(gw.to_string());
        Sipp::start(scenario_file, &args)
    }

    /// SIPp as the trunk, listening once this returns (over TCP with `tcp`: `-t t1`).
    fn trunk(scenario_file: &str, tcp: bool) -> Sipp {
        let args: Vec<String> = match tcp {
            true => vec!["-t".into(), "t1".into()],
            false => Vec::new(),
        };
        let mut s = Sipp::start(scenario_file, &args);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Its SIP port is taken once it listens.
        let free = |port: u16| match tcp {
            true => std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            false => UdpSocket::bind(("127.0.0.1", port)).is_ok(),
        };
        while free(s.port) {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "harness failure: sipp exited ({status}) before it listened\n{}",
                    s.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "harness failure: sipp did not listen on {} within 5 s\n{}",
                s.port,
                s.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// What SIPp wrote: errors, the scenario's log lines, the message trace, stderr.
    fn logs(&self) -> String {
        ["errors.log", "scenario.log", "stderr.txt", "messages.log"]
            .iter()
            .map(|f| format!("---- sipp {f} ----\n{}", self.file(f)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Wait until the scenario touched `name` (it reached that point of the call).
    fn reached(&mut self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.dir.path().join(name).exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sipp ended ({status}) before the call was {name}\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the call was not {name} within {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for SIPp's end; its status must be 0 (every call passed).
    fn passed(mut self) -> Sipp {
        let deadline = self.started + Duration::from_secs(SIPP_TIMEOUT_S + 10);
        let status: ExitStatus = loop {
            if let Some(status) = self.child.try_wait().expect("wait for sipp") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("sipp did not end within its own timeout\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!(
            "sipp ended ({status}) after {:.1} s\n{}",
            self.started.elapsed().as_secs_f64(),
            self.file("scenario.log")
        );
        match status.code() {
            Some(0) => self,
            // -1 and -2: fatal errors (bad scenario, cannot bind): not the gateway's.
            Some(255 | 254) | None => panic!(
                "harness failure: sipp could not run ({status})\n{}",
                self.logs()
            ),
            Some(_) => panic!(
                "sipp says the scenario failed ({status}): see its error log and trace\n{}",
                self.logs()
            ),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        // Only our own child, by its handle; a no-op once it ended.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every gauge back to 0 within 5 s.
fn assert_nothing_left(server: &Server) {
    common::sip::assert_nothing_left(server, SETTLE);
}

fn calls_total(server: &Server, outcome: &str) -> u64 {
    server.metric(&format!(
        "switchboard_sip_calls_total{{outcome=\"{outcome}\"}}"
    ))
}

/// The call counters: (in, out, refused, ended).
fn assert_calls(server: &Server, expected: (u64, u64, u64, Option<u64>)) {
    let got = (
        calls_total(server, "in"),
        calls_total(server, "out"),
        calls_total(server, "refused"),
        calls_total(server, "ended"),
    );
    let (i, o, r, e) = expected;
    assert!(
        got.0 == i && got.1 == o && got.2 == r && e.map_or(true, |e| got.3 == e),
        "calls in/out/refused/ended: {got:?}, expected ({i}, {o}, {r}, {e:?})\n{}",
        server.metrics()
    );
}

/// An inbound scenario: SIPp calls the gateway (started with `gateway_args`) and passes.
fn inbound(scenario_file: &str, gateway_args: &[&str], sipp_args: &[&str]) -> (Server, Sipp) {
    let (server, gw) = gateway(gateway_args);
    let sipp = Sipp::call(scenario_file, gw, sipp_args).passed();
    assert_nothing_left(&server);
    (server, sipp)
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_basic_call() {
    let (server, _sipp) = inbound("in_basic.xml", &[], &[]);
    assert_calls(&server, (1, 0, 0, Some(1)));
    // SIPp's RTP was the call's media, not garbage.
    assert_eq!(server.metric("switchboard_sip_rtp_refused_total"), 0);
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_cancel_while_ringing() {
    let (server, _sipp) = inbound("in_cancel.xml", &[], &[]);
    // Taken, not refused (the caller gave up).
    assert_calls(&server, (1, 0, 0, None));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_digest_authentication() {
    let (server, gw) = gateway(&["--sip-auth", "trunk:trunkpw"]);
    // The digest's uri is the Request-URI (SIPp's default would be the bare host).
    let auth_uri = format!("{IN_ROOM}@{gw}");
    let _sipp = Sipp::call("in_auth.xml", gw, &["-auth_uri", &auth_uri]).passed();
    assert_nothing_left(&server);
    // The challenged INVITE is the user agent's business: one call reached the gateway.
    assert_calls(&server, (1, 0, 0, Some(1)));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_hold_and_resume() {
    let (server, _sipp) = inbound("in_hold.xml", &[], &[]);
    assert_calls(&server, (1, 0, 0, Some(1)));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_reliable_provisional_prack() {
    let (server, _sipp) = inbound("in_prack.xml", &[], &[]);
    assert_calls(&server, (1, 0, 0, Some(1)));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_session_timer_refreshed_by_the_gateway() {
    let (server, _sipp) = inbound("in_session_timer.xml", &[], &[]);
    assert_calls(&server, (1, 0, 0, Some(1)));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn inbound_caller_vanishes() {
    let (server, _sipp) = inbound("in_vanish.xml", &["--sip-rtp-timeout", "3"], &[]);
    assert_calls(&server, (1, 0, 0, Some(1)));
}

/// A gateway with SIPp (playing `scenario_file`) as its trunk, and the call placed to
/// `030 123456` from room `out`: the call's label.
fn outbound(scenario_file: &str, extra: &[&str]) -> (Server, Sipp, String) {
    outbound_over(scenario_file, extra, false)
}

/// [`outbound`], the trunk reached over TCP (`--sip-trunk …;transport=tcp`) with `tcp`.
fn outbound_over(scenario_file: &str, extra: &[&str], tcp: bool) -> (Server, Sipp, String) {
    let sipp = Sipp::trunk(scenario_file, tcp);
    let transport = if tcp { ";transport=tcp" } else { "" };
    let trunk = format!("127.0.0.1:{}{transport}", sipp.port);
    let trunk_auth = format!("{}:{}", TRUNK_AUTH.0, TRUNK_AUTH.1);
    let mut args = vec![
        "--sip-trunk",
        &trunk,
        "--sip-trunk-auth",
        &trunk_auth,
        "--sip-trunk-from",
        "sip:+4930999@127.0.0.1",
        "--sip-trunk-pai",
        "--sip-trunk-country",
        "49",
    ];
    args.extend_from_slice(extra);
    let (server, _gw) = gateway(&args);
    let http = server.http.expect("http");
    let body = format!(r#"{{"room":"{OUT_ROOM}","to":"030 123456"}}"#);
    let (status, _, reply) = http_request(
        http,
        "POST",
        "/api/sip/calls",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("POST /api/sip/calls");
    assert_eq!(status, 201, "POST /api/sip/calls: {reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
    let call = reply["call"]
        .as_str()
        .expect("the call's label")
        .to_string();
    (server, sipp, call)
}

fn hang_up(server: &Server, call: &str) {
    let http = server.http.expect("http");
    let path = format!("/api/sip/calls/{OUT_ROOM}/{call}");
    let (status, _, reply) = http_request(http, "DELETE", &path, &[], "").expect("DELETE");
    assert_eq!(status, 200, "DELETE {path}: {reply}");
}

/// MD5 in hex, by coreutils (the workspace has no MD5 for tests).
fn md5_hex(s: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("harness failure: md5sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(s.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A digest header's parameter (`name="v"` or `name=v`).
fn digest_param(header: &str, name: &str) -> Option<String> {
    let rest = header.split_once("Digest")?.1;
    rest.split(',').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The gateway's Proxy-Authorization (in SIPp's trace) answers the challenge (realm
/// "x", nonce "y") with the trunk's password (RFC 2617 §3.2.2, with or without qop).
fn assert_digest_valid(sipp: &Sipp) {
    let trace = sipp.file("messages.log");
    let header = trace
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("proxy-authorization:"))
        .unwrap_or_else(|| panic!("no Proxy-Authorization in SIPp's trace\n{trace}"));
    let p = |n: &str| digest_param(header, n).unwrap_or_default();
    assert_eq!(p("username"), TRUNK_AUTH.0, "{header}");
    assert_eq!(
        (p("realm").as_str(), p("nonce").as_str()),
        ("x", "y"),
        "{header}"
    );
    assert!(
        p("uri").starts_with("sip:+4930123456@127.0.0.1"),
        "the digest uri is the Request-URI: {header}"
    );
    let ha1 = md5_hex(&format!("{}:x:{}", TRUNK_AUTH.0, TRUNK_AUTH.1));
    let ha2 = md5_hex(&format!("INVITE:{}", p("uri")));
    let expected = match p("qop").as_str() {
        "" => md5_hex(&format!("{ha1}:y:{ha2}")),
        qop => md5_hex(&format!("{ha1}:y:{}:{}:{qop}:{ha2}", p("nc"), p("cnonce"))),
    };
    assert_eq!(p("response"), expected, "a wrong digest response: {header}");
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn outbound_trunk_challenge_and_early_media() {
    let (server, mut sipp, call) = outbound("out_auth_early_media.xml", &[]);
    sipp.reached("connected", Duration::from_secs(20));
    hang_up(&server, &call);
    let sipp = sipp.passed();
    assert_digest_valid(&sipp);
    assert_nothing_left(&server);
    assert_calls(&server, (0, 1, 0, Some(1)));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn outbound_far_end_hangs_up() {
    let (server, sipp, _call) = outbound("out_far_end_bye.xml", &[]);
    sipp.passed();
    assert_nothing_left(&server);
    assert_calls(&server, (0, 1, 0, Some(1)));
}

/// The same over TCP: SIPp (`-t t1`) as a TCP trunk; the gateway opens the connection,
/// SIPp's BYE comes on it, and the gateway closes it once the call is over.
#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn outbound_over_tcp_far_end_hangs_up() {
    let (server, sipp, _call) = outbound_over("out_far_end_bye.xml", &[], true);
    let sipp = sipp.passed();
    assert_nothing_left(&server);
    assert_calls(&server, (0, 1, 0, Some(1)));
    let messages = sipp.file("messages.log");
    assert!(messages.contains("Via: SIP/2.0/TCP "), "{messages}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("switchboard_sip_connections") > 0 {
        assert!(Instant::now() < deadline, "the TCP connection stayed open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn outbound_cancel_while_ringing() {
    let (server, mut sipp, call) = outbound("out_cancel.xml", &[]);
    sipp.reached("ringing", Duration::from_secs(20));
    hang_up(&server, &call);
    sipp.passed();
    assert_nothing_left(&server);
    assert_calls(&server, (0, 1, 0, None));
}

#[test]
#[ignore = "needs sipp (scripts/test-all.sh installs sip-tester)"]
fn outbound_far_end_vanishes() {
    let (server, sipp, _call) = outbound("out_vanish.xml", &["--sip-rtp-timeout", "3"]);
    sipp.passed();
    assert_nothing_left(&server);
    assert_calls(&server, (0, 1, 0, Some(1)));
}

#[test]
fn the_tone_is_mu_law() {
    // G.711 µ-law reference points: silence, full scale either way, a mid value.
    assert_eq!(ulaw(0), 0xff);
    assert_eq!(ulaw(i16::MAX), 0x80);
    assert_eq!(ulaw(-i16::MAX), 0x00);
    assert_eq!(ulaw(1000), 0xce);
    assert_eq!(ulaw(-1000), 0x4e);
}
