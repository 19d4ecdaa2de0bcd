//! XMPP federation of direct calls (issue 13, the trapezoid): what Switchboard needs to
//! carry a browser's call to another server over XMPP. Three layers, the first two
//! sans-IO (values in, values out):
//!
//! - the SDP <-> Jingle mapping (this module and its private ones, below);
//! - [`calls::JingleCalls`]: the call signalling (XEP-0353 ringing, then the XEP-0166
//!   session) fed stanzas and time, returning stanzas and [`CallEvent`]s, with
//!   [`address`] mapping app addresses (`ada@a.test`) to JIDs and [`component`] the
//!   XEP-0114 component stream (handshake, framing, size bound);
//! - [`driver::XmppFederation`]: the thin tokio task that connects to the XMPP server's
//!   component port (reconnecting with backoff) and runs the two above.
//!
//! `docs/jingle.md` describes the setup (prosody), the call flow and the mapping.
//!
//! ```text
//! browser SDP --parse_sdp--> Sdp --sdp_to_jingle--> Jingle --jingle_to_xml--> <jingle/>
//! <jingle/> --parse_jingle_xml--> Jingle --jingle_to_sdp--> Sdp --write_sdp--> browser SDP
//! RTCIceCandidate <--candidates_to_transport_info / transport_info_to_candidates--> transport-info
//! ```
//!
//! Both directions go through one typed model ([`MediaSession`]); the fields of that
//! model are exactly what is kept, and the tests check that SDP -> Jingle -> XML ->
//! Jingle -> SDP returns the same model for Chromium's real offer and answer and for
//! generated sessions (proptest).
//!
//! # What maps to what
//!
//! | SDP | Jingle |
//! |---|---|
//! | `a=group:BUNDLE` | `<group semantics='BUNDLE'>` (XEP-0338) |
//! | m-line, `a=mid` | `<content creator='initiator' name=mid>` (XEP-0166) |
//! | `a=sendrecv/sendonly/recvonly/inactive` | `senders` = both / the writer's role / the other role / none |
//! | `m=audio/video`, payload types, `a=rtpmap` | `<description media>` + `<payload-type id name clockrate channels>` (XEP-0167) |
//! | `a=fmtp:pt k=v;...` | `<parameter name value/>`; a bare value (`111/111`) has `name=''` |
//! | `a=rtcp-fb:pt type [sub]` (`*` expanded) | `<rtcp-fb type subtype/>` in the payload type (XEP-0293) |
//! | `a=extmap:id[/dir] uri` | `<rtp-hdrext id uri senders/>` (XEP-0294) |
//! | `a=rtcp-mux` | `<rtcp-mux/>` |
//! | `a=ssrc:id name:value`, `a=ssrc-group` | `<source ssrc><parameter name value/>`, `<ssrc-group semantics>` (XEP-0339) |
//! | `a=msid` | the sources' `msid` parameter (written back as `a=msid`) |
//! | `a=ice-ufrag/ice-pwd`, `a=candidate` | `<transport xmlns=ice-udp ufrag pwd><candidate .../>` (XEP-0176) |
//! | trickled candidate | `transport-info` with one candidate per content |
//! | `a=fingerprint`, `a=setup` | `<fingerprint hash setup>` in the transport (XEP-0320) |
//! | `m=application ... webrtc-datachannel`, `a=sctp-port`, `a=max-message-size` | `<description xmlns='urn:xmpp:jingle:apps:webrtc-datachannel:0'/>` + `<sctpmap number protocol='webrtc-datachannel' max-message-size/>` in the transport (XEP-0343) |
//!
//! XEP-0343 defines only the `<sctpmap/>` (in `urn:xmpp:jingle:transports:dtls-sctp:1`);
//! xmpp-parsers 0.23 does not carry it, so it is written here, and the data content's
//! `<description/>` uses XEP-0343's registered `webrtc-datachannel:0` namespace (XEP-0166
//! wants a description; XEP-0343 names none for WebRTC). `max-message-size` is an extra
//! attribute (ours) so the browser's limit survives; a peer that ignores it gets the
//! RFC 8841 default of 64 KiB. Reading accepts a data content with any description.
//!
//! # What is dropped, and why
//!
//! - `a=extmap-allow-mixed`, `a=rtcp-rsize`, `a=rtcp-xr`, `a=rtcp:` and `b=` lines: no
//!   XEP carries them; without them a browser falls back to one-byte extensions and
//!   full-size RTCP, which every WebRTC stack handles.
//! - `a=ice-options:trickle` is always written (Jingle always trickles), `a=ice-lite` and
//!   `a=end-of-candidates` are not.
//! - Candidate `network-cost` (a local preference of the sender) and host-name (mDNS)
//!   candidates (XEP-0176 wants an IP address); `tcptype` and `network-id` are kept.
//! - `a=rtcp-fb:* trr-int`, extmaps marked `inactive`, extmap attributes, ssrc-group
//!   semantics outside XEP-0339 (`SIM`), a second fingerprint, `a=setup:holdconn`
//!   (refused: XEP-0320 has no such role), `a=msid` on an m-line without sources.
//! - The `o=`, `s=`, `t=`, `c=` and m-line port are rebuilt: the m-line carries the
//!   first UDP candidate as its default (RFC 8839), or `9 0.0.0.0` before any.
//! - A rejected m-line (port 0) is refused ([`MapError::Unsupported`]).
//!
//! Errors are [`MapError`] values; no input panics (the fuzz target `xmpp_jingle` checks).
//! Received stanzas must go through [`parse_jingle`], not `Jingle::try_from`: xso 0.4
//! panics on a malformed `<fingerprint/>` inside an ICE-UDP transport, which
//! [`parse_jingle`] keeps away from it. Strings are printable ASCII words of at most
//! 1 KiB on both sides (minidom's writer panics on control characters, rxml refuses XML
//! tokens over 8 KiB); `docs/jingle.md` has the table above with examples.

pub mod address;
pub mod calls;
mod candidate;
pub mod component;
pub mod driver;
mod jingle;
#[cfg(feature = "lab")]
pub mod lab;
pub mod model;
mod sdp;
mod sdp_write;
pub mod stanza;
mod text;
mod trickle;
mod xml;

use xmpp_parsers::jid::Jid;
use xmpp_parsers::jingle::{Action, Jingle, Transport};
use xmpp_parsers::minidom::Element;

pub use address::{AddressError, Addresses};
pub use calls::{CallError, CallEvent, CallsConfig, Dropped, EndReason, JingleCalls};
pub use candidate::{parse_candidate, write_candidate};
pub use jingle::{jingle_to_session, session_to_jingle};
pub use model::MediaSession;
pub use sdp::{parse_sdp, session_from_sdp, MAX_SDP_BYTES};
pub use sdp_write::{session_to_sdp, write_sdp};
pub use trickle::{candidates_to_transport_info, transport_info_to_candidates, TrickleCandidate};
pub use xmpp_parsers;

/// A parsed SDP (the `sdp-types` crate's session).
pub type Sdp = sdp_types::Session;

pub const NS_JINGLE: &str = "urn:xmpp:jingle:1";
pub const NS_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
pub const NS_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
/// XEP-0343's `<sctpmap/>`.
pub const NS_DTLS_SCTP: &str = "urn:xmpp:jingle:transports:dtls-sctp:1";
/// The data content's description (see the crate doc).
pub const NS_DATACHANNEL: &str = "urn:xmpp:jingle:apps:webrtc-datachannel:0";

/// Largest Jingle XML this crate parses (Chromium's offer is about 20 KiB of XML).
pub const MAX_XML_BYTES: usize = 1024 * 1024;

/// Why a description or a stanza could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("SDP does not parse: {0}")]
    Sdp(String),
    #[error("{0} beyond the limit")]
    TooLarge(&'static str),
    #[error("malformed a={attr}: {value:?}")]
    BadAttribute { attr: &'static str, value: String },
    #[error("m-line {0} has no a=mid (JSEP requires one)")]
    MissingMid(usize),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("Jingle XML: {0}")]
    Xml(String),
    #[error("<{element}/> lacks '{attr}'")]
    MissingAttribute {
        element: &'static str,
        attr: &'static str,
    },
    #[error("the session holds values Jingle cannot carry unchanged (see the crate doc)")]
    Unrepresentable,
    #[error("a Jingle sid must be 1 to 128 printable ASCII characters")]
    BadSid,
    #[error("<{element}/>: bad {why}")]
    BadElement {
        element: &'static str,
        why: &'static str,
    },
}

/// Whose description an SDP or a Jingle element is: the session's initiator (the
/// offerer of `session-initiate`) or its responder (`session-accept`). Jingle's
/// `senders` are roles, SDP's directions are the writer's, so the mapping needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Initiator,
    Responder,
}

impl Side {
    /// The side an action's description belongs to, for the two that say it.
    pub fn of_action(action: &Action) -> Option<Side> {
        match action {
            Action::SessionInitiate => Some(Side::Initiator),
            Action::SessionAccept => Some(Side::Responder),
            _ => None,
        }
    }
}

/// What a Jingle element needs beyond the SDP.
#[derive(Debug, Clone)]
pub struct JingleParams {
    pub action: Action,
    pub sid: String,
    /// Whose SDP this is.
    pub side: Side,
    pub initiator: Option<Jid>,
    pub responder: Option<Jid>,
}

/// A browser's SDP as a Jingle element (`session-initiate`, `session-accept`, ...).
pub fn sdp_to_jingle(sdp: &Sdp, params: &JingleParams) -> Result<Jingle, MapError> {
    session_to_jingle(&session_from_sdp(sdp)?, params)
}

/// The SDP a browser needs for a Jingle element written by `side`. The `o=` id is
/// derived from the Jingle sid, so every description of one session shares it.
pub fn jingle_to_sdp(jingle: &Jingle, side: Side) -> Result<Sdp, MapError> {
    let session = jingle_to_session(jingle, side)?;
    Ok(session_to_sdp(&session, session_number(&jingle.sid.0)))
}

/// A Jingle sid as this crate writes it: 1 to 128 printable ASCII characters (XEP-0166
/// leaves the form to the initiator; anything else could not be written as XML).
pub(crate) fn checked_sid(sid: &str) -> Result<String, MapError> {
    if text::is_token(sid) && sid.len() <= 128 {
        Ok(sid.to_string())
    } else {
        Err(MapError::BadSid)
    }
}

/// A stable 62-bit number for the `o=` line (FNV-1a of the sid).
fn session_number(sid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sid.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h >> 2
}

/// The `<jingle/>` element as XML text (for an IQ payload).
pub fn jingle_to_xml(jingle: &Jingle) -> String {
    String::from(&Element::from(jingle.clone()))
}

/// Parses a `<jingle/>` element. Unlike `Jingle::try_from`, ICE-UDP transports are kept
/// whole (as `Transport::Unknown`), because xmpp-parsers' own type drops `tcptype` and
/// XEP-0343's `<sctpmap/>`; [`jingle_to_sdp`] reads either form.
pub fn parse_jingle(element: &Element) -> Result<Jingle, MapError> {
    if !element.is("jingle", NS_JINGLE) {
        return Err(MapError::Xml(
            "not a <jingle xmlns='urn:xmpp:jingle:1'/> element".into(),
        ));
    }
    let mut stripped = element.clone();
    let mut transports = Vec::new();
    for content in stripped
        .children_mut()
        .filter(|c| c.is("content", NS_JINGLE))
    {
        let name = content.attr("name").map(str::to_string);
        let raw = content.remove_child("transport", NS_ICE_UDP);
        if content.children().any(|c| c.is("transport", NS_ICE_UDP)) {
            return Err(MapError::Xml(
                "a content with two ICE-UDP transports".into(),
            ));
        }
        transports.push((name, raw));
    }
    let mut jingle = Jingle::try_from(stripped).map_err(|e| MapError::Xml(e.to_string()))?;
    if jingle.contents.len() != transports.len() {
        return Err(MapError::Xml("contents changed while parsing".into()));
    }
    for (content, (name, raw)) in jingle.contents.iter_mut().zip(transports) {
        if name.as_deref() != Some(content.name.0.as_str()) {
            return Err(MapError::Xml("contents changed while parsing".into()));
        }
        if let Some(raw) = raw {
            content.transport = Some(Transport::Unknown(raw));
        }
    }
    Ok(jingle)
}

/// [`parse_jingle`] from XML text.
pub fn parse_jingle_xml(xml: &str) -> Result<Jingle, MapError> {
    if xml.len() > MAX_XML_BYTES {
        return Err(MapError::TooLarge("Jingle XML"));
    }
    let element: Element = xml
        .parse()
        .map_err(|e: xmpp_parsers::minidom::Error| MapError::Xml(e.to_string()))?;
    parse_jingle(&element)
}
