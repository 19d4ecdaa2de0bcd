//! The stanzas of a call, written and read with minidom directly: XEP-0353 Jingle Message
//! Initiation (xmpp-parsers 0.23's `JingleMI` has neither `<ringing/>`, `<finish/>` nor
//! reasons), IQ replies and stanza errors (RFC 6120 §8.3). Everything read here comes from
//! another server, so reading is total: an element either reads or is `None`.

use xmpp_parsers::minidom::Element;

use crate::model::MediaKind;
use crate::xml::el;
use crate::{NS_DATACHANNEL, NS_JINGLE};

/// The stream namespace of an XEP-0114 component.
pub const NS_COMPONENT: &str = "jabber:component:accept";
pub const NS_JMI: &str = "urn:xmpp:jingle-message:0";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";
pub const NS_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// An XEP-0353 message payload. `id` is the Jingle sid the session will have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jmi {
    Propose { id: String, media: Vec<MediaKind> },
    Ringing { id: String },
    Proceed { id: String },
    Accept { id: String },
    Reject { id: String, reason: Option<String> },
    Retract { id: String, reason: Option<String> },
    Finish { id: String, reason: Option<String> },
}

impl Jmi {
    pub fn id(&self) -> &str {
        match self {
            Jmi::Propose { id, .. }
            | Jmi::Ringing { id }
            | Jmi::Proceed { id }
            | Jmi::Accept { id }
            | Jmi::Reject { id, .. }
            | Jmi::Retract { id, .. }
            | Jmi::Finish { id, .. } => id,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Jmi::Propose { .. } => "propose",
            Jmi::Ringing { .. } => "ringing",
            Jmi::Proceed { .. } => "proceed",
            Jmi::Accept { .. } => "accept",
            Jmi::Reject { .. } => "reject",
            Jmi::Retract { .. } => "retract",
            Jmi::Finish { .. } => "finish",
        }
    }

    pub fn to_element(&self) -> Element {
        let mut e = el(self.name(), NS_JMI).with("id", self.id());
        match self {
            Jmi::Propose { media, .. } => {
                for m in media {
                    e = e.child(match m {
                        MediaKind::Data => el("description", NS_DATACHANNEL).build(),
                        _ => el("description", NS_RTP).with("media", m.as_str()).build(),
                    });
                }
            }
            Jmi::Reject { reason, .. }
            | Jmi::Retract { reason, .. }
            | Jmi::Finish { reason, .. } => {
                if let Some(r) = reason {
                    e = e.child(reason_element(r));
                }
            }
            _ => {}
        }
        e.build()
    }

    /// The XEP-0353 payload of a message, if it has one.
    pub fn from_message(message: &Element) -> Option<Jmi> {
        let p = message.children().find(|c| c.ns() == NS_JMI)?;
        let id = p.attr("id")?.to_string();
        let reason = || reason_of(p);
        Some(match p.name() {
            "propose" => Jmi::Propose {
                id,
                media: p
                    .children()
                    .filter_map(|d| match (d.name(), d.ns().as_str(), d.attr("media")) {
                        ("description", NS_RTP, Some("audio")) => Some(MediaKind::Audio),
                        ("description", NS_RTP, Some("video")) => Some(MediaKind::Video),
                        ("description", NS_DATACHANNEL, _) => Some(MediaKind::Data),
                        _ => None,
                    })
                    .take(8)
                    .collect(),
            },
            "ringing" => Jmi::Ringing { id },
            "proceed" => Jmi::Proceed { id },
            "accept" => Jmi::Accept { id },
            "reject" => Jmi::Reject {
                id,
                reason: reason(),
            },
            "retract" => Jmi::Retract {
                id,
                reason: reason(),
            },
            "finish" => Jmi::Finish {
                id,
                reason: reason(),
            },
            _ => return None,
        })
    }
}

/// `<reason xmlns='urn:xmpp:jingle:1'><{name}/></reason>` (XEP-0166 §7.4).
pub fn reason_element(name: &str) -> Element {
    el("reason", NS_JINGLE)
        .child(el(name, NS_JINGLE).build())
        .build()
}

/// The condition name inside a `<reason/>` child of `parent` (Jingle or XEP-0353).
pub fn reason_of(parent: &Element) -> Option<String> {
    let reason = parent.get_child("reason", NS_JINGLE)?;
    reason
        .children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().chars().take(64).collect())
}

/// A stanza with its routing attributes.
pub fn stanza(kind: &str, type_: Option<&str>, from: &str, to: &str, id: &str) -> StanzaBuilder {
    StanzaBuilder(
        el(kind, NS_COMPONENT)
            .with_opt("type", type_)
            .with("from", from)
            .with("to", to)
            .with("id", id),
    )
}

/// A stanza under construction (a thin wrapper so callers add children in one line).
pub struct StanzaBuilder(crate::xml::El);

impl StanzaBuilder {
    pub fn child(self, child: Element) -> StanzaBuilder {
        StanzaBuilder(self.0.child(child))
    }
    pub fn build(self) -> Element {
        self.0.build()
    }
}

/// `<message type='chat'>` carrying an XEP-0353 payload (XEP-0353 §3: type chat, with
/// a store hint so servers with message archives keep the call log).
pub fn jmi_message(from: &str, to: &str, id: &str, jmi: &Jmi) -> Element {
    stanza("message", Some("chat"), from, to, id)
        .child(jmi.to_element())
        .child(el("store", "urn:xmpp:hints").build())
        .build()
}

/// The empty `result` for an IQ `set`/`get`.
pub fn iq_result(request: &Element) -> Element {
    reply(request, "iq", "result").build()
}

/// An error reply to a stanza (RFC 6120 §8.3): `type_` is `cancel`, `modify`, ...;
/// `extra` is an application condition such as Jingle's `<unknown-session/>`.
pub fn error_reply(
    request: &Element,
    type_: &str,
    condition: &str,
    extra: Option<Element>,
) -> Element {
    let mut error = el("error", NS_COMPONENT)
        .with("type", type_)
        .child(el(condition, NS_STANZAS).build());
    if let Some(extra) = extra {
        error = error.child(extra);
    }
    reply(request, request.name(), "error")
        .child(error.build())
        .build()
}

fn reply(request: &Element, kind: &str, type_: &str) -> StanzaBuilder {
    stanza(
        kind,
        Some(type_),
        request.attr("to").unwrap_or_default(),
        request.attr("from").unwrap_or_default(),
        request.attr("id").unwrap_or_default(),
    )
}

/// The defined condition of an error stanza (`item-not-found`, ...).
pub fn error_condition(stanza: &Element) -> Option<String> {
    let error = stanza.children().find(|c| c.name() == "error")?;
    error
        .children()
        .find(|c| c.ns() == NS_STANZAS && c.name() != "text")
        .map(|c| c.name().chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jmi_reads_back_what_it_writes() {
        let all = [
            Jmi::Propose {
                id: "s1".into(),
                media: vec![MediaKind::Audio, MediaKind::Video, MediaKind::Data],
            },
            Jmi::Ringing { id: "s1".into() },
            Jmi::Proceed { id: "s1".into() },
            Jmi::Accept { id: "s1".into() },
            Jmi::Reject {
                id: "s1".into(),
                reason: Some("busy".into()),
            },
            Jmi::Retract {
                id: "s1".into(),
                reason: None,
            },
            Jmi::Finish {
                id: "s1".into(),
                reason: Some("success".into()),
            },
        ];
        for jmi in all {
            let m = jmi_message("a@x/r", "b@y", "m1", &jmi);
            let text = String::from(&m);
            let back: Element = text.parse().unwrap();
            assert_eq!(Jmi::from_message(&back), Some(jmi), "{text}");
        }
    }

    #[test]
    fn error_replies_swap_addresses_and_name_the_condition() {
        let iq = stanza("iq", Some("set"), "a@x/r", "b@y/r", "i1").build();
        let err = error_reply(&iq, "cancel", "item-not-found", None);
        assert_eq!(err.attr("from"), Some("b@y/r"));
        assert_eq!(err.attr("to"), Some("a@x/r"));
        assert_eq!(err.attr("type"), Some("error"));
        assert_eq!(error_condition(&err).as_deref(), Some("item-not-found"));
        assert_eq!(iq_result(&iq).attr("id"), Some("i1"));
    }
}
