//! `[calls]`: direct calls between people signed in (`user@domain`): the calling
//! domain, who may sign in when there are no room tokens (configured users), and the
//! bounds of the call book (ring timeout, calls per user and per server, dial rate,
//! parties of a call). Calls are always on: a line (`@user`) costs nothing until a
//! device opens it.

use crate::error::ConfigError;
use clap::Args;
use std::collections::HashSet;
use std::time::Duration;
use switchboard_calls::{valid_user, CallConfig};

#[derive(Args, Debug, Clone)]
#[group(id = "calls")]
pub struct CallsSettings {
    /// The domain of this server's addresses: `bob` and `bob@DOMAIN` are its users.
    /// [default: the host name, lower case]
    #[arg(long, value_name = "DOMAIN", env = "SWITCHBOARD_CALL_DOMAIN")]
    pub call_domain: Option<String>,

    /// A user who may sign in (take the line `@USER`) with SECRET as the join's token,
    /// when there are no room tokens (repeatable). Without users and room tokens, lines
    /// are open: anyone may take any name (development).
    #[arg(
        long,
        value_name = "USER:SECRET",
        env = "SWITCHBOARD_CALL_USER",
        value_delimiter = ','
    )]
    pub call_user: Vec<String>,

    /// Seconds a call rings before it ends `no-answer`.
    #[arg(
        long,
        value_name = "SECS",
        env = "SWITCHBOARD_CALL_RING_TIMEOUT",
        default_value_t = 45
    )]
    pub call_ring_timeout: u64,

    /// Calls one user may be in at once (ringing ones included); a callee over it is
    /// `busy`.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_CALL_MAX_PER_USER",
        default_value_t = 4
    )]
    pub call_max_per_user: usize,

    /// Calls of the whole server at once.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_CALL_MAX_CALLS",
        default_value_t = 1000
    )]
    pub call_max_calls: usize,

    /// Calls and invites one user may start per minute; more end `rate-limited` (0 = no
    /// bound).
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_CALL_DIAL_RATE",
        default_value_t = 10
    )]
    pub call_dial_rate: usize,

    /// Parties of one call (its room's capacity), the caller included.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_CALL_ROOM_CAPACITY",
        default_value_t = 4
    )]
    pub call_room_capacity: usize,
}

/// How people sign in to their lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identities {
    /// Room tokens: the token's `sub` is the user.
    Tokens,
    /// `--call-user`: a configured user's secret.
    Users,
    /// Anyone may take any line.
    Open,
}

/// The validated `[calls]` section.
#[derive(Debug, Clone)]
pub struct CallsConfig {
    pub book: CallConfig,
    /// `--call-user`, for the hub's line check.
    pub users: Vec<(String, Vec<u8>)>,
    pub room_capacity: usize,
}

impl CallsConfig {
    /// How lines are taken, given whether room tokens are on.
    pub fn identities(&self, tokens: bool) -> Identities {
        if tokens {
            Identities::Tokens
        } else if self.users.is_empty() {
            Identities::Open
        } else {
            Identities::Users
        }
    }
}

/// This host's name, lower case, when it is a domain name; else `localhost`.
fn host_domain() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into a local buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if rc == 0 {
        String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase()
    } else {
        String::new()
    };
    match switchboard_calls::Address::parse("x", &name) {
        Ok(_) => name,
        Err(_) => "localhost".into(),
    }
}

impl CallsSettings {
    pub fn validate(&self) -> Result<CallsConfig, ConfigError> {
        let domain = match &self.call_domain {
            Some(d) => {
                let d = d.to_ascii_lowercase();
                switchboard_calls::Address::parse("x", &d).map_err(|_| {
                    ConfigError::new("call-domain", format!("`{d}` is not a domain name"))
                })?;
                d
            }
            None => host_domain(),
        };
        let mut users = Vec::new();
        let mut known = HashSet::new();
        for entry in &self.call_user {
            let bad = |why: &str| ConfigError::new("call-user", format!("`{entry}`: {why}"));
            let (user, secret) = entry
                .split_once(':')
                .ok_or_else(|| bad("not USER:SECRET"))?;
            if !valid_user(user) {
                return Err(bad("the user is not 1-64 characters of a-z 0-9 _ - ."));
            }
            if secret.len() < 8 {
                return Err(bad("the secret is shorter than 8 characters"));
            }
            if !known.insert(user.to_string()) {
                return Err(bad("the user is given twice"));
            }
            users.push((user.to_string(), secret.as_bytes().to_vec()));
        }
        let ring = self.call_ring_timeout;
        if !(1..=600).contains(&ring) {
            return Err(ConfigError::new(
                "call-ring-timeout",
                format!("{ring} is not between 1 and 600 seconds"),
            ));
        }
        let range = |key: &'static str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(ConfigError::new(
                    key,
                    format!("{v} is not between {lo} and {hi}"),
                ))
            }
        };
        let per_user = range("call-max-per-user", self.call_max_per_user, 1, 100)?;
        let max_calls = range("call-max-calls", self.call_max_calls, 1, 1_000_000)?;
        let rate = range("call-dial-rate", self.call_dial_rate, 0, 10_000)?;
        let capacity = range("call-room-capacity", self.call_room_capacity, 2, 16)?;
        Ok(CallsConfig {
            book: CallConfig {
                domain,
                ring_timeout: Duration::from_secs(ring),
                connect_timeout: Duration::from_secs(30),
                max_calls_per_user: per_user,
                max_calls,
                max_parties: capacity,
                dials_per_minute: rate,
                // Set from [federation] (plan.rs).
                remote_dials_per_minute: 0,
                known_users: (!users.is_empty()).then_some(known),
                federated_domains: Vec::new(),
            },
            users,
            room_capacity: capacity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CallsSettings {
        CallsSettings {
            call_domain: Some("A.Test".into()),
            call_user: Vec::new(),
            call_ring_timeout: 45,
            call_max_per_user: 4,
            call_max_calls: 1000,
            call_dial_rate: 10,
            call_room_capacity: 4,
        }
    }

    #[test]
    fn defaults_validate_and_the_domain_is_lower_case() {
        let c = settings().validate().unwrap();
        assert_eq!(c.book.domain, "a.test");
        assert_eq!(c.book.ring_timeout, Duration::from_secs(45));
        assert_eq!(c.book.known_users, None);
        assert_eq!(c.identities(false), Identities::Open);
        assert_eq!(c.identities(true), Identities::Tokens);
        let host = CallsSettings {
            call_domain: None,
            ..settings()
        };
        let d = host.validate().unwrap().book.domain;
        assert!(switchboard_calls::Address::parse("x", &d).is_ok(), "{d}");
    }

    #[test]
    fn users_are_checked() {
        let with = |users: &[&str]| {
            CallsSettings {
                call_user: users.iter().map(|u| u.to_string()).collect(),
                ..settings()
            }
            .validate()
        };
        let c = with(&["ada:12345678", "bob:abcdefgh:with-colon"]).unwrap();
        assert_eq!(c.identities(false), Identities::Users);
        assert_eq!(
            c.users[1],
            ("bob".to_string(), b"abcdefgh:with-colon".to_vec())
        );
        assert!(c.book.known_users.as_ref().unwrap().contains("ada"));
        for bad in [
            &["ada"][..],
            &["Ada:12345678"],
            &["ada:short"],
            &["ada:12345678", "ada:87654321"],
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("call-user"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bounds_are_checked() {
        let cases: [(CallsSettings, &str); 4] = [
            (
                CallsSettings {
                    call_domain: Some("a b".into()),
                    ..settings()
                },
                "call-domain",
            ),
            (
                CallsSettings {
                    call_ring_timeout: 0,
                    ..settings()
                },
                "call-ring-timeout",
            ),
            (
                CallsSettings {
                    call_max_per_user: 0,
                    ..settings()
                },
                "call-max-per-user",
            ),
            (
                CallsSettings {
                    call_room_capacity: 1,
                    ..settings()
                },
                "call-room-capacity",
            ),
        ];
        for (s, key) in cases {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
