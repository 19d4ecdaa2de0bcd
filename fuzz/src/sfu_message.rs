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
//!
//! The same bytes also go to the VP8 payload-descriptor parser the SFU runs on every
//! forwarded video packet (`switchboard_sfu::rewrite::vp8`): a keyframe starts a frame;
//! writing back the ids read changes no byte; writing new ids changes only those (cut to
//! the field's width) and the payload still parses the same otherwise.
//!
//! And, read as 8-byte steps, to a simulcast `Rewriter` (select a layer, or a packet of
//! some layer with a seq/timestamp jump, keyframe flag and VP8 ids): no overflow or
//! panic whatever the publisher's numbers; only the layer being forwarded is forwarded;
//! a switch happens only at a keyframe of the selected layer and continues the
//! outgoing sequence right after the highest number sent.

use std::borrow::Cow;

use std::time::{Duration, Instant};
use switchboard_sfu::message::{
    is_valid_peer, Envelope, MessageError, Relayed, SfuMessage, MAX_MESSAGE_LEN, MAX_MID_LEN,
    MAX_TILE_SIDE, MAX_TRACKS,
};

use switchboard_sfu::rewrite::vp8::{self, Descriptor, Ids};
use switchboard_sfu::rewrite::{Packet, Rewriter};

pub fn run(data: &[u8]) {
    let text: Cow<'_, str> = String::from_utf8_lossy(data);
    sfu_message(&text);
    envelope(&text);
    relayed(&text);
    vp8_descriptor(data);
    rewriter(data);
}

fn rewriter(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut r = Rewriter::new(
        90_000,
        u16::from_be_bytes([data.first().copied().unwrap_or(0), 0]),
    );
    let mut seq = [0u64, 70_000, 1 << 40];
    let mut ts = [0u32, u32::MAX - 10, 1 << 31];
    let mut highest: Option<u64> = None;
    for step in data.chunks_exact(8) {
        let layer = usize::from(step[1] % 3);
        if step[0] % 8 == 0 {
            r.set_target((step[1] < 200).then_some(layer as u8));
            continue;
        }
        let dseq = i16::from_be_bytes([step[2], step[3]]);
        seq[layer] = seq[layer].saturating_add_signed(i64::from(dseq));
        ts[layer] = ts[layer].wrapping_add(u32::from(u16::from_be_bytes([step[4], step[5]])));
        now += Duration::from_millis(u64::from(step[6] >> 4) * 10);
        let flags = step[6];
        let mut payload = vec![if flags & 1 != 0 { 0x90 } else { 0x80 }];
        payload.push(if flags & 2 != 0 { 0x80 } else { 0 } | if flags & 4 != 0 { 0x60 } else { 0 });
        if flags & 2 != 0 {
            if flags & 8 != 0 {
                payload.extend([0x80 | (step[7] & 0x7f), step[3]]);
            } else {
                payload.push(step[7] & 0x7f);
            }
        }
        if flags & 4 != 0 {
            payload.extend([step[7], 0x00]);
        }
        payload.extend([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
        let d = Descriptor::parse(&payload);
        let p = Packet {
            layer: layer as u8,
            seq: seq[layer],
            timestamp: ts[layer],
            keyframe: d.is_some_and(|d| d.keyframe),
            vp8: d,
            arrival: now,
        };
        let target = r.target();
        if let Some(o) = r.rewrite(&p) {
            assert_eq!(
                r.current(),
                Some(p.layer),
                "only the forwarded layer goes out"
            );
            if o.switched {
                assert!(p.keyframe && target == Some(p.layer));
                assert_eq!(o.seq, highest.map_or(o.seq, |h| h.wrapping_add(1)));
            }
            if let (Some(v), Some(d)) = (o.vp8, d) {
                assert!(v.picture_id.is_none_or(|id| id <= d.picture_id_mask()));
            }
            highest = Some(highest.map_or(o.seq, |h| h.max(o.seq)));
        }
    }
}

fn vp8_descriptor(data: &[u8]) {
    let Some(d) = Descriptor::parse(data) else {
        assert!(!vp8::is_keyframe(data) && vp8::keyframe_size(data).is_none());
        return;
    };
    assert!(!d.keyframe || d.starts_frame);
    assert_eq!(vp8::is_keyframe(data), d.keyframe);
    assert!(vp8::keyframe_size(data).is_none() || d.keyframe);
    assert!(d.picture_id.is_none_or(|p| p <= d.picture_id_mask()));
    let mut copy = data.to_vec();
    let same = Ids {
        picture_id: d.picture_id,
        tl0_pic_idx: d.tl0_pic_idx,
    };
    assert!(d.write(&mut copy, same));
    assert_eq!(copy, data, "writing the ids read back changes nothing");
    let n = data.len() as u16;
    let new = Ids {
        picture_id: Some(n.wrapping_mul(7919)),
        tl0_pic_idx: Some(n as u8 ^ 0x5a),
    };
    assert!(d.write(&mut copy, new));
    let e = Descriptor::parse(&copy).expect("a rewritten descriptor still parses");
    assert_eq!(
        e.picture_id,
        d.picture_id
            .map(|_| new.picture_id.unwrap_or(0) & d.picture_id_mask())
    );
    assert_eq!(e.tl0_pic_idx, d.tl0_pic_idx.and(new.tl0_pic_idx));
    assert_eq!(
        (e.wide_picture_id, e.temporal_id, e.starts_frame, e.keyframe),
        (d.wide_picture_id, d.temporal_id, d.starts_frame, d.keyframe)
    );
    assert_eq!(vp8::keyframe_size(&copy), vp8::keyframe_size(data));
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
            assert!(t
                .iter()
                .all(|t| t.peer.as_deref().is_none_or(is_valid_peer)));
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
        SfuMessage::Leave => {}
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
