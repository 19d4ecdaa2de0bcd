//! TCP and TLS client connections: STUN/ChannelData framing over a byte stream
//! (RFC 8656 §12.5) and bounded output buffering.
//!
//! Output towards a client that reads slowly is bounded in two ways. Relayed media
//! over [`MAX_PENDING_OUT`] bytes owed is dropped and counted (`dropped_out`), as a
//! UDP path would lose it. Everything else (answers, RFC 6062 pipe bytes, which a
//! stream must not lose) is always kept, up to [`MAX_OWED`]; a client that owes more
//! does not read at all and its connection is closed (`overflowed`). On TLS, rustls
//! holds at most [`TLS_BUFFER_LIMIT`] bytes (its own limit, set explicitly); what it
//! refuses beyond that waits here as plaintext and is fed to it as it drains
//! (`tls_deferred` counts those writes), so no byte is dropped silently.

use std::io::{self, Read, Write};
use switchboard_stun::{next_stream_frame, NotTurnStream};
use switchboard_turn::FiveTuple;

/// Output bytes buffered per connection before relayed media is dropped.
pub const MAX_PENDING_OUT: usize = 1 << 20;
/// Bytes a connection may owe before it counts as not reading and is closed.
pub const MAX_OWED: usize = 4 * MAX_PENDING_OUT;
/// rustls's buffer (ciphertext waiting for the socket) per TLS connection.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// What [`Conn::queue`] did with the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Queued {
    /// Queued (in rustls or in the backlog behind it).
    Yes,
    /// Relayed media over [`MAX_PENDING_OUT`]: dropped and counted.
    Dropped,
    /// Over [`MAX_OWED`]: the connection is closed at its next flush.
    Overflow,
}

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
    /// Output not yet handed on: to the socket (TCP) or to rustls (TLS, when it is full).
    wbuf: Vec<u8>,
    /// Where the unsent part of `wbuf` starts.
    wstart: usize,
    /// Plaintext rustls took and has not yet written out (an estimate: records add a
    /// few bytes each; zero whenever rustls has nothing to write).
    tls_held: usize,
    /// Relayed media packets dropped over [`MAX_PENDING_OUT`].
    pub dropped_out: u64,
    /// TLS writes rustls could not take whole (the rest waited in the backlog).
    pub tls_deferred: u64,
    /// Set when the connection owes more than [`MAX_OWED`]: the next flush fails.
    pub overflowed: bool,
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
        mut tls: Option<Box<rustls::ServerConnection>>,
        tuple: FiveTuple,
    ) -> Self {
        if let Some(t) = tls.as_deref_mut() {
            t.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        }
        Conn {
            tcp,
            tls,
            tuple,
            rbuf: vec![0u8; switchboard_stun::MAX_STREAM_FRAME * 2].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            wbuf: Vec::new(),
            wstart: 0,
            tls_held: 0,
            dropped_out: 0,
            tls_deferred: 0,
            overflowed: false,
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
    pub fn next_frame(&mut self) -> Result<Option<(usize, usize)>, NotTurnStream> {
        let avail = &self.rbuf[self.rstart..self.rend];
        let Some(total) = next_stream_frame(avail)?.map(<[u8]>::len) else {
            return Ok(None);
        };
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

    /// Queue bytes for the client. Relayed media (`media`) over [`MAX_PENDING_OUT`] is
    /// dropped; anything else is kept, up to [`MAX_OWED`].
    pub fn queue(&mut self, data: &[u8], media: bool) -> Queued {
        let owed = self.pending_out();
        if media && owed > MAX_PENDING_OUT {
            self.dropped_out += 1;
            return Queued::Dropped;
        }
        if owed + data.len() > MAX_OWED {
            self.overflowed = true;
            return Queued::Overflow;
        }
        let taken = match self.tls.as_deref_mut() {
            // Behind a backlog, new bytes queue up behind it to keep their order.
            Some(tls) if self.wstart == self.wbuf.len() => {
                let n = tls.writer().write(data).unwrap_or(0);
                self.tls_held += n;
                if n < data.len() {
                    self.tls_deferred += 1;
                }
                n
            }
            _ => 0,
        };
        self.backlog_push(&data[taken..]);
        Queued::Yes
    }

    fn backlog_push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.wstart == self.wbuf.len() {
            self.wbuf.clear();
            self.wstart = 0;
        } else if self.wstart > self.wbuf.len() / 2 {
            // Reclaim what went out, at most once per doubling.
            self.wbuf.drain(..self.wstart);
            self.wstart = 0;
        }
        self.wbuf.extend_from_slice(data);
    }

    /// Bytes owed to the client: the backlog plus what rustls still holds.
    pub fn pending_out(&self) -> usize {
        let held = match self.tls.as_deref() {
            Some(t) if t.wants_write() => self.tls_held,
            _ => 0,
        };
        self.wbuf.len() - self.wstart + held
    }

    /// Say goodbye properly on TLS (close_notify), best effort.
    pub fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = self.flush();
        }
    }

    /// Write what is buffered; Ok even when the socket is full (the rest waits for
    /// WRITABLE). Err when the socket failed or the client owes more than [`MAX_OWED`].
    pub fn flush(&mut self) -> io::Result<()> {
        if self.overflowed {
            return Err(io::Error::other("client does not read its connection"));
        }
        let Conn {
            tcp,
            tls,
            wbuf,
            wstart,
            tls_held,
            ..
        } = self;
        match tls.as_deref_mut() {
            None => {
                while *wstart < wbuf.len() {
                    match tcp.write(&wbuf[*wstart..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *wstart += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                wbuf.clear();
                *wstart = 0;
                Ok(())
            }
            Some(tls) => loop {
                while tls.wants_write() {
                    match tls.write_tls(tcp) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => *tls_held = tls_held.saturating_sub(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                *tls_held = 0;
                if *wstart == wbuf.len() {
                    wbuf.clear();
                    *wstart = 0;
                    return Ok(());
                }
                // rustls drained: hand it the next part of the backlog.
                let n = tls.writer().write(&wbuf[*wstart..])?;
                if n == 0 {
                    return Ok(());
                }
                *wstart += n;
                *tls_held += n;
            },
        }
    }
}

#[cfg(test)]
mod tests;
