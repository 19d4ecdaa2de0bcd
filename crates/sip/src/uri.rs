//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (`"Alice"
//! <sip:alice@example.com>;tag=x`, RFC 3261 §20.10).
//!
//! Written by hand because every field borrows from the message it came from (the message
//! parser is zero-copy) and because the transaction and dialog layers compare URIs and read
//! a handful of parameters (`transport`, `lr`, `tag`, `expires`), which a small grammar does.
//! The user part is kept as written (escaped), so a URI serializes back to the same text;
//! [`Uri::user_unescaped`] gives the decoded form. A password (`sip:user:pw@host`, "NOT
//! RECOMMENDED" by RFC 3261 §19.1.1) is parsed but never written out.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A malformed URI or name-addr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("unknown URI scheme")]
    Scheme,
    #[error("empty or invalid host")]
    Host,
    #[error("invalid port")]
    Port,
    #[error("invalid character in URI")]
    Char,
    #[error("unterminated quoted string or <uri>")]
    Unterminated,
}

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// The host of a SIP URI (a `tel:` URI has none: [`Host::None`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    Domain(Cow<'a, str>),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    None,
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
            Host::None => Ok(()),
        }
    }
}

impl<'a> Host<'a> {
    /// Parses `domain`, `1.2.3.4` or `[v6]` (the brackets required, as in a URI or Via).
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(UriError::Host)?;
            return inner.parse().map(Host::V6).map_err(|_| UriError::Host);
        }
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(UriError::Host);
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return s.parse().map(Host::V4).map_err(|_| UriError::Host);
        }
        Ok(Host::Domain(Cow::Borrowed(s)))
    }

    pub fn into_owned(self) -> Host<'static> {
        match self {
            Host::Domain(d) => Host::Domain(Cow::Owned(d.into_owned())),
            Host::V4(a) => Host::V4(a),
            Host::V6(a) => Host::V6(a),
            Host::None => Host::None,
        }
    }
}

/// `;name=value` parameters in order (a value of `None` is a flag such as `lr`). Names are
/// compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params<'a>(pub Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>);

impl<'a> Params<'a> {
    /// Parses `;a=b;c` (the leading `;` of each parameter included). Empty names are refused.
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        let mut out = Vec::new();
        if s.is_empty() {
            return Ok(Params(out));
        }
        let rest = s.strip_prefix(';').ok_or(UriError::Char)?;
        for part in split_outside_quotes(rest, b';') {
            let part = part.trim();
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(Cow::Borrowed(v.trim()))),
                None => (part, None),
            };
            if name.is_empty() || !name.bytes().all(is_param_char) {
                return Err(UriError::Char);
            }
            out.push((Cow::Borrowed(name), value));
        }
        Ok(Params(out))
    }

    /// Whether the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The value of a parameter; `None` when absent or a flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Sets (replacing) or adds a parameter.
    pub fn set(&mut self, name: &'a str, value: Option<Cow<'a, str>>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((Cow::Borrowed(name), value)),
        }
    }

    pub fn into_owned(self) -> Params<'static> {
        Params(
            self.0
                .into_iter()
                .map(|(n, v)| {
                    (
                        Cow::Owned(n.into_owned()),
                        v.map(|v| Cow::Owned(v.into_owned())),
                    )
                })
                .collect(),
        )
    }
}

impl fmt::Display for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

fn is_param_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%[]/:&+$".contains(&b)
}

fn is_user_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/".contains(&b)
}

/// Splits on `sep` outside `"quoted strings"` (a `\` escapes the next character inside them).
pub(crate) fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < bytes.len() {
            let b = bytes[i];
            if quoted && b == b'\\' {
                i += 2;
                continue;
            }
            if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                let part = &s[start..i];
                i += 1;
                start = i;
                return Some(part);
            }
            i += 1;
        }
        done = true;
        Some(&s[start.min(s.len())..])
    })
}

/// A `sip:`, `sips:` or `tel:` URI. For `tel:` the number is in [`Uri::user`] and the host
/// is [`Host::None`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The user part as written (still %-escaped).
    pub user: Option<Cow<'a, str>>,
    /// Parsed so that it can be refused or ignored; never serialized.
    pub password: Option<Cow<'a, str>>,
    pub host: Host<'a>,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// `?name=value&…` headers, as written (still %-escaped).
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Uri<'a> {
    /// A `sip:` URI with a host and nothing else.
    pub fn sip(host: Host<'a>) -> Self {
        Uri {
            scheme: Scheme::Sip,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::default(),
            headers: Vec::new(),
        }
    }

    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        let (scheme, rest) = s.split_once(':').ok_or(UriError::Scheme)?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            return Err(UriError::Scheme);
        };
        if scheme == Scheme::Tel {
            let end = rest.find(';').unwrap_or(rest.len());
            let number = &rest[..end];
            if number.is_empty()
                || !number
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b"+-.()*#".contains(&b))
            {
                return Err(UriError::Char);
            }
            return Ok(Uri {
                scheme,
                user: Some(Cow::Borrowed(number)),
                password: None,
                host: Host::None,
                port: None,
                params: Params::parse(&rest[end..])?,
                headers: Vec::new(),
            });
        }
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        // The user part ends at the last '@' (an escaped user never holds a raw '@').
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(ui) => {
                let (u, p) = match ui.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (ui, None),
                };
                if u.is_empty() || !u.bytes().all(is_user_char) {
                    return Err(UriError::Char);
                }
                if p.is_some_and(|p| !p.bytes().all(is_user_char)) {
                    return Err(UriError::Char);
                }
                (Some(Cow::Borrowed(u)), p.map(Cow::Borrowed))
            }
            None => (None, None),
        };
        let params_at = hostpart.find(';').unwrap_or(hostpart.len());
        let (hostport, params) = hostpart.split_at(params_at);
        let (host, port) = split_host_port(hostport)?;
        let mut header_list = Vec::new();
        if let Some(h) = headers {
            for pair in h.split('&') {
                let (n, v) = pair.split_once('=').ok_or(UriError::Char)?;
                if n.is_empty() || !pair.bytes().all(is_param_char_or_eq) {
                    return Err(UriError::Char);
                }
                header_list.push((Cow::Borrowed(n), Cow::Borrowed(v)));
            }
        }
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params: Params::parse(params)?,
            headers: header_list,
        })
    }

    /// The user part with %-escapes decoded (`None` when there is no user part; invalid
    /// escapes are kept as written).
    pub fn user_unescaped(&self) -> Option<Cow<'_, str>> {
        self.user.as_deref().map(unescape)
    }

    /// `sips:` or `transport=tls`.
    pub fn is_secure(&self) -> bool {
        self.scheme == Scheme::Sips
            || self
                .params
                .get("transport")
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"))
    }

    pub fn into_owned(self) -> Uri<'static> {
        Uri {
            scheme: self.scheme,
            user: self.user.map(|u| Cow::Owned(u.into_owned())),
            password: self.password.map(|p| Cow::Owned(p.into_owned())),
            host: self.host.into_owned(),
            port: self.port,
            params: self.params.into_owned(),
            headers: self
                .headers
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
    }
}

fn is_param_char_or_eq(b: u8) -> bool {
    is_param_char(b) || b == b'=' || b == b'@' || b == b'?' || b == b','
}

/// Splits `host[:port]` (with `[v6]:port`). Used by URIs and the Via sent-by.
pub fn split_host_port(s: &str) -> Result<(Host<'_>, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or(UriError::Host)?;
        let after = &s[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UriError::Host),
        };
        (&s[..=close], port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .ok_or(UriError::Port)?,
        ),
        None => None,
    };
    Ok((Host::parse(host)?, port))
}

/// Decodes `%XX` escapes (borrowed when there are none).
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(s),
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if self.scheme != Scheme::Tel {
                f.write_str("@")?;
            }
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{n}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// `"Display Name" <uri>;params` or `uri;params` (From, To, Contact, Route, …). In the
/// second form the parameters belong to the header, not to the URI (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Unquoted and unescaped.
    pub display: Option<Cow<'a, str>>,
    pub uri: Uri<'a>,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    pub fn new(uri: Uri<'a>) -> Self {
        NameAddr {
            display: None,
            uri,
            params: Params::default(),
        }
    }

    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        let s = s.trim();
        let (display, rest) = if let Some(q) = s.strip_prefix('"') {
            let end = closing_quote(q).ok_or(UriError::Unterminated)?;
            (Some(unquote(&q[..end])), q[end + 1..].trim_start())
        } else if let Some(lt) = s.find('<') {
            let d = s[..lt].trim();
            ((!d.is_empty()).then_some(Cow::Borrowed(d)), &s[lt..])
        } else {
            (None, s)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let close = inner.find('>').ok_or(UriError::Unterminated)?;
            let uri = Uri::parse(inner[..close].trim())?;
            let params = Params::parse(inner[close + 1..].trim())?;
            return Ok(NameAddr {
                display,
                uri,
                params,
            });
        }
        if display.is_some() {
            return Err(UriError::Unterminated);
        }
        // addr-spec: no '<>', so the URI ends at the first ';' and cannot have headers.
        let end = rest.find(';').unwrap_or(rest.len());
        let uri_text = &rest[..end];
        if uri_text.contains('?') || uri_text.contains(',') {
            return Err(UriError::Char);
        }
        Ok(NameAddr {
            display: None,
            uri: Uri::parse(uri_text.trim())?,
            params: Params::parse(&rest[end..])?,
        })
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag")
    }

    pub fn into_owned(self) -> NameAddr<'static> {
        NameAddr {
            display: self.display.map(|d| Cow::Owned(d.into_owned())),
            uri: self.uri.into_owned(),
            params: self.params.into_owned(),
        }
    }
}

/// Index of the closing `"` in the text after an opening one.
pub(crate) fn closing_quote(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Removes `\` escapes from the inside of a quoted string.
pub(crate) fn unquote(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `s` as a quoted string.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('"')
}

impl fmt::Display for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write_quoted(f, d)?;
            f.write_char(' ')?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

use std::fmt::Write as _;

#[cfg(test)]
#[path = "uri_tests.rs"]
mod tests;
