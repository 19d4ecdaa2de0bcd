//! The datagram demultiplexer in front of a port's services. Two steps:
//!
//! 1. The first byte sorts a datagram into its RFC 7983 class (STUN 0-3, ZRTP 16-19,
//!    DTLS 20-63, TURN ChannelData 64-79, RTP/RTCP 128-191), which is how one UDP
//!    port carries TURN and WebRTC media at once.
//! 2. A STUN Binding request whose USERNAME names a local ICE ufrag that a service
//!    registered (an SFU's ICE-lite agent) goes to that service; the rest of the STUN
//!    traffic (TURN, plain Binding) goes where its class goes.
//!
//! A class goes to its routed service, else to the port's default service. On a port
//! with one service nothing is parsed: the USERNAME lookup runs only when a ufrag is
//! registered, so TURN alone pays one table lookup per datagram.

use crate::token::ServiceId;
use std::collections::HashMap;
use switchboard_stun::{attr_type, Class, Message, Method};

/// RFC 7983 classes of a datagram's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatagramClass {
    /// 0-3: STUN (TURN requests and indications, ICE checks).
    Stun,
    /// 16-19: ZRTP.
    Zrtp,
    /// 20-63: DTLS.
    Dtls,
    /// 64-79: TURN ChannelData.
    ChannelData,
    /// 128-191: RTP and RTCP.
    Rtp,
    /// Anything else, and empty datagrams.
    Other,
}

const CLASSES: usize = 6;

impl DatagramClass {
    fn index(self) -> usize {
        match self {
            DatagramClass::Stun => 0,
            DatagramClass::Zrtp => 1,
            DatagramClass::Dtls => 2,
            DatagramClass::ChannelData => 3,
            DatagramClass::Rtp => 4,
            DatagramClass::Other => 5,
        }
    }
}

/// The RFC 7983 class of a datagram.
pub fn classify(datagram: &[u8]) -> DatagramClass {
    match datagram.first() {
        Some(0..=3) => DatagramClass::Stun,
        Some(16..=19) => DatagramClass::Zrtp,
        Some(20..=63) => DatagramClass::Dtls,
        Some(64..=79) => DatagramClass::ChannelData,
        Some(128..=191) => DatagramClass::Rtp,
        _ => DatagramClass::Other,
    }
}

/// The local ufrag a Binding request is addressed to: the part of its USERNAME
/// before the colon (RFC 8445 §7.2.2: "receiver ufrag:sender ufrag").
pub fn binding_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    let msg = Message::parse(datagram).ok()?;
    if msg.method != Method::BINDING || msg.class != Class::Request {
        return None;
    }
    let user = msg.get(attr_type::USERNAME)?;
    let colon = user.iter().position(|&c| c == b':')?;
    Some(&user[..colon])
}

/// Which service of a port gets a datagram.
#[derive(Clone, Debug)]
pub struct Router {
    default: ServiceId,
    classes: [Option<ServiceId>; CLASSES],
    ufrags: HashMap<Box<[u8]>, ServiceId, ahash::RandomState>,
}

impl Router {
    /// Everything goes to `default` until routes are added.
    pub fn new(default: ServiceId) -> Self {
        Router {
            default,
            classes: [None; CLASSES],
            ufrags: HashMap::default(),
        }
    }

    pub fn default_service(&self) -> ServiceId {
        self.default
    }

    /// Send a whole class (DTLS, RTP...) to `service`.
    pub fn route_class(&mut self, class: DatagramClass, service: ServiceId) {
        self.classes[class.index()] = Some(service);
    }

    /// Binding requests to local ufrag `ufrag` go to `service`.
    pub fn add_ufrag(&mut self, ufrag: &[u8], service: ServiceId) {
        self.ufrags.insert(ufrag.into(), service);
    }

    pub fn remove_ufrag(&mut self, ufrag: &[u8]) {
        self.ufrags.remove(ufrag);
    }

    /// The service for `datagram`.
    pub fn route(&self, datagram: &[u8]) -> ServiceId {
        let class = classify(datagram);
        if class == DatagramClass::Stun && !self.ufrags.is_empty() {
            if let Some(&s) = binding_ufrag(datagram).and_then(|u| self.ufrags.get(u)) {
                return s;
            }
        }
        self.classes[class.index()].unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_stun::{MessageWriter, TransactionId};

    fn binding(username: Option<&[u8]>, class: Class) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut w = MessageWriter::new(&mut buf, Method::BINDING, class, TransactionId([7; 12]))
            .expect("writer");
        if let Some(u) = username {
            w.attr(attr_type::USERNAME, u).expect("username");
        }
        let n = w.message_len();
        buf.truncate(n);
        buf
    }

    #[test]
    fn first_byte_classes_follow_rfc_7983() {
        let cases: &[(u8, DatagramClass)] = &[
            (0, DatagramClass::Stun),
            (3, DatagramClass::Stun),
            (4, DatagramClass::Other),
            (15, DatagramClass::Other),
            (16, DatagramClass::Zrtp),
            (19, DatagramClass::Zrtp),
            (20, DatagramClass::Dtls),
            (22, DatagramClass::Dtls),
            (63, DatagramClass::Dtls),
            (64, DatagramClass::ChannelData),
            (79, DatagramClass::ChannelData),
            (80, DatagramClass::Other),
            (127, DatagramClass::Other),
            (128, DatagramClass::Rtp),
            (191, DatagramClass::Rtp),
            (192, DatagramClass::Other),
            (255, DatagramClass::Other),
        ];
        for &(b, class) in cases {
            assert_eq!(classify(&[b, 0, 0, 0]), class, "first byte {b}");
        }
        assert_eq!(classify(&[]), DatagramClass::Other);
    }

    #[test]
    fn binding_with_registered_ufrag_goes_to_its_service() {
        let mut r = Router::new(0);
        r.add_ufrag(b"sfuA", 1);
        assert_eq!(r.route(&binding(Some(b"sfuA:peer9"), Class::Request)), 1);
        // Another ufrag, no USERNAME, no colon, or not a request: the default.
        assert_eq!(r.route(&binding(Some(b"other:peer9"), Class::Request)), 0);
        assert_eq!(r.route(&binding(None, Class::Request)), 0);
        assert_eq!(r.route(&binding(Some(b"sfuA"), Class::Request)), 0);
        assert_eq!(r.route(&binding(Some(b"sfuA:x"), Class::Indication)), 0);
        // The ufrag is the part before the colon, not a prefix match.
        assert_eq!(r.route(&binding(Some(b"sfuAB:peer"), Class::Request)), 0);
        r.remove_ufrag(b"sfuA");
        assert_eq!(r.route(&binding(Some(b"sfuA:peer9"), Class::Request)), 0);
    }

    #[test]
    fn classes_route_to_their_service_and_the_rest_to_the_default() {
        let mut r = Router::new(0);
        assert_eq!(r.route(&[22, 254, 253]), 0, "nothing routed yet");
        r.route_class(DatagramClass::Dtls, 1);
        r.route_class(DatagramClass::Rtp, 1);
        assert_eq!(r.route(&[22, 254, 253]), 1);
        assert_eq!(r.route(&[0x80, 96, 0, 1]), 1);
        assert_eq!(r.route(&[0x40, 0x00, 0x00, 0x04]), 0, "ChannelData: TURN");
        assert_eq!(r.route(&binding(None, Class::Request)), 0, "STUN: TURN");
        assert_eq!(r.route(&[]), 0);
    }

    #[test]
    fn garbage_that_looks_like_stun_goes_to_the_default_without_panic() {
        let mut r = Router::new(2);
        r.add_ufrag(b"u", 1);
        for junk in [
            &[0u8][..],
            &[1, 1, 0, 200, 0x21, 0x12, 0xA4, 0x42],
            &[0; 19],
        ] {
            assert_eq!(r.route(junk), 2);
        }
    }
}
