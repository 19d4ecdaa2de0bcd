//! `--sip-federation DOMAIN=HOST[:PORT][;transport=tcp|tls]`: where direct calls to users
//! of another Switchboard's call domain go over SIP (docs/sip.md, "Federation"). A domain
//! without an entry is reached at its own name, port 5060 over UDP, looked up when the
//! call is placed; an entry is resolved at start, so a typo is a configuration error
//! rather than a failed call later.

use super::{err, parse_transport, resolve};
use crate::error::ConfigError;
use std::net::SocketAddr;
use switchboard_sip::transaction::Transport;

/// Where one federated domain's SIP service is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationPeer {
    /// The call domain, lower case (`b.test`).
    pub domain: String,
    pub dest: SocketAddr,
    pub transport: Transport,
    /// The host as written, without the port: the name a TLS peer's certificate carries.
    pub tls_name: String,
}

const OPTION: &str = "sip-federation";

/// One `DOMAIN=HOST[:PORT][;transport=…]`.
pub(super) fn parse_peer(written: &str) -> Result<FederationPeer, ConfigError> {
    let bad = |why: &str| err(OPTION, format!("`{written}`: {why}"));
    let (domain, hop) = written
        .split_once('=')
        .ok_or_else(|| bad("not DOMAIN=HOST[:PORT][;transport=tcp|tls]"))?;
    let domain = domain.trim().to_ascii_lowercase();
    if switchboard_calls::Address::parse("x", &domain).is_err() {
        return Err(bad("the domain is not a domain name"));
    }
    let (host, transport) = match hop.split_once(';') {
        None => (hop, Transport::Udp),
        Some((h, p)) => match p.split_once('=') {
            Some(("transport", t)) => (h, parse_transport(OPTION, t)?),
            _ => return Err(bad(&format!("unknown parameter `{p}`"))),
        },
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let dest = resolve(OPTION, host, transport)?;
    Ok(FederationPeer {
        domain,
        dest,
        transport,
        tls_name: crate::sip::host_name(host),
    })
}

/// Every entry; a domain given twice is an error (which one was meant?).
pub(super) fn parse_peers(written: &[String]) -> Result<Vec<FederationPeer>, ConfigError> {
    let mut peers: Vec<FederationPeer> = Vec::new();
    for w in written {
        let peer = parse_peer(w)?;
        if peers.iter().any(|p| p.domain == peer.domain) {
            return Err(err(
                OPTION,
                format!("the domain `{}` is given twice", peer.domain),
            ));
        }
        peers.push(peer);
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p = parse_peer("B.Test=127.0.0.1:5080").unwrap();
        assert_eq!(p.domain, "b.test");
        assert_eq!(p.dest, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(p.transport, Transport::Udp);
        let p = parse_peer("b.test=127.0.0.1;transport=tls").unwrap();
        assert_eq!(p.dest.port(), super::super::default_port(Transport::Tls));
        assert_eq!(p.transport, Transport::Tls);
        assert_eq!(p.tls_name, "127.0.0.1");
        let p = parse_peer("b.test=localhost:5070;transport=TCP").unwrap();
        assert_eq!((p.dest.port(), p.transport), (5070, Transport::Tcp));
        assert_eq!(p.tls_name, "localhost");
        for bad in [
            "b.test",
            "b test=127.0.0.1",
            "b.test=",
            "b.test=127.0.0.1;transport=sctp",
            "b.test=127.0.0.1;srtp=sdes",
        ] {
            let e = parse_peer(bad).unwrap_err().to_string();
            assert!(e.contains("sip-federation"), "{bad}: {e}");
        }
        let twice = ["b.test=127.0.0.1".to_string(), "B.test=127.0.0.2".into()];
        assert!(parse_peers(&twice).is_err());
    }
}
