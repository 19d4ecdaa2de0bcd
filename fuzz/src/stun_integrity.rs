//! MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, written by
//! `MessageWriter` and checked by `Message`: the checks that decide whether a TURN
//! request is authenticated.
//!
//! Input: `[method: u16][flags: u8][key length: u8][key][tid: 12 bytes]`, then attributes
//! as `[type: u16][length: u16][value]`, then (after a zero-length attribute of type
//! 0xFFFF, or at the end) the offsets of bytes to flip. `flags` bit 0: MESSAGE-INTEGRITY,
//! bit 1: MESSAGE-INTEGRITY-SHA256, bit 2: FINGERPRINT; bits 4-5: the class.
//!
//! Checks: what was written parses back to the same method, class, transaction id and
//! attributes; every seal verifies with the key and none with another key; after any
//! one byte of the message is changed, the seals it had no longer all verify (or the
//! message no longer parses). A forgery would have to get past that last check.

use switchboard_stun::{attr_type, Class, Message, MessageWriter, Method, RawAttr, TransactionId};

const CLASSES: [Class; 4] = [
    Class::Request,
    Class::Indication,
    Class::Success,
    Class::Error,
];

/// Attributes the writer appends itself, or that would end the attribute list.
fn is_seal(t: u16) -> bool {
    matches!(
        t,
        attr_type::MESSAGE_INTEGRITY | attr_type::MESSAGE_INTEGRITY_SHA256 | attr_type::FINGERPRINT
    )
}

pub fn run(data: &[u8]) {
    let [m_hi, m_lo, flags, klen, rest @ ..] = data else {
        return;
    };
    let method = Method(u16::from_be_bytes([*m_hi, *m_lo]) & 0x0FFF);
    let class = CLASSES[usize::from(flags >> 4) & 3];
    let (sha1, sha256, fingerprint) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let klen = usize::from(*klen).min(rest.len());
    let (key, rest) = rest.split_at(klen);
    let Some((tid, mut rest)) = rest.split_first_chunk::<12>() else {
        return;
    };
    let tid = TransactionId(*tid);

    let mut buf = vec![0u8; 8192];
    let Ok(mut w) = MessageWriter::new(&mut buf, method, class, tid) else {
        return;
    };
    let mut attrs: Vec<(u16, Vec<u8>)> = Vec::new();
    while let [t0, t1, l0, l1, tail @ ..] = rest {
        let typ = u16::from_be_bytes([*t0, *t1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
        let (value, tail) = tail.split_at(len);
        rest = tail;
        if typ == 0xFFFF && len == 0 {
            break;
        }
        if is_seal(typ) {
            continue;
        }
        // Leave room for the seals (24 + 36 + 8 bytes).
        if w.message_len() + 4 + value.len().div_ceil(4) * 4 + 68 > 4096 {
            break;
        }
        if w.attr(typ, value).is_ok() {
            attrs.push((typ, value.to_vec()));
        }
    }
    let flips = rest;
    if sha1 {
        w.message_integrity(key)
            .expect("room was left for MESSAGE-INTEGRITY");
    }
    if sha256 {
        w.message_integrity_sha256(key)
            .expect("room was left for MESSAGE-INTEGRITY-SHA256");
    }
    if fingerprint {
        w.fingerprint().expect("room was left for FINGERPRINT");
    }
    let n = w.finish();
    let wire = &buf[..n];

    let m = Message::parse(wire).expect("what the writer wrote parses");
    assert_eq!((m.method, m.class, m.tid), (method, class, tid));
    let got: Vec<RawAttr> = m.attributes().collect();
    assert_eq!(got.len(), attrs.len());
    for (g, (t, v)) in got.iter().zip(&attrs) {
        assert_eq!((g.typ, g.value), (*t, v.as_slice()));
    }
    assert_eq!(m.has_message_integrity(), sha1);
    assert_eq!(m.has_message_integrity_sha256(), sha256);
    assert_eq!(m.has_fingerprint(), fingerprint);
    assert_eq!(m.verify_integrity(key), sha1);
    assert_eq!(m.verify_integrity_sha256(key), sha256);
    assert_eq!(m.verify_fingerprint(), fingerprint);
    let mut other = key.to_vec();
    other.push(0x5A);
    assert!(
        !m.verify_integrity(&other),
        "MESSAGE-INTEGRITY verifies under another key"
    );
    assert!(
        !m.verify_integrity_sha256(&other),
        "MESSAGE-INTEGRITY-SHA256 verifies under another key"
    );

    if !(sha1 || sha256 || fingerprint) {
        return;
    }
    let sealed = |b: &[u8]| match Message::parse(b) {
        Err(_) => false,
        Ok(m) => {
            (!sha1 || m.verify_integrity(key))
                && (!sha256 || m.verify_integrity_sha256(key))
                && (!fingerprint || m.verify_fingerprint())
        }
    };
    let mut copy = wire.to_vec();
    for pair in flips.chunks(3).take(16) {
        let at = usize::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])) % n;
        let bit = pair.get(2).copied().unwrap_or(1).max(1);
        copy[at] ^= bit;
        assert!(
            !sealed(&copy),
            "changing byte {at} of {n} (xor {bit:#04x}) left every seal intact"
        );
        copy[at] ^= bit;
    }
}
