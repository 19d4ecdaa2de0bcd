//! WebRTC SDP (JSEP, RFC 8829) read into [`MediaSession`] (writing: `sdp_write`).
//!
//! The lines are read and written by the `sdp-types` crate (sdroege, MIT, maintained):
//! it parses Chromium's offer and answer and writes them back byte for byte, which the
//! other candidates were weighed against — webrtc-rs `sdp` 0.17 does too, Mozilla's
//! `webrtc-sdp` rewrites them (strict JSEP types, MPL), and str0m's SDP is not public
//! API. The attribute values a browser needs are read here into the typed model; the
//! rest (see the crate doc) is dropped on purpose.

use sdp_types::{Attribute, Media, Session};

use crate::candidate::parse_candidate;
use crate::model::{
    Codec, Direction, Fingerprint, HeaderExtension, MediaKind, MediaSection, MediaSession, Sctp,
    Setup, Source, SourceGroup,
};
use crate::text::{is_token as token, is_words};
use crate::MapError;

/// Bounds on what one description may hold (a browser writes 3 m-lines and ~30 codecs).
pub const MAX_SDP_BYTES: usize = 128 * 1024;
pub use crate::model::MAX_MEDIA;

/// Parses SDP text (lenient about `\n` vs `\r\n`, as `sdp-types` is).
pub fn parse_sdp(text: &str) -> Result<Session, MapError> {
    if text.len() > MAX_SDP_BYTES {
        return Err(MapError::TooLarge("SDP"));
    }
    Session::parse(text.as_bytes()).map_err(|e| MapError::Sdp(e.to_string()))
}

fn bad(attr: &'static str, value: &str) -> MapError {
    MapError::BadAttribute {
        attr,
        value: value.chars().take(200).collect(),
    }
}

fn values<'a>(attrs: &'a [Attribute], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    attrs
        .iter()
        .filter(move |a| a.attribute == name)
        .map(|a| a.value.as_deref().unwrap_or(""))
}

fn first<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.attribute == name)
        .map(|a| a.value.as_deref().unwrap_or(""))
}

fn has(attrs: &[Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.attribute == name)
}

fn parse_setup(v: &str) -> Result<Setup, MapError> {
    match v.trim() {
        "actpass" => Ok(Setup::ActPass),
        "active" => Ok(Setup::Active),
        "passive" => Ok(Setup::Passive),
        "holdconn" => Err(MapError::Unsupported(
            "a=setup:holdconn (XEP-0320 has no such role)",
        )),
        _ => Err(bad("setup", v)),
    }
}

fn parse_fingerprint(v: &str) -> Result<Fingerprint, MapError> {
    let (hash, hex) = v
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("fingerprint", v))?;
    crate::model::fingerprint_from_parts(hash, hex).ok_or_else(|| bad("fingerprint", v))
}

pub(crate) fn fingerprint_text(f: &Fingerprint) -> String {
    let hex: Vec<String> = f.value.iter().map(|b| format!("{b:02X}")).collect();
    format!("{} {}", f.hash, hex.join(":"))
}

/// The typed model of a browser's SDP.
pub fn session_from_sdp(sdp: &Session) -> Result<MediaSession, MapError> {
    if sdp.medias.len() > MAX_MEDIA {
        return Err(MapError::TooLarge("m-lines"));
    }
    let mut bundle = Vec::new();
    for g in values(&sdp.attributes, "group") {
        let mut words = g.split_ascii_whitespace();
        if words.next() == Some("BUNDLE") {
            bundle = words.map(str::to_string).collect();
        }
    }
    // Session-level values apply to every m-line that does not say otherwise (Firefox
    // writes the fingerprint at session level).
    let session_fingerprint = first(&sdp.attributes, "fingerprint")
        .map(parse_fingerprint)
        .transpose()?;
    let session_setup = first(&sdp.attributes, "setup")
        .map(parse_setup)
        .transpose()?;
    let session_ufrag = first(&sdp.attributes, "ice-ufrag").map(str::to_string);
    let session_pwd = first(&sdp.attributes, "ice-pwd").map(str::to_string);
    let mut media = Vec::with_capacity(sdp.medias.len());
    for (index, m) in sdp.medias.iter().enumerate() {
        let mut section = media_from_sdp(m, index)?;
        if section.fingerprint.is_none() {
            section.fingerprint = session_fingerprint.clone();
        }
        if section.setup.is_none() {
            section.setup = session_setup;
        }
        if section.ice_ufrag.is_none() {
            section.ice_ufrag = session_ufrag.clone();
        }
        if section.ice_pwd.is_none() {
            section.ice_pwd = session_pwd.clone();
        }
        section.normalize_setup();
        for (attr, v) in [
            ("ice-ufrag", &section.ice_ufrag),
            ("ice-pwd", &section.ice_pwd),
        ] {
            if let Some(v) = v {
                if !token(v) || v.len() > 256 {
                    return Err(bad(attr, v));
                }
            }
        }
        media.push(section);
    }
    for mid in &bundle {
        if !media.iter().any(|m| &m.mid == mid) {
            return Err(bad("group", mid));
        }
    }
    let session = MediaSession { bundle, media };
    if session.has_duplicate_mids() {
        return Err(bad("mid", "the same mid twice"));
    }
    Ok(session)
}

fn media_from_sdp(m: &Media, index: usize) -> Result<MediaSection, MapError> {
    let a = &m.attributes;
    if m.port == 0 && !has(a, "bundle-only") {
        return Err(MapError::Unsupported("a rejected m-line (port 0)"));
    }
    let kind = match (m.media.as_str(), m.proto.as_str()) {
        ("audio", _) => MediaKind::Audio,
        ("video", _) => MediaKind::Video,
        ("application", p) if p.contains("SCTP") => MediaKind::Data,
        _ => {
            return Err(MapError::Unsupported(
                "an m-line that is not audio, video or SCTP data",
            ))
        }
    };
    let mid = first(a, "mid")
        .ok_or(MapError::MissingMid(index))?
        .trim()
        .to_string();
    if !token(&mid) || mid.len() > 64 {
        return Err(bad("mid", &mid));
    }
    // A data m-line has no direction and no RTCP (XEP-0343 carries neither).
    let direction = match kind {
        MediaKind::Data => Direction::SendRecv,
        _ => a
            .iter()
            .find_map(|x| Direction::parse(&x.attribute))
            .unwrap_or(Direction::SendRecv),
    };
    let mut section = MediaSection {
        kind,
        mid,
        direction,
        codecs: Vec::new(),
        header_extensions: Vec::new(),
        sources: Vec::new(),
        source_groups: Vec::new(),
        msid: None,
        rtcp_mux: kind != MediaKind::Data && has(a, "rtcp-mux"),
        ice_ufrag: first(a, "ice-ufrag").map(|s| s.trim().to_string()),
        ice_pwd: first(a, "ice-pwd").map(|s| s.trim().to_string()),
        fingerprint: first(a, "fingerprint").map(parse_fingerprint).transpose()?,
        setup: first(a, "setup").map(parse_setup).transpose()?,
        candidates: Vec::new(),
        sctp: None,
    };
    for v in values(a, "candidate") {
        if section.candidates.len() >= crate::model::MAX_CANDIDATES {
            return Err(MapError::TooLarge("candidates"));
        }
        match parse_candidate(v) {
            Ok((c, _)) => section.candidates.push(c),
            Err(MapError::Unsupported(_)) => {} // an mDNS name: the peer could not use it
            Err(e) => return Err(e),
        }
    }
    if kind == MediaKind::Data {
        read_sctp(m, &mut section)?;
    } else {
        read_rtp(m, &mut section)?;
    }
    Ok(section)
}

fn read_sctp(m: &Media, section: &mut MediaSection) -> Result<(), MapError> {
    let a = &m.attributes;
    // RFC 8841 `a=sctp-port`; the older `a=sctpmap:<port> webrtc-datachannel <streams>`.
    let port = match first(a, "sctp-port") {
        Some(v) => v.trim().parse().map_err(|_| bad("sctp-port", v))?,
        None => match first(a, "sctpmap") {
            Some(v) => v
                .split_ascii_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| bad("sctpmap", v))?,
            None => 5000,
        },
    };
    let max_message_size = first(a, "max-message-size")
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| bad("max-message-size", v))
        })
        .transpose()?;
    section.sctp = Some(Sctp {
        port,
        max_message_size,
    });
    Ok(())
}

fn read_rtp(m: &Media, section: &mut MediaSection) -> Result<(), MapError> {
    let a = &m.attributes;
    for pt in m.fmt.split_ascii_whitespace() {
        let payload_type: u8 = pt.parse().map_err(|_| bad("m-line format", pt))?;
        if payload_type > 127 {
            return Err(bad("m-line format", pt));
        }
        if section
            .codecs
            .iter()
            .any(|c| c.payload_type == payload_type)
        {
            return Err(bad("m-line format", pt));
        }
        section.codecs.push(Codec {
            payload_type,
            name: String::new(),
            clock_rate: 0,
            channels: 1,
            parameters: Vec::new(),
            feedback: Vec::new(),
        });
    }
    let codec = |codecs: &mut Vec<Codec>,
                 pt: &str,
                 attr: &'static str|
     -> Result<Option<usize>, MapError> {
        if pt == "*" {
            return Ok(None);
        }
        let pt: u8 = pt.parse().map_err(|_| bad(attr, pt))?;
        codecs
            .iter()
            .position(|c| c.payload_type == pt)
            .map(Some)
            .ok_or_else(|| bad(attr, &pt.to_string()))
    };
    for v in values(a, "rtpmap") {
        let (pt, enc) = v.trim().split_once(' ').ok_or_else(|| bad("rtpmap", v))?;
        let i = codec(&mut section.codecs, pt, "rtpmap")?.ok_or_else(|| bad("rtpmap", v))?;
        let mut parts = enc.trim().split('/');
        let name = parts
            .next()
            .filter(|n| token(n))
            .ok_or_else(|| bad("rtpmap", v))?;
        let clock_rate = parts
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("rtpmap", v))?;
        let channels = match parts.next() {
            Some(c) => c
                .parse::<u8>()
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| bad("rtpmap", v))?,
            None => 1,
        };
        let c = &mut section.codecs[i];
        c.name = name.to_string();
        c.clock_rate = clock_rate;
        c.channels = channels;
    }
    if section.codecs.is_empty() {
        return Err(MapError::Unsupported("an RTP m-line without payload types"));
    }
    for c in &section.codecs {
        // Static payload types may go without rtpmap (RFC 3551); a browser always writes it.
        if c.name.is_empty() {
            return Err(MapError::Unsupported("a payload type without a=rtpmap"));
        }
    }
    for v in values(a, "fmtp") {
        let (pt, params) = v.trim().split_once(' ').ok_or_else(|| bad("fmtp", v))?;
        let i = codec(&mut section.codecs, pt, "fmtp")?.ok_or_else(|| bad("fmtp", v))?;
        for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), v.trim()),
                None => ("", p),
            };
            let named_ok = token(name) && (value.is_empty() || token(value));
            let bare_ok = name.is_empty() && token(value) && !value.contains('=');
            if !(named_ok || bare_ok) {
                return Err(bad("fmtp", v));
            }
            section.codecs[i]
                .parameters
                .push((name.to_string(), value.to_string()));
        }
    }
    for v in values(a, "rtcp-fb") {
        let mut words = v.split_ascii_whitespace();
        let pt = words.next().ok_or_else(|| bad("rtcp-fb", v))?;
        let fb_type = words
            .next()
            .filter(|t| token(t))
            .ok_or_else(|| bad("rtcp-fb", v))?
            .to_string();
        let subtype: Vec<&str> = words.collect();
        if !subtype.iter().all(|w| token(w)) {
            return Err(bad("rtcp-fb", v));
        }
        let subtype = (!subtype.is_empty()).then(|| subtype.join(" "));
        if subtype.as_deref().is_some_and(|s| !is_words(s)) {
            return Err(bad("rtcp-fb", v));
        }
        if fb_type == "trr-int" {
            continue; // XEP-0293's <rtcp-fb-trr-int/> is not kept (see the crate doc)
        }
        match codec(&mut section.codecs, pt, "rtcp-fb")? {
            Some(i) => section.codecs[i].feedback.push((fb_type, subtype)),
            // `*` (Firefox): the same feedback for every payload type.
            None => section
                .codecs
                .iter_mut()
                .for_each(|c| c.feedback.push((fb_type.clone(), subtype.clone()))),
        }
    }
    for v in values(a, "extmap") {
        let (head, rest) = v.trim().split_once(' ').ok_or_else(|| bad("extmap", v))?;
        let (id, direction) = match head.split_once('/') {
            Some((id, d)) => (
                id,
                Some(Direction::parse(d).ok_or_else(|| bad("extmap", v))?),
            ),
            None => (head, None),
        };
        let id: u16 = id
            .parse()
            .ok()
            .filter(|id| (1..=255).contains(id))
            .ok_or_else(|| bad("extmap", v))?;
        let uri = rest
            .split_ascii_whitespace()
            .next()
            .filter(|u| token(u))
            .ok_or_else(|| bad("extmap", v))?;
        let direction = match direction {
            Some(Direction::Inactive) => continue, // no XEP-0294 equivalent: dropped
            Some(Direction::SendRecv) | None => None,
            d => d,
        };
        section.header_extensions.push(HeaderExtension {
            id,
            uri: uri.to_string(),
            direction,
        });
    }
    for v in values(a, "ssrc") {
        let (id, param) = v.trim().split_once(' ').ok_or_else(|| bad("ssrc", v))?;
        let ssrc: u32 = id.parse().map_err(|_| bad("ssrc", v))?;
        let (name, value) = match param.split_once(':') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (param, None),
        };
        let value_ok = value.as_deref().is_none_or(|v| v.is_empty() || is_words(v));
        if !token(name) || !value_ok || (name == "msid" && value.is_none()) {
            return Err(bad("ssrc", v));
        }
        let source = match section.sources.iter_mut().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut section.sources[i],
            None => {
                section.sources.push(Source {
                    ssrc,
                    parameters: Vec::new(),
                });
                let last = section.sources.len() - 1;
                &mut section.sources[last]
            }
        };
        source.parameters.push((name.to_string(), value));
    }
    for v in values(a, "ssrc-group") {
        let mut words = v.split_ascii_whitespace();
        let semantics = words.next().ok_or_else(|| bad("ssrc-group", v))?;
        let ssrcs = words
            .map(|w| w.parse::<u32>().map_err(|_| bad("ssrc-group", v)))
            .collect::<Result<Vec<_>, _>>()?;
        if crate::model::SSRC_GROUP_SEMANTICS.contains(&semantics) {
            section.source_groups.push(SourceGroup {
                semantics: semantics.to_string(),
                ssrcs,
            });
        }
    }
    if let Some(msid) = first(a, "msid") {
        if !is_words(msid.trim()) {
            return Err(bad("msid", msid));
        }
    }
    crate::model::spread_msid(section, first(a, "msid").map(|s| s.trim().to_string()));
    Ok(())
}
