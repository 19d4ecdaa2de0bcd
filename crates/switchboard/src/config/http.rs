//! `[http]`: the web app, signaling transports and `/api/ice-servers` listener, and
//! whether TURN shares its HTTPS port.

use super::listen::Listen;
use crate::error::ConfigError;
use crate::tls::TlsMaterial;
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
#[group(id = "http")]
pub struct HttpSettings {
    /// HTTP address for the web app, signaling and API; HTTPS when a certificate is
    /// configured; `off` to disable.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SWITCHBOARD_HTTP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub http_listen: Listen,

    /// Also accept TURN over TLS (ALPN `stun.turn`, or none and a STUN first message)
    /// and STUN/TURN over plain TCP on the HTTPS port of --http-listen, e.g. 443 for
    /// clients behind a 443-only firewall (RFC 7443). Needs a certificate.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_TURN_ON_HTTP_PORT", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub turn_on_http_port: bool,

    /// Lifetime of TURN credentials handed out by `/api/ice-servers`, seconds.
    #[arg(
        long,
        value_name = "SECS",
        env = "SWITCHBOARD_ICE_TTL",
        default_value_t = 86_400
    )]
    pub ice_ttl: u64,

    /// Requests to `/api/ice-servers` per minute per source IP (an IPv6 /64 counts as
    /// one), in bursts of as many; more get 429. 0 = unlimited.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_ICE_RATE",
        default_value_t = 60
    )]
    pub ice_rate: u32,

    /// Host name (or IP) put in the `stun:`/`turn:`/`turns:` URIs of `/api/ice-servers`,
    /// e.g. the name on the TLS certificate. [default: the relay's public IP]
    #[arg(long, value_name = "HOST", env = "SWITCHBOARD_ICE_HOST")]
    pub ice_host: Option<String>,
}

/// The validated `[http]` section (present when HTTP is on).
#[derive(Clone)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// `--turn-on-http-port`: the HTTPS listener takes TURN too (HTTPS is on).
    pub turn: bool,
    /// HTTPS when a certificate is configured (ALPN `stun.turn` first with `turn`).
    pub https: Option<Arc<rustls::ServerConfig>>,
    /// Lifetime of credentials from `/api/ice-servers`.
    pub ice_ttl: u64,
    /// `/api/ice-servers` requests per minute per source.
    pub ice_rate: u32,
    /// `--ice-host`, IPv6 in brackets.
    pub ice_host: Option<String>,
}

impl HttpSettings {
    /// With `running` (a reload), the address and the shared-port choice stay those the
    /// server started with: the listener is bound.
    pub fn validate(
        &self,
        tls: Option<&TlsMaterial>,
        running: Option<&HttpConfig>,
    ) -> Result<Option<HttpConfig>, ConfigError> {
        if self.ice_rate > 1_000_000 {
            return Err(ConfigError::new(
                "ice-rate",
                format!(
                    "{} requests a minute is not a limit; use 0 for none",
                    self.ice_rate
                ),
            ));
        }
        if self.ice_ttl == 0 {
            return Err(ConfigError::new("ice-ttl", "must be at least 1 second"));
        }
        let ice_host = match &self.ice_host {
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
        };
        let turn = running.map_or(self.turn_on_http_port, |r| r.turn);
        let addr = match running {
            Some(r) => r.addr,
            None => match self.http_listen.0 {
                Some(a) => a,
                None if turn => {
                    return Err(ConfigError::new(
                        "turn-on-http-port",
                        "needs --http-listen (it is `off`)",
                    ))
                }
                None => return Ok(None),
            },
        };
        if turn && tls.is_none() {
            return Err(ConfigError::new(
                "turn-on-http-port",
                "needs a certificate: --cert and --pkey, or --tls-self-signed",
            ));
        }
        Ok(Some(HttpConfig {
            addr,
            turn,
            https: tls.map(|m| crate::tls::https_config(m, turn)).transpose()?,
            ice_ttl: self.ice_ttl,
            ice_rate: self.ice_rate,
            ice_host,
        }))
    }
}
