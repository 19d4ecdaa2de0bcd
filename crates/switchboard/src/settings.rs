//! `switchboard serve` settings: one struct read from the command line, the
//! environment (`SWITCHBOARD_*`) and a TOML file (`--config`), in that order of
//! precedence, then validated into what the server runs with. Option names follow
//! coturn's where the meaning is the same.

use clap::Args;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Args, Deserialize, Default, Debug, Clone)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file; command-line options and SWITCHBOARD_* variables override it.
    #[arg(long, short = 'c', value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// IP to listen on for STUN/TURN (repeatable). Two IPs turn on RFC 5780 behaviour
    /// discovery. [default: 127.0.0.1]
    #[arg(
        long = "listening-ip",
        short = 'L',
        value_name = "IP",
        env = "SWITCHBOARD_LISTENING_IP",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub listening_ip: Vec<IpAddr>,

    /// UDP and TCP port for STUN/TURN. [default: 3478]
    #[arg(
        long,
        short = 'p',
        value_name = "PORT",
        env = "SWITCHBOARD_LISTENING_PORT"
    )]
    pub listening_port: Option<u16>,

    /// TLS port for STUN/TURN over TLS, used when --cert and --pkey are set. [default: 5349]
    #[arg(long, value_name = "PORT", env = "SWITCHBOARD_TLS_LISTENING_PORT")]
    pub tls_listening_port: Option<u16>,

    /// IP that relay sockets bind to (one IPv4 and/or one IPv6). [default: the listening IPs]
    #[arg(
        long,
        short = 'E',
        value_name = "IP",
        env = "SWITCHBOARD_RELAY_IP",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub relay_ip: Vec<IpAddr>,

    /// Public IP announced for relayed addresses behind a 1:1 NAT: `PUBLIC` or
    /// `PUBLIC/PRIVATE` (PRIVATE being a --relay-ip). Repeatable, one per family.
    #[arg(
        long,
        short = 'X',
        value_name = "IP[/IP]",
        env = "SWITCHBOARD_EXTERNAL_IP",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub external_ip: Vec<String>,

    /// Lowest relay port. [default: 49152]
    #[arg(long, value_name = "PORT", env = "SWITCHBOARD_MIN_PORT")]
    pub min_port: Option<u16>,

    /// Highest relay port. [default: 65535]
    #[arg(long, value_name = "PORT", env = "SWITCHBOARD_MAX_PORT")]
    pub max_port: Option<u16>,

    /// Realm for long-term credentials. [default: switchboard]
    #[arg(long, short = 'r', value_name = "REALM", env = "SWITCHBOARD_REALM")]
    pub realm: Option<String>,

    /// Static long-term user `NAME:PASSWORD` (repeatable).
    #[arg(
        long,
        short = 'u',
        value_name = "NAME:PASS",
        env = "SWITCHBOARD_USER",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub user: Vec<String>,

    /// TURN REST API shared secret (repeatable: the first signs, all verify).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_STATIC_AUTH_SECRET",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub static_auth_secret: Vec<String>,

    /// Peer range relaying is allowed to even if denied otherwise: IP, CIDR or `A-B` (repeatable).
    #[arg(
        long,
        value_name = "RANGE",
        env = "SWITCHBOARD_ALLOWED_PEER_IP",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_peer_ip: Vec<String>,

    /// Peer range relaying is refused to, on top of the built-in list (repeatable).
    #[arg(
        long,
        value_name = "RANGE",
        env = "SWITCHBOARD_DENIED_PEER_IP",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub denied_peer_ip: Vec<String>,

    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CERT")]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_PKEY")]
    pub pkey: Option<PathBuf>,

    /// Worker threads for STUN/TURN. [default: number of CPUs]
    #[arg(long, short = 'm', value_name = "N", env = "SWITCHBOARD_THREADS")]
    pub threads: Option<usize>,

    /// Allocations per user (0 = unlimited). [default: 0]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_USER_QUOTA")]
    pub user_quota: Option<u32>,

    /// Allocations in total (0 = unlimited). [default: 0]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_TOTAL_QUOTA")]
    pub total_quota: Option<u32>,

    /// Relayed bytes per second per allocation, both directions (0 = unlimited). [default: 0]
    #[arg(long, value_name = "BYTES", env = "SWITCHBOARD_MAX_BPS")]
    pub max_bps: Option<u64>,

    /// Longest allocation lifetime a client may request, seconds. [default: 3600]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_MAX_ALLOCATE_LIFETIME")]
    pub max_allocate_lifetime: Option<u64>,

    /// Channel binding lifetime, seconds. [default: 600]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_CHANNEL_LIFETIME")]
    pub channel_lifetime: Option<u64>,

    /// Permission lifetime, seconds. [default: 300]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_PERMISSION_LIFETIME")]
    pub permission_lifetime: Option<u64>,

    /// How long a nonce stays valid before 438 Stale Nonce, seconds. [default: 600]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_NONCE_LIFETIME")]
    pub nonce_lifetime: Option<u64>,

    /// 401/438 responses per second per source IP over UDP (0 = unlimited). [default: 20]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_UNAUTH_RATE")]
    pub unauth_rate: Option<u32>,

    /// Prometheus metrics address (`off` to disable). [default: 127.0.0.1:9641]
    #[arg(long, value_name = "ADDR", env = "SWITCHBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// HTTP address for the web app, signaling and API; HTTPS when a certificate is
    /// configured; `off` to disable. [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", env = "SWITCHBOARD_HTTP_LISTEN")]
    pub http_listen: Option<String>,

    /// Also accept TURN over TLS (ALPN `stun.turn`, or none and a STUN first message)
    /// and STUN/TURN over plain TCP on the HTTPS port of --http-listen, e.g. 443 for
    /// clients behind a 443-only firewall (RFC 7443). Needs a certificate. [default: false]
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_TURN_ON_HTTP_PORT", num_args = 0..=1, default_missing_value = "true")]
    pub turn_on_http_port: Option<bool>,

    /// Lifetime of TURN credentials handed out by `/api/ice-servers`, seconds. [default: 86400]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_ICE_TTL")]
    pub ice_ttl: Option<u64>,

    /// Requests to `/api/ice-servers` per minute per source IP (an IPv6 /64 counts as
    /// one), in bursts of as many; more get 429. 0 = unlimited. [default: 60]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_ICE_RATE")]
    pub ice_rate: Option<u32>,

    /// Generate a self-signed certificate at start for HTTPS and TURN over TLS (when
    /// --cert/--pkey are not given); its SHA-256 fingerprint is logged.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_TLS_SELF_SIGNED", num_args = 0..=1, default_missing_value = "true")]
    pub tls_self_signed: Option<bool>,

    /// Participants per signaling room. [default: 8]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_ROOM_CAPACITY")]
    pub room_capacity: Option<usize>,

    /// Secret for room tokens (JWT HS256); when set, joining a room needs a token
    /// (repeatable: the first is the one `switchboard token` should use, all verify).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_ROOM_TOKEN_SECRET",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub room_token_secret: Vec<String>,

    /// Seconds a signaling session survives the loss of its transport, waiting for a resume. [default: 30]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_SIGNAL_GRACE")]
    pub signal_grace: Option<u64>,

    /// Largest signaling message, bytes. [default: 65536]
    #[arg(long, value_name = "BYTES", env = "SWITCHBOARD_SIGNAL_MAX_MESSAGE")]
    pub signal_max_message: Option<usize>,

    /// Signaling messages per second per connection, bursts of 4x (0 = unlimited). [default: 50]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_SIGNAL_RATE")]
    pub signal_rate: Option<u32>,

    /// Extra page origin allowed to use signaling, e.g. `https://app.example.org`, or `*`
    /// (repeatable). Pages from this server's own host are always allowed.
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "SWITCHBOARD_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_origin: Vec<String>,

    /// Host name (or IP) put in the `stun:`/`turn:`/`turns:` URIs of `/api/ice-servers`,
    /// e.g. the name on the TLS certificate. [default: the relay's public IP]
    #[arg(long, value_name = "HOST", env = "SWITCHBOARD_ICE_HOST")]
    pub ice_host: Option<String>,

    /// Seconds SIGTERM waits for allocations to end before exiting. [default: 30]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,

    /// Seconds between handing freed heap memory back to the kernel (glibc
    /// `malloc_trim`); 0 = never. [default: 60]
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_HEAP_TRIM")]
    pub heap_trim: Option<u64>,

    /// Do not listen on UDP.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_NO_UDP", num_args = 0..=1, default_missing_value = "true")]
    pub no_udp: Option<bool>,

    /// Do not listen on TCP.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_NO_TCP", num_args = 0..=1, default_missing_value = "true")]
    pub no_tcp: Option<bool>,

    /// Log filter (tracing env-filter syntax, e.g. `info`, `debug`). [default: info]
    #[arg(long, value_name = "FILTER", env = "SWITCHBOARD_LOG")]
    pub log: Option<String>,
}

macro_rules! merge_fields {
    ($dst:ident, $src:ident; opt: $($o:ident),*; vec: $($v:ident),*) => {
        $( if $dst.$o.is_none() { $dst.$o = $src.$o.clone(); } )*
        $( if $dst.$v.is_empty() { $dst.$v = $src.$v.clone(); } )*
    };
}

impl Settings {
    /// Fill what the command line and environment left unset from `file`.
    pub fn merge_file(&mut self, file: &Settings) {
        let me = self;
        merge_fields!(me, file;
            opt: listening_port, tls_listening_port, min_port, max_port, realm, cert, pkey,
                 threads, user_quota, total_quota, max_bps, max_allocate_lifetime,
                 channel_lifetime, permission_lifetime, nonce_lifetime, unauth_rate,
                 metrics_listen, http_listen, ice_ttl, ice_rate, drain_timeout, heap_trim, no_udp, no_tcp, log,
                 tls_self_signed, turn_on_http_port, ice_host, room_capacity, signal_grace, signal_max_message, signal_rate;
            vec: listening_ip, relay_ip, external_ip, user, static_auth_secret,
                 allowed_peer_ip, denied_peer_ip, room_token_secret, allowed_origin);
    }

    /// Read and merge the `--config` file, if any.
    pub fn load_file(&mut self) -> Result<(), crate::plan::ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::plan::ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        let file: Settings = toml::from_str(&text).map_err(|e| {
            crate::plan::ConfigError::new(
                "config",
                format!("{}: {}", path.display(), e.message().trim()),
            )
            .with_span(e.span().map(|s| line_of(&text, s.start)))
        })?;
        self.merge_file(&file);
        Ok(())
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, crate::plan::ConfigError> {
        listen_addr("metrics-listen", self.metrics_listen.as_deref(), 9641)
    }

    pub fn http_addr(&self) -> Result<Option<SocketAddr>, crate::plan::ConfigError> {
        listen_addr("http-listen", self.http_listen.as_deref(), 8080)
    }
}

/// An `IP:PORT` option that may be `off`; unset means 127.0.0.1:`default_port`.
fn listen_addr(
    option: &'static str,
    value: Option<&str>,
    default_port: u16,
) -> Result<Option<SocketAddr>, crate::plan::ConfigError> {
    match value {
        None => Ok(Some(SocketAddr::from(([127, 0, 0, 1], default_port)))),
        Some("off") | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            crate::plan::ConfigError::new(option, format!("`{s}` is not IP:PORT or `off`"))
        }),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
