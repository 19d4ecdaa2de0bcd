//! Test harness: run the real `switchboard` binary on ephemeral ports and find out
//! where it listens from the JSON it writes to `--ready-file` once every listener is up
//! (its log is kept for the tests that check what it says).

#![allow(dead_code)]

pub mod client;
pub mod federated;
pub mod lines;
pub mod signal_client;
pub mod sip;
pub mod sip_phone;
pub mod tcp_client;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub log: mpsc::Receiver<String>,
    /// The lines logged up to "switchboard started".
    pub startup: Vec<String>,
    /// What the server wrote to its `--ready-file`.
    pub ready: serde_json::Value,
    /// Holds the ready file.
    _dir: tempfile::TempDir,
}

/// How long a start may take (a debug build on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    /// Start with `args` added to `serve -p 0 --metrics-listen 127.0.0.1:0`; waits until
    /// every listener is up.
    pub fn start(args: &[&str]) -> Server {
        let mut full = vec!["serve", "-p", "0", "--metrics-listen", "127.0.0.1:0"];
        full.extend_from_slice(args);
        Self::start_raw(&full)
    }

    pub fn start_raw(args: &[&str]) -> Server {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if !args.iter().any(|a| a == "--http-listen") {
            args.extend(["--http-listen".into(), "127.0.0.1:0".into()]);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ready_file = dir.path().join("ready.json");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        if !args.iter().any(|a| a == "--sfu-port") {
            // Tests run servers side by side: the SFU takes any free port unless told.
            cmd.env("SWITCHBOARD_SFU_PORT", "0");
        }
        let mut child = cmd
            .args(&args)
            .arg("--ready-file")
            .arg(&ready_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[switchboard] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The file appears whole (written aside, then renamed) once everything listens.
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break serde_json::from_str::<serde_json::Value>(&text)
                    .expect("ready file is JSON");
            }
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("switchboard exited ({status}) before it was ready: {args:?}");
            }
            assert!(
                Instant::now() < deadline,
                "switchboard was not ready within {START_TIMEOUT:?}: {args:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let first = |kind: &str| -> Option<SocketAddr> {
            ready["listeners"][kind][0].as_str()?.parse().ok()
        };
        let mut s = Server {
            udp: first("turn-udp"),
            tcp: first("turn-tcp"),
            tls: first("turn-tls"),
            metrics: first("metrics"),
            http: first("http").or(first("https")),
            child,
            log: rx,
            startup: Vec::new(),
            ready,
            _dir: dir,
        };
        // The start-up log, for tests that check what it says: it ends with this line,
        // logged just before the ready file was written.
        loop {
            let line = s
                .log
                .recv_timeout(START_TIMEOUT)
                .expect("the start-up log ends with `switchboard started`");
            let last = line.contains("switchboard started");
            s.startup.push(line);
            if last {
                break;
            }
        }
        s
    }

    /// The TLS certificate's SHA-256 fingerprint (from the ready file).
    pub fn tls_fingerprint(&self) -> String {
        self.ready["tls_fingerprint"]
            .as_str()
            .expect("a TLS certificate is configured")
            .to_string()
    }

    /// Wait for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// The metrics page.
    pub fn metrics(&self) -> String {
        http_get(self.metrics.expect("metrics enabled"), "/metrics")
    }

    /// A metric's value (first sample whose line starts with `name`).
    pub fn metric(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Poll a metric until it reaches `min` (workers publish every 250 ms); returns
    /// the last value read, which the caller asserts on.
    pub fn metric_reaching(&self, name: &str, min: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let v = self.metric(name);
            if v >= min || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` over HTTP/1.0; the whole response, headers included.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// A UDP echo peer on 127.0.0.1 (returns every datagram to its sender), listening on
/// port P and P+1 like an RTP/RTCP pair; returns P.
pub fn echo_peer() -> SocketAddr {
    let (a, b) = loop {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind echo");
        let port = a.local_addr().expect("addr").port();
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", port.wrapping_add(1))) {
            break (a, b);
        }
    };
    let addr = a.local_addr().expect("addr");
    for sock in [a, b] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        });
    }
    addr
}

/// A port P free for UDP on 127.0.0.1 and 127.0.0.2 together with P+1 (RFC 5780 needs
/// two addresses and a fixed port).
pub fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let p = 20000 + rand::random::<u16>() % 20000;
        let ok = ["127.0.0.1", "127.0.0.2"]
            .iter()
            .all(|ip| UdpSocket::bind((*ip, p)).is_ok() && UdpSocket::bind((*ip, p + 1)).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no free port pair");
}

/// Self-signed certificate and key for "localhost" in `dir`.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    (cert, key)
}

/// Whether a program is on PATH; interop tests fail loudly without it rather than skip.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} not found: install the test prerequisites (see README: apt-get install coturn)"
    );
}
