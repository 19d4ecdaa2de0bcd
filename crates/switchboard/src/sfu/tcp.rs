//! ICE-TCP for the SFU (`--sfu-tcp`): a TCP listener on the SFU's port number, for
//! browsers whose UDP is blocked but that reach the server by TCP. The cores announce a
//! passive TCP candidate (RFC 6544) at every SFU candidate; a browser connects to it and
//! sends STUN, DTLS and SRTP as RFC 4571 frames (2-byte length, then the packet).
//!
//! Why this shape: the cores stay the only owners of the participants; this thread (one
//! tokio runtime) only moves frames. One connection is one participant: its first frame
//! must be a STUN Binding request whose USERNAME names an SFU worker (the ufrag prefix,
//! as for UDP), and every frame of the connection goes to that worker's inbox (bounded:
//! full drops, counted). The worker's output for the connection (by its remote address)
//! goes through [`TcpConns::send`] into the connection's bounded write queue: a reader
//! that cannot keep up loses packets, never server memory. A closed connection is
//! forgotten here and by the core (`Sfu::tcp_closed`).

use super::demux::worker_of_ufrag;
use super::shared::{Command, Shared};
use crate::metrics::family;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_sfu::framing::{next_frame, push_frame, MAX_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Frames queued for one connection's writer; more are dropped (counted). About a
/// second of a 1.5 Mbit/s layer plus audio.
pub const WRITE_QUEUE_FRAMES: usize = 256;
/// Open connections at once; more are closed at accept (counted).
pub const MAX_CONNECTIONS: usize = 10_000;
/// Bytes read at a time.
const READ_CHUNK: usize = 4096;
/// A connection must send its first (routable) frame within this.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent for this long is closed (ICE consent checks come every few
/// seconds, and the core drops a silent participant after at most 30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Counters of the TCP side (for `/metrics`).
#[derive(Default)]
pub struct TcpCounters {
    pub accepted: AtomicU64,
    /// Closed at accept: too many connections.
    pub refused: AtomicU64,
    /// Closed because the first frame named no worker (not STUN, unknown ufrag).
    pub unroutable: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Frames to a connection whose write queue was full (a slow reader).
    pub write_full: AtomicU64,
    /// Frames to a connection that is gone.
    pub no_connection: AtomicU64,
}

/// The open connections' write queues, by remote address (what the cores name).
#[derive(Default)]
pub struct TcpConns {
    writers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>, ahash::RandomState>>,
    pub counters: TcpCounters,
}

impl TcpConns {
    fn writers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>, ahash::RandomState>>
    {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `packet` as one frame on the connection from `to` (called by the workers
    /// for `SfuOutput::Transmit` with `Transport::Tcp`). Never blocks.
    pub fn send(&self, to: SocketAddr, packet: &[u8]) {
        let c = &self.counters;
        let Some(tx) = self.writers().get(&to).cloned() else {
            c.no_connection.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut frame = Vec::with_capacity(2 + packet.len());
        if !push_frame(&mut frame, packet) {
            return;
        }
        match tx.try_send(frame) {
            Ok(()) => c.frames_out.fetch_add(1, Ordering::Relaxed),
            Err(mpsc::error::TrySendError::Full(_)) => c.write_full.fetch_add(1, Ordering::Relaxed),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                c.no_connection.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub fn open(&self) -> usize {
        self.writers().len()
    }
}

/// Accept connections on `listener` until the process ends. `candidates` are the
/// addresses the cores announce (the local address a frame "arrived on").
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, candidates: Vec<SocketAddr>) {
    let candidates: Arc<[SocketAddr]> = candidates.into();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::debug!("SFU TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let c = &shared.tcp.counters;
        if shared.tcp.open() >= MAX_CONNECTIONS {
            c.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let local = stream.local_addr().unwrap_or(peer);
        let destination = candidates
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == peer.is_ipv4())
            .unwrap_or(local);
        tokio::spawn(connection(stream, peer, destination, shared.clone()));
    }
}

/// One connection: frames in to the owning worker, the write queue out.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    destination: SocketAddr,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
    shared.tcp.writers().insert(peer, tx);
    let writer = tokio::spawn(write_loop(wr, rx));
    let worker = read_loop(&mut rd, peer, destination, &shared).await;
    shared.tcp.writers().remove(&peer);
    writer.abort();
    if let Some(w) = worker {
        shared.send(w, Command::TcpClosed { source: peer });
    }
}

/// Read frames until the connection ends; returns the worker it was routed to.
async fn read_loop(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    destination: SocketAddr,
    shared: &Shared,
) -> Option<usize> {
    let c = &shared.tcp.counters;
    // Grows only as far as one frame in progress needs (a waiting connection holds
    // little: there may be thousands).
    let mut buf: Vec<u8> = Vec::new();
    let mut worker: Option<usize> = None;
    loop {
        let wait = if worker.is_some() {
            IDLE_TIMEOUT
        } else {
            FIRST_FRAME_TIMEOUT
        };
        buf.reserve(READ_CHUNK);
        match tokio::time::timeout(wait, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return worker,
            Ok(Ok(_)) => {}
        }
        let mut used = 0;
        while let Some((frame, len)) = next_frame(&buf[used..]) {
            used += len;
            let w = match worker {
                Some(w) => w,
                None => {
                    let named = switchboard_net::demux::binding_ufrag(frame)
                        .and_then(worker_of_ufrag)
                        .filter(|w| *w < shared.workers());
                    let Some(w) = named else {
                        c.unroutable.fetch_add(1, Ordering::Relaxed);
                        return None;
                    };
                    worker = Some(w);
                    w
                }
            };
            c.frames_in.fetch_add(1, Ordering::Relaxed);
            // A full inbox drops the frame (counted by `send`), as for UDP.
            shared.send(
                w,
                Command::TcpFrame {
                    source: peer,
                    destination,
                    bytes: frame.to_vec(),
                },
            );
        }
        buf.drain(..used);
        // At most one frame in progress: 2 + MAX_FRAME bytes, whatever the peer sends.
        debug_assert!(buf.len() < 2 + MAX_FRAME);
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            buf = Vec::new();
        }
    }
}

/// Write queued frames, as many per write as are waiting.
async fn write_loop(mut wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(frame) = rx.recv().await {
        out.clear();
        out.extend_from_slice(&frame);
        while out.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(f) => out.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The TCP side's part of `/metrics`.
pub fn render(s: &mut String, conns: &TcpConns) {
    let c = &conns.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    family(
        s,
        "switchboard_sfu_tcp_connections",
        "gauge",
        "Open ICE-TCP connections to the SFU.",
        &[("", conns.open() as u64)],
    );
    family(
        s,
        "switchboard_sfu_tcp_connections_total",
        "counter",
        "ICE-TCP connections: `accepted`, `refused` (too many open), `unroutable` (closed: the first frame named no SFU participant).",
        &[
            ("{result=\"accepted\"}", get(&c.accepted)),
            ("{result=\"refused\"}", get(&c.refused)),
            ("{result=\"unroutable\"}", get(&c.unroutable)),
        ],
    );
    family(
        s,
        "switchboard_sfu_tcp_frames_total",
        "counter",
        "RFC 4571 frames read from (`in`) and queued to (`out`) ICE-TCP connections.",
        &[
            ("{direction=\"in\"}", get(&c.frames_in)),
            ("{direction=\"out\"}", get(&c.frames_out)),
        ],
    );
    family(
        s,
        "switchboard_sfu_tcp_dropped_total",
        "counter",
        "Frames to ICE-TCP connections dropped: `write_full` (the reader is too slow: its write queue was full), `no_connection` (the connection is gone).",
        &[
            ("{reason=\"write_full\"}", get(&c.write_full)),
            ("{reason=\"no_connection\"}", get(&c.no_connection)),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose writer does not keep up holds at most WRITE_QUEUE_FRAMES
    /// frames; the rest are dropped and counted, as are frames to a closed connection.
    #[test]
    fn a_slow_reader_loses_frames_not_memory() {
        let conns = TcpConns::default();
        let peer: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let (tx, mut rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
        conns.writers().insert(peer, tx);
        for _ in 0..WRITE_QUEUE_FRAMES + 10 {
            conns.send(peer, &[1, 2, 3]);
        }
        let c = &conns.counters;
        assert_eq!(
            c.frames_out.load(Ordering::Relaxed),
            WRITE_QUEUE_FRAMES as u64
        );
        assert_eq!(c.write_full.load(Ordering::Relaxed), 10);
        assert_eq!(rx.try_recv().unwrap(), [0, 3, 1, 2, 3], "RFC 4571 framed");
        conns.send("192.0.2.2:1".parse().unwrap(), &[1]);
        drop(rx);
        conns.send(peer, &[1]);
        assert_eq!(c.no_connection.load(Ordering::Relaxed), 2);
    }
}
