//! What the driver decides for one worker's [`Sfu`](crate::Sfu): the ICE ufrag prefix that
//! routes STUN to this worker, the host candidates announced in every answer and offer,
//! the limits that keep one room (or one slow subscriber) from taking the worker down, and
//! the idle timeout after which a silent participant is gone.

use std::net::SocketAddr;
use std::time::Duration;

/// Limits per room and per subscriber. Every default is documented on its field; `0` is
/// not "unlimited" but "none allowed" (a config error is better than a surprise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Participants of one room on this SFU. Default 100 (the hub's `--sfu-room-capacity`).
    pub participants_per_room: usize,
    /// Participants of one room allowed to publish at once. Default 50.
    pub publishers_per_room: usize,
    /// Published tracks (m-lines that send) in one room. Default 150.
    pub tracks_per_room: usize,
    /// Tracks one participant may publish. Default 4 (camera, microphone, screen, screen audio).
    pub tracks_per_publisher: usize,
    /// Subscribers one publisher's tracks reach. Default 100.
    pub subscribers_per_publisher: usize,
    /// RTP packets queued in str0m for one outgoing stream before forwarded packets are
    /// dropped (the subscriber cannot keep up). Default 512 (~1.5 s of a 1.5 Mbit/s layer):
    /// the memory bound; [`Limits::queue_time`] is the latency bound.
    pub queue_packets: usize,
    /// How long the oldest packet of one outgoing stream may wait in str0m's queue before
    /// forwarded packets to that stream are dropped. Default 400 ms: media later than that
    /// is worth less than the keyframe the loss brings (the subscriber NACKs, then asks for
    /// one), and a queue must not grow to seconds when the estimate dips below the stream.
    pub queue_time: Duration,
    /// Bytes queued for one participant's data channel before relayed messages to it
    /// are dropped. Default 256 KiB.
    pub data_queue_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            participants_per_room: 100,
            publishers_per_room: 50,
            tracks_per_room: 150,
            tracks_per_publisher: 4,
            subscribers_per_publisher: 100,
            queue_packets: 512,
            queue_time: Duration::from_millis(400),
            data_queue_bytes: 256 * 1024,
        }
    }
}

/// One worker's SFU settings.
#[derive(Clone, Debug)]
pub struct SfuConfig {
    /// Start of every local ICE ufrag this SFU generates (`<prefix><random>`): the driver
    /// routes a STUN Binding request to the worker whose prefix its USERNAME starts with.
    /// ICE ufrag characters only (`A-Za-z0-9+/`), at most 16 bytes.
    pub ufrag_prefix: String,
    /// Host candidates (UDP) announced in every SDP. At least one.
    pub candidates: Vec<SocketAddr>,
    /// Passive TCP host candidates (RFC 6544, `tcptype passive`) announced next to the
    /// UDP ones, for browsers that cannot send UDP to the SFU; their frames come in by
    /// [`Sfu::handle_tcp_frame`](crate::Sfu::handle_tcp_frame). Default none. Announced
    /// with a lower priority than UDP (str0m's type preference), so UDP wins when both work.
    pub tcp_candidates: Vec<SocketAddr>,
    /// Room and queue limits.
    pub limits: Limits,
    /// A participant with no datagram for this long is gone. Default 15 s; at most 30 s.
    pub idle_timeout: Duration,
    /// Bandwidth estimate a new participant starts with (bit/s). Default 1 000 000.
    pub initial_bitrate: u64,
    /// Upper end the bandwidth estimator probes for (bit/s). Default 3 000 000.
    pub max_bitrate: u64,
    /// Always pace forwarded video at the subscriber's bandwidth estimate (str0m's pacer,
    /// 1.1x the estimate). Default false: video is paced only while the estimate leaves
    /// under a quarter of headroom above what the subscriber's layers send or while one
    /// of its videos climbs to a higher layer (str0m's probes need the pacer), and otherwise
    /// leaves as it arrives, as mediasoup, LiveKit and Janus forward it (the publisher's
    /// encoder paces its frames already; pacing them again at a loopback or LAN estimate
    /// holds a 37 KB keyframe back ~160 ms at 1.9 Mbit/s). The estimate (TWCC, measured on
    /// every packet either way) still chooses the simulcast layer, and
    /// [`Limits::queue_time`] bounds what waits.
    pub pace_video: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            ufrag_prefix: "sfu".into(),
            candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(15),
            initial_bitrate: 1_000_000,
            max_bitrate: 3_000_000,
            pace_video: false,
        }
    }
}

/// The longest `idle_timeout` accepted (issue 11: gone within 30 s).
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl SfuConfig {
    /// A clear reason when the config cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.ufrag_prefix;
        if p.len() > 16
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return Err(format!(
                "ufrag prefix {p:?}: at most 16 characters of A-Z a-z 0-9 + /"
            ));
        }
        if self.candidates.is_empty() {
            return Err("no host candidate: the SFU needs at least one address to announce".into());
        }
        if let Some(c) = self
            .candidates
            .iter()
            .chain(&self.tcp_candidates)
            .find(|c| c.ip().is_unspecified() || c.port() == 0)
        {
            return Err(format!(
                "candidate {c}: needs a concrete IP address and port"
            ));
        }
        if self.idle_timeout.is_zero() || self.idle_timeout > MAX_IDLE_TIMEOUT {
            return Err(format!(
                "idle timeout {:?}: must be between 0 and {MAX_IDLE_TIMEOUT:?}",
                self.idle_timeout
            ));
        }
        let l = &self.limits;
        if l.participants_per_room == 0 || l.queue_packets == 0 {
            return Err(
                "limits: participants_per_room and queue_packets must be at least 1".into(),
            );
        }
        if l.queue_time.is_zero() {
            return Err("limits: queue_time must be above 0".into());
        }
        if self.initial_bitrate == 0 || self.max_bitrate < self.initial_bitrate {
            return Err("bitrates: 0 < initial_bitrate <= max_bitrate".into());
        }
        Ok(())
    }
}

/// What a participant's room token allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grants {
    /// May send media (its sending m-lines are accepted).
    pub publish: bool,
    /// May receive the room's media (it gets the remote tracks).
    pub subscribe: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            publish: true,
            subscribe: true,
        }
    }
}
