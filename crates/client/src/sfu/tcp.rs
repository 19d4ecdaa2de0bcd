//! The ICE-TCP path of a [`MediaPeer`] (a participant whose UDP is blocked): one TCP
//! connection to the SFU's passive TCP candidate (RFC 6544), the only local candidate
//! an active TCP one at the connection's local address, every packet an RFC 4571 frame
//! (2-byte length, then the packet).

use super::{protocol, MediaPeer, SLICE};
use crate::error::ClientError;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Instant;
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Input, Rtc};

pub(super) struct TcpLink {
    stream: TcpStream,
    /// The SFU's TCP address (the only reachable remote).
    pub peer: SocketAddr,
    /// The announced candidate's address (what str0m sends from and receives on).
    candidate: SocketAddr,
    /// Bytes read and not yet a whole frame.
    buf: Vec<u8>,
}

impl TcpLink {
    /// Write one frame (a broken connection loses it, as the network would).
    pub fn send(&self, contents: &[u8]) {
        let Ok(len) = u16::try_from(contents.len()) else {
            return;
        };
        let mut frame = Vec::with_capacity(2 + contents.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(contents);
        let _ = (&self.stream).write_all(&frame);
    }
}

impl MediaPeer {
    /// A TCP-only peer: connect to the SFU's ICE-TCP address `sfu` (the `sfu-tcp`
    /// listener); the only candidate is an active TCP one with port 9, as browsers
    /// announce it (RFC 6544 §4.5): the SFU learns the connection's real address from
    /// the STUN checks (peer-reflexive).
    pub fn via_tcp(sfu: SocketAddr) -> Result<MediaPeer, ClientError> {
        let stream = TcpStream::connect(sfu)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(SLICE))?;
        let local = stream.local_addr()?;
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        let announced = SocketAddr::new(local.ip(), 9);
        let candidate = Candidate::builder()
            .tcp()
            .host(announced)
            .tcptype(TcpType::Active)
            .build()
            .map_err(protocol)?;
        rtc.add_local_candidate(candidate);
        // Never used for media; MediaPeer always has a socket.
        let sock = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
        let link = TcpLink {
            stream,
            peer: sfu,
            candidate: announced,
            buf: Vec::new(),
        };
        Ok(MediaPeer::assemble(rtc, sock, local, None, Some(link)))
    }

    /// [`MediaPeer::pump_once`] of a TCP peer: one read (up to a few ms), every whole
    /// frame into str0m, then its timers.
    pub(super) fn pump_tcp(&mut self) -> Result<(), ClientError> {
        self.drain()?;
        let Some(link) = self.tcp.as_mut() else {
            return Ok(());
        };
        let mut chunk = [0u8; 16 * 1024];
        match link.stream.read(&mut chunk) {
            Ok(0) => return Err(protocol("the SFU closed the TCP connection")),
            Ok(n) => link.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        let (source, destination) = (link.peer, link.candidate);
        let mut buf = std::mem::take(&mut link.buf);
        let mut used = 0;
        while let [hi, lo, rest @ ..] = &buf[used..] {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            let Some(frame) = rest.get(..len) else { break };
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Tcp,
                    source,
                    destination,
                    contents: frame.try_into().map_err(protocol)?,
                },
            );
            self.rtc.handle_input(input).map_err(protocol)?;
            self.drain()?;
            used += 2 + len;
        }
        buf.drain(..used);
        if let Some(link) = self.tcp.as_mut() {
            link.buf = buf;
        }
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(protocol)?;
        self.drain()
    }
}
