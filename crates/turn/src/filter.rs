//! Which peer addresses a relay may send to.
//!
//! Default-deny for every address range that is not globally routable unicast, so
//! that a TURN server on the internet cannot be used to reach the operator's own
//! network (CVE-2020-26262: loopback/unspecified; CVE-2026-27624: the same ranges
//! reached through IPv4-mapped and IPv4-compatible IPv6 forms). IPv6 forms that
//! embed an IPv4 address are judged by the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An inclusive address range of one family.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IpRange {
    V4(u32, u32),
    V6(u128, u128),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address, CIDR block (a.b.c.d/n) or range (a.b.c.d-e.f.g.h)")]
pub struct IpRangeParseError(pub String);

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (IpRange::V4(a, b), IpAddr::V4(v)) => (*a..=*b).contains(&u32::from(v)),
            (IpRange::V6(a, b), IpAddr::V6(v)) => (*a..=*b).contains(&u128::from(v)),
            _ => false,
        }
    }

    fn cidr4(a: [u8; 4], bits: u32) -> IpRange {
        let base = u32::from_be_bytes(a);
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        IpRange::V4(base & mask, (base & mask) | !mask)
    }

    fn cidr6(a: u128, bits: u32) -> IpRange {
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        IpRange::V6(a & mask, (a & mask) | !mask)
    }
}

impl FromStr for IpRange {
    type Err = IpRangeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpRangeParseError(s.to_string());
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| err())?;
            let b: IpAddr = b.trim().parse().map_err(|_| err())?;
            return match (a, b) {
                (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => Ok(IpRange::V4(a.into(), b.into())),
                (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => Ok(IpRange::V6(a.into(), b.into())),
                _ => Err(err()),
            };
        }
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits.parse::<u32>().map_err(|_| err())?)),
            None => (s, None),
        };
        match ip.parse::<IpAddr>().map_err(|_| err())? {
            IpAddr::V4(v) => {
                let bits = bits.unwrap_or(32);
                if bits > 32 {
                    return Err(err());
                }
                Ok(IpRange::cidr4(v.octets(), bits))
            }
            IpAddr::V6(v) => {
                let bits = bits.unwrap_or(128);
                if bits > 128 {
                    return Err(err());
                }
                Ok(IpRange::cidr6(v.into(), bits))
            }
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpRange::V4(a, b) => write!(f, "{}-{}", Ipv4Addr::from(*a), Ipv4Addr::from(*b)),
            IpRange::V6(a, b) => write!(f, "{}-{}", Ipv6Addr::from(*a), Ipv6Addr::from(*b)),
        }
    }
}

/// Ranges denied by default: everything that is not global unicast.
pub const DEFAULT_DENIED: &[&str] = &[
    "0.0.0.0/8",       // "this network", unspecified
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // CGNAT shared address space
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // TEST-NET-1 documentation
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // TEST-NET-2 documentation
    "203.0.113.0/24",  // TEST-NET-3 documentation
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, includes 255.255.255.255 broadcast
    "::/128",          // unspecified
    "::1/128",         // loopback
    "100::/64",        // discard-only
    "64:ff9b:1::/48",  // local-use NAT64
    "2001::/32",       // Teredo
    "2001:2::/48",     // benchmarking
    "2001:10::/28",    // ORCHID
    "2001:20::/28",    // ORCHIDv2
    "2001:db8::/32",   // documentation
    "3fff::/20",       // documentation (RFC 9637)
    "2002::/16",       // 6to4
    "fc00::/7",        // unique local
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local (deprecated)
    "ff00::/8",        // multicast
];

/// The IPv4 address an IPv6 address stands for, if it embeds one:
/// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d).
pub fn embedded_ipv4(v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail),
        // ::a.b.c.d, but not :: and ::1 which are IPv6's own unspecified and loopback.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

/// The peer address policy: defaults, plus the operator's allow and deny lists.
#[derive(Clone, Debug)]
pub struct PeerFilter {
    default_denied: Vec<IpRange>,
    pub allowed: Vec<IpRange>,
    pub denied: Vec<IpRange>,
}

impl Default for PeerFilter {
    fn default() -> Self {
        PeerFilter::new(Vec::new(), Vec::new())
    }
}

impl PeerFilter {
    pub fn new(allowed: Vec<IpRange>, denied: Vec<IpRange>) -> Self {
        let default_denied = DEFAULT_DENIED
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        PeerFilter {
            default_denied,
            allowed,
            denied,
        }
    }

    /// Whether relaying to `ip` is allowed. `--allowed-peer-ip` wins over
    /// `--denied-peer-ip`, which wins over the defaults (as in coturn). An IPv6
    /// address that embeds an IPv4 one is judged as that IPv4 address by the
    /// defaults; operator lists match either form.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let canonical = match ip {
            IpAddr::V6(v6) => embedded_ipv4(&v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let hit = |list: &[IpRange]| {
            list.iter()
                .any(|r| r.contains(ip) || canonical.is_some_and(|c| r.contains(c)))
        };
        if hit(&self.allowed) {
            return true;
        }
        if hit(&self.denied) {
            return false;
        }
        let judged = canonical.unwrap_or(ip);
        if let IpAddr::V6(v6) = judged {
            // Only global unicast (2000::/3) is relayable IPv6.
            if v6.segments()[0] & 0xe000 != 0x2000 {
                return false;
            }
        }
        !self.default_denied.iter().any(|r| r.contains(judged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            "10.0.0.0/8".parse::<IpRange>().unwrap(),
            IpRange::V4(0x0a00_0000, 0x0aff_ffff)
        );
        assert_eq!(
            "1.2.3.4-1.2.3.9".parse::<IpRange>().unwrap(),
            IpRange::V4(0x0102_0304, 0x0102_0309)
        );
        assert!("1.2.3.9-1.2.3.4".parse::<IpRange>().is_err());
        assert!("1.2.3.4/33".parse::<IpRange>().is_err());
        assert!("::1-1.2.3.4".parse::<IpRange>().is_err());
        assert!("nonsense".parse::<IpRange>().is_err());
        assert!("2001:db8::/32".parse::<IpRange>().is_ok());
    }

    #[test]
    fn defaults_deny_internal_and_allow_global() {
        let f = PeerFilter::default();
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "10.1.2.3",
            "169.254.169.254",
            "100.64.0.1",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "2001::1",
            "2002:7f00:1::1",
            "::ffff:0:127.0.0.1",
            "4000::1",
            "::2:1",
        ] {
            assert!(!f.allows(ip.parse().unwrap()), "{ip} should be denied");
        }
        for ip in ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"] {
            assert!(f.allows(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn operator_lists_take_precedence() {
        let f = PeerFilter::new(
            vec!["127.0.0.1".parse().unwrap()],
            vec!["8.8.8.0/24".parse().unwrap()],
        );
        assert!(f.allows("127.0.0.1".parse().unwrap()));
        assert!(f.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!f.allows("127.0.0.2".parse().unwrap()));
        assert!(!f.allows("8.8.8.8".parse().unwrap()));
    }
}
