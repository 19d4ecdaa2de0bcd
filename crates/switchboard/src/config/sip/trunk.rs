//! `--sip-trunk HOST[:PORT][;transport=…]` and its `--sip-trunk-*` options: the provider's
//! proxy that phone numbers dialled from rooms go through, what the gateway presents to
//! it (credentials, From, P-Asserted-Identity), how numbers are written (E.164), and
//! whether the calls' media is encrypted (`--sip-trunk-srtp`: many trunks take SDES-SRTP,
//! some require it; WebRTC-capable ones may require DTLS-SRTP).

use super::{err, parse_srtp, parse_transport, resolve, user_password, SipSettings, SrtpMode};
use crate::error::ConfigError;
use std::net::SocketAddr;
use switchboard_sip::transaction::Transport;

/// The trunk for phone numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkConfig {
    /// As written (without `;transport=`), for Request-URIs.
    pub host: String,
    pub proxy: SocketAddr,
    /// How the proxy is reached (`;transport=`).
    pub transport: Transport,
    pub auth: Option<(String, String)>,
    pub from: Option<String>,
    pub pai: bool,
    pub country: Option<String>,
    /// What calls through the trunk offer for media (`--sip-trunk-srtp`).
    pub srtp: SrtpMode,
}

/// The trunk of `--sip-trunk` and its options; None without `--sip-trunk` (the other
/// options are still checked, so a typo is not silently ignored).
pub(super) fn parse_trunk(s: &SipSettings) -> Result<Option<TrunkConfig>, ConfigError> {
    let srtp = parse_srtp("sip-trunk-srtp", &s.sip_trunk_srtp)?;
    let Some(written) = &s.sip_trunk else {
        return Ok(None);
    };
    let (host, transport) = match written.split_once(';') {
        None => (written.as_str(), Transport::Udp),
        Some((h, p)) => match p.split_once('=') {
            Some(("transport", t)) => (h, parse_transport("sip-trunk", t)?),
            _ => {
                return Err(err(
                    "sip-trunk",
                    format!("unknown parameter `{p}` in `{written}`"),
                ))
            }
        },
    };
    Ok(Some(TrunkConfig {
        host: host.to_string(),
        proxy: resolve("sip-trunk", host, transport)?,
        transport,
        auth: s
            .sip_trunk_auth
            .as_deref()
            .map(|a| user_password("sip-trunk-auth", a))
            .transpose()?,
        from: match &s.sip_trunk_from {
            Some(f) if !(f.starts_with("sip:") || f.starts_with("sips:")) => {
                return Err(err("sip-trunk-from", format!("`{f}` is not a sip: URI")))
            }
            f => f.clone(),
        },
        pai: s.sip_trunk_pai,
        country: match &s.sip_trunk_country {
            Some(c) if c.is_empty() || c.len() > 3 || !c.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(err(
                    "sip-trunk-country",
                    format!("`{c}` is not a country code (1-3 digits)"),
                ))
            }
            c => c.clone(),
        },
        srtp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sip: SipSettings,
    }

    fn trunk(args: &[&str]) -> Result<Option<TrunkConfig>, ConfigError> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        parse_trunk(&Cli::try_parse_from(argv).unwrap().sip)
    }

    #[test]
    fn trunk_options_parse() {
        assert_eq!(trunk(&[]).unwrap(), None);
        let t = trunk(&["--sip-trunk", "127.0.0.1:5080;transport=tcp"])
            .unwrap()
            .unwrap();
        assert_eq!(t.proxy, "127.0.0.1:5080".parse().unwrap());
        assert_eq!((t.transport, t.srtp), (Transport::Tcp, SrtpMode::Off));
        let t = trunk(&["--sip-trunk", "127.0.0.1", "--sip-trunk-srtp", "sdes"])
            .unwrap()
            .unwrap();
        assert_eq!((t.proxy.port(), t.srtp), (5060, SrtpMode::Sdes));
        let t = trunk(&["--sip-trunk", "127.0.0.1", "--sip-trunk-srtp", "DTLS"])
            .unwrap()
            .unwrap();
        assert_eq!(t.srtp, SrtpMode::Dtls);
        for bad in [
            &["--sip-trunk", "127.0.0.1", "--sip-trunk-srtp", "zrtp"][..],
            &["--sip-trunk-srtp", "on"],
            &["--sip-trunk", "127.0.0.1;srtp=sdes"],
            &["--sip-trunk", "127.0.0.1", "--sip-trunk-country", "4a"],
            &["--sip-trunk", "127.0.0.1", "--sip-trunk-from", "tel:+49"],
        ] {
            let e = trunk(bad).unwrap_err();
            assert!(e.to_string().contains("sip-trunk"), "{bad:?}: {e}");
        }
    }
}
