//! Trickle ICE (RFC 8838) over Jingle: the browser's `icecandidate` events become
//! XEP-0176 `transport-info` elements (one content per mid, the candidate in an ICE-UDP
//! transport with the ufrag it belongs to), and back.

use xmpp_parsers::jingle::{Action, Content, ContentId, Creator, Jingle, SessionId, Transport};
use xmpp_parsers::minidom::Element;

use crate::candidate::{
    candidate_element, candidate_from_element, parse_candidate, write_candidate,
};
use crate::text::is_token;
use crate::xml::el;
use crate::{checked_sid, MapError, NS_ICE_UDP};

/// One trickled candidate as the browser API has it (`RTCIceCandidate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrickleCandidate {
    /// `sdpMid`: the Jingle content name.
    pub mid: String,
    /// `candidate`: `candidate:...` (RFC 8839 §5.1), without any `ufrag` extension.
    pub candidate: String,
    /// `usernameFragment`: the ICE generation the candidate belongs to.
    pub ufrag: Option<String>,
}

/// At most this many candidates per transport-info (a browser trickles them one by one).
const MAX_TRICKLE: usize = 256;

/// A `transport-info` carrying `candidates` (grouped per mid, in order). A `ufrag`
/// extension inside a candidate line counts as its `ufrag` when the field is empty.
pub fn candidates_to_transport_info(
    sid: &str,
    candidates: &[TrickleCandidate],
) -> Result<Jingle, MapError> {
    if candidates.len() > MAX_TRICKLE {
        return Err(MapError::TooLarge("candidates"));
    }
    let mut jingle = Jingle::new(Action::TransportInfo, SessionId(checked_sid(sid)?));
    let mut transports: Vec<(String, Option<String>, Vec<Element>)> = Vec::new();
    for t in candidates {
        let (cand, line_ufrag) = parse_candidate(&t.candidate)?;
        let ufrag = t.ufrag.clone().or(line_ufrag);
        check_mid_and_ufrag(&t.mid, ufrag.as_deref())?;
        let element = candidate_element(&cand);
        match transports
            .iter_mut()
            .find(|(mid, u, _)| *mid == t.mid && *u == ufrag)
        {
            Some((_, _, list)) => list.push(element),
            None => transports.push((t.mid.clone(), ufrag, vec![element])),
        }
    }
    for (mid, ufrag, list) in transports {
        let mut transport = el("transport", NS_ICE_UDP).with_opt("ufrag", ufrag);
        for c in list {
            transport = transport.child(c);
        }
        let mut content = Content::new(Creator::Initiator, ContentId(mid));
        content.transport = Some(Transport::Unknown(transport.build()));
        jingle.contents.push(content);
    }
    Ok(jingle)
}

/// The candidates a `transport-info` (or any Jingle element's transports) carries.
pub fn transport_info_to_candidates(jingle: &Jingle) -> Result<Vec<TrickleCandidate>, MapError> {
    let mut out = Vec::new();
    for content in &jingle.contents {
        let transport = match &content.transport {
            Some(Transport::Unknown(e)) if e.is("transport", NS_ICE_UDP) => e.clone(),
            Some(Transport::IceUdp(t)) => Element::from(t.clone()),
            _ => continue,
        };
        let ufrag = transport.attr("ufrag").map(str::to_string);
        check_mid_and_ufrag(&content.name.0, ufrag.as_deref())?;
        for c in transport
            .children()
            .filter(|c| c.is("candidate", NS_ICE_UDP))
        {
            if out.len() >= MAX_TRICKLE {
                return Err(MapError::TooLarge("candidates"));
            }
            out.push(TrickleCandidate {
                mid: content.name.0.clone(),
                candidate: write_candidate(&candidate_from_element(c)?),
                ufrag: ufrag.clone(),
            });
        }
    }
    Ok(out)
}

/// The mid and ufrag come from the browser (through signaling) or from the peer's stanza:
/// only what both XML and SDP can carry passes (minidom cannot write control characters).
fn check_mid_and_ufrag(mid: &str, ufrag: Option<&str>) -> Result<(), MapError> {
    if !is_token(mid) || mid.len() > 64 {
        return Err(MapError::BadAttribute {
            attr: "mid",
            value: mid.chars().take(64).collect(),
        });
    }
    if let Some(u) = ufrag.filter(|u| !is_token(u) || u.len() > 256) {
        return Err(MapError::BadAttribute {
            attr: "ice-ufrag",
            value: u.chars().take(64).collect(),
        });
    }
    Ok(())
}
