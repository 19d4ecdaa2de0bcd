//! Batched UDP I/O: one recvmmsg fills up to [`BATCH`] receive slots, one sendmmsg per
//! run of equal sockets sends what the services queued, and consecutive equal-size
//! datagrams from one socket to one destination (a burst of video packets relayed to
//! a client) leave as one UDP GSO send (UDP_SEGMENT, up to 64 segments).
//!
//! Everything is safe code on top of `sys`. [`Batch`] owns the receive arena, and
//! queued datagrams are *spans* (offset, length) into it, or into the batch's own
//! spill buffer for data that lives elsewhere (a TCP connection's read buffer): the
//! borrow checker, not a comment, keeps the bytes alive until [`Batch::flush`]. The
//! data path stays zero-copy: a service rewrites the slot in place (the TURN core puts
//! the ChannelData header into the headroom) and queues a span of it.
//!
//! Why not quinn-udp (measured in docs/benchmarks.md, "quinn-udp against the
//! hand-written batching", `examples/udp_batch_bench.rs`): a quinn-udp `Transmit` has
//! one destination, so a relay batch to many peers costs one sendmsg per datagram
//! (10-20 % fewer datagrams per CPU second than one sendmmsg here); a GSO burst needs
//! the datagrams in one contiguous buffer, which relay slots are not; and its receive
//! path was about 25 % slower. Its IP_PKTINFO and GRO support are the parts worth
//! adding here later.

use crate::sys::{self, RecvMeta, SendMsg};
use socket2::SockAddr;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

/// Datagrams asked of one recvmmsg call.
pub const BATCH: usize = 32;
const _: () = assert!(BATCH <= sys::MAX_RECV, "one recvmmsg call must fit a batch");
/// Receive slots per batch: several recvmmsg calls (from different sockets) fill
/// consecutive slots, so their outputs leave in one sendmmsg.
pub const SLOTS: usize = 128;
/// Bytes per receive slot: headroom, the datagram, tailroom.
pub const SLOT: usize = 2048;
/// Bytes of response scratch per receive slot (answers are small).
pub const OUT_SLOT: usize = 1024;
const GSO_MAX_SEGMENTS: usize = 64;
const GSO_MAX_BYTES: usize = 65000;

/// Where a queued datagram's bytes are.
#[derive(Clone, Copy, Debug)]
enum Span {
    Arena { start: usize, len: usize },
    Spill { start: usize, len: usize },
}

impl Span {
    fn len(self) -> usize {
        match self {
            Span::Arena { len, .. } | Span::Spill { len, .. } => len,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Queued {
    fd: RawFd,
    to: SocketAddr,
    span: Span,
}

/// A receive slot handed to a service: the datagram and room around it.
pub struct Received<'a> {
    /// The source; None for an address family the driver does not know.
    pub from: Option<SocketAddr>,
    /// Payload length at `headroom` in `buf`; 0 when the datagram was truncated.
    pub len: usize,
    /// The whole slot: headroom, payload, tailroom. May be rewritten in place.
    pub buf: &'a mut [u8],
    /// Response scratch for this slot; a span of it may be queued too.
    pub out: &'a mut [u8],
    headroom: usize,
}

impl Received<'_> {
    /// Bytes before the payload in `buf`.
    pub fn headroom(&self) -> usize {
        self.headroom
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf[self.headroom..self.headroom + self.len]
    }
}

/// Where services queue datagrams. Bytes inside the batch's arena (a receive slot or
/// its response scratch) are queued by reference; anything else is copied.
pub struct Tx<'a> {
    queue: &'a mut Vec<Queued>,
    spill: &'a mut Vec<u8>,
    arena: Range<usize>,
}

impl Tx<'_> {
    /// Queue `data` for `to` on socket `fd`; it leaves at the next [`Batch::flush`].
    pub fn send(&mut self, fd: RawFd, to: SocketAddr, data: &[u8]) {
        let addr = data.as_ptr() as usize;
        let span = if self.arena.contains(&addr) && addr + data.len() <= self.arena.end {
            Span::Arena {
                start: addr - self.arena.start,
                len: data.len(),
            }
        } else {
            let start = self.spill.len();
            self.spill.extend_from_slice(data);
            Span::Spill {
                start,
                len: data.len(),
            }
        };
        self.queue.push(Queued { fd, to, span });
    }
}

/// Receive slots and the send queue of one worker.
pub struct Batch {
    /// SLOTS receive slots, then SLOTS response slots.
    arena: Box<[u8]>,
    meta: Box<[RecvMeta]>,
    headroom: usize,
    max_datagram: usize,
    /// Receive slots in use since the last flush (queued spans may point into them).
    used: usize,
    queue: Vec<Queued>,
    spill: Vec<u8>,
    /// Scratch of `flush`: messages as (first queued datagram, count), and their address.
    groups: Vec<(usize, usize)>,
    addrs: Vec<SockAddr>,
    gso: bool,
    gso_failures: u32,
    /// Datagrams the kernel refused (counted, never fatal).
    pub send_errors: u64,
    /// Datagrams that left inside GSO sends.
    pub gso_datagrams: u64,
}

impl Batch {
    /// Slots with `headroom` bytes before each datagram and `tailroom` after it.
    pub fn new(headroom: usize, tailroom: usize) -> Self {
        let headroom = headroom.min(SLOT / 2);
        Batch {
            arena: vec![0u8; SLOTS * (SLOT + OUT_SLOT)].into_boxed_slice(),
            meta: vec![RecvMeta::default(); SLOTS].into_boxed_slice(),
            headroom,
            max_datagram: SLOT - headroom - tailroom.min(SLOT / 2),
            used: 0,
            queue: Vec::with_capacity(SLOTS),
            spill: Vec::new(),
            groups: Vec::new(),
            addrs: Vec::new(),
            gso: true,
            gso_failures: 0,
            send_errors: 0,
            gso_datagrams: 0,
        }
    }

    /// Largest datagram a slot holds whole.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// Turn GSO off (comparison runs, or kernels without it).
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// Datagrams queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Receive up to [`BATCH`] datagrams from `fd` without blocking, into free slots
    /// (flushing first when fewer than BATCH are free). Returns the slots filled, for
    /// [`Batch::slot`]; Err(WouldBlock) when nothing was waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<Range<usize>> {
        if self.used + BATCH > SLOTS {
            self.flush();
        }
        let first = self.used;
        let (h, max) = (self.headroom, self.max_datagram);
        let rx = &mut self.arena[first * SLOT..(first + BATCH) * SLOT];
        let mut chunks = rx.chunks_exact_mut(SLOT);
        let mut bufs: [IoSliceMut<'_>; BATCH] = std::array::from_fn(|_| {
            IoSliceMut::new(match chunks.next() {
                Some(c) => &mut c[h..h + max],
                None => &mut [],
            })
        });
        let n = sys::recv_mmsg(fd, &mut bufs, &mut self.meta[first..first + BATCH])?;
        self.used += n;
        Ok(first..first + n)
    }

    /// Receive slot `i` (from a range [`Batch::recv`] returned) and the queue, apart,
    /// so that a service can answer from the slot into the queue without a copy.
    pub fn slot(&mut self, i: usize) -> (Received<'_>, Tx<'_>) {
        let i = i.min(SLOTS - 1);
        let arena = self.arena.as_ptr() as usize..self.arena.as_ptr() as usize + self.arena.len();
        let (rx, out) = self.arena.split_at_mut(SLOTS * SLOT);
        let meta = self.meta[i];
        (
            Received {
                from: meta.from,
                len: meta.len,
                buf: &mut rx[i * SLOT..(i + 1) * SLOT],
                out: &mut out[i * OUT_SLOT..(i + 1) * OUT_SLOT],
                headroom: self.headroom,
            },
            Tx {
                queue: &mut self.queue,
                spill: &mut self.spill,
                arena,
            },
        )
    }

    /// The queue alone, for datagrams that do not come from a receive slot (copied).
    pub fn tx(&mut self) -> Tx<'_> {
        let arena = self.arena.as_ptr() as usize..self.arena.as_ptr() as usize + self.arena.len();
        Tx {
            queue: &mut self.queue,
            spill: &mut self.spill,
            arena,
        }
    }

    fn bytes(&self, span: Span) -> &[u8] {
        let (buf, start, len) = match span {
            Span::Arena { start, len } => (&self.arena[..], start, len),
            Span::Spill { start, len } => (&self.spill[..], start, len),
        };
        buf.get(start..start + len).unwrap_or(&[])
    }

    /// How many datagrams from `i` on can go as one GSO send: same socket and
    /// destination, same size, except that the last may be shorter.
    fn gso_run(&self, i: usize) -> usize {
        let first = self.queue[i];
        let size = first.span.len();
        if !self.gso || size == 0 {
            return 1;
        }
        let (mut k, mut bytes) = (1, size);
        while let Some(q) = self.queue.get(i + k) {
            let len = q.span.len();
            if k == GSO_MAX_SEGMENTS
                || q.fd != first.fd
                || q.to != first.to
                || len > size
                || len == 0
                || bytes + len > GSO_MAX_BYTES
            {
                break;
            }
            k += 1;
            bytes += len;
            if len < size {
                break;
            }
        }
        k
    }

    /// Send everything queued; the receive slots are free again afterwards. A datagram
    /// the kernel refuses (unreachable peer, full buffer) is dropped and counted; the
    /// rest still go out.
    pub fn flush(&mut self) {
        if !self.queue.is_empty() {
            self.send_queued();
        }
        self.queue.clear();
        self.spill.clear();
        self.used = 0;
    }

    fn send_queued(&mut self) {
        // Group the queue: (first datagram, count) per message, and its address.
        // Both vectors are kept between flushes; the borrowing ones cannot be.
        let (mut groups, mut addrs) = (
            std::mem::take(&mut self.groups),
            std::mem::take(&mut self.addrs),
        );
        groups.clear();
        addrs.clear();
        let mut i = 0;
        while i < self.queue.len() {
            let k = self.gso_run(i);
            groups.push((i, k));
            addrs.push(SockAddr::from(self.queue[i].to));
            i += k;
        }
        let iovs: Vec<IoSlice<'_>> = self
            .queue
            .iter()
            .map(|q| IoSlice::new(self.bytes(q.span)))
            .collect();
        let msgs: Vec<SendMsg<'_>> = groups
            .iter()
            .zip(&addrs)
            .map(|(&(i, k), to)| SendMsg {
                to,
                iov: &iovs[i..i + k],
                segment: (k > 1).then(|| iovs[i].len() as u16),
            })
            .collect();
        let (mut sent_gso, mut errors, mut gso_failed) = (0u64, 0u64, 0u32);
        let mut start = 0;
        while start < msgs.len() {
            let fd = self.queue[groups[start].0].fd;
            let mut end = start + 1;
            while end < msgs.len() && self.queue[groups[end].0].fd == fd {
                end += 1;
            }
            let mut h = start;
            while h < end {
                match sys::send_mmsg(fd, &msgs[h..end]) {
                    Ok(sent) => {
                        for &(_, k) in &groups[h..h + sent] {
                            if k > 1 {
                                sent_gso += k as u64;
                            }
                        }
                        h += sent;
                    }
                    Err(_) => {
                        let (first, k) = groups[h];
                        if k == 1 {
                            errors += 1;
                        } else {
                            // A kernel without GSO, or a size over the path MTU: retry
                            // datagram by datagram.
                            gso_failed += 1;
                            for &iov in &iovs[first..first + k] {
                                if sys::send_msg(fd, &addrs[h], iov).is_err() {
                                    errors += 1;
                                }
                            }
                        }
                        h += 1;
                    }
                }
            }
            start = end;
        }
        drop(msgs);
        drop(iovs);
        self.groups = groups;
        self.addrs = addrs;
        self.send_errors += errors;
        self.gso_datagrams += sent_gso;
        if sent_gso > 0 {
            self.gso_failures = 0;
        }
        if gso_failed > 0 {
            self.gso_failures += gso_failed;
            if self.gso_failures >= 8 && self.gso {
                tracing::warn!("UDP GSO keeps failing; sending datagrams one by one");
                self.gso = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn receiver() -> (UdpSocket, SocketAddr) {
        let r = UdpSocket::bind("127.0.0.1:0").expect("bind");
        r.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let a = r.local_addr().expect("addr");
        (r, a)
    }

    #[test]
    fn equal_sized_burst_leaves_as_gso_and_arrives_as_separate_datagrams() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (r1, a1) = receiver();
        let (r2, a2) = receiver();
        let payloads: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![i; 100])
            .chain([vec![0xEE; 40]]) // shorter tail joins the group
            .chain([vec![0xAA; 100]]) // after a short one: new group
            .collect();
        let other = vec![0x77u8; 100];
        let mut b = Batch::new(48, 4);
        for p in &payloads {
            b.tx().send(tx.as_raw_fd(), a1, p);
        }
        b.tx().send(tx.as_raw_fd(), a2, &other);
        b.flush();
        assert_eq!(b.send_errors, 0);
        assert_eq!(
            b.gso_datagrams, 11,
            "ten equal datagrams and the short tail in one send"
        );
        let mut buf = [0u8; 2048];
        for p in &payloads {
            let n = r1.recv(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], &p[..]);
        }
        let n = r2.recv(&mut buf).expect("other destination");
        assert_eq!(&buf[..n], &other[..]);
    }

    #[test]
    fn without_gso_everything_still_arrives() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (r, a) = receiver();
        let data = [1u8; 64];
        let mut b = Batch::new(48, 4);
        b.set_gso(false);
        for _ in 0..5 {
            b.tx().send(tx.as_raw_fd(), a, &data);
        }
        b.flush();
        assert_eq!(b.gso_datagrams, 0);
        let mut buf = [0u8; 128];
        for _ in 0..5 {
            assert_eq!(r.recv(&mut buf).expect("datagram"), 64);
        }
    }

    /// Bytes from outside the batch are copied when queued: changing them before the
    /// flush does not change what is sent.
    #[test]
    fn outside_bytes_are_copied_at_queue_time() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (r, a) = receiver();
        let mut data = *b"before";
        let mut b = Batch::new(48, 4);
        b.tx().send(tx.as_raw_fd(), a, &data);
        data.copy_from_slice(b"after!");
        b.flush();
        let mut buf = [0u8; 64];
        let n = r.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], b"before");
        assert_eq!(&data, b"after!");
    }

    /// A slot rewritten in place (header into the headroom) is queued by reference and
    /// arrives as rewritten; the answer written to the slot's scratch arrives too.
    #[test]
    fn slot_data_is_sent_in_place_and_source_is_reported() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let (r, a) = receiver();
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sender
            .send_to(b"hello", rx.local_addr().expect("addr"))
            .expect("send");
        let mut b = Batch::new(48, 4);
        let mut got = 0..0;
        for _ in 0..100 {
            match b.recv(rx.as_raw_fd()) {
                Ok(r) if !r.is_empty() => {
                    got = r;
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(got.len(), 1);
        let (d, mut tx) = b.slot(got.start);
        assert_eq!(d.from, sender.local_addr().ok());
        assert_eq!(d.payload(), b"hello");
        let h = d.headroom();
        d.buf[h - 2..h].copy_from_slice(b">>");
        d.out[..3].copy_from_slice(b"ack");
        tx.send(rx.as_raw_fd(), a, &d.buf[h - 2..h + d.len]);
        tx.send(rx.as_raw_fd(), a, &d.out[..3]);
        assert!(matches!(tx.queue[0].span, Span::Arena { .. }));
        assert!(matches!(tx.queue[1].span, Span::Arena { .. }));
        b.flush();
        let mut buf = [0u8; 64];
        let n = r.recv(&mut buf).expect("first");
        assert_eq!(&buf[..n], b">>hello");
        let n = r.recv(&mut buf).expect("second");
        assert_eq!(&buf[..n], b"ack");
        assert_eq!(b.recv(rx.as_raw_fd()).map(|r| r.len()).unwrap_or(0), 0);
    }
}
