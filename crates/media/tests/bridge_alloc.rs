//! After warm-up, `CallMedia` allocates nothing per packet or per tick (a counting global
//! allocator around each call; its own binary so no other test shares the allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchboard_media::bridge::{CallMedia, PhoneCodec, PhoneConfig, RoomAudio, RoomCodec};
use switchboard_media::g711::Law;
use switchboard_media::opus::{OpusEncoder, MAX_PACKET};
use switchboard_media::rtp::write_rtp_header;
use switchboard_media::srtp::{SrtpContext, SrtpProfile};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> T {
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    out
}

#[test]
fn no_allocation_per_packet_or_tick_after_warm_up() {
    let t0 = Instant::now();
    let ours: Vec<u8> = (0..30).collect();
    let theirs: Vec<u8> = (30..60).collect();
    let cfg = PhoneConfig {
        codec: PhoneCodec::G711(Law::Mu),
        pt: 0,
        telephone_event: Some(101),
        ssrc: 7,
        srtp: Some((ours, theirs.clone())),
        srtp_profile: SrtpProfile::AesCm128HmacSha1_80,
        ptime: None,
    };
    let mut cm = CallMedia::new(cfg, t0).unwrap();
    // The phone's side of SRTP, protecting what it sends us.
    let mut phone_srtp = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &theirs).unwrap();
    let mut encoders = [OpusEncoder::new().unwrap(), OpusEncoder::new().unwrap()];
    let mut phone_out = [0u8; 1500];
    let mut room_out = [0u8; 1500];
    let mut packet = [0u8; 1500];
    let mut opus = [0u8; MAX_PACKET];
    let mut pcm = [0i16; 960];
    for k in 0..400u32 {
        if k == 100 {
            // Warm-up done (sources created, buffers at size): count from here on.
            ALLOCATIONS.store(0, Ordering::Relaxed);
        }
        let now = t0 + Duration::from_millis(20 * u64::from(k));
        // Phone: a PCMU frame of noise-ish audio, SRTP-protected.
        write_rtp_header(&mut packet, false, 0, k as u16, 160 * k, 0xAA).unwrap();
        for (i, b) in packet[12..172].iter_mut().enumerate() {
            *b = ((i as u32 * 37 + k * 11) % 256) as u8;
        }
        let len = phone_srtp.protect_rtp(&mut packet, 172).unwrap();
        let arrival = counted(|| cm.on_phone_packet(now, &mut packet[..len], &mut room_out));
        let forwarded_to_room = arrival.unwrap().room.is_some();
        // A room source sending PCMU all along: alone once the Opus ones stop (tick 200),
        // it passes through both ways from about tick 250.
        let g711 = &packet[12..172];
        let codec = RoomCodec::G711(Law::Mu);
        let audio = RoomAudio {
            source: 9,
            codec,
            seq: k as u16,
            timestamp: 160 * k,
            payload: g711,
        };
        counted(|| cm.on_room_audio(now, audio, &mut phone_out)).unwrap();
        // Two Opus room sources until tick 200.
        for (source, encoder) in encoders.iter_mut().enumerate().filter(|_| k < 200) {
            for (i, s) in pcm.iter_mut().enumerate() {
                *s = (((i as u32 * (7 + source as u32) + k) % 200) as i16 - 100) * 50;
            }
            let n = encoder.encode(&pcm, &mut opus).unwrap();
            counted(|| cm.on_room_opus(now, source as u64, k as u16, 960 * k, &opus[..n]));
        }
        if k == 150 {
            counted(|| cm.send_dtmf(now, '4', 100)).unwrap();
        }
        let tick = counted(|| cm.tick(now, &mut phone_out, &mut room_out)).unwrap();
        // Every 20 ms the room gets a frame: forwarded on arrival, or the tick's.
        assert!(tick.room.len > 0 || forwarded_to_room, "tick {k}");
        counted(|| cm.poll_dtmf());
        counted(|| cm.stats());
    }
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
    // Both paths ran: the mix and Opus, then the passthrough.
    let stats = cm.stats();
    assert!(stats.frames_to_phone_transcoded >= 200, "{stats:?}");
    assert!(stats.frames_to_phone_passed >= 100, "{stats:?}");
    assert!(stats.frames_to_room_passed >= 100, "{stats:?}");
}
