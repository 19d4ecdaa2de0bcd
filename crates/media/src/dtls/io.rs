//! The in-memory datagram "socket" OpenSSL's DTLS runs over: datagrams pushed in by the
//! driver are read one per `read` (DTLS needs datagram boundaries kept), and each `write` of
//! OpenSSL is one datagram out. An empty inbox reads as `WouldBlock`, so a handshake step
//! stops with WANT_READ instead of blocking.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

/// Most datagrams held each way; beyond that the oldest is dropped (a flood, not DTLS).
const QUEUE_LIMIT: usize = 64;

#[derive(Debug, Default)]
pub(super) struct DatagramIo {
    pub(super) inbox: VecDeque<Vec<u8>>,
    pub(super) outbox: VecDeque<Vec<u8>>,
}

impl DatagramIo {
    pub(super) fn push_incoming(&mut self, datagram: &[u8]) {
        if self.inbox.len() >= QUEUE_LIMIT {
            self.inbox.pop_front();
        }
        self.inbox.push_back(datagram.to_vec());
    }
}

impl Read for DatagramIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(datagram) = self.inbox.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // A datagram larger than OpenSSL's buffer is truncated, as a socket would.
        let n = datagram.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram[..n]);
        Ok(n)
    }
}

impl Write for DatagramIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outbox.len() >= QUEUE_LIMIT {
            self.outbox.pop_front();
        }
        self.outbox.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
