//! `Message::parse` and `ChannelData::parse` on arbitrary datagrams, the first thing
//! every packet on the STUN/TURN port meets.
//!
//! Checks: no panic; `looks_like_stun` (the port's demultiplexer) agrees with the
//! parser; a parsed message is exactly `20 + length` bytes and parses the same from
//! its own bytes (what a stream reader hands over); every attribute lies inside the
//! message; every accessor and verifier runs on whatever was parsed; ChannelData's
//! payload is the declared length and its channel in range.

use switchboard_stun::{
    attr_type, decode_address, decode_error_code, decode_xor_address, looks_like_stun, ChannelData,
    Message, ParseError, CHANNEL_MAX, CHANNEL_MIN, HEADER_LEN,
};

/// Attribute types whose accessors the server calls.
const LOOKED_UP: [u16; 12] = [
    attr_type::USERNAME,
    attr_type::REALM,
    attr_type::NONCE,
    attr_type::LIFETIME,
    attr_type::XOR_PEER_ADDRESS,
    attr_type::XOR_RELAYED_ADDRESS,
    attr_type::XOR_MAPPED_ADDRESS,
    attr_type::REQUESTED_TRANSPORT,
    attr_type::CHANNEL_NUMBER,
    attr_type::CHANGE_REQUEST,
    attr_type::RESPONSE_ORIGIN,
    attr_type::OTHER_ADDRESS,
];

pub fn run(data: &[u8]) {
    let parsed = Message::parse(data);
    assert_eq!(
        looks_like_stun(data),
        !matches!(parsed, Err(ParseError::TooShort | ParseError::NotStun)),
        "the demultiplexer and the parser disagree on {data:02x?}"
    );
    if let Ok(m) = parsed {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        assert_eq!(len % 4, 0);
        assert_eq!(m.as_bytes(), &data[..HEADER_LEN + len]);
        let again = Message::parse(m.as_bytes()).expect("a message parses from its own bytes");
        assert_eq!(
            (again.method, again.class, again.tid),
            (m.method, m.class, m.tid)
        );
        assert!(again.attributes().eq(m.attributes()));
        for a in m.attributes() {
            assert!(a.value.len() <= len);
            let _ = decode_address(a.value);
            let _ = decode_xor_address(a.value, &m.tid);
            let _ = decode_error_code(a.value);
        }
        for t in LOOKED_UP {
            let first = m.attributes().find(|a| a.typ == t).map(|a| a.value);
            assert_eq!(
                m.get(t),
                first,
                "get() returns the first attribute of a type"
            );
            let _ = (m.address(t), m.xor_address(t), m.u32(t));
        }
        let _ = m.verify_integrity(b"a key");
        let _ = m.verify_integrity_sha256(b"a key");
        let fp = m.verify_fingerprint();
        assert!(!fp || m.has_fingerprint());
    }
    if let Some(cd) = ChannelData::parse(data) {
        assert!((CHANNEL_MIN..=CHANNEL_MAX).contains(&cd.channel));
        assert_eq!(
            cd.payload.len(),
            usize::from(u16::from_be_bytes([data[2], data[3]]))
        );
        assert_eq!(cd.payload, &data[4..4 + cd.payload.len()]);
    }
}
