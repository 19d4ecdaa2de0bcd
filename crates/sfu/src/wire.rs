//! The relay payloads around the SDP: an `offer`/`answer` payload is the SDP as a JSON
//! string (or an `{"type","sdp"}` object), a `candidate` payload the browser's
//! `RTCIceCandidateInit` (or its candidate line). The `{"sfu":...}` messages and the
//! data-channel envelopes are `message.rs`'s.

use serde::Deserialize;
use switchboard_stun::{attr_type, Class, Message, Method};

/// The SDP text of an `offer`/`answer` relay payload: a JSON string, or an object with
/// an `sdp` string.
pub(crate) fn sdp_of(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        Text(String),
        Obj { sdp: String },
    }
    match serde_json::from_str::<P>(payload).ok()? {
        P::Text(s) | P::Obj { sdp: s } => Some(s),
    }
}

/// The candidate line of a `candidate` payload (`{"candidate":"candidate:..."}` or a string).
pub(crate) fn candidate_of(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        Text(String),
        Obj { candidate: String },
    }
    match serde_json::from_str::<P>(payload).ok()? {
        P::Text(s) | P::Obj { candidate: s } => Some(s),
    }
}

/// The local ufrag a STUN Binding request is addressed to (USERNAME `local:remote`).
/// With the parsed message, to check its MESSAGE-INTEGRITY before its source address is
/// learned (a forged request must not steer another participant's traffic).
pub(crate) fn stun_ufrag(datagram: &[u8]) -> Option<(&str, Message<'_>)> {
    if !matches!(datagram.first(), Some(0..=3)) {
        return None;
    }
    let msg = Message::parse(datagram).ok()?;
    if msg.method != Method::BINDING || msg.class != Class::Request {
        return None;
    }
    let user = msg.get(attr_type::USERNAME)?;
    let colon = user.iter().position(|&c| c == b':')?;
    let ufrag = std::str::from_utf8(&user[..colon]).ok()?;
    Some((ufrag, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(sdp_of(r#""v=0\r\n""#).unwrap(), "v=0\r\n");
        assert_eq!(sdp_of(r#"{"type":"offer","sdp":"v=0"}"#).unwrap(), "v=0");
        assert!(sdp_of("{}").is_none());
        assert_eq!(
            candidate_of(r#"{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0"}"#)
                .unwrap(),
            "candidate:1 1 udp 1 1.2.3.4 5 typ host"
        );
    }
}
