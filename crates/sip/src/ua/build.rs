//! Message building shared by the user agent's parts: our Via and Contact (the advertised
//! address when behind NAT), tags, responses with our To tag and Server header, SDP bodies,
//! and the capability headers (Allow, Supported) every dialog-making message carries.

use std::time::Instant;

use super::UserAgent;
use crate::message::Message;
use crate::sdp::SessionDescription;
use crate::transaction::{response_to, Transport, TxId};
use crate::uri::NameAddr;

/// The methods we handle (Allow).
pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK";
/// The extensions we support (Supported).
pub(super) const SUPPORTED: &str = "timer, 100rel";

impl UserAgent {
    /// `host[:port]` of our Via and Contact for what is sent over `transport`.
    pub(super) fn sent_by(&self, transport: Transport) -> String {
        let base = self
            .cfg
            .advertised
            .clone()
            .unwrap_or_else(|| self.cfg.local.to_string());
        match (transport, self.cfg.tls_port) {
            (Transport::Tls, Some(port)) => format!("{}:{port}", host_of(&base)),
            _ => base,
        }
    }

    /// A top Via with a fresh branch.
    pub(super) fn via(&self, transport: Transport) -> String {
        format!(
            "SIP/2.0/{} {};branch={}{};rport",
            transport.as_str(),
            self.sent_by(transport),
            crate::transaction::MAGIC_COOKIE,
            switchboard_util::random_hex(10)
        )
    }

    /// `<sip:user@host:port>` (with `;transport=` for other than UDP).
    pub(super) fn contact(&self, user: &str, transport: Transport) -> NameAddr<'static> {
        let param = match transport {
            Transport::Udp => String::new(),
            t => format!(";transport={}", t.as_str().to_ascii_lowercase()),
        };
        let text = format!("<sip:{user}@{}{param}>", self.sent_by(transport));
        match NameAddr::parse(&text) {
            Ok(a) => a.into_owned(),
            // A user part that does not make a URI (configuration): the bare address.
            Err(_) => NameAddr::parse(&format!("<sip:{}>", self.sent_by(transport)))
                .map(NameAddr::into_owned)
                .unwrap_or_else(|_| {
                    NameAddr::new(crate::uri::Uri::sip(crate::uri::Host::V4(
                        std::net::Ipv4Addr::UNSPECIFIED,
                    )))
                }),
        }
    }

    /// A response to `request` with `to_tag` in its To (unless it has one) and our Server.
    pub(super) fn response(
        &self,
        request: &Message<'_>,
        status: u16,
        reason: &str,
        to_tag: &str,
    ) -> Message<'static> {
        response(&self.cfg.user_agent, request, status, reason, to_tag)
    }

    /// Sends a response on a server transaction; a transaction that is gone (it timed out
    /// meanwhile) needs no answer.
    pub(super) fn send_response(&mut self, now: Instant, tx: TxId, response: Message<'static>) {
        let _ = self.tx.respond(now, tx, response);
    }

    /// Answers a request outside any call (a fresh tag for the To).
    pub(super) fn answer(
        &mut self,
        now: Instant,
        tx: TxId,
        request: &Message<'_>,
        status: u16,
        reason: &str,
    ) {
        let r = self.response(request, status, reason, &new_tag());
        self.send_response(now, tx, r);
    }
}

/// [`UserAgent::response`] for where `self` is borrowed in part.
pub(super) fn response(
    server: &str,
    request: &Message<'_>,
    status: u16,
    reason: &str,
    to_tag: &str,
) -> Message<'static> {
    let mut r = response_to(request, status, reason);
    let h = r.headers_mut();
    if let Some(to) = h.get("To") {
        let tagged = NameAddr::parse(to).is_ok_and(|n| n.tag().is_some());
        if !tagged && status > 100 {
            let value = format!("{to};tag={to_tag}");
            h.set("To", value);
        }
    }
    h.push("Server", server.to_owned());
    r
}

/// Copies the request's Record-Route values, in order, into a response that makes a dialog
/// (an 18x or the 2xx to an INVITE), as RFC 3261 §12.1.1 asks: the caller takes its route
/// set from that response, and without it its ACK and BYE would skip the proxies that
/// record-routed (a WebSocket client's proxy can reach it no other way).
pub(super) fn copy_record_route(request: &Message<'_>, response: &mut Message<'static>) {
    let h = response.headers_mut();
    for rr in request
        .headers()
        .iter()
        .filter(|x| x.name.eq_ignore_ascii_case("Record-Route"))
    {
        h.push(rr.name.to_string(), rr.value.to_string());
    }
}

pub(super) fn new_tag() -> String {
    switchboard_util::random_hex(6)
}

/// The SDP of a message: `Ok(None)` without a body, `Err` for a body that is not SDP or not
/// valid SDP.
pub(super) fn sdp_of(m: &Message<'_>) -> Result<Option<SessionDescription>, ()> {
    if m.body().is_empty() {
        return Ok(None);
    }
    match m.headers().content_type() {
        Some(t) if t.eq_ignore_ascii_case("application/sdp") => SessionDescription::parse(m.body())
            .map(Some)
            .map_err(|_| ()),
        _ => Err(()),
    }
}

pub(super) fn set_sdp(m: &mut Message<'static>, sdp: &SessionDescription) {
    m.headers_mut().push("Content-Type", "application/sdp");
    m.set_body(sdp.to_string_crlf().into_bytes());
}

pub(super) fn status_of(m: &Message<'_>) -> u16 {
    match m {
        Message::Response(r) => r.status,
        Message::Request(_) => 0,
    }
}

pub(super) fn reason_of(m: &Message<'_>) -> String {
    match m {
        Message::Response(r) => r.reason.to_string(),
        Message::Request(_) => String::new(),
    }
}

/// `host[:port]` (or `[v6]:port`) without its port.
fn host_of(sent_by: &str) -> &str {
    if sent_by.starts_with('[') {
        return sent_by
            .split_once(']')
            .map_or(sent_by, |(h, _)| &sent_by[..=h.len()]);
    }
    match sent_by.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => sent_by,
    }
}

#[cfg(test)]
mod host_tests {
    use super::host_of;

    #[test]
    fn the_port_comes_off() {
        assert_eq!(host_of("192.0.2.1:5060"), "192.0.2.1");
        assert_eq!(host_of("192.0.2.1"), "192.0.2.1");
        assert_eq!(host_of("[2001:db8::1]:5060"), "[2001:db8::1]");
        assert_eq!(host_of("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(host_of("gw.example.net:5070"), "gw.example.net");
    }
}
