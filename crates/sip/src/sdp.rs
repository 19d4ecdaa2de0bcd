//! SDP (RFC 4566) as the SIP leg of a call needs it: one audio stream, plain RTP or
//! SDES-SRTP (RFC 4568), offer/answer by RFC 3264 ([`answer`]).
//!
//! A description keeps every line it was given (attributes as `name[:value]`, other lines
//! by type) so that it writes back as read, and typed reads sit on top: rtpmap, fmtp,
//! ptime, direction, rtcp, rtcp-mux, crypto, and the DTLS/ICE attributes kept for a later
//! session. Written by hand rather than with `sdp-types`/`webrtc-sdp` because the SIP side
//! needs lenient reading of what phones and trunks send (hostnames in `c=`, no `t=` in some
//! stacks, unknown lines) and strict writing of a small answer built from scratch — never a
//! copy of a browser's attributes (mid, msid, extmap), which SIP peers choke on.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use base64::Engine as _;

pub mod answer;

pub use answer::{Codec, LocalAudio, Negotiated, SdpSession, SrtpKeys};

/// Why an SDP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP larger than the limit")]
    TooLarge,
    #[error("malformed SDP line {0}")]
    BadLine(usize),
    #[error("missing or misplaced {0}= line")]
    Missing(char),
    #[error("malformed a={0}")]
    BadAttribute(&'static str),
    #[error("no acceptable audio stream")]
    NoAcceptableAudio,
    #[error("the answer does not match our offer")]
    AnswerMismatch,
    /// Our offer was SDES-SRTP only and the answer does not take it (why, in words).
    #[error("the answer refuses SRTP: {0}")]
    SrtpRefused(&'static str),
}

/// Bounds on a peer's SDP (a phone sends one or two m-lines and a few dozen attributes).
const MAX_SDP: usize = 32 * 1024;
const MAX_MEDIA: usize = 16;
const MAX_LINES: usize = 1024;

/// Stream direction (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    pub fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other end (sendonly ↔ recvonly).
    pub fn reversed(self) -> Self {
        Direction::from_flags(self.receives(), self.sends())
    }
}

/// `o=<username> <sess-id> <sess-version> IN <IP4|IP6> <address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    pub version: u64,
    pub addr_type: String,
    pub address: String,
}

/// `c=IN <IP4|IP6> <address>[/ttl…]`; the address may be a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub addr_type: String,
    pub address: String,
}

impl Connection {
    pub fn new(ip: IpAddr) -> Self {
        Connection {
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.to_owned(),
            address: ip.to_string(),
        }
    }

    /// The address when it is a literal IP (without a multicast `/ttl`).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
}

/// `a=name[:value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    pub fn new(name: &str, value: Option<String>) -> Self {
        Attribute {
            name: name.to_owned(),
            value,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub encoding: String,
    pub clock: u32,
    pub channels: Option<u8>,
}

/// `a=crypto:<tag> <suite> inline:<key||salt base64>[|<lifetime>][|<mki>:<len>]` (RFC 4568).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: String,
    pub key_salt: Vec<u8>,
    pub lifetime: Option<String>,
    pub mki: Option<String>,
}

impl Crypto {
    pub fn parse(value: &str) -> Result<Self, SdpError> {
        const BAD: SdpError = SdpError::BadAttribute("crypto");
        let mut parts = value.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BAD);
        };
        if tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        // Several key-params are separated by ';': the first one serves.
        let key = key.split(';').next().unwrap_or("");
        let inline = key.strip_prefix("inline:").ok_or(BAD)?;
        let mut fields = inline.split('|');
        let b64 = fields.next().unwrap_or("");
        let key_salt = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| BAD)?;
        let (mut lifetime, mut mki) = (None, None);
        for f in fields {
            if f.contains(':') {
                mki = Some(f.to_owned());
            } else {
                lifetime = Some(f.to_owned());
            }
        }
        Ok(Crypto {
            tag: tag.parse().map_err(|_| BAD)?,
            suite: suite.to_owned(),
            key_salt,
            lifetime,
            mki,
        })
    }
}

impl fmt::Display for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = base64::engine::general_purpose::STANDARD.encode(&self.key_salt);
        write!(f, "{} {} inline:{key}", self.tag, self.suite)?;
        for extra in [&self.lifetime, &self.mki].into_iter().flatten() {
            write!(f, "|{extra}")?;
        }
        Ok(())
    }
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub port_count: Option<u16>,
    pub proto: String,
    pub formats: Vec<String>,
    /// `i=` lines, written before `c=`.
    pub info: Vec<(char, String)>,
    pub connection: Option<Connection>,
    /// `b=`/`k=` lines, written after `c=`.
    pub other: Vec<(char, String)>,
    pub attributes: Vec<Attribute>,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    /// `i= u= e= p=` lines, written before `c=`.
    pub info: Vec<(char, String)>,
    pub connection: Option<Connection>,
    /// `b= t= r= z= k=` lines, written after `c=` (a missing `t=` is written as `t=0 0`).
    pub timing: Vec<(char, String)>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

fn find_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

impl MediaDescription {
    /// The value of the first `a=name`, `Some("")` for a flag.
    pub fn attr(&self, name: &str) -> Option<&str> {
        find_attr(&self.attributes, name).map(|a| a.value.as_deref().unwrap_or(""))
    }

    pub fn attrs<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.attributes
            .iter()
            .filter(move |a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.as_deref().unwrap_or(""))
    }

    /// Every well-formed rtpmap (malformed ones are skipped: the format then counts as
    /// unknown).
    pub fn rtpmaps(&self) -> Vec<RtpMap> {
        self.attrs("rtpmap").filter_map(parse_rtpmap).collect()
    }

    /// The rtpmap of a payload type; for static types without one, RFC 3551's.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.rtpmaps().into_iter().find(|m| m.pt == pt).or_else(|| {
            let (encoding, clock) = match pt {
                0 => ("PCMU", 8000),
                8 => ("PCMA", 8000),
                9 => ("G722", 8000),
                13 => ("CN", 8000),
                _ => return None,
            };
            Some(RtpMap {
                pt,
                encoding: encoding.to_owned(),
                clock,
                channels: None,
            })
        })
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attrs("fmtp").find_map(|v| {
            let (p, params) = v.split_once(' ')?;
            (p.parse() == Ok(pt)).then_some(params.trim())
        })
    }

    pub fn ptime(&self) -> Option<u32> {
        self.attr("ptime")?.trim().parse().ok()
    }

    /// The media-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::parse(&a.name.to_ascii_lowercase()))
    }

    /// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
    pub fn rtcp(&self) -> Option<(u16, Option<IpAddr>)> {
        let v = self.attr("rtcp")?;
        let mut parts = v.split_ascii_whitespace();
        let port = parts.next()?.parse().ok()?;
        let addr = parts.nth(2).and_then(|a| a.parse().ok());
        Some((port, addr))
    }

    pub fn rtcp_mux(&self) -> bool {
        self.attr("rtcp-mux").is_some()
    }

    /// Every crypto line; a malformed one is an error (the offer would be misread).
    pub fn crypto(&self) -> Result<Vec<Crypto>, SdpError> {
        self.attrs("crypto").map(Crypto::parse).collect()
    }

    /// The payload types as numbers (formats of RTP profiles are numbers 0..=127).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        // Only canonical numbers ("000" or "+0" would be answered as a different string).
        self.formats.iter().filter_map(|f| {
            let canonical =
                f.bytes().all(|b| b.is_ascii_digit()) && (f == "0" || !f.starts_with('0'));
            f.parse().ok().filter(|pt| canonical && *pt < 128)
        })
    }

    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let mut fields = rest.trim().split('/');
    let encoding = fields.next()?.to_owned();
    let clock = fields.next()?.parse().ok()?;
    let channels = match fields.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    let pt: u8 = pt.parse().ok()?;
    (pt < 128 && !encoding.is_empty()).then_some(RtpMap {
        pt,
        encoding,
        clock,
        channels,
    })
}

impl SessionDescription {
    pub fn attr(&self, name: &str) -> Option<&str> {
        find_attr(&self.attributes, name).map(|a| a.value.as_deref().unwrap_or(""))
    }

    /// The direction of a stream: its own attribute, else the session's, else sendrecv.
    pub fn direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction()
            .or_else(|| {
                self.attributes
                    .iter()
                    .find_map(|a| Direction::parse(&a.name.to_ascii_lowercase()))
            })
            .unwrap_or(Direction::SendRecv)
    }

    /// The stream's connection: its own `c=`, else the session's.
    pub fn connection<'s>(&'s self, media: &'s MediaDescription) -> Option<&'s Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// A media-level attribute, else the session-level one (ice-ufrag, fingerprint, setup).
    pub fn media_or_session_attr<'s>(
        &'s self,
        media: &'s MediaDescription,
        name: &str,
    ) -> Option<&'s str> {
        media.attr(name).or_else(|| self.attr(name))
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, SdpError> {
        if bytes.len() > MAX_SDP {
            return Err(SdpError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.is_empty());
        let mut next = |want: char| -> Result<(usize, String), SdpError> {
            match lines.next() {
                Some((n, l)) if l.len() >= 2 && l.starts_with(want) && l.as_bytes()[1] == b'=' => {
                    Ok((n, l[2..].to_owned()))
                }
                _ => Err(SdpError::Missing(want)),
            }
        };
        if next('v')?.1.trim() != "0" {
            return Err(SdpError::Missing('v'));
        }
        let (n, o) = next('o')?;
        let origin = parse_origin(&o).ok_or(SdpError::BadLine(n + 1))?;
        let session_name = next('s')?.1;
        let mut sd = SessionDescription {
            origin,
            session_name,
            info: Vec::new(),
            connection: None,
            timing: Vec::new(),
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut count = 3;
        for (n, line) in lines {
            count += 1;
            if count > MAX_LINES {
                return Err(SdpError::TooLarge);
            }
            let bad = SdpError::BadLine(n + 1);
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] if k.is_ascii_lowercase() => (*k as char, &line[2..]),
                _ => return Err(bad),
            };
            let media = sd.media.last_mut();
            match (kind, media) {
                ('m', _) => {
                    if sd.media.len() == MAX_MEDIA {
                        return Err(SdpError::TooLarge);
                    }
                    sd.media.push(parse_media_line(value).ok_or(bad)?);
                }
                ('c', None) => sd.connection = Some(parse_connection(value).ok_or(bad)?),
                ('c', Some(m)) => m.connection = Some(parse_connection(value).ok_or(bad)?),
                ('a', None) => sd.attributes.push(parse_attribute(value).ok_or(bad)?),
                ('a', Some(m)) => m.attributes.push(parse_attribute(value).ok_or(bad)?),
                ('i' | 'u' | 'e' | 'p', None) => sd.info.push((kind, value.to_owned())),
                ('b' | 't' | 'r' | 'z' | 'k', None) => sd.timing.push((kind, value.to_owned())),
                ('i', Some(m)) => m.info.push((kind, value.to_owned())),
                ('b' | 'k', Some(m)) => m.other.push((kind, value.to_owned())),
                _ => return Err(bad),
            }
        }
        Ok(sd)
    }

    /// Writes the description with CRLF line ends.
    pub fn to_string_crlf(&self) -> String {
        let mut s = String::new();
        let o = &self.origin;
        let _ = write!(
            s,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username, o.session_id, o.version, o.addr_type, o.address, self.session_name
        );
        write_lines(&mut s, &self.info);
        write_connection(&mut s, self.connection.as_ref());
        if !self.timing.iter().any(|(k, _)| *k == 't') {
            s.push_str("t=0 0\r\n");
        }
        write_lines(&mut s, &self.timing);
        write_attributes(&mut s, &self.attributes);
        for m in &self.media {
            let _ = write!(s, "m={} {}", m.media, m.port);
            if let Some(c) = m.port_count {
                let _ = write!(s, "/{c}");
            }
            let _ = write!(s, " {}", m.proto);
            for f in &m.formats {
                let _ = write!(s, " {f}");
            }
            s.push_str("\r\n");
            write_lines(&mut s, &m.info);
            write_connection(&mut s, m.connection.as_ref());
            write_lines(&mut s, &m.other);
            write_attributes(&mut s, &m.attributes);
        }
        s
    }
}

fn write_lines(s: &mut String, lines: &[(char, String)]) {
    for (k, v) in lines {
        let _ = write!(s, "{k}={v}\r\n");
    }
}

fn write_connection(s: &mut String, c: Option<&Connection>) {
    if let Some(c) = c {
        let _ = write!(s, "c=IN {} {}\r\n", c.addr_type, c.address);
    }
}

fn write_attributes(s: &mut String, attrs: &[Attribute]) {
    for a in attrs {
        match &a.value {
            Some(v) => {
                let _ = write!(s, "a={}:{v}\r\n", a.name);
            }
            None => {
                let _ = write!(s, "a={}\r\n", a.name);
            }
        }
    }
}

fn parse_origin(v: &str) -> Option<Origin> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    let [username, id, version, "IN", addr_type, address] = f[..] else {
        return None;
    };
    Some(Origin {
        username: username.to_owned(),
        session_id: id.parse().ok()?,
        version: version.parse().ok()?,
        addr_type: addr_type.to_owned(),
        address: address.to_owned(),
    })
}

fn parse_connection(v: &str) -> Option<Connection> {
    let f: Vec<&str> = v.split_ascii_whitespace().collect();
    let ["IN", addr_type, address] = f[..] else {
        return None;
    };
    Some(Connection {
        addr_type: addr_type.to_owned(),
        address: address.to_owned(),
    })
}

fn parse_attribute(v: &str) -> Option<Attribute> {
    let (name, value) = match v.split_once(':') {
        Some((n, v)) => (n, Some(v.to_owned())),
        None => (v, None),
    };
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| Attribute {
        name: name.to_owned(),
        value,
    })
}

fn parse_media_line(v: &str) -> Option<MediaDescription> {
    let mut f = v.split_ascii_whitespace();
    let media = f.next()?.to_owned();
    let port_field = f.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, c)) => (p.parse().ok()?, Some(c.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let proto = f.next()?.to_owned();
    let formats: Vec<String> = f.map(str::to_owned).collect();
    if formats.is_empty() {
        return None;
    }
    Some(MediaDescription {
        media,
        port,
        port_count,
        proto,
        formats,
        info: Vec::new(),
        connection: None,
        other: Vec::new(),
        attributes: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
