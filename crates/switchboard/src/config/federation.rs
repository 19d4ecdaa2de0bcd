//! `[federation]`: direct calls to and from users of other servers. Which domains may
//! federate (an allow-list: nothing federates unless named), and the XMPP side: the
//! XEP-0114 component Switchboard connects as to its domain's XMPP server (prosody's
//! `Component "sb.a.test"` with a `component_secret`). The XMPP server does the rest of
//! server-to-server trust (dialback, TLS) as it does for its own users.

use crate::error::ConfigError;
use clap::Args;
use switchboard_xmpp::Addresses;

#[derive(Args, Debug, Clone, Default)]
#[group(id = "federation")]
pub struct FederationSettings {
    /// Domains whose users may call ours and be called (repeatable or comma-separated;
    /// `*`: any). Empty: no federation.
    #[arg(
        long,
        value_name = "DOMAIN",
        env = "SWITCHBOARD_FEDERATION_ALLOW",
        value_delimiter = ','
    )]
    pub federation_allow: Vec<String>,

    /// Calls a minute from the users of one other domain; more are refused
    /// (`rate-limited` on our side, busy on theirs). 0 = no bound.
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_FEDERATION_RATE",
        default_value_t = 60
    )]
    pub federation_rate: usize,

    /// Connect to an XMPP server as this XEP-0114 component (e.g. `sb.a.test`): calls
    /// to and from XMPP users and other Switchboards over Jingle. [default: off]
    #[arg(long, value_name = "DOMAIN", env = "SWITCHBOARD_XMPP_COMPONENT")]
    pub xmpp_component: Option<String>,

    /// The XMPP server's component port.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "SWITCHBOARD_XMPP_SERVER",
        default_value = "127.0.0.1:5347"
    )]
    pub xmpp_server: String,

    /// The component's shared secret (prosody's `component_secret`).
    #[arg(long, value_name = "SECRET", env = "SWITCHBOARD_XMPP_SECRET")]
    pub xmpp_secret: Option<String>,

    /// How app addresses map to JIDs: `{user}@<prefix>{domain}<suffix>`.
    #[arg(
        long,
        value_name = "TEMPLATE",
        env = "SWITCHBOARD_XMPP_JID_TEMPLATE",
        default_value = switchboard_xmpp::address::DEFAULT_TEMPLATE
    )]
    pub xmpp_jid_template: String,
}

/// The XMPP component to run.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    pub component: String,
    pub server: String,
    pub secret: String,
    pub addresses: Addresses,
}

/// The validated `[federation]` section.
#[derive(Debug, Clone, Default)]
pub struct FederationConfig {
    /// Lower-case domains, or `*`.
    pub allow: Vec<String>,
    /// Calls a minute from one other domain (0: no bound).
    pub rate: usize,
    pub xmpp: Option<XmppConfig>,
}

fn domain_ok(d: &str) -> bool {
    switchboard_calls::Address::parse("x", d).is_ok()
}

impl FederationSettings {
    pub fn validate(&self) -> Result<FederationConfig, ConfigError> {
        let mut allow = Vec::new();
        for d in &self.federation_allow {
            let d = d.trim().to_ascii_lowercase();
            if d != "*" && !domain_ok(&d) {
                return Err(ConfigError::new(
                    "federation-allow",
                    format!("`{d}` is not a domain name or *"),
                ));
            }
            if !allow.contains(&d) {
                allow.push(d);
            }
        }
        let xmpp = match &self.xmpp_component {
            None => None,
            Some(component) => {
                let component = component.to_ascii_lowercase();
                if !domain_ok(&component) {
                    return Err(ConfigError::new(
                        "xmpp-component",
                        format!("`{component}` is not a domain name"),
                    ));
                }
                let secret = self.xmpp_secret.clone().unwrap_or_default();
                if secret.is_empty() {
                    return Err(ConfigError::new(
                        "xmpp-secret",
                        "--xmpp-component needs the component's secret",
                    ));
                }
                if !self.xmpp_server.contains(':') {
                    return Err(ConfigError::new(
                        "xmpp-server",
                        format!("`{}` is not HOST:PORT", self.xmpp_server),
                    ));
                }
                if allow.is_empty() {
                    return Err(ConfigError::new(
                        "federation-allow",
                        "--xmpp-component needs the domains that may federate (or * for any)",
                    ));
                }
                let addresses = Addresses::from_template(&self.xmpp_jid_template)
                    .map_err(|e| ConfigError::new("xmpp-jid-template", e.to_string()))?;
                Some(XmppConfig {
                    component,
                    server: self.xmpp_server.clone(),
                    secret,
                    addresses,
                })
            }
        };
        if self.federation_rate > 100_000 {
            return Err(ConfigError::new(
                "federation-rate",
                format!("{} is over 100000", self.federation_rate),
            ));
        }
        Ok(FederationConfig {
            allow,
            rate: self.federation_rate,
            xmpp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FederationSettings {
        FederationSettings {
            federation_allow: vec!["B.test".into(), "b.test".into()],
            federation_rate: 60,
            xmpp_component: Some("sb.a.test".into()),
            xmpp_server: "127.0.0.1:5347".into(),
            xmpp_secret: Some("s3cret".into()),
            xmpp_jid_template: switchboard_xmpp::address::DEFAULT_TEMPLATE.into(),
        }
    }

    #[test]
    fn a_component_validates_and_domains_are_lower_case_once() {
        let c = settings().validate().unwrap();
        assert_eq!(c.allow, ["b.test"]);
        let x = c.xmpp.unwrap();
        assert_eq!(
            (x.component.as_str(), x.secret.as_str()),
            ("sb.a.test", "s3cret")
        );
        let off = FederationSettings {
            xmpp_component: None,
            federation_allow: Vec::new(),
            ..settings()
        };
        assert!(off.validate().unwrap().xmpp.is_none());
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            (
                FederationSettings {
                    xmpp_secret: None,
                    ..settings()
                },
                "xmpp-secret",
            ),
            (
                FederationSettings {
                    federation_allow: Vec::new(),
                    ..settings()
                },
                "federation-allow",
            ),
            (
                FederationSettings {
                    federation_allow: vec!["not a domain".into()],
                    ..settings()
                },
                "federation-allow",
            ),
            (
                FederationSettings {
                    federation_rate: 1_000_000,
                    ..settings()
                },
                "federation-rate",
            ),
            (
                FederationSettings {
                    xmpp_server: "nowhere".into(),
                    ..settings()
                },
                "xmpp-server",
            ),
            (
                FederationSettings {
                    xmpp_jid_template: "{domain}".into(),
                    ..settings()
                },
                "xmpp-jid-template",
            ),
        ];
        for (s, key) in cases {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
