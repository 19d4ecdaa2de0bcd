//! The messages the transaction layer writes itself: responses to a request (§8.2.6), the
//! ACK of a non-2xx final response (§17.1.1.3), the CANCEL of an INVITE (§9.1), and the
//! 400 for a request too broken to parse (copying its raw Via/From/To/Call-ID/CSeq lines),
//! plus the matching keys (§17.1.3, §17.2.3). Pure functions over messages, kept apart from
//! the state machines.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use super::{Key, MAGIC_COOKIE};
use crate::message::{Headers, Message, Method, Via};
use crate::uri::Host;

/// A response to `request` with the headers §8.2.6.2 copies (every Via in order, From, To,
/// Call-ID, CSeq) and no body. The TU adds a To tag (for anything but 100) and the rest.
pub fn response_to(request: &Message<'_>, status: u16, reason: &str) -> Message<'static> {
    let mut response = Message::response(status, reason.to_owned());
    copy_headers(
        request.headers(),
        response.headers_mut(),
        &["Via", "From", "To", "Call-ID", "CSeq"],
    );
    response
}

fn copy_headers(from: &Headers<'_>, to: &mut Headers<'static>, names: &[&str]) {
    for h in from.iter() {
        if names.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            to.push(h.name.to_string(), h.value.to_string());
        }
    }
}

/// Stamps the top Via of a received request with where it really came from (§18.2.1
/// `received` when the sent-by host is not the source address; RFC 3581 `rport` filled in
/// when asked for, with `received` then always), so that responses built from it with
/// [`response_to`] carry the address a NAT rewrote. Leaves the request as it is when its
/// top Via does not parse.
pub(super) fn stamp_via(request: &mut Message<'static>, source: SocketAddr) {
    let headers = request.headers_mut();
    let Some(slot) = headers
        .0
        .iter()
        .position(|h| h.name.eq_ignore_ascii_case("Via"))
    else {
        return;
    };
    let value = headers.0[slot].value.to_string();
    let Some(first) = crate::message::split_list(&value).next() else {
        return;
    };
    // `first` is a slice of `value`: its place in it.
    let start = first.as_ptr() as usize - value.as_ptr() as usize;
    let end = start + first.len();
    let Ok(via) = Via::parse(first) else {
        return;
    };
    let same_host = match (&via.host, source.ip()) {
        (Host::V4(a), IpAddr::V4(b)) => *a == b,
        (Host::V6(a), IpAddr::V6(b)) => *a == b,
        _ => false,
    };
    let wants_rport = via.rport() == Some(None);
    if same_host && !wants_rport {
        return;
    }
    let mut params = via.params.clone();
    params.set("received", Some(Cow::Owned(source.ip().to_string())));
    if wants_rport {
        params.set("rport", Some(Cow::Owned(source.port().to_string())));
    }
    let port = via.port.map(|p| format!(":{p}")).unwrap_or_default();
    let stamped = format!(
        "{}SIP/2.0/{} {}{port}{params}{}",
        &value[..start],
        via.transport,
        via.host,
        &value[end..]
    );
    headers.0[slot].value = Cow::Owned(stamped);
}

/// The first Via element of a request's headers, as written.
fn top_via_text<'h>(headers: &'h Headers<'_>) -> Option<&'h str> {
    headers.values("Via").next()
}

/// The request line and the headers common to an ACK or CANCEL built from `invite`:
/// same Request-URI, the top Via only, Route, From, Call-ID, Max-Forwards.
fn derived_request(invite: &Message<'_>, method: Method<'static>) -> Option<Message<'static>> {
    let Message::Request(req) = invite else {
        return None;
    };
    let h = &req.headers;
    let seq = h.cseq().ok()?.seq;
    let mut out = Message::request(method.clone(), req.uri.clone().into_owned());
    let headers = out.headers_mut();
    headers.push("Via", top_via_text(h)?.to_owned());
    copy_headers(h, headers, &["Route", "From", "Call-ID"]);
    headers.push(
        "Max-Forwards",
        h.get("Max-Forwards").unwrap_or("70").to_owned(),
    );
    headers.push("CSeq", format!("{seq} {method}"));
    Some(out)
}

/// The ACK of a non-2xx final response (§17.1.1.3): the INVITE's Request-URI, Call-ID,
/// From, top Via and Route, the response's To (with its tag), CSeq number with ACK.
pub(super) fn ack_for(invite: &Message<'_>, response: &Message<'_>) -> Option<Message<'static>> {
    let mut ack = derived_request(invite, Method::Ack)?;
    let to = response
        .headers()
        .get("To")
        .or(invite.headers().get("To"))?;
    ack.headers_mut().push("To", to.to_owned());
    Some(ack)
}

/// The CANCEL of an INVITE (§9.1): as the INVITE, To without a response's tag, CSeq CANCEL.
pub(super) fn cancel_for(invite: &Message<'_>) -> Option<Message<'static>> {
    let mut cancel = derived_request(invite, Method::Cancel)?;
    let to = invite.headers().get("To")?;
    cancel.headers_mut().push("To", to.to_owned());
    Some(cancel)
}

/// The branch of a Via when it carries the magic cookie.
pub(super) fn rfc3261_branch<'v>(via: &'v Via<'_>) -> Option<&'v str> {
    via.branch()
        .filter(|b| b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len())
}

/// The method a transaction is keyed by: ACK goes to its INVITE.
fn key_method(method: &Method<'_>) -> String {
    match method {
        Method::Ack => Method::Invite.to_string(),
        m => m.to_string(),
    }
}

/// A client transaction's key: branch and CSeq method (§17.1.3).
pub(super) fn client_key(branch: &str, method: &Method<'_>) -> Key {
    (branch.to_owned(), String::new(), key_method(method))
}

/// A server transaction's key: branch, sent-by and method (§17.2.3). The sent-by is
/// lower-cased and an absent port written as the transport's default, so that `host` and
/// `host:5060` match.
pub(super) fn server_key(via: &Via<'_>, branch: &str, method: &Method<'_>) -> Key {
    let default_port =
        if via.transport.eq_ignore_ascii_case("TLS") || via.transport.eq_ignore_ascii_case("WSS") {
            5061
        } else {
            5060
        };
    let sent_by = format!(
        "{}:{}",
        via.host.to_string().to_ascii_lowercase(),
        via.port.unwrap_or(default_port)
    );
    (branch.to_owned(), sent_by, key_method(method))
}

/// A raw error response to bytes that did not parse, when they look like a request (not
/// ACK) whose Via, From, To, Call-ID and CSeq lines can be read; `None` otherwise.
pub(super) fn stateless_error(raw: &[u8], status: u16, reason: &str) -> Option<Vec<u8>> {
    const WANTED: [(&str, &str, &str); 5] = [
        ("via", "v", "Via"),
        ("from", "f", "From"),
        ("to", "t", "To"),
        ("call-id", "i", "Call-ID"),
        ("cseq", "cseq", "CSeq"),
    ];
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if start.starts_with("SIP/") || !start.ends_with(" SIP/2.0") || start.starts_with("ACK ") {
        return None;
    }
    let mut found: [Vec<&str>; 5] = Default::default();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        // Values that would break the response's framing (control characters, bytes that
        // were not UTF-8) are not copied.
        let clean = |c: char| (!c.is_control() || c == '\t') && c != char::REPLACEMENT_CHARACTER;
        if value.is_empty() || value.len() > 1024 || !value.chars().all(clean) {
            continue;
        }
        if let Some(i) = WANTED.iter().position(|(long, short, _)| {
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        }) {
            found[i].push(value);
        }
    }
    if found.iter().any(Vec::is_empty) {
        return None;
    }
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for (values, (_, _, name)) in found.iter().zip(WANTED) {
        for v in values {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}
