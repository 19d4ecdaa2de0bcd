//! What a probe found and what it means for calls.

use std::net::SocketAddr;

/// RFC 4787 mapping or filtering behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

impl Behaviour {
    /// The RFC 4787 adjective: `endpoint-independent`, `address-dependent`,
    /// `address-and-port-dependent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// Whether the server answered over UDP at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Udp {
    /// Test I was answered.
    Answered,
    /// No answer to test I after every retransmission.
    NoAnswer,
    /// Test I got an error response with this code.
    ErrorResponse(u16),
}

/// What the results mean for direct (peer-to-peer) calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direct {
    /// No NAT, or a NAT that maps endpoint-independently and lets in anyone from an
    /// address we talked to: direct calls work with nearly every peer.
    MostPeers,
    /// Endpoint-independent mapping with address-and-port-dependent filtering
    /// (port-restricted cone): direct with most peers, relayed with symmetric ones.
    NotWithSymmetric,
    /// The mapping changes per destination (symmetric NAT): a relay is needed with
    /// peers behind symmetric or port-restricted NATs.
    RelayOften,
    /// The server does not do RFC 5780 or a test failed: only the address is known.
    Unknown,
    /// No UDP answer: calls need TURN over TCP or TLS.
    UdpBlocked,
}

impl Direct {
    /// Stable key for machine output.
    pub fn key(self) -> &'static str {
        match self {
            Direct::MostPeers => "most-peers",
            Direct::NotWithSymmetric => "most-peers-except-symmetric",
            Direct::RelayOften => "relay-needed-with-restrictive-peers",
            Direct::Unknown => "unknown",
            Direct::UdpBlocked => "udp-blocked",
        }
    }
}

/// The outcome of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The server's primary address (where test I went).
    pub server: SocketAddr,
    pub udp: Udp,
    /// The mapping socket's own address, when the driver knows it.
    pub local: Option<SocketAddr>,
    /// The public (server-reflexive) address seen by test I.
    pub public: Option<SocketAddr>,
    /// OTHER-ADDRESS of test I; `Some` when the server does RFC 5780.
    pub other: Option<SocketAddr>,
    pub mapping: Option<Behaviour>,
    pub filtering: Option<Behaviour>,
    pub hairpinning: Option<bool>,
    /// Why something is unknown, or anything odd the probe saw.
    pub notes: Vec<String>,
}

impl Report {
    pub fn rfc5780(&self) -> bool {
        self.other.is_some()
    }

    /// `Some(false)` when the public address is the local one (no NAT in between).
    pub fn behind_nat(&self) -> Option<bool> {
        let (public, local) = (self.public?, self.local?);
        Some(public != local)
    }

    /// The classic (RFC 3489) name, for people who know NATs by those.
    pub fn nat_type(&self) -> Option<&'static str> {
        use Behaviour::*;
        if self.behind_nat() == Some(false) {
            return Some(match self.filtering {
                Some(EndpointIndependent) => "open internet (no NAT)",
                Some(_) => "no NAT, behind a stateful firewall",
                None => "no NAT",
            });
        }
        Some(match (self.mapping?, self.filtering) {
            (EndpointIndependent, Some(EndpointIndependent)) => "full cone",
            (EndpointIndependent, Some(AddressDependent)) => "restricted cone",
            (EndpointIndependent, Some(AddressAndPortDependent)) => "port-restricted cone",
            (EndpointIndependent, None) => return None,
            (AddressDependent | AddressAndPortDependent, _) => "symmetric",
        })
    }

    /// The verdict for people: what happens to calls from this network.
    pub fn verdict(&self) -> (Direct, String) {
        use Behaviour::*;
        let direct = match (self.udp, self.behind_nat(), self.mapping, self.filtering) {
            (Udp::NoAnswer, ..) => Direct::UdpBlocked,
            (Udp::ErrorResponse(_), ..) => Direct::Unknown,
            (_, Some(false), _, Some(AddressAndPortDependent)) => Direct::NotWithSymmetric,
            (_, Some(false), ..) => Direct::MostPeers,
            (_, _, Some(EndpointIndependent), Some(EndpointIndependent | AddressDependent)) => {
                Direct::MostPeers
            }
            (_, _, Some(EndpointIndependent), _) => Direct::NotWithSymmetric,
            (_, _, Some(AddressDependent | AddressAndPortDependent), _) => Direct::RelayOften,
            (_, _, None, _) => Direct::Unknown,
        };
        let text = match direct {
            Direct::MostPeers => "direct calls will work with most peers, including ones behind \
                 symmetric NATs"
                .to_string(),
            Direct::NotWithSymmetric => "direct calls will work with most peers; calls with \
                 peers behind symmetric NATs will need the relay (TURN)"
                .to_string(),
            Direct::RelayOften => "calls will need the relay (TURN) with peers behind symmetric \
                 or port-restricted NATs; direct calls work only with peers on open, full-cone \
                 or restricted-cone networks"
                .to_string(),
            Direct::UdpBlocked => "no UDP answer from the server: if it is running, UDP is \
                 blocked on this network and calls from here will need TURN over TCP or TLS (a \
                 TURN server on TCP port 443 passes most firewalls)"
                .to_string(),
            Direct::Unknown => match self.udp {
                Udp::ErrorResponse(code) => {
                    format!("the server answered the Binding request with error {code}")
                }
                _ if !self.rfc5780() => "the server does not support RFC 5780 behaviour \
                     discovery (no OTHER-ADDRESS), so only the public address is known; probe \
                     a server with two listening IPs (switchboard serve -L IP1 -L IP2) for the \
                     NAT type"
                    .to_string(),
                _ => "the NAT's mapping could not be determined (see the notes)".to_string(),
            },
        };
        (direct, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Behaviour::*;

    fn report(mapping: Option<Behaviour>, filtering: Option<Behaviour>) -> Report {
        Report {
            server: "203.0.113.1:3478".parse().expect("addr"),
            udp: Udp::Answered,
            local: Some("10.0.0.2:5000".parse().expect("addr")),
            public: Some("203.0.113.10:5000".parse().expect("addr")),
            other: Some("203.0.113.2:3479".parse().expect("addr")),
            mapping,
            filtering,
            hairpinning: Some(false),
            notes: Vec::new(),
        }
    }

    #[test]
    fn verdicts_follow_mapping_then_filtering() {
        let cases = [
            (
                Some(EndpointIndependent),
                Some(EndpointIndependent),
                Direct::MostPeers,
            ),
            (
                Some(EndpointIndependent),
                Some(AddressDependent),
                Direct::MostPeers,
            ),
            (
                Some(EndpointIndependent),
                Some(AddressAndPortDependent),
                Direct::NotWithSymmetric,
            ),
            (Some(EndpointIndependent), None, Direct::NotWithSymmetric),
            (
                Some(AddressDependent),
                Some(EndpointIndependent),
                Direct::RelayOften,
            ),
            (
                Some(AddressAndPortDependent),
                Some(AddressAndPortDependent),
                Direct::RelayOften,
            ),
            (None, Some(EndpointIndependent), Direct::Unknown),
        ];
        for (m, f, want) in cases {
            assert_eq!(report(m, f).verdict().0, want, "{m:?} {f:?}");
        }
    }

    #[test]
    fn classic_names() {
        let name = |m, f| report(Some(m), Some(f)).nat_type();
        assert_eq!(
            name(EndpointIndependent, EndpointIndependent),
            Some("full cone")
        );
        assert_eq!(
            name(EndpointIndependent, AddressAndPortDependent),
            Some("port-restricted cone")
        );
        assert_eq!(
            name(AddressAndPortDependent, AddressAndPortDependent),
            Some("symmetric")
        );
        let mut open = report(Some(EndpointIndependent), Some(EndpointIndependent));
        open.public = open.local;
        assert_eq!(open.nat_type(), Some("open internet (no NAT)"));
        assert_eq!(open.verdict().0, Direct::MostPeers);
    }

    #[test]
    fn no_answer_and_no_rfc5780_say_so() {
        let mut r = report(None, None);
        r.udp = Udp::NoAnswer;
        assert_eq!(r.verdict().0, Direct::UdpBlocked);
        let mut r = report(None, None);
        r.other = None;
        let (d, text) = r.verdict();
        assert_eq!(d, Direct::Unknown);
        assert!(text.contains("does not support RFC 5780"), "{text}");
    }
}
