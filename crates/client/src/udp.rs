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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Transact};
    use switchboard_stun::{attr_type, MessageWriter};

    /// A server that drops the first transmission of every request and answers the
    /// second: 401 to an unsigned Allocate, success to a signed one.
    fn lossy_server() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let mut seen = Vec::new();
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let m = Message::parse(&buf[..n]).unwrap();
                if !seen.contains(&m.tid) {
                    seen.push(m.tid);
                    continue;
                }
                let mut out = [0u8; 512];
                let n = if m.has_message_integrity() {
                    let mut w =
                        MessageWriter::new(&mut out, m.method, Class::Success, m.tid).unwrap();
                    w.xor_address(attr_type::XOR_RELAYED_ADDRESS, &from)
                        .unwrap();
                    w.u32(attr_type::LIFETIME, 600).unwrap();
                    w.finish()
                } else {
                    let mut w =
                        MessageWriter::new(&mut out, m.method, Class::Error, m.tid).unwrap();
                    w.error_code(401, "").unwrap();
                    w.attr(attr_type::REALM, b"lab").unwrap();
                    w.attr(attr_type::NONCE, b"n1").unwrap();
                    w.finish()
                };
                sock.send_to(&out[..n], from).unwrap();
            }
        });
        addr
    }

    #[test]
    fn retransmits_and_authenticates() {
        let server = lossy_server();
        let mut c = UdpClient::connect(server, ClientAuth::user("u", "p")).unwrap();
        c.rto = Duration::from_millis(20);
        let info = c.transact(&Request::Allocate { lifetime: None }).unwrap();
        assert_eq!(info.lifetime, Some(600));
        // The fake server relays at the client's own address.
        let port = c.socket().local_addr().unwrap().port();
        assert_eq!(info.relayed.map(|a| a.port()), Some(port));
        assert_eq!(c.stats.auth_retries, 1);
        assert_eq!(c.stats.retransmits, 2, "each request sent twice");
    }

    #[test]
    fn silence_is_a_timeout() {
        let quiet = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c =
            UdpClient::connect(quiet.local_addr().unwrap(), ClientAuth::user("u", "p")).unwrap();
        c.rto = Duration::from_millis(5);
        c.max_tries = 3;
        let e = c.allocate_udp().unwrap_err();
        assert!(matches!(e, ClientError::Timeout(3)), "{e}");
        assert_eq!(e.label(), "timeout");
        assert_eq!(c.stats.retransmits, 2);
    }
}
