//! The data-channel envelopes of SFU rooms: a browser sends `{"to":"<peer>"?,"data":…}`,
//! the SFU relays `{"from":"<peer>","data":…}` with `data` copied as the sender wrote it
//! (chat and app data behave exactly as on a mesh connection, and the SFU never pays for
//! re-encoding JSON it does not read).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{check_len, check_peer, MessageError};

/// A data-channel text message from a browser: `{"to":"<peer>"|absent|null,"data":<any>}`.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    /// The one peer to relay to; `None`: everyone else in the room.
    pub to: Option<&'a str>,
    /// The payload, the sender's JSON text exactly (`null` included).
    pub data: &'a RawValue,
}

/// A data-channel text message from the SFU: `{"from":"<peer>","data":<raw>}`.
#[derive(Clone, Copy, Debug)]
pub struct Relayed<'a> {
    /// The peer that sent it.
    pub from: &'a str,
    /// The payload, as the sender wrote it.
    pub data: &'a RawValue,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    #[serde(borrow, default)]
    to: Option<&'a str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct RelayedIn<'a> {
    #[serde(borrow)]
    from: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Peer ids are read in place (`&str`): serde refuses one written with escapes, which
/// no valid peer id needs (see [`is_valid_peer`](super::is_valid_peer)).
fn borrowed_peer(p: &str) -> Result<&str, MessageError> {
    check_peer(p).map(|()| p)
}

/// Appends `{"<key>":<peer as a JSON string>,"data":<data>}` to `out`.
fn write_envelope(out: &mut String, key: &str, peer: Option<&str>, data: &RawValue) {
    let quoted = peer.map(|p| serde_json::to_string(p).unwrap_or_default());
    out.reserve(data.get().len() + 24 + quoted.as_ref().map_or(0, String::len));
    out.push('{');
    if let Some(q) = &quoted {
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        out.push_str(q);
        out.push(',');
    }
    out.push_str("\"data\":");
    out.push_str(data.get());
    out.push('}');
}

impl<'a> Envelope<'a> {
    /// Parses a browser's data-channel text. Refused: longer than [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN),
    /// not a JSON object, no `data`, a `to` that is not a valid peer id (or uses escapes).
    pub fn parse(text: &'a str) -> Result<Envelope<'a>, MessageError> {
        check_len(text)?;
        let e: EnvelopeIn<'a> = serde_json::from_str(text)?;
        let to = e.to.map(borrowed_peer).transpose()?;
        Ok(Envelope { to, data: e.data })
    }

    /// The text a browser sends (tests and load clients).
    pub fn render(&self) -> String {
        let mut out = String::new();
        write_envelope(&mut out, "to", self.to, self.data);
        out
    }
}

impl<'a> Relayed<'a> {
    /// Parses what the SFU relays (tests and load clients), with the limits of
    /// [`Envelope::parse`].
    pub fn parse(text: &'a str) -> Result<Relayed<'a>, MessageError> {
        check_len(text)?;
        let r: RelayedIn<'a> = serde_json::from_str(text)?;
        Ok(Relayed {
            from: borrowed_peer(r.from)?,
            data: r.data,
        })
    }

    /// The text the SFU sends: `data` copied as is, never re-encoded.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// [`Relayed::render`] appended to a buffer the caller reuses.
    pub fn render_into(&self, out: &mut String) {
        write_envelope(out, "from", Some(self.from), self.data);
    }
}
