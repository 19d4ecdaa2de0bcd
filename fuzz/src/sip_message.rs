//! SIP messages (`switchboard_sip::message`) as they arrive: a datagram, or a TCP/TLS/WS
//! stream cut into frames by `frame_len`.
//!
//! Checks: no panic or overflow whatever the bytes (every failure is a `ParseError`);
//! whatever parses writes out (`to_bytes`) to bytes that parse back to the same message
//! (start line, headers in order, body; Content-Length is rewritten from the body and a
//! Request-URI password is never written, so those two are left out of the comparison)
//! and that write the same again; every typed accessor the transaction layer calls
//! answers without panicking; a digest challenge or credentials value that parses writes
//! back to one that parses equal. On the stream side: each frame `frame_len` cuts lies
//! inside the buffer and is cut the same from a buffer holding only that frame.

use switchboard_sip::digest::{Challenge, Credentials};
use switchboard_sip::message::{frame_len, Headers, Limits, Message};

/// Room for what writing adds (expanded compact names, a Content-Length line).
const RELAXED: Limits = Limits {
    max_message: 2 * 64 * 1024 + 64,
    max_headers: 257,
    max_line: 2 * 8 * 1024,
};

fn without_content_length<'a>(h: &'a Headers<'_>) -> Vec<(&'a str, &'a str)> {
    h.iter()
        .filter(|x| !x.name.eq_ignore_ascii_case("Content-Length"))
        .map(|x| (&*x.name, &*x.value))
        .collect()
}

fn same(a: &Message<'_>, b: &Message<'_>) -> bool {
    let start = match (a, b) {
        (Message::Request(x), Message::Request(y)) => {
            let mut xu = x.uri.clone();
            xu.password = None;
            x.method == y.method && xu == y.uri
        }
        (Message::Response(x), Message::Response(y)) => {
            x.status == y.status && x.reason == y.reason
        }
        _ => false,
    };
    start
        && without_content_length(a.headers()) == without_content_length(b.headers())
        && a.body() == b.body()
}

fn touch_accessors(h: &Headers<'_>) {
    let _ = h.top_via().map(|v| {
        (
            v.branch().map(str::len),
            v.rport(),
            v.received().map(str::len),
        )
    });
    let _ = h.vias().count();
    let _ = h.from().map(|f| f.tag().map(str::len));
    let _ = h.to();
    let _ = h.call_id();
    let _ = h.cseq();
    let _ = h.max_forwards();
    let _ = h.expires();
    let _ = h.content_length();
    let _ = h.content_type();
    let _ = h
        .contacts()
        .map(|c| c.iter().filter_map(|c| c.expires()).max());
    let _ = h.route();
    let _ = h.record_route();
    let _ = (h.require(), h.supported(), h.allow());
    let _ = (h.rseq(), h.rack(), h.session_expires(), h.min_se());
    for v in h.www_authenticate().chain(h.proxy_authenticate()) {
        if let Ok(c) = Challenge::parse(v) {
            let text = c.to_header_value();
            assert_eq!(Challenge::parse(&text).as_ref(), Ok(&c), "challenge {text}");
        }
    }
    for v in h.authorization().chain(h.proxy_authorization()) {
        if let Ok(c) = Credentials::parse(v) {
            let text = c.to_header_value();
            assert_eq!(
                Credentials::parse(&text).as_ref(),
                Ok(&c),
                "credentials {text}"
            );
        }
    }
}

pub fn run(data: &[u8]) {
    // A datagram.
    if let Ok(msg) = Message::parse(data) {
        touch_accessors(msg.headers());
        let mut out = Vec::new();
        msg.to_bytes(&mut out);
        let again = match Message::parse_with(&out, &RELAXED) {
            Ok(m) => m,
            Err(e) => panic!(
                "written message does not parse: {e}: {:?}",
                String::from_utf8_lossy(&out)
            ),
        };
        assert!(same(&msg, &again), "round trip changed the message");
        let mut second = Vec::new();
        again.to_bytes(&mut second);
        assert_eq!(out, second, "writing is not stable");
    }
    // A stream.
    let limits = Limits::default();
    let mut rest = data;
    while let Ok(Some(n)) = frame_len(rest, &limits) {
        assert!(n > 0 && n <= rest.len(), "frame of {n} in {}", rest.len());
        assert_eq!(
            frame_len(&rest[..n], &limits),
            Ok(Some(n)),
            "frame not self-contained"
        );
        if let Ok(msg) = Message::parse(&rest[..n]) {
            assert_eq!(
                msg.headers().content_length().ok().flatten(),
                Some(msg.body().len())
            );
        }
        rest = &rest[n..];
    }
}
