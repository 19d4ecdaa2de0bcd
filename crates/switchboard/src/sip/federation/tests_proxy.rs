//! Two Switchboards federating through a SIP proxy, Debian's kamailio
//! (`kamailio-proxy.cfg`: it routes by the Request-URI's domain and record-routes), as a
//! deployment with a proxy between the servers has it: the INVITE, the answer, the BYE
//! (along the route set) and a CANCEL cross the proxy, and the SDP still arrives byte
//! for byte. The caller's ACK and BYE cross it too (kamailio's log says so): the callee's
//! responses carry the Record-Route. Ignored by default: it needs kamailio
//! (`cargo test -- --ignored`).

use super::tests::{answered, hung_up, incoming, run, End, OFFER};
use super::*;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

const CONFIG: &str = include_str!("kamailio-proxy.cfg");

/// kamailio in a process group of its own (it forks workers): dropped, the group ends.
struct Proxy {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Waits (up to 5 s) for kamailio's log to hold `line`.
    async fn logged(&self, line: &str) {
        for _ in 0..50 {
            if std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains(line)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("kamailio's log has no {line:?}:\n{log}");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signals the process group this test started (its leader's id).
            unsafe { libc::kill(-pid, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// kamailio on `port` routing a.test to `a` and b.test to `b`, once it answers OPTIONS.
fn start_proxy(port: u16, a: SocketAddr, b: SocketAddr) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kamailio.cfg");
    let text = CONFIG
        .replace("@PORT@", &port.to_string())
        .replace("@A@", &a.port().to_string())
        .replace("@B@", &b.port().to_string());
    std::fs::write(&cfg, text).unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let log = dir.path().join("kamailio.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let child = Command::new("kamailio")
        .arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-m", "32", "-M", "4", "-Y"])
        .arg(&run_dir)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("kamailio (Debian's package) runs");
    let proxy = Proxy {
        child,
        log,
        _dir: dir,
    };
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    for n in 0..100 {
        let ping = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfedping{n}\r\nMax-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: fedping{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(ping.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 4096];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 200") {
                return proxy;
            }
        }
    }
    panic!("kamailio did not answer OPTIONS within 20 s");
}

#[test]
#[ignore = "needs Debian's kamailio"]
fn calls_cross_a_record_routing_proxy() {
    let port = free_udp_port();
    let via = format!("127.0.0.1:{port}");
    let mut a = End::start("a.test", "127.0.0.1:0", &format!("b.test={via}"), &[]);
    let mut b = End::start("b.test", "127.0.0.1:0", &format!("a.test={via}"), &[]);
    let proxy = start_proxy(port, a.udp(), b.udp());
    run(async {
        // Answered, then hung up by the callee: its BYE follows the route set.
        let (call, id) = answered(&mut a, &mut b, "ada", "bob@b.test").await;
        // The caller's ACK took the route set the 200 OK brought.
        proxy
            .logged("federation: in dialog ACK from sip:ada@a.test")
            .await;
        hung_up(&b, &id, &mut a, call).await;
        proxy
            .logged("federation: in dialog BYE from sip:bob@b.test")
            .await;
        // Answered, then hung up by the caller: its BYE crosses the proxy too.
        let (call, id) = answered(&mut a, &mut b, "ada", "bob@b.test").await;
        hung_up(&a, &call, &mut b, id).await;
        proxy
            .logged("federation: in dialog BYE from sip:ada@a.test")
            .await;
        // The other way, cancelled while it rings: the CANCEL crosses the proxy.
        let call = b.fed.place("bob", "ada@a.test", OFFER).await.unwrap();
        let (id, ..) = incoming(a.next().await);
        assert_eq!(
            b.next().await,
            FederationEvent::Ringing { id: call.clone() }
        );
        b.fed.hangup(&call).await.unwrap();
        assert_eq!(
            a.next().await,
            FederationEvent::Ended {
                id,
                reason: EndReason::Cancelled
            }
        );
        // Busy comes back through it.
        let call = a.fed.place("ada", "bob@b.test", OFFER).await.unwrap();
        let (id, ..) = incoming(b.next().await);
        b.fed.busy(&id).await.unwrap();
        assert_eq!(
            a.next_but_ringing().await,
            FederationEvent::Ended {
                id: call,
                reason: EndReason::Busy
            }
        );
        a.settles().await;
        b.settles().await;
    });
}
