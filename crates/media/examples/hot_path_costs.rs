//! Per-packet and per-frame costs of the hot paths, printed (a measurement, not a test:
//! machines differ): `cargo run --release -p switchboard-media --example hot_path_costs`.

use std::hint::black_box;
use std::time::{Duration, Instant};
use switchboard_media::g711::Law;
use switchboard_media::mix::MixMinus;
use switchboard_media::resample::{Downsampler, Upsampler};
use switchboard_media::rtp::write_rtp_header;
use switchboard_media::srtp::{SrtpContext, SrtpProfile};

/// Runs `f` repeatedly for about 200 ms; returns nanoseconds per call.
fn time_per_call(mut f: impl FnMut(u32)) -> f64 {
    let budget = Duration::from_millis(200);
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f(calls);
            calls += 1;
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(calls)
}

fn main() {
    let key: Vec<u8> = (0..30).collect();
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i * 331) % 20_000 - 10_000) as i16)
        .collect();
    let mut codes = [0u8; 160];

    let mut tx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &key).unwrap();
    let mut rx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &key).unwrap();
    let mut buf = [0u8; 200];
    let protect = time_per_call(|i| {
        write_rtp_header(&mut buf, false, 0, i as u16, i * 160, 1).unwrap();
        buf[12..172].copy_from_slice(&codes);
        black_box(tx.protect_rtp(&mut buf, 172).unwrap());
    });
    let mut tx2 = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &key).unwrap();
    let mut seq = 0u16;
    let unprotect = time_per_call(|_| {
        write_rtp_header(&mut buf, false, 0, seq, u32::from(seq) * 160, 1).unwrap();
        seq = seq.wrapping_add(1);
        let n = tx2.protect_rtp(&mut buf, 172).unwrap();
        black_box(rx.unprotect_rtp(&mut buf[..n]).unwrap());
    });
    let encode = time_per_call(|_| {
        Law::Mu
            .encode(black_box(&pcm), black_box(&mut codes))
            .unwrap();
        black_box(&codes);
    });
    let mut decoded = [0i16; 160];
    let decode = time_per_call(|_| {
        Law::A
            .decode(black_box(&codes), black_box(&mut decoded))
            .unwrap();
        black_box(&decoded);
    });
    let mut up = Upsampler::new();
    let mut wide = [0i16; 960];
    let upsample = time_per_call(|_| {
        up.process(black_box(&pcm), &mut wide).unwrap();
    });
    let mut down = Downsampler::new();
    let mut narrow = [0i16; 160];
    let downsample = time_per_call(|_| {
        down.process(black_box(&wide), &mut narrow).unwrap();
    });
    let inputs: Vec<Vec<i16>> = (0..8).map(|_| wide.to_vec()).collect();
    let refs: Vec<&[i16]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outs = vec![vec![0i16; 960]; 8];
    let mut mixer = MixMinus::new(960);
    let mix = time_per_call(|_| {
        let mut out_refs: Vec<&mut [i16]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        mixer.mix_minus(black_box(&refs), &mut out_refs).unwrap();
    });
    println!("SRTP protect, 172-byte G.711 packet, _80:   {protect:8.0} ns");
    println!("SRTP protect + unprotect, same packet:      {unprotect:8.0} ns");
    println!("G.711 µ-law encode, 160 samples (20 ms):    {encode:8.0} ns");
    println!("G.711 A-law decode, 160 samples (20 ms):    {decode:8.0} ns");
    println!("upsample 8k -> 48k, 20 ms:                  {upsample:8.0} ns");
    println!("downsample 48k -> 8k, 20 ms:                {downsample:8.0} ns");
    println!("mix-minus 8 x 960 samples (20 ms at 48k):   {mix:8.0} ns");
}
