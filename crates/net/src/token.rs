//! The one place that says what a mio token means. A token carries the service that
//! owns the source (8 bits), the kind of source (8 bits) and an index within that
//! kind (48 bits), so the worker routes an event with one `match` instead of ladders
//! of `if t >= BASE` spread over the files that allocate tokens.

use mio::Token;

/// Which service of a worker owns a socket (index into the worker's services).
pub type ServiceId = u8;

/// What kind of source an event comes from. `Port` belongs to the driver itself;
/// the others are registered by services for their own sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A driver UDP port (datagrams go through the demultiplexer).
    Port,
    /// A service's `mio::Waker` (work handed over from other threads).
    Waker,
    /// A stream listener.
    Listener,
    /// An accepted client stream.
    Conn,
    /// A datagram socket of the service's own (a TURN relay socket).
    Relay,
    /// A stream listener of the service's own (an RFC 6062 relay listener).
    RelayListener,
    /// An outgoing or relayed stream (an RFC 6062 peer connection).
    Peer,
}

const KINDS: [Kind; 7] = [
    Kind::Port,
    Kind::Waker,
    Kind::Listener,
    Kind::Conn,
    Kind::Relay,
    Kind::RelayListener,
    Kind::Peer,
];

const INDEX_BITS: u32 = 48;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

/// A decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tok {
    pub service: ServiceId,
    pub kind: Kind,
    pub index: usize,
}

impl Tok {
    pub fn new(service: ServiceId, kind: Kind, index: usize) -> Self {
        Tok {
            service,
            kind,
            index,
        }
    }

    /// The mio token. Indexes are masked to 48 bits (no worker holds 2^48 sockets).
    pub fn encode(self) -> Token {
        let kind = KINDS.iter().position(|&k| k == self.kind).unwrap_or(0);
        Token(((self.service as usize) << 56) | (kind << INDEX_BITS) | (self.index & INDEX_MASK))
    }

    /// None for a token no [`Tok`] encodes to.
    pub fn decode(t: Token) -> Option<Self> {
        let kind = *KINDS.get((t.0 >> INDEX_BITS) & 0xFF)?;
        Some(Tok {
            service: (t.0 >> 56) as ServiceId,
            kind,
            index: t.0 & INDEX_MASK,
        })
    }
}

impl From<Tok> for Token {
    fn from(t: Tok) -> Token {
        t.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_with_service_and_index() {
        for (s, &k) in KINDS.iter().enumerate() {
            for index in [0, 1, 4095, INDEX_MASK] {
                let t = Tok::new(s as u8 * 37, k, index);
                assert_eq!(Tok::decode(t.encode()), Some(t));
            }
        }
    }

    #[test]
    fn tokens_of_different_sources_differ() {
        let a = Tok::new(0, Kind::Conn, 5).encode();
        let b = Tok::new(0, Kind::Relay, 5).encode();
        let c = Tok::new(1, Kind::Conn, 5).encode();
        assert!(a != b && a != c && b != c);
    }

    #[test]
    fn unknown_kind_does_not_decode() {
        assert_eq!(Tok::decode(Token(0xFF << INDEX_BITS)), None);
    }
}
