//! What one transcoded gateway call costs: the time of a 20 ms `CallMedia` tick of a
//! G.711 (PCMU, SDES-SRTP) ↔ Opus call with 1, 2 and 4 room sources, packets in included,
//! and the calls one core could carry; and, for comparison, the same call whose one room
//! source sends PCMU (passed through both ways, docs/sip.md). A measurement, not a test
//! (machines differ):
//! `cargo run --release -p switchboard-media --example transcode_costs`.

use std::hint::black_box;
use std::time::{Duration, Instant};
use switchboard_media::bridge::{CallMedia, PhoneCodec, PhoneConfig, RoomAudio, RoomCodec};
use switchboard_media::g711::Law;
use switchboard_media::opus::{OpusEncoder, FRAME_SAMPLES, MAX_PACKET};
use switchboard_media::rtp::write_rtp_header;
use switchboard_media::srtp::{SrtpContext, SrtpProfile};

/// Prepared inputs (speech-like: two tones with a slow envelope): the phone's SRTP packets
/// for the whole run (each once: SRTP refuses replays), one second of each source's Opus
/// payloads, replayed in a loop under new sequence numbers.
struct Inputs {
    phone: Vec<Vec<u8>>,
    room: Vec<Vec<Vec<u8>>>,
}

fn speechy(frame: usize, sample: usize, rate: f64, pitch: f64) -> i16 {
    let t = (frame as f64 * 0.02) + sample as f64 / rate;
    let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
    let s = (2.0 * std::f64::consts::PI * pitch * t).sin()
        + 0.5 * (2.0 * std::f64::consts::PI * pitch * 2.7 * t).sin();
    (6000.0 * envelope * s) as i16
}

fn inputs(sources: usize, room: RoomCodec, ticks: usize, phone_key: &[u8]) -> Inputs {
    let mut srtp = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, phone_key).unwrap();
    let phone = (0..ticks)
        .map(|k| {
            let mut p = vec![0u8; 12 + 160 + 10];
            write_rtp_header(&mut p, false, 0, k as u16, 160 * k as u32, 0xAA).unwrap();
            for i in 0..160 {
                p[12 + i] = Law::Mu.encode_sample(speechy(k, i, 8000.0, 180.0));
            }
            let n = srtp.protect_rtp(&mut p, 172).unwrap();
            p.truncate(n);
            p
        })
        .collect();
    let room = (0..sources)
        .map(|s| {
            if let RoomCodec::G711(law) = room {
                return (0..50usize)
                    .map(|k| {
                        let pitch = 120.0 + 40.0 * s as f64;
                        (0..160)
                            .map(|i| law.encode_sample(speechy(k, i, 8000.0, pitch)))
                            .collect()
                    })
                    .collect();
            }
            let mut encoder = OpusEncoder::new().unwrap();
            (0..50usize)
                .map(|k| {
                    let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                        .map(|i| speechy(k, i, 48_000.0, 120.0 + 40.0 * s as f64))
                        .collect();
                    let mut out = [0u8; MAX_PACKET];
                    let n = encoder.encode(&pcm, &mut out).unwrap();
                    out[..n].to_vec()
                })
                .collect()
        })
        .collect();
    Inputs { phone, room }
}

/// CPU time this thread has run, from Linux's schedstat (nanoseconds on a CPU): on a
/// shared machine wall time also counts the time other processes had the core.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Microseconds per tick (with that tick's packets in), wall and CPU (if known).
fn time_per_tick(sources: usize, room: RoomCodec) -> (f64, Option<f64>) {
    let ours: Vec<u8> = (0..30).collect();
    let theirs: Vec<u8> = (30..60).collect();
    let cfg = PhoneConfig {
        codec: PhoneCodec::G711(Law::Mu),
        pt: 0,
        telephone_event: Some(101),
        ssrc: 1,
        srtp: Some((ours, theirs.clone())),
        srtp_profile: SrtpProfile::AesCm128HmacSha1_80,
        ptime: None,
    };
    let (warm_up, ticks) = (50, 1500);
    let inputs = inputs(sources, room, warm_up + ticks, &theirs);
    let t0 = Instant::now();
    let mut cm = CallMedia::new(cfg, t0).unwrap();
    let mut phone_out = [0u8; 1500];
    let mut room_out = [0u8; 1500];
    let mut packet = [0u8; 1500];
    let mut run = |from: usize, ticks: usize, cm: &mut CallMedia| {
        for k in from..from + ticks {
            // Media time, not wall time: the call sees a steady 20 ms clock.
            let now = t0 + Duration::from_millis(20 * k as u64);
            let src = &inputs.phone[k];
            packet[..src.len()].copy_from_slice(src);
            black_box(
                cm.on_phone_packet(now, &mut packet[..src.len()], &mut room_out)
                    .unwrap(),
            );
            for (s, frames) in inputs.room.iter().enumerate() {
                let seq = k as u16;
                let ts = k as u32 * if room == RoomCodec::Opus { 960 } else { 160 };
                let frame = &frames[k % 50];
                let audio = RoomAudio {
                    source: s as u64,
                    codec: room,
                    seq,
                    timestamp: ts,
                    payload: frame,
                };
                black_box(cm.on_room_audio(now, audio, &mut phone_out)).unwrap();
            }
            black_box(cm.tick(now, &mut phone_out, &mut room_out).unwrap());
        }
    };
    run(0, warm_up, &mut cm);
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    run(warm_up, ticks, &mut cm);
    let per_tick = |d: Duration| d.as_secs_f64() * 1e6 / ticks as f64;
    let wall = per_tick(start.elapsed());
    let cpu = cpu_start
        .zip(thread_cpu_time())
        .map(|(a, b)| per_tick(b.saturating_sub(a)));
    (wall, cpu)
}

fn main() {
    println!("G.711 (PCMU, SDES-SRTP) <-> Opus call, one 20 ms CallMedia tick incl. packets in");
    println!("calls per core = 1e6 us / (50 ticks x CPU us per tick; wall if CPU is unknown)");
    println!("room sources | wall us/tick | CPU us/tick | calls per core");
    println!("-------------+--------------+-------------+---------------");
    let rows = [
        ("1", RoomCodec::Opus, 1),
        ("2", RoomCodec::Opus, 2),
        ("4", RoomCodec::Opus, 4),
        ("1 PCMU (pass)", RoomCodec::G711(Law::Mu), 1),
    ];
    for (name, room, sources) in rows {
        let (wall, cpu) = time_per_tick(sources, room);
        let calls = 1e6 / (50.0 * cpu.unwrap_or(wall));
        let cpu = cpu.map_or("?".to_owned(), |c| format!("{c:.1}"));
        println!("{name:>12} | {wall:>12.1} | {cpu:>11} | {calls:>14.0}");
    }
}
