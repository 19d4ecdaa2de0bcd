//! SIP messages (RFC 3261 §7): requests and responses, their headers in order, the body as
//! bytes.
//!
//! Parsing borrows from the input buffer ([`Message::parse`] allocates only the header list,
//! and a value only when obsolete line folding has to be joined), so a server can look at a
//! request's Via, Call-ID and CSeq before deciding to keep anything. Header names come out
//! with compact forms expanded (`v` → `Via`, …) so that every lookup is by full name,
//! case-insensitively. Building an outgoing message uses the same types with owned values;
//! [`Message::to_bytes`] writes it with a Content-Length that always matches the body.
//!
//! Framing (which bytes of a TCP/TLS/WebSocket stream make one message) is in [`parse`];
//! the typed accessors the transaction and dialog layers read (Via, CSeq, Contact, …) are in
//! [`headers`].

use std::borrow::Cow;
use std::fmt;

use crate::uri::{Uri, UriError};

pub mod headers;
pub mod parse;

pub use headers::{CSeq, Contact, RAck, SessionExpires, Via};
pub use parse::{frame_len, Limits};

/// Why bytes are not a SIP message. A server answers a request it cannot parse with
/// [`ParseError::status`] and [`ParseError::reason`] when it can still read enough of it
/// to answer (RFC 3261 §16.3, §21.4.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message (only keep-alive CRLFs)")]
    Empty,
    #[error("message larger than the limit")]
    TooLarge,
    #[error("no end of headers (CRLFCRLF)")]
    Incomplete,
    #[error("headers are not UTF-8")]
    NotUtf8,
    #[error("malformed request or status line")]
    BadStartLine,
    #[error("unsupported SIP version")]
    BadVersion,
    #[error("status code out of 100..=699")]
    BadStatus,
    #[error("malformed header line {0}")]
    BadHeader(usize),
    #[error("too many headers")]
    TooManyHeaders,
    #[error("header line too long")]
    LineTooLong,
    #[error("malformed or conflicting Content-Length")]
    BadContentLength,
    #[error("Content-Length missing on a stream transport")]
    MissingContentLength,
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    #[error("bad URI: {0}")]
    Uri(#[from] UriError),
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    BadHeaderValue(&'static str),
}

impl ParseError {
    /// The status code to answer a request with this error.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TooLarge => 513,
            ParseError::BadVersion => 505,
            ParseError::Uri(UriError::Scheme) => 416,
            _ => 400,
        }
    }

    /// A reason phrase that says what was wrong (sent with a 400).
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::TooLarge => "Message Too Large",
            ParseError::BadVersion => "Version Not Supported",
            ParseError::Uri(UriError::Scheme) => "Unsupported URI Scheme",
            ParseError::MissingHeader(_) => "Bad Request (Missing Header)",
            ParseError::BadHeaderValue(_) | ParseError::BadHeader(_) => {
                "Bad Request (Malformed Header)"
            }
            ParseError::BadContentLength
            | ParseError::BodyTruncated
            | ParseError::MissingContentLength => "Bad Request (Content-Length)",
            _ => "Bad Request",
        }
    }
}

/// A request method (case-sensitive, RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Refer,
    Notify,
    Subscribe,
    Message,
    Other(Cow<'a, str>),
}

const METHODS: [(&str, Method<'static>); 13] = [
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("REGISTER", Method::Register),
    ("OPTIONS", Method::Options),
    ("INFO", Method::Info),
    ("UPDATE", Method::Update),
    ("PRACK", Method::Prack),
    ("REFER", Method::Refer),
    ("NOTIFY", Method::Notify),
    ("SUBSCRIBE", Method::Subscribe),
    ("MESSAGE", Method::Message),
];

impl<'a> Method<'a> {
    /// Parses a method token; `None` when it is not a token.
    pub fn parse(s: &'a str) -> Option<Self> {
        if s.is_empty() || !s.bytes().all(is_token_char) {
            return None;
        }
        Some(
            METHODS
                .iter()
                .find(|(name, _)| *name == s)
                .map(|(_, m)| m.clone())
                .unwrap_or(Method::Other(Cow::Borrowed(s))),
        )
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(s) => s,
            known => METHODS
                .iter()
                .find(|(_, m)| m == known)
                .map(|(name, _)| *name)
                .unwrap_or(""),
        }
    }

    pub fn into_owned(self) -> Method<'static> {
        match self {
            Method::Other(s) => Method::Other(Cow::Owned(s.into_owned())),
            Method::Invite => Method::Invite,
            Method::Ack => Method::Ack,
            Method::Bye => Method::Bye,
            Method::Cancel => Method::Cancel,
            Method::Register => Method::Register,
            Method::Options => Method::Options,
            Method::Info => Method::Info,
            Method::Update => Method::Update,
            Method::Prack => Method::Prack,
            Method::Refer => Method::Refer,
            Method::Notify => Method::Notify,
            Method::Subscribe => Method::Subscribe,
            Method::Message => Method::Message,
        }
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 §25.1 token characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// One header line: the name (compact form expanded) and the value, trimmed, with folded
/// continuation lines joined by one space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// Headers in message order. Lookups are case-insensitive by full name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers<'a>(pub Vec<Header<'a>>);

impl<'a> Headers<'a> {
    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &*h.value)
    }

    /// Every line of a header, in order (each as written, not split on commas).
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| &*h.value)
    }

    /// Every element of a comma-separated list header (Via, Route, Contact, Allow, …) over
    /// all its lines, split on commas outside quotes and `<>`. Not for the authentication
    /// headers, whose parameters are separated by commas.
    pub fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.get_all(name).flat_map(split_list)
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        self.0.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Removes every line of a header.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    /// Replaces every line of a header with one (at the place of the first, else at the end).
    pub fn set(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        let name = name.into();
        let value = value.into();
        match self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&name))
        {
            Some(i) => {
                self.0[i].value = value;
                let mut n = 0;
                self.0.retain(|h| {
                    n += 1;
                    n - 1 <= i || !h.name.eq_ignore_ascii_case(&name)
                });
            }
            None => self.0.push(Header { name, value }),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header<'a>> {
        self.0.iter()
    }

    pub fn into_owned(self) -> Headers<'static> {
        Headers(
            self.0
                .into_iter()
                .map(|h| Header {
                    name: Cow::Owned(h.name.into_owned()),
                    value: Cow::Owned(h.value.into_owned()),
                })
                .collect(),
        )
    }
}

/// Splits a list value on commas outside `"…"` and `<…>`, trimming each element and
/// dropping empty ones.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    let mut angle = false;
    let mut done = false;
    std::iter::from_fn(move || loop {
        if done {
            return None;
        }
        let mut cut = None;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            match b {
                b'\\' if quoted => i += 1,
                b'"' if !angle => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    cut = Some(i - 1);
                    break;
                }
                _ => {}
            }
        }
        let end = match cut {
            Some(c) => c,
            None => {
                done = true;
                value.len()
            }
        };
        let part = value.get(start..end).unwrap_or("").trim();
        start = end + 1;
        if !part.is_empty() {
            return Some(part);
        }
    })
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method<'a>,
    pub uri: Uri<'a>,
    pub headers: Headers<'a>,
    pub body: Cow<'a, [u8]>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    pub reason: Cow<'a, str>,
    pub headers: Headers<'a>,
    pub body: Cow<'a, [u8]>,
}

/// A SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Request(Request<'a>),
    Response(Response<'a>),
}

impl<'a> Message<'a> {
    /// A request with no headers and no body (add them with [`Message::headers_mut`]).
    pub fn request(method: Method<'a>, uri: Uri<'a>) -> Self {
        Message::Request(Request {
            method,
            uri,
            headers: Headers::default(),
            body: Cow::Borrowed(&[]),
        })
    }

    /// A response with no headers and no body.
    pub fn response(status: u16, reason: impl Into<Cow<'a, str>>) -> Self {
        Message::Response(Response {
            status,
            reason: reason.into(),
            headers: Headers::default(),
            body: Cow::Borrowed(&[]),
        })
    }

    /// Parses one whole message (a UDP datagram, or a frame cut by [`frame_len`]) with the
    /// default [`Limits`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        parse::parse(buf, &Limits::default())
    }

    /// [`Message::parse`] with other [`Limits`].
    pub fn parse_with(buf: &'a [u8], limits: &Limits) -> Result<Self, ParseError> {
        parse::parse(buf, limits)
    }

    pub fn headers(&self) -> &Headers<'a> {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers<'a> {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    pub fn set_body(&mut self, body: impl Into<Cow<'a, [u8]>>) {
        match self {
            Message::Request(r) => r.body = body.into(),
            Message::Response(r) => r.body = body.into(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self, Message::Request(_))
    }

    /// Writes the message. Content-Length is written from the body (replacing any value
    /// in the headers) so that what goes out is always framed right.
    pub fn to_bytes(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = match self {
            Message::Request(r) => write!(out, "{} {} SIP/2.0\r\n", r.method, r.uri),
            Message::Response(r) => write!(out, "SIP/2.0 {} {}\r\n", r.status, r.reason),
        };
        for h in self.headers().iter() {
            if h.name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body().len());
        out.extend_from_slice(self.body());
    }

    pub fn into_owned(self) -> Message<'static> {
        match self {
            Message::Request(r) => Message::Request(Request {
                method: r.method.into_owned(),
                uri: r.uri.into_owned(),
                headers: r.headers.into_owned(),
                body: Cow::Owned(r.body.into_owned()),
            }),
            Message::Response(r) => Message::Response(Response {
                status: r.status,
                reason: Cow::Owned(r.reason.into_owned()),
                headers: r.headers.into_owned(),
                body: Cow::Owned(r.body.into_owned()),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
