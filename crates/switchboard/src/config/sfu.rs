//! `[sfu]`: the selective forwarding unit: when rooms turn SFU (`--sfu-threshold`, which
//! the signaling hub applies), how many clients an SFU room holds, and where the SFU's
//! media port listens and what it announces. `--sfu-threshold off` turns the SFU off
//! altogether: no port is bound and every room is a mesh.

use crate::error::ConfigError;
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

/// `--sfu-threshold`: a number of members, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold(pub Option<usize>);

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Threshold(None)),
            s => s
                .parse()
                .map(|n| Threshold(Some(n)))
                .map_err(|_| format!("`{s}` is not a number of members or `off`")),
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

#[derive(Args, Debug, Clone)]
#[group(id = "sfu")]
pub struct SfuSettings {
    /// A room turns SFU (media through the server) when its N-th client joins; 0 = every
    /// room is SFU, `off` = mesh only and no SFU runs. A room's creator may ask for
    /// `topology` `sfu` or `mesh` in its join.
    #[arg(
        long,
        value_name = "N|off",
        env = "SWITCHBOARD_SFU_THRESHOLD",
        default_value = "5"
    )]
    pub sfu_threshold: Threshold,

    /// Clients per room in SFU mode (`--room-capacity` is for mesh rooms).
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SFU_ROOM_CAPACITY",
        default_value_t = 100
    )]
    pub sfu_room_capacity: usize,

    /// UDP port of the SFU's media (every participant on this one port; 0 = any free port).
    #[arg(
        long,
        value_name = "PORT",
        env = "SWITCHBOARD_SFU_PORT",
        default_value_t = 3480
    )]
    pub sfu_port: u16,

    /// IP the SFU's port binds to. [default: the first --listening-ip]
    #[arg(long, value_name = "IP", env = "SWITCHBOARD_SFU_BIND")]
    pub sfu_bind: Option<IpAddr>,

    /// ICE host candidate the SFU announces, `IP` or `IP:PORT` (repeatable; the port
    /// defaults to the SFU's). [default: the bind IP; for 0.0.0.0 or ::, the address of
    /// the interface with the default route, else loopback]
    #[arg(
        long,
        value_name = "IP[:PORT]",
        env = "SWITCHBOARD_SFU_CANDIDATE",
        value_delimiter = ','
    )]
    pub sfu_candidate: Vec<String>,

    /// Also take ICE over TCP on the SFU's port number (a passive TCP candidate, RFC 6544,
    /// RFC 4571 framing, announced at every --sfu-candidate), for browsers whose UDP is
    /// blocked but that reach the server by TCP. `false`: UDP only.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_SFU_TCP", num_args = 0..=1,
          default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub sfu_tcp: bool,

    /// SFU worker threads; each room lives on one. [default: number of CPUs]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_SFU_THREADS")]
    pub sfu_threads: Option<usize>,

    /// Seconds without a packet after which an SFU participant is gone (at most 30).
    #[arg(
        long,
        value_name = "SECS",
        env = "SWITCHBOARD_SFU_IDLE_TIMEOUT",
        default_value_t = 30
    )]
    pub sfu_idle_timeout: u64,

    /// Participants of one SFU room publishing at once; the next one's offer to send is
    /// refused (it may still watch).
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SFU_MAX_PUBLISHERS",
        default_value_t = 50
    )]
    pub sfu_max_publishers: usize,

    /// Tracks published in one SFU room (every camera, microphone and screen counts one).
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SFU_MAX_ROOM_TRACKS",
        default_value_t = 150
    )]
    pub sfu_max_room_tracks: usize,

    /// Tracks one participant may publish (camera, microphone, screen, screen audio).
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SFU_MAX_TRACKS_PER_PUBLISHER",
        default_value_t = 4
    )]
    pub sfu_max_tracks_per_publisher: usize,

    /// Subscribers one publisher's tracks reach; later ones do not get its tracks.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SFU_MAX_SUBSCRIBERS",
        default_value_t = 100
    )]
    pub sfu_max_subscribers: usize,

    /// Milliseconds a packet may wait in a subscriber's send queue before what would queue
    /// behind it is dropped (a subscriber that cannot keep up loses packets, not memory).
    #[arg(
        long,
        value_name = "MS",
        env = "SWITCHBOARD_SFU_QUEUE_MS",
        default_value_t = 400
    )]
    pub sfu_queue_ms: u64,
}

/// Where and how the SFU runs (absent with `--sfu-threshold off`).
#[derive(Debug, Clone)]
pub struct SfuRun {
    pub bind: SocketAddr,
    /// Announced host candidates; `port` 0 in one of them means "the bound port" (for
    /// `--sfu-port 0`), filled in at start.
    pub candidates: Vec<SocketAddr>,
    pub threads: usize,
    pub idle_timeout: Duration,
    /// Per-room and per-participant limits (`participants_per_room` is filled in from the
    /// room capacity when the SFU starts).
    pub limits: switchboard_sfu::Limits,
    /// Also listen on TCP (same IP and port number) and announce the candidates as
    /// passive TCP ones too (`--sfu-tcp`).
    pub tcp: bool,
}

/// The validated `[sfu]` section.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// For the hub: `HubConfig::sfu_threshold`.
    pub threshold: Option<usize>,
    /// For the hub: `HubConfig::sfu_room_capacity`.
    pub room_capacity: usize,
    pub run: Option<SfuRun>,
}

impl SfuSettings {
    /// `default_ip` is where the SFU binds without `--sfu-bind` (the first TURN
    /// listening IP).
    pub fn validate(&self, default_ip: IpAddr) -> Result<SfuConfig, ConfigError> {
        if let Some(n) = self.sfu_threshold.0 {
            if n > 1000 {
                return Err(ConfigError::new(
                    "sfu-threshold",
                    format!("{n} is more than 1000 (use `off` for mesh only)"),
                ));
            }
        }
        let cap = self.sfu_room_capacity;
        if !(1..=10_000).contains(&cap) {
            return Err(ConfigError::new(
                "sfu-room-capacity",
                format!("{cap} is not between 1 and 10000"),
            ));
        }
        let threads = self.sfu_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        if !(1..=256).contains(&threads) {
            return Err(ConfigError::new(
                "sfu-threads",
                format!("{threads} is not between 1 and 256"),
            ));
        }
        let idle = self.sfu_idle_timeout;
        if !(5..=30).contains(&idle) {
            return Err(ConfigError::new(
                "sfu-idle-timeout",
                format!("{idle} s is not between 5 and 30"),
            ));
        }
        let limits = self.limits()?;
        let bind = SocketAddr::new(self.sfu_bind.unwrap_or(default_ip), self.sfu_port);
        let mut candidates = Vec::with_capacity(self.sfu_candidate.len());
        for c in &self.sfu_candidate {
            candidates.push(parse_candidate(c, self.sfu_port)?);
        }
        if candidates.is_empty() {
            candidates.push(SocketAddr::new(default_candidate(bind.ip()), self.sfu_port));
        }
        Ok(SfuConfig {
            threshold: self.sfu_threshold.0,
            room_capacity: cap,
            run: self.sfu_threshold.0.map(|_| SfuRun {
                bind,
                candidates,
                threads,
                idle_timeout: Duration::from_secs(idle),
                limits,
                tcp: self.sfu_tcp,
            }),
        })
    }
}

impl SfuSettings {
    fn limits(&self) -> Result<switchboard_sfu::Limits, ConfigError> {
        let range = |option: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(
                    option,
                    format!("{v} is not between {lo} and {hi}"),
                ))
            }
        };
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        range("sfu-max-publishers", n(self.sfu_max_publishers), 1, 10_000)?;
        range(
            "sfu-max-room-tracks",
            n(self.sfu_max_room_tracks),
            1,
            100_000,
        )?;
        range(
            "sfu-max-tracks-per-publisher",
            n(self.sfu_max_tracks_per_publisher),
            1,
            16,
        )?;
        range(
            "sfu-max-subscribers",
            n(self.sfu_max_subscribers),
            1,
            10_000,
        )?;
        range("sfu-queue-ms", self.sfu_queue_ms, 50, 5_000)?;
        Ok(switchboard_sfu::Limits {
            publishers_per_room: self.sfu_max_publishers,
            tracks_per_room: self.sfu_max_room_tracks,
            tracks_per_publisher: self.sfu_max_tracks_per_publisher,
            subscribers_per_publisher: self.sfu_max_subscribers,
            queue_time: Duration::from_millis(self.sfu_queue_ms),
            ..switchboard_sfu::Limits::default()
        })
    }
}

/// `IP` or `IP:PORT` (`[IPv6]:PORT`), a specific unicast address.
fn parse_candidate(s: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    let addr = s
        .parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, port)))
        .map_err(|_| {
            ConfigError::new(
                "sfu-candidate",
                format!("`{s}` is not IP or IP:PORT ([IPv6]:PORT)"),
            )
        })?;
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(ConfigError::new(
            "sfu-candidate",
            format!("`{s}` is not an address a browser can send to"),
        ));
    }
    Ok(addr)
}

/// The candidate IP for a bind IP: itself, or for a wildcard bind the source address
/// the kernel picks toward the Internet (a connected UDP socket sends nothing), or
/// loopback when there is no route.
fn default_candidate(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let (any, probe): (SocketAddr, SocketAddr) = if bind.is_ipv4() {
        (([0, 0, 0, 0], 0).into(), ([192, 0, 2, 1], 9).into())
    } else {
        (
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            ("2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .map_or(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 9)), |ip| {
                    SocketAddr::from((ip, 9))
                })),
        )
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(probe).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(if bind.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sfu: SfuSettings,
    }

    fn parse(args: &[&str]) -> Result<SfuConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.sfu
            .validate(IpAddr::from([127, 0, 0, 1]))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_run_the_sfu_on_3480_turning_rooms_at_five() {
        let c = parse(&[]).unwrap();
        assert_eq!((c.threshold, c.room_capacity), (Some(5), 100));
        let run = c.run.unwrap();
        assert_eq!(run.bind, "127.0.0.1:3480".parse().unwrap());
        assert_eq!(run.candidates, ["127.0.0.1:3480".parse().unwrap()]);
        assert!(run.threads >= 1);
        assert_eq!(run.idle_timeout, Duration::from_secs(30));
        assert!(run.tcp, "ICE-TCP is on by default");
        let l = &run.limits;
        assert_eq!(
            (
                l.publishers_per_room,
                l.tracks_per_room,
                l.tracks_per_publisher,
                l.subscribers_per_publisher,
                l.queue_time
            ),
            (50, 150, 4, 100, Duration::from_millis(400))
        );
        let l = parse(&[
            "--sfu-max-publishers",
            "3",
            "--sfu-max-room-tracks",
            "9",
            "--sfu-max-tracks-per-publisher",
            "2",
            "--sfu-max-subscribers",
            "7",
            "--sfu-queue-ms",
            "250",
        ])
        .unwrap()
        .run
        .unwrap()
        .limits;
        assert_eq!(
            (
                l.publishers_per_room,
                l.tracks_per_room,
                l.tracks_per_publisher,
                l.subscribers_per_publisher,
                l.queue_time
            ),
            (3, 9, 2, 7, Duration::from_millis(250))
        );
        assert!(!parse(&["--sfu-tcp", "false"]).unwrap().run.unwrap().tcp);
        assert!(parse(&["--sfu-tcp"]).unwrap().run.unwrap().tcp);
    }

    #[test]
    fn off_runs_no_sfu() {
        let c = parse(&["--sfu-threshold", "off"]).unwrap();
        assert_eq!(c.threshold, None);
        assert!(c.run.is_none());
        assert_eq!(parse(&["--sfu-threshold", "0"]).unwrap().threshold, Some(0));
    }

    #[test]
    fn candidates_take_the_port_unless_given() {
        let c = parse(&[
            "--sfu-port",
            "4000",
            "--sfu-bind",
            "0.0.0.0",
            "--sfu-candidate",
            "203.0.113.7",
            "--sfu-candidate",
            "[2001:db8::5]:443",
        ])
        .unwrap();
        let run = c.run.unwrap();
        assert_eq!(run.bind, "0.0.0.0:4000".parse().unwrap());
        assert_eq!(
            run.candidates,
            [
                "203.0.113.7:4000".parse().unwrap(),
                "[2001:db8::5]:443".parse().unwrap()
            ]
        );
        // A wildcard bind without candidates announces a real address, never 0.0.0.0.
        let run = parse(&["--sfu-bind", "0.0.0.0"]).unwrap().run.unwrap();
        assert!(!run.candidates[0].ip().is_unspecified());
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, option) in [
            (&["--sfu-threshold", "many"][..], "sfu-threshold"),
            (&["--sfu-threshold", "1001"], "sfu-threshold"),
            (&["--sfu-room-capacity", "0"], "sfu-room-capacity"),
            (&["--sfu-threads", "0"], "sfu-threads"),
            (&["--sfu-idle-timeout", "60"], "sfu-idle-timeout"),
            (&["--sfu-candidate", "0.0.0.0"], "sfu-candidate"),
            (&["--sfu-candidate", "host.example"], "sfu-candidate"),
            (&["--sfu-bind", "nowhere"], "sfu-bind"),
            (&["--sfu-max-publishers", "0"], "sfu-max-publishers"),
            (&["--sfu-max-room-tracks", "0"], "sfu-max-room-tracks"),
            (
                &["--sfu-max-tracks-per-publisher", "17"],
                "sfu-max-tracks-per-publisher",
            ),
            (&["--sfu-max-subscribers", "0"], "sfu-max-subscribers"),
            (&["--sfu-queue-ms", "10"], "sfu-queue-ms"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(option), "{args:?}: {e}");
        }
    }
}
