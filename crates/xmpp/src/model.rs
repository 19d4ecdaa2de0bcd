//! What a WebRTC session description says that a browser needs, typed, with nothing of
//! either wire format in it. Both directions of the mapping go through this model
//! (`SDP -> MediaSession -> Jingle` and back), so "what is kept" is exactly the fields
//! below, and the round-trip tests compare these values rather than text.

use std::net::IpAddr;

/// One session description (an offer or an answer), as a browser wrote or will read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaSession {
    /// `a=group:BUNDLE` (XEP-0338): the mids sharing one transport, in order. Empty: no bundle.
    pub bundle: Vec<String>,
    /// The m-lines, in order (their order is part of the offer/answer contract).
    pub media: Vec<MediaSection>,
}

/// What an m-line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// `m=application ... UDP/DTLS/SCTP webrtc-datachannel` (data channels).
    Data,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Data => "application",
        }
    }
}

/// Direction of an m-line, as written in the SDP of the side that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// DTLS role (`a=setup`, RFC 4145/8842); `holdconn` has no Jingle equivalent (XEP-0320).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    ActPass,
    Active,
    Passive,
}

/// One m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    pub kind: MediaKind,
    /// `a=mid`, the Jingle content name.
    pub mid: String,
    pub direction: Direction,
    /// Payload types in m-line order (the order is the preference).
    pub codecs: Vec<Codec>,
    /// `a=extmap` (XEP-0294).
    pub header_extensions: Vec<HeaderExtension>,
    /// `a=ssrc` lines grouped by SSRC, in order (XEP-0339).
    pub sources: Vec<Source>,
    /// `a=ssrc-group` (XEP-0339), e.g. FID pairing a video SSRC with its RTX SSRC.
    pub source_groups: Vec<SourceGroup>,
    /// `a=msid` (stream id and track id). Jingle carries it as the `msid` parameter of
    /// every source, so it is kept only when the m-line has sources.
    pub msid: Option<String>,
    pub rtcp_mux: bool,
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub fingerprint: Option<Fingerprint>,
    pub setup: Option<Setup>,
    pub candidates: Vec<Candidate>,
    /// Data channels: `a=sctp-port` and `a=max-message-size` (XEP-0343's `<sctpmap/>`).
    pub sctp: Option<Sctp>,
}

/// `a=rtpmap` + `a=fmtp` + `a=rtcp-fb` of one payload type (XEP-0167, XEP-0293).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    /// Audio channels (`opus/48000/2`); 1 when not written.
    pub channels: u8,
    /// `a=fmtp` parameters in order: `(name, value)`; a bare value such as RED's
    /// `111/111` or `0-15` has an empty name.
    pub parameters: Vec<(String, String)>,
    /// `a=rtcp-fb` values in order: `(type, subtype)`, e.g. `("nack", Some("pli"))`.
    pub feedback: Vec<(String, Option<String>)>,
}

/// `a=extmap:<id>[/<direction>] <uri>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderExtension {
    pub id: u16,
    pub uri: String,
    /// Only `sendonly`/`recvonly` are written; `None` is both directions.
    pub direction: Option<Direction>,
}

/// All `a=ssrc:<id> <name>[:<value>]` lines of one SSRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ssrc: u32,
    pub parameters: Vec<(String, Option<String>)>,
}

/// Semantics XEP-0339 (and xmpp-parsers) know; others (e.g. `SIM`) are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceGroup {
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function as SDP and XEP-0320 name it (`sha-256`).
    pub hash: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sctp {
    pub port: u16,
    pub max_message_size: Option<u64>,
}

/// ICE candidate type (RFC 8445).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl CandidateType {
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }

    pub fn parse(s: &str) -> Option<CandidateType> {
        Some(match s {
            "host" => CandidateType::Host,
            "srflx" => CandidateType::Srflx,
            "prflx" => CandidateType::Prflx,
            "relay" => CandidateType::Relay,
            _ => return None,
        })
    }
}

/// An ICE candidate (`a=candidate`, RFC 8839), with what XEP-0176 carries. Mapped
/// extensions: `generation`, `network-id` (XEP-0176 `network`), `tcptype` (RFC 6544, an
/// extra attribute as Jitsi writes it). Dropped: `network-cost` (a local preference of
/// the sender that the remote side never uses) and `ufrag` (carried by the transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub foundation: String,
    pub component: u8,
    /// `udp` or `tcp`, lower case.
    pub protocol: String,
    pub priority: u32,
    pub ip: IpAddr,
    pub port: u16,
    pub kind: CandidateType,
    pub related: Option<(IpAddr, u16)>,
    pub tcp_type: Option<String>,
    pub generation: u32,
    pub network_id: Option<u32>,
}

impl MediaSession {
    pub(crate) fn has_duplicate_mids(&self) -> bool {
        self.media
            .iter()
            .enumerate()
            .any(|(i, m)| self.media[..i].iter().any(|o| o.mid == m.mid))
    }
}

impl MediaSection {
    /// XEP-0320 carries the DTLS role with the fingerprint: a setup without a fingerprint
    /// has nowhere to go, and a fingerprint without a setup offers both roles.
    pub(crate) fn normalize_setup(&mut self) {
        match (&self.fingerprint, self.setup) {
            (None, _) => self.setup = None,
            (Some(_), None) => self.setup = Some(Setup::ActPass),
            _ => {}
        }
    }
}

/// The one rule for `a=msid` both readers apply: every source without an `msid`
/// parameter gets the m-line's (`media_msid`, or else the first source's that has one),
/// and the m-line's msid is then its first source's. Jingle carries msid only per source
/// (XEP-0339), so this is what survives the trip either way.
pub(crate) fn spread_msid(section: &mut MediaSection, media_msid: Option<String>) {
    let has = |s: &Source| s.parameters.iter().any(|(n, _)| n == "msid");
    let default = media_msid.or_else(|| {
        section
            .sources
            .iter()
            .flat_map(|s| s.parameters.iter())
            .find(|(n, _)| n == "msid")
            .and_then(|(_, v)| v.clone())
    });
    if let Some(msid) = default {
        for s in section.sources.iter_mut().filter(|s| !has(s)) {
            s.parameters.push(("msid".to_string(), Some(msid.clone())));
        }
    }
    section.msid = section
        .sources
        .first()
        .and_then(|s| s.parameters.iter().find(|(n, _)| n == "msid"))
        .and_then(|(_, v)| v.clone());
}

/// Bounds on what one session may describe, on either wire format (a browser writes 3
/// m-lines and a few dozen candidates).
pub const MAX_MEDIA: usize = 64;
pub(crate) const MAX_CANDIDATES: usize = 256;

/// The `ssrc-group` semantics XEP-0339 can carry; other groups are dropped on both sides.
pub(crate) const SSRC_GROUP_SEMANTICS: &[&str] = &["FID", "FEC", "LS", "SRF", "ANAT", "DDP"];

/// A fingerprint from its hash name and colon-separated hex bytes (`AB:CD:...`), as both
/// SDP and XEP-0320 write it; `None` when malformed.
pub(crate) fn fingerprint_from_parts(hash: &str, hex: &str) -> Option<Fingerprint> {
    let value = hex
        .trim()
        .split(':')
        .map(|b| {
            let digits = b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit());
            digits.then(|| u8::from_str_radix(b, 16).ok()).flatten()
        })
        .collect::<Option<Vec<u8>>>()?;
    if !crate::text::is_token(hash) || value.is_empty() || value.len() > 64 {
        return None;
    }
    Some(Fingerprint {
        hash: hash.to_ascii_lowercase(),
        value,
    })
}
