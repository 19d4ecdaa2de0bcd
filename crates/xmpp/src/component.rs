//! The XEP-0114 component stream, sans-IO: bytes from the XMPP server in, stanzas
//! (minidom elements) out, and the bytes to write back. The driver (`crate::driver`) owns
//! the socket.
//!
//! Why our own and not tokio-xmpp 6's `Component`: the handshake is four lines of
//! protocol (stream header, `<handshake>` with SHA-1 of the stream id and the secret, an
//! empty `<handshake/>` back), and doing it here keeps the stream sans-IO and testable
//! without sockets, lets us bound each stanza's size ourselves and keeps tokio-xmpp's
//! dependency tree (TLS, DNS resolver, its own reconnect logic; about 6 minutes of cold
//! build here) out of the server. The XML is parsed by the same crates xmpp-parsers
//! uses (rxml's streaming parser feeding minidom's tree builder), so stanzas come out as
//! the `Element`s the rest of this crate reads.
//!
//! Limits: one stanza may take at most [`MAX_STANZA_BYTES`] bytes (more than prosody's
//! s2s limit, so what prosody relays fits; a larger one, or XML that is not
//! well-formed, ends the stream with an error: the driver reconnects). Whitespace
//! keep-alives between stanzas are skipped.

use sha1::{Digest, Sha1};
use xmpp_parsers::minidom::rxml::error::EndOrError;
use xmpp_parsers::minidom::rxml::{Options, Parse, RawEvent, RawParser, WithOptions};
use xmpp_parsers::minidom::tree_builder::TreeBuilder;
use xmpp_parsers::minidom::Element;

use crate::stanza::NS_COMPONENT;

/// The largest stanza read (prosody 0.12's default `s2s_stanza_size_limit` is 512 KiB).
pub const MAX_STANZA_BYTES: usize = 1024 * 1024;

const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// Why the stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("XML from the server: {0}")]
    Xml(String),
    #[error("a stanza larger than {MAX_STANZA_BYTES} bytes")]
    TooLarge,
    #[error("the server sent a stream header without an id")]
    NoStreamId,
    #[error("stream error from the server: {0} (a wrong secret or domain gives not-authorized or host-unknown)")]
    Refused(String),
    #[error("the server closed the stream")]
    Closed,
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The handshake succeeded: stanzas may be sent.
    Ready,
    Stanza(Element),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHeader,
    AwaitHandshake,
    Ready,
    Ended,
}

/// One component stream (a new one for every connection).
pub struct ComponentStream {
    domain: String,
    secret: String,
    state: State,
    parser: RawParser,
    tree: TreeBuilder,
    /// Bytes consumed since the last stanza ended (the current stanza's size so far).
    stanza_bytes: usize,
    out: Vec<u8>,
}

impl ComponentStream {
    /// A stream for `domain` (e.g. `sb.a.test`) with the component's shared secret; the
    /// stream header is ready in [`Self::take_output`].
    pub fn new(domain: &str, secret: &str) -> ComponentStream {
        let options = Options {
            max_token_length: MAX_STANZA_BYTES,
            ..Default::default()
        };
        let mut stream = ComponentStream {
            domain: domain.to_string(),
            secret: secret.to_string(),
            state: State::AwaitHeader,
            parser: RawParser::with_options(options),
            tree: TreeBuilder::new(),
            stanza_bytes: 0,
            out: Vec::new(),
        };
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' \
             xmlns:stream='{NS_STREAMS}' to='{}'>",
            xml_escape(domain)
        );
        stream.out.extend_from_slice(header.as_bytes());
        stream
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Bytes to write to the server.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Queues a stanza (it is written as sent; stanzas written before the handshake
    /// ended would be refused by the server, so the driver waits for `Ready`).
    pub fn send(&mut self, stanza: &Element) {
        self.out.extend_from_slice(String::from(stanza).as_bytes());
    }

    /// Queues the end of the stream (a clean stop).
    pub fn close(&mut self) {
        self.out.extend_from_slice(b"</stream:stream>");
        self.state = State::Ended;
    }

    /// Bytes from the server. An error ends the stream (reconnect for a new one).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Vec<StreamEvent>, StreamError> {
        let mut events = Vec::new();
        if self.state == State::Ended {
            return Err(StreamError::Closed);
        }
        loop {
            let before = data.len();
            let result = self.parser.parse(&mut data, false);
            self.stanza_bytes += before - data.len();
            if self.stanza_bytes > MAX_STANZA_BYTES {
                return self.fail(StreamError::TooLarge);
            }
            match result {
                Ok(Some(event)) => {
                    if let Some(e) = self.event(event)? {
                        events.push(e);
                    }
                }
                Ok(None) => return self.fail(StreamError::Closed),
                Err(EndOrError::NeedMoreData) => return Ok(events),
                Err(EndOrError::Error(e)) => return self.fail(StreamError::Xml(e.to_string())),
            }
        }
    }

    fn fail<T>(&mut self, e: StreamError) -> Result<T, StreamError> {
        self.state = State::Ended;
        Err(e)
    }

    fn event(&mut self, event: RawEvent) -> Result<Option<StreamEvent>, StreamError> {
        // Text between stanzas (keep-alive whitespace) would pile up in the root.
        if matches!(event, RawEvent::Text(..)) && self.tree.depth() <= 1 {
            self.stanza_bytes = 0;
            return Ok(None);
        }
        let closes = matches!(event, RawEvent::ElementFoot(_));
        let opens = matches!(event, RawEvent::ElementHeadClose(_));
        if let Err(e) = self.tree.process_event(event) {
            return self.fail(StreamError::Xml(e.to_string()));
        }
        if opens && self.tree.depth() == 1 {
            return self.header();
        }
        if closes && self.tree.depth() == 0 {
            return self.fail(StreamError::Closed);
        }
        if !(closes && self.tree.depth() == 1) {
            return Ok(None);
        }
        self.stanza_bytes = 0;
        let Some(element) = self.tree.unshift_child() else {
            return Ok(None);
        };
        if element.is("error", NS_STREAMS) {
            let condition = element
                .children()
                .map(|c| c.name().to_string())
                .find(|n| n != "text")
                .unwrap_or_else(|| "undefined-condition".into());
            return self.fail(StreamError::Refused(condition));
        }
        match self.state {
            State::AwaitHandshake if element.is("handshake", NS_COMPONENT) => {
                self.state = State::Ready;
                Ok(Some(StreamEvent::Ready))
            }
            State::Ready => Ok(Some(StreamEvent::Stanza(element))),
            _ => self.fail(StreamError::Xml(format!(
                "<{}/> before the handshake ended",
                element.name()
            ))),
        }
    }

    /// The server's stream header: answer with the handshake (XEP-0114 §3).
    fn header(&mut self) -> Result<Option<StreamEvent>, StreamError> {
        self.stanza_bytes = 0;
        let id = self.tree.top().and_then(|root| {
            root.is("stream", NS_STREAMS)
                .then(|| root.attr("id").map(str::to_string))
                .flatten()
        });
        let Some(id) = id else {
            return self.fail(StreamError::NoStreamId);
        };
        if self.state != State::AwaitHeader {
            return self.fail(StreamError::Xml("a second stream header".into()));
        }
        self.state = State::AwaitHandshake;
        let handshake = format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, &self.secret)
        );
        self.out.extend_from_slice(handshake.as_bytes());
        Ok(None)
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// XEP-0114: lower-case hex SHA-1 of the stream id followed by the secret.
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::digest(format!("{stream_id}{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='abc' from='sb.a.test'>";

    fn ready() -> ComponentStream {
        let mut s = ComponentStream::new("sb.a.test", "secret");
        let hello = String::from_utf8(s.take_output()).unwrap();
        assert!(hello.contains("to='sb.a.test'"), "{hello}");
        assert!(s.feed(HEADER.as_bytes()).unwrap().is_empty());
        let handshake = String::from_utf8(s.take_output()).unwrap();
        assert_eq!(
            handshake,
            format!(
                "<handshake>{}</handshake>",
                handshake_digest("abc", "secret")
            )
        );
        assert_eq!(s.feed(b"<handshake/>").unwrap(), vec![StreamEvent::Ready]);
        s
    }

    #[test]
    fn digest_is_xep_0114s() {
        // SHA-1 of "abcsecret", computed independently (`printf abcsecret | sha1sum`).
        assert_eq!(
            handshake_digest("abc", "secret"),
            "de0a408ef519cd62e7379039634152874895c50c"
        );
    }

    #[test]
    fn stanzas_come_out_whole_from_any_split() {
        let stanzas = " <message from='a@b' to='ada@sb.a.test' id='1'><body>hi &amp; bye</body></message>\n<iq type='get' id='2' from='b' to='sb.a.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq> ";
        for split in 0..stanzas.len() {
            let mut s = ready();
            let (a, b) = stanzas.as_bytes().split_at(split);
            let mut events = s.feed(a).unwrap();
            events.extend(s.feed(b).unwrap());
            assert_eq!(events.len(), 2, "split at {split}");
            let StreamEvent::Stanza(m) = &events[0] else {
                panic!()
            };
            assert!(m.is("message", NS_COMPONENT));
            assert_eq!(
                m.get_child("body", NS_COMPONENT).unwrap().text(),
                "hi & bye"
            );
            let StreamEvent::Stanza(iq) = &events[1] else {
                panic!()
            };
            assert_eq!(iq.attr("id"), Some("2"));
        }
    }

    #[test]
    fn refusals_and_bad_input_end_the_stream_without_panic() {
        let mut s = ComponentStream::new("sb.a.test", "wrong");
        s.feed(HEADER.as_bytes()).unwrap();
        let err = s
            .feed(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
            .unwrap_err();
        assert_eq!(err, StreamError::Refused("not-authorized".into()));

        let mut s = ready();
        assert!(matches!(
            s.feed(b"<message><a></b></message>"),
            Err(StreamError::Xml(_))
        ));
        assert_eq!(s.feed(b"<x/>"), Err(StreamError::Closed));

        let mut s = ready();
        assert_eq!(s.feed(b"</stream:stream>"), Err(StreamError::Closed));

        let mut s = ComponentStream::new("sb.a.test", "x");
        assert_eq!(
            s.feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept'>"),
            Err(StreamError::NoStreamId)
        );
        let mut s = ComponentStream::new("sb.a.test", "x");
        s.feed(HEADER.as_bytes()).unwrap();
        assert!(
            s.feed(b"<message/>").is_err(),
            "a stanza before the handshake"
        );
    }

    #[test]
    fn a_stanza_over_the_limit_is_refused() {
        let mut s = ready();
        let mut big = String::from("<message><body>");
        let chunk = "x".repeat(64 * 1024);
        let mut result = s.feed(big.as_bytes());
        while result.is_ok() && big.len() < 2 * MAX_STANZA_BYTES {
            big.push_str(&chunk);
            result = s.feed(chunk.as_bytes());
        }
        assert_eq!(result, Err(StreamError::TooLarge));
        // Many small stanzas add up to more than the limit and are fine.
        let mut s = ready();
        let small = format!("<message><body>{}</body></message>", "y".repeat(60_000));
        for _ in 0..40 {
            assert_eq!(s.feed(small.as_bytes()).unwrap().len(), 1);
        }
    }
}
