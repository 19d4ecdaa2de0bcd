//! `forward`: TURN's UDP data path without TURN, the physical limit for the server.
//!
//! Same kernel path and threading model as `switchboard serve`: N threads, each with its
//! own SO_REUSEPORT socket on the listen address, its own epoll loop, and the "relay"
//! sockets (bound to `--relay-ip`:0) of the clients the kernel hashes to it, moving
//! datagrams in recvmmsg/sendmmsg batches with the server's own driver batch
//! (`switchboard_net::Batch`: receives from several sockets fill consecutive slots;
//! everything queued goes out once per event-loop pass, or when the slots run out, as
//! in the server's worker).
//!
//! - ChannelData from a client (first byte 0x40-0x7F): the 4-byte header is stripped and
//!   the payload goes from that client's relay socket to `--peer`.
//! - A datagram from `--peer` on a relay socket: a ChannelData header (channel 0x4000)
//!   is written in place in front of it and it goes back to the client from the listen
//!   socket.
//! - Anything else from a client (STUN): echoed back unchanged, the floor for Binding.
//!
//! No authentication, permissions, lifetimes or timers: whatever a TURN server spends
//! beyond this is its own overhead.

use crate::cli::{check_duration, check_range, is_lab_address, resolve_target, ForwardArgs};
use crate::net::round3;
use crate::net::{now_ns, Epoll};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard_net::batch::{Batch, BATCH};
use switchboard_turn::{PEER_HEADROOM, PEER_TAILROOM};

/// Receive batches per readiness before serving other sockets (as the server does).
const ROUNDS: usize = 8;
/// Channel number written on datagrams going back to clients.
const CHANNEL: u16 = 0x4000;
/// The same socket buffers as the server: 4 MiB on listeners, 256 KiB on relays.
const LISTEN_BUF: usize = 4 << 20;
const RELAY_RCVBUF: usize = 256 << 10;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM set STOP; threads notice within one epoll timeout.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); the
        // sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    stun_echoed: u64,
    to_peer: u64,
    to_client: u64,
    clients: u64,
    malformed: u64,
    not_from_peer: u64,
    relay_open_errors: u64,
    send_errors: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.stun_echoed += o.stun_echoed;
        self.to_peer += o.to_peer;
        self.to_client += o.to_client;
        self.clients += o.clients;
        self.malformed += o.malformed;
        self.not_from_peer += o.not_from_peer;
        self.relay_open_errors += o.relay_open_errors;
        self.send_errors += o.send_errors;
    }
}

fn udp_socket(addr: SocketAddr, reuse_port: bool, rcvbuf: usize) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(reuse_port)?;
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(rcvbuf);
    if reuse_port {
        let _ = s.set_send_buffer_size(LISTEN_BUF);
    }
    s.bind(&addr.into())?;
    Ok(s)
}

/// One worker: its listen socket, its clients' relay sockets, its batches.
struct Worker {
    ep: Epoll,
    listen: UdpSocket,
    /// (relay socket, the client it belongs to); epoll token = index + 1.
    relays: Vec<(UdpSocket, SocketAddr)>,
    by_client: HashMap<SocketAddr, usize>,
    batch: Batch,
    peer: SocketAddr,
    relay_ip: IpAddr,
    c: Counters,
}

impl Worker {
    fn new(listen: UdpSocket, peer: SocketAddr, relay_ip: IpAddr) -> Result<Self> {
        let mut ep = Epoll::new(256)?;
        ep.add(&listen, 0)?;
        Ok(Worker {
            ep,
            listen,
            relays: Vec::new(),
            by_client: HashMap::new(),
            batch: Batch::new(PEER_HEADROOM, PEER_TAILROOM),
            peer,
            relay_ip,
            c: Counters::default(),
        })
    }

    fn run(mut self, end_ns: u64) -> Counters {
        let mut ready: Vec<u64> = Vec::with_capacity(256);
        while !STOP.load(Ordering::Relaxed) && now_ns() < end_ns {
            ready.clear();
            ready.extend(self.ep.wait(100));
            for &tok in &ready {
                if tok == 0 {
                    self.client_readable();
                } else {
                    self.relay_readable(tok as usize - 1);
                }
            }
            self.batch.flush();
        }
        self.c.send_errors = self.batch.send_errors;
        self.c
    }

    /// The relay socket fd of `client`, opened on first use.
    fn relay_fd(
        ep: &mut Epoll,
        relays: &mut Vec<(UdpSocket, SocketAddr)>,
        by_client: &mut HashMap<SocketAddr, usize>,
        relay_ip: IpAddr,
        client: SocketAddr,
    ) -> io::Result<i32> {
        if let Some(&i) = by_client.get(&client) {
            return Ok(relays[i].0.as_raw_fd());
        }
        let s: UdpSocket = udp_socket(SocketAddr::new(relay_ip, 0), false, RELAY_RCVBUF)?.into();
        ep.add(&s, relays.len() as u64 + 1)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let fd = s.as_raw_fd();
        by_client.insert(client, relays.len());
        relays.push((s, client));
        Ok(fd)
    }

    fn client_readable(&mut self) {
        let lfd = self.listen.as_raw_fd();
        for _ in 0..ROUNDS {
            let Worker {
                ep,
                relays,
                by_client,
                batch,
                peer,
                relay_ip,
                c,
                ..
            } = &mut *self;
            let slots = match batch.recv(lfd) {
                Ok(slots) => slots,
                Err(_) => return, // WouldBlock, or an error to retry on the next wakeup
            };
            let n = slots.len();
            for i in slots {
                let (d, mut tx) = batch.slot(i);
                let Some(from) = d.from else { continue };
                let len = d.len;
                if len == 0 {
                    c.malformed += 1;
                    continue;
                }
                let d = d.payload();
                if !(0x40..=0x7F).contains(&d[0]) {
                    c.stun_echoed += 1;
                    tx.send(lfd, from, d);
                    continue;
                }
                let plen = match d.get(2..4) {
                    Some(l) => u16::from_be_bytes([l[0], l[1]]) as usize,
                    None => usize::MAX,
                };
                if plen > len.saturating_sub(4) {
                    c.malformed += 1;
                    continue;
                }
                let known = by_client.len();
                match Self::relay_fd(ep, relays, by_client, *relay_ip, from) {
                    Ok(fd) => {
                        c.clients += (by_client.len() - known) as u64;
                        c.to_peer += 1;
                        tx.send(fd, *peer, &d[4..4 + plen]);
                    }
                    Err(_) => c.relay_open_errors += 1,
                }
            }
            if n < BATCH {
                return;
            }
        }
    }

    fn relay_readable(&mut self, idx: usize) {
        let lfd = self.listen.as_raw_fd();
        let Some((sock, client)) = self.relays.get(idx) else {
            return;
        };
        let (fd, client) = (sock.as_raw_fd(), *client);
        for _ in 0..ROUNDS {
            let slots = match self.batch.recv(fd) {
                Ok(slots) => slots,
                Err(_) => return, // WouldBlock, or ICMP errors (ECONNREFUSED): never fatal
            };
            let n = slots.len();
            for i in slots {
                let (d, mut tx) = self.batch.slot(i);
                if d.from != Some(self.peer) {
                    self.c.not_from_peer += 1;
                    continue;
                }
                let len = d.len;
                if len == 0 || len > u16::MAX as usize {
                    self.c.malformed += 1;
                    continue;
                }
                let start = PEER_HEADROOM - 4;
                let slot = d.buf;
                slot[start..start + 2].copy_from_slice(&CHANNEL.to_be_bytes());
                slot[start + 2..PEER_HEADROOM].copy_from_slice(&(len as u16).to_be_bytes());
                self.c.to_client += 1;
                tx.send(lfd, client, &slot[start..PEER_HEADROOM + len]);
            }
            if n < BATCH {
                return;
            }
        }
    }
}

pub fn run(a: ForwardArgs) -> Result<Value> {
    let allow = a.allow_any_target;
    let listen: SocketAddr = a
        .listen
        .parse()
        .with_context(|| format!("--listen: expected IP:PORT, got {:?}", a.listen))?;
    let peer = resolve_target("peer", &a.peer, allow)?;
    for (opt, ip) in [("listen", listen.ip()), ("relay-ip", a.relay_ip)] {
        if !allow && !is_lab_address(ip) {
            bail!("--{opt}: {ip} is not a lab address (see --allow-any-target)");
        }
    }
    if a.relay_ip.is_ipv4() != peer.is_ipv4() {
        bail!(
            "--relay-ip {} and --peer {peer} differ in family",
            a.relay_ip
        );
    }
    let threads = check_range("threads", a.threads, 1, 256)?;
    let end = match a.duration {
        Some(d) => now_ns() + (check_duration("duration", d)? * 1e9) as u64,
        None => u64::MAX,
    };
    install_signal_handlers();
    // Exclusive probe first, so we never join another process's SO_REUSEPORT group.
    let probe = udp_socket(listen, false, 0).with_context(|| format!("--listen: {listen}"))?;
    let bound = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow!("--listen: not an IP socket"))?;
    drop(probe);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let s =
            udp_socket(bound, true, LISTEN_BUF).with_context(|| format!("--listen: {bound}"))?;
        let w = Worker::new(s.into(), peer, a.relay_ip)?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("forward-{i}"))
                .spawn(move || w.run(end))
                .context("spawning forwarder thread")?,
        );
    }
    println!(
        "forward: listening on {bound}, {threads} threads, ChannelData -> peer {peer} via relay sockets on {}",
        a.relay_ip
    );
    let t0 = now_ns();
    let mut total = Counters::default();
    for h in handles {
        let c = h.join().map_err(|_| anyhow!("forwarder thread panicked"))?;
        total.add(&c);
    }
    let secs = (now_ns() - t0) as f64 / 1e9;
    println!(
        "forwarded {} to peer, {} to clients, echoed {} STUN; {} clients; malformed {}, not from peer {}, relay open errors {}, send errors {}",
        total.to_peer,
        total.to_client,
        total.stun_echoed,
        total.clients,
        total.malformed,
        total.not_from_peer,
        total.relay_open_errors,
        total.send_errors
    );
    Ok(json!({
        "mode": "forward",
        "listen": bound.to_string(),
        "threads": threads,
        "peer": peer.to_string(),
        "relay_ip": a.relay_ip.to_string(),
        "duration_s": round3(secs),
        "clients": total.clients,
        "to_peer": total.to_peer,
        "to_client": total.to_client,
        "relayed": total.to_peer + total.to_client,
        "stun_echoed": total.stun_echoed,
        "malformed": total.malformed,
        "not_from_peer": total.not_from_peer,
        "relay_open_errors": total.relay_open_errors,
        "send_errors": total.send_errors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn forwards_channel_data_and_echoes_stun() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap();
        drop(probe);
        let args = ForwardArgs {
            listen: listen.to_string(),
            threads: 1,
            peer: peer.local_addr().unwrap().to_string(),
            relay_ip: "127.0.0.1".parse().unwrap(),
            duration: Some(1.5),
            allow_any_target: false,
        };
        let h = std::thread::spawn(move || run(args).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.connect(listen).unwrap();
        let mut buf = [0u8; 256];
        // STUN (first byte 0x00): echoed unchanged.
        c.send(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]);
        // ChannelData with 3 bytes of padding: only the 5 payload bytes reach the peer.
        c.send(&[0x40, 0x01, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]).unwrap();
        let (n, relay) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[1, 2, 3, 4, 5]);
        // Bad length: dropped.
        c.send(&[0x40, 0x01, 0, 9, 1]).unwrap();
        // The peer's answer comes back framed as channel 0x4000.
        peer.send_to(&[9, 8, 7], relay).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x40, 0x00, 0, 3, 9, 8, 7]);
        let r = h.join().unwrap();
        assert_eq!(r["clients"], 1);
        assert_eq!(r["to_peer"], 1);
        assert_eq!(r["to_client"], 1);
        assert_eq!(r["stun_echoed"], 1);
        assert_eq!(r["malformed"], 1);
    }
}
