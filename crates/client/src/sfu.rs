//! Test and load clients of Switchboard's SFU (feature `sfu`), each a str0m `Rtc` (full
//! ICE, controlling, RTP mode) on a real UDP socket ([`MediaPeer`]):
//!
//! - [`SfuClient`] speaks the SFU protocol of docs/signaling.md ("SFU rooms") over the
//!   signaling WebSocket: join, find the peer whose `service` is `sfu`, publish (a
//!   `publish` message, then an offer), answer the SFU's offers (polite side);
//! - [`IngestClient`] publishes with WHIP (`POST /whip/<room>`) or plays with WHEP
//!   (`POST /whep/<room>`), `DELETE` to end.
//!
//! Blocking and single-threaded on purpose: `pump` moves everything for a while; several
//! clients in one test take turns.

use crate::error::ClientError;
use crate::signal::WsClient;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

mod g711;
mod tcp;

/// How long one socket read waits inside a pump.
const SLICE: Duration = Duration::from_millis(2);

fn protocol(what: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(what.to_string())
}

/// A relay-only path: every datagram goes through a TURN allocation, as ChannelData
/// on one channel bound to the one peer (the SFU).
struct Relay {
    server: SocketAddr,
    channel: u16,
    peer: SocketAddr,
    /// The relayed address (the only local candidate).
    relayed: SocketAddr,
}

/// Captured audio packets of one m-line: (sequence number, payload), in arrival order.
pub type Captured = Vec<(u16, Vec<u8>)>;

/// Datagrams [`MediaPeer::pump_once`] takes at most, so that timers still run.
const DATAGRAMS_PER_PUMP: usize = 256;

/// The channel number the relay path binds (RFC 8656: 0x4000-0x4FFF).
const RELAY_CHANNEL: u16 = 0x4000;

/// The media side of a participant: a str0m `Rtc` and its UDP socket (direct, or a
/// TURN client's socket for a relay-only participant).
pub struct MediaPeer {
    pub rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    relay: Option<Relay>,
    /// The ICE-TCP connection of a TCP-only peer ([`MediaPeer::via_tcp`]).
    tcp: Option<tcp::TcpLink>,
    /// Mids we send on (answered).
    pub sending: Vec<Mid>,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// RTP packets received, by local mid.
    pub rtp: HashMap<Mid, u64>,
    /// With [`MediaPeer::capture`] on: the payloads of the Opus packets received, by
    /// local mid, in arrival order (sequence number, payload).
    pub audio: HashMap<Mid, Captured>,
    /// With `capture`: the G.711 (PCMU/PCMA) payloads received, by local mid, as `audio`.
    pub g711: HashMap<Mid, Captured>,
    /// Keep received Opus payloads in `audio`, G.711 ones in `g711` (tests that decode
    /// what they hear).
    pub capture: bool,
    /// The data channel (the SDK's negotiated one), once offered, and whether it is open.
    pub channel: Option<ChannelId>,
    pub channel_open: bool,
    /// Text received on the data channel.
    pub data: Vec<String>,
    seq: u16,
    audio_seq: u16,
    audio_ts: u32,
}

/// The SDK's negotiated data channel: label and id (crates/http/web/sdk).
const CHANNEL_LABEL: &str = "switchboard";
const CHANNEL_ID: u16 = 0;

impl MediaPeer {
    /// A peer in its starting state around a built `Rtc` and its socket, reaching the
    /// SFU directly, through a TURN relay or over TCP.
    fn assemble(
        rtc: Rtc,
        sock: UdpSocket,
        local: SocketAddr,
        relay: Option<Relay>,
        tcp: Option<tcp::TcpLink>,
    ) -> MediaPeer {
        MediaPeer {
            rtc,
            sock,
            local,
            relay,
            tcp,
            sending: Vec::new(),
            connected: false,
            rtp: HashMap::new(),
            audio: HashMap::new(),
            g711: HashMap::new(),
            capture: false,
            channel: None,
            channel_open: false,
            data: Vec::new(),
            seq: 0,
            audio_seq: 0,
            audio_ts: 0,
        }
    }

    /// A peer with one host candidate on `bind_ip` (any free port).
    pub fn new(bind_ip: std::net::IpAddr) -> Result<MediaPeer, ClientError> {
        let sock = UdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
        sock.set_read_timeout(Some(SLICE))?;
        let local = sock.local_addr()?;
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(protocol)?;
        rtc.add_local_candidate(candidate);
        Ok(MediaPeer::assemble(rtc, sock, local, None, None))
    }

    /// A relay-only peer: allocate on the TURN server `turn` (long-term credentials
    /// `user`/`pass`), permit and bind a channel to `peer` (the SFU's address), and take
    /// the relayed address as the only candidate. Allocations last 10 minutes and are
    /// not refreshed: for tests and load runs.
    pub fn via_turn(
        turn: SocketAddr,
        user: &str,
        pass: &str,
        peer: SocketAddr,
    ) -> Result<MediaPeer, ClientError> {
        use crate::transact::Transact;
        let mut client = crate::UdpClient::connect(turn, crate::ClientAuth::user(user, pass))?;
        let alloc = client.allocate_udp()?;
        let relayed = *alloc
            .relayed()
            .first()
            .ok_or_else(|| protocol(format!("TURN allocation refused: {:?}", alloc.error())))?;
        for (what, r) in [
            ("CreatePermission", client.create_permission(peer)?),
            ("ChannelBind", client.channel_bind(RELAY_CHANNEL, peer)?),
        ] {
            if !r.ok() {
                return Err(protocol(format!("TURN {what} refused: {:?}", r.error())));
            }
        }
        let sock = client.socket().try_clone()?;
        sock.set_read_timeout(Some(SLICE))?;
        let local = sock.local_addr()?;
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
        let candidate = Candidate::relayed(relayed, local, "udp").map_err(protocol)?;
        rtc.add_local_candidate(candidate);
        let relay = Relay {
            server: turn,
            channel: RELAY_CHANNEL,
            peer,
            relayed,
        };
        Ok(MediaPeer::assemble(rtc, sock, local, Some(relay), None))
    }

    /// The local media address (the relayed address for a relay-only peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.relay.as_ref().map_or(self.local, |r| r.relayed)
    }

    /// Send `contents` to `to`, through the relay when there is one.
    fn send(&self, to: SocketAddr, contents: &[u8]) {
        if let Some(t) = &self.tcp {
            if to == t.peer {
                t.send(contents);
            }
            return;
        }
        // A full socket buffer loses the datagram, as the network would.
        match &self.relay {
            None => {
                let _ = self.sock.send_to(contents, to);
            }
            Some(r) if to == r.peer => {
                let mut framed = Vec::with_capacity(4 + contents.len());
                framed.extend_from_slice(&r.channel.to_be_bytes());
                framed.extend_from_slice(&(contents.len() as u16).to_be_bytes());
                framed.extend_from_slice(contents);
                let _ = self.sock.send_to(&framed, r.server);
            }
            // Relay-only: nothing else is reachable.
            Some(_) => {}
        }
    }

    /// A datagram that arrived on the socket as (source, destination, payload): direct,
    /// or unwrapped from the relay's ChannelData (other TURN traffic is None).
    fn arrived<'a>(
        &self,
        from: SocketAddr,
        bytes: &'a [u8],
    ) -> Option<(SocketAddr, SocketAddr, &'a [u8])> {
        let Some(r) = &self.relay else {
            return Some((from, self.local, bytes));
        };
        if from != r.server
            || bytes.len() < 4
            || u16::from_be_bytes([bytes[0], bytes[1]]) != r.channel
        {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let payload = bytes.get(4..4 + len)?;
        Some((r.peer, r.relayed, payload))
    }

    /// An offer adding one sendonly VP8-capable video m-line and, with `channel`, the
    /// data channel unless it exists.
    pub fn offer_video(
        &mut self,
        channel: bool,
    ) -> Result<(SdpOffer, SdpPendingOffer, Mid), ClientError> {
        let (offer, pending, mids) =
            self.offer_media(&[(MediaKind::Video, Direction::SendOnly)], channel)?;
        let mid = mids.first().copied().ok_or_else(|| protocol("no m-line"))?;
        Ok((offer, pending, mid))
    }

    /// An offer adding an m-line of each (kind, direction) and, with `channel`, the data
    /// channel unless it exists.
    pub fn offer_media(
        &mut self,
        lines: &[(MediaKind, Direction)],
        channel: bool,
    ) -> Result<(SdpOffer, SdpPendingOffer, Vec<Mid>), ClientError> {
        let mut api = self.rtc.sdp_api();
        let mids = lines
            .iter()
            .map(|(kind, dir)| api.add_media(*kind, *dir, None, None, None))
            .collect();
        if channel && self.channel.is_none() {
            self.channel = Some(api.add_channel_with_config(ChannelConfig {
                label: CHANNEL_LABEL.into(),
                negotiated: Some(CHANNEL_ID),
                ..Default::default()
            }));
        }
        let (offer, pending) = api.apply().ok_or_else(|| protocol("nothing to offer"))?;
        Ok((offer, pending, mids))
    }

    /// Take the answer to our offer; `mids` are sending from now on.
    pub fn accept_answer(
        &mut self,
        pending: SdpPendingOffer,
        answer: &str,
        mids: Vec<Mid>,
    ) -> Result<(), ClientError> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(protocol)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(protocol)?;
        self.sending.extend(mids);
        Ok(())
    }

    /// Datagrams and timers: wait for a datagram (up to a few ms), take it and every
    /// other one queued (up to [`DATAGRAMS_PER_PUMP`]), and everything they cause.
    /// Taking only one per call let a participant that hears several tracks fall ever
    /// further behind, and handle packets long after the `tracks` map had moved on.
    pub fn pump_once(&mut self) -> Result<(), ClientError> {
        if self.tcp.is_some() {
            return self.pump_tcp();
        }
        self.drain()?;
        let mut nonblocking = false;
        let taken = self.receive_queued(&mut nonblocking);
        if nonblocking {
            // Back to waiting reads (the read timeout stays set) whatever happened.
            self.sock.set_nonblocking(false)?;
        }
        taken?;
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(protocol)?;
        self.drain()
    }

    /// The first datagram with the socket's read timeout, the rest without waiting (the
    /// socket is made non-blocking once one came, and `nonblocking` says so).
    fn receive_queued(&mut self, nonblocking: &mut bool) -> Result<(), ClientError> {
        let mut buf = [0u8; 2048];
        for _ in 0..DATAGRAMS_PER_PUMP {
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e.into()),
            };
            if let Some((source, destination, bytes)) = self.arrived(from, &buf[..n]) {
                let contents = bytes.try_into().map_err(protocol)?;
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination,
                        contents,
                    },
                );
                self.rtc.handle_input(input).map_err(protocol)?;
                self.drain()?;
            }
            if !*nonblocking {
                self.sock.set_nonblocking(true)?;
                *nonblocking = true;
            }
        }
        Ok(())
    }

    /// Everything str0m has to send or say.
    pub fn drain(&mut self) -> Result<(), ClientError> {
        loop {
            match self.rtc.poll_output().map_err(protocol)? {
                Output::Timeout(_) => return Ok(()),
                Output::Transmit(t) => self.send(t.destination, &t.contents),
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::ChannelOpen(id, _) => {
                self.channel = Some(id);
                self.channel_open = true;
            }
            Event::ChannelData(d) => self.data.push(String::from_utf8_lossy(&d.data).into()),
            Event::RtpPacket(p) => {
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|s| s.mid());
                if let Some(mid) = mid {
                    *self.rtp.entry(mid).or_default() += 1;
                    let codec = self
                        .rtc
                        .codec_config()
                        .find(|c| c.pt() == p.header.payload_type)
                        .map(|c| c.spec().codec);
                    let kept = match codec {
                        Some(Codec::Opus) => Some(&mut self.audio),
                        Some(Codec::PCMU | Codec::PCMA) => Some(&mut self.g711),
                        _ => None,
                    };
                    if let (true, Some(kept)) = (self.capture, kept) {
                        kept.entry(mid)
                            .or_default()
                            .push((p.header.sequence_number, p.payload.to_vec()));
                    }
                }
            }
            _ => {}
        }
    }

    /// Send one VP8 RTP packet (400 bytes; a keyframe when `keyframe`) on every mid we
    /// send on; returns how many were written.
    pub fn send_video_packet(&mut self, keyframe: bool) -> usize {
        self.seq = self.seq.wrapping_add(1);
        let now = Instant::now();
        let pt = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt());
        let Some(pt) = pt else { return 0 };
        let mut written = 0;
        for mid in self.sending.clone() {
            // VP8 payload descriptor (S bit, partition 0), then the 3-byte frame tag (P
            // bit clear on a keyframe, show_frame set); a keyframe adds the start code
            // and its size, 640x480 (RFC 6386 9.1), which SFUs read to switch layers.
            let mut payload = if keyframe {
                let mut k = vec![0x10, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a];
                k.extend_from_slice(&640u16.to_le_bytes());
                k.extend_from_slice(&480u16.to_le_bytes());
                k
            } else {
                vec![0x10, 0x11, 0x00, 0x00]
            };
            payload.resize(400, 0x5A);
            let ts = u32::from(self.seq).wrapping_mul(3000);
            let mut api = self.rtc.direct_api();
            if let Some(tx) = api.stream_tx_by_mid(mid, None) {
                let w = RtpWrite::new(pt, SeqNo::from(u64::from(self.seq)), ts, now, payload)
                    .marker(true);
                tx.write_rtp(w);
                written += 1;
            }
        }
        written
    }

    /// Send one Opus payload (20 ms: the timestamp moves 960) on every audio mid we send
    /// on; returns how many were written.
    pub fn send_audio_packet(&mut self, payload: &[u8]) -> usize {
        self.send_audio_as(Codec::Opus, 960, payload)
    }

    /// Send one `codec` payload whose frame is `ticks` of its clock on every audio mid we
    /// send on; returns how many were written (0 if `codec` was not negotiated).
    pub(crate) fn send_audio_as(&mut self, codec: Codec, ticks: u32, payload: &[u8]) -> usize {
        self.audio_seq = self.audio_seq.wrapping_add(1);
        self.audio_ts = self.audio_ts.wrapping_add(ticks);
        let now = Instant::now();
        let pt = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt());
        let Some(pt) = pt else { return 0 };
        let mut written = 0;
        for mid in self.sending.clone() {
            let audio = self
                .rtc
                .media(mid)
                .is_some_and(|m| m.kind() == MediaKind::Audio);
            let mut api = self.rtc.direct_api();
            if let (true, Some(tx)) = (audio, api.stream_tx_by_mid(mid, None)) {
                let seq = SeqNo::from(u64::from(self.audio_seq));
                tx.write_rtp(RtpWrite::new(pt, seq, self.audio_ts, now, payload.to_vec()));
                written += 1;
            }
        }
        written
    }

    /// Send `text` on the data channel (the SFU's envelope: `{"to"?,"data"}`); false
    /// when it is not open or the text was not taken.
    pub fn send_data(&mut self, text: &str) -> bool {
        let Some(id) = self.channel.filter(|_| self.channel_open) else {
            return false;
        };
        self.rtc
            .channel(id)
            .is_some_and(|mut ch| ch.write(false, text.as_bytes()).unwrap_or(false))
    }

    /// All RTP packets received.
    pub fn rtp_total(&self) -> u64 {
        self.rtp.values().sum()
    }
}

/// One participant of an SFU room over the signaling WebSocket.
pub struct SfuClient {
    pub ws: WsClient,
    pub media: MediaPeer,
    /// Our peer id.
    pub peer_id: String,
    /// The `joined` message.
    pub joined: Value,
    /// The SFU's peer id, once it is in the room.
    pub sfu_peer: Option<String>,
    /// Our offer waiting for the SFU's answer, with the mids it adds and their kind.
    pending: Option<(SdpPendingOffer, Vec<Mid>, MediaKind)>,
    /// `{"sfu":...}` messages from the SFU, in order.
    pub sfu_messages: Vec<Value>,
    /// `peer` of every `peer-joined` since the join, and the ids of `peer-left`.
    pub joined_peers: Vec<Value>,
    pub left_peers: Vec<String>,
    /// Audio captured ([`MediaPeer::capture`]) on an m-line before the `tracks` map gave
    /// it to another track or took it away (the SFU reuses a free m-line for the next
    /// track): (the peer whose track it was, its packets as in [`MediaPeer::audio`]).
    pub earlier_audio: Vec<(String, Captured)>,
    /// `message`s from other peers than the SFU (whole, with `from` and `data`).
    pub messages: Vec<Value>,
    /// Offers and answers from the SFU handled.
    pub offers: u32,
    pub answers: u32,
}

impl SfuClient {
    /// Connect to the signaling WebSocket at `signal`, join `room` as `name` (with
    /// `topology` when given), and bind a UDP socket on `bind_ip` for media.
    pub fn join(
        signal: SocketAddr,
        room: &str,
        name: &str,
        topology: Option<&str>,
        bind_ip: std::net::IpAddr,
    ) -> Result<SfuClient, ClientError> {
        Self::join_with(signal, room, name, topology, MediaPeer::new(bind_ip)?)
    }

    /// [`SfuClient::join`] with a media side made by the caller (e.g. relay-only,
    /// [`MediaPeer::via_turn`]).
    pub fn join_with(
        signal: SocketAddr,
        room: &str,
        name: &str,
        topology: Option<&str>,
        media: MediaPeer,
    ) -> Result<SfuClient, ClientError> {
        let mut ws = WsClient::connect(signal)?;
        ws.ws.get_ref().tcp().set_read_timeout(Some(SLICE))?;
        let mut msg = json!({"type": "join", "room": room, "name": name});
        if let Some(t) = topology {
            msg["topology"] = json!(t);
        }
        ws.send(&msg)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let joined = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(5));
            }
            if let Some(m) = ws.recv(left)? {
                if m["type"] == "joined" {
                    break m;
                }
                if m["type"] == "error" {
                    return Err(protocol(format!("join refused: {m}")));
                }
            }
        };
        let peer_id = joined["peerId"].as_str().unwrap_or_default().to_string();
        // The room's own SFU; in a cluster, an edge (`SFU@<node>`) only when the room's
        // SFU is not among the peers.
        let sfus: Vec<&Value> = joined["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["service"] == "sfu")
            .collect();
        let sfu_peer = sfus
            .iter()
            .find(|p| p["name"] == "SFU")
            .or(sfus.first())
            .and_then(|p| p["id"].as_str().map(str::to_string));
        Ok(SfuClient {
            ws,
            media,
            peer_id,
            joined,
            sfu_peer,
            pending: None,
            sfu_messages: Vec::new(),
            joined_peers: Vec::new(),
            left_peers: Vec::new(),
            earlier_audio: Vec::new(),
            messages: Vec::new(),
            offers: 0,
            answers: 0,
        })
    }

    /// Pump until `done` holds or `timeout` passes; false on timeout.
    pub fn pump_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&SfuClient) -> bool,
    ) -> Result<bool, ClientError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(self) {
                return Ok(true);
            }
            self.pump(Duration::from_millis(10))?;
        }
        Ok(done(self))
    }

    /// Move signaling, datagrams and timers for about `d`.
    pub fn pump(&mut self, d: Duration) -> Result<(), ClientError> {
        let end = Instant::now() + d;
        loop {
            while let Some(m) = self.ws.recv(Duration::from_millis(1))? {
                self.on_signal(&m)?;
            }
            self.media.pump_once()?;
            if Instant::now() >= end {
                return Ok(());
            }
        }
    }

    fn on_signal(&mut self, m: &Value) -> Result<(), ClientError> {
        let from_sfu = self.sfu_peer.is_some() && m["from"].as_str() == self.sfu_peer.as_deref();
        match m["type"].as_str().unwrap_or_default() {
            "peer-joined" => {
                // An edge of another node joining does not take the room's SFU's place.
                if m["peer"]["service"] == "sfu"
                    && (self.sfu_peer.is_none() || m["peer"]["name"] == "SFU")
                {
                    self.sfu_peer = m["peer"]["id"].as_str().map(str::to_string);
                }
                self.joined_peers.push(m["peer"].clone());
            }
            "peer-left" => {
                if let Some(id) = m["peerId"].as_str() {
                    self.left_peers.push(id.to_string());
                }
            }
            "message" if !from_sfu => self.messages.push(m.clone()),
            "offer" if from_sfu => {
                self.offers += 1;
                let sdp = m["sdp"]
                    .as_str()
                    .ok_or_else(|| protocol("offer without sdp"))?;
                let offer = SdpOffer::from_sdp_string(sdp).map_err(protocol)?;
                // Polite: an own pending offer is dropped (str0m rolls it back) and made
                // again after this exchange.
                let rolled_back = self.pending.take();
                let answer = self
                    .media
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(protocol)?;
                self.relay("answer", "sdp", json!(answer.to_sdp_string()))?;
                match rolled_back.map(|(_, _, kind)| kind) {
                    Some(MediaKind::Audio) => self.publish_audio()?,
                    Some(_) => self.publish_video()?,
                    None => {}
                }
            }
            "answer" if from_sfu => {
                self.answers += 1;
                let sdp = m["sdp"]
                    .as_str()
                    .ok_or_else(|| protocol("answer without sdp"))?;
                if let Some((pending, mids, _)) = self.pending.take() {
                    self.media.accept_answer(pending, sdp, mids)?;
                }
            }
            "message" if from_sfu && m["data"]["sfu"].is_string() => {
                let before = self.tracks();
                self.sfu_messages.push(m["data"].clone());
                if m["data"]["sfu"] == "tracks" {
                    self.set_aside_audio(&before);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn relay(&mut self, kind: &str, field: &str, payload: Value) -> Result<(), ClientError> {
        let to = self
            .sfu_peer
            .clone()
            .ok_or_else(|| protocol("no SFU peer in the room yet"))?;
        let mut msg = json!({"type": kind, "to": to});
        msg[field] = payload;
        self.ws.send(&msg)
    }

    /// Send `data` as a `message` to peer `to` of the room.
    pub fn send_message(&mut self, to: &str, data: Value) -> Result<(), ClientError> {
        self.ws
            .send(&json!({"type": "message", "to": to, "data": data}))
    }

    /// Publish one video track (camera, VP8), with the data channel the first time:
    /// `publish` message, then our offer.
    pub fn publish_video(&mut self) -> Result<(), ClientError> {
        let (offer, pending, mid) = self.media.offer_video(true)?;
        let publish =
            json!({"sfu": "publish", "tracks": [{"mid": mid.to_string(), "source": "camera"}]});
        self.relay("message", "data", publish)?;
        self.relay("offer", "sdp", json!(offer.to_sdp_string()))?;
        self.pending = Some((pending, vec![mid], MediaKind::Video));
        Ok(())
    }

    /// Publish one audio track (microphone, Opus), with the data channel the first
    /// time: `publish` message, then our offer.
    pub fn publish_audio(&mut self) -> Result<(), ClientError> {
        let (offer, pending, mids) = self
            .media
            .offer_media(&[(MediaKind::Audio, Direction::SendOnly)], true)?;
        let mid = mids.first().copied().ok_or_else(|| protocol("no m-line"))?;
        let publish =
            json!({"sfu": "publish", "tracks": [{"mid": mid.to_string(), "source": "microphone"}]});
        self.relay("message", "data", publish)?;
        self.relay("offer", "sdp", json!(offer.to_sdp_string()))?;
        self.pending = Some((pending, vec![mid], MediaKind::Audio));
        Ok(())
    }

    /// See [`MediaPeer::send_video_packet`].
    pub fn send_video_packet(&mut self, keyframe: bool) -> usize {
        self.media.send_video_packet(keyframe)
    }

    /// The latest `tracks` map from the SFU: (mid, peer, source, kind).
    pub fn tracks(&self) -> Vec<(String, String, String, String)> {
        let Some(last) = self
            .sfu_messages
            .iter()
            .rev()
            .find(|m| m["sfu"] == "tracks")
        else {
            return Vec::new();
        };
        last["tracks"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|t| {
                        let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                        (s("mid"), s("peer"), s("source"), s("kind"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// After a new `tracks` map: the audio captured on each m-line whose track changed
    /// (left, or another peer's now) belongs to the track it carried `before`, so it
    /// moves to [`SfuClient::earlier_audio`] under that peer (audio of no track is
    /// dropped).
    fn set_aside_audio(&mut self, before: &[(String, String, String, String)]) {
        let now = self.tracks();
        let owner = |map: &[(String, String, String, String)], mid: &str| {
            map.iter().find(|t| t.0 == mid).map(|t| t.1.clone())
        };
        let mids: Vec<Mid> = self.media.audio.keys().copied().collect();
        for mid in mids {
            let key = mid.to_string();
            let was = owner(before, &key);
            if was == owner(&now, &key) {
                continue;
            }
            let packets = self.media.audio.remove(&mid).unwrap_or_default();
            if let Some(peer) = was.filter(|_| !packets.is_empty()) {
                self.earlier_audio.push((peer, packets));
            }
        }
    }

    /// The Opus payloads captured ([`MediaPeer::capture`]) from `peer`'s audio tracks:
    /// what it sent on m-lines since given to other tracks, then what its tracks in the
    /// current map carry; each m-line's stretch in sequence order.
    pub fn audio_from(&self, peer: &str) -> Vec<Vec<u8>> {
        let mids: Vec<String> = self
            .tracks()
            .into_iter()
            .filter(|t| t.1 == peer && t.3 == "audio")
            .map(|t| t.0)
            .collect();
        let earlier = self
            .earlier_audio
            .iter()
            .filter(|(p, _)| p == peer)
            .map(|(_, packets)| packets);
        let current = self
            .media
            .audio
            .iter()
            .filter(|(mid, _)| mids.contains(&mid.to_string()))
            .map(|(_, packets)| packets);
        let mut out = Vec::new();
        for packets in earlier.chain(current) {
            let mut p = packets.clone();
            p.sort_by_key(|(seq, _)| *seq);
            out.extend(p.into_iter().map(|(_, payload)| payload));
        }
        out
    }

    /// RTP packets received on the m-lines that carry `peer`'s `kind` tracks.
    pub fn received_from(&self, peer: &str, kind: &str) -> u64 {
        self.tracks()
            .iter()
            .filter(|t| t.1 == peer && t.3 == kind)
            .map(|t| {
                self.media
                    .rtp
                    .get(&Mid::from(t.0.as_str()))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// A plain-HTTP/1.1 exchange: (status, headers in lower case, body).
pub type HttpReply = (u16, Vec<(String, String)>, String);

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpReply, ClientError> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| protocol("no HTTP header end"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| protocol("no HTTP status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

/// A WHIP publisher (RFC 9725) of one video track, or a WHEP player of a room's video
/// and audio.
pub struct IngestClient {
    pub media: MediaPeer,
    http: SocketAddr,
    token: Option<String>,
    /// The resource URL path (`Location`) of the session.
    pub location: String,
}

impl IngestClient {
    /// `POST /whip/<room>` an offer of one sendonly video m-line to the server at `http`
    /// (with `Authorization: Bearer token` when given). On a refusal: `Err` with the
    /// status and body.
    pub fn whip(
        http: SocketAddr,
        room: &str,
        token: Option<&str>,
        bind_ip: std::net::IpAddr,
    ) -> Result<IngestClient, ClientError> {
        let lines = [(MediaKind::Video, Direction::SendOnly)];
        Self::post(http, "whip", room, token, MediaPeer::new(bind_ip)?, &lines)
    }

    /// `POST /whep/<room>` an offer of recvonly video and audio m-lines: a player.
    pub fn whep(
        http: SocketAddr,
        room: &str,
        token: Option<&str>,
        bind_ip: std::net::IpAddr,
    ) -> Result<IngestClient, ClientError> {
        let lines = [
            (MediaKind::Video, Direction::RecvOnly),
            (MediaKind::Audio, Direction::RecvOnly),
        ];
        Self::post(http, "whep", room, token, MediaPeer::new(bind_ip)?, &lines)
    }

    fn post(
        http: SocketAddr,
        endpoint: &str,
        room: &str,
        token: Option<&str>,
        mut media: MediaPeer,
        lines: &[(MediaKind, Direction)],
    ) -> Result<IngestClient, ClientError> {
        let (offer, pending, mids) = media.offer_media(lines, false)?;
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/sdp")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let (status, reply_headers, body) = http_request(
            http,
            "POST",
            &format!("/{endpoint}/{room}"),
            &headers,
            &offer.to_sdp_string(),
        )?;
        if status != 201 {
            return Err(protocol(format!("{endpoint} POST: {status} {body}")));
        }
        let header = |name: &str| {
            reply_headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if header("content-type").as_deref() != Some("application/sdp") {
            return Err(protocol("the answer is not application/sdp"));
        }
        let location = header("location").ok_or_else(|| protocol("answer without Location"))?;
        let sending = lines
            .iter()
            .zip(mids)
            .filter(|((_, dir), _)| *dir == Direction::SendOnly)
            .map(|(_, mid)| mid)
            .collect();
        media.accept_answer(pending, &body, sending)?;
        Ok(IngestClient {
            media,
            http,
            token: token.map(str::to_string),
            location,
        })
    }

    /// `DELETE` the session; returns the status.
    pub fn end(&self) -> Result<u16, ClientError> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        http_request(self.http, "DELETE", &self.location, &headers, "").map(|r| r.0)
    }
}
