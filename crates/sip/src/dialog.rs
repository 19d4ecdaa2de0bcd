//! Dialogs (RFC 3261 §12): the state two user agents share for one call, from which every
//! request inside the call is built (ACK for a 2xx, BYE, re-INVITE, UPDATE, INFO, PRACK)
//! and against which every request that arrives is checked.
//!
//! A dialog is made by the UAC from a response with a To tag ([`Dialog::uac`]) or by the
//! UAS from the request it answers ([`Dialog::uas`]). It keeps the route set (the
//! Record-Route list, reversed on the UAC side), the remote target (the peer's Contact,
//! refreshed by re-INVITE/UPDATE), the tags, and the local and remote CSeq numbers.
//! Requests are built for loose routing (RFC 3261 §12.2.1.1: the Request-URI is the remote
//! target and the route set goes in Route) and, when the first hop is a strict router (no
//! `lr`), the old way (the Request-URI is that hop, the remote target goes last in Route).
//! The caller adds the top Via (it knows its transport and branch) and sends to
//! [`Dialog::next_hop`]. Sans-IO and independent of the transaction layer: it reads and
//! writes [`Message`]s only.
//!
//! Session timers (RFC 4028) are in [`SessionTimer`]; 100rel (RFC 3262) numbering in
//! [`dialog::reliable`](crate::dialog::reliable).

pub mod reliable;
mod timer;

pub use timer::{negotiate, Negotiation, SessionTimer, TimerAction};

use thiserror::Error;

use crate::message::{Contact, Message, Method, ParseError};
use crate::uri::{NameAddr, Uri};

/// Why a message could not make or join a dialog.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    /// A header the dialog needs is missing or malformed.
    #[error("malformed {0}")]
    Malformed(#[from] ParseError),
    /// The response or request has no tag where a dialog needs one.
    #[error("no tag in {0}")]
    MissingTag(&'static str),
    /// No Contact (or `*`) where the remote target must come from.
    #[error("no usable Contact")]
    NoContact,
    /// A request whose CSeq is lower than the last one from the peer (RFC 3261 §12.2.2:
    /// answer 500).
    #[error("CSeq {got} is lower than {last}")]
    CSeqOutOfOrder {
        /// The CSeq number received.
        got: u32,
        /// The last one seen.
        last: u32,
    },
    /// The message belongs to another dialog.
    #[error("not this dialog")]
    Mismatch,
    /// Made from a response or request that cannot make one.
    #[error("cannot make a dialog from this message")]
    NotADialogMessage,
}

/// Early (after a 1xx with a To tag) or confirmed (after a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// Identifies a dialog: Call-ID and both tags, from our point of view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog a request that arrived belongs to (its To tag is ours). None without a To tag.
    pub fn of_incoming_request(m: &Message<'_>) -> Option<DialogId> {
        let h = m.headers();
        Some(DialogId {
            call_id: h.call_id().ok()?.to_owned(),
            local_tag: h.to().ok()?.tag()?.to_owned(),
            remote_tag: h.from().ok()?.tag()?.to_owned(),
        })
    }

    /// The dialog a response that arrived belongs to (its From tag is ours).
    pub fn of_incoming_response(m: &Message<'_>) -> Option<DialogId> {
        let h = m.headers();
        Some(DialogId {
            call_id: h.call_id().ok()?.to_owned(),
            local_tag: h.from().ok()?.tag()?.to_owned(),
            remote_tag: h.to().ok()?.tag()?.to_owned(),
        })
    }
}

/// One dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Our address as the From of our requests (without tag).
    pub local_uri: NameAddr<'static>,
    /// The peer's address as the To of our requests (without tag).
    pub remote_uri: NameAddr<'static>,
    /// Where in-dialog requests go (the peer's Contact).
    pub remote_target: Uri<'static>,
    /// Our Contact in the requests we build.
    pub local_contact: NameAddr<'static>,
    /// In the order requests traverse it.
    pub route_set: Vec<NameAddr<'static>>,
    /// CSeq of our last request (the next one uses +1).
    pub local_seq: u32,
    /// CSeq of the peer's last request.
    pub remote_seq: Option<u32>,
    /// Over sips / TLS end to end.
    pub secure: bool,
}

fn strip_tag(mut a: NameAddr<'static>) -> NameAddr<'static> {
    a.params.0.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
    a
}

fn first_contact(m: &Message<'_>) -> Result<Uri<'static>, DialogError> {
    m.headers()
        .contacts()?
        .into_iter()
        .find_map(|c| match c {
            Contact::Addr(a) => Some(a.uri.into_owned()),
            Contact::Star => None,
        })
        .ok_or(DialogError::NoContact)
}

fn status(m: &Message<'_>) -> Option<u16> {
    match m {
        Message::Response(r) => Some(r.status),
        Message::Request(_) => None,
    }
}

impl Dialog {
    /// The UAC's dialog, from the request we sent (INVITE, or SUBSCRIBE/REFER) and a 1xx
    /// (with a To tag: early) or 2xx (confirmed) response to it (RFC 3261 §12.1.2).
    pub fn uac(request: &Message<'_>, response: &Message<'_>) -> Result<Dialog, DialogError> {
        let code = status(response).ok_or(DialogError::NotADialogMessage)?;
        if !(101..300).contains(&code) {
            return Err(DialogError::NotADialogMessage);
        }
        let rq = request.headers();
        let rs = response.headers();
        let from = rq.from()?.into_owned();
        let to = rs.to()?.into_owned();
        let local_tag = from
            .tag()
            .ok_or(DialogError::MissingTag("From"))?
            .to_owned();
        let remote_tag = to.tag().ok_or(DialogError::MissingTag("To"))?.to_owned();
        let mut route_set: Vec<NameAddr<'static>> = rs
            .record_route()?
            .into_iter()
            .map(NameAddr::into_owned)
            .collect();
        route_set.reverse();
        let local_contact = rq
            .contacts()?
            .into_iter()
            .find_map(|c| match c {
                Contact::Addr(a) => Some(a.into_owned()),
                Contact::Star => None,
            })
            .ok_or(DialogError::NoContact)?;
        let secure = matches!(request, Message::Request(r) if r.uri.is_secure());
        Ok(Dialog {
            id: DialogId {
                call_id: rq.call_id()?.to_owned(),
                local_tag,
                remote_tag,
            },
            state: if code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local_uri: strip_tag(from),
            remote_uri: strip_tag(to),
            remote_target: first_contact(response)?,
            local_contact,
            route_set,
            local_seq: rq.cseq()?.seq,
            remote_seq: None,
            secure,
        })
    }

    /// The UAS's dialog, from the request it answers with a 1xx/2xx carrying `local_tag` in
    /// its To and `local_contact` as its Contact (RFC 3261 §12.1.1). `local_seq` is where our
    /// own CSeq numbering starts (any number; RFC 3261 suggests a random one below 2^31).
    pub fn uas(
        request: &Message<'_>,
        local_tag: &str,
        local_contact: NameAddr<'static>,
        local_seq: u32,
        confirmed: bool,
    ) -> Result<Dialog, DialogError> {
        let Message::Request(r) = request else {
            return Err(DialogError::NotADialogMessage);
        };
        let h = &r.headers;
        let from = h.from()?.into_owned();
        let to = h.to()?.into_owned();
        let remote_tag = from
            .tag()
            .ok_or(DialogError::MissingTag("From"))?
            .to_owned();
        let route_set = h
            .record_route()?
            .into_iter()
            .map(NameAddr::into_owned)
            .collect();
        Ok(Dialog {
            id: DialogId {
                call_id: h.call_id()?.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            state: if confirmed {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_uri: strip_tag(to),
            remote_uri: strip_tag(from),
            remote_target: first_contact(request)?,
            local_contact,
            route_set,
            local_seq,
            remote_seq: Some(h.cseq()?.seq),
            secure: r.uri.is_secure(),
        })
    }

    /// Whether the first hop is a strict router (an old proxy without `lr`).
    fn strict_first_hop(&self) -> bool {
        self.route_set
            .first()
            .is_some_and(|r| !r.uri.params.has("lr"))
    }

    /// Where to send an in-dialog request: the first route's URI, else the remote target.
    /// (The caller resolves it: host and port, `transport` and `maddr` params.)
    pub fn next_hop(&self) -> &Uri<'static> {
        self.route_set
            .first()
            .map_or(&self.remote_target, |r| &r.uri)
    }

    /// A new request in this dialog with the next CSeq (§12.2.1.1). `via` is the top Via
    /// value (`SIP/2.0/UDP host:port;branch=z9hG4bK…`).
    pub fn request(&mut self, method: Method<'static>, via: &str) -> Message<'static> {
        self.local_seq = self.local_seq.wrapping_add(1);
        self.build(method, self.local_seq, via)
    }

    /// The ACK for a 2xx to the INVITE whose CSeq was `invite_seq` (RFC 3261 §13.2.2.4:
    /// same CSeq number, method ACK, a new branch).
    pub fn ack(&self, invite_seq: u32, via: &str) -> Message<'static> {
        self.build(Method::Ack, invite_seq, via)
    }

    fn build(&self, method: Method<'static>, seq: u32, via: &str) -> Message<'static> {
        let (request_uri, routes): (Uri<'static>, Vec<String>) = if self.strict_first_hop() {
            // Strict routing: the first hop in the Request-URI (without parameters not
            // allowed there), the rest and then the remote target as Route.
            let mut first = self.route_set[0].uri.clone();
            first
                .params
                .0
                .retain(|(n, _)| !n.eq_ignore_ascii_case("method"));
            let mut routes: Vec<String> = self.route_set[1..]
                .iter()
                .map(ToString::to_string)
                .collect();
            routes.push(format!("<{}>", self.remote_target));
            (first, routes)
        } else {
            (
                self.remote_target.clone(),
                self.route_set.iter().map(ToString::to_string).collect(),
            )
        };
        let mut m = Message::request(method.clone(), request_uri);
        let h = m.headers_mut();
        h.push("Via", via.to_owned());
        for r in routes {
            h.push("Route", r);
        }
        h.push("Max-Forwards", "70");
        h.push(
            "From",
            format!("{};tag={}", self.local_uri, self.id.local_tag),
        );
        h.push(
            "To",
            format!("{};tag={}", self.remote_uri, self.id.remote_tag),
        );
        h.push("Call-ID", self.id.call_id.clone());
        h.push("CSeq", format!("{seq} {method}"));
        if !matches!(method, Method::Ack | Method::Bye | Method::Cancel) {
            h.push("Contact", self.local_contact.to_string());
        }
        m.into_owned()
    }

    /// A request from the peer in this dialog (§12.2.2): its CSeq must not go back (else
    /// answer 500); a target refresh (re-INVITE, UPDATE) with a Contact moves the remote
    /// target.
    pub fn on_request(&mut self, m: &Message<'_>) -> Result<(), DialogError> {
        let Message::Request(r) = m else {
            return Err(DialogError::NotADialogMessage);
        };
        if DialogId::of_incoming_request(m).as_ref() != Some(&self.id) {
            return Err(DialogError::Mismatch);
        }
        let cseq = r.headers.cseq()?;
        // ACK and CANCEL carry the CSeq of what they acknowledge or cancel.
        if !matches!(r.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                if cseq.seq < last {
                    return Err(DialogError::CSeqOutOfOrder {
                        got: cseq.seq,
                        last,
                    });
                }
            }
            self.remote_seq = Some(cseq.seq);
        }
        if matches!(r.method, Method::Invite | Method::Update) {
            if let Ok(target) = first_contact(m) {
                self.remote_target = target;
            }
        }
        Ok(())
    }

    /// A response to one of our requests in this dialog: a 2xx confirms an early dialog,
    /// and a 2xx to a target refresh (re-INVITE, UPDATE) with a Contact moves the target.
    pub fn on_response(&mut self, m: &Message<'_>) -> Result<(), DialogError> {
        let Message::Response(r) = m else {
            return Err(DialogError::NotADialogMessage);
        };
        if DialogId::of_incoming_response(m).as_ref() != Some(&self.id) {
            return Err(DialogError::Mismatch);
        }
        if (200..300).contains(&r.status) {
            self.state = DialogState::Confirmed;
            let cseq = r.headers.cseq()?;
            if matches!(cseq.method, Method::Invite | Method::Update) {
                if let Ok(target) = first_contact(m) {
                    self.remote_target = target;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
