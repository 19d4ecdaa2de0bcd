//! The SFU's own parsers (`switchboard_sfu::message`): the `{"sfu":…}` payloads of
//! signaling `message` relays between browsers and the SFU, and the data-channel
//! envelopes the SFU relays (`{"to"?,"data"}` in, `{"from","data"}` out). Every input
//! goes to all three parsers.
//!
//! Checks: no panic; a refusal for length is only for inputs over `MAX_MESSAGE_LEN`;
//! whatever parses stays within the limits (tracks, mid/rid/peer rules), renders to text
//! that parses back to an equal value and renders the same again (what the SFU sends is
//! what it would accept); an envelope's `data` is the sender's text exactly (a slice of
//! the input, never re-encoded) and survives the relay byte for byte.

use std::borrow::Cow;

use switchboard_sfu::message::{
    is_valid_peer, Envelope, MessageError, Relayed, SfuMessage, MAX_MESSAGE_LEN, MAX_MID_LEN,
    MAX_TILE_SIDE, MAX_TRACKS,
};

pub fn run(data: &[u8]) {
    let text: Cow<'_, str> = String::from_utf8_lossy(data);
    sfu_message(&text);
    envelope(&text);
    relayed(&text);
}

fn mid_ok(mid: &str) -> bool {
    !mid.is_empty()
        && mid.len() <= MAX_MID_LEN
        && mid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn sfu_message(text: &str) {
    let m = match SfuMessage::parse(text) {
        Ok(m) => m,
        Err(MessageError::TooLong(n)) => {
            assert!(n > MAX_MESSAGE_LEN && n == text.len());
            return;
        }
        Err(_) => return,
    };
    assert!(text.len() <= MAX_MESSAGE_LEN);
    match &m {
        SfuMessage::Publish(t) => {
            assert!(t.len() <= MAX_TRACKS && t.iter().all(|t| mid_ok(&t.mid)));
        }
        SfuMessage::Tracks(t) => {
            assert!(t.len() <= MAX_TRACKS);
            assert!(t.iter().all(|t| mid_ok(&t.mid) && is_valid_peer(&t.peer)));
        }
        SfuMessage::View(t) => {
            assert!(t.len() <= MAX_TRACKS);
            assert!(t
                .iter()
                .all(|t| mid_ok(&t.mid) && t.width <= MAX_TILE_SIDE && t.height <= MAX_TILE_SIDE));
        }
        SfuMessage::Speaker(p) => assert!(p.as_deref().is_none_or(is_valid_peer)),
        SfuMessage::Error { .. } => {}
        SfuMessage::Layers { mid, .. } => assert!(mid_ok(mid)),
    }
    let rendered = m.render();
    let again = SfuMessage::parse(&rendered)
        .unwrap_or_else(|e| panic!("{rendered} (from {text:?}) does not parse back: {e}"));
    assert_eq!(again, m, "{rendered}");
    assert_eq!(again.render(), rendered);
    let owned = m.clone().into_owned();
    assert_eq!(owned, m);
}

/// `inner` lies inside `outer` (a borrowed slice, not a copy).
fn is_slice_of(inner: &str, outer: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

fn envelope(text: &str) {
    let Ok(e) = Envelope::parse(text) else {
        return;
    };
    assert!(text.len() <= MAX_MESSAGE_LEN);
    assert!(is_slice_of(e.data.get(), text));
    assert!(e.to.is_none_or(is_valid_peer));
    let rendered = e.render();
    let back = Envelope::parse(&rendered).expect("a rendered envelope parses");
    assert_eq!((back.to, back.data.get()), (e.to, e.data.get()));
    // The relay of it, as the SFU would send it.
    let from = e.to.unwrap_or("p0123456789abcdef0");
    let out = Relayed { from, data: e.data }.render();
    if out.len() <= MAX_MESSAGE_LEN {
        let r = Relayed::parse(&out).expect("a relayed envelope parses");
        assert_eq!((r.from, r.data.get()), (from, e.data.get()));
    }
}

fn relayed(text: &str) {
    let Ok(r) = Relayed::parse(text) else {
        return;
    };
    assert!(is_slice_of(r.data.get(), text) && is_valid_peer(r.from));
    let rendered = r.render();
    let back = Relayed::parse(&rendered).expect("a rendered relay parses");
    assert_eq!((back.from, back.data.get()), (r.from, r.data.get()));
}
