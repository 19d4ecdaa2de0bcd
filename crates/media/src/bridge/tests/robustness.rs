//! Random packets, commands and buffer sizes into CallMedia: errors, never panics.

use super::*;

/// xorshift: deterministic noise for the robustness test.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.next() as usize % (max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_input_never_panics() {
    let t0 = Instant::now();
    let mut srtp_cfg = pcmu();
    srtp_cfg.srtp = Some(((0..30).collect(), (30..60).collect()));
    for base in [pcmu(), cfg(PhoneCodec::Opus), srtp_cfg] {
        let mut cm = CallMedia::new(base.clone(), t0).unwrap();
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let mut phone = [0u8; 1500];
        let mut room = [0u8; 1500];
        let mut g711_seq = 0u16;
        for step in 0..3000u64 {
            let now = at(t0, step * 7);
            match noise.next() % 8 {
                0 | 1 => {
                    let mut p = noise.bytes(300);
                    // Half of them look like RTP/RTCP to get past the demux.
                    if noise.next() % 2 == 0 && p.len() > 2 {
                        p[0] = 0x80 | (p[0] & 0x3F);
                        p[1] = if noise.next() % 4 == 0 {
                            200
                        } else {
                            p[1] & 0x7F
                        };
                        if noise.next() % 2 == 0 {
                            p[1] = (p[1] & 0x80) | base.pt;
                        }
                    }
                    let _ = cm.on_phone_packet(now, &mut p, &mut room);
                }
                2 => {
                    let p = noise.bytes(1600);
                    let id = noise.next() % 4;
                    let n = noise.next();
                    cm.on_room_opus(now, id, n as u16, (n >> 16) as u32, &p);
                }
                3 => {
                    // A G.711 member, mostly in order (so that it gets forwarded on
                    // arrival), sometimes reordered, restarted, cut short or in the other
                    // law, into outputs of any size.
                    g711_seq = match noise.next() % 8 {
                        0 => noise.next() as u16,
                        1 => g711_seq.wrapping_sub(3),
                        _ => g711_seq.wrapping_add(1),
                    };
                    let law = if noise.next() % 8 == 0 {
                        Law::A
                    } else {
                        Law::Mu
                    };
                    let len = if noise.next() % 8 == 0 { 80 } else { 160 };
                    let p = vec![noise.next() as u8; len];
                    let ts = u32::from(g711_seq) * 160;
                    let out_len = noise.next() as usize % 1500;
                    let codec = RoomCodec::G711(law);
                    let sent = cm.on_room_audio(
                        now,
                        audio(4, codec, g711_seq, ts, &p),
                        &mut phone[..out_len],
                    );
                    if let Ok(n) = sent {
                        assert!(n <= out_len);
                    }
                }
                4 => {
                    let digit = char::from(noise.next() as u8);
                    let _ = cm.send_dtmf(now, digit, (noise.next() % 70_000) as u32);
                }
                5 => {
                    // Outputs of any size, too small ones included.
                    let p_len = noise.next() as usize % 1500;
                    let r_len = noise.next() as usize % 1500;
                    let _ = cm.tick(now, &mut phone[..p_len], &mut room[..r_len]);
                }
                6 => match noise.next() % 4 {
                    0 => cm.set_hold(!cm.is_held()),
                    1 => cm.remove_room_source(noise.next() % 4),
                    2 => {
                        let mut c = base.clone();
                        c.pt = noise.next() as u8;
                        let _ = cm.set_phone_codec(c);
                        let _ = cm.set_phone_codec(base.clone());
                    }
                    _ => while cm.poll_dtmf().is_some() {},
                },
                _ => {
                    cm.tick(now, &mut phone, &mut room).unwrap();
                }
            }
        }
        let _ = cm.stats();
    }
}
