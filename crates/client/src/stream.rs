//! A blocking TURN client over TCP or TLS (RFC 8656 §3.1, RFC 6062): STUN and
//! ChannelData framing on a byte stream, indications kept aside while a response is
//! awaited, and the hand-over of a ConnectionBind-ed connection as a raw pipe.

use crate::auth::ClientAuth;
use crate::error::ClientError;
use crate::request::random_tid;
use crate::transact::{channel_data, Body, Response, Stats, Transact};
use crate::udp::is_timeout;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use switchboard_stun::{Class, Message, Method, HEADER_LEN};

/// How long a read waits by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP stream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub struct StreamClient {
    pub stream: Stream,
    pub auth: ClientAuth,
    pub stats: Stats,
    /// Bytes read and not yet framed.
    buf: Vec<u8>,
    /// Indications received while waiting for responses.
    pub indications: Vec<Vec<u8>>,
}

impl StreamClient {
    /// A client on a new plain TCP connection to `server`.
    pub fn connect(server: SocketAddr, auth: ClientAuth) -> Result<Self, ClientError> {
        Self::over(Stream::Plain(TcpStream::connect(server)?), auth)
    }

    /// A client on an established stream (say, TLS), reading with [`READ_TIMEOUT`].
    pub fn over(stream: Stream, auth: ClientAuth) -> Result<Self, ClientError> {
        stream.tcp().set_read_timeout(Some(READ_TIMEOUT))?;
        stream.tcp().set_nodelay(true)?;
        Ok(StreamClient {
            stream,
            auth,
            stats: Stats::default(),
            buf: Vec::new(),
            indications: Vec::new(),
        })
    }

    /// Read more bytes into the framing buffer.
    fn fill(&mut self) -> Result<(), ClientError> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ClientError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if is_timeout(&e) => Err(ClientError::Timeout(1)),
            Err(e) => Err(e.into()),
        }
    }

    /// The next STUN message or ChannelData frame (padding included) on the stream.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if self.buf.len() >= 4 {
                let n = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                let len = match self.buf[0] >> 6 {
                    0 => HEADER_LEN + n,
                    _ => 4 + ((n + 3) & !3),
                };
                if self.buf.len() >= len {
                    return Ok(self.buf.drain(..len).collect());
                }
            }
            self.fill()?;
        }
    }

    /// The next STUN message on the stream; anything else is an error.
    pub fn read_msg(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(&first) = self.buf.first() {
                if first & 0xC0 != 0 {
                    return Err(ClientError::Protocol(
                        "expected STUN on the control stream".into(),
                    ));
                }
            }
            if self.buf.len() >= HEADER_LEN {
                let len = HEADER_LEN + u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
                if self.buf.len() >= len {
                    return Ok(self.buf.drain(..len).collect());
                }
            }
            self.fill()?;
        }
    }

    /// Send ChannelData, padded to 4 bytes as streams need (RFC 8656 §12.5).
    pub fn send_channel(&mut self, channel: u16, payload: &[u8]) -> Result<(), ClientError> {
        self.stream
            .write_all(&channel_data(channel, payload, true))?;
        Ok(())
    }

    /// Wait up to `timeout` for an indication of `method` (ones kept aside first).
    pub fn indication(
        &mut self,
        method: Method,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let is = |b: &Vec<u8>| Message::parse(b).is_ok_and(|m| m.method == method);
        if let Some(i) = self.indications.iter().position(is) {
            return Ok(self.indications.remove(i));
        }
        let deadline = Instant::now() + timeout;
        let old = self.stream.tcp().read_timeout().ok().flatten();
        let found = loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break Err(ClientError::Timeout(1));
            };
            if let Err(e) = self
                .stream
                .tcp()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            {
                break Err(e.into());
            }
            match self.read_msg() {
                Ok(b) if is(&b) => break Ok(b),
                Ok(b) => self.indications.push(b),
                Err(e) => break Err(e),
            }
        };
        self.stream.tcp().set_read_timeout(old)?;
        found
    }

    /// After a successful ConnectionBind: the raw TCP stream to the peer, and the
    /// peer's bytes already read behind the response.
    pub fn into_pipe(self) -> Result<(TcpStream, Vec<u8>), ClientError> {
        match self.stream {
            Stream::Plain(s) => Ok((s, self.buf)),
            Stream::Tls(_) => Err(ClientError::Protocol(
                "a TLS connection cannot be handed over as a plain pipe".into(),
            )),
        }
    }
}

impl Transact for StreamClient {
    fn request_once(&mut self, method: Method, body: &Body) -> Result<Response, ClientError> {
        let tid = random_tid();
        let mut out = [0u8; 1500];
        let n = self.auth.request(&mut out, method, tid, body)?;
        self.stream.write_all(&out[..n])?;
        loop {
            let bytes = self.read_msg()?;
            let m = Message::parse(&bytes)?;
            if m.class == Class::Indication {
                self.indications.push(bytes);
                continue;
            }
            if m.tid != tid {
                continue;
            }
            return Ok(Response::new(&m, bytes.clone()));
        }
    }

    fn auth_mut(&mut self) -> &mut ClientAuth {
        &mut self.auth
    }

    fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }
}
