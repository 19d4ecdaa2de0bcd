//! One gateway call's media core (`switchboard_media::bridge::CallMedia`) fed datagrams from
//! the phone, Opus payloads from room sources, commands and ticks, with real libopus.
//!
//! The first byte picks the negotiation (`% 4`): PCMU, PCMA with SDES-SRTP, Opus, Opus with
//! SDES-SRTP (telephone-event 101 in all). Then records (see [`crate::records`]), `op % 8`:
//! - 0 raw: `body` as a datagram from the phone (`who & 1` and SRTP: protected with the
//!   phone's key first, so that garbage gets past authentication);
//! - 1 RTP: a well-formed RTP packet from the phone, payload type `who % 4` (audio,
//!   telephone-event, 13, `body[0] & 0x7f`), SSRC `who >> 6`, sequence and timestamp from
//!   `body[..6]`, payload the rest (protected when SRTP);
//! - 2 room: `body[4..]` as the Opus payload of source `who % 5`, sequence/timestamp from
//!   `body[..4]`;
//! - 3 tick: advance `body[0] % 64` ms, tick with outputs of `u16(body[1..]) % 1600` and
//!   `u16(body[3..]) % 1600` bytes (too small ones included);
//! - 4 DTMF: send `body[0]` as a digit for `u16(body[1..])` ms;
//! - 5 command `who % 5`: toggle hold, remove source `body[0] % 5`, renegotiate (codec
//!   `body[0] % 3`, telephone-event on/off `body[1] & 1`, SSRC change `body[2] & 1`, same keys),
//!   a bad renegotiation (payload type above 127), drain the digits;
//! - 6 time: advance `u16(body) % 5000` ms and tick once;
//! - 7 ten ticks of 20 ms.
//!
//! Checks: no panic; a tick with full-size outputs never fails; lengths fit the outputs;
//! the room frame's level is in 0..=127; held calls send nothing; every packet for the
//! phone (from a tick, or passed through as a room packet came) parses as RTP with our
//! SSRC, never repeats the last sequence number and, without SRTP, has the negotiated or
//! telephone-event payload type; digits polled are DTMF characters; the packet counters
//! match what the ticks and the arrivals returned.

use crate::records::{u16_of, Records};
use std::time::{Duration, Instant};
use switchboard_media::bridge::{CallMedia, PhoneCodec, PhoneConfig, RoomAudio, RoomCodec};
use switchboard_media::g711::Law;
use switchboard_media::rtp::{write_rtp_header, RtpHeader};
use switchboard_media::srtp::{SrtpContext, SrtpProfile};

const TE: u8 = 101;
const SOURCES: u64 = 5;

fn config(codec: u8, srtp: bool, telephone_event: bool, ssrc: u32) -> PhoneConfig {
    let codec = match codec % 3 {
        0 => PhoneCodec::G711(Law::Mu),
        1 => PhoneCodec::G711(Law::A),
        _ => PhoneCodec::Opus,
    };
    PhoneConfig {
        codec,
        pt: match codec {
            PhoneCodec::G711(law) => law.payload_type(),
            PhoneCodec::Opus => 111,
        },
        telephone_event: telephone_event.then_some(TE),
        ssrc,
        srtp: srtp.then(|| ((0..30).collect(), (100..130).collect())),
        srtp_profile: SrtpProfile::AesCm128HmacSha1_80,
        ptime: None,
    }
}

struct Checker {
    cfg: PhoneConfig,
    held: bool,
    sent: u64,
    room_sent: u64,
    last_seq: Option<u16>,
}

impl Checker {
    fn tick(&mut self, cm: &mut CallMedia, now: Instant, phone_len: usize, room_len: usize) {
        let mut phone = [0u8; 1600];
        let mut room = [0u8; 1600];
        let full = phone_len == phone.len() && room_len == room.len();
        let result = cm.tick(now, &mut phone[..phone_len], &mut room[..room_len]);
        let tick = match result {
            Ok(t) => t,
            Err(e) => {
                assert!(!full, "a tick with full-size outputs failed: {e}");
                return;
            }
        };
        assert!(tick.phone_len <= phone_len && tick.room.len <= room_len);
        assert!(tick.room.level <= 127);
        if self.held {
            assert_eq!((tick.phone_len, tick.room.len), (0, 0), "held but sending");
        }
        if tick.room.len > 0 {
            self.room_sent += 1;
        }
        self.phone_packet(&phone[..tick.phone_len]);
    }

    /// A packet for the phone (from a tick, or passed through as a room packet came).
    fn phone_packet(&mut self, packet: &[u8]) {
        if packet.is_empty() {
            return;
        }
        assert!(!self.held, "held but sending");
        self.sent += 1;
        let header = RtpHeader::parse_ignoring_padding(packet).expect("our packet parses as RTP");
        assert_eq!(header.ssrc, self.cfg.ssrc);
        // Passed-through packets keep the room's gaps and order, but never repeat one.
        if let Some(last) = self.last_seq {
            assert_ne!(header.sequence, last, "sequence number repeated");
        }
        self.last_seq = Some(header.sequence);
        if self.cfg.srtp.is_none() {
            assert!(
                header.payload_type == self.cfg.pt
                    || Some(header.payload_type) == self.cfg.telephone_event,
                "payload type {}",
                header.payload_type
            );
        }
    }
}

pub fn run(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut now = t0;
    let srtp = first % 4 == 1 || first % 4 == 3;
    let codec = if first % 4 < 2 { first % 2 } else { 2 };
    let cfg = config(codec, srtp, true, 0x5157_0001);
    let mut cm = CallMedia::new(cfg.clone(), now).expect("valid configuration");
    // The phone's SRTP context: what it sends us is protected with "their" key.
    let mut phone_srtp = srtp.then(|| {
        SrtpContext::new(
            SrtpProfile::AesCm128HmacSha1_80,
            &(100..130).collect::<Vec<u8>>(),
        )
        .expect("30-byte key")
    });
    let mut check = Checker {
        cfg,
        held: false,
        sent: 0,
        room_sent: 0,
        last_seq: None,
    };
    let mut phone_seq = 0u16;
    let mut buf = [0u8; 1700];
    for r in Records::new(data) {
        match r.op % 8 {
            0 => {
                let n = r.body.len().min(1500);
                buf[..n].copy_from_slice(&r.body[..n]);
                let mut len = n;
                if r.who & 1 != 0 {
                    if let Some(ctx) = phone_srtp.as_mut() {
                        len = ctx.protect_rtp(&mut buf, n).unwrap_or(n);
                    }
                }
                let mut room = [0u8; 1600];
                if let Ok(a) = cm.on_phone_packet(now, &mut buf[..len], &mut room) {
                    check.room_sent += u64::from(a.room.is_some_and(|f| f.len > 0));
                }
            }
            1 => {
                let pt = match r.who % 4 {
                    0 => check.cfg.pt,
                    1 => TE,
                    2 => 13,
                    _ => r.body.first().copied().unwrap_or(0) & 0x7f,
                };
                phone_seq = phone_seq.wrapping_add(1);
                let seq = if r.body.len() >= 2 {
                    u16_of(r.body)
                } else {
                    phone_seq
                };
                let ts = u32::from(u16_of(r.body.get(2..).unwrap_or(&[]))) << 8;
                let payload = r.body.get(6..).unwrap_or(&[]);
                let payload = &payload[..payload.len().min(1400)];
                let ssrc = 0xAA00 | u32::from(r.who >> 6);
                write_rtp_header(&mut buf, false, pt, seq, ts, ssrc).expect("room for a header");
                buf[12..12 + payload.len()].copy_from_slice(payload);
                let mut len = 12 + payload.len();
                if let Some(ctx) = phone_srtp.as_mut() {
                    len = ctx.protect_rtp(&mut buf, len).unwrap_or(len);
                }
                let mut room = [0u8; 1600];
                if let Ok(a) = cm.on_phone_packet(now, &mut buf[..len], &mut room) {
                    check.room_sent += u64::from(a.room.is_some_and(|f| f.len > 0));
                }
            }
            2 => {
                let seq = u16_of(r.body);
                let ts = u32::from(u16_of(r.body.get(2..).unwrap_or(&[]))) * 960;
                let payload = r.body.get(4..).unwrap_or(&[]);
                // A source's codec may change between its packets (a renegotiated track).
                let codec = match r.who / 64 {
                    0 | 1 => RoomCodec::Opus,
                    2 => RoomCodec::G711(Law::Mu),
                    _ => RoomCodec::G711(Law::A),
                };
                let audio = RoomAudio {
                    source: u64::from(r.who) % SOURCES,
                    codec,
                    seq,
                    timestamp: ts,
                    payload,
                };
                let mut phone = [0u8; 1600];
                if let Ok(n) = cm.on_room_audio(now, audio, &mut phone) {
                    check.phone_packet(&phone[..n]);
                }
            }
            3 => {
                now += Duration::from_millis(u64::from(r.body.first().copied().unwrap_or(20) % 64));
                let phone_len = usize::from(u16_of(r.body.get(1..).unwrap_or(&[]))) % 1601;
                let room_len = usize::from(u16_of(r.body.get(3..).unwrap_or(&[]))) % 1601;
                check.tick(&mut cm, now, phone_len, room_len);
            }
            4 => {
                let digit = char::from(r.body.first().copied().unwrap_or(b'1'));
                let ms = u32::from(u16_of(r.body.get(1..).unwrap_or(&[])));
                let _ = cm.send_dtmf(now, digit, ms);
            }
            5 => match r.who % 5 {
                0 => {
                    check.held = !check.held;
                    cm.set_hold(check.held);
                }
                1 => {
                    cm.remove_room_source(u64::from(r.body.first().copied().unwrap_or(0)) % SOURCES)
                }
                2 => {
                    let b = |i: usize| r.body.get(i).copied().unwrap_or(0);
                    let ssrc = if b(2) & 1 != 0 {
                        check.cfg.ssrc ^ 1
                    } else {
                        check.cfg.ssrc
                    };
                    let new = config(b(0), srtp, b(1) & 1 != 0, ssrc);
                    cm.set_phone_codec(new.clone())
                        .expect("valid renegotiation");
                    check.cfg = new;
                }
                3 => {
                    let mut bad = check.cfg.clone();
                    bad.pt = 128 + r.who % 100;
                    assert!(cm.set_phone_codec(bad).is_err());
                }
                _ => {
                    while let Some(c) = cm.poll_dtmf() {
                        assert!(
                            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D'),
                            "digit {c:?}"
                        );
                    }
                }
            },
            6 => {
                now += Duration::from_millis(u64::from(u16_of(r.body) % 5000));
                check.tick(&mut cm, now, 1600, 1600);
            }
            _ => {
                for _ in 0..10 {
                    now += Duration::from_millis(20);
                    check.tick(&mut cm, now, 1600, 1600);
                }
            }
        }
    }
    let stats = cm.stats();
    assert_eq!(stats.phone_packets_out, check.sent);
    assert_eq!(stats.room_packets_out, check.room_sent);
}
