//! `switchboard nat-probe`: the UDP (and fallback TCP) driver around the sans-IO
//! [`switchboard_natprobe::Probe`], and its human and JSON output.

use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use switchboard_natprobe::{Behaviour, Probe, ProbeConfig, Report, Sock, Udp};
use switchboard_stun::{Class, Message, MessageWriter, Method, TransactionId};

/// Options of `switchboard nat-probe`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// STUN server to probe: HOST, HOST:PORT, IPv6 as `[ADDR]:PORT` (default port 3478).
    /// Mapping and filtering need an RFC 5780 server (switchboard or coturn with two
    /// listening IPs); any STUN server gives the public address.
    #[arg(long, value_name = "HOST[:PORT]")]
    server: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// How long a TCP check may take when UDP got no answer.
const TCP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a TCP connection to one port showed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tcp {
    /// A STUN Binding over TCP was answered.
    Stun,
    /// The connection was accepted.
    Open,
    /// Refused, timed out or unreachable (the error text).
    Closed(String),
}

pub fn run(args: Args) -> ExitCode {
    let (host, port) = match parse_server(&args.server) {
        Ok(hp) => hp,
        Err(e) => {
            eprintln!("switchboard nat-probe: --server: {e}");
            return ExitCode::from(2);
        }
    };
    let server = match (host.as_str(), port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => return fail(&args, &format!("{host} has no address")),
        },
        Err(e) => return fail(&args, &format!("cannot resolve {host}: {e}")),
    };
    let (report, send_error) = match probe_udp(server) {
        Ok(r) => r,
        Err(e) => return fail(&args, &format!("UDP sockets: {e}")),
    };
    let tcp = if report.udp == Udp::NoAnswer {
        tcp_checks(server)
    } else {
        Vec::new()
    };
    if args.json {
        println!("{}", to_json(&report, &tcp, send_error.as_deref()));
    } else {
        print!("{}", to_text(&report, &tcp, send_error.as_deref()));
    }
    match report.udp {
        Udp::Answered => ExitCode::SUCCESS,
        Udp::NoAnswer => {
            if args.json {
                let why = no_udp_text(&report, &tcp, send_error.as_deref());
                eprintln!("switchboard nat-probe: {why}");
            }
            ExitCode::from(1)
        }
        Udp::ErrorResponse(_) => {
            eprintln!("switchboard nat-probe: {}", report.verdict().1);
            ExitCode::from(1)
        }
    }
}

/// The verdict, made firmer when TCP showed that the server is there and only UDP is not.
fn verdict(report: &Report, tcp: &[(u16, Tcp)]) -> (&'static str, String) {
    let (direct, text) = report.verdict();
    match udp_state(report, tcp) {
        "blocked" => (
            direct.key(),
            "UDP is blocked on this network: calls from here will need TURN over TCP or TLS \
             (a TURN server on TCP port 443 passes most firewalls)"
                .into(),
        ),
        "no-answer" => ("unknown", text),
        _ => (direct.key(), text),
    }
}

fn fail(args: &Args, msg: &str) -> ExitCode {
    if args.json {
        println!("{}", json!({ "server": args.server, "error": msg }));
    }
    eprintln!("switchboard nat-probe: {msg}");
    ExitCode::from(1)
}

/// `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT` or a bare IPv6 address.
fn parse_server(s: &str) -> Result<(String, u16), String> {
    const DEFAULT: u16 = 3478;
    let bad_port = |p: &str| format!("`{p}` is not a port (1-65535)");
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_port(p)),
        Ok(n) => Ok(n),
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]`"))?;
        match after {
            "" => (h, DEFAULT),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, port(p)?),
                None => return Err(format!("`{s}`: expected `:PORT` after `]`")),
            },
        }
    } else if s.matches(':').count() > 1 {
        (s, DEFAULT)
    } else if let Some((h, p)) = s.split_once(':') {
        (h, port(p)?)
    } else {
        (s, DEFAULT)
    };
    let valid = !host.is_empty()
        && (host.parse::<IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !valid {
        return Err(format!("`{host}` is not a host name or IP address"));
    }
    Ok((host.to_string(), port))
}

fn unspecified(server: SocketAddr) -> SocketAddr {
    let ip = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// The source IP the routing table picks towards `server` (no packet is sent).
fn route_source(server: SocketAddr) -> Option<IpAddr> {
    let s = UdpSocket::bind(unspecified(server)).ok()?;
    s.connect(server).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Run the probe over three UDP sockets. Returns the report and the first send error.
fn probe_udp(server: SocketAddr) -> std::io::Result<(Report, Option<String>)> {
    let socks = [Sock::Mapping, Sock::Filtering, Sock::Hairpin];
    let mut bound = Vec::new();
    for _ in socks {
        let s = UdpSocket::bind(unspecified(server))?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        bound.push(s);
    }
    let local = route_source(server)
        .zip(bound[0].local_addr().ok())
        .map(|(ip, a)| SocketAddr::new(ip, a.port()));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(Sock, SocketAddr, Vec<u8>)>();
    let mut readers = Vec::new();
    for (sock, s) in socks.iter().zip(&bound) {
        let (s, sock, tx, stop) = (s.try_clone()?, *sock, tx.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    if tx.send((sock, from, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }));
    }
    drop(tx);
    let seed: [u8; 12] = rand::random();
    let started = Instant::now();
    let mut probe = Probe::new(server, local, ProbeConfig::new(seed), started);
    let mut send_error = None;
    // A bound on the whole run whatever the probe's timers say.
    let hard_stop = started + Duration::from_secs(30);
    loop {
        while let Some(t) = probe.poll_transmit() {
            let i = socks.iter().position(|s| *s == t.sock).unwrap_or(0);
            if let Err(e) = bound[i].send_to(&t.data, t.to) {
                send_error.get_or_insert_with(|| format!("sending to {}: {e}", t.to));
            }
        }
        let Some(deadline) = probe.poll_timeout() else {
            break;
        };
        let now = Instant::now();
        if now >= hard_stop {
            break;
        }
        match rx.recv_timeout(deadline.saturating_duration_since(now)) {
            Ok((sock, from, data)) => probe.handle_input(sock, from, &data, Instant::now()),
            Err(mpsc::RecvTimeoutError::Timeout) => probe.handle_timeout(Instant::now()),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    Ok((probe.report(), send_error))
}

/// When UDP got no answer: STUN over TCP on the server's port, and a connection to 443
/// (where TURN over TLS often listens), at the same time.
fn tcp_checks(server: SocketAddr) -> Vec<(u16, Tcp)> {
    let mut ports = vec![server.port()];
    if server.port() != 443 {
        ports.push(443);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .map(|&p| {
                let addr = SocketAddr::new(server.ip(), p);
                s.spawn(move || (p, tcp_check(addr, p == server.port())))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn tcp_check(addr: SocketAddr, stun: bool) -> Tcp {
    let mut conn = match TcpStream::connect_timeout(&addr, TCP_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return Tcp::Closed(e.to_string()),
    };
    if !stun || stun_over_tcp(&mut conn).is_none() {
        return Tcp::Open;
    }
    Tcp::Stun
}

fn stun_over_tcp(conn: &mut TcpStream) -> Option<()> {
    conn.set_read_timeout(Some(TCP_TIMEOUT)).ok()?;
    let tid = TransactionId(rand::random());
    let mut buf = [0u8; 512];
    let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Request, tid).ok()?;
    w.fingerprint().ok()?;
    let n = w.finish();
    conn.write_all(&buf[..n]).ok()?;
    let mut got = 0;
    loop {
        got += match conn.read(&mut buf[got..]).ok()? {
            0 => return None,
            n => n,
        };
        if let Ok(m) = Message::parse(&buf[..got]) {
            return (m.tid == tid && m.class == Class::Success).then_some(());
        }
        if got == buf.len() {
            return None;
        }
    }
}

fn behaviour(b: Option<Behaviour>) -> Option<&'static str> {
    b.map(Behaviour::as_str)
}

/// "blocked" when the server answers over TCP, "no-answer" when nothing answers.
fn udp_state(report: &Report, tcp: &[(u16, Tcp)]) -> &'static str {
    match report.udp {
        Udp::Answered => "ok",
        Udp::ErrorResponse(_) => "error-response",
        Udp::NoAnswer if tcp.iter().any(|(_, t)| !matches!(t, Tcp::Closed(_))) => "blocked",
        Udp::NoAnswer => "no-answer",
    }
}

/// The sentence for a probe without a UDP answer.
fn no_udp_text(report: &Report, tcp: &[(u16, Tcp)], send_error: Option<&str>) -> String {
    let cfg = ProbeConfig::new([0; 12]);
    let mut s = format!(
        "no answer over UDP from {} after {} tries ({:.1} s)",
        report.server,
        cfg.tries,
        cfg.give_up_after().as_secs_f32()
    );
    if let Some(e) = send_error {
        s += &format!(" ({e})");
    }
    let open: Vec<String> = tcp
        .iter()
        .filter(|(_, t)| !matches!(t, Tcp::Closed(_)))
        .map(|(p, t)| match t {
            Tcp::Stun => format!("answers STUN over TCP port {p}"),
            _ => format!("accepts TCP on port {p}"),
        })
        .collect();
    if open.is_empty() {
        let ports: Vec<String> = tcp.iter().map(|(p, _)| p.to_string()).collect();
        s += &format!(
            ", nor over TCP (ports {}): the server is unreachable (is it running, is the \
             address right?), or this network blocks it",
            ports.join(", ")
        );
    } else {
        s += &format!(
            ", but the server {}: UDP blocked on this network",
            open.join(" and ")
        );
    }
    s
}

fn to_text(report: &Report, tcp: &[(u16, Tcp)], send_error: Option<&str>) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    let rfc5780 = match report.other {
        Some(o) => format!("RFC 5780: yes, other address {o}"),
        None if report.udp == Udp::Answered => "RFC 5780: no".to_string(),
        None => "no answer".to_string(),
    };
    line("server:", format!("{} ({rfc5780})", report.server));
    if report.udp == Udp::NoAnswer {
        line("UDP:", no_udp_text(report, tcp, send_error));
    }
    if let Some(l) = report.local {
        line("local address:", l.to_string());
    }
    if let Some(p) = report.public {
        let nat = match report.behind_nat() {
            Some(true) => " (behind a NAT)",
            Some(false) => " (same as the local address: no NAT)",
            None => "",
        };
        line("public address:", format!("{p}{nat}"));
    }
    if report.udp == Udp::Answered {
        let unknown = if report.rfc5780() {
            "unknown"
        } else {
            "unknown (the server does not support RFC 5780)"
        };
        let mapping = behaviour(report.mapping).map(|b| format!("{b} mapping"));
        let filtering = behaviour(report.filtering).map(|b| format!("{b} filtering"));
        line("mapping:", mapping.unwrap_or_else(|| unknown.into()));
        line("filtering:", filtering.unwrap_or_else(|| unknown.into()));
        let hairpin = match report.hairpinning {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        line("hairpinning:", hairpin.into());
        if let Some(t) = report.nat_type() {
            line("NAT type:", t.into());
        }
    }
    line("verdict:", verdict(report, tcp).1);
    for n in &report.notes {
        line("note:", n.clone());
    }
    out
}

fn to_json(report: &Report, tcp: &[(u16, Tcp)], send_error: Option<&str>) -> String {
    let (direct, verdict) = verdict(report, tcp);
    let udp = udp_state(report, tcp);
    let error = match report.udp {
        Udp::NoAnswer => Some(no_udp_text(report, tcp, send_error)),
        Udp::ErrorResponse(code) => Some(format!("Binding answered with error {code}")),
        Udp::Answered => None,
    };
    let tcp: serde_json::Map<String, serde_json::Value> = tcp
        .iter()
        .map(|(p, t)| {
            let v = match t {
                Tcp::Stun => "stun",
                Tcp::Open => "open",
                Tcp::Closed(_) => "closed",
            };
            (p.to_string(), json!(v))
        })
        .collect();
    let v = json!({
        "server": report.server.to_string(),
        "udp": udp,
        "tcp": tcp,
        "rfc5780": report.rfc5780(),
        "other_address": report.other.map(|a| a.to_string()),
        "local_address": report.local.map(|a| a.to_string()),
        "public_address": report.public.map(|a| a.to_string()),
        "behind_nat": report.behind_nat(),
        "mapping": behaviour(report.mapping),
        "filtering": behaviour(report.filtering),
        "hairpinning": report.hairpinning,
        "nat_type": report.nat_type(),
        "direct_calls": direct,
        "verdict": verdict,
        "notes": report.notes,
        "error": error,
    });
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_natprobe::Direct;

    #[test]
    fn server_argument_forms() {
        let ok = |s: &str| parse_server(s).expect(s);
        assert_eq!(ok("stun.example.org"), ("stun.example.org".into(), 3478));
        assert_eq!(ok("203.0.113.1:3479"), ("203.0.113.1".into(), 3479));
        assert_eq!(ok("[2001:db8::1]:5000"), ("2001:db8::1".into(), 5000));
        assert_eq!(ok("[2001:db8::1]"), ("2001:db8::1".into(), 3478));
        assert_eq!(ok("2001:db8::1"), ("2001:db8::1".into(), 3478));
        for bad in [
            "",
            ":3478",
            "host:0",
            "host:99999",
            "host:x",
            "[::1",
            "[::1]x",
            "a b",
            "h/x",
        ] {
            assert!(parse_server(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn udp_blocked_only_when_tcp_answers() {
        let report = Report {
            server: "203.0.113.1:3478".parse().expect("addr"),
            udp: Udp::NoAnswer,
            local: None,
            public: None,
            other: None,
            mapping: None,
            filtering: None,
            hairpinning: None,
            notes: Vec::new(),
        };
        let closed = vec![
            (3478, Tcp::Closed("timed out".into())),
            (443, Tcp::Closed("x".into())),
        ];
        assert_eq!(udp_state(&report, &closed), "no-answer");
        assert!(no_udp_text(&report, &closed, None).contains("unreachable"));
        let open = vec![(3478, Tcp::Closed("timed out".into())), (443, Tcp::Open)];
        assert_eq!(udp_state(&report, &open), "blocked");
        let text = no_udp_text(&report, &open, None);
        assert!(
            text.contains("UDP blocked") && text.contains("port 443"),
            "{text}"
        );
        assert_eq!(report.verdict().0, Direct::UdpBlocked);
    }
}
