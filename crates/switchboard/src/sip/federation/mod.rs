//! SIP federation: direct calls between people of two Switchboard servers (`ada@a.test`
//! calls `bob@b.test`) over SIP, with the browsers' WebRTC SDP carried unchanged and no
//! media gateway on the path: media goes browser to browser, DTLS-SRTP end to end.
//! [`SipFederation`] is the handle the call book's glue drives, in the shape of
//! `switchboard_xmpp::driver::XmppFederation`; it runs on the gateway's own SIP agent
//! (its sockets, transactions, dialogs and stream connections), see `calls.rs`.
//!
//! ```text
//! caller (a.test)                              callee (b.test)
//! place("ada", "bob@b.test", offer)
//!    -- INVITE sip:bob@b.test (offer) ------->  Incoming{from "ada@a.test", to "bob", offer}
//! Ringing  <- 180 Ringing -------------------   (sent at once)
//!                                               accept() (nothing to send)
//! Accepted{answer} <- 200 OK (answer) -------   answer(sdp)
//!    -- ACK --------------------------------->
//! hangup() -- BYE --------------------------->  Ended{HungUp}
//! ```
//!
//! Before the answer the callee's `decline`/`busy`/`unknown` answer 603/486/404, the
//! caller's `hangup` is a CANCEL (`Ended{Cancelled}` at the callee). As in XMPP, what the
//! app does itself ends the call without an event; every other end is one `Ended`.
//!
//! **Which INVITEs are federation calls** (the rule docs/sip.md states): while a consumer
//! holds the events receiver, an INVITE whose Request-URI host is this server's call
//! domain (`--call-domain`) and whose SDP is a WebRTC offer ([`is_webrtc_offer`]) is one.
//! Every other INVITE, and every INVITE while nobody consumes the events, goes to the
//! rooms as before.
//!
//! There is no trickle ICE over SIP: the SDP handed to `place`/`answer` holds every
//! candidate already (gathering complete). An SDP is only taken when SIP carries it byte
//! for byte (line ends aside), so what the far browser gets is what this one wrote.

mod calls;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_proxy;

pub(super) use calls::{call_of, FederationCalls};

use crate::config::sip::{default_port, FederationPeer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_calls::Address;
use switchboard_sip::sdp::SessionDescription;
use switchboard_sip::transaction::Transport;
use switchboard_sip::ua::{EndReason as UaEndReason, EndedBy};
use tokio::sync::{mpsc, oneshot};

/// Why a federated call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// 603 Decline.
    Declined,
    /// 486 Busy Here, 600 Busy Everywhere.
    Busy,
    /// No such user, not signed in, or their server cannot be reached (404, 480, 410,
    /// 484, 604, 503, a connection that could not be made).
    Unreachable,
    /// The caller gave up before an answer (CANCEL, 487).
    Cancelled,
    /// A BYE after the answer.
    HungUp,
    /// Nobody answered in time, or the peer stopped answering (408, timers).
    Timeout,
    /// Anything else, in words (the SIP status and reason).
    Failed(String),
}

impl EndReason {
    /// From how the SIP call ended.
    pub fn from_sip(reason: &UaEndReason) -> EndReason {
        match (reason.status, reason.by) {
            (Some(603), _) => EndReason::Declined,
            (Some(486 | 600), _) => EndReason::Busy,
            (Some(404 | 410 | 480 | 484 | 503 | 604), _) => EndReason::Unreachable,
            (Some(487), _) => EndReason::Cancelled,
            (Some(408), _) | (None, EndedBy::Timeout) => EndReason::Timeout,
            (None, EndedBy::Remote) => EndReason::HungUp,
            (Some(status), _) => EndReason::Failed(format!("{status} {}", reason.reason)),
            (None, _) => EndReason::Failed(reason.reason.clone()),
        }
    }
}

/// What happened, for the call book's glue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederationEvent {
    /// `from` (`ada@a.test`) calls the local user `to` (`bob`) with the caller's browser
    /// offer: ring them, then `accept` + `answer`, or `decline`, `busy`, `unknown`. The
    /// caller already hears `180 Ringing`.
    Incoming {
        id: String,
        from: String,
        from_name: Option<String>,
        to: String,
        sdp_offer: String,
    },
    /// The callee rings (180 or 183).
    Ringing {
        id: String,
    },
    /// The callee answered: the callee browser's answer, as it wrote it.
    Accepted {
        id: String,
        sdp_answer: String,
    },
    Ended {
        id: String,
        reason: EndReason,
    },
}

/// Why a request of the glue was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    #[error("no call {0:?}")]
    UnknownCall(String),
    #[error("call {id:?}: {action} is not possible now")]
    WrongState { id: String, action: &'static str },
    #[error("{0}")]
    Address(String),
    #[error("{0:?} is this server's own call domain: not a federated call")]
    Local(String),
    #[error("the SDP cannot go over SIP unchanged: {0}")]
    Sdp(String),
    #[error("cannot find the SIP service of {0}")]
    Unresolved(String),
    /// The gateway refuses new calls (draining, `--sip-max-calls`) or the SIP stack
    /// refused the request.
    #[error("refused: {0}")]
    Refused(String),
    #[error("the SIP gateway has stopped")]
    Stopped,
}

type Reply<T> = oneshot::Sender<Result<T, FederationError>>;

/// How the callee refuses a call before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Decline,
    Busy,
    Unknown,
}

impl Refusal {
    fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::Decline => (603, "Decline"),
            Refusal::Busy => (486, "Busy Here"),
            Refusal::Unknown => (404, "Not Found"),
        }
    }

    fn action(self) -> &'static str {
        match self {
            Refusal::Decline => "decline",
            Refusal::Busy => "busy",
            Refusal::Unknown => "unknown",
        }
    }
}

/// A call placed: everything the agent needs, resolved and checked by the handle.
pub(super) struct Place {
    pub from: Address,
    /// The caller's display name, for the From header.
    pub name: Option<String>,
    pub to: Address,
    pub offer: SessionDescription,
    pub dest: SocketAddr,
    pub transport: Transport,
    pub tls_name: String,
}

/// Who takes the events of federated calls (None: nobody, INVITEs go to the rooms). A
/// watch, not a command: once [`SipService::federation`](crate::sip::SipService::federation)
/// returns, the very next INVITE sees the consumer.
pub(super) type Consumer = tokio::sync::watch::Sender<Option<mpsc::Sender<FederationEvent>>>;

/// What the handle asks of the SIP agent.
pub(super) enum Command {
    Place(Box<Place>, Reply<String>),
    Accept(String, Reply<()>),
    Answer(String, Box<SessionDescription>, Reply<()>),
    Refuse(String, Refusal, Reply<()>),
    Hangup(String, Reply<()>),
}

/// How long the name of a domain without `--sip-federation` entry may take to resolve.
const LOOKUP_WAIT: Duration = Duration::from_secs(5);

/// The handle on the SIP agent's federation calls (see the module doc). Cheap to clone;
/// the calls live in the agent, so dropping handles ends nothing.
#[derive(Clone)]
pub struct SipFederation {
    commands: mpsc::UnboundedSender<Command>,
    /// `--call-domain`: our users' domain.
    domain: String,
    peers: Arc<[FederationPeer]>,
}

impl SipFederation {
    /// Attaches a consumer: from now on, federation INVITEs come out of the returned
    /// receiver (dropping it gives them back to the rooms).
    pub(super) fn attach(
        commands: mpsc::UnboundedSender<Command>,
        consumer: &Consumer,
        domain: String,
        peers: Arc<[FederationPeer]>,
    ) -> (SipFederation, mpsc::Receiver<FederationEvent>) {
        let (events, rx) = mpsc::channel(1024);
        consumer.send_replace(Some(events));
        (
            SipFederation {
                commands,
                domain,
                peers,
            },
            rx,
        )
    }

    /// Calls `to` (`bob@b.test`) from the local user `from_user` (`ada`) with the
    /// browser's offer (every candidate in it); returns the call's id.
    // The glue always names the caller; the tests mostly do not.
    #[cfg(test)]
    pub async fn place(
        &self,
        from_user: &str,
        to: &str,
        sdp_offer: &str,
    ) -> Result<String, FederationError> {
        self.place_named(from_user, None, to, sdp_offer).await
    }

    /// Calls `to` (`bob@b.test`) from the local user `from_user` (`ada`), named `name`
    /// in the From header, with the browser's offer (every candidate in it); returns the
    /// call's id.
    pub async fn place_named(
        &self,
        from_user: &str,
        name: Option<&str>,
        to: &str,
        sdp_offer: &str,
    ) -> Result<String, FederationError> {
        let from = Address::parse(from_user, &self.domain)
            .map_err(|e| FederationError::Address(e.to_string()))?;
        if from.domain != self.domain {
            return Err(FederationError::Address(format!(
                "{from} is not a user of {}",
                self.domain
            )));
        }
        let to_text = to.strip_prefix("sip:").unwrap_or(to);
        let to = Address::parse(to_text, &self.domain)
            .map_err(|e| FederationError::Address(e.to_string()))?;
        if to.domain == self.domain {
            return Err(FederationError::Local(to.domain));
        }
        let offer = carried_sdp(sdp_offer)?;
        if !is_webrtc_offer(&offer) {
            return Err(FederationError::Sdp(
                "not a WebRTC offer (UDP/TLS/RTP/SAVPF with a=fingerprint and ICE)".into(),
            ));
        }
        let (dest, transport, tls_name) = self.next_hop(&to.domain).await?;
        let place = Place {
            from,
            name: name.map(str::to_string),
            to,
            offer,
            dest,
            transport,
            tls_name,
        };
        self.ask(|r| Command::Place(Box::new(place), r)).await
    }

    /// The callee's user takes the call; the answer follows with [`Self::answer`].
    pub async fn accept(&self, id: &str) -> Result<(), FederationError> {
        let id = id.to_string();
        self.ask(|r| Command::Accept(id, r)).await
    }

    /// `200 OK` with the callee browser's answer (every candidate in it).
    pub async fn answer(&self, id: &str, sdp_answer: &str) -> Result<(), FederationError> {
        let sdp = carried_sdp(sdp_answer)?;
        let id = id.to_string();
        self.ask(|r| Command::Answer(id, Box::new(sdp), r)).await
    }

    /// `603 Decline`.
    pub async fn decline(&self, id: &str) -> Result<(), FederationError> {
        self.refuse(id, Refusal::Decline).await
    }

    /// `486 Busy Here`.
    pub async fn busy(&self, id: &str) -> Result<(), FederationError> {
        self.refuse(id, Refusal::Busy).await
    }

    /// The called user has no (signed-in) line here: `404 Not Found`.
    pub async fn unknown(&self, id: &str) -> Result<(), FederationError> {
        self.refuse(id, Refusal::Unknown).await
    }

    /// CANCEL before the answer (the callee's own hangup while ringing declines), BYE
    /// after it.
    pub async fn hangup(&self, id: &str) -> Result<(), FederationError> {
        let id = id.to_string();
        self.ask(|r| Command::Hangup(id, r)).await
    }

    async fn refuse(&self, id: &str, how: Refusal) -> Result<(), FederationError> {
        let id = id.to_string();
        self.ask(|r| Command::Refuse(id, how, r)).await
    }

    /// The next hop of `domain`: its `--sip-federation` entry, else the domain itself.
    async fn next_hop(
        &self,
        domain: &str,
    ) -> Result<(SocketAddr, Transport, String), FederationError> {
        if let Some(p) = self.peers.iter().find(|p| p.domain == domain) {
            return Ok((p.dest, p.transport, p.tls_name.clone()));
        }
        let port = default_port(Transport::Udp);
        let found = tokio::time::timeout(LOOKUP_WAIT, tokio::net::lookup_host((domain, port)))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|mut addrs| addrs.next());
        match found {
            Some(addr) => Ok((addr, Transport::Udp, domain.to_string())),
            None => Err(FederationError::Unresolved(domain.to_string())),
        }
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, FederationError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| FederationError::Stopped)?;
        answer.await.map_err(|_| FederationError::Stopped)?
    }
}

/// The routing rule's test of the SDP: a WebRTC offer has an RTP stream over DTLS-SRTP
/// with feedback (`UDP/TLS/RTP/SAVPF`, as browsers write it) with a fingerprint and ICE
/// credentials (at the stream or the session level). A phone's DTLS-SRTP offer without
/// ICE, or SDES/plain RTP, is not one.
pub fn is_webrtc_offer(sdp: &SessionDescription) -> bool {
    sdp.media.iter().any(|m| {
        !m.is_rejected()
            && m.proto.eq_ignore_ascii_case("UDP/TLS/RTP/SAVPF")
            && ["fingerprint", "ice-ufrag", "ice-pwd"]
                .iter()
                .all(|a| sdp.media_or_session_attr(m, a).is_some())
    })
}

/// `text` parsed, if SIP carries it byte for byte: the SDP writer writes back what it
/// read, but only in the canonical shape (CRLF, one space between fields); anything else
/// would reach the far browser changed, so it is refused here with the first line that
/// would change.
fn carried_sdp(text: &str) -> Result<SessionDescription, FederationError> {
    let sdp = SessionDescription::parse(text.as_bytes())
        .map_err(|e| FederationError::Sdp(e.to_string()))?;
    let written = sdp.to_string_crlf();
    let lines = |t: &str| -> Vec<String> {
        t.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let (ours, theirs) = (lines(&written), lines(text));
    if ours != theirs {
        let at = ours
            .iter()
            .zip(&theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        let line = theirs.get(at).map_or("(missing)", String::as_str);
        return Err(FederationError::Sdp(format!(
            "line {} ({line:?}) would be rewritten",
            at + 1
        )));
    }
    Ok(sdp)
}

/// `user@host` of a From URI (`sip:ada@a.test;transport=tcp` → `ada@a.test`), lower case.
fn address_of(uri: &str) -> Option<String> {
    let parsed = switchboard_sip::uri::Uri::parse(uri).ok()?;
    let user = parsed.user_unescaped()?.to_ascii_lowercase();
    let host = parsed.host.to_string().to_ascii_lowercase();
    (!user.is_empty() && !host.is_empty()).then(|| format!("{user}@{host}"))
}
