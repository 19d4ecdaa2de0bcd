//! Where an outbound call goes (`POST /api/sip/calls`): what the app typed becomes a
//! Request-URI, a next hop, a From, credentials and extra headers.
//!
//! - `sip:user@host[:port]` (or `sips:`): through the `--sip-account` whose registrar
//!   host it names (its credentials and AOR as From), else straight to that host, over
//!   the URI's `;transport=` (TLS for `sips:`, RFC 3261 §26.2.2);
//! - a phone number (`+`, digits, spaces, `-`, `.`, `(`, `)`): through `--sip-trunk`
//!   (E.164 by `--sip-trunk-country`, the trunk's From and P-Asserted-Identity), else
//!   through the first account's registrar;
//! - a bare user (`bob`): `sip:bob@<first account's host>` through that account.
//!
//! Media: plain RTP, or SDES-SRTP only (`RTP/SAVP`) when the target says `;srtp=sdes`
//! (taken off the URI before it goes out: it is ours, not the far end's), when it is a
//! `sips:` URI (the caller asked for a secure call: its keys travel on the TLS hop), or
//! when the account or trunk it goes through is configured so; DTLS-SRTP with ICE
//! (`UDP/TLS/RTP/SAVPF`) the same way with `;srtp=dtls`. `;srtp=off` overrides.
//!
//! Pure but for the name lookup of a direct host, which the caller does.

use crate::config::sip::{default_port, AccountConfig, SipConfig, SrtpMode};
use std::net::SocketAddr;
use switchboard_sip::transaction::Transport;
use switchboard_sip::uri::{Host, Scheme, Uri};

/// The next hop: resolved already (a configured proxy), or a host to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    Addr(SocketAddr),
    Lookup(String, u16),
}

/// A dialled target, ready for `switchboard_sip::ua::Outbound`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub request_uri: String,
    pub next_hop: NextHop,
    /// The From URI (without display name).
    pub from: String,
    pub credentials: Option<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// How the next hop is reached.
    pub transport: Transport,
    /// The name a TLS next hop's certificate must carry (the host as written).
    pub tls_name: String,
    /// What the offer proposes for media.
    pub srtp: SrtpMode,
}

/// `host[:port]` (or `[v6]:port`) as written, without the port: the name TLS verifies.
pub fn host_name(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h.into(),
        _ => host.to_string(),
    }
}

fn via_account(a: &AccountConfig, request_uri: String) -> Target {
    Target {
        request_uri,
        next_hop: NextHop::Addr(a.registrar),
        from: format!("sip:{}@{}", a.user, a.host),
        credentials: Some((a.user.clone(), a.password.clone())),
        headers: Vec::new(),
        transport: a.transport,
        tls_name: host_name(&a.host),
        srtp: a.srtp,
    }
}

/// A dialled number without separators, in E.164 when a country code is given.
pub fn normalise_number(number: &str, country: Option<&str>) -> Option<String> {
    let digits: String = number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let (plus, rest) = match digits.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, digits.as_str()),
    };
    if rest.is_empty() || rest.len() > 20 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match (plus, country) {
        (true, _) => format!("+{rest}"),
        (false, Some(cc)) => match rest.strip_prefix("00") {
            Some(intl) => format!("+{intl}"),
            None => match rest.strip_prefix('0') {
                Some(national) => format!("+{cc}{national}"),
                // A local number without a trunk prefix stays as dialled.
                None => rest.to_string(),
            },
        },
        (false, None) => rest.to_string(),
    })
}

fn looks_like_number(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')'))
}

/// Resolve what the app dialled, or say why it cannot be called.
pub fn target(cfg: &SipConfig, to: &str) -> Result<Target, String> {
    let to = to.trim();
    if to.is_empty() || to.len() > 256 {
        return Err("the target is empty or longer than 256 characters".into());
    }
    if to.starts_with("sip:") || to.starts_with("sips:") {
        let mut uri = Uri::parse(to).map_err(|e| format!("`{to}` is not a SIP URI: {e}"))?;
        let srtp = match uri.params.get("srtp") {
            None => None,
            Some(v) => Some(SrtpMode::parse(v).ok_or_else(|| {
                format!("`{to}`: srtp `{v}` cannot be dialled (off, sdes or dtls)")
            })?),
        };
        // `;srtp=` is the gateway's, not the far end's: the URI goes out without it.
        let request_uri = if uri
            .params
            .0
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("srtp"))
        {
            uri.params
                .0
                .retain(|(n, _)| !n.eq_ignore_ascii_case("srtp"));
            uri.to_string()
        } else {
            to.to_string()
        };
        // The URI's word, else the account's.
        let srtp_for = |configured: SrtpMode| srtp.unwrap_or(configured);
        let transport = match uri.params.get("transport").map(str::to_ascii_lowercase) {
            _ if uri.scheme == Scheme::Sips => Transport::Tls,
            None => Transport::Udp,
            Some(t) if t == "udp" => Transport::Udp,
            Some(t) if t == "tcp" => Transport::Tcp,
            Some(t) if t == "tls" => Transport::Tls,
            Some(t) => {
                return Err(format!(
                    "`{to}`: transport `{t}` cannot be dialled (udp, tcp or tls)"
                ))
            }
        };
        let host = uri.host.to_string();
        if matches!(uri.host, Host::None) || uri.user.is_none() {
            return Err(format!("`{to}` names no user and host"));
        }
        if let Some(a) = cfg
            .accounts
            .iter()
            .find(|a| a.host.split(':').next() == Some(host.as_str()) || a.host == host)
        {
            let mut t = via_account(a, request_uri);
            t.srtp = srtp_for(a.srtp);
            return Ok(t);
        }
        let port = uri.port.unwrap_or(default_port(transport));
        let next_hop = match &uri.host {
            Host::V4(ip) => NextHop::Addr(SocketAddr::new((*ip).into(), port)),
            Host::V6(ip) => NextHop::Addr(SocketAddr::new((*ip).into(), port)),
            _ => NextHop::Lookup(host.clone(), port),
        };
        return Ok(Target {
            request_uri,
            next_hop,
            from: format!("sip:switchboard@{}", cfg.advertise),
            credentials: None,
            headers: Vec::new(),
            transport,
            tls_name: host_name(&host),
            srtp: srtp_for(SrtpMode::Off),
        });
    }
    if looks_like_number(to) {
        if let Some(t) = &cfg.trunk {
            let number = normalise_number(to, t.country.as_deref())
                .ok_or_else(|| format!("`{to}` is not a phone number"))?;
            let from = t
                .from
                .clone()
                .unwrap_or_else(|| format!("sip:switchboard@{}", cfg.advertise));
            let mut headers = Vec::new();
            if t.pai {
                headers.push(("P-Asserted-Identity".to_string(), format!("<{from}>")));
            }
            return Ok(Target {
                request_uri: format!("sip:{number}@{};user=phone", t.host),
                next_hop: NextHop::Addr(t.proxy),
                from,
                credentials: t.auth.clone(),
                headers,
                transport: t.transport,
                tls_name: host_name(&t.host),
                srtp: t.srtp,
            });
        }
        let a = cfg
            .accounts
            .first()
            .ok_or("no --sip-trunk or --sip-account is configured to call numbers through")?;
        let number =
            normalise_number(to, None).ok_or_else(|| format!("`{to}` is not a phone number"))?;
        return Ok(via_account(a, format!("sip:{number}@{}", a.host)));
    }
    let user_ok = to
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'+".contains(&b));
    if !user_ok {
        return Err(format!(
            "`{to}` is not a SIP URI (sip:user@host), a phone number or a user name"
        ));
    }
    let a = cfg.accounts.first().ok_or_else(|| {
        format!("`{to}` is a bare user name, and no --sip-account says where users live")
    })?;
    Ok(via_account(a, format!("sip:{to}@{}", a.host)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sip::TrunkConfig;

    fn cfg(trunk: bool) -> SipConfig {
        SipConfig {
            listen: "127.0.0.1:5060".parse().unwrap(),
            tcp: false,
            tls_listen: None,
            ws: false,
            advertise: "127.0.0.1:5060".into(),
            media_ip: "127.0.0.1".parse().unwrap(),
            rtp_ports: 20000..=20009,
            accounts: vec![AccountConfig {
                user: "alice".into(),
                password: "alicepw".into(),
                host: "127.0.0.1:5070".into(),
                registrar: "127.0.0.1:5070".parse().unwrap(),
                transport: Transport::Udp,
                expires: 600,
                room: None,
                srtp: SrtpMode::Off,
            }],
            routes: Vec::new(),
            pins: Vec::new(),
            direct_rooms: true,
            auth: Vec::new(),
            trunk: trunk.then(|| TrunkConfig {
                host: "trunk.example.net".into(),
                proxy: "192.0.2.7:5060".parse().unwrap(),
                transport: Transport::Tcp,
                auth: Some(("acct".into(), "pw".into())),
                from: Some("sip:+4930999@trunk.example.net".into()),
                pai: true,
                country: Some("49".into()),
                srtp: SrtpMode::Sdes,
            }),
            rtp_timeout: std::time::Duration::from_secs(30),
            room_media_local: true,
            t1: std::time::Duration::from_millis(500),
            rate_limit: 200,
            max_calls: 10,
            tls_ca: None,
            federation: Vec::new(),
        }
    }

    #[test]
    fn numbers_normalise() {
        assert_eq!(
            normalise_number("030 123-456", Some("49")).as_deref(),
            Some("+4930123456")
        );
        assert_eq!(
            normalise_number("0049 30 1", Some("49")).as_deref(),
            Some("+49301")
        );
        assert_eq!(
            normalise_number("+1 (555) 010", Some("49")).as_deref(),
            Some("+1555010")
        );
        assert_eq!(normalise_number("112", Some("49")).as_deref(), Some("112"));
        assert_eq!(normalise_number("030 1", None).as_deref(), Some("0301"));
        assert_eq!(normalise_number("+", None), None);
        assert_eq!(normalise_number("12a", None), None);
    }

    #[test]
    fn numbers_go_through_the_trunk() {
        let t = target(&cfg(true), "030 123456").unwrap();
        assert_eq!(
            t.request_uri,
            "sip:+4930123456@trunk.example.net;user=phone"
        );
        assert_eq!(t.next_hop, NextHop::Addr("192.0.2.7:5060".parse().unwrap()));
        assert_eq!(t.from, "sip:+4930999@trunk.example.net");
        assert_eq!(t.credentials, Some(("acct".into(), "pw".into())));
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.tls_name, "trunk.example.net");
        assert_eq!(t.srtp, SrtpMode::Sdes);
        assert_eq!(
            t.headers,
            vec![(
                "P-Asserted-Identity".into(),
                "<sip:+4930999@trunk.example.net>".into()
            )]
        );
        // Without a trunk: through the account's registrar, as its user.
        let t = target(&cfg(false), "+4930123").unwrap();
        assert_eq!(t.request_uri, "sip:+4930123@127.0.0.1:5070");
        assert_eq!(t.from, "sip:alice@127.0.0.1:5070");
    }

    #[test]
    fn sip_uris_and_users() {
        let c = cfg(false);
        // The account's registrar host: through it, authenticated as the account.
        let t = target(&c, "sip:bob@127.0.0.1:5070").unwrap();
        assert_eq!(t.next_hop, NextHop::Addr("127.0.0.1:5070".parse().unwrap()));
        assert!(t.credentials.is_some());
        // Another host: straight there.
        let t = target(&c, "sip:carol@127.0.0.2:5080").unwrap();
        assert_eq!(t.next_hop, NextHop::Addr("127.0.0.2:5080".parse().unwrap()));
        assert_eq!(t.credentials, None);
        let t = target(&c, "sip:dave@example.com").unwrap();
        assert_eq!(t.next_hop, NextHop::Lookup("example.com".into(), 5060));
        assert_eq!(t.transport, Transport::Udp);
        // Transports: the URI's parameter; sips: is TLS, on 5061 unless a port is given.
        let t = target(&c, "sip:dave@example.com;transport=tcp").unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        let t = target(&c, "sips:dave@example.com").unwrap();
        assert_eq!(t.transport, Transport::Tls);
        assert_eq!(t.next_hop, NextHop::Lookup("example.com".into(), 5061));
        assert_eq!(t.tls_name, "example.com");
        let t = target(&c, "sip:erin@127.0.0.2:5081;transport=TLS").unwrap();
        assert_eq!(t.transport, Transport::Tls);
        assert_eq!(t.tls_name, "127.0.0.2");
        assert_eq!(host_name("[::1]:5061"), "::1");
        assert_eq!(host_name("example.com:5061"), "example.com");
        let t = target(&c, "bob").unwrap();
        assert_eq!(t.request_uri, "sip:bob@127.0.0.1:5070");
        for bad in [
            "",
            "not a uri ::",
            "sip:",
            "sip:bob@example.com;transport=sctp",
            "sip:example.com",
        ] {
            assert!(target(&c, bad).is_err(), "{bad}");
        }
        // Media: plain RTP unless the target or the account say SDES (sips: alone does not).
        assert_eq!(
            target(&c, "sip:dave@example.com").unwrap().srtp,
            SrtpMode::Off
        );
        assert_eq!(target(&c, "bob").unwrap().srtp, SrtpMode::Off);
        assert_eq!(
            target(&c, "sips:dave@example.com").unwrap().srtp,
            SrtpMode::Off
        );
        let t = target(&c, "sips:dave@example.com;srtp=sdes").unwrap();
        assert_eq!(
            (t.srtp, t.request_uri.as_str(), t.transport),
            (SrtpMode::Sdes, "sips:dave@example.com", Transport::Tls)
        );
        // `;srtp=` is taken off the URI that goes out; the other parameters stay.
        let t = target(&c, "sip:carol@127.0.0.2:5080;SRTP=sdes;transport=tcp").unwrap();
        assert_eq!(t.srtp, SrtpMode::Sdes);
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.request_uri, "sip:carol@127.0.0.2:5080;transport=tcp");
        let t = target(&c, "sip:carol@127.0.0.2;srtp=DTLS").unwrap();
        assert_eq!(
            (t.srtp, t.request_uri.as_str()),
            (SrtpMode::Dtls, "sip:carol@127.0.0.2")
        );
        assert!(target(&c, "sip:carol@127.0.0.2;srtp=zrtp").is_err());
        let mut dtls = cfg(false);
        dtls.accounts[0].srtp = SrtpMode::Dtls;
        assert_eq!(target(&dtls, "bob").unwrap().srtp, SrtpMode::Dtls);
        let mut sdes = cfg(false);
        sdes.accounts[0].srtp = SrtpMode::Sdes;
        assert_eq!(target(&sdes, "bob").unwrap().srtp, SrtpMode::Sdes);
        assert_eq!(target(&sdes, "+4930123").unwrap().srtp, SrtpMode::Sdes);
        let t = target(&sdes, "sip:bob@127.0.0.1:5070;srtp=off").unwrap();
        assert_eq!(
            (t.srtp, t.request_uri.as_str()),
            (SrtpMode::Off, "sip:bob@127.0.0.1:5070")
        );
        // The other way through an account: its setting.
        assert_eq!(
            target(&sdes, "sip:bob@127.0.0.1:5070").unwrap().srtp,
            SrtpMode::Sdes
        );
        let mut none = cfg(false);
        none.accounts.clear();
        assert!(target(&none, "bob").is_err());
        assert!(target(&none, "+4930").is_err());
    }
}
