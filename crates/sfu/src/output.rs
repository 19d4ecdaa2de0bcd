//! The types at the SFU's edge: what the driver feeds in ([`SignalIn`]), what comes out
//! ([`SfuOutput`]), errors and counters. Kept apart from the state machine so the driver
//! helper can read the whole contract in one file.

use std::net::SocketAddr;
use std::sync::Arc;

/// A signaling relay from a browser to the SFU participant of its room. Each payload is
/// the raw JSON of the relayed field exactly as the hub hands it over: for `Offer` and
/// `Answer` the `sdp` value (a JSON string; an object `{"type":..,"sdp":..}` is accepted
/// too), for `Candidate` the `candidate` value, for `Message` the `data` value.
#[derive(Clone, Copy, Debug)]
pub enum SignalIn<'a> {
    /// `offer`: the browser adds or removes its own tracks.
    Offer(&'a str),
    /// `answer`: to the SFU's last offer.
    Answer(&'a str),
    /// `candidate`: a trickled browser candidate (ICE-lite needs none; added if valid).
    Candidate(&'a str),
    /// `message`: an `{"sfu":...}` payload (publish, view).
    Message(&'a str),
}

/// Which relay a [`SfuOutput::Signal`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// `offer`; payload is the SDP as a JSON string.
    Offer,
    /// `answer`; payload is the SDP as a JSON string.
    Answer,
    /// `message`; payload is the `data` JSON object.
    Message,
}

/// The transport a packet came in on or leaves by: a UDP datagram on the SFU port, or
/// one RFC 4571 frame of a TCP connection to the SFU's passive TCP candidate (RFC 6544),
/// the way in for browsers whose UDP is blocked. For TCP the remote address names the
/// connection (the driver keeps one connection per remote address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A datagram.
    Udp,
    /// A frame of the TCP connection from/to the remote address.
    Tcp,
}

/// Why a participant is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneReason {
    /// ICE lost the connection (no consent checks).
    IceTimeout,
    /// The browser closed DTLS/SCTP.
    Closed,
    /// No datagram for `SfuConfig::idle_timeout` (never connected, or vanished).
    Idle,
    /// str0m failed on this participant's input (protocol error).
    Error,
    /// The browser said it uses another SFU of the room (`{"sfu":"leave"}`).
    Left,
}

/// Output of [`Sfu::poll_output`](crate::Sfu::poll_output).
#[derive(Debug)]
pub enum SfuOutput {
    /// A datagram to send from the SFU socket whose local address is `source` (one of the
    /// configured candidates), or with [`Transport::Tcp`] one frame to write (length
    /// prefixed, RFC 4571) on the TCP connection from `destination`.
    Transmit {
        /// UDP, or the TCP connection of `destination`.
        transport: Transport,
        /// Local address (a configured candidate) to send from.
        source: SocketAddr,
        /// Remote address.
        destination: SocketAddr,
        /// The datagram.
        contents: Vec<u8>,
    },
    /// A signaling relay to send as the room's SFU participant to peer `to`.
    Signal {
        /// Room name.
        room: Arc<str>,
        /// Peer id of the browser.
        to: Arc<str>,
        /// Offer, answer or message.
        kind: SignalKind,
        /// Raw JSON of the relayed field (see [`SignalKind`]).
        payload: String,
    },
    /// The participant is gone from the SFU (its tracks left every subscriber). The hub
    /// membership stays until the browser leaves.
    ParticipantGone {
        /// Room name.
        room: Arc<str>,
        /// Peer id.
        peer: Arc<str>,
        /// Why.
        reason: GoneReason,
    },
    /// A room of this worker has no participant left.
    RoomEmpty {
        /// Room name.
        room: Arc<str>,
    },
    /// A packet for a participant whose media is in-process
    /// ([`Sfu::set_local_media`](crate::Sfu::set_local_media)): forwarded as it would
    /// have been written to its PC, without SRTP or a socket.
    LocalRtp {
        /// Room name.
        room: Arc<str>,
        /// Peer id of the local participant.
        peer: Arc<str>,
        /// The packet, on the participant's outgoing m-line.
        rtp: LocalRtp,
    },
}

/// Errors of the API calls (bad SDP is not one: it is answered with an `error` message
/// to that participant).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SfuError {
    /// The config cannot work.
    #[error("sfu config: {0}")]
    Config(String),
    /// No such participant on this worker.
    #[error("no participant {peer:?} in room {room:?} on this SFU worker")]
    UnknownParticipant {
        /// Room name.
        room: String,
        /// Peer id.
        peer: String,
    },
    /// `add_participant` for a peer already in the room.
    #[error("participant {peer:?} is already in room {room:?}")]
    AlreadyJoined {
        /// Room name.
        room: String,
        /// Peer id.
        peer: String,
    },
    /// The room has `Limits::participants_per_room` participants.
    #[error("room {room:?} is full ({limit} participants)")]
    RoomFull {
        /// Room name.
        room: String,
        /// The limit.
        limit: usize,
    },
}

/// Counters for metrics (totals since the SFU started, gauges now).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SfuStats {
    /// Rooms with at least one participant (gauge).
    pub rooms: usize,
    /// Participants (gauge).
    pub participants: usize,
    /// Published tracks (gauge).
    pub tracks: usize,
    /// RTP packets handed to a subscriber's stream.
    pub forwarded_packets: u64,
    /// Payload bytes of those packets.
    pub forwarded_bytes: u64,
    /// Packets not forwarded because the subscriber's queue was full.
    pub dropped_packets: u64,
    /// Simulcast layer switches.
    pub layer_switches: u64,
    /// PLIs sent to publishers (after coalescing).
    pub plis_sent: u64,
    /// Data-channel messages relayed (per receiver).
    pub data_relayed: u64,
    /// Data-channel messages dropped (not JSON, no `data`, receiver's queue full).
    pub data_dropped: u64,
    /// Datagrams (and TCP frames) no participant of this SFU owned.
    pub unknown_datagrams: u64,
    /// The current egress bandwidth estimate of each connected participant (bit/s).
    pub bwe_estimates: Vec<u64>,
}

/// One RTP packet of a participant with in-process media, either way: `mid` is the
/// participant's m-line (the track it publishes, or the slot it receives on), `pt` a
/// payload type of that m-line, `seq` the extended sequence number.
#[derive(Clone, Debug)]
pub struct LocalRtp {
    /// The participant's m-line.
    pub mid: str0m::media::Mid,
    /// Payload type (as negotiated on that m-line).
    pub pt: str0m::media::Pt,
    /// Extended sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// RFC 6464 level (-dBov, as str0m carries it).
    pub audio_level: Option<i8>,
    /// RFC 6464 voice activity.
    pub voice_activity: Option<bool>,
    /// The payload (shared, never copied per subscriber).
    pub payload: Arc<[u8]>,
}
