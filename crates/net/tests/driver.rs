//! Two datagram services on the real driver: each on its own port, then both on one
//! port split by the demultiplexer (RFC 7983 class and STUN USERNAME), with their
//! timers driven by the heap.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_net::socket::{bind_group, udp_socket};
use switchboard_net::{
    DatagramClass, Flow, Io, PortInfo, Received, Router, Service, Tx, WorkerBuilder,
};
use switchboard_stun::{attr_type, Class, MessageWriter, Method, TransactionId};

/// Echoes each datagram back with its tag byte written into the headroom in place.
struct Echo {
    tag: u8,
    stop: Arc<AtomicBool>,
    timeouts: Arc<AtomicUsize>,
    next: Instant,
}

impl Service for Echo {
    fn on_datagram(&mut self, port: &PortInfo, d: Received<'_>, tx: &mut Tx<'_>, _now: Instant) {
        let (h, len) = (d.headroom(), d.len);
        let Some(from) = d.from else { return };
        d.buf[h - 1] = self.tag;
        tx.send(port.fd, from, &d.buf[h - 1..h + len]);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }

    fn handle_timeout(&mut self, _io: &mut Io, now: Instant) -> Flow {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        self.next = now + Duration::from_millis(10);
        if self.stop.load(Ordering::Relaxed) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

struct Harness {
    stop: Arc<AtomicBool>,
    timeouts: [Arc<AtomicUsize>; 2],
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Harness {
    /// `threads` workers, each with services A (id 0) and B (id 1) and one socket
    /// of each port group; `ports` gives each port's router.
    fn start(threads: usize, ports: &[Router]) -> (Self, Vec<SocketAddr>) {
        let stop = Arc::new(AtomicBool::new(false));
        let timeouts = [Arc::default(), Arc::default()];
        let mut groups = Vec::new();
        let mut addrs = Vec::new();
        for _ in ports {
            let (bound, socks) =
                bind_group("127.0.0.1:0".parse().unwrap(), threads, udp_socket).unwrap();
            addrs.push(bound);
            groups.push(socks.into_iter());
        }
        let mut handles = Vec::new();
        for id in 0..threads {
            let mut w = WorkerBuilder::new(id, 16, 0).unwrap();
            for (tag, t) in [(b'A', &timeouts[0]), (b'B', &timeouts[1])] {
                w.service(Box::new(Echo {
                    tag,
                    stop: stop.clone(),
                    timeouts: Arc::clone(t),
                    next: Instant::now(),
                }));
            }
            for ((group, router), &addr) in groups.iter_mut().zip(ports).zip(&addrs) {
                let sock: UdpSocket = group.next().unwrap().into();
                w.port(sock, addr, router.clone());
            }
            let worker = w.build().unwrap();
            handles.push(std::thread::spawn(move || worker.run()));
        }
        (
            Harness {
                stop,
                timeouts,
                threads: handles,
            },
            addrs,
        )
    }

    fn stop(self) -> [usize; 2] {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        [
            self.timeouts[0].load(Ordering::Relaxed),
            self.timeouts[1].load(Ordering::Relaxed),
        ]
    }
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c
}

fn ask(c: &UdpSocket, to: SocketAddr, data: &[u8]) -> Vec<u8> {
    c.send_to(data, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = c.recv_from(&mut buf).expect("an answer");
    assert_eq!(from, to);
    buf[..n].to_vec()
}

fn binding(username: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let mut w = MessageWriter::new(
        &mut buf,
        Method::BINDING,
        Class::Request,
        TransactionId([3; 12]),
    )
    .unwrap();
    w.attr(attr_type::USERNAME, username).unwrap();
    let n = w.message_len();
    buf.truncate(n);
    buf
}

#[test]
fn two_services_on_their_own_ports() {
    let (h, addrs) = Harness::start(2, &[Router::new(0), Router::new(1)]);
    let c = client();
    for i in 0..20u8 {
        assert_eq!(ask(&c, addrs[0], &[0x80, i]), vec![b'A', 0x80, i]);
        assert_eq!(ask(&c, addrs[1], &[0x80, i]), vec![b'B', 0x80, i]);
    }
    std::thread::sleep(Duration::from_millis(50));
    let timeouts = h.stop();
    assert!(
        timeouts[0] >= 2 && timeouts[1] >= 2,
        "timers ran: {timeouts:?}"
    );
}

#[test]
fn one_port_shared_by_class_and_ufrag() {
    let mut shared = Router::new(0);
    shared.add_ufrag(b"sfu1", 1);
    shared.route_class(DatagramClass::Dtls, 1);
    shared.route_class(DatagramClass::Rtp, 1);
    let (h, addrs) = Harness::start(1, &[shared]);
    let c = client();
    let to = addrs[0];
    let ice = binding(b"sfu1:remote");
    assert_eq!(ask(&c, to, &ice)[0], b'B', "ICE check for the SFU's ufrag");
    let turn = binding(b"alice");
    assert_eq!(ask(&c, to, &turn)[0], b'A', "STUN without that ufrag: TURN");
    assert_eq!(ask(&c, to, &[0x40, 0, 0, 0])[0], b'A', "ChannelData: TURN");
    assert_eq!(ask(&c, to, &[22, 254, 253])[0], b'B', "DTLS");
    assert_eq!(ask(&c, to, &[0x80, 96])[0], b'B', "RTP");
    assert_eq!(ask(&c, to, &[0xFF])[0], b'A', "unknown: the default");
    h.stop();
}

/// A service with a socket of its own (as TURN has relay sockets): registered with a
/// token from `Io::token`, its readiness comes back to it as `on_event`, and it reads
/// and answers through the worker's batch.
struct OwnSocket {
    sock: Option<mio::net::UdpSocket>,
    addr: std::sync::mpsc::Sender<SocketAddr>,
    stop: Arc<AtomicBool>,
    next: Instant,
    events: Arc<AtomicUsize>,
}

impl Service for OwnSocket {
    fn attach(&mut self, io: &mut Io) -> std::io::Result<()> {
        let mut s = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap())?;
        let token = io.token(switchboard_net::Kind::Relay, 7);
        io.registry()
            .register(&mut s, token, mio::Interest::READABLE)?;
        let _ = self.addr.send(s.local_addr()?);
        self.sock = Some(s);
        Ok(())
    }

    fn on_datagram(&mut self, _: &PortInfo, _: Received<'_>, _: &mut Tx<'_>, _: Instant) {
        panic!("no port routes to this service");
    }

    fn on_event(
        &mut self,
        io: &mut Io,
        tok: switchboard_net::Tok,
        readable: bool,
        _writable: bool,
        _now: Instant,
    ) {
        assert_eq!(
            (tok.service, tok.kind, tok.index),
            (1, switchboard_net::Kind::Relay, 7)
        );
        self.events.fetch_add(1, Ordering::Relaxed);
        let Some(fd) = self.sock.as_ref().map(std::os::fd::AsRawFd::as_raw_fd) else {
            return;
        };
        if !readable {
            return;
        }
        loop {
            let Ok(slots) = io.batch.recv(fd) else { return };
            if slots.is_empty() {
                return;
            }
            for i in slots {
                let (d, mut tx) = io.batch.slot(i);
                let Some(from) = d.from else { continue };
                let (h, len) = (d.headroom(), d.len);
                d.buf[h - 1] = b'R';
                tx.send(fd, from, &d.buf[h - 1..h + len]);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }

    fn handle_timeout(&mut self, _io: &mut Io, now: Instant) -> Flow {
        self.next = now + Duration::from_millis(10);
        match self.stop.load(Ordering::Relaxed) {
            true => Flow::Stop,
            false => Flow::Continue,
        }
    }
}

#[test]
fn a_service_socket_gets_its_own_events_by_token() {
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicUsize::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let mut w = WorkerBuilder::new(0, 16, 0).unwrap();
    w.service(Box::new(Echo {
        tag: b'A',
        stop: stop.clone(),
        timeouts: Arc::default(),
        next: Instant::now(),
    }));
    let id = w.service(Box::new(OwnSocket {
        sock: None,
        addr: addr_tx,
        stop: stop.clone(),
        next: Instant::now(),
        events: events.clone(),
    }));
    assert_eq!(id, 1);
    let worker = w.build().unwrap();
    let own = addr_rx.recv().unwrap();
    let t = std::thread::spawn(move || worker.run());
    let c = client();
    for i in 0..10u8 {
        assert_eq!(ask(&c, own, &[i, i]), vec![b'R', i, i]);
    }
    assert!(events.load(Ordering::Relaxed) >= 1);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

/// Answers nothing per datagram: it keeps what came in and answers everything of the
/// pass in `before_flush` (as the SFU moves what it forwarded once per batch), with no
/// timer that could do it instead.
struct PerBatch {
    port_fd: Option<std::os::fd::RawFd>,
    held: Vec<(SocketAddr, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    batches: Arc<AtomicUsize>,
}

impl Service for PerBatch {
    fn attach(&mut self, io: &mut Io) -> std::io::Result<()> {
        self.port_fd = io.ports().first().map(|p| p.fd);
        Ok(())
    }

    fn on_datagram(&mut self, _: &PortInfo, d: Received<'_>, _: &mut Tx<'_>, _: Instant) {
        if let Some(from) = d.from {
            self.held.push((from, d.payload().to_vec()));
        }
    }

    fn before_flush(&mut self, io: &mut Io, _now: Instant) {
        let Some(fd) = self.port_fd else { return };
        if self.held.is_empty() {
            return;
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        let mut tx = io.batch.tx();
        for (to, bytes) in self.held.drain(..) {
            let n = bytes.len() as u8;
            tx.send(fd, to, &[&[b'F', n][..], &bytes].concat());
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // Only to notice the stop flag; answers never wait for it.
        Some(Instant::now() + Duration::from_millis(20))
    }

    fn handle_timeout(&mut self, _io: &mut Io, _now: Instant) -> Flow {
        match self.stop.load(Ordering::Relaxed) {
            true => Flow::Stop,
            false => Flow::Continue,
        }
    }
}

#[test]
fn work_deferred_to_before_flush_leaves_in_the_same_pass() {
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(0));
    let (bound, socks) = bind_group("127.0.0.1:0".parse().unwrap(), 1, udp_socket).unwrap();
    let mut w = WorkerBuilder::new(0, 16, 0).unwrap();
    w.service(Box::new(PerBatch {
        port_fd: None,
        held: Vec::new(),
        stop: stop.clone(),
        batches: batches.clone(),
    }));
    let sock: UdpSocket = socks.into_iter().next().unwrap().into();
    w.port(sock, bound, Router::new(0));
    let worker = w.build().unwrap();
    let t = std::thread::spawn(move || worker.run());
    let c = client();
    for i in 0..10u8 {
        assert_eq!(ask(&c, bound, &[0x80, i]), vec![b'F', 2, 0x80, i]);
    }
    assert!(batches.load(Ordering::Relaxed) >= 10);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}
