//! Command-line interface and validation of its values.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use switchboard_client::Credentials;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard-load",
    version,
    about = "STUN/TURN and WebSocket signaling load generator for lab benchmarks (works against any server)",
    after_help = "Every mode ends with one line `RESULT {json}` for scripts."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Flood STUN Binding requests and measure answers and RTT.
    Stun(StunArgs),
    /// Relay paced UDP traffic through N TURN allocations to an echo peer.
    Relay(RelayArgs),
    /// Allocation churn: Allocate + release (Refresh lifetime 0) in a loop.
    Churn(ChurnArgs),
    /// Raw batched UDP forwarder (TURN's data path without TURN): the physical limit.
    Forward(ForwardArgs),
    /// WebSocket signaling load: N clients in rooms of two relaying messages to their
    /// partner (Switchboard's /ws or a PeerJS server): connections held and server RSS,
    /// paced relay latency, closed-loop saturation.
    Signal(SignalArgs),
    /// Mixed churn for hours (allocations created, refreshed, released and left to
    /// expire; ChannelData; signaling sessions joining, resuming and leaving; ICE
    /// requests), against Switchboard, for leak hunting (bench/soak.sh).
    Soak(SoakArgs),
    /// Joins per second through one node into rooms created through another (or the
    /// same) node of a cluster.
    Joins(JoinsArgs),
    /// Kill -9 the node that owns a set of rooms and time every client's resume through
    /// the surviving node (clients resume on close, as the SDK does).
    Failover(FailoverArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Target {
    /// STUN/TURN server address (UDP), e.g. 127.0.0.1:3478.
    #[arg(long, default_value = "127.0.0.1:3478")]
    pub server: String,
    /// Allow targets outside loopback/private/documentation ranges (never do this
    /// outside a lab you own).
    #[arg(long)]
    pub allow_any_target: bool,
    /// PID of the server under test (same host): its CPU time (utime + stime, all
    /// threads, from /proc/PID/stat) over the load window goes into the RESULT line.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct Auth {
    /// Static long-term credential USER:PASSWORD.
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "secret")]
    pub user: Option<String>,
    /// TURN REST API shared secret (coturn --static-auth-secret).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Name part of the REST API username `<expiry>:<name>`.
    #[arg(long, default_value = "loaduser", requires = "secret")]
    pub rest_user: String,
    /// Validity of REST API credentials in seconds.
    #[arg(long, default_value_t = 86_400, requires = "secret")]
    pub rest_ttl: u64,
    /// Expected realm; the realm is taken from the server's 401, and a different
    /// one is reported as an error.
    #[arg(long)]
    pub realm: Option<String>,
}

#[derive(Args, Debug)]
pub struct StunArgs {
    #[command(flatten)]
    pub target: Target,
    /// Requests per second in total (0 = as fast as possible).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Length of the send phase in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Number of client UDP sockets (distinct source ports), used round-robin.
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// How long to keep counting responses after the send phase, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// Count our own request echoed back unchanged as the answer (for
    /// `switchboard-load forward`, which reflects STUN without parsing it).
    #[arg(long)]
    pub raw: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// ChannelBind, then ChannelData both ways.
    Channel,
    /// CreatePermission only; Send indications out, Data indications back.
    Send,
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub auth: Auth,
    /// Number of TURN allocations (one client socket each).
    #[arg(long, default_value_t = 10)]
    pub allocations: usize,
    /// Packets per second in total, client -> peer (0 = as fast as possible).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Application payload bytes per packet (>= 24: tag, allocation, sequence, timestamp).
    #[arg(long, default_value_t = 160)]
    pub size: usize,
    /// Length of the send phase in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// How the client sends and receives relayed data.
    #[arg(long, value_enum, default_value_t = RelayMode::Channel)]
    pub mode: RelayMode,
    /// External echo peer (must send every datagram back to its source, like
    /// turnutils_peer). Default: a built-in echo peer on --echo-bind.
    #[arg(long)]
    pub peer: Option<String>,
    /// Address the built-in echo peer binds to (port 0 = any).
    #[arg(long, default_value = "127.0.0.1:0", conflicts_with = "peer")]
    pub echo_bind: String,
    /// How long to keep counting echoes after the send phase, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// No TURN at all: send ChannelData (channel 0x4000) straight to --server and
    /// expect ChannelData back, for `switchboard-load forward` (the raw forwarder).
    #[arg(long, conflicts_with = "mode")]
    pub raw: bool,
    /// Spread client sockets over this many loopback source addresses (127.0.1.1,
    /// 127.0.1.2, ...) to get more 5-tuples than one address's ephemeral ports.
    /// Loopback servers only; 0 = the kernel's default source.
    #[arg(long, default_value_t = 0)]
    pub loopback_sources: usize,
    /// Keep going when some allocations fail during setup (skip them, stop after 20
    /// failures in a row) and relay over those that opened; for capacity tests.
    #[arg(long)]
    pub partial: bool,
}

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Address the forwarder listens on (one SO_REUSEPORT socket per thread).
    #[arg(long, default_value = "127.0.0.1:3478")]
    pub listen: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Where ChannelData payloads go (the echo peer, e.g. `relay --echo-bind`).
    #[arg(long)]
    pub peer: String,
    /// Address the per-client "relay" sockets bind to (port 0).
    #[arg(long, default_value = "127.0.0.1")]
    pub relay_ip: IpAddr,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Allow addresses outside loopback/private/documentation ranges.
    #[arg(long)]
    pub allow_any_target: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuples {
    /// Keep each worker's socket: a released 5-tuple allocates again.
    Reuse,
    /// A new socket (new source port) for every cycle.
    Fresh,
}

#[derive(Args, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub auth: Auth,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Concurrent workers (threads), each with its own socket.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Whether a worker keeps its 5-tuple after a release or opens a new socket.
    #[arg(long, value_enum, default_value_t = Tuples::Reuse)]
    pub tuples: Tuples,
    /// Spread client sockets over this many loopback source addresses
    /// (127.0.1.1, 127.0.1.2, ...), so that a new socket rarely lands on a 5-tuple
    /// the server is still holding after a release (coturn keeps it 1-2 s and
    /// answers 437). Loopback servers only; 0 = the kernel's default source.
    #[arg(long, default_value_t = 0)]
    pub loopback_sources: usize,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalProto {
    /// Switchboard signaling v1 (docs/signaling.md): join a room, `message` to the partner.
    Switchboard,
    /// PeerJS server (npm `peer`): one id per client, `OFFER` with `dst` to the partner.
    Peerjs,
}

#[derive(Args, Debug)]
pub struct SignalArgs {
    /// Which signaling protocol the server speaks.
    #[arg(long, value_enum)]
    pub proto: SignalProto,
    /// Server address (TCP; WebSocket without TLS), e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: String,
    /// A second node of the same cluster (switchboard only): the odd client of each
    /// pair connects there, so every pair spans two nodes. Default: both on --server.
    #[arg(long, value_name = "ADDR")]
    pub server_b: Option<String>,
    /// WebSocket path (default /ws for switchboard, /peerjs for peerjs).
    #[arg(long)]
    pub path: Option<String>,
    /// PeerJS `key` query parameter.
    #[arg(long, default_value = "peerjs")]
    pub key: String,
    /// Allow targets outside loopback/private/documentation ranges (never do this
    /// outside a lab you own).
    #[arg(long)]
    pub allow_any_target: bool,
    /// PID of the server under test (same host): RSS (VmRSS) at each --rss-at point,
    /// open descriptors, and CPU time (utime + stime) over the load phases.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// More processes whose CPU over the latency window is reported, in this order
    /// (`latency.also_cpu_pct`; e.g. a cluster's other node and its Redis). Repeatable.
    #[arg(long, value_name = "PID")]
    pub also_pid: Vec<u32>,
    /// Clients (WebSocket connections), an even number: client 2k and 2k+1 are partners.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// New connections per second while connecting (0 = as fast as --connect-inflight allows).
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u64,
    /// Most connections being opened (TCP + WebSocket handshake + join) at once.
    #[arg(long, default_value_t = 256)]
    pub connect_inflight: usize,
    /// Stop connecting after this many failed connections.
    #[arg(long, default_value_t = 100)]
    pub max_failures: u64,
    /// Connection counts at which connecting pauses to read the server's RSS (comma
    /// separated; the full --clients is always one).
    #[arg(long, value_delimiter = ',')]
    pub rss_at: Vec<usize>,
    /// Quiet time before each RSS reading, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// Seconds to hold all connections idle (keepalives only) after connecting; RSS is
    /// read again at the end.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Relay messages per second in total during the latency phase, spread evenly over
    /// all clients (each sends to its partner). 0 = skip the phase.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Seconds of paced relaying before latency is recorded.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds of paced relaying that are recorded.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of closed-loop relaying (saturation). 0 = skip the phase.
    #[arg(long, default_value_t = 10.0)]
    pub saturate: f64,
    /// Pairs that take part in the saturation phase (0 = all).
    #[arg(long, default_value_t = 0)]
    pub sat_pairs: usize,
    /// Messages each saturating pair keeps in flight (the even client sends, its
    /// partner echoes, each echo triggers the next message).
    #[arg(long, default_value_t = 1)]
    pub window: u32,
    /// Switchboard: send `ack` for the highest `seq` received at most this often, as
    /// the SDK does (0 = never).
    #[arg(long, default_value_t = 1000)]
    pub ack_ms: u64,
    /// PeerJS: send `HEARTBEAT` this often, as the PeerJS client does (0 = never).
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
    /// Extra bytes of padding in every relayed message's payload (a string field).
    #[arg(long, default_value_t = 0)]
    pub pad: usize,
    /// How long to keep counting arrivals after a phase, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
    /// Spread client connections over this many loopback source addresses (127.0.1.1,
    /// 127.0.1.2, ...) for more ephemeral ports. Loopback servers only; 0 = kernel's choice.
    #[arg(long, default_value_t = 0)]
    pub loopback_sources: usize,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Resolve `s` (as given to `--<opt>`) to one socket address and apply the lab check.
pub fn resolve_target(opt: &str, s: &str, allow_any: bool) -> Result<SocketAddr> {
    let addr = s
        .to_socket_addrs()
        .with_context(|| format!("--{opt}: cannot resolve {s:?} (expected HOST:PORT)"))?
        .next()
        .ok_or_else(|| anyhow!("--{opt}: {s:?} resolves to no address"))?;
    if addr.port() == 0 {
        bail!("--{opt}: port 0 is not a valid target");
    }
    if !allow_any && !is_lab_address(addr.ip()) {
        bail!(
            "--{opt}: {} is not a loopback, private or documentation/benchmark address; \
             this tool is for the lab only (override with --allow-any-target)",
            addr.ip()
        );
    }
    Ok(addr)
}

/// Loopback, RFC 1918 private, TEST-NET-1/2/3, 198.18.0.0/15 (benchmarking),
/// IPv6 loopback, ULA fc00::/7 and documentation 2001:db8::/32.
pub fn is_lab_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || (o[0] == 192 && o[1] == 0 && o[2] == 2)
                || (o[0] == 198 && o[1] == 51 && o[2] == 100)
                || (o[0] == 203 && o[1] == 0 && o[2] == 113)
                || (o[0] == 198 && (o[1] & 0xFE) == 18)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_lab_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || (s[0] & 0xFE00) == 0xFC00 || (s[0] == 0x2001 && s[1] == 0x0DB8)
        }
    }
}

pub fn check_duration(opt: &str, secs: f64) -> Result<f64> {
    if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 86_400.0 {
        bail!("--{opt}: must be a number of seconds > 0 and at most a week, got {secs}");
    }
    Ok(secs)
}

pub fn check_range(opt: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    if v < lo || v > hi {
        bail!("--{opt}: must be between {lo} and {hi}, got {v}");
    }
    Ok(v)
}

impl Auth {
    /// Build the credentials from `--user` / `--secret`.
    pub fn credentials(&self) -> Result<Credentials> {
        if let Some(u) = &self.user {
            let (name, pw) = u
                .split_once(':')
                .ok_or_else(|| anyhow!("--user: expected USER:PASSWORD, got {u:?}"))?;
            if name.is_empty() {
                bail!("--user: empty user name");
            }
            return Ok(Credentials::new(name, pw).expecting_realm(self.realm.clone()));
        }
        if let Some(secret) = &self.secret {
            if self.rest_ttl == 0 {
                bail!("--rest-ttl: must be > 0");
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("system clock before 1970")?
                .as_secs();
            let rest = switchboard_turn::rest::mint(
                secret.as_bytes(),
                now + self.rest_ttl,
                &self.rest_user,
            );
            return Ok(Credentials::new(&rest.username, &rest.password)
                .expecting_realm(self.realm.clone()));
        }
        bail!("one of --user USER:PASSWORD or --secret SECRET is required")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_addresses() {
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "203.0.113.7",
            "198.18.0.1",
            "198.19.255.1",
            "::1",
            "fd00::1",
            "2001:db8::5",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_lab_address(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "8.8.8.8",
            "172.32.0.1",
            "198.20.0.1",
            "1.1.1.1",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_lab_address(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn target_errors_name_the_option() {
        let e = resolve_target("server", "8.8.8.8:3478", false).unwrap_err();
        assert!(e.to_string().contains("--server"), "{e}");
        assert!(resolve_target("server", "8.8.8.8:3478", true).is_ok());
        let e = resolve_target("peer", "nonsense", false).unwrap_err();
        assert!(e.to_string().contains("--peer"), "{e}");
        assert!(resolve_target("server", "127.0.0.1:0", false).is_err());
        assert_eq!(
            resolve_target("server", "127.0.0.1:3478", false).unwrap(),
            "127.0.0.1:3478".parse().unwrap()
        );
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "switchboard-load",
            "relay",
            "--secret",
            "s",
            "--mode",
            "send",
            "--allocations",
            "3",
        ])
        .unwrap();
        match c.cmd {
            Command::Relay(r) => {
                assert_eq!(r.mode, RelayMode::Send);
                assert_eq!(r.allocations, 3);
                assert!(r.auth.credentials().unwrap().username.contains(":loaduser"));
            }
            _ => panic!("wrong subcommand"),
        }
        assert!(Cli::try_parse_from([
            "switchboard-load",
            "churn",
            "--user",
            "a:b",
            "--secret",
            "s"
        ])
        .is_err());
        let c = Cli::try_parse_from(["switchboard-load", "churn", "--user", "nocolon"]).unwrap();
        match c.cmd {
            Command::Churn(a) => {
                let e = a.auth.credentials().unwrap_err();
                assert!(e.to_string().contains("--user"), "{e}");
            }
            _ => panic!("wrong subcommand"),
        }
    }
}

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// STUN/TURN server address (UDP).
    #[arg(long, default_value = "127.0.0.1:3478")]
    pub server: String,
    /// The server's HTTP address (signaling at /ws, /api/ice-servers).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    #[command(flatten)]
    pub auth: Auth,
    /// Seconds of load.
    #[arg(long, default_value_t = 3600.0)]
    pub duration: f64,
    /// Allocations created per second by the churn (their fates cycle: expire,
    /// release, refresh-then-expire).
    #[arg(long, default_value_t = 5.0)]
    pub alloc_rate: f64,
    /// Long-lived allocations relaying ChannelData to an echo peer at any time.
    #[arg(long, default_value_t = 20)]
    pub media_allocs: usize,
    /// ChannelData packets per second over all media allocations.
    #[arg(long, default_value_t = 1000)]
    pub media_pps: u64,
    /// New signaling sessions per second.
    #[arg(long, default_value_t = 3.0)]
    pub session_rate: f64,
    /// `/api/ice-servers` requests per second (from 127.0.2.1..254 in turn).
    #[arg(long, default_value_t = 2.0)]
    pub ice_rate: f64,
    /// Seed of the fates and lifetimes (the run is the same for the same seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct JoinsArgs {
    /// The node the timed clients connect to (host:port of its HTTP listener).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub server: String,
    /// The node each room's creator joins through first (the owner under
    /// `--cluster-placement local`). Default: --server.
    #[arg(long, value_name = "ADDR")]
    pub owner: Option<String>,
    /// Timed clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Timed clients per room (plus its creator; keep it under --room-capacity).
    #[arg(long, default_value_t = 4)]
    pub per_room: usize,
    /// Most timed clients connecting or joining at once.
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Spread connections over this many loopback source addresses (127.0.1.1, ...).
    #[arg(long, default_value_t = 0)]
    pub loopback_sources: usize,
    /// Allow targets outside loopback/private/documentation ranges.
    #[arg(long)]
    pub allow_any_target: bool,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// The node that owns the rooms and is killed (host:port of its HTTP listener).
    #[arg(long)]
    pub owner: String,
    /// PID of the owner node's process: it gets SIGKILL once every room is set up.
    #[arg(long)]
    pub owner_pid: u32,
    /// The surviving node: bridged clients connect there, and every client resumes there.
    #[arg(long)]
    pub via: String,
    /// Rooms (each one creator on --owner).
    #[arg(long, default_value_t = 20)]
    pub rooms: usize,
    /// Clients per room on --via (bridged to the owner).
    #[arg(long, default_value_t = 1)]
    pub bridged: usize,
    /// Seconds every client has to resume after the kill.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Pause after a refused resume (`unavailable`) or a failed connection, ms.
    #[arg(long, default_value_t = 100)]
    pub retry_ms: u64,
    /// Seconds between the last join and the kill (the owner's member records must
    /// have reached the store).
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Allow targets outside loopback/private/documentation ranges.
    #[arg(long)]
    pub allow_any_target: bool,
}
