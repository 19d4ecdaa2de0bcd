//! STUN and TURN error codes by name (RFC 8489 §14.8, RFC 8656 §19, RFC 6062 §6.3,
//! RFC 8445 §7.3.1.1), with their standard reason phrases, so that handlers read like
//! the RFCs rather than as bare numbers.

use std::fmt;

/// A STUN ERROR-CODE value (300..=699), class and number combined.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    pub const TRY_ALTERNATE: ErrorCode = ErrorCode(300);
    pub const BAD_REQUEST: ErrorCode = ErrorCode(400);
    pub const UNAUTHORIZED: ErrorCode = ErrorCode(401);
    pub const FORBIDDEN: ErrorCode = ErrorCode(403);
    pub const MOBILITY_FORBIDDEN: ErrorCode = ErrorCode(405);
    pub const UNKNOWN_ATTRIBUTE: ErrorCode = ErrorCode(420);
    pub const ALLOCATION_MISMATCH: ErrorCode = ErrorCode(437);
    pub const STALE_NONCE: ErrorCode = ErrorCode(438);
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: ErrorCode = ErrorCode(440);
    pub const WRONG_CREDENTIALS: ErrorCode = ErrorCode(441);
    pub const UNSUPPORTED_TRANSPORT_PROTOCOL: ErrorCode = ErrorCode(442);
    pub const PEER_ADDRESS_FAMILY_MISMATCH: ErrorCode = ErrorCode(443);
    pub const CONNECTION_ALREADY_EXISTS: ErrorCode = ErrorCode(446);
    pub const CONNECTION_TIMEOUT_OR_FAILURE: ErrorCode = ErrorCode(447);
    pub const ALLOCATION_QUOTA_REACHED: ErrorCode = ErrorCode(486);
    pub const ROLE_CONFLICT: ErrorCode = ErrorCode(487);
    pub const SERVER_ERROR: ErrorCode = ErrorCode(500);
    pub const INSUFFICIENT_CAPACITY: ErrorCode = ErrorCode(508);

    /// The code as carried on the wire (class * 100 + number).
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The standard reason phrase ("Error" for codes without one).
    pub fn reason(self) -> &'static str {
        reason_phrase(self.0)
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c.0
    }
}

impl PartialEq<u16> for ErrorCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.reason())
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// Standard reason phrases (RFC 8489 §14.8, RFC 8656 §19, RFC 6062 §6.3, RFC 8445).
pub fn reason_phrase(code: u16) -> &'static str {
    match ErrorCode(code) {
        ErrorCode::TRY_ALTERNATE => "Try Alternate",
        ErrorCode::BAD_REQUEST => "Bad Request",
        ErrorCode::UNAUTHORIZED => "Unauthorized",
        ErrorCode::FORBIDDEN => "Forbidden",
        ErrorCode::MOBILITY_FORBIDDEN => "Mobility Forbidden",
        ErrorCode::UNKNOWN_ATTRIBUTE => "Unknown Attribute",
        ErrorCode::ALLOCATION_MISMATCH => "Allocation Mismatch",
        ErrorCode::STALE_NONCE => "Stale Nonce",
        ErrorCode::ADDRESS_FAMILY_NOT_SUPPORTED => "Address Family not Supported",
        ErrorCode::WRONG_CREDENTIALS => "Wrong Credentials",
        ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL => "Unsupported Transport Protocol",
        ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH => "Peer Address Family Mismatch",
        ErrorCode::CONNECTION_ALREADY_EXISTS => "Connection Already Exists",
        ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE => "Connection Timeout or Failure",
        ErrorCode::ALLOCATION_QUOTA_REACHED => "Allocation Quota Reached",
        ErrorCode::ROLE_CONFLICT => "Role Conflict",
        ErrorCode::SERVER_ERROR => "Server Error",
        ErrorCode::INSUFFICIENT_CAPACITY => "Insufficient Capacity",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_wire_numbers_and_phrases() {
        assert_eq!(ErrorCode::ALLOCATION_MISMATCH, 437);
        assert_eq!(
            ErrorCode::INSUFFICIENT_CAPACITY.reason(),
            "Insufficient Capacity"
        );
        assert_eq!(reason_phrase(442), "Unsupported Transport Protocol");
        assert_eq!(reason_phrase(487), "Role Conflict");
        assert_eq!(reason_phrase(499), "Error");
        assert_eq!(ErrorCode::STALE_NONCE.to_string(), "438 Stale Nonce");
    }
}
