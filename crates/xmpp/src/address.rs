//! App addresses (`ada@a.test`, what a person types) and the JIDs that carry them over
//! XMPP. Switchboard is an XEP-0114 component of its domain's XMPP server, so its users
//! live in the component's domain: with the default template `{user}@sb.{domain}`,
//! `ada@a.test` is the JID `ada@sb.a.test`, and a peer Switchboard is found by the same
//! rule (`bob@b.test` -> `bob@sb.b.test`). Keeping the app address and the JID apart lets
//! the XMPP server keep its own users (`ada@a.test` may be an ordinary XMPP account).
//! An address written `xmpp:carol@b.test` is a JID as is (an ordinary XMPP client), and
//! a JID that does not fit the template reads back in that form.

use xmpp_parsers::jid::{BareJid, Jid};

use crate::text::is_token;

/// The default JID template (see the module doc).
pub const DEFAULT_TEMPLATE: &str = "{user}@sb.{domain}";

/// Why an address or a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not an address of the form user@domain")]
    BadAddress(String),
    #[error("JID template {0:?} must be `{{user}}@<prefix>{{domain}}<suffix>`")]
    BadTemplate(String),
}

/// The mapping between app addresses and JIDs: `{user}@{prefix}{domain}{suffix}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    prefix: String,
    suffix: String,
}

impl Default for Addresses {
    fn default() -> Self {
        Addresses {
            prefix: "sb.".into(),
            suffix: String::new(),
        }
    }
}

impl Addresses {
    /// A template such as `{user}@sb.{domain}` or `{user}@{domain}` (the app address is
    /// the JID: a deployment whose component domain is the users' domain).
    pub fn from_template(template: &str) -> Result<Addresses, AddressError> {
        let bad = || AddressError::BadTemplate(template.to_string());
        let rest = template.strip_prefix("{user}@").ok_or_else(bad)?;
        let (prefix, suffix) = rest.split_once("{domain}").ok_or_else(bad)?;
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        };
        if !ok(prefix) || !ok(suffix) {
            return Err(bad());
        }
        Ok(Addresses {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The bare JID an app address is reached at.
    pub fn to_jid(&self, address: &str) -> Result<BareJid, AddressError> {
        let bad = || AddressError::BadAddress(address.chars().take(128).collect());
        if let Some(jid) = address.strip_prefix("xmpp:") {
            return BareJid::new(jid).map_err(|_| bad());
        }
        let (user, domain) = address.split_once('@').ok_or_else(bad)?;
        if !is_token(user) || !is_token(domain) || address.len() > 512 {
            return Err(bad());
        }
        let jid = format!("{user}@{}{domain}{}", self.prefix, self.suffix);
        let jid = BareJid::new(&jid).map_err(|_| bad())?;
        if jid.node().is_none() {
            return Err(bad());
        }
        Ok(jid)
    }

    /// The app address of a JID (its resource ignored): the inverse of [`Self::to_jid`]
    /// for JIDs that fit the template, `xmpp:<bare jid>` for any other.
    pub fn to_address(&self, jid: &Jid) -> String {
        let domain = jid.domain().as_str();
        let inner = domain
            .strip_prefix(self.prefix.as_str())
            .and_then(|d| d.strip_suffix(self.suffix.as_str()))
            .filter(|d| !d.is_empty());
        match (jid.node(), inner) {
            (Some(user), Some(d)) => format!("{}@{d}", user.as_str()),
            _ => format!("xmpp:{}", jid.to_bare()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_maps_both_ways() {
        let a = Addresses::default();
        let jid = a.to_jid("ada@a.test").unwrap();
        assert_eq!(jid.as_str(), "ada@sb.a.test");
        let full = Jid::new("ada@sb.a.test/sb").unwrap();
        assert_eq!(a.to_address(&full), "ada@a.test");
        // Not of our form: the JID itself, which maps back to the same JID.
        let other = Jid::new("carol@b.test/dino").unwrap();
        assert_eq!(a.to_address(&other), "xmpp:carol@b.test");
        assert_eq!(
            a.to_jid("xmpp:carol@b.test").unwrap().as_str(),
            "carol@b.test"
        );
    }

    #[test]
    fn templates_and_bad_addresses() {
        let same = Addresses::from_template("{user}@{domain}").unwrap();
        assert_eq!(same.to_jid("bob@b.test").unwrap().as_str(), "bob@b.test");
        let suffixed = Addresses::from_template("{user}@{domain}.xmpp").unwrap();
        let jid = suffixed.to_jid("bob@b.test").unwrap();
        assert_eq!(suffixed.to_address(&Jid::from(jid)), "bob@b.test");
        for bad in [
            "{domain}",
            "{user}@sb.",
            "{user}@<{domain}",
            "x{user}@{domain}",
        ] {
            assert!(Addresses::from_template(bad).is_err(), "{bad}");
        }
        let a = Addresses::default();
        for bad in [
            "ada",
            "@a.test",
            "ada@",
            "a da@a.test",
            "ada@a.test\n",
            "xmpp:@",
        ] {
            assert!(a.to_jid(bad).is_err(), "{bad:?}");
        }
    }
}
