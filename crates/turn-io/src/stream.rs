//! TCP and TLS client connections: STUN/ChannelData framing over a byte stream
//! (RFC 8656 §12.5) and bounded output buffering.

use std::io::{self, Read, Write};
use switchboard_turn::FiveTuple;

/// Largest frame: a STUN message or ChannelData with a 16-bit length, plus header.
const MAX_FRAME: usize = 4 + 65536;
/// Output bytes buffered per connection before relayed media is dropped.
pub const MAX_PENDING_OUT: usize = 1 << 20;

/// What a read left behind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadState {
    /// Socket drained; wait for the next readiness event.
    Open,
    /// Frame buffer full: consume frames, then read again.
    Full,
    /// The client closed the connection.
    Closed,
}

pub struct Conn {
    pub tcp: mio::net::TcpStream,
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub tuple: FiveTuple,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    pub dropped_out: u64,
    /// RFC 6062 data connection: the peer connection id it is piped to (after
    /// ConnectionBind the bytes are no longer STUN framed).
    pub pipe: Option<u32>,
    /// The peer side of the pipe is gone; only buffered output is still flushed.
    pub pipe_closed: bool,
    /// Hand this connection to that worker instead of closing it (a ConnectionBind
    /// for a connection another worker owns).
    pub handoff: Option<usize>,
}

impl Conn {
    pub fn new(
        tcp: mio::net::TcpStream,
        tls: Option<Box<rustls::ServerConnection>>,
        tuple: FiveTuple,
    ) -> Self {
        Conn {
            tcp,
            tls,
            tuple,
            rbuf: vec![0u8; MAX_FRAME * 2].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            dropped_out: 0,
            pipe: None,
            pipe_closed: false,
            handoff: None,
        }
    }

    /// Put bytes already taken from the connection (plaintext, in the order received)
    /// in front of what the socket will give; false when they do not fit.
    pub fn preload(&mut self, data: &[u8]) -> bool {
        let end = self.rend + data.len();
        if end > self.rbuf.len() {
            return false;
        }
        self.rbuf[self.rend..end].copy_from_slice(data);
        self.rend = end;
        true
    }

    /// Read what the socket has into the frame buffer.
    pub fn read(&mut self) -> io::Result<ReadState> {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        match self.tls.as_deref_mut() {
            None => loop {
                if self.rend == self.rbuf.len() {
                    return Ok(ReadState::Full);
                }
                match self.tcp.read(&mut self.rbuf[self.rend..]) {
                    Ok(0) => return Ok(ReadState::Closed),
                    Ok(n) => self.rend += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Open),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Some(tls) => {
                let mut state = ReadState::Open;
                loop {
                    // Drain plaintext rustls already holds before reading more.
                    while self.rend < self.rbuf.len() {
                        match tls.reader().read(&mut self.rbuf[self.rend..]) {
                            Ok(0) => break,
                            Ok(n) => self.rend += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                    if self.rend == self.rbuf.len() {
                        state = ReadState::Full;
                        break;
                    }
                    match tls.read_tls(&mut self.tcp) {
                        Ok(0) => {
                            state = ReadState::Closed;
                            break;
                        }
                        Ok(_) => {
                            tls.process_new_packets()
                                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                // Handshake records must go out even when no application data came.
                self.flush()?;
                Ok(state)
            }
        }
    }

    /// The next complete frame in the read buffer, consumed. Err on a byte stream that
    /// is neither STUN nor ChannelData (the connection should be closed).
    pub fn next_frame(&mut self) -> Result<Option<(usize, usize)>, ()> {
        let avail = &self.rbuf[self.rstart..self.rend];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([avail[2], avail[3]]) as usize;
        let total = match avail[0] >> 6 {
            0 => 20 + len,
            1 => 4 + ((len + 3) & !3),
            _ => return Err(()),
        };
        if avail.len() < total {
            return Ok(None);
        }
        let start = self.rstart;
        self.rstart += total;
        Ok(Some((start, total)))
    }

    pub fn frame(&self, start: usize, len: usize) -> &[u8] {
        &self.rbuf[start..start + len]
    }

    /// Put back the frame at `start` (and everything after it) as unconsumed.
    pub fn unread(&mut self, start: usize) {
        self.rstart = start.min(self.rend);
    }

    /// Everything read and not consumed, consumed (raw byte pipe mode).
    pub fn take_raw(&mut self) -> &[u8] {
        let (start, end) = (self.rstart, self.rend);
        self.rstart = 0;
        self.rend = 0;
        &self.rbuf[start..end]
    }

    /// Queue bytes for the client. Relayed media over the limit is dropped (`media`),
    /// control responses are always queued.
    pub fn queue(&mut self, data: &[u8], media: bool) {
        if media && self.pending_out() > MAX_PENDING_OUT {
            self.dropped_out += 1;
            return;
        }
        match &mut self.tls {
            None => self.wbuf.extend_from_slice(data),
            Some(tls) => {
                let _ = tls.writer().write_all(data);
            }
        }
    }

    /// Bytes waiting to be written (TLS: a fixed estimate while records are pending).
    pub fn pending_out(&self) -> usize {
        self.wbuf.len()
            + self
                .tls
                .as_ref()
                .map(|t| {
                    if t.wants_write() {
                        MAX_PENDING_OUT / 2
                    } else {
                        0
                    }
                })
                .unwrap_or(0)
    }

    /// Say goodbye properly on TLS (close_notify), best effort.
    pub fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = self.flush();
        }
    }

    /// Write what is buffered; Ok even when the socket is full (the rest waits for WRITABLE).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => {
                while !self.wbuf.is_empty() {
                    match self.tcp.write(&self.wbuf) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            self.wbuf.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.tcp) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }
}
