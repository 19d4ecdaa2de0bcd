//! Building responses: header, body, then MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.

use crate::auth::Integrity;
use switchboard_stun::{
    attr_type, Class, ErrorCode, Message, MessageWriter, Method, TransactionId, WriteError,
};

/// How a response is closed: integrity with the request's key, fingerprint when the
/// request carried one.
#[derive(Clone, Copy)]
pub(crate) struct Seal<'k> {
    pub integrity: Option<&'k Integrity>,
    pub fingerprint: bool,
}

impl<'k> Seal<'k> {
    pub fn of(msg: &Message, integrity: Option<&'k Integrity>) -> Self {
        Seal {
            integrity,
            fingerprint: msg.has_fingerprint(),
        }
    }
}

pub(crate) fn build(
    out: &mut [u8],
    msg: &Message,
    class: Class,
    seal: Seal,
    body: impl FnOnce(&mut MessageWriter) -> Result<(), WriteError>,
) -> Result<usize, WriteError> {
    build_for(out, msg.method, msg.tid, class, seal, body)
}

/// A response to a request that is no longer at hand (deferred answers, RFC 6062 Connect).
pub(crate) fn build_for(
    out: &mut [u8],
    method: Method,
    tid: TransactionId,
    class: Class,
    seal: Seal,
    body: impl FnOnce(&mut MessageWriter) -> Result<(), WriteError>,
) -> Result<usize, WriteError> {
    let mut w = MessageWriter::new(out, method, class, tid)?;
    body(&mut w)?;
    match seal.integrity {
        Some(Integrity::Sha1(k)) => {
            w.message_integrity(k)?;
        }
        Some(Integrity::Sha256(k)) => {
            w.message_integrity_sha256(k)?;
        }
        None => {}
    }
    if seal.fingerprint {
        w.fingerprint()?;
    }
    Ok(w.finish())
}

/// An error response. 401 and 438 go to unauthenticated sources, so they carry no
/// reason phrase, to stay small (amplification).
pub(crate) fn error(
    out: &mut [u8],
    msg: &Message,
    code: ErrorCode,
    seal: Seal,
    body: impl FnOnce(&mut MessageWriter) -> Result<(), WriteError>,
) -> Result<usize, WriteError> {
    build(out, msg, Class::Error, seal, |w| {
        let reason = match code {
            ErrorCode::UNAUTHORIZED | ErrorCode::STALE_NONCE => "",
            _ => code.reason(),
        };
        w.error_code(code.code(), reason)?;
        body(w)
    })
}

/// 420 listing the unknown comprehension-required attributes.
pub(crate) fn unknown_attributes(
    out: &mut [u8],
    msg: &Message,
    unknown: &[u16],
    integrity: Option<&Integrity>,
) -> Result<usize, WriteError> {
    error(
        out,
        msg,
        ErrorCode::UNKNOWN_ATTRIBUTE,
        Seal::of(msg, integrity),
        |w| {
            w.unknown_attributes(unknown)?;
            Ok(())
        },
    )
}

/// Attribute types this server understands in requests and indications.
pub(crate) fn known(t: u16, rfc5780: bool) -> bool {
    use attr_type::*;
    matches!(
        t,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | REALM
            | NONCE
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | XOR_MAPPED_ADDRESS
            | RESERVATION_TOKEN
            | PRIORITY
            | USE_CANDIDATE
            | PADDING
            | CONNECTION_ID
    ) || (t == CHANGE_REQUEST && rfc5780)
        || !attr_type::comprehension_required(t)
}

/// Collect unknown comprehension-required attributes (at most 8 reported).
pub(crate) fn find_unknown(msg: &Message, rfc5780: bool, out: &mut [u16; 8]) -> usize {
    let mut n = 0;
    for a in msg.attributes() {
        if !known(a.typ, rfc5780) && n < out.len() && !out[..n].contains(&a.typ) {
            out[n] = a.typ;
            n += 1;
        }
    }
    n
}
