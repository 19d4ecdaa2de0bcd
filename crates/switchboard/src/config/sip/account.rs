//! `--sip-account USER:PASSWORD@HOST[:PORT][;param…]`: a registration the gateway keeps
//! at a registrar, and the way calls out go when they name its host, a bare user, or (with
//! no trunk) a phone number. Its parameters say how the registrar is reached
//! (`;transport=`), for how long (`;expires=`), where its calls go in (`;room=`) and
//! whether calls out through it are encrypted (`;srtp=`).

use super::{err, parse_srtp, parse_transport, resolve, user_password, valid_room, SrtpMode};
use crate::error::ConfigError;
use std::net::SocketAddr;
use switchboard_sip::transaction::Transport;

/// A registration the gateway keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountConfig {
    pub user: String,
    pub password: String,
    /// As written (`host[:port]`), for the AOR and logs.
    pub host: String,
    pub registrar: SocketAddr,
    /// How the registrar is reached (`;transport=`).
    pub transport: Transport,
    pub expires: u32,
    pub room: Option<String>,
    /// What calls out through the account offer for media (`;srtp=`).
    pub srtp: SrtpMode,
}

pub(super) fn parse_account(s: &str) -> Result<AccountConfig, ConfigError> {
    const OPT: &str = "sip-account";
    let mut parts = s.split(';');
    let main = parts.next().unwrap_or_default();
    let (creds, host) = main
        .rsplit_once('@')
        .ok_or_else(|| err(OPT, format!("`{s}` is not USER:PASSWORD@HOST[:PORT]")))?;
    let (user, password) = user_password(OPT, creds)?;
    if host.is_empty() {
        return Err(err(OPT, format!("`{s}` has no registrar host")));
    }
    let mut account = AccountConfig {
        user,
        password,
        host: host.to_string(),
        registrar: SocketAddr::from(([0, 0, 0, 0], 0)),
        transport: Transport::Udp,
        expires: 600,
        room: None,
        srtp: SrtpMode::Off,
    };
    for p in parts {
        match p.split_once('=') {
            Some(("transport", t)) => account.transport = parse_transport(OPT, t)?,
            Some(("expires", v)) => {
                account.expires = v
                    .parse()
                    .ok()
                    .filter(|e| (60..=86_400).contains(e))
                    .ok_or_else(|| err(OPT, format!("expires `{v}` is not 60..=86400 s")))?;
            }
            Some(("room", r)) if valid_room(r) => account.room = Some(r.to_string()),
            Some(("srtp", v)) => account.srtp = parse_srtp(OPT, v)?,
            _ => return Err(err(OPT, format!("unknown parameter `{p}` in `{s}`"))),
        }
    }
    account.registrar = resolve(OPT, host, account.transport)?;
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_with_parameters() {
        let a = parse_account("alice:pw:x@127.0.0.1:5070;expires=120;room=demo").unwrap();
        assert_eq!(a.user, "alice");
        assert_eq!(a.password, "pw:x");
        assert_eq!(a.registrar, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(a.expires, 120);
        assert_eq!(a.room.as_deref(), Some("demo"));
        let b = parse_account("bob:pw@127.0.0.1").unwrap();
        assert_eq!(b.registrar.port(), 5060);
        assert_eq!(b.transport, Transport::Udp);
        assert_eq!(b.expires, 600);
        let c = parse_account("carol:pw@127.0.0.1;transport=tls").unwrap();
        assert_eq!(c.registrar.port(), 5061);
        assert_eq!(c.transport, Transport::Tls);
        let d = parse_account("dave:pw@127.0.0.1:5070;transport=TCP").unwrap();
        assert_eq!(d.registrar.port(), 5070);
        assert_eq!(d.transport, Transport::Tcp);
        assert_eq!(d.srtp, SrtpMode::Off);
        let e = parse_account("erin:pw@127.0.0.1;srtp=SDES;transport=tls").unwrap();
        assert_eq!((e.srtp, e.transport), (SrtpMode::Sdes, Transport::Tls));
        let f = parse_account("fred:pw@127.0.0.1;srtp=off").unwrap();
        assert_eq!(f.srtp, SrtpMode::Off);
        let g = parse_account("gina:pw@127.0.0.1;srtp=dtls").unwrap();
        assert_eq!(g.srtp, SrtpMode::Dtls);
        for bad in [
            "bob@127.0.0.1",
            "bob:pw@",
            "bob:pw@127.0.0.1;expires=5",
            "bob:pw@127.0.0.1;colour=blue",
            "bob:pw@127.0.0.1;room=no/slash",
            "bob:pw@127.0.0.1;transport=sctp",
            "bob:pw@127.0.0.1;srtp=zrtp",
            "bob:pw@127.0.0.1;srtp=",
        ] {
            assert!(parse_account(bad).is_err(), "{bad}");
        }
    }
}
