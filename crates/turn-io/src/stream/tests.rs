//! Output bounds of a TLS client connection against a client that stops reading, on a
//! real loopback socket pair with small socket buffers: relayed media beyond the bound
//! is dropped and counted, everything else (answers) is kept whole and arrives in
//! order once the client reads again, even far beyond what rustls buffers itself; a
//! client that owes more than `MAX_OWED` gets its connection closed.

use super::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_turn::Transport;

const SMALL_BUFFER: usize = 64 * 1024;

struct Pair {
    server: Conn,
    client: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

fn tls_pair() -> Pair {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client_tcp = TcpStream::connect(addr).expect("connect");
    let (server_tcp, peer) = listener.accept().expect("accept");
    for s in [&client_tcp, &server_tcp] {
        let s = socket2::SockRef::from(s);
        s.set_send_buffer_size(SMALL_BUFFER).expect("sndbuf");
        s.set_recv_buffer_size(SMALL_BUFFER).expect("rcvbuf");
    }
    server_tcp.set_nonblocking(true).expect("nonblocking");
    let tls = rustls::ServerConnection::new(Arc::new(server_cfg)).expect("server conn");
    let tuple = FiveTuple {
        transport: Transport::Tls,
        client: peer,
        server: addr,
    };
    let server = Conn::new(
        mio::net::TcpStream::from_std(server_tcp),
        Some(Box::new(tls)),
        tuple,
    );
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(client_cfg), name).expect("client conn");
    let client = rustls::StreamOwned::new(conn, client_tcp);
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut pair = Pair { server, client };
    pair.handshake();
    pair
}

impl Pair {
    /// Drive both sides until the handshake is done (the client side with short
    /// read timeouts, the server side non-blocking).
    fn handshake(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.client.conn.is_handshaking() || self.server_handshaking() {
            assert!(Instant::now() < deadline, "TLS handshake did not finish");
            if self.client.conn.wants_write() {
                let _ = self.client.conn.write_tls(&mut self.client.sock);
            }
            if self.client.conn.wants_read() {
                match self.client.conn.read_tls(&mut self.client.sock) {
                    Ok(_) => {
                        let _ = self.client.conn.process_new_packets();
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("client read: {e}"),
                }
            }
            self.server.read().expect("server read");
        }
    }

    fn server_handshaking(&self) -> bool {
        self.server.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Queue until the socket and rustls are full (the client does not read); returns
    /// how many frames that took.
    fn fill(&mut self, frame: &[u8]) -> usize {
        for n in 1..=4096 {
            assert_eq!(self.server.queue(frame, false), Queued::Yes);
            self.server.flush().expect("flush");
            if self.server.pending_out() > TLS_BUFFER_LIMIT * 2 {
                return n;
            }
        }
        panic!("output never backed up: the test's socket buffers are too large");
    }

    /// The client starts reading (in a thread, blocking) until `expect` bytes came;
    /// meanwhile the server flushes as its socket allows. Returns what arrived.
    fn drain(self, expect: usize) -> (Conn, Vec<u8>) {
        let Pair {
            mut server,
            mut client,
        } = self;
        client
            .sock
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(expect);
            let mut buf = vec![0u8; 65536];
            while got.len() < expect {
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.pending_out() > 0 && Instant::now() < deadline {
            server.flush().expect("flush");
            std::thread::sleep(Duration::from_micros(200));
        }
        let got = reader.join().expect("reader");
        (server, got)
    }
}

/// A numbered ChannelData frame of `len` payload bytes.
fn frame(n: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0x40, 0x00, (len >> 8) as u8, len as u8];
    f.extend_from_slice(&n.to_be_bytes());
    f.resize(4 + len, (n % 251) as u8);
    f
}

/// Split what arrived into frames and return their numbers, checking each is intact.
fn numbers(stream: &[u8], len: usize) -> Vec<u32> {
    assert_eq!(stream.len() % (4 + len), 0, "a frame arrived cut");
    stream
        .chunks(4 + len)
        .map(|f| {
            let n = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
            assert_eq!(f, frame(n, len).as_slice(), "frame {n} arrived altered");
            n
        })
        .collect()
}

#[test]
fn answers_beyond_what_rustls_buffers_are_kept_and_arrive_in_order() {
    let mut p = tls_pair();
    const LEN: usize = 1200;
    // Far beyond rustls's 64 KiB: the old code lost everything past it without a trace.
    let total = 2 * MAX_PENDING_OUT / (4 + LEN);
    for n in 0..total as u32 {
        assert_eq!(
            p.server.queue(&frame(n, LEN), false),
            Queued::Yes,
            "answer {n} refused"
        );
        p.server.flush().expect("flush");
    }
    assert!(
        p.server.tls_deferred > 0,
        "rustls never refused a write: the test did not back up"
    );
    assert!(
        p.server.pending_out() > TLS_BUFFER_LIMIT,
        "owed {}",
        p.server.pending_out()
    );
    assert_eq!(p.server.dropped_out, 0, "answers are never dropped");
    let (server, got) = p.drain(total * (4 + LEN));
    let ns = numbers(&got, LEN);
    assert_eq!(
        ns,
        (0..total as u32).collect::<Vec<_>>(),
        "answers lost or reordered"
    );
    assert_eq!(server.pending_out(), 0);
}

#[test]
fn relayed_media_over_the_bound_is_dropped_and_counted_the_rest_arrives() {
    let mut p = tls_pair();
    const LEN: usize = 1000;
    let fillers = p.fill(&frame(0, LEN));
    let before = p.server.pending_out();
    let mut queued = Vec::new();
    let mut dropped = 0;
    for n in 1..=3000u32 {
        match p.server.queue(&frame(n, LEN), true) {
            Queued::Yes => queued.push(n),
            Queued::Dropped => dropped += 1,
            Queued::Overflow => panic!("media never overflows the connection"),
        }
        p.server.flush().expect("flush");
    }
    assert!(
        dropped > 0,
        "3 MB of media to a client that does not read was all kept"
    );
    assert_eq!(p.server.dropped_out, dropped, "every drop is counted");
    // The bound: at most one packet over MAX_PENDING_OUT is ever owed.
    let owed = p.server.pending_out();
    assert!(
        owed <= MAX_PENDING_OUT + 4 + LEN,
        "owes {owed} bytes (was {before})"
    );
    let (_, got) = p.drain((fillers + queued.len()) * (4 + LEN));
    let ns = numbers(&got, LEN);
    assert_eq!(ns.iter().filter(|&&n| n == 0).count(), fillers);
    // What was queued arrives whole and in order after the filler frames.
    let media: Vec<u32> = ns.into_iter().filter(|&n| n != 0).collect();
    assert_eq!(media, queued, "queued media lost or reordered");
}

#[test]
fn a_client_that_owes_more_than_max_owed_is_closed() {
    let mut p = tls_pair();
    let big = vec![0x00u8; 64 * 1024];
    let mut last = Queued::Yes;
    for _ in 0..(MAX_OWED / big.len() + 8) {
        last = p.server.queue(&big, false);
        if last != Queued::Yes {
            break;
        }
        let _ = p.server.flush();
    }
    assert_eq!(last, Queued::Overflow);
    assert!(p.server.overflowed);
    assert!(
        p.server.flush().is_err(),
        "the next flush reports the connection as dead"
    );
}
