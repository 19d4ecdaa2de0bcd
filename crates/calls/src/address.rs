//! Addresses of people: `user@domain`, with `user` as the line rooms name it (`@user`).
//! Parsing decides the route of a dial: this server's domain (or none) is local, any
//! other domain is a federation's business. `xmpp:user@domain` names an account of the
//! XMPP network as is (an ordinary XMPP client, not a Switchboard user): always remote.

use std::fmt;

/// `user@domain`, both lower case; `xmpp:user@domain` for an XMPP account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    pub user: String,
    pub domain: String,
    /// Written `xmpp:…`: a JID as is, reached over XMPP federation only.
    pub xmpp: bool,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.xmpp { "xmpp:" } else { "" };
        write!(f, "{scheme}{}@{}", self.user, self.domain)
    }
}

/// Why a dialled address is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("user {0:?} is not 1-64 characters of a-z 0-9 _ - .")]
    User(String),
    #[error("domain {0:?} is not a host name")]
    Domain(String),
}

/// Where a dialled address leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A user of this server.
    Local { user: String },
    /// A user of another domain: federation (XMPP, SIP) carries the call, if any does.
    Remote { domain: String },
}

/// A user name as lines have it: 1-64 of `a-z0-9_-.`.
pub fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
}

/// A host name: 1-253 characters of labels of `a-z0-9-`, separated by dots.
fn valid_domain(domain: &str) -> bool {
    (1..=253).contains(&domain.len())
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl Address {
    /// `text` as an address; `bob` alone is `bob@<home>`. Case does not matter.
    pub fn parse(text: &str, home: &str) -> Result<Address, AddressError> {
        let text = text.trim().to_ascii_lowercase();
        let (xmpp, text) = match text.strip_prefix("xmpp:") {
            Some(jid) if jid.contains('@') => (true, jid.to_string()),
            Some(_) => return Err(AddressError::Domain(String::new())),
            None => (false, text),
        };
        let (user, domain) = match text.split_once('@') {
            Some((u, d)) => (u.to_string(), d.to_string()),
            None => (text.clone(), home.to_ascii_lowercase()),
        };
        if !valid_user(&user) {
            return Err(AddressError::User(user));
        }
        if !valid_domain(&domain) {
            return Err(AddressError::Domain(domain));
        }
        Ok(Address { user, domain, xmpp })
    }

    /// The address of local user `user`.
    pub fn local(user: &str, home: &str) -> Address {
        Address {
            user: user.to_string(),
            domain: home.to_string(),
            xmpp: false,
        }
    }

    /// Local when its domain is `home` (and it is no XMPP account).
    pub fn route(&self, home: &str) -> Route {
        if !self.xmpp && self.domain.eq_ignore_ascii_case(home) {
            Route::Local {
                user: self.user.clone(),
            }
        } else {
            Route::Remote {
                domain: self.domain.clone(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_the_home_domain_as_default() {
        let a = Address::parse("Bob", "a.test").unwrap();
        assert_eq!(a.to_string(), "bob@a.test");
        assert_eq!(a.route("a.test"), Route::Local { user: "bob".into() });
        let b = Address::parse(" carol.x@B.Test ", "a.test").unwrap();
        assert_eq!(b.to_string(), "carol.x@b.test");
        assert_eq!(
            b.route("a.test"),
            Route::Remote {
                domain: "b.test".into()
            }
        );
        for bad in [
            "",
            "@a.test",
            "bo b",
            "bob@",
            "bob@a..test",
            "b/ob",
            "bob@a_b.test",
        ] {
            assert!(Address::parse(bad, "a.test").is_err(), "{bad:?}");
        }
        assert!(Address::parse(&"x".repeat(65), "a.test").is_err());
        // An XMPP account: remote even in our own domain, and written back as given.
        let x = Address::parse("XMPP:Carol@a.test", "a.test").unwrap();
        assert_eq!(x.to_string(), "xmpp:carol@a.test");
        assert!(matches!(x.route("a.test"), Route::Remote { .. }));
        assert_ne!(x, Address::parse("carol@a.test", "a.test").unwrap());
        for bad in ["xmpp:carol", "xmpp:", "xmpp:@b.test"] {
            assert!(Address::parse(bad, "a.test").is_err(), "{bad:?}");
        }
        assert!(valid_user(&"x".repeat(64)));
        assert!(!valid_user("Ada"));
    }
}
