//! Synthetic media: VP8 frames cut into RTP payloads, Opus and G.711 frames, each payload ending
//! in a send stamp (magic + CLOCK_MONOTONIC ns) so that a subscriber on the same host
//! computes the latency the server added without any clock sync. The bytes are not
//! decodable video, but the VP8 payload descriptor (RFC 7741, 15-bit PictureID) and the
//! VP8 payload header (keyframe bit, start code, size) are valid: that is all an SFU
//! reads (keyframe detection, simulcast rewriting).

use rand::Rng;
use str0m::format::Codec;

/// Bytes appended to every payload: magic + monotonic send time in ns (little endian).
pub const STAMP_LEN: usize = 12;
const STAMP_MAGIC: [u8; 4] = *b"SBLT";
/// Largest RTP payload we produce (the RTP header and extensions come on top).
pub const MAX_PAYLOAD: usize = 1200;
const VP8_DESCRIPTOR_LEN: usize = 4;

/// Shape of the synthetic video and audio.
#[derive(Clone, Copy, Debug)]
pub struct MediaShape {
    pub video_kbps: u32,
    pub fps: u32,
    /// Seconds between keyframes.
    pub keyframe_interval_s: u32,
    /// Size of an Opus frame without the stamp.
    pub opus_bytes: usize,
}

impl MediaShape {
    /// Frames per keyframe interval.
    pub fn gop(&self) -> u32 {
        (self.fps * self.keyframe_interval_s).max(1)
    }

    /// Mean size of a delta frame: a keyframe is 8 delta frames, and one GOP carries
    /// `video_kbps` × interval.
    pub fn delta_frame_bytes(&self) -> usize {
        let gop_bytes = self.video_kbps as u64 * 1000 / 8 * self.keyframe_interval_s as u64;
        (gop_bytes / (self.gop() as u64 + 7)).max(64) as usize
    }
}

/// Writes the stamp for `ns` at the end of `buf` (which has room for it).
pub fn put_stamp(buf: &mut [u8], ns: u64) {
    let n = buf.len();
    buf[n - STAMP_LEN..n - 8].copy_from_slice(&STAMP_MAGIC);
    buf[n - 8..].copy_from_slice(&ns.to_le_bytes());
}

/// The send time stamped at the end of `payload`, if it carries one.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let n = payload.len();
    if n < STAMP_LEN || payload[n - STAMP_LEN..n - 8] != STAMP_MAGIC {
        return None;
    }
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&payload[n - 8..]);
    Some(u64::from_le_bytes(ns))
}

/// Generates the RTP payloads of one VP8 stream, frame by frame.
pub struct Vp8Source {
    shape: MediaShape,
    frame: u64,
    picture_id: u16,
    force_keyframe: bool,
    filler: Vec<u8>,
}

/// One RTP payload of a frame and whether it is the frame's last (RTP marker).
pub struct Packet {
    pub payload: Vec<u8>,
    pub marker: bool,
}

impl Vp8Source {
    pub fn new(shape: MediaShape) -> Self {
        let mut rng = rand::rng();
        let mut filler = vec![0u8; 64 * 1024];
        rng.fill(&mut filler[..]);
        Vp8Source {
            shape,
            frame: 0,
            picture_id: rng.random_range(0..0x7fff),
            force_keyframe: true,
            filler,
        }
    }

    /// The next frame is a keyframe (a PLI/FIR arrived).
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// RTP timestamp increment per frame at 90 kHz.
    pub fn ticks_per_frame(&self) -> u32 {
        90_000 / self.shape.fps.max(1)
    }

    /// The payloads of the next frame, each stamped with `now_ns`; and whether it is a key frame.
    pub fn next_frame(&mut self, now_ns: u64) -> (Vec<Packet>, bool) {
        let key = self.force_keyframe || self.frame.is_multiple_of(self.shape.gop() as u64);
        self.force_keyframe = false;
        self.frame += 1;
        let mut rng = rand::rng();
        let delta = self.shape.delta_frame_bytes();
        let mean = if key { delta * 8 } else { delta };
        // ±20 % around the mean, like an encoder's frame sizes.
        let size = rng.random_range(mean * 4 / 5..=mean * 6 / 5).max(16);
        let per_packet = MAX_PAYLOAD - VP8_DESCRIPTOR_LEN - STAMP_LEN;
        let count = size.div_ceil(per_packet);
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let mut packets = Vec::with_capacity(count);
        let mut left = size;
        for i in 0..count {
            let chunk = left.div_ceil(count - i);
            left -= chunk;
            let mut p = Vec::with_capacity(VP8_DESCRIPTOR_LEN + chunk + STAMP_LEN);
            // X=1, S=1 on the first packet of the frame, partition 0.
            p.push(if i == 0 { 0x90 } else { 0x80 });
            p.push(0x80); // I: PictureID present
            p.push(0x80 | (pid >> 8) as u8); // M=1: 15-bit PictureID
            p.push(pid as u8);
            let start = p.len();
            let off = rng.random_range(0..self.filler.len() - chunk);
            p.extend_from_slice(&self.filler[off..off + chunk]);
            if i == 0 {
                write_vp8_header(&mut p[start..], key, size);
            }
            p.extend_from_slice(&[0; STAMP_LEN]);
            put_stamp(&mut p, now_ns);
            packets.push(Packet {
                payload: p,
                marker: i + 1 == count,
            });
        }
        (packets, key)
    }
}

/// The VP8 payload header (RFC 6386 §9.1) at the start of a frame's first partition:
/// frame tag (key bit, version 0, shown, first partition size) and, for a keyframe, the
/// start code and a 1280×720 size.
fn write_vp8_header(buf: &mut [u8], key: bool, frame_size: usize) {
    let first_part = (frame_size / 4).min(0x7ffff) as u32;
    let tag = (if key { 0 } else { 1 }) | (1 << 4) | (first_part << 5);
    let need = if key { 10 } else { 3 };
    if buf.len() < need {
        return;
    }
    buf[0] = tag as u8;
    buf[1] = (tag >> 8) as u8;
    buf[2] = (tag >> 16) as u8;
    if key {
        buf[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        buf[6..8].copy_from_slice(&1280u16.to_le_bytes());
        buf[8..10].copy_from_slice(&720u16.to_le_bytes());
    }
}

/// Whether a VP8 RTP payload starts a keyframe (descriptor S bit, partition 0, P bit clear):
/// what an SFU looks at, used by the tests to check the generated frames.
/// The audio codec of a call (the load sends synthetic frames in it, stamped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AudioCodec {
    /// Random Opus frames (`--opus-bytes`), 48 kHz clock.
    Opus,
    /// 160-byte G.711 µ-law frames, 8 kHz clock.
    Pcmu,
}

impl AudioCodec {
    pub fn codec(self) -> Codec {
        match self {
            AudioCodec::Opus => Codec::Opus,
            AudioCodec::Pcmu => Codec::PCMU,
        }
    }

    /// RTP clock ticks per 20 ms frame.
    pub fn ticks_per_frame(self) -> u32 {
        match self {
            AudioCodec::Opus => 960,
            AudioCodec::Pcmu => 160,
        }
    }
}

/// One 20 ms µ-law frame: quiet noise around the µ-law zero (0xff), ending in the stamp.
pub fn pcmu_frame(now_ns: u64) -> Vec<u8> {
    let mut p = vec![0xffu8; 160];
    let noise: [u8; 4] = rand::random();
    for (i, b) in p.iter_mut().take(148).enumerate() {
        *b = 0xf0 | (noise[i % 4] & 0x0f);
    }
    put_stamp(&mut p, now_ns);
    p
}

#[cfg(test)]
fn vp8_is_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            let m = payload.get(2).is_some_and(|b| b & 0x80 != 0);
            i += if m { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|b| b & 1 == 0)
}

/// Opus frames of 20 ms: a TOC byte and filler, stamped.
pub fn opus_frame(bytes: usize, now_ns: u64) -> Vec<u8> {
    let mut rng = rand::rng();
    let n = bytes.max(2) + STAMP_LEN;
    let mut p = vec![0u8; n];
    rng.fill(&mut p[..n - STAMP_LEN]);
    p[0] = 0x78; // TOC: config 15 (hybrid FB 20 ms), mono, one frame
    put_stamp(&mut p, now_ns);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcmu_frames_are_20_ms_and_stamped() {
        let p = pcmu_frame(123_456_789);
        assert_eq!(p.len(), 160);
        assert_eq!(read_stamp(&p), Some(123_456_789));
        assert_eq!(AudioCodec::Pcmu.ticks_per_frame(), 160);
        assert_eq!(AudioCodec::Opus.ticks_per_frame(), 960);
        assert_eq!(AudioCodec::Pcmu.codec(), Codec::PCMU);
    }

    fn shape() -> MediaShape {
        MediaShape {
            video_kbps: 1200,
            fps: 30,
            keyframe_interval_s: 3,
            opus_bytes: 80,
        }
    }

    #[test]
    fn frames_fit_and_carry_stamps() {
        let mut v = Vp8Source::new(shape());
        let (first, key) = v.next_frame(42);
        assert!(key, "the first frame is a keyframe");
        assert!(vp8_is_keyframe(&first[0].payload));
        assert!(first.last().unwrap().marker);
        assert!(first[..first.len() - 1].iter().all(|p| !p.marker));
        for p in &first {
            assert!(p.payload.len() <= MAX_PAYLOAD);
            assert_eq!(read_stamp(&p.payload), Some(42));
        }
        let (second, key) = v.next_frame(43);
        assert!(!key);
        assert!(!vp8_is_keyframe(&second[0].payload));
        // PictureID advances by one per frame.
        let pid = |p: &[u8]| (((p[2] & 0x7f) as u16) << 8) | p[3] as u16;
        assert_eq!(
            pid(&second[0].payload),
            (pid(&first[0].payload) + 1) & 0x7fff
        );
        v.request_keyframe();
        assert!(v.next_frame(44).1);
    }

    #[test]
    fn bitrate_is_close_to_the_target() {
        let s = shape();
        let mut v = Vp8Source::new(s);
        let mut bytes = 0usize;
        for _ in 0..s.gop() * 4 {
            bytes += v
                .next_frame(0)
                .0
                .iter()
                .map(|p| p.payload.len())
                .sum::<usize>();
        }
        let kbps = bytes as f64 * 8.0 / (4.0 * s.keyframe_interval_s as f64) / 1000.0;
        assert!((1000.0..1450.0).contains(&kbps), "{kbps} kbit/s");
    }

    #[test]
    fn stamps_are_checked() {
        assert_eq!(read_stamp(b"short"), None);
        assert_eq!(read_stamp(&[0u8; 20]), None);
        let p = opus_frame(80, 7);
        assert_eq!(p.len(), 80 + STAMP_LEN);
        assert_eq!(read_stamp(&p), Some(7));
    }
}
