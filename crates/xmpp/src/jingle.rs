//! [`MediaSession`] to and from XEP-0166 Jingle (xmpp-parsers' types).
//!
//! RTP descriptions (XEP-0167 with XEP-0293 rtcp-fb, XEP-0294 header extensions and
//! XEP-0339 sources) and the BUNDLE group (XEP-0338) use xmpp-parsers' typed elements.
//! The ICE-UDP transport (XEP-0176 with the XEP-0320 fingerprint and XEP-0343's
//! `<sctpmap/>`) is written as a raw element in `Transport::Unknown`: xmpp-parsers 0.23
//! keeps that type's `ufrag`/`pwd` private and drops `tcptype` and `<sctpmap/>`.

use xmpp_parsers::hashes::Algo;
use xmpp_parsers::jingle::{
    Content, ContentId, Creator, Description, Disposition, Jingle, SessionId, Transport,
};
use xmpp_parsers::jingle_dtls_srtp::{Fingerprint as DtlsFingerprint, Setup as DtlsSetup};
use xmpp_parsers::jingle_grouping::{Content as GroupContent, Group, Semantics as GroupSemantics};
use xmpp_parsers::jingle_rtcp_fb::RtcpFb;
use xmpp_parsers::jingle_rtp::{Channels, Description as RtpDescription, Parameter, PayloadType};
use xmpp_parsers::jingle_rtp_hdrext::{RtpHdrext, Senders as HdrextSenders};
use xmpp_parsers::jingle_ssma::{
    Group as SsrcGroup, Parameter as SsrcParameter, Semantics, Source as SsrcSource,
};
use xmpp_parsers::minidom::Element;

use crate::candidate::{candidate_element, candidate_from_element};
use crate::model::{fingerprint_from_parts, MAX_CANDIDATES};
use crate::model::{
    Codec, Direction, HeaderExtension, MediaKind, MediaSection, MediaSession, Sctp, Setup, Source,
    SourceGroup,
};
use crate::text::{is_token as valid_token, is_words};
use crate::xml::{attr_parse, el, require_attr};
use crate::{checked_sid, JingleParams, MapError, Side, NS_DATACHANNEL, NS_DTLS_SCTP, NS_ICE_UDP};

/// Bounds on what one Jingle element may describe (mirrors the SDP side).
pub const MAX_CONTENTS: usize = crate::model::MAX_MEDIA;

pub(crate) fn ssrc_group_semantics(s: &str) -> Option<Semantics> {
    Some(match s {
        "FID" => Semantics::Fid,
        "FEC" => Semantics::Fec,
        "LS" => Semantics::Ls,
        "SRF" => Semantics::Srf,
        "ANAT" => Semantics::Anat,
        "DDP" => Semantics::Ddp,
        _ => return None,
    })
}

fn semantics_name(s: &Semantics) -> &'static str {
    match s {
        Semantics::Fid => "FID",
        Semantics::Fec => "FEC",
        Semantics::Ls => "LS",
        Semantics::Srf => "SRF",
        Semantics::Anat => "ANAT",
        Semantics::Ddp => "DDP",
    }
}

/// SDP direction of the side that wrote it -> Jingle `senders` (XEP-0167 §5.5/§8).
fn senders_of(direction: Direction, side: Side) -> xmpp_parsers::jingle::Senders {
    use xmpp_parsers::jingle::Senders as S;
    match (direction, side) {
        (Direction::SendRecv, _) => S::Both,
        (Direction::Inactive, _) => S::None,
        (Direction::SendOnly, Side::Initiator) | (Direction::RecvOnly, Side::Responder) => {
            S::Initiator
        }
        (Direction::SendOnly, Side::Responder) | (Direction::RecvOnly, Side::Initiator) => {
            S::Responder
        }
    }
}

fn direction_of(senders: &xmpp_parsers::jingle::Senders, side: Side) -> Direction {
    use xmpp_parsers::jingle::Senders as S;
    match (senders, side) {
        (S::Both, _) => Direction::SendRecv,
        (S::None, _) => Direction::Inactive,
        (S::Initiator, Side::Initiator) | (S::Responder, Side::Responder) => Direction::SendOnly,
        (S::Initiator, Side::Responder) | (S::Responder, Side::Initiator) => Direction::RecvOnly,
    }
}

fn hdrext_senders(d: Option<Direction>, side: Side) -> HdrextSenders {
    match d.map(|d| senders_of(d, side)) {
        Some(xmpp_parsers::jingle::Senders::Initiator) => HdrextSenders::Initiator,
        Some(xmpp_parsers::jingle::Senders::Responder) => HdrextSenders::Responder,
        _ => HdrextSenders::Both,
    }
}

fn hdrext_direction(s: &HdrextSenders, side: Side) -> Option<Direction> {
    use xmpp_parsers::jingle::Senders as S;
    match s {
        HdrextSenders::Both => None,
        HdrextSenders::Initiator => Some(direction_of(&S::Initiator, side)),
        HdrextSenders::Responder => Some(direction_of(&S::Responder, side)),
    }
}

/// The Jingle form of a session description.
pub fn session_to_jingle(
    session: &MediaSession,
    params: &JingleParams,
) -> Result<Jingle, MapError> {
    let mut jingle = Jingle::new(params.action.clone(), SessionId(checked_sid(&params.sid)?));
    jingle.initiator = params.initiator.clone();
    jingle.responder = params.responder.clone();
    if !session.bundle.is_empty() {
        jingle.group = Some(Group {
            semantics: GroupSemantics::Bundle,
            contents: session
                .bundle
                .iter()
                .map(|m| GroupContent::new(m))
                .collect(),
        });
    }
    for m in &session.media {
        jingle.contents.push(content_of(m, params.side)?);
    }
    // The model's fields are public, so a caller can build one that Jingle (or XML)
    // cannot carry, e.g. a control character in a codec name, which minidom's writer
    // panics on. Reading the element back applies the readers' rules: only what comes
    // back unchanged is handed out.
    if jingle_to_session(&jingle, params.side).as_ref() != Ok(session) {
        return Err(MapError::Unrepresentable);
    }
    Ok(jingle)
}

fn content_of(m: &MediaSection, side: Side) -> Result<Content, MapError> {
    let description = match m.kind {
        MediaKind::Data => Description::Unknown(el("description", NS_DATACHANNEL).build()),
        _ => Description::Rtp(rtp_description(m, side)),
    };
    Ok(Content {
        creator: Creator::Initiator,
        disposition: Disposition::Session,
        name: ContentId(m.mid.clone()),
        senders: senders_of(m.direction, side),
        description: Some(description),
        transport: Some(Transport::Unknown(transport_element(m)?)),
        security: None,
    })
}

fn rtp_description(m: &MediaSection, side: Side) -> RtpDescription {
    let mut d = RtpDescription::new(m.kind.as_str().to_string());
    d.rtcp_mux = m.rtcp_mux;
    for c in &m.codecs {
        let mut pt = PayloadType::new(c.payload_type, c.name.clone(), c.clock_rate, c.channels);
        pt.channels = Channels(c.channels);
        pt.parameters = c
            .parameters
            .iter()
            .map(|(name, value)| Parameter {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        pt.rtcp_fbs = c
            .feedback
            .iter()
            .map(|(t, s)| RtcpFb {
                type_: t.clone(),
                subtype: s.clone(),
            })
            .collect();
        d.payload_types.push(pt);
    }
    for x in &m.header_extensions {
        d.hdrexts.push(
            RtpHdrext::new(x.id, x.uri.clone()).with_senders(hdrext_senders(x.direction, side)),
        );
    }
    for s in &m.sources {
        let mut source = SsrcSource::new(s.ssrc);
        source.parameters = s
            .parameters
            .iter()
            .map(|(name, value)| SsrcParameter {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        d.ssrcs.push(source);
    }
    for g in &m.source_groups {
        if let Some(semantics) = ssrc_group_semantics(&g.semantics) {
            d.ssrc_groups.push(SsrcGroup {
                semantics,
                sources: g.ssrcs.iter().map(|id| SsrcSource::new(*id)).collect(),
            });
        }
    }
    d
}

fn transport_element(m: &MediaSection) -> Result<Element, MapError> {
    let mut t = el("transport", NS_ICE_UDP)
        .with_opt("ufrag", m.ice_ufrag.clone())
        .with_opt("pwd", m.ice_pwd.clone());
    if let Some(f) = &m.fingerprint {
        let setup = match m.setup {
            Some(Setup::Active) => DtlsSetup::Active,
            Some(Setup::Passive) => DtlsSetup::Passive,
            // XEP-0320 requires a setup; an SDP without one offers both roles.
            Some(Setup::ActPass) | None => DtlsSetup::Actpass,
        };
        let algo: Algo = f.hash.parse().map_err(|_| MapError::BadAttribute {
            attr: "fingerprint",
            value: f.hash.clone(),
        })?;
        t = t.child(
            DtlsFingerprint {
                hash: algo,
                setup,
                value: f.value.clone(),
            }
            .into(),
        );
    }
    if let Some(sctp) = m.sctp {
        t = t.child(
            el("sctpmap", NS_DTLS_SCTP)
                .with("number", sctp.port.to_string())
                .with("protocol", "webrtc-datachannel")
                // Not in XEP-0343: our extension, so that the peer's limit survives.
                .with_opt(
                    "max-message-size",
                    sctp.max_message_size.map(|s| s.to_string()),
                )
                .build(),
        );
    }
    for c in &m.candidates {
        t = t.child(candidate_element(c));
    }
    Ok(t.build())
}

/// The session description a Jingle element carries, as `side` wrote it.
pub fn jingle_to_session(jingle: &Jingle, side: Side) -> Result<MediaSession, MapError> {
    if jingle.contents.len() > MAX_CONTENTS {
        return Err(MapError::TooLarge("contents"));
    }
    let bundle = match &jingle.group {
        Some(g) if g.semantics == GroupSemantics::Bundle => {
            g.contents.iter().map(|c| c.name.0.clone()).collect()
        }
        _ => Vec::new(),
    };
    let mut media = Vec::with_capacity(jingle.contents.len());
    for content in &jingle.contents {
        media.push(section_of(content, side)?);
    }
    for mid in &bundle {
        if !media.iter().any(|m: &MediaSection| &m.mid == mid) {
            return Err(MapError::BadElement {
                element: "group",
                why: "names a content that is not in the session",
            });
        }
    }
    let session = MediaSession { bundle, media };
    if session.has_duplicate_mids() {
        return Err(MapError::BadElement {
            element: "content",
            why: "the same name twice",
        });
    }
    Ok(session)
}

fn section_of(content: &Content, side: Side) -> Result<MediaSection, MapError> {
    let mid = content.name.0.clone();
    if !valid_token(&mid) || mid.len() > 64 {
        return Err(MapError::BadElement {
            element: "content",
            why: "name is not a usable mid",
        });
    }
    let transport = match &content.transport {
        Some(Transport::Unknown(e)) if e.is("transport", NS_ICE_UDP) => e.clone(),
        Some(Transport::IceUdp(t)) => Element::from(t.clone()),
        _ => {
            return Err(MapError::Unsupported(
                "a content without an ICE-UDP transport",
            ))
        }
    };
    let sctp = transport.children().find(|c| c.is("sctpmap", NS_DTLS_SCTP));
    let rtp = match &content.description {
        Some(Description::Rtp(d)) => Some(d),
        _ => None,
    };
    let kind = match (rtp, sctp) {
        (Some(d), _) if d.media == "audio" => MediaKind::Audio,
        (Some(d), _) if d.media == "video" => MediaKind::Video,
        (None, Some(_)) => MediaKind::Data,
        _ => {
            return Err(MapError::Unsupported(
                "a content that is neither RTP audio/video nor a data channel",
            ))
        }
    };
    let mut m = MediaSection {
        kind,
        mid,
        direction: if kind == MediaKind::Data {
            Direction::SendRecv
        } else {
            direction_of(&content.senders, side)
        },
        codecs: Vec::new(),
        header_extensions: Vec::new(),
        sources: Vec::new(),
        source_groups: Vec::new(),
        msid: None,
        rtcp_mux: false,
        ice_ufrag: None,
        ice_pwd: None,
        fingerprint: None,
        setup: None,
        candidates: Vec::new(),
        sctp: None,
    };
    read_transport(&transport, &mut m)?;
    if let (MediaKind::Data, Some(sctp)) = (kind, sctp) {
        m.sctp = Some(Sctp {
            port: attr_parse(sctp, "number")?.unwrap_or(5000),
            max_message_size: attr_parse(sctp, "max-message-size")?,
        });
    }
    if let (Some(d), false) = (rtp, kind == MediaKind::Data) {
        read_description(d, side, &mut m)?;
    }
    m.normalize_setup();
    Ok(m)
}

pub(crate) fn read_transport(t: &Element, m: &mut MediaSection) -> Result<(), MapError> {
    for (attr, slot) in [("ufrag", &mut m.ice_ufrag), ("pwd", &mut m.ice_pwd)] {
        if let Some(v) = t.attr(attr) {
            if !valid_token(v) || v.len() > 256 {
                return Err(MapError::BadElement {
                    element: "transport",
                    why: attr,
                });
            }
            *slot = Some(v.to_string());
        }
    }
    for child in t.children() {
        if child.is("candidate", NS_ICE_UDP) {
            if m.candidates.len() >= MAX_CANDIDATES {
                return Err(MapError::TooLarge("candidates"));
            }
            m.candidates.push(candidate_from_element(child)?);
        } else if child.is("fingerprint", crate::NS_DTLS) && m.fingerprint.is_none() {
            // Read here, not with xmpp-parsers' Fingerprint::try_from: xso 0.4's
            // ColonSeparatedHex decoder asserts (panics) on malformed text, and this
            // text comes from the remote peer.
            let bad = |why| MapError::BadElement {
                element: "fingerprint",
                why,
            };
            let hash = require_attr(child, "hash")?;
            let setup = match require_attr(child, "setup")? {
                "actpass" => Setup::ActPass,
                "active" => Setup::Active,
                "passive" => Setup::Passive,
                _ => return Err(bad("setup")),
            };
            let fingerprint =
                fingerprint_from_parts(hash, &child.text()).ok_or(bad("hash or value"))?;
            m.fingerprint = Some(fingerprint);
            m.setup = Some(setup);
        }
    }
    Ok(())
}

fn read_description(d: &RtpDescription, side: Side, m: &mut MediaSection) -> Result<(), MapError> {
    let bad = |why: &'static str| MapError::BadElement {
        element: "description",
        why,
    };
    m.rtcp_mux = d.rtcp_mux;
    for pt in &d.payload_types {
        let name = pt.name.clone().ok_or(bad("payload-type without a name"))?;
        if pt.id > 127 || !valid_token(&name) || name.contains('/') {
            return Err(bad("payload-type"));
        }
        if m.codecs.iter().any(|c| c.payload_type == pt.id) {
            return Err(bad("payload-type id twice"));
        }
        let clock_rate = pt
            .clockrate
            .ok_or(bad("payload-type without a clockrate"))?;
        if pt.channels.0 == 0 {
            return Err(bad("payload-type with 0 channels"));
        }
        let mut parameters = Vec::with_capacity(pt.parameters.len());
        for p in &pt.parameters {
            // As the SDP side reads `a=fmtp`: `name=value` (value may be empty) or a
            // bare value, no `;`, and `=` only as the separator.
            let plain = |s: &str| valid_token(s) && !s.contains(';');
            let named =
                plain(&p.name) && !p.name.contains('=') && (p.value.is_empty() || plain(&p.value));
            let bare = p.name.is_empty() && plain(&p.value) && !p.value.contains('=');
            if !(named || bare) {
                return Err(bad("payload-type parameter"));
            }
            parameters.push((p.name.clone(), p.value.clone()));
        }
        let mut feedback = Vec::with_capacity(pt.rtcp_fbs.len());
        for fb in &pt.rtcp_fbs {
            let sub_ok = fb
                .subtype
                .as_deref()
                .is_none_or(|s| !s.is_empty() && is_words(s));
            if !valid_token(&fb.type_) || !sub_ok {
                return Err(bad("rtcp-fb"));
            }
            feedback.push((fb.type_.clone(), fb.subtype.clone()));
        }
        m.codecs.push(Codec {
            payload_type: pt.id,
            name,
            clock_rate,
            channels: pt.channels.0,
            parameters,
            feedback,
        });
    }
    for x in &d.hdrexts {
        if !(1..=255).contains(&x.id) || !valid_token(&x.uri) {
            return Err(bad("rtp-hdrext"));
        }
        m.header_extensions.push(HeaderExtension {
            id: x.id,
            uri: x.uri.clone(),
            direction: hdrext_direction(&x.senders, side),
        });
    }
    for s in &d.ssrcs {
        if m.sources.iter().any(|x| x.ssrc == s.id) {
            return Err(bad("source twice"));
        }
        let mut parameters = Vec::with_capacity(s.parameters.len());
        for p in &s.parameters {
            let value_ok = p
                .value
                .as_deref()
                .is_none_or(|v| v.is_empty() || is_words(v));
            let msid_ok = p.name != "msid" || p.value.is_some();
            if !valid_token(&p.name) || p.name.contains(':') || !value_ok || !msid_ok {
                return Err(bad("source parameter"));
            }
            parameters.push((p.name.clone(), p.value.clone()));
        }
        // SDP cannot name a source without a parameter: such a source is dropped.
        if !parameters.is_empty() {
            m.sources.push(Source {
                ssrc: s.id,
                parameters,
            });
        }
    }
    for g in &d.ssrc_groups {
        m.source_groups.push(SourceGroup {
            semantics: semantics_name(&g.semantics).to_string(),
            ssrcs: g.sources.iter().map(|s| s.id).collect(),
        });
    }
    crate::model::spread_msid(m, None);
    if m.codecs.is_empty() {
        return Err(bad("no payload-type"));
    }
    Ok(())
}
