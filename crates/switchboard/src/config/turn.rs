//! `[turn]`: STUN/TURN listeners, relay addresses, credentials, peer filters, limits and
//! lifetimes. Numeric defaults are the TURN core's own (`ServerConfig::new`), which
//! `--help` shows from there; option names follow coturn's where the meaning is the same.

use crate::error::ConfigError;
use crate::tls::TlsMaterial;
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use switchboard_turn::{IpRange, PeerFilter, Rfc5780, ServerConfig};

/// The TURN core's defaults, for `--help` and for unset options.
static CORE: LazyLock<ServerConfig> = LazyLock::new(|| ServerConfig::new(DEFAULT_REALM));

const DEFAULT_REALM: &str = "switchboard";

#[derive(Args, Debug, Clone)]
#[group(id = "turn")]
pub struct TurnSettings {
    /// IP to listen on for STUN/TURN (repeatable). Two IPs turn on RFC 5780 behaviour
    /// discovery.
    #[arg(
        long = "listening-ip",
        short = 'L',
        value_name = "IP",
        env = "SWITCHBOARD_LISTENING_IP",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub listening_ip: Vec<IpAddr>,

    /// UDP and TCP port for STUN/TURN.
    #[arg(
        long,
        short = 'p',
        value_name = "PORT",
        env = "SWITCHBOARD_LISTENING_PORT",
        default_value_t = 3478
    )]
    pub listening_port: u16,

    /// TLS port for STUN/TURN over TLS, used when --cert and --pkey are set.
    #[arg(
        long,
        value_name = "PORT",
        env = "SWITCHBOARD_TLS_LISTENING_PORT",
        default_value_t = 5349
    )]
    pub tls_listening_port: u16,

    /// IP that relay sockets bind to (one IPv4 and/or one IPv6). [default: the listening IPs]
    #[arg(
        long,
        short = 'E',
        value_name = "IP",
        env = "SWITCHBOARD_RELAY_IP",
        value_delimiter = ','
    )]
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
    pub external_ip: Vec<String>,

    /// Lowest relay port.
    #[arg(long, value_name = "PORT", env = "SWITCHBOARD_MIN_PORT", default_value_t = CORE.min_port)]
    pub min_port: u16,

    /// Highest relay port.
    #[arg(long, value_name = "PORT", env = "SWITCHBOARD_MAX_PORT", default_value_t = CORE.max_port)]
    pub max_port: u16,

    /// Realm for long-term credentials.
    #[arg(long, short = 'r', value_name = "REALM", env = "SWITCHBOARD_REALM", default_value = DEFAULT_REALM)]
    pub realm: String,

    /// Static long-term user `NAME:PASSWORD` (repeatable).
    #[arg(
        long,
        short = 'u',
        value_name = "NAME:PASS",
        env = "SWITCHBOARD_USER",
        value_delimiter = ','
    )]
    pub user: Vec<String>,

    /// TURN REST API shared secret (repeatable: the first signs, all verify).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_STATIC_AUTH_SECRET",
        value_delimiter = ','
    )]
    pub static_auth_secret: Vec<String>,

    /// Peer range relaying is allowed to even if denied otherwise: IP, CIDR or `A-B` (repeatable).
    #[arg(
        long,
        value_name = "RANGE",
        env = "SWITCHBOARD_ALLOWED_PEER_IP",
        value_delimiter = ','
    )]
    pub allowed_peer_ip: Vec<String>,

    /// Peer range relaying is refused to, on top of the built-in list (repeatable).
    #[arg(
        long,
        value_name = "RANGE",
        env = "SWITCHBOARD_DENIED_PEER_IP",
        value_delimiter = ','
    )]
    pub denied_peer_ip: Vec<String>,

    /// Worker threads for STUN/TURN. [default: number of CPUs]
    #[arg(long, short = 'm', value_name = "N", env = "SWITCHBOARD_THREADS")]
    pub threads: Option<usize>,

    /// Allocations per user (0 = unlimited).
    #[arg(long, value_name = "N", env = "SWITCHBOARD_USER_QUOTA", default_value_t = CORE.user_quota)]
    pub user_quota: u32,

    /// Allocations in total (0 = unlimited).
    #[arg(long, value_name = "N", env = "SWITCHBOARD_TOTAL_QUOTA", default_value_t = CORE.total_quota)]
    pub total_quota: u32,

    /// Relayed bytes per second per allocation, both directions (0 = unlimited).
    #[arg(long, value_name = "BYTES", env = "SWITCHBOARD_MAX_BPS", default_value_t = CORE.max_bps)]
    pub max_bps: u64,

    /// Longest allocation lifetime a client may request, seconds.
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_MAX_ALLOCATE_LIFETIME",
          default_value_t = CORE.max_lifetime.as_secs())]
    pub max_allocate_lifetime: u64,

    /// Channel binding lifetime, seconds.
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_CHANNEL_LIFETIME",
          default_value_t = CORE.channel_lifetime.as_secs())]
    pub channel_lifetime: u64,

    /// Permission lifetime, seconds.
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_PERMISSION_LIFETIME",
          default_value_t = CORE.permission_lifetime.as_secs())]
    pub permission_lifetime: u64,

    /// How long a nonce stays valid before 438 Stale Nonce, seconds.
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_NONCE_LIFETIME",
          default_value_t = CORE.nonce_lifetime.as_secs())]
    pub nonce_lifetime: u64,

    /// 401/438 responses per second per source IP over UDP (0 = unlimited).
    #[arg(long, value_name = "N", env = "SWITCHBOARD_UNAUTH_RATE", default_value_t = CORE.unauth_rate)]
    pub unauth_rate: u32,

    /// Do not listen on UDP.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_NO_UDP", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_udp: bool,

    /// Do not listen on TCP.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_NO_TCP", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_tcp: bool,
}

/// A relay address: the IP relay sockets bind to and the one announced to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay {
    pub bind: IpAddr,
    pub public: IpAddr,
}

/// The validated `[turn]` section.
#[derive(Clone)]
pub struct TurnConfig {
    pub core: ServerConfig,
    pub listen_ips: Vec<IpAddr>,
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    /// TURN over TLS, when a certificate is configured.
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    pub relay: Vec<Relay>,
    pub threads: usize,
    /// Set when no credentials were configured and a random REST secret was made up.
    pub dev_secret: Option<String>,
}

impl TurnSettings {
    /// With `running` (a reload), what is bound (listeners, relay addresses, threads),
    /// the nonce key and the development secret stay those the server started with, so
    /// live nonces and credentials stay valid.
    pub fn validate(
        &self,
        tls: Option<&TlsMaterial>,
        running: Option<&TurnConfig>,
    ) -> Result<TurnConfig, ConfigError> {
        let tls_config = tls.map(crate::tls::turn_config).transpose()?;
        if let Some(r) = running {
            let core = self.core(
                &r.listen_ips,
                &r.relay,
                Some(r.core.nonce_key),
                r.dev_secret.as_deref(),
            )?;
            return Ok(TurnConfig {
                core,
                tls_config,
                ..r.clone()
            });
        }
        let listen_ips = self.listening_ip.clone();
        let relay = self.relay_ips(&listen_ips)?;
        let dev_secret = (self.user.is_empty() && self.static_auth_secret.is_empty())
            .then(|| switchboard_util::random_hex(16));
        let core = self.core(&listen_ips, &relay, None, dev_secret.as_deref())?;
        let port = self.listening_port;
        if port == 0 && core.rfc5780.is_some() {
            return Err(ConfigError::new(
                "listening-port",
                "RFC 5780 (two --listening-ip) needs a fixed port",
            ));
        }
        let (mut udp, mut tcp) = (Vec::new(), Vec::new());
        for ip in &listen_ips {
            if !self.no_udp {
                udp.push(SocketAddr::new(*ip, port));
                if core.rfc5780.is_some() {
                    udp.push(SocketAddr::new(*ip, port.wrapping_add(1)));
                }
            }
            if !self.no_tcp {
                tcp.push(SocketAddr::new(*ip, port));
            }
        }
        let tls_addrs: Vec<SocketAddr> = match &tls_config {
            Some(_) => listen_ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.tls_listening_port))
                .collect(),
            None => Vec::new(),
        };
        if udp.is_empty() && tcp.is_empty() && tls_addrs.is_empty() {
            return Err(ConfigError::new(
                "no-udp",
                "with --no-tcp and no TLS there is nothing to listen on",
            ));
        }
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        if threads == 0 || threads > 1024 {
            return Err(ConfigError::new(
                "threads",
                format!("{threads} is not between 1 and 1024"),
            ));
        }
        Ok(TurnConfig {
            core,
            listen_ips,
            udp,
            tcp,
            tls: tls_addrs,
            tls_config,
            relay,
            threads,
            dev_secret,
        })
    }

    /// The TURN core's configuration. `nonce_key` and the development secret carry over
    /// on reloads.
    fn core(
        &self,
        listen_ips: &[IpAddr],
        relay: &[Relay],
        nonce_key: Option<[u8; 32]>,
        dev_secret: Option<&str>,
    ) -> Result<ServerConfig, ConfigError> {
        let realm = &self.realm;
        if realm.is_empty() || realm.len() > 763 {
            return Err(ConfigError::new("realm", "must be 1 to 763 bytes"));
        }
        let mut c = ServerConfig::new(realm.clone());
        if let Some(k) = nonce_key {
            c.nonce_key = k;
        }
        for u in &self.user {
            let Some((name, pass)) = u.split_once(':') else {
                return Err(ConfigError::new(
                    "user",
                    format!("`{u}` is not NAME:PASSWORD"),
                ));
            };
            if name.is_empty() || pass.is_empty() {
                return Err(ConfigError::new(
                    "user",
                    format!("`{u}` has an empty name or password"),
                ));
            }
            c.add_user(name, pass);
        }
        for secret in &self.static_auth_secret {
            if secret.is_empty() {
                return Err(ConfigError::new("static-auth-secret", "must not be empty"));
            }
            c.secrets.push(secret.as_bytes().to_vec());
        }
        if let Some(d) = dev_secret {
            c.secrets.push(d.as_bytes().to_vec());
        }
        c.peer_filter = PeerFilter::new(
            ranges("allowed-peer-ip", &self.allowed_peer_ip)?,
            ranges("denied-peer-ip", &self.denied_peer_ip)?,
        );
        c.relay_ips = relay.iter().flat_map(|r| [r.bind, r.public]).collect();
        c.min_port = self.min_port;
        c.max_port = self.max_port;
        if c.min_port > c.max_port {
            return Err(ConfigError::new(
                "min-port",
                format!("{} is above --max-port {}", c.min_port, c.max_port),
            ));
        }
        if c.min_port < 1024 {
            return Err(ConfigError::new("min-port", "must be at least 1024"));
        }
        let secs = |option: &'static str, v: u64| -> Result<Duration, ConfigError> {
            if v == 0 || v > 86_400 * 7 {
                return Err(ConfigError::new(
                    option,
                    format!("{v} is not between 1 and 604800 seconds"),
                ));
            }
            Ok(Duration::from_secs(v))
        };
        c.max_lifetime = secs("max-allocate-lifetime", self.max_allocate_lifetime)?;
        c.channel_lifetime = secs("channel-lifetime", self.channel_lifetime)?;
        c.permission_lifetime = secs("permission-lifetime", self.permission_lifetime)?;
        c.nonce_lifetime = secs("nonce-lifetime", self.nonce_lifetime)?;
        c.default_lifetime = c.default_lifetime.min(c.max_lifetime);
        c.user_quota = self.user_quota;
        c.total_quota = self.total_quota;
        c.max_bps = self.max_bps;
        c.unauth_rate = self.unauth_rate;
        c.unauth_burst = c.unauth_rate.saturating_mul(2);
        let port = self.listening_port;
        if let [a, b] = listen_ips {
            if a.is_ipv4() == b.is_ipv4() && !a.is_unspecified() && !b.is_unspecified() {
                c.rfc5780 = Some(Rfc5780 {
                    ips: [*a, *b],
                    ports: [port, port.wrapping_add(1)],
                });
            }
        }
        Ok(c)
    }

    /// Relay addresses from --relay-ip (default: the listening IPs) and --external-ip.
    fn relay_ips(&self, listen_ips: &[IpAddr]) -> Result<Vec<Relay>, ConfigError> {
        let binds: Vec<IpAddr> = if self.relay_ip.is_empty() {
            let mut v: Vec<IpAddr> = Vec::new();
            for ip in listen_ips {
                if ip.is_unspecified() {
                    return Err(ConfigError::new(
                        "relay-ip",
                        format!("required when listening on {ip}: name the address relays bind to"),
                    ));
                }
                if !v.iter().any(|x| x.is_ipv4() == ip.is_ipv4()) {
                    v.push(*ip);
                }
            }
            v
        } else {
            self.relay_ip.clone()
        };
        if binds.iter().filter(|i| i.is_ipv4()).count() > 1
            || binds.iter().filter(|i| i.is_ipv6()).count() > 1
        {
            return Err(ConfigError::new(
                "relay-ip",
                "give at most one IPv4 and one IPv6 address",
            ));
        }
        let mut out: Vec<Relay> = binds
            .iter()
            .map(|&b| Relay { bind: b, public: b })
            .collect();
        for e in &self.external_ip {
            let bad =
                || ConfigError::new("external-ip", format!("`{e}` is not IP or PUBLIC/PRIVATE"));
            let (public, private) = match e.split_once('/') {
                Some((p, q)) => (p, Some(q)),
                None => (e.as_str(), None),
            };
            let public: IpAddr = public.trim().parse().map_err(|_| bad())?;
            let private: Option<IpAddr> = match private {
                Some(p) => Some(p.trim().parse().map_err(|_| bad())?),
                None => None,
            };
            let target = out.iter_mut().find(|r| match private {
                Some(p) => r.bind == p,
                None => r.bind.is_ipv4() == public.is_ipv4(),
            });
            match target {
                Some(r) => r.public = public,
                None => {
                    return Err(ConfigError::new(
                        "external-ip",
                        format!("`{e}` matches no relay address of the same family"),
                    ))
                }
            }
        }
        Ok(out)
    }
}

fn ranges(option: &'static str, list: &[String]) -> Result<Vec<IpRange>, ConfigError> {
    list.iter()
        .map(|s| {
            s.parse()
                .map_err(|e: switchboard_turn::filter::IpRangeParseError| {
                    ConfigError::new(option, e.to_string())
                })
        })
        .collect()
}
