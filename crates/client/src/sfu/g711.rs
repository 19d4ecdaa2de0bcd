//! A participant whose audio is G.711, as a page with the SDK's `audioCodec: 'pcmu'`
//! (docs/sip.md): it offers PCMU (then Opus, to receive the others' Opus) and sends
//! 20 ms PCMU frames. For the SIP gateway's passthrough tests.

use super::{protocol, ClientError, MediaPeer, SLICE};
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;
use str0m::format::Codec;
use str0m::{Candidate, Rtc};

impl MediaPeer {
    /// [`MediaPeer::new`] with PCMU and Opus as its audio codecs (and VP8).
    pub fn new_g711(bind_ip: std::net::IpAddr) -> Result<MediaPeer, ClientError> {
        let sock = UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
        sock.set_read_timeout(Some(SLICE))?;
        let local = sock.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(protocol)?;
        rtc.add_local_candidate(candidate);
        Ok(MediaPeer::assemble(rtc, sock, local, None, None))
    }

    /// Send one 20 ms PCMU payload (160 bytes: the timestamp moves 160) on every audio mid
    /// we send on; returns how many were written (0 if PCMU was not negotiated).
    pub fn send_pcmu_packet(&mut self, payload: &[u8]) -> usize {
        self.send_audio_as(Codec::PCMU, 160, payload)
    }
}
