//! Building the `iceServers` answer.

use serde::Serialize;
use std::net::IpAddr;
use switchboard_turn::rest;

/// What `/api/ice-servers` announces.
#[derive(Clone, Debug)]
pub struct IceConfig {
    /// Host or IP clients use to reach STUN/TURN (the external IP behind NAT).
    pub host: String,
    /// UDP port of STUN/TURN, if it listens on UDP.
    pub udp_port: Option<u16>,
    /// TCP port of STUN/TURN, if it listens on TCP.
    pub tcp_port: Option<u16>,
    /// TURN over TLS port, when TLS is on.
    pub tls_port: Option<u16>,
    /// The HTTPS port, when it takes TURN over TLS too (`--turn-on-http-port`): listed
    /// as a second `turns:` URI, the one a 443-only firewall lets through.
    pub https_turn_port: Option<u16>,
    /// The REST secret that signs credentials (the first `--static-auth-secret`);
    /// None when only static users exist, and then only STUN is announced.
    pub secret: Option<Vec<u8>>,
    /// Credential lifetime in seconds.
    pub ttl: u64,
    /// Room token secrets (`--room-token-secret`): when set, only holders of a valid
    /// room token get an answer (the relay is not for strangers).
    pub token_secrets: Vec<Vec<u8>>,
    /// Requests per minute per source IP (an IPv6 /64 counts as one); 0 = unlimited.
    pub rate_per_minute: u32,
    /// This node's name in a cluster: the SDK connects to the SFU edge of its own node
    /// (`SFU@<node>`) when a room has one.
    pub node: Option<String>,
}

impl IceConfig {
    /// `host` for URIs: IPv6 literals go in brackets (RFC 7064/7065 URIs).
    pub fn host_for(ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v) => v.to_string(),
            IpAddr::V6(v) => format!("[{v}]"),
        }
    }
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct IceServers {
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    pub ttl: u64,
    /// The answering node's name in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// An identity safe to embed in a REST username: printable, no ':'; else random.
fn identity_or_random(identity: Option<&str>) -> String {
    match identity {
        Some(s)
            if !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) =>
        {
            s.to_string()
        }
        _ => switchboard_util::random_hex(8),
    }
}

/// The `turn:`/`turns:` URIs this server announces (no credentials): one per transport
/// listening. A cluster node publishes them, so that another node can hand them out to
/// clients of this node's region.
pub fn turn_uris(cfg: &IceConfig) -> Vec<String> {
    let h = &cfg.host;
    let mut turn = Vec::new();
    if let Some(p) = cfg.udp_port {
        turn.push(format!("turn:{h}:{p}?transport=udp"));
    }
    if let Some(p) = cfg.tcp_port {
        turn.push(format!("turn:{h}:{p}?transport=tcp"));
    }
    if let Some(p) = cfg.tls_port {
        turn.push(format!("turns:{h}:{p}?transport=tcp"));
    }
    if let Some(p) = cfg.https_turn_port.filter(|&p| Some(p) != cfg.tls_port) {
        turn.push(format!("turns:{h}:{p}?transport=tcp"));
    }
    turn
}

/// The answer for a client at wall-clock `unix_now`. Browsers speak `stun:` over UDP
/// only, so it is listed when UDP is on; `turn:` gets one URI per transport listening.
pub fn ice_servers(cfg: &IceConfig, unix_now: u64, identity: Option<&str>) -> IceServers {
    ice_servers_at(cfg, &turn_uris(cfg), unix_now, identity)
}

/// The answer naming the TURN server of `turn` (this server's own [`turn_uris`], or
/// another node's of the same cluster, which shares the REST secret): its `stun:` URI
/// comes from the UDP one, and the credentials are this server's to sign.
pub fn ice_servers_at(
    cfg: &IceConfig,
    turn: &[String],
    unix_now: u64,
    identity: Option<&str>,
) -> IceServers {
    let mut servers = Vec::new();
    let stun: Vec<String> = turn
        .iter()
        .filter_map(|u| {
            let addr = u.strip_prefix("turn:")?.strip_suffix("?transport=udp")?;
            Some(format!("stun:{addr}"))
        })
        .collect();
    if !stun.is_empty() {
        servers.push(IceServer {
            urls: stun,
            username: None,
            credential: None,
        });
    }
    if let (Some(secret), false) = (&cfg.secret, turn.is_empty()) {
        let creds = rest::mint(secret, unix_now + cfg.ttl, &identity_or_random(identity));
        servers.push(IceServer {
            urls: turn.to_vec(),
            username: Some(creds.username),
            credential: Some(creds.password),
        });
    }
    IceServers {
        ice_servers: servers,
        ttl: cfg.ttl,
        node: cfg.node.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(tls: Option<u16>) -> IceConfig {
        IceConfig {
            host: "203.0.113.5".into(),
            udp_port: Some(3478),
            tcp_port: Some(3478),
            tls_port: tls,
            https_turn_port: None,
            secret: Some(b"s3cret".to_vec()),
            ttl: 3600,
            token_secrets: Vec::new(),
            rate_per_minute: 0,
            node: None,
        }
    }

    #[test]
    fn urls_and_rest_credentials() {
        let a = ice_servers(&cfg(None), 1_000_000, Some("alice"));
        assert_eq!(a.ttl, 3600);
        assert_eq!(a.ice_servers[0].urls, vec!["stun:203.0.113.5:3478"]);
        let t = &a.ice_servers[1];
        assert_eq!(
            t.urls,
            vec![
                "turn:203.0.113.5:3478?transport=udp",
                "turn:203.0.113.5:3478?transport=tcp"
            ]
        );
        assert_eq!(t.username.as_deref(), Some("1003600:alice"));
        // python3: base64(hmac.new(b's3cret', b'1003600:alice', sha1).digest())
        assert_eq!(
            t.credential.as_deref(),
            Some("z32fz9jommlL7rl1lAzDPxKQJnU=")
        );
    }

    #[test]
    fn turns_listed_with_tls_and_bad_identities_replaced() {
        let a = ice_servers(&cfg(Some(5349)), 0, Some("evil:name"));
        let t = &a.ice_servers[1];
        assert_eq!(t.urls[2], "turns:203.0.113.5:5349?transport=tcp");
        let user = t.username.as_deref().unwrap_or_default();
        let (_, ident) = user.split_once(':').unwrap_or_default();
        assert_eq!(ident.len(), 16, "random identity instead of `evil:name`");
        let mut no_secret = cfg(None);
        no_secret.secret = None;
        assert_eq!(
            ice_servers(&no_secret, 0, None).ice_servers.len(),
            1,
            "STUN only"
        );
        assert_eq!(
            IceConfig::host_for("::1".parse().unwrap_or(IpAddr::from([0u8; 16]))),
            "[::1]"
        );
    }

    #[test]
    fn each_transport_gets_its_own_port_and_only_listening_ones_are_listed() {
        let mut c = cfg(Some(5349));
        c.udp_port = Some(40000);
        c.tcp_port = Some(40001);
        let a = ice_servers(&c, 0, Some("a"));
        assert_eq!(a.ice_servers[0].urls, vec!["stun:203.0.113.5:40000"]);
        assert_eq!(
            a.ice_servers[1].urls,
            vec![
                "turn:203.0.113.5:40000?transport=udp",
                "turn:203.0.113.5:40001?transport=tcp",
                "turns:203.0.113.5:5349?transport=tcp"
            ]
        );
        c.https_turn_port = Some(443);
        let a = ice_servers(&c, 0, Some("a"));
        assert_eq!(
            a.ice_servers[1].urls[3], "turns:203.0.113.5:443?transport=tcp",
            "the HTTPS port's turns: comes after the TLS port's"
        );
        c.https_turn_port = None;
        c.udp_port = None;
        let a = ice_servers(&c, 0, Some("a"));
        assert_eq!(a.ice_servers.len(), 1, "no stun: without UDP");
        assert_eq!(
            a.ice_servers[0].urls,
            vec![
                "turn:203.0.113.5:40001?transport=tcp",
                "turns:203.0.113.5:5349?transport=tcp"
            ]
        );
    }

    #[test]
    fn another_nodes_turn_gets_its_stun_and_credentials_signed_here() {
        let other = vec![
            "turn:198.51.100.12:3478?transport=udp".to_string(),
            "turns:198.51.100.12:5349?transport=tcp".to_string(),
        ];
        let a = ice_servers_at(&cfg(None), &other, 1_000_000, Some("alice"));
        assert_eq!(a.ice_servers[0].urls, vec!["stun:198.51.100.12:3478"]);
        assert_eq!(a.ice_servers[1].urls, other);
        // The same credentials as this server's own (one REST secret across the cluster).
        let own = ice_servers(&cfg(None), 1_000_000, Some("alice"));
        assert_eq!(a.ice_servers[1].username, own.ice_servers[1].username);
        assert_eq!(a.ice_servers[1].credential, own.ice_servers[1].credential);
        let mut no_secret = cfg(None);
        no_secret.secret = None;
        let b = ice_servers_at(&no_secret, &other, 0, None);
        assert_eq!(b.ice_servers.len(), 1, "STUN only without a secret");
    }
}
