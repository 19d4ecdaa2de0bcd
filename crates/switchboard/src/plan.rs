//! Validation: turn [`Settings`] into the configuration the server runs with, or a
//! clear error naming the offending option (the binary exits with code 2).

use crate::settings::Settings;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_turn::{IpRange, PeerFilter, Rfc5780, ServerConfig};
use switchboard_turn_io::{IoConfig, RelayIp};

#[derive(Debug, thiserror::Error)]
#[error("invalid --{option}: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    pub option: &'static str,
    pub message: String,
    pub line: Option<usize>,
}

impl ConfigError {
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            option,
            message: message.into(),
            line: None,
        }
    }
    pub fn with_span(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

/// Everything `serve` needs, validated.
pub struct Plan {
    pub io: IoConfig,
    pub core: ServerConfig,
    /// TURN over TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificate both TURN over TLS and HTTPS use (kept for reloads when generated).
    pub tls_material: Option<crate::tls::TlsMaterial>,
    /// HTTPS on the HTTP listener.
    pub https: Option<Arc<rustls::ServerConfig>>,
    /// Signaling hub settings.
    pub signal: switchboard_http::HubConfig,
    /// `--allowed-origin`.
    pub origins: Vec<String>,
    pub metrics: Option<SocketAddr>,
    /// HTTP API address (`/api/ice-servers`).
    pub http: Option<SocketAddr>,
    /// `--turn-on-http-port`: the HTTPS listener takes TURN too (validated: HTTPS is on).
    pub http_turn: bool,
    /// Lifetime of credentials from `/api/ice-servers`.
    pub ice_ttl: u64,
    /// `--ice-rate`: `/api/ice-servers` requests per minute per source.
    pub ice_rate: u32,
    /// `--ice-host`.
    pub ice_host: Option<String>,
    pub drain_timeout: Duration,
    /// `--heap-trim`: how often freed heap goes back to the kernel (zero: never).
    pub heap_trim: Duration,
    /// Set when no credentials were configured and a random secret was made up.
    pub dev_secret: Option<String>,
}

/// `--ice-rate` (default 60 a minute; 0 = unlimited).
pub fn ice_rate(s: &Settings) -> Result<u32, ConfigError> {
    match s.ice_rate.unwrap_or(60) {
        n if n > 1_000_000 => Err(ConfigError::new(
            "ice-rate",
            format!("{n} requests a minute is not a limit; use 0 for none"),
        )),
        n => Ok(n),
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

/// Build the core configuration (also used on SIGHUP reload). `nonce_key` and the
/// development secret carry over so reloads don't invalidate live nonces.
pub fn core_config(
    s: &Settings,
    listen_ips: &[IpAddr],
    relay: &[RelayIp],
    nonce_key: Option<[u8; 32]>,
    dev_secret: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    let realm = s.realm.clone().unwrap_or_else(|| "switchboard".into());
    if realm.is_empty() || realm.len() > 763 {
        return Err(ConfigError::new("realm", "must be 1 to 763 bytes"));
    }
    let mut c = ServerConfig::new(realm);
    if let Some(k) = nonce_key {
        c.nonce_key = k;
    }
    for u in &s.user {
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
    for secret in &s.static_auth_secret {
        if secret.is_empty() {
            return Err(ConfigError::new("static-auth-secret", "must not be empty"));
        }
        c.secrets.push(secret.as_bytes().to_vec());
    }
    if let Some(d) = dev_secret {
        c.secrets.push(d.as_bytes().to_vec());
    }
    c.peer_filter = PeerFilter::new(
        ranges("allowed-peer-ip", &s.allowed_peer_ip)?,
        ranges("denied-peer-ip", &s.denied_peer_ip)?,
    );
    c.relay_ips = relay.iter().flat_map(|r| [r.bind, r.public]).collect();
    c.min_port = s.min_port.unwrap_or(49152);
    c.max_port = s.max_port.unwrap_or(65535);
    if c.min_port > c.max_port {
        return Err(ConfigError::new(
            "min-port",
            format!("{} is above --max-port {}", c.min_port, c.max_port),
        ));
    }
    if c.min_port < 1024 {
        return Err(ConfigError::new("min-port", "must be at least 1024"));
    }
    let secs =
        |option: &'static str, v: Option<u64>, default: u64| -> Result<Duration, ConfigError> {
            let v = v.unwrap_or(default);
            if v == 0 || v > 86_400 * 7 {
                return Err(ConfigError::new(
                    option,
                    format!("{v} is not between 1 and 604800 seconds"),
                ));
            }
            Ok(Duration::from_secs(v))
        };
    c.max_lifetime = secs("max-allocate-lifetime", s.max_allocate_lifetime, 3600)?;
    c.channel_lifetime = secs("channel-lifetime", s.channel_lifetime, 600)?;
    c.permission_lifetime = secs("permission-lifetime", s.permission_lifetime, 300)?;
    c.nonce_lifetime = secs("nonce-lifetime", s.nonce_lifetime, 600)?;
    c.default_lifetime = c.default_lifetime.min(c.max_lifetime);
    c.user_quota = s.user_quota.unwrap_or(0);
    c.total_quota = s.total_quota.unwrap_or(0);
    c.max_bps = s.max_bps.unwrap_or(0);
    c.unauth_rate = s.unauth_rate.unwrap_or(20);
    c.unauth_burst = c.unauth_rate.saturating_mul(2);
    let port = s.listening_port.unwrap_or(3478);
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
pub fn relay_ips(s: &Settings, listen_ips: &[IpAddr]) -> Result<Vec<RelayIp>, ConfigError> {
    let binds: Vec<IpAddr> = if s.relay_ip.is_empty() {
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
        s.relay_ip.clone()
    };
    if binds.iter().filter(|i| i.is_ipv4()).count() > 1
        || binds.iter().filter(|i| i.is_ipv6()).count() > 1
    {
        return Err(ConfigError::new(
            "relay-ip",
            "give at most one IPv4 and one IPv6 address",
        ));
    }
    let mut out: Vec<RelayIp> = binds
        .iter()
        .map(|&b| RelayIp { bind: b, public: b })
        .collect();
    for e in &s.external_ip {
        let (public, private) = match e.split_once('/') {
            Some((p, q)) => (p, Some(q)),
            None => (e.as_str(), None),
        };
        let public: IpAddr = public.trim().parse().map_err(|_| {
            ConfigError::new("external-ip", format!("`{e}` is not IP or PUBLIC/PRIVATE"))
        })?;
        let private: Option<IpAddr> = match private {
            Some(p) => Some(p.trim().parse().map_err(|_| {
                ConfigError::new("external-ip", format!("`{e}` is not IP or PUBLIC/PRIVATE"))
            })?),
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

pub fn build(s: &Settings) -> Result<Plan, ConfigError> {
    let listen_ips = if s.listening_ip.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        s.listening_ip.clone()
    };
    let relay = relay_ips(s, &listen_ips)?;
    let dev_secret = if s.user.is_empty() && s.static_auth_secret.is_empty() {
        Some(switchboard_util::random_hex(16))
    } else {
        None
    };
    let core = core_config(s, &listen_ips, &relay, None, dev_secret.as_deref())?;
    let port = s.listening_port.unwrap_or(3478);
    if port == 0 && core.rfc5780.is_some() {
        return Err(ConfigError::new(
            "listening-port",
            "RFC 5780 (two --listening-ip) needs a fixed port",
        ));
    }
    let mut udp: Vec<SocketAddr> = Vec::new();
    let mut tcp: Vec<SocketAddr> = Vec::new();
    let no_udp = s.no_udp.unwrap_or(false);
    let no_tcp = s.no_tcp.unwrap_or(false);
    for ip in &listen_ips {
        if !no_udp {
            udp.push(SocketAddr::new(*ip, port));
            if core.rfc5780.is_some() {
                udp.push(SocketAddr::new(*ip, port.wrapping_add(1)));
            }
        }
        if !no_tcp {
            tcp.push(SocketAddr::new(*ip, port));
        }
    }
    let http = s.http_addr()?;
    let mut names = listen_ips.clone();
    names.extend(http.map(|a| a.ip()));
    let tls_material = crate::tls::material(s, None, &names)?;
    let tls = tls_material
        .as_ref()
        .map(crate::tls::turn_config)
        .transpose()?;
    let http_turn = s.turn_on_http_port.unwrap_or(false);
    if http_turn && http.is_none() {
        return Err(ConfigError::new(
            "turn-on-http-port",
            "needs --http-listen (it is `off`)",
        ));
    }
    if http_turn && tls_material.is_none() {
        return Err(ConfigError::new(
            "turn-on-http-port",
            "needs a certificate: --cert and --pkey, or --tls-self-signed",
        ));
    }
    let https = tls_material
        .as_ref()
        .map(|m| crate::tls::https_config(m, http_turn))
        .transpose()?;
    let tls_addrs = match &tls {
        Some(_) => {
            let tport = s.tls_listening_port.unwrap_or(5349);
            listen_ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, tport))
                .collect()
        }
        None => Vec::new(),
    };
    if udp.is_empty() && tcp.is_empty() && tls_addrs.is_empty() {
        return Err(ConfigError::new(
            "no-udp",
            "with --no-tcp and no TLS there is nothing to listen on",
        ));
    }
    let threads = s.threads.unwrap_or_else(|| {
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
    let io = IoConfig {
        udp,
        tcp,
        tls: tls_addrs,
        relay_v4: relay.iter().copied().find(|r| r.bind.is_ipv4()),
        relay_v6: relay.iter().copied().find(|r| r.bind.is_ipv6()),
        min_port: core.min_port,
        max_port: core.max_port,
        threads,
    };
    Ok(Plan {
        io,
        core,
        tls,
        tls_material,
        https,
        signal: signal_config(s)?,
        origins: s.allowed_origin.clone(),
        metrics: s.metrics_addr()?,
        http,
        http_turn,
        ice_rate: ice_rate(s)?,
        ice_ttl: match s.ice_ttl.unwrap_or(86_400) {
            0 => return Err(ConfigError::new("ice-ttl", "must be at least 1 second")),
            t => t,
        },
        ice_host: match &s.ice_host {
            Some(h)
                if h.is_empty()
                    || h.len() > 253
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)) =>
            {
                return Err(ConfigError::new(
                    "ice-host",
                    format!("`{h}` is not a host name or IP"),
                ))
            }
            Some(h) => match h.parse::<IpAddr>() {
                Ok(ip) => Some(switchboard_http::IceConfig::host_for(ip)),
                Err(_) => Some(h.clone()),
            },
            None => None,
        },
        drain_timeout: Duration::from_secs(s.drain_timeout.unwrap_or(30)),
        heap_trim: Duration::from_secs(s.heap_trim.unwrap_or(60)),
        dev_secret,
    })
}

/// The signaling hub settings (also used on SIGHUP reload).
pub fn signal_config(s: &Settings) -> Result<switchboard_http::HubConfig, ConfigError> {
    let mut c = switchboard_http::HubConfig::default();
    if let Some(n) = s.room_capacity {
        if !(1..=1000).contains(&n) {
            return Err(ConfigError::new(
                "room-capacity",
                format!("{n} is not between 1 and 1000"),
            ));
        }
        c.room_capacity = n;
    }
    if let Some(g) = s.signal_grace {
        if g > 3600 {
            return Err(ConfigError::new(
                "signal-grace",
                format!("{g} s is more than an hour"),
            ));
        }
        c.grace = Duration::from_secs(g);
    }
    if let Some(m) = s.signal_max_message {
        if !(1024..=1 << 20).contains(&m) {
            return Err(ConfigError::new(
                "signal-max-message",
                format!("{m} is not between 1024 and 1048576 bytes"),
            ));
        }
        c.max_message = m;
    }
    if let Some(r) = s.signal_rate {
        c.rate = r;
    }
    for secret in &s.room_token_secret {
        if secret.len() < 16 {
            return Err(ConfigError::new(
                "room-token-secret",
                "must be at least 16 characters (HS256 keys should be long and random)",
            ));
        }
        c.token_secrets.push(secret.as_bytes().to_vec());
    }
    for o in &s.allowed_origin {
        let ok = o == "*"
            || ((o.starts_with("http://") || o.starts_with("https://"))
                && o.split_once("://").is_some_and(|(_, rest)| {
                    !rest.trim_end_matches('/').is_empty()
                        && !rest.trim_end_matches('/').contains('/')
                }));
        if !ok {
            return Err(ConfigError::new(
                "allowed-origin",
                format!("`{o}` is not `*` or scheme://host[:port]"),
            ));
        }
    }
    Ok(c)
}
