//! The VP8 RTP payload descriptor (RFC 7741 §4.2) as far as an SFU needs it: where a
//! frame starts, whether it is a keyframe, and the PictureID / TL0PICIDX fields that the
//! [`Rewriter`](super::Rewriter) renumbers so that a subscriber sees one stream across
//! simulcast layer switches. Parsed once per incoming packet ([`Descriptor::parse`], no
//! allocation) and shared by every subscriber's rewriter; the new values go either into
//! str0m's `Vp8Patch` (applied while serializing, the shared payload untouched) or into a
//! private copy with [`Descriptor::write`].
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (REQUIRED)
//!      +-+-+-+-+-+-+-+-+
//! X:   |I|L|T|K| RSV   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (OPTIONAL, M=1: 15 bits over two octets)
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (OPTIONAL)
//!      +-+-+-+-+-+-+-+-+
//! ```

/// The largest 15-bit PictureID.
pub const PICTURE_ID_MAX: u16 = 0x7fff;

/// What an SFU reads from a VP8 payload descriptor (and where the renumbered fields are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// The PictureID (7 or 15 bits, see [`Descriptor::wide_picture_id`]), if present.
    pub picture_id: Option<u16>,
    /// Whether the PictureID field is 15 bits (M=1) rather than 7.
    pub wide_picture_id: bool,
    /// TL0PICIDX (running index of temporal base layer frames), if present.
    pub tl0_pic_idx: Option<u8>,
    /// The temporal layer index (TID), if present.
    pub temporal_id: Option<u8>,
    /// S=1 and PID=0: the first packet of a frame (the one with the VP8 frame header).
    pub starts_frame: bool,
    /// The first packet of a keyframe (P=0 in the frame tag and the keyframe start code).
    pub keyframe: bool,
    picture_id_offset: u8,
    tl0_offset: u8,
}

/// PictureID and TL0PICIDX values to write into a descriptor (`None`: field absent,
/// nothing to write). A PictureID already fits the field's width.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ids {
    /// The new PictureID.
    pub picture_id: Option<u16>,
    /// The new TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
}

impl Descriptor {
    /// Parses the descriptor at the start of an RTP payload (`None`: too short or
    /// malformed, e.g. TL0PICIDX without the T bit, or nothing after the descriptor).
    pub fn parse(payload: &[u8]) -> Option<Descriptor> {
        let first = *payload.first()?;
        let mut d = Descriptor {
            picture_id: None,
            wide_picture_id: false,
            tl0_pic_idx: None,
            temporal_id: None,
            starts_frame: first & 0x10 != 0 && first & 0x07 == 0,
            keyframe: false,
            picture_id_offset: 0,
            tl0_offset: 0,
        };
        let mut at = 1usize;
        if first & 0x80 != 0 {
            let ext = *payload.get(at)?;
            at += 1;
            let (has_pid, has_tl0, has_tid, has_keyidx) = (
                ext & 0x80 != 0,
                ext & 0x40 != 0,
                ext & 0x20 != 0,
                ext & 0x10 != 0,
            );
            // RFC 7741: L=1 requires T=1.
            if has_tl0 && !has_tid {
                return None;
            }
            if has_pid {
                let b = *payload.get(at)?;
                d.picture_id_offset = at as u8;
                if b & 0x80 != 0 {
                    let low = *payload.get(at + 1)?;
                    d.picture_id = Some(u16::from(b & 0x7f) << 8 | u16::from(low));
                    d.wide_picture_id = true;
                    at += 2;
                } else {
                    d.picture_id = Some(u16::from(b & 0x7f));
                    at += 1;
                }
            }
            if has_tl0 {
                d.tl0_pic_idx = Some(*payload.get(at)?);
                d.tl0_offset = at as u8;
                at += 1;
            }
            if has_tid || has_keyidx {
                let b = *payload.get(at)?;
                if has_tid {
                    d.temporal_id = Some(b >> 6);
                }
                at += 1;
            }
        }
        // The VP8 payload itself must not be empty.
        let frame = payload.get(at..).filter(|f| !f.is_empty())?;
        // RFC 6386 §9.1: frame tag bit 0 is P (0 = keyframe); a keyframe's tag is
        // followed by the start code 9d 01 2a.
        d.keyframe = d.starts_frame
            && frame[0] & 0x01 == 0
            && frame.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..]);
        Some(d)
    }

    /// The largest PictureID this descriptor's field holds (0x7f or 0x7fff).
    pub fn picture_id_mask(&self) -> u16 {
        if self.wide_picture_id {
            PICTURE_ID_MAX
        } else {
            0x7f
        }
    }

    /// Writes `ids` into `payload` (the payload this descriptor was parsed from, or a
    /// byte-identical copy). Fields the descriptor lacks are left alone; a PictureID is
    /// cut to the field's width. False (nothing written) if `payload` is shorter than the
    /// descriptor.
    pub fn write(&self, payload: &mut [u8], ids: Ids) -> bool {
        let need = match (self.picture_id, self.tl0_pic_idx) {
            (_, Some(_)) => usize::from(self.tl0_offset) + 1,
            (Some(_), None) => {
                usize::from(self.picture_id_offset) + 1 + usize::from(self.wide_picture_id)
            }
            (None, None) => 0,
        };
        if payload.len() < need {
            return false;
        }
        if let (Some(_), Some(p)) = (self.picture_id, ids.picture_id) {
            let at = usize::from(self.picture_id_offset);
            let p = p & self.picture_id_mask();
            if self.wide_picture_id {
                payload[at] = 0x80 | (p >> 8) as u8;
                payload[at + 1] = p as u8;
            } else {
                payload[at] = p as u8;
            }
        }
        if let (Some(_), Some(t)) = (self.tl0_pic_idx, ids.tl0_pic_idx) {
            payload[usize::from(self.tl0_offset)] = t;
        }
        true
    }
}

/// Whether an RTP payload is the first packet of a VP8 keyframe (the packet a
/// subscriber can start decoding from).
pub fn is_keyframe(payload: &[u8]) -> bool {
    Descriptor::parse(payload).is_some_and(|d| d.keyframe)
}
