//! Parsing a message from bytes and cutting messages out of a stream.
//!
//! The rules, and why: headers end at the first CRLFCRLF (RFC 3261 §7.5); obsolete line
//! folding (a line starting with space or tab continues the previous header, §7.3.1) is
//! still sent by old equipment, so it is accepted and joined; on a datagram the body is
//! Content-Length bytes (extra bytes are ignored, §18.3) or the rest of the datagram when
//! there is none; on a stream Content-Length is required (§18.3) and says where the next
//! message starts. Everything is bounded by [`Limits`] so that a peer cannot make us buffer
//! or scan without end; every failure is a [`ParseError`] value, never a panic.

use std::borrow::Cow;

use super::{is_token_char, Header, Headers, Message, Method, ParseError, Request, Response};
use crate::uri::Uri;

/// Bounds on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message (start line, headers, body).
    pub max_message: usize,
    /// Header lines (after joining folded ones).
    pub max_headers: usize,
    /// One header line (folded continuation lines included).
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 64 * 1024,
            max_headers: 256,
            max_line: 8 * 1024,
        }
    }
}

/// Compact header forms (RFC 3261 §7.3.3 and the RFCs that define them).
const COMPACT: [(u8, &str); 12] = [
    (b'v', "Via"),
    (b'f', "From"),
    (b't', "To"),
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'l', "Content-Length"),
    (b'c', "Content-Type"),
    (b'k', "Supported"),
    (b's', "Subject"),
    (b'e', "Content-Encoding"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
];

fn expand_name(name: &str) -> Cow<'_, str> {
    if let [b] = name.as_bytes() {
        let lower = b.to_ascii_lowercase();
        if let Some((_, full)) = COMPACT.iter().find(|(c, _)| *c == lower) {
            return Cow::Borrowed(full);
        }
    }
    Cow::Borrowed(name)
}

fn find_crlfcrlf(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Leading CRLFs (keep-alives, RFC 5626 §3.5.1) before a message.
fn leading_crlfs(buf: &[u8]) -> usize {
    let mut n = 0;
    while buf.get(n..n + 2) == Some(b"\r\n") {
        n += 2;
    }
    n
}

/// How many bytes at the start of a stream buffer make the next frame: `Ok(None)` when more
/// bytes are needed. A frame made only of CRLFs is a keep-alive (answer a double-CRLF ping
/// with a single CRLF pong); [`Message::parse`] refuses it with [`ParseError::Empty`]. A
/// message on a stream must carry Content-Length.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    let skip = leading_crlfs(buf);
    if skip > 0 {
        return Ok(Some(skip));
    }
    let Some(head_end) = find_crlfcrlf(buf) else {
        if buf.len() >= limits.max_message {
            return Err(ParseError::TooLarge);
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    // The same header reading as `parse` (folding, compact forms), so both agree.
    let headers = parse_headers(head.split("\r\n").skip(1), limits)?;
    let length = content_length(&headers)?;
    let length = length.ok_or(ParseError::MissingContentLength)?;
    let total = (head_end + 4)
        .checked_add(length)
        .ok_or(ParseError::TooLarge)?;
    if total > limits.max_message {
        return Err(ParseError::TooLarge);
    }
    Ok((buf.len() >= total).then_some(total))
}

fn parse_content_length(value: &str) -> Result<usize, ParseError> {
    let v = value.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadContentLength);
    }
    v.parse().map_err(|_| ParseError::BadContentLength)
}

/// The Content-Length of a message; several lines must agree.
fn content_length(headers: &Headers<'_>) -> Result<Option<usize>, ParseError> {
    let mut length = None;
    for v in headers.get_all("Content-Length") {
        let n = parse_content_length(v)?;
        if length.is_some_and(|l| l != n) {
            return Err(ParseError::BadContentLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// Parses one message: a datagram, or a frame cut by [`frame_len`]. Leading keep-alive
/// CRLFs are skipped.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError> {
    let buf = &buf[leading_crlfs(buf)..];
    if buf.is_empty() {
        return Err(ParseError::Empty);
    }
    if buf.len() > limits.max_message {
        return Err(ParseError::TooLarge);
    }
    let head_end = find_crlfcrlf(buf).ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    let rest = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or("");
    let headers = parse_headers(lines, limits)?;

    let length = content_length(&headers)?;
    let body = match length {
        Some(n) => rest.get(..n).ok_or(ParseError::BodyTruncated)?,
        None => rest,
    };
    let body = Cow::Borrowed(body);

    if let Some(status_line) = start.strip_prefix("SIP/") {
        let rest = status_line
            .strip_prefix("2.0 ")
            .ok_or(ParseError::BadVersion)?;
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStatus);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::BadStatus)?;
        if !(100..=699).contains(&status) || reason.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(ParseError::BadStatus);
        }
        return Ok(Message::Response(Response {
            status,
            reason: Cow::Borrowed(reason),
            headers,
            body,
        }));
    }
    let mut parts = start.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine);
    };
    let method = Method::parse(method).ok_or(ParseError::BadStartLine)?;
    if version != "SIP/2.0" {
        return Err(if version.starts_with("SIP/") {
            ParseError::BadVersion
        } else {
            ParseError::BadStartLine
        });
    }
    Ok(Message::Request(Request {
        method,
        uri: Uri::parse(uri)?,
        headers,
        body,
    }))
}

fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
    limits: &Limits,
) -> Result<Headers<'a>, ParseError> {
    let mut headers: Vec<Header<'a>> = Vec::new();
    let mut line_len = 0;
    for (index, line) in lines.enumerate() {
        if line.len() > limits.max_line {
            return Err(ParseError::LineTooLong);
        }
        if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(ParseError::BadHeader(index + 1));
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: join to the previous value with one space.
            let last = headers.last_mut().ok_or(ParseError::BadHeader(index + 1))?;
            line_len += line.len();
            if line_len > limits.max_line {
                return Err(ParseError::LineTooLong);
            }
            let more = line.trim();
            if !more.is_empty() {
                let value = last.value.to_mut();
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::BadHeader(index + 1))?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseError::BadHeader(index + 1));
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        line_len = line.len();
        headers.push(Header {
            name: expand_name(name),
            value: Cow::Borrowed(value.trim_matches([' ', '\t'])),
        });
    }
    Ok(Headers(headers))
}
