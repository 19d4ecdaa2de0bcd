//! A listening address option that may be `off`.

use std::net::SocketAddr;
use std::str::FromStr;

/// `IP:PORT`, or `off` (or empty) for not listening at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" | "" => Ok(Listen(None)),
            s => s
                .parse()
                .map(|a| Listen(Some(a)))
                .map_err(|_| format!("`{s}` is not IP:PORT or `off`")),
        }
    }
}
