//! Validation: turn [`Settings`] into what the services run with, section by section, or
//! a clear error naming the offending option (the binary exits with code 2). What
//! crosses sections is settled here: the certificate both TURN and HTTPS use (and the
//! addresses a generated one names), and what a reload keeps from the running server.

use crate::config::{
    calls::CallsConfig, cluster::ClusterConfig, federation::FederationConfig, http::HttpConfig,
    process::ProcessConfig, sfu::SfuConfig, signal::SignalConfig, sip::SipConfig, turn::TurnConfig,
};
use crate::error::ConfigError;
use crate::settings::Settings;
use crate::tls::TlsMaterial;
use std::net::SocketAddr;

/// Everything `serve` needs, validated.
pub struct Plan {
    pub turn: TurnConfig,
    /// The certificate TURN over TLS and HTTPS share (kept across reloads when generated).
    pub tls: Option<TlsMaterial>,
    /// None when `--http-listen off`.
    pub http: Option<HttpConfig>,
    pub signal: SignalConfig,
    /// The SFU's settings; the hub's part (threshold, capacity) is in `signal.hub` too.
    pub sfu: SfuConfig,
    /// The SIP gateway (None when `--sip-listen off`). A reload keeps the running one.
    pub sip: Option<SipConfig>,
    /// Direct calls; `signal.hub` has its part (line users, call room capacity).
    pub calls: CallsConfig,
    /// Calls with other servers (XMPP). A reload keeps the running federation.
    pub federation: FederationConfig,
    /// The cluster this node joins (None: a single node). A reload keeps it.
    pub cluster: Option<ClusterConfig>,
    pub metrics: Option<SocketAddr>,
    pub process: ProcessConfig,
}

/// Validate `s`. With `running` (a SIGHUP reload), what is bound stays as it is and a
/// generated certificate is kept; see each section's `validate`.
pub fn build(s: &Settings, running: Option<&Plan>) -> Result<Plan, ConfigError> {
    let http_ip = match running {
        Some(r) => r.http.as_ref().map(|h| h.addr.ip()),
        None => s.http.http_listen.0.map(|a| a.ip()),
    };
    // A generated certificate names the addresses clients reach us on.
    let mut names = running.map_or_else(
        || s.turn.listening_ip.clone(),
        |r| r.turn.listen_ips.clone(),
    );
    names.extend(http_ip);
    let generated = running
        .and_then(|r| r.tls.as_ref())
        .filter(|m| m.self_signed);
    let tls = crate::tls::material(&s.tls.source(), generated, &names)?;
    let turn = s.turn.validate(tls.as_ref(), running.map(|r| &r.turn))?;
    let http = match running {
        // HTTP was off at start: nothing listens that could take new settings.
        Some(r) if r.http.is_none() => None,
        _ => s
            .http
            .validate(tls.as_ref(), running.and_then(|r| r.http.as_ref()))?,
    };
    let mut signal = s.signal.validate()?;
    // The SFU binds, without --sfu-bind, where TURN listens first.
    let sfu_ip = turn
        .listen_ips
        .first()
        .copied()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    let mut sfu = s.sfu.validate(sfu_ip)?;
    if let Some(r) = running {
        // What is bound stays: a reload changes the threshold and capacity only.
        sfu.run.clone_from(&r.sfu.run);
        if sfu.run.is_none() {
            // No SFU was started, so no room may turn SFU either.
            sfu.threshold = None;
        }
    }
    signal.hub.sfu_threshold = sfu.threshold;
    signal.hub.sfu_room_capacity = sfu.room_capacity;
    let mut calls = s.calls.validate()?;
    if signal.hub.token_secrets.is_empty() {
        signal.hub.line_users.clone_from(&calls.users);
    } else {
        // Room tokens name the users: `--call-user` plays no part.
        calls.users.clear();
        calls.book.known_users = None;
    }
    signal.hub.call_room_capacity = calls.room_capacity;
    let federation = match running {
        Some(r) => r.federation.clone(),
        None => s.federation.validate()?,
    };
    calls.book.remote_dials_per_minute = federation.rate;
    let sip = match running {
        // What is bound and registered stays: the gateway takes no reload yet.
        Some(r) => r.sip.clone(),
        None => s.sip.validate()?,
    };
    // A link carries the allowed domains: XMPP, or SIP on the gateway's agent.
    if federation.xmpp.is_some() || sip.is_some() {
        calls.book.federated_domains.clone_from(&federation.allow);
    }
    Ok(Plan {
        turn,
        tls,
        http,
        signal,
        sfu,
        sip,
        calls,
        federation,
        cluster: match running {
            Some(r) => r.cluster.clone(),
            None => s.cluster.validate()?,
        },
        metrics: match running {
            Some(r) => r.metrics,
            None => s.metrics.metrics_listen.0,
        },
        process: s.process.validate()?,
    })
}
