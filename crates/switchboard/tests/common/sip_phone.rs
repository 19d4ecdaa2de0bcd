//! The phone of the hermetic SIP tests (`e2e_sip/calls.rs`, `e2e_sip/passthrough.rs`): our own
//! user agent (`switchboard_sip::ua::UserAgent`) on a UDP socket, and its media, a 440 Hz
//! PCMU tone sent every 20 ms with what comes back kept.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_media::g711::Law;
use switchboard_media::rtp::{write_rtp_header, RtpHeader};
use switchboard_sip::sdp::{
    Codec, Direction, LocalAudio, Negotiated, SdpSession, SessionDescription,
};
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{CallId, Outbound, UaConfig, UaEvent, UserAgent};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What a test phone or far end offers and answers: PCMU, 20 ms, RTCP multiplexed, on
/// `media`'s port.
pub fn pcmu_audio(media: &UdpSocket) -> LocalAudio {
    let at = media.local_addr().expect("addr");
    LocalAudio {
        addr: at.ip(),
        port: at.port(),
        codecs: vec![Codec::Pcmu],
        direction: Direction::SendRecv,
        srtp_key: None,
        rtcp_mux: true,
        ptime: 20,
    }
}

/// A SIP phone: our user agent on a UDP socket, and an RTP socket.
pub struct Phone {
    pub sip: UdpSocket,
    pub ua: UserAgent,
    pub media: UdpSocket,
    pub events: Vec<UaEvent>,
    pub sdp: SdpSession,
    pub local: LocalAudio,
}

impl Phone {
    pub fn new() -> Phone {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("sip socket");
        sip.set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
        media
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let cfg = UaConfig {
            user_agent: "e2e-phone".into(),
            ..UaConfig::new(sip.local_addr().expect("addr"))
        };
        let local = pcmu_audio(&media);
        Phone {
            ua: UserAgent::new(cfg, Instant::now()),
            sip,
            media,
            events: Vec::new(),
            sdp: SdpSession::new(7, LOOPBACK),
            local,
        }
    }

    /// Move SIP for a moment.
    pub fn pump(&mut self) {
        let now = Instant::now();
        if self.ua.poll_timeout().is_some_and(|t| t <= now) {
            self.ua.handle_timeout(now);
        }
        while let Some(t) = self.ua.poll_transmit() {
            let _ = self.sip.send_to(&t.bytes, t.dest);
        }
        let mut buf = [0u8; 65_536];
        if let Ok((n, from)) = self.sip.recv_from(&mut buf) {
            self.ua
                .handle_datagram(Instant::now(), &buf[..n], from, Transport::Udp);
        }
        while let Some(t) = self.ua.poll_transmit() {
            let _ = self.sip.send_to(&t.bytes, t.dest);
        }
        while let Some(e) = self.ua.poll_event() {
            self.events.push(e);
        }
    }

    pub fn call(
        &mut self,
        target: String,
        gw: SocketAddr,
        offer: SessionDescription,
        credentials: Option<(&str, &str)>,
    ) -> CallId {
        let out = Outbound {
            target,
            from: "\"Phone\" <sip:phone@127.0.0.1>".into(),
            dest: gw,
            transport: Transport::Udp,
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            headers: Vec::new(),
            offer,
        };
        self.ua.call(Instant::now(), out).expect("INVITE")
    }

    pub fn offer(&mut self) -> SessionDescription {
        self.sdp.offer(&self.local)
    }

    /// The answer of a connected call, or the status it ended with.
    pub fn outcome(
        &mut self,
        call: CallId,
        timeout: Duration,
    ) -> Result<SessionDescription, Option<u16>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.pump();
            for e in self.events.drain(..) {
                match e {
                    UaEvent::Connected { call: c, remote } if c == call => {
                        return remote.ok_or(None);
                    }
                    UaEvent::Ended { call: c, reason } if c == call => return Err(reason.status),
                    _ => {}
                }
            }
        }
        panic!("the call neither connected nor ended within {timeout:?}");
    }

    pub fn ended(&mut self, call: CallId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.pump();
            if self
                .events
                .iter()
                .any(|e| matches!(e, UaEvent::Ended { call: c, .. } if *c == call))
            {
                return true;
            }
        }
        false
    }
}

/// The phone's media: send 440 Hz PCMU every 20 ms to where SDP said, keep what comes.
pub struct PhoneMedia {
    pub to: SocketAddr,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub phase: f64,
    pub next: Instant,
    pub heard: Vec<i16>,
    /// Payloads sent and received, as on the wire (kept with `keep`).
    pub sent: Vec<Vec<u8>>,
    pub received: Vec<Vec<u8>>,
    /// Keep payloads, and mark each sent one with its number (see [`mark_frame`]).
    pub keep: bool,
}

/// Writes `n` into the lowest bit of the first 16 codes of a G.711 `payload` (one
/// quantisation step at most, the sign kept): every frame of a tone differs (a tone's
/// frames repeat) and stays the same tone.
pub fn mark_frame(payload: &mut [u8], n: usize) {
    for (i, b) in payload.iter_mut().take(16).enumerate() {
        *b = (*b & !1) | ((n >> i) & 1) as u8;
    }
}

impl PhoneMedia {
    pub fn new(n: &Negotiated) -> PhoneMedia {
        PhoneMedia {
            to: n.remote_rtp.expect("the gateway's RTP address"),
            pt: n.pt,
            seq: 1,
            ts: 0,
            phase: 0.0,
            next: Instant::now(),
            heard: Vec::new(),
            sent: Vec::new(),
            received: Vec::new(),
            keep: false,
        }
    }

    pub fn step(&mut self, sock: &UdpSocket) {
        if Instant::now() >= self.next {
            self.next += Duration::from_millis(20);
            let mut packet = [0u8; 172];
            let h = write_rtp_header(&mut packet, false, self.pt, self.seq, self.ts, 0x5eed)
                .expect("header");
            let pcm: Vec<i16> = (0..160)
                .map(|_| {
                    self.phase += 2.0 * std::f64::consts::PI * 440.0 / 8000.0;
                    (self.phase.sin() * 8000.0) as i16
                })
                .collect();
            Law::Mu
                .encode(&pcm, &mut packet[h..h + 160])
                .expect("encode");
            if self.keep {
                mark_frame(&mut packet[h..h + 160], usize::from(self.seq));
                self.sent.push(packet[h..h + 160].to_vec());
            }
            let _ = sock.send_to(&packet[..h + 160], self.to);
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
        }
        let mut buf = [0u8; 1500];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(h) = RtpHeader::parse(&buf[..n]) {
                if h.payload_type == self.pt {
                    let payload = &buf[h.payload_start..h.payload_end];
                    if self.keep {
                        self.received.push(payload.to_vec());
                    }
                    let mut pcm = vec![0i16; payload.len()];
                    if Law::Mu.decode(payload, &mut pcm).is_ok() {
                        self.heard.extend_from_slice(&pcm);
                    }
                }
            }
        }
    }
}
