//! Typed reads of the headers the transaction and dialog layers act on (RFC 3261 §8, §12,
//! §17, §20; RFC 3262 RSeq/RAck; RFC 4028 Session-Expires/Min-SE).
//!
//! They borrow from the message and are parsed on demand: a proxy-less UA looks at a few
//! headers per message, so there is no point in building a typed tree of all of them.
//! A missing mandatory header is [`ParseError::MissingHeader`], a malformed one
//! [`ParseError::BadHeaderValue`]; optional headers come back as `Ok(None)` when absent.

use super::{split_list, Headers, Method, ParseError};
use crate::uri::{split_host_port, Host, NameAddr, Params};

/// One Via entry: `SIP/2.0/UDP host:port;branch=…;received=…;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS`, … as written.
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::BadHeaderValue("Via");
        let s = s.trim();
        let mut proto = s.splitn(3, '/');
        let (Some(name), Some(version), Some(rest)) = (proto.next(), proto.next(), proto.next())
        else {
            return Err(BAD);
        };
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(BAD);
        }
        let rest = rest.trim_start();
        let split = rest.find([' ', '\t']).ok_or(BAD)?;
        let transport = &rest[..split];
        if transport.is_empty() || !transport.bytes().all(super::is_token_char) {
            return Err(BAD);
        }
        let sent_by = rest[split..].trim_start();
        let params_at = sent_by.find(';').unwrap_or(sent_by.len());
        let (host, port) = split_host_port(sent_by[..params_at].trim()).map_err(|_| BAD)?;
        let params = Params::parse(&sent_by[params_at..]).map_err(|_| BAD)?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch")
    }

    pub fn received(&self) -> Option<&str> {
        self.params.get("received")
    }

    /// `None`: no rport; `Some(None)`: `;rport` asked for (RFC 3581); `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        if !self.params.has("rport") {
            return None;
        }
        Some(self.params.get("rport").and_then(|p| p.parse().ok()))
    }
}

/// `CSeq: 314159 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

/// `RAck: 776656 1 INVITE` (RFC 3262).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RAck<'a> {
    pub rseq: u32,
    pub cseq: u32,
    pub method: Method<'a>,
}

/// One Contact value: `*` (only in a REGISTER that removes all bindings) or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact<'a> {
    Star,
    Addr(NameAddr<'a>),
}

impl Contact<'_> {
    /// The `expires` parameter of the contact.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => a.params.get("expires").and_then(|e| e.parse().ok()),
        }
    }
}

/// `Session-Expires: 1800;refresher=uac` (RFC 4028).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires<'a> {
    pub delta: u32,
    /// `uac` or `uas`.
    pub refresher: Option<&'a str>,
}

fn number<T: std::str::FromStr>(s: &str, name: &'static str) -> Result<T, ParseError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadHeaderValue(name));
    }
    s.parse().map_err(|_| ParseError::BadHeaderValue(name))
}

impl<'a> Headers<'a> {
    fn required(&self, name: &'static str) -> Result<&str, ParseError> {
        self.get(name).ok_or(ParseError::MissingHeader(name))
    }

    /// The Via entries, topmost first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> {
        self.values("Via").map(Via::parse)
    }

    /// The topmost Via (the one a response goes back by).
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        self.vias().next().ok_or(ParseError::MissingHeader("Via"))?
    }

    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.required("From")?).map_err(|_| ParseError::BadHeaderValue("From"))
    }

    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.required("To")?).map_err(|_| ParseError::BadHeaderValue("To"))
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        let id = self.required("Call-ID")?;
        if id.is_empty() || id.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ParseError::BadHeaderValue("Call-ID"));
        }
        Ok(id)
    }

    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        const BAD: ParseError = ParseError::BadHeaderValue("CSeq");
        let v = self.required("CSeq")?.trim();
        let (seq, method) = v.split_once([' ', '\t']).ok_or(BAD)?;
        let seq: u32 = number(seq, "CSeq")?;
        // RFC 3261 §8.1.1.5: less than 2^31.
        if seq >= 1 << 31 {
            return Err(BAD);
        }
        let method = Method::parse(method.trim()).ok_or(BAD)?;
        Ok(CSeq { seq, method })
    }

    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.get("Max-Forwards")
            .map(|v| number(v, "Max-Forwards"))
            .transpose()
    }

    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.get("Expires")
            .map(|v| number(v, "Expires"))
            .transpose()
    }

    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        self.get("Content-Length")
            .map(|v| number(v, "Content-Length"))
            .transpose()
    }

    /// The media type without parameters, e.g. `application/sdp`.
    pub fn content_type(&self) -> Option<&str> {
        self.get("Content-Type")
            .map(|v| v.split(';').next().unwrap_or("").trim())
    }

    pub fn contacts(&self) -> Result<Vec<Contact<'_>>, ParseError> {
        self.values("Contact")
            .map(|v| {
                if v == "*" {
                    Ok(Contact::Star)
                } else {
                    NameAddr::parse(v)
                        .map(Contact::Addr)
                        .map_err(|_| ParseError::BadHeaderValue("Contact"))
                }
            })
            .collect()
    }

    fn name_addrs(&self, name: &'static str) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.values(name)
            .map(|v| NameAddr::parse(v).map_err(|_| ParseError::BadHeaderValue(name)))
            .collect()
    }

    pub fn route(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addrs("Route")
    }

    pub fn record_route(&self) -> Result<Vec<NameAddr<'_>>, ParseError> {
        self.name_addrs("Record-Route")
    }

    /// Option tags of Require.
    pub fn require(&self) -> Vec<&str> {
        self.values("Require").collect()
    }

    /// Option tags of Supported.
    pub fn supported(&self) -> Vec<&str> {
        self.values("Supported").collect()
    }

    /// Methods of Allow.
    pub fn allow(&self) -> Vec<Method<'_>> {
        self.values("Allow").filter_map(Method::parse).collect()
    }

    pub fn rseq(&self) -> Result<Option<u32>, ParseError> {
        self.get("RSeq").map(|v| number(v, "RSeq")).transpose()
    }

    pub fn rack(&self) -> Result<Option<RAck<'_>>, ParseError> {
        const BAD: ParseError = ParseError::BadHeaderValue("RAck");
        let Some(v) = self.get("RAck") else {
            return Ok(None);
        };
        let mut parts = v.split_ascii_whitespace();
        let (Some(rseq), Some(cseq), Some(method), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BAD);
        };
        Ok(Some(RAck {
            rseq: number(rseq, "RAck")?,
            cseq: number(cseq, "RAck")?,
            method: Method::parse(method).ok_or(BAD)?,
        }))
    }

    /// Session-Expires (compact form `x` is not expanded by the parser: looked up too).
    pub fn session_expires(&self) -> Result<Option<SessionExpires<'_>>, ParseError> {
        let Some(v) = self.get("Session-Expires").or_else(|| self.get("x")) else {
            return Ok(None);
        };
        let at = v.find(';').unwrap_or(v.len());
        let params = Params::parse(v[at..].trim())
            .map_err(|_| ParseError::BadHeaderValue("Session-Expires"))?;
        let refresher = params
            .0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("refresher"))
            .and_then(|(_, v)| match v {
                Some(std::borrow::Cow::Borrowed(s)) => Some(*s),
                _ => None,
            });
        Ok(Some(SessionExpires {
            delta: number(&v[..at], "Session-Expires")?,
            refresher,
        }))
    }

    pub fn min_se(&self) -> Result<Option<u32>, ParseError> {
        self.get("Min-SE")
            .map(|v| number(v.split(';').next().unwrap_or(""), "Min-SE"))
            .transpose()
    }

    /// The raw challenge / credentials values; parse them with [`crate::digest`].
    pub fn www_authenticate(&self) -> impl Iterator<Item = &str> {
        self.get_all("WWW-Authenticate")
    }

    pub fn proxy_authenticate(&self) -> impl Iterator<Item = &str> {
        self.get_all("Proxy-Authenticate")
    }

    pub fn authorization(&self) -> impl Iterator<Item = &str> {
        self.get_all("Authorization")
    }

    pub fn proxy_authorization(&self) -> impl Iterator<Item = &str> {
        self.get_all("Proxy-Authorization")
    }

    /// Whether a list header (Require, Supported, …) holds a token.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(split_list)
            .any(|t| t.eq_ignore_ascii_case(token))
    }
}
