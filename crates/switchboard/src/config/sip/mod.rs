//! `[sip]`: the SIP gateway. Where it listens (`--sip-listen`, off by default: a gateway
//! needs a decision about who may call in), what it writes in Via/Contact/SDP, its RTP
//! port range, the accounts it registers at registrars, the rules that map a called
//! user or number to a room, and who may call in.
//!
//! Accounts (`account.rs`) and the trunk (`trunk.rs`) are where calls out go; this file
//! has the options, the inbound side and what they share.
//!
//! Accounts, routes and inbound users are repeatable one-line values, so that the
//! command line, `SWITCHBOARD_SIP_*` variables and the TOML file (as arrays) all carry
//! them through the one clap declaration per key.

mod account;
mod federation;
mod trunk;

pub use account::AccountConfig;
pub use federation::FederationPeer;
pub use trunk::TrunkConfig;

use crate::config::listen::Listen;
use crate::error::ConfigError;
use clap::Args;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use switchboard_sip::transaction::Transport;

#[derive(Args, Debug, Clone)]
#[group(id = "sip")]
pub struct SipSettings {
    /// UDP address of the SIP gateway (`IP:PORT`, e.g. 0.0.0.0:5060), or `off`.
    #[arg(
        long,
        value_name = "IP:PORT|off",
        env = "SWITCHBOARD_SIP_LISTEN",
        default_value = "off"
    )]
    pub sip_listen: Listen,

    /// Also take SIP over TCP on the --sip-listen address.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_SIP_TCP", num_args = 0..=1,
          default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub sip_tcp: bool,

    /// SIP over TLS (`IP:PORT`, e.g. 0.0.0.0:5061) with the server's certificate
    /// (--cert/--pkey, or the generated one), or `off`.
    #[arg(
        long,
        value_name = "IP:PORT|off",
        env = "SWITCHBOARD_SIP_TLS_LISTEN",
        default_value = "off"
    )]
    pub sip_tls_listen: Listen,

    /// SIP over WebSocket (RFC 7118, subprotocol `sip`) at `/sip` on the HTTP port, for
    /// JsSIP and SIP.js clients.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_SIP_WS", num_args = 0..=1,
          default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub sip_ws: bool,

    /// Host (and port) written in Via and Contact and the IP in SDP, when the gateway is
    /// reached at another address than it listens on (NAT, 0.0.0.0). [default: the
    /// listen address]
    #[arg(long, value_name = "IP[:PORT]", env = "SWITCHBOARD_SIP_ADVERTISE")]
    pub sip_advertise: Option<String>,

    /// UDP ports for the calls' RTP, `LOW-HIGH` (one port per call, RTCP muxed or on the
    /// next port: an even/odd pair).
    #[arg(
        long,
        value_name = "LOW-HIGH",
        env = "SWITCHBOARD_SIP_RTP_PORTS",
        default_value = "20000-20999"
    )]
    pub sip_rtp_ports: String,

    /// Register at a registrar as `USER:PASSWORD@HOST[:PORT]` (repeatable): calls to that
    /// account reach the gateway. Append `;expires=SECS` (default 600), `;room=ROOM`
    /// (calls to this account go to ROOM; else --sip-route decides) or
    /// `;transport=tcp|tls` (register, and call through it, over TCP or TLS) or
    /// `;srtp=sdes|dtls` (calls out through it offer SDES-SRTP, or DTLS-SRTP with ICE,
    /// only).
    #[arg(
        long,
        value_name = "USER:PASSWORD@HOST[:PORT]",
        env = "SWITCHBOARD_SIP_ACCOUNT",
        value_delimiter = ','
    )]
    pub sip_account: Vec<String>,

    /// Inbound routing rule `CALLED=ROOM` (repeatable, first match wins): a call whose
    /// Request-URI user is CALLED goes to ROOM; CALLED `*` matches every call. ROOM `@pin`
    /// answers the call and asks for a PIN (DTMF, ended with `#`) that --sip-pin maps to
    /// a room.
    #[arg(
        long,
        value_name = "CALLED=ROOM",
        env = "SWITCHBOARD_SIP_ROUTE",
        value_delimiter = ','
    )]
    pub sip_route: Vec<String>,

    /// A room callers reach by PIN, `PIN=ROOM` (repeatable; PINs of 1-16 digits).
    #[arg(
        long,
        value_name = "PIN=ROOM",
        env = "SWITCHBOARD_SIP_PIN",
        value_delimiter = ','
    )]
    pub sip_pin: Vec<String>,

    /// A call to `sip:ROOM@gateway` that no --sip-route matches joins room ROOM. `false`:
    /// such calls are refused (404).
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_SIP_DIRECT_ROOMS", num_args = 0..=1,
          default_missing_value = "true", default_value_t = true, action = clap::ArgAction::Set)]
    pub sip_direct_rooms: bool,

    /// Callers must authenticate (digest) as one of these `USER:PASSWORD` (repeatable).
    /// [default: anyone may call in]
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "SWITCHBOARD_SIP_AUTH",
        value_delimiter = ','
    )]
    pub sip_auth: Vec<String>,

    /// The SIP trunk phone numbers are called through (`HOST[:PORT]`, the provider's
    /// proxy; append `;transport=tcp|tls` to reach it over TCP or TLS). [default: none;
    /// numbers then go to the first --sip-account's registrar]
    #[arg(long, value_name = "HOST[:PORT]", env = "SWITCHBOARD_SIP_TRUNK")]
    pub sip_trunk: Option<String>,

    /// PEM file of extra CA certificates the gateway trusts when it connects over TLS
    /// (trunks, registrars, `sips:` targets), for private CAs; the webpki roots are
    /// always trusted, and host names are always verified. [default: none]
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_SIP_TLS_CA")]
    pub sip_tls_ca: Option<PathBuf>,

    /// Media encryption of calls through the trunk: `off` (plain RTP), `sdes` (RTP/SAVP
    /// with an `a=crypto` key, RFC 4568) or `dtls` (DTLS-SRTP with ICE, RFC 5763); a far
    /// end that answers without it is hung up.
    #[arg(
        long,
        value_name = "off|sdes|dtls",
        env = "SWITCHBOARD_SIP_TRUNK_SRTP",
        default_value = "off"
    )]
    pub sip_trunk_srtp: String,

    /// Digest credentials `USER:PASSWORD` the trunk challenges for.
    #[arg(long, value_name = "USER:PASSWORD", env = "SWITCHBOARD_SIP_TRUNK_AUTH")]
    pub sip_trunk_auth: Option<String>,

    /// The From URI of calls through the trunk (the number the trunk lets us present),
    /// e.g. `sip:+4930123456@trunk.example.net` (default: `switchboard` at the --sip-advertise
    /// address).
    #[arg(long, value_name = "URI", env = "SWITCHBOARD_SIP_TRUNK_FROM")]
    pub sip_trunk_from: Option<String>,

    /// Also send the From URI as P-Asserted-Identity (RFC 3325), as many trunks require.
    #[arg(long, value_name = "BOOL", env = "SWITCHBOARD_SIP_TRUNK_PAI", num_args = 0..=1,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub sip_trunk_pai: bool,

    /// Country calling code for E.164 normalisation of dialled numbers: with `49`,
    /// `030 123456` becomes `+4930123456` and `0049…` becomes `+49…`. [default: numbers
    /// are sent as dialled, without spaces]
    #[arg(long, value_name = "CC", env = "SWITCHBOARD_SIP_TRUNK_COUNTRY")]
    pub sip_trunk_country: Option<String>,

    /// How a call's audio reaches the room's SFU: `local` (in-process, no SRTP or socket
    /// on the way) or `webrtc` (the call's room leg is a WebRTC peer of the SFU over
    /// loopback, like a browser). Both negotiate through signaling alike.
    #[arg(
        long,
        value_name = "local|webrtc",
        env = "SWITCHBOARD_SIP_ROOM_MEDIA",
        default_value = "local"
    )]
    pub sip_room_media: String,

    /// Seconds without RTP from a phone (not on hold) after which its call is hung up:
    /// the far end vanished.
    #[arg(
        long,
        value_name = "SECS",
        env = "SWITCHBOARD_SIP_RTP_TIMEOUT",
        default_value_t = 30
    )]
    pub sip_rtp_timeout: u64,

    /// SIP timer T1 in milliseconds, the round-trip estimate every retransmission and
    /// transaction timer derives from (RFC 3261 §17: 500 ms; lower on a LAN ends
    /// transactions sooner: a finished BYE is remembered 64×T1).
    #[arg(
        long,
        value_name = "MS",
        env = "SWITCHBOARD_SIP_TIMER_T1",
        default_value_t = 500
    )]
    pub sip_timer_t1: u64,

    /// SIP messages one IP address may send per second (bursts of twice that); more are
    /// dropped and counted. A trunk that sends many calls from one address needs more;
    /// 0 = no bound.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SIP_RATE_LIMIT",
        default_value_t = 200
    )]
    pub sip_rate_limit: u32,

    /// Calls at once (in and out); the next INVITE gets 486 Busy Here.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_SIP_MAX_CALLS",
        default_value_t = 100
    )]
    pub sip_max_calls: usize,

    /// Where direct calls to users of another Switchboard's call domain go over SIP,
    /// `DOMAIN=HOST[:PORT][;transport=tcp|tls]` (repeatable). [default: the domain's own
    /// name, port 5060, UDP]
    #[arg(
        long,
        value_name = "DOMAIN=HOST[:PORT]",
        env = "SWITCHBOARD_SIP_FEDERATION",
        value_delimiter = ','
    )]
    pub sip_federation: Vec<String>,
}

/// An inbound routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// None = `*`.
    pub called: Option<String>,
    /// The room, or [`PIN_ROOM`]: ask for a PIN.
    pub room: String,
}

/// The ROOM of a `--sip-route` that asks the caller for a PIN (`@` is in no room name).
pub const PIN_ROOM: &str = "@pin";

/// The gateway's validated settings (None when off).
#[derive(Clone, Debug)]
pub struct SipConfig {
    pub listen: SocketAddr,
    pub tcp: bool,
    pub tls_listen: Option<SocketAddr>,
    pub ws: bool,
    /// `host[:port]` for Via/Contact.
    pub advertise: String,
    /// IP in SDP.
    pub media_ip: IpAddr,
    pub rtp_ports: RangeInclusive<u16>,
    pub accounts: Vec<AccountConfig>,
    pub routes: Vec<RouteRule>,
    /// `--sip-pin`: (PIN, room).
    pub pins: Vec<(String, String)>,
    pub direct_rooms: bool,
    pub auth: Vec<(String, String)>,
    pub trunk: Option<TrunkConfig>,
    pub rtp_timeout: std::time::Duration,
    /// `--sip-room-media local`: room legs exchange RTP with the SFU in-process.
    pub room_media_local: bool,
    pub t1: std::time::Duration,
    pub rate_limit: u32,
    pub max_calls: usize,
    /// `--sip-tls-ca`: extra CAs for outgoing TLS.
    pub tls_ca: Option<PathBuf>,
    /// `--sip-federation`: where other call domains' SIP services are.
    pub federation: Vec<FederationPeer>,
}

fn err(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(option, message)
}

/// `USER:PASSWORD` (the password may contain `:`).
fn user_password(option: &'static str, s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(err(option, format!("`{s}` is not USER:PASSWORD"))),
    }
}

/// `;transport=udp|tcp|tls` of an account or the trunk.
fn parse_transport(option: &'static str, v: &str) -> Result<Transport, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        "tls" => Ok(Transport::Tls),
        _ => Err(err(
            option,
            format!("transport `{v}` is not udp, tcp or tls"),
        )),
    }
}

/// What a call out offers for its media.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP (`RTP/AVP`): what most trunks and phones take.
    #[default]
    Off,
    /// SDES-SRTP only (`RTP/SAVP` with `a=crypto`, RFC 4568): an answer without a key
    /// we can use ends the call.
    Sdes,
    /// DTLS-SRTP with ICE only (`UDP/TLS/RTP/SAVPF`, `a=fingerprint`, ICE-lite; RFC 5763,
    /// RFC 8839), as baresip with `dtls_srtp` or a WebRTC-capable PBX insist on: an answer
    /// without it ends the call.
    Dtls,
}

impl SrtpMode {
    /// `off`, `sdes` or `dtls`, in any case (`;srtp=` of an account or a dialled target,
    /// `--sip-trunk-srtp`).
    pub fn parse(v: &str) -> Option<SrtpMode> {
        match v.to_ascii_lowercase().as_str() {
            "off" => Some(SrtpMode::Off),
            "sdes" => Some(SrtpMode::Sdes),
            "dtls" => Some(SrtpMode::Dtls),
            _ => None,
        }
    }
}

fn parse_srtp(option: &'static str, v: &str) -> Result<SrtpMode, ConfigError> {
    SrtpMode::parse(v).ok_or_else(|| err(option, format!("srtp `{v}` is not off, sdes or dtls")))
}

/// The port a transport's host is reached on when none is written (RFC 3263 §4.2).
pub fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Tls | Transport::Wss => 5061,
        _ => 5060,
    }
}

/// `HOST[:PORT]` (the transport's default port) resolved now: a name that does not
/// resolve at start is a configuration error, not a call failure later.
fn resolve(
    option: &'static str,
    host: &str,
    transport: Transport,
) -> Result<SocketAddr, ConfigError> {
    let with_port = if host.parse::<SocketAddr>().is_ok() || host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{}", default_port(transport))
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| err(option, format!("cannot resolve `{host}`")))
}

/// The signaling hub's room names: 1–64 of `A-Za-z0-9_-.`.
pub fn valid_room(r: &str) -> bool {
    (1..=64).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn parse_route(s: &str) -> Result<RouteRule, ConfigError> {
    let (called, room) = s
        .split_once('=')
        .ok_or_else(|| err("sip-route", format!("`{s}` is not CALLED=ROOM")))?;
    if called.is_empty() || !(valid_room(room) || room == PIN_ROOM) {
        return Err(err(
            "sip-route",
            format!("`{s}`: CALLED must not be empty and ROOM must be 1-64 of A-Za-z0-9_-."),
        ));
    }
    Ok(RouteRule {
        called: (called != "*").then(|| called.to_string()),
        room: room.to_string(),
    })
}

fn routes_ask_pin(routes: &[RouteRule]) -> bool {
    routes.iter().any(|r| r.room == PIN_ROOM)
}

fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = || {
        err(
            "sip-rtp-ports",
            format!("`{s}` is not LOW-HIGH (1024-65535)"),
        )
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || hi < lo || hi - lo < 1 {
        return Err(bad());
    }
    Ok(lo..=hi)
}

impl SipSettings {
    pub fn validate(&self) -> Result<Option<SipConfig>, ConfigError> {
        let Some(listen) = self.sip_listen.0 else {
            return Ok(None);
        };
        let (advertise, media_ip) = match &self.sip_advertise {
            Some(a) => {
                let ip = a
                    .parse::<SocketAddr>()
                    .map(|s| s.ip())
                    .or_else(|_| a.parse::<IpAddr>())
                    .map_err(|_| err("sip-advertise", format!("`{a}` is not IP or IP:PORT")))?;
                if ip.is_unspecified() {
                    return Err(err("sip-advertise", "0.0.0.0/:: cannot be reached"));
                }
                let host = if a.parse::<SocketAddr>().is_ok() {
                    a.clone()
                } else {
                    SocketAddr::new(ip, listen.port()).to_string()
                };
                (host, ip)
            }
            None if listen.ip().is_unspecified() => {
                return Err(err(
                    "sip-advertise",
                    "required when --sip-listen binds 0.0.0.0 or :: (the address peers reach)",
                ))
            }
            // Port 0 is resolved by the service once bound.
            None => (listen.to_string(), listen.ip()),
        };
        let rtp_ports = parse_ports(&self.sip_rtp_ports)?;
        let accounts = self
            .sip_account
            .iter()
            .map(|a| account::parse_account(a))
            .collect::<Result<_, _>>()?;
        let routes: Vec<RouteRule> = self
            .sip_route
            .iter()
            .map(|r| parse_route(r))
            .collect::<Result<_, _>>()?;
        let pins: Vec<(String, String)> = self
            .sip_pin
            .iter()
            .map(|p| match p.split_once('=') {
                Some((pin, room))
                    if (1..=16).contains(&pin.len())
                        && pin.bytes().all(|b| b.is_ascii_digit())
                        && valid_room(room) =>
                {
                    Ok((pin.to_string(), room.to_string()))
                }
                _ => Err(err(
                    "sip-pin",
                    format!("`{p}` is not PIN=ROOM (1-16 digits = a room name)"),
                )),
            })
            .collect::<Result<_, _>>()?;
        if routes_ask_pin(&routes) && pins.is_empty() {
            return Err(err(
                "sip-route",
                "a route to @pin needs at least one --sip-pin",
            ));
        }
        let auth = self
            .sip_auth
            .iter()
            .map(|a| user_password("sip-auth", a))
            .collect::<Result<_, _>>()?;
        let trunk = trunk::parse_trunk(self)?;
        if let Some(ca) = &self.sip_tls_ca {
            if !ca.is_file() {
                return Err(err(
                    "sip-tls-ca",
                    format!("`{}` is not a readable file", ca.display()),
                ));
            }
        }
        if !(50..=5000).contains(&self.sip_timer_t1) {
            return Err(err("sip-timer-t1", "not between 50 and 5000 ms"));
        }
        let room_media_local = match self.sip_room_media.as_str() {
            "local" => true,
            "webrtc" => false,
            other => {
                return Err(err(
                    "sip-room-media",
                    format!("`{other}` is not local or webrtc"),
                ))
            }
        };
        if !(2..=3600).contains(&self.sip_rtp_timeout) {
            return Err(err("sip-rtp-timeout", "not between 2 and 3600 s"));
        }
        if !(1..=100_000).contains(&self.sip_max_calls) {
            return Err(err("sip-max-calls", "not between 1 and 100000"));
        }
        Ok(Some(SipConfig {
            listen,
            tcp: self.sip_tcp,
            tls_listen: self.sip_tls_listen.0,
            ws: self.sip_ws,
            advertise,
            media_ip,
            rtp_ports,
            accounts,
            routes,
            pins,
            direct_rooms: self.sip_direct_rooms,
            auth,
            trunk,
            rtp_timeout: std::time::Duration::from_secs(self.sip_rtp_timeout),
            room_media_local,
            t1: std::time::Duration::from_millis(self.sip_timer_t1),
            rate_limit: self.sip_rate_limit,
            max_calls: self.sip_max_calls,
            tls_ca: self.sip_tls_ca.clone(),
            federation: federation::parse_peers(&self.sip_federation)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_ports_parse() {
        assert_eq!(
            parse_route("+4930123=sales").unwrap(),
            RouteRule {
                called: Some("+4930123".into()),
                room: "sales".into()
            }
        );
        assert_eq!(parse_route("*=lobby").unwrap().called, None);
        assert!(parse_route("=lobby").is_err());
        assert!(parse_route("x=").is_err());
        assert_eq!(parse_ports("20000-20999").unwrap(), 20000..=20999);
        for bad in ["20000", "0-100", "30000-20000", "a-b", "5000-5000"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}
