//! ICE candidates both ways: the SDP/JSEP text (`candidate:...`, RFC 8839 §5.1, as in
//! `a=candidate` and in `RTCIceCandidate.candidate`) and the XEP-0176 `<candidate/>`
//! element. The element is built with minidom rather than xmpp-parsers'
//! `jingle_ice_udp::Candidate` because that type has no `tcptype` and limits `network`
//! and `generation` to a byte.

use std::net::IpAddr;

use xmpp_parsers::minidom::Element;

use crate::model::{Candidate, CandidateType};
use crate::text::is_token;
use crate::xml::{attr_parse, el, require_attr};
use crate::{MapError, NS_ICE_UDP};

/// A candidate line, with or without the `candidate:` prefix; also returns the `ufrag`
/// extension when there is one (a trickled candidate carries it).
pub fn parse_candidate(line: &str) -> Result<(Candidate, Option<String>), MapError> {
    let bad = || MapError::BadAttribute {
        attr: "candidate",
        value: line.chars().take(200).collect(),
    };
    let text = line.trim();
    let text = text.strip_prefix("a=").unwrap_or(text);
    let text = text.strip_prefix("candidate:").unwrap_or(text);
    let mut words = text.split_ascii_whitespace();
    let mut next = || words.next().ok_or_else(bad);
    let foundation = next()?.to_string();
    let component: u8 = next()?.parse().map_err(|_| bad())?;
    let protocol = next()?.to_ascii_lowercase();
    let priority: u32 = next()?.parse().map_err(|_| bad())?;
    // mDNS (`*.local`) and other host names are not addresses a remote peer can use
    // through XEP-0176 (its `ip` is an address): refused, the caller skips the candidate.
    let ip: IpAddr = next()?.parse().map_err(|_| {
        MapError::Unsupported("candidate with a host name instead of an IP address")
    })?;
    let port: u16 = next()?.parse().map_err(|_| bad())?;
    if next()? != "typ" {
        return Err(bad());
    }
    let kind = CandidateType::parse(next()?).ok_or_else(bad)?;
    let mut cand = Candidate {
        foundation,
        component,
        protocol,
        priority,
        ip,
        port,
        kind,
        related: None,
        tcp_type: None,
        generation: 0,
        network_id: None,
    };
    let mut ufrag = None;
    let mut raddr = None;
    let mut rport = None;
    while let Ok(key) = next() {
        let value = next()?;
        match key {
            "raddr" => raddr = Some(value.parse::<IpAddr>().map_err(|_| bad())?),
            "rport" => rport = Some(value.parse::<u16>().map_err(|_| bad())?),
            "tcptype" => cand.tcp_type = Some(value.to_string()),
            "generation" => cand.generation = value.parse().map_err(|_| bad())?,
            "network-id" => cand.network_id = Some(value.parse().map_err(|_| bad())?),
            "ufrag" if is_token(value) && value.len() <= 256 => ufrag = Some(value.to_string()),
            "ufrag" => return Err(bad()),
            _ => {} // network-cost and unknown extensions: see Candidate's doc
        }
    }
    cand.related = match (raddr, rport) {
        (Some(a), Some(p)) => Some((a, p)),
        _ => None,
    };
    let tcp_ok = cand.tcp_type.as_deref().is_none_or(is_token);
    if !is_foundation(&cand.foundation)
        || cand.component == 0
        || !is_token(&cand.protocol)
        || !tcp_ok
    {
        return Err(bad());
    }
    Ok((cand, ufrag))
}

/// The candidate as JSEP text, without the `a=` (`candidate:...`).
/// RFC 8839 §5.1: `foundation = 1*32ice-char`, `ice-char = ALPHA / DIGIT / "+" / "/"`.
/// Anything else (a `:` say) does not survive the SDP line's own syntax.
fn is_foundation(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

pub fn write_candidate(c: &Candidate) -> String {
    let mut s = format!(
        "candidate:{} {} {} {} {} {} typ {}",
        c.foundation,
        c.component,
        c.protocol,
        c.priority,
        c.ip,
        c.port,
        c.kind.as_str()
    );
    if let Some((addr, port)) = c.related {
        s.push_str(&format!(" raddr {addr} rport {port}"));
    }
    if let Some(t) = &c.tcp_type {
        s.push_str(&format!(" tcptype {t}"));
    }
    s.push_str(&format!(" generation {}", c.generation));
    if let Some(n) = c.network_id {
        s.push_str(&format!(" network-id {n}"));
    }
    s
}

/// A stable id for the XEP-0176 `id` attribute (required there, absent from SDP): a hash
/// of what identifies the candidate, so the same candidate always gets the same id.
fn candidate_id(c: &Candidate) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in write_candidate(c).bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub fn candidate_element(c: &Candidate) -> Element {
    let mut e = el("candidate", NS_ICE_UDP)
        .with("component", c.component.to_string())
        .with("foundation", c.foundation.clone())
        .with("generation", c.generation.to_string())
        .with("id", candidate_id(c))
        .with("ip", c.ip.to_string())
        .with("port", c.port.to_string())
        .with("priority", c.priority.to_string())
        .with("protocol", c.protocol.clone())
        .with("type", c.kind.as_str());
    if let Some((addr, port)) = c.related {
        e = e
            .with("rel-addr", addr.to_string())
            .with("rel-port", port.to_string());
    }
    if let Some(net) = c.network_id {
        e = e.with("network", net.to_string());
    }
    if let Some(t) = &c.tcp_type {
        e = e.with("tcptype", t.clone());
    }
    e.build()
}

pub fn candidate_from_element(e: &Element) -> Result<Candidate, MapError> {
    let kind = require_attr(e, "type")?;
    let kind = CandidateType::parse(kind).ok_or(MapError::BadElement {
        element: "candidate",
        why: "unknown type",
    })?;
    let protocol = require_attr(e, "protocol")?.to_ascii_lowercase();
    let related = match (
        attr_parse::<IpAddr>(e, "rel-addr")?,
        attr_parse::<u16>(e, "rel-port")?,
    ) {
        (Some(a), Some(p)) => Some((a, p)),
        _ => None,
    };
    let foundation = require_attr(e, "foundation")?.to_string();
    if !is_foundation(&foundation) {
        return Err(MapError::BadElement {
            element: "candidate",
            why: "foundation",
        });
    }
    if !is_token(&protocol) {
        return Err(MapError::BadElement {
            element: "candidate",
            why: "protocol",
        });
    }
    let tcp_type = e.attr("tcptype").map(str::to_string);
    if tcp_type
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.contains(char::is_whitespace))
    {
        return Err(MapError::BadElement {
            element: "candidate",
            why: "tcptype",
        });
    }
    let component = attr_parse::<u8>(e, "component")?.ok_or(MapError::BadElement {
        element: "candidate",
        why: "component missing",
    })?;
    if component == 0 {
        return Err(MapError::BadElement {
            element: "candidate",
            why: "component 0",
        });
    }
    Ok(Candidate {
        foundation,
        component,
        protocol,
        priority: attr_parse(e, "priority")?.ok_or(MapError::BadElement {
            element: "candidate",
            why: "priority missing",
        })?,
        ip: attr_parse(e, "ip")?.ok_or(MapError::BadElement {
            element: "candidate",
            why: "ip missing",
        })?,
        port: attr_parse(e, "port")?.ok_or(MapError::BadElement {
            element: "candidate",
            why: "port missing",
        })?,
        kind,
        related,
        tcp_type,
        generation: attr_parse(e, "generation")?.unwrap_or(0),
        network_id: attr_parse(e, "network")?,
    })
}
