//! `[signal]`: the signaling hub's rooms, limits and who may join. Defaults are the
//! hub's own (`HubConfig::default()`), shown by `--help` from there.

use crate::error::ConfigError;
use clap::Args;
use std::sync::LazyLock;
use std::time::Duration;
use switchboard_signal::HubConfig;

static HUB: LazyLock<HubConfig> = LazyLock::new(HubConfig::default);

#[derive(Args, Debug, Clone)]
#[group(id = "signal")]
pub struct SignalSettings {
    /// Participants per signaling room.
    #[arg(long, value_name = "N", env = "SWITCHBOARD_ROOM_CAPACITY", default_value_t = HUB.room_capacity)]
    pub room_capacity: usize,

    /// Secret for room tokens (JWT HS256); when set, joining a room needs a token
    /// (repeatable: the first is the one `switchboard token` should use, all verify).
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_ROOM_TOKEN_SECRET",
        value_delimiter = ','
    )]
    pub room_token_secret: Vec<String>,

    /// Seconds a signaling session survives the loss of its transport, waiting for a resume.
    #[arg(long, value_name = "SECS", env = "SWITCHBOARD_SIGNAL_GRACE", default_value_t = HUB.grace.as_secs())]
    pub signal_grace: u64,

    /// Largest signaling message, bytes.
    #[arg(long, value_name = "BYTES", env = "SWITCHBOARD_SIGNAL_MAX_MESSAGE", default_value_t = HUB.max_message)]
    pub signal_max_message: usize,

    /// Signaling messages per second per connection, bursts of 4x (0 = unlimited).
    #[arg(long, value_name = "N", env = "SWITCHBOARD_SIGNAL_RATE", default_value_t = HUB.rate)]
    pub signal_rate: u32,

    /// Extra page origin allowed to use signaling, e.g. `https://app.example.org`, or `*`
    /// (repeatable). Pages from this server's own host are always allowed.
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "SWITCHBOARD_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origin: Vec<String>,

    /// Signaling shards: rooms are spread over this many independent hubs, each behind
    /// its own lock, so signaling uses that many cores (0 = one per core).
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SIGNAL_SHARDS",
        default_value_t = 0
    )]
    pub signal_shards: usize,
}

/// The validated `[signal]` section.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    pub hub: HubConfig,
    /// `--allowed-origin`.
    pub origins: Vec<String>,
    /// `--signal-shards`, resolved (0 became the number of cores).
    pub shards: usize,
}

impl SignalSettings {
    pub fn validate(&self) -> Result<SignalConfig, ConfigError> {
        let mut c = HubConfig::default();
        let n = self.room_capacity;
        if !(1..=1000).contains(&n) {
            return Err(ConfigError::new(
                "room-capacity",
                format!("{n} is not between 1 and 1000"),
            ));
        }
        c.room_capacity = n;
        let g = self.signal_grace;
        if g > 3600 {
            return Err(ConfigError::new(
                "signal-grace",
                format!("{g} s is more than an hour"),
            ));
        }
        c.grace = Duration::from_secs(g);
        let m = self.signal_max_message;
        if !(1024..=1 << 20).contains(&m) {
            return Err(ConfigError::new(
                "signal-max-message",
                format!("{m} is not between 1024 and 1048576 bytes"),
            ));
        }
        c.max_message = m;
        c.rate = self.signal_rate;
        for secret in &self.room_token_secret {
            if secret.len() < 16 {
                return Err(ConfigError::new(
                    "room-token-secret",
                    "must be at least 16 characters (HS256 keys should be long and random)",
                ));
            }
            c.token_secrets.push(secret.as_bytes().to_vec());
        }
        for o in &self.allowed_origin {
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
        if self.signal_shards > 1024 {
            return Err(ConfigError::new(
                "signal-shards",
                format!("{} is more than 1024", self.signal_shards),
            ));
        }
        Ok(SignalConfig {
            hub: c,
            origins: self.allowed_origin.clone(),
            shards: match self.signal_shards {
                0 => switchboard_signal::Signaling::default_shards(),
                n => n,
            },
        })
    }
}
