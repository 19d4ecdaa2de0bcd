//! Small helpers for the elements this crate writes and reads with minidom directly (the
//! ICE-UDP transport, its candidates, XEP-0343's `<sctpmap/>`): xmpp-parsers 0.23 keeps
//! the ICE-UDP transport's fields private and drops what it does not know (`tcptype`,
//! `<sctpmap/>`), so those are handled here.

use std::str::FromStr;

use xmpp_parsers::minidom::rxml::{Namespace, NcName};
use xmpp_parsers::minidom::Element;

use crate::MapError;

/// An element under construction: `el("candidate", NS).with("port", "9").build()`.
pub struct El(Element);

pub fn el(name: &str, ns: &str) -> El {
    El(Element::bare(name, ns))
}

impl El {
    /// Sets an attribute. The names are this crate's own literals (all valid XML names,
    /// exercised by the round-trip tests), so an invalid one is skipped rather than
    /// turned into a runtime error path.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> El {
        if let Ok(name) = NcName::try_from(name) {
            self.0.set_attr(Namespace::NONE, name, value.into());
        }
        self
    }

    pub fn with_opt(self, name: &str, value: Option<impl Into<String>>) -> El {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }

    pub fn child(mut self, child: Element) -> El {
        self.0.append_child(child);
        self
    }

    pub fn build(self) -> Element {
        self.0
    }
}

pub fn require_attr<'a>(e: &'a Element, name: &'static str) -> Result<&'a str, MapError> {
    e.attr(name).ok_or(MapError::MissingAttribute {
        element: leak_name(e),
        attr: name,
    })
}

/// An optional attribute parsed as `T`; present but unparseable is an error.
pub fn attr_parse<T: FromStr>(e: &Element, name: &'static str) -> Result<Option<T>, MapError> {
    match e.attr(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| MapError::BadElement {
                element: leak_name(e),
                why: name,
            }),
    }
}

/// The element names this crate reads, as static strings for its errors.
fn leak_name(e: &Element) -> &'static str {
    match e.name() {
        "candidate" => "candidate",
        "transport" => "transport",
        "sctpmap" => "sctpmap",
        "fingerprint" => "fingerprint",
        "content" => "content",
        "jingle" => "jingle",
        "description" => "description",
        _ => "element",
    }
}
