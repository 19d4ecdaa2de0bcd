//! Trickle ICE (RFC 8838) over Jingle: the browser's `icecandidate` events become
//! XEP-0176 `transport-info` elements (one content per mid, the candidate in an ICE-UDP
//! transport with the ufrag it belongs to), and back.

use xmpp_parsers::jingle::{Action, Content, ContentId, Creator, Jingle, SessionId, Transport};
use xmpp_parsers::minidom::Element;

use crate::candidate::{
    candidate_element, candidate_from_element, parse_candidate, write_candidate,
};
use crate::xml::el;
use crate::{MapError, NS_ICE_UDP};

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
    let mut jingle = Jingle::new(Action::TransportInfo, SessionId(sid.to_string()));
    let mut transports: Vec<(String, Option<String>, Vec<Element>)> = Vec::new();
    for t in candidates {
        let (cand, line_ufrag) = parse_candidate(&t.candidate)?;
        let ufrag = t.ufrag.clone().or(line_ufrag);
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
