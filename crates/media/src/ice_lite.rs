//! ICE-lite responder (RFC 8445 §2.5, STUN per RFC 5389/8489) for a DTLS-SRTP phone leg.
//!
//! Why lite: the gateway's RTP port is a public host address, so it never needs to gather or
//! check candidates itself; the phone (a full agent, e.g. baresip with `medianat=ice`) runs
//! the checks and nominates. A lite agent is always controlled: it answers Binding requests
//! whose USERNAME is `ourufrag:theirufrag` and whose MESSAGE-INTEGRITY verifies with our
//! password (short-term credentials), and media goes to the address the peer nominated
//! (USE-CANDIDATE), or before any nomination to the latest address whose check verified.
//!
//! Unknown usernames are dropped silently (they are someone else's checks, or noise); a
//! known username with a bad integrity gets 401 (RFC 8489 §9.1.3). The STUN codec is the
//! workspace's `switchboard-stun` (zero-copy parse, in-place writer).

use std::net::SocketAddr;
use std::time::Instant;
use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method};

/// Largest response written (header + XOR-MAPPED-ADDRESS v6 + integrity + fingerprint, or
/// an error code with its reason).
const RESPONSE_CAPACITY: usize = 128;

/// The lite responder of one ICE session (one component: RTP and RTCP are muxed).
#[derive(Debug, Clone)]
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    remote_ufrag: Option<String>,
    nominated: Option<SocketAddr>,
    latest_valid: Option<SocketAddr>,
    last_valid_check: Option<Instant>,
}

/// What became of a datagram that looked like STUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StunOutcome {
    /// A valid check: send `response` back to its source.
    Answered {
        /// The encoded success response.
        response: Vec<u8>,
        /// The check carried USE-CANDIDATE: its source is now where media goes.
        nominated: bool,
    },
    /// Our username with a wrong MESSAGE-INTEGRITY: send this 401 back.
    Unauthorized(Vec<u8>),
    /// Not for us (other username, not a Binding request, malformed): dropped.
    Ignored,
}

impl IceLite {
    /// A responder with our credentials (`a=ice-ufrag` / `a=ice-pwd` of the answer) and,
    /// when the offer carried one, the peer's ufrag (checked as the USERNAME's second half).
    pub fn new(local_ufrag: &str, local_pwd: &str, remote_ufrag: Option<&str>) -> IceLite {
        IceLite {
            local_ufrag: local_ufrag.to_owned(),
            local_pwd: local_pwd.to_owned(),
            remote_ufrag: remote_ufrag.map(str::to_owned),
            nominated: None,
            latest_valid: None,
            last_valid_check: None,
        }
    }

    /// The peer's ufrag, once known (an offerer learns it from the answer): checks must
    /// name it from then on.
    pub fn set_remote_ufrag(&mut self, ufrag: &str) {
        self.remote_ufrag = Some(ufrag.to_owned());
    }

    /// Our ufrag.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Our password.
    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    /// Where media goes: the nominated address, else the latest that passed a check.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.nominated.or(self.latest_valid)
    }

    /// The peer nominated a pair (USE-CANDIDATE seen on a valid check).
    pub fn is_nominated(&self) -> bool {
        self.nominated.is_some()
    }

    /// When the last valid check arrived (consent freshness is the peer's to keep up).
    pub fn last_valid_check(&self) -> Option<Instant> {
        self.last_valid_check
    }

    /// A STUN datagram from `from`: answer a valid Binding request, 401 a known user with
    /// bad integrity, drop the rest.
    pub fn handle_stun(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) -> StunOutcome {
        let Ok(msg) = Message::parse(datagram) else {
            return StunOutcome::Ignored;
        };
        if msg.method != Method::BINDING || msg.class != Class::Request {
            // Indications (keepalives) and stray responses need nothing.
            return StunOutcome::Ignored;
        }
        if !self.username_is_ours(msg.get(attr_type::USERNAME)) {
            return StunOutcome::Ignored;
        }
        if msg.has_fingerprint() && !msg.verify_fingerprint() {
            return StunOutcome::Ignored;
        }
        if !msg.verify_integrity(self.local_pwd.as_bytes()) {
            return match self.error_response(&msg, 401, "Unauthorized") {
                Some(r) => StunOutcome::Unauthorized(r),
                None => StunOutcome::Ignored,
            };
        }
        let Some(response) = self.success_response(&msg, from) else {
            return StunOutcome::Ignored;
        };
        let nominated = msg.has(attr_type::USE_CANDIDATE);
        if nominated {
            self.nominated = Some(from);
        }
        self.latest_valid = Some(from);
        self.last_valid_check = Some(now);
        StunOutcome::Answered {
            response,
            nominated,
        }
    }

    /// USERNAME is `ourufrag:theirufrag` (the second half checked only when known).
    fn username_is_ours(&self, username: Option<&[u8]>) -> bool {
        let Some(name) = username.and_then(|u| std::str::from_utf8(u).ok()) else {
            return false;
        };
        let Some((ours, theirs)) = name.split_once(':') else {
            return false;
        };
        let theirs_known = match &self.remote_ufrag {
            Some(r) => r == theirs,
            None => true,
        };
        ours == self.local_ufrag && theirs_known
    }

    fn success_response(&self, req: &Message<'_>, from: SocketAddr) -> Option<Vec<u8>> {
        let mut buf = [0u8; RESPONSE_CAPACITY];
        let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Success, req.tid).ok()?;
        w.xor_address(attr_type::XOR_MAPPED_ADDRESS, &from)
            .ok()?
            .message_integrity(self.local_pwd.as_bytes())
            .ok()?
            .fingerprint()
            .ok()?;
        let len = w.finish();
        Some(buf[..len].to_vec())
    }

    fn error_response(&self, req: &Message<'_>, code: u16, reason: &str) -> Option<Vec<u8>> {
        let mut buf = [0u8; RESPONSE_CAPACITY];
        let mut w = MessageWriter::new(&mut buf, Method::BINDING, Class::Error, req.tid).ok()?;
        w.error_code(code, reason).ok()?.fingerprint().ok()?;
        let len = w.finish();
        Some(buf[..len].to_vec())
    }
}

#[cfg(test)]
mod tests;
