//! [`Sfu`]: the rooms of one worker thread. It owns every participant's `Rtc`, routes
//! datagrams to them (STUN by the local ufrag in USERNAME, everything else by the source
//! address learned from accepted STUN: two hash lookups, no scan), drains their output
//! and keeps the deadlines. Negotiation lives in `negotiate.rs`, forwarding in
//! `forward.rs`, the drains of str0m's output (and the flush of forwarded packets) in
//! `drain.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input};

use crate::config::{Grants, SfuConfig};
use crate::message::{ErrorCode, SfuMessage};
use crate::output::{GoneReason, SfuError, SfuOutput, SfuStats, SignalIn, SignalKind, Transport};
use crate::participant::{Participant, Pid};
use crate::speaker::{SpeakerConfig, SpeakerDetector};
use crate::wire::stun_ufrag;

/// Participants of one room.
pub(crate) struct Room {
    pub members: Vec<Pid>,
    pub by_peer: HashMap<Arc<str>, Pid>,
    /// Dominant speaker of the room (by peer id).
    pub speaker: SpeakerDetector<Arc<str>>,
}

/// Counters behind [`SfuStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub layer_switches: u64,
    pub plis_sent: u64,
    pub data_relayed: u64,
    pub data_dropped: u64,
    pub unknown_datagrams: u64,
}

/// The SFU of one worker: a set of rooms, sans-IO. See the crate docs.
pub struct Sfu {
    pub(crate) cfg: SfuConfig,
    cert: Option<DtlsCert>,
    pub(crate) parts: Vec<Option<Participant>>,
    free: Vec<Pid>,
    pub(crate) rooms: HashMap<Arc<str>, Room>,
    by_ufrag: HashMap<String, Pid>,
    pub(crate) by_addr: HashMap<(Transport, SocketAddr), Pid>,
    pub(crate) out: VecDeque<SfuOutput>,
    pub(crate) dirty: Vec<Pid>,
    /// Participants whose streams were written to since the last flush (see
    /// `drain.rs`): their packets leave on [`Sfu::flush`], once per input batch.
    pub(crate) due: Vec<Pid>,
    /// The participant being drained: marking it again is needless (its drain polls
    /// until str0m has nothing left).
    pub(crate) draining: Option<Pid>,
    pub(crate) counters: Counters,
    pub(crate) now: Instant,
    /// Some participant may need an SFU offer (saves a scan per datagram).
    pub(crate) offers_due: bool,
    /// str0m deadlines by participant (lazily invalidated: an entry counts only while it
    /// equals the participant's `rtc_timeout`).
    pub(crate) timers: BinaryHeap<Reverse<(Instant, Pid)>>,
    /// The next run of the SFU's own timers.
    next_housekeeping: Instant,
    /// When the layer choice of every subscriber is made again (the hysteresis of
    /// going up needs time to pass even when no new estimate comes).
    next_allocation: Instant,
}

impl Sfu {
    /// A worker's SFU. Fails on a config that cannot work.
    pub fn new(cfg: SfuConfig, now: Instant) -> Result<Sfu, SfuError> {
        cfg.validate().map_err(SfuError::Config)?;
        // One DTLS certificate for the worker: generating one per participant costs a
        // key generation per join for nothing (the fingerprint is per SDP anyway).
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        Ok(Sfu {
            cfg,
            cert,
            parts: Vec::new(),
            free: Vec::new(),
            rooms: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            out: VecDeque::new(),
            dirty: Vec::new(),
            due: Vec::new(),
            draining: None,
            counters: Counters::default(),
            now,
            offers_due: false,
            next_allocation: now + ALLOCATION_INTERVAL,
            timers: BinaryHeap::new(),
            next_housekeeping: now + HOUSEKEEPING_INTERVAL,
        })
    }

    /// The browser `peer` of `room` will connect (the hub saw it join an SFU room).
    /// Nothing is sent until its first offer arrives.
    pub fn add_participant(
        &mut self,
        room: &str,
        peer: &str,
        grants: Grants,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.add(room, peer, grants, false, now)
    }

    /// A participant whose SDP is exchanged once (a WHEP player, a WHIP publisher): the
    /// SFU never sends it an offer or a message; the recvonly audio/video m-lines of its
    /// offer carry the room's tracks (one per m-line, by kind, first come first served,
    /// the next one when a track leaves), its sending m-lines are published as usual.
    pub fn add_fixed_participant(
        &mut self,
        room: &str,
        peer: &str,
        grants: Grants,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.add(room, peer, grants, true, now)
    }

    fn add(
        &mut self,
        room: &str,
        peer: &str,
        grants: Grants,
        fixed: bool,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.tick(now);
        if let Some(r) = self.rooms.get(room) {
            if r.by_peer.contains_key(peer) {
                return Err(SfuError::AlreadyJoined {
                    room: room.into(),
                    peer: peer.into(),
                });
            }
            if r.members.len() >= self.cfg.limits.participants_per_room {
                return Err(SfuError::RoomFull {
                    room: room.into(),
                    limit: self.cfg.limits.participants_per_room,
                });
            }
        }
        let room_name: Arc<str> = match self.rooms.get_key_value(room) {
            Some((k, _)) => k.clone(),
            None => room.into(),
        };
        let peer: Arc<str> = peer.into();
        let ufrag = loop {
            let u = format!(
                "{}{}",
                self.cfg.ufrag_prefix,
                switchboard_util::random_hex(6)
            );
            if !self.by_ufrag.contains_key(&u) {
                break u;
            }
        };
        let p = Participant::new(
            &self.cfg,
            self.cert.as_ref(),
            room_name.clone(),
            peer.clone(),
            grants,
            ufrag.clone(),
            self.now,
        );
        let mut p = p;
        p.fixed = fixed;
        let pid = match self.free.pop() {
            Some(i) => {
                self.parts[i] = Some(p);
                i
            }
            None => {
                self.parts.push(Some(p));
                self.parts.len() - 1
            }
        };
        self.by_ufrag.insert(ufrag, pid);
        let now = self.now;
        let r = self.rooms.entry(room_name).or_insert_with(|| Room {
            members: Vec::new(),
            by_peer: HashMap::new(),
            speaker: SpeakerDetector::new(SpeakerConfig::default(), now),
        });
        r.members.push(pid);
        r.by_peer.insert(peer, pid);
        // Speaker changes are announced when they happen: a newcomer learns the current
        // one now, or it would show nobody until the next change.
        let speaker = r
            .speaker
            .current()
            .map(|s| SfuMessage::Speaker(Some((**s).into())).render());
        if let Some(msg) = speaker {
            self.signal(pid, SignalKind::Message, msg);
        }
        self.mark(pid);
        Ok(())
    }

    /// The browser left the room (hub `peer-left`): its tracks leave every subscriber.
    /// Unknown participants are ignored (it may be gone already).
    pub fn remove_participant(&mut self, room: &str, peer: &str, now: Instant) {
        self.tick(now);
        if let Some(pid) = self.pid(room, peer) {
            self.drop_participant(pid, None);
        }
        self.drain();
    }

    /// A signaling relay from `from` in `room` to the SFU.
    pub fn handle_signal(
        &mut self,
        room: &str,
        from: &str,
        msg: SignalIn<'_>,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.tick(now);
        let pid = self
            .pid(room, from)
            .ok_or_else(|| SfuError::UnknownParticipant {
                room: room.into(),
                peer: from.into(),
            })?;
        match msg {
            SignalIn::Offer(p) => self.on_offer(pid, p),
            SignalIn::Answer(p) => {
                self.on_answer(pid, p);
                // Changes that waited for this answer are offered now.
                self.offers_due = true;
            }
            SignalIn::Candidate(p) => self.on_candidate(pid, p),
            SignalIn::Message(p) => self.on_message(pid, p),
        }
        self.mark(pid);
        self.drain();
        Ok(())
    }

    /// A datagram that arrived on the SFU socket from `source`; `destination` is the
    /// local address it arrived on (a configured candidate; with a wildcard bind pass the
    /// candidate's address; any address with a candidate's port is taken as that
    /// candidate). False if no participant of this SFU owns it (counted).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        self.handle_packet(now, Transport::Udp, source, destination, bytes)
    }

    /// One RFC 4571 frame (without its 2-byte length) read from the TCP connection of
    /// remote address `source`, accepted on `destination` (one of
    /// `SfuConfig::tcp_candidates`, matched like [`Sfu::handle_datagram`]'s). The driver
    /// keeps one connection per remote address: replies come out as
    /// [`SfuOutput::Transmit`] with [`Transport::Tcp`] and that address. False if no
    /// participant of this SFU owns it (counted).
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        frame: &[u8],
    ) -> bool {
        self.handle_packet(now, Transport::Tcp, source, destination, frame)
    }

    /// The TCP connection of remote address `source` closed: its address routes nothing
    /// any more (a new connection from the same address must pass STUN again). The
    /// participant stays until ICE or the idle timeout says otherwise (it may use UDP).
    pub fn tcp_closed(&mut self, source: SocketAddr) {
        let key = (Transport::Tcp, source);
        if let Some(pid) = self.by_addr.remove(&key) {
            if let Some(p) = self.parts[pid].as_mut() {
                p.addrs.retain(|a| *a != key);
            }
        }
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        self.tick(now);
        let pid = match stun_ufrag(bytes) {
            Some((ufrag, msg)) => {
                let pid = self.by_ufrag.get(ufrag).copied();
                let genuine = pid
                    .and_then(|pid| self.parts[pid].as_ref())
                    .is_some_and(|p| msg.verify_integrity(p.ice_pass.as_bytes()));
                if let (Some(pid), true) = (pid, genuine) {
                    self.learn_addr(pid, transport, source);
                }
                pid
            }
            None => self.by_addr.get(&(transport, source)).copied(),
        };
        let Some(pid) = pid else {
            self.counters.unknown_datagrams += 1;
            return false;
        };
        let destination = self.local_addr(transport, destination);
        let Ok(contents) = bytes.try_into() else {
            self.counters.unknown_datagrams += 1;
            return false;
        };
        let proto = match transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let input = Input::Receive(
            self.now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let Some(p) = self.parts[pid].as_mut() else {
            return false;
        };
        p.last_seen = self.now;
        if let Err(e) = p.rtc.handle_input(input) {
            tracing::debug!(peer = %p.peer, "sfu: input failed: {e}");
            self.drop_participant(pid, Some(GoneReason::Error));
        } else {
            self.mark(pid);
        }
        // What it forwarded waits in the subscribers' streams for `flush`.
        self.drain_inputs();
        true
    }

    /// Time passed: str0m timers, idle participants, deferred keyframe requests, stale
    /// offers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        // str0m deadlines, from the heap (stale entries are skipped).
        while let Some(&Reverse((t, pid))) = self.timers.peek() {
            if t > self.now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.parts[pid].as_mut() else {
                continue;
            };
            if p.rtc_timeout != Some(t) {
                continue;
            }
            p.rtc_timeout = None;
            if let Err(e) = p.rtc.handle_input(Input::Timeout(self.now)) {
                tracing::debug!(peer = %p.peer, "sfu: timeout failed: {e}");
                self.drop_participant(pid, Some(GoneReason::Error));
                continue;
            }
            self.mark(pid);
        }
        if self.now >= self.next_housekeeping {
            self.next_housekeeping = self.now + HOUSEKEEPING_INTERVAL;
            self.housekeeping();
        }
        self.drain();
    }

    /// The SFU's own timers, on a coarse tick so that no per-participant deadline is
    /// scanned per event: idle participants, deferred keyframe requests, speaker
    /// decisions, unanswered offers, the periodic layer choice.
    fn housekeeping(&mut self) {
        let idle = self.cfg.idle_timeout;
        for pid in 0..self.parts.len() {
            let silent = self.parts[pid]
                .as_ref()
                .is_some_and(|p| self.now.saturating_duration_since(p.last_seen) >= idle);
            if silent {
                self.drop_participant(pid, Some(GoneReason::Idle));
            }
        }
        self.keyframe_timers();
        self.speaker_timers();
        self.offer_timers();
        if self.now >= self.next_allocation {
            self.next_allocation = self.now + ALLOCATION_INTERVAL;
            for pid in 0..self.parts.len() {
                let has_video = self.parts[pid].as_ref().is_some_and(|p| {
                    p.slots
                        .iter()
                        .any(|s| s.track.is_some() && s.kind == str0m::media::MediaKind::Video)
                });
                if has_video {
                    self.choose_layers(pid);
                }
            }
        }
        // Stale heap entries of far deadlines are dropped once they outnumber the live.
        let live = self.parts.iter().flatten().count();
        if self.timers.len() > 2 * live + 64 {
            self.timers = self
                .parts
                .iter()
                .enumerate()
                .filter_map(|(pid, p)| Some(Reverse((p.as_ref()?.rtc_timeout?, pid))))
                .collect();
        }
    }

    /// Next output: datagrams, signaling, participants gone, rooms empty.
    pub fn poll_output(&mut self) -> Option<SfuOutput> {
        self.out.pop_front()
    }

    /// When [`Sfu::handle_timeout`] is due next (None: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Packets written since the last flush are due now (a driver that does not call
        // `flush` still gets them out, one timeout later).
        let written = (!self.due.is_empty()).then_some(self.now);
        let rtc = self.timers.peek().map(|Reverse((t, _))| *t);
        let own = (!self.rooms.is_empty()).then_some(self.next_housekeeping);
        [written, rtc, own].into_iter().flatten().min()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SfuStats {
        let c = &self.counters;
        let parts = self.parts.iter().flatten();
        SfuStats {
            rooms: self.rooms.len(),
            participants: self.parts.iter().flatten().count(),
            tracks: self.parts.iter().flatten().map(|p| p.published.len()).sum(),
            forwarded_packets: c.forwarded_packets,
            forwarded_bytes: c.forwarded_bytes,
            dropped_packets: c.dropped_packets,
            layer_switches: c.layer_switches,
            plis_sent: c.plis_sent,
            data_relayed: c.data_relayed,
            data_dropped: c.data_dropped,
            unknown_datagrams: c.unknown_datagrams,
            bwe_estimates: parts.filter_map(|p| p.bwe).collect(),
        }
    }

    /// The local ufrag of a participant (tests, driver diagnostics).
    pub fn local_ufrag(&self, room: &str, peer: &str) -> Option<&str> {
        let pid = self.pid(room, peer)?;
        self.parts[pid].as_ref().map(|p| p.ufrag.as_str())
    }

    // ---- internals ----

    pub(crate) fn tick(&mut self, now: Instant) {
        // str0m wants time that never goes backwards.
        if now > self.now {
            self.now = now;
        }
    }

    pub(crate) fn pid(&self, room: &str, peer: &str) -> Option<Pid> {
        self.rooms.get(room)?.by_peer.get(peer).copied()
    }

    pub(crate) fn on_event(&mut self, pid: Pid, e: Event) {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.drop_participant(pid, Some(GoneReason::IceTimeout));
            }
            Event::Closed => self.drop_participant(pid, Some(GoneReason::Closed)),
            Event::ChannelOpen(id, _) => {
                if let Some(p) = self.parts[pid].as_mut() {
                    p.channel = Some(id);
                }
            }
            Event::ChannelData(d) => self.on_channel_data(pid, d),
            Event::RtpPacket(pkt) => self.on_rtp(pid, pkt),
            Event::KeyframeRequest(req) => self.on_keyframe_request(pid, req),
            Event::EgressBitrateEstimate(bwe) => self.on_bwe(pid, bwe),
            _ => {}
        }
    }

    /// Send a signaling relay to a participant.
    pub(crate) fn signal(&mut self, pid: Pid, kind: SignalKind, payload: String) {
        self.signal_to(pid, kind, payload, false);
    }

    /// `to_fixed`: also to a one-shot participant (its answer, or the error that is its
    /// answer: the WHIP/WHEP request then fails with the reason instead of a timeout).
    fn signal_to(&mut self, pid: Pid, kind: SignalKind, payload: String, to_fixed: bool) {
        if let Some(p) = self.parts[pid].as_ref() {
            if p.fixed && kind != SignalKind::Answer && !to_fixed {
                // Nobody reads messages (or offers) on a one-shot exchange.
                return;
            }
            self.out.push_back(SfuOutput::Signal {
                room: p.room.clone(),
                to: p.peer.clone(),
                kind,
                payload,
            });
        }
    }

    pub(crate) fn send_error(&mut self, pid: Pid, code: ErrorCode, reason: &str) {
        let msg = SfuMessage::Error {
            code,
            reason: reason.into(),
        };
        self.signal_to(pid, SignalKind::Message, msg.render(), true);
    }

    /// Remove a participant; `reason` Some = tell the driver it is gone.
    pub(crate) fn drop_participant(&mut self, pid: Pid, reason: Option<GoneReason>) {
        let Some(mut p) = self.parts[pid].take() else {
            return;
        };
        self.free.push(pid);
        p.rtc.disconnect();
        self.by_ufrag.remove(&p.ufrag);
        for a in &p.addrs {
            if self.by_addr.get(a) == Some(&pid) {
                self.by_addr.remove(a);
            }
        }
        // Its subscriptions: off every publisher's list.
        for s in &p.slots {
            if let Some((pub_pid, mid)) = s.track {
                self.unlink(pub_pid, mid, pid);
            }
        }
        // Its tracks: off every subscriber.
        for t in &p.published {
            for &(sub, slot) in &t.subs {
                self.detach_slot(sub, slot);
            }
        }
        let mut empty = false;
        let mut silence = Vec::new();
        if let Some(r) = self.rooms.get_mut(&p.room) {
            r.members.retain(|m| *m != pid);
            r.by_peer.remove(&p.peer);
            empty = r.members.is_empty();
            // A link's tracks spoke for their origins.
            let mut removed = r.speaker.remove(&p.peer);
            for t in &p.published {
                if let Some(o) = &t.origin {
                    removed |= r.speaker.remove(o);
                }
            }
            if removed {
                silence = r.members.clone();
            }
        }
        for m in silence {
            self.signal(m, SignalKind::Message, SfuMessage::Speaker(None).render());
        }
        if let Some(reason) = reason {
            self.out.push_back(SfuOutput::ParticipantGone {
                room: p.room.clone(),
                peer: p.peer.clone(),
                reason,
            });
        }
        if empty {
            self.rooms.remove(&p.room);
            self.out.push_back(SfuOutput::RoomEmpty { room: p.room });
        }
    }

    /// Forget that `sub` receives `pub_pid`'s track `mid`.
    pub(crate) fn unlink(&mut self, pub_pid: Pid, mid: str0m::media::Mid, sub: Pid) {
        if let Some(pp) = self.parts[pub_pid].as_mut() {
            if let Some(t) = pp.published.iter_mut().find(|t| t.mid == mid) {
                t.subs.retain(|(s, _)| *s != sub);
            }
        }
    }
}

/// How often the SFU's own timers run (idle sweep, deferred PLIs, speaker, offers).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// How often every subscriber's layers are chosen again without a new estimate.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(500);

/// How long the SFU waits for the answer to its offer before offering again.
pub(crate) const OFFER_TIMEOUT: Duration = Duration::from_secs(10);
