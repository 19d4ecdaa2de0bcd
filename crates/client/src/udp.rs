//! A blocking TURN client on one UDP socket: transactions with RFC 8489 §6.2.1
//! retransmission (doubling RTO), ChannelData out, relayed datagrams in.

use crate::auth::ClientAuth;
use crate::error::ClientError;
use crate::request::random_tid;
use crate::transact::{channel_data, Body, Response, Stats, Transact};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_stun::{Class, Message, Method, TransactionId};

/// First retransmission timeout; doubled on every retry.
pub const INITIAL_RTO: Duration = Duration::from_millis(250);
/// Transmissions per transaction before giving up (250+500+1000+2000+4000 ms).
pub const MAX_TRIES: u32 = 5;

pub struct UdpClient {
    sock: UdpSocket,
    /// Where requests go; None when the socket is connected.
    server: Option<SocketAddr>,
    pub auth: ClientAuth,
    pub stats: Stats,
    /// First retransmission timeout and the number of transmissions per request.
    pub rto: Duration,
    pub max_tries: u32,
    out: Vec<u8>,
    inb: Vec<u8>,
}

impl UdpClient {
    /// A client on a fresh socket (the unspecified address of `server`'s family).
    pub fn connect(server: SocketAddr, auth: ClientAuth) -> Result<Self, ClientError> {
        let any: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        Ok(Self::with_socket(UdpSocket::bind(any)?, Some(server), auth))
    }

    /// A client on `sock`, sending to `server`, or to the socket's peer when None (a
    /// connected socket, as the load generator uses to pick source addresses).
    pub fn with_socket(sock: UdpSocket, server: Option<SocketAddr>, auth: ClientAuth) -> Self {
        UdpClient {
            sock,
            server,
            auth,
            stats: Stats::default(),
            rto: INITIAL_RTO,
            max_tries: MAX_TRIES,
            out: vec![0; 1500],
            inb: vec![0; 65536],
        }
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self.server {
            Some(to) => self.sock.send_to(data, to),
            None => self.sock.send(data),
        }
    }

    /// Send ChannelData on `channel`.
    pub fn send_channel(&self, channel: u16, payload: &[u8]) -> Result<(), ClientError> {
        self.send(&channel_data(channel, payload, false))?;
        Ok(())
    }

    /// The next datagram from anyone (ChannelData, a Data indication, a late response)
    /// within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_micros(1))))?;
        match self.sock.recv_from(&mut self.inb) {
            Ok((n, _)) => Ok(self.inb[..n].to_vec()),
            Err(e) if is_timeout(&e) => Err(ClientError::Timeout(1)),
            Err(e) => Err(e.into()),
        }
    }

    /// Send `out[..len]` and wait for the response with its transaction id,
    /// retransmitting; other datagrams (relayed data, stale responses) are skipped.
    /// Returns the response's length in `inb`.
    fn exchange(&mut self, tid: TransactionId, len: usize) -> Result<usize, ClientError> {
        let mut rto = self.rto;
        for attempt in 0..self.max_tries {
            if attempt > 0 {
                self.stats.retransmits += 1;
            }
            self.send(&self.out[..len])?;
            let deadline = Instant::now() + rto;
            while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                self.sock
                    .set_read_timeout(Some(wait.max(Duration::from_micros(1))))?;
                match self.sock.recv_from(&mut self.inb) {
                    Ok((n, _)) => {
                        let answered = Message::parse(&self.inb[..n]).is_ok_and(|m| {
                            m.tid == tid && matches!(m.class, Class::Success | Class::Error)
                        });
                        if answered {
                            return Ok(n);
                        }
                    }
                    Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            rto *= 2;
        }
        Err(ClientError::Timeout(self.max_tries))
    }
}

impl Transact for UdpClient {
    fn request_once(&mut self, method: Method, body: &Body) -> Result<Response, ClientError> {
        let tid = random_tid();
        let len = self.auth.request(&mut self.out, method, tid, body)?;
        let n = self.exchange(tid, len)?;
        let msg = Message::parse(&self.inb[..n])?;
        Ok(Response::new(&msg, self.inb[..n].to_vec()))
    }

    fn auth_mut(&mut self) -> &mut ClientAuth {
        &mut self.auth
    }

    fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
