//! What the SIP gateway's tests share (`e2e_sip/`, `sip_baresip.rs`, `sip_sipp.rs`):
//! a server with the SFU and the gateway on loopback, the gauges that must return to 0
//! after every call, and the room member's side: a 20 ms Opus tone to publish, the Opus
//! it heard from the call's peer, decoded, and a tone's frequency.

use super::Server;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard_client::sfu::SfuClient;

/// A server with the SFU and the SIP gateway on loopback (RTP on `rtp_ports`, SIP timer
/// T1 of `t1_ms`: transactions end 64×T1 after their last message), plus `extra`; and
/// its SIP address.
pub fn gateway(rtp_ports: &str, t1_ms: &str, extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec![
        "--sfu-bind",
        "127.0.0.1",
        "--sfu-threads",
        "1",
        "--sip-listen",
        "127.0.0.1:0",
        "--sip-rtp-ports",
        rtp_ports,
        "--sip-timer-t1",
        t1_ms,
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let sip = server.ready["listeners"]["sip-udp"][0]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the ready file names the SIP listener");
    (server, sip)
}

/// The gateway's gauges that return to 0 after every call, however it ended.
pub const GAUGES: [&str; 5] = [
    "switchboard_sip_calls",
    "switchboard_sip_dialogs",
    "switchboard_sip_transactions",
    "switchboard_sip_media_tasks",
    "switchboard_sip_rtp_ports_in_use",
];

/// Every gauge of [`GAUGES`] back to 0 within `within`.
pub fn assert_nothing_left(server: &Server, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<(&str, u64)> = GAUGES
            .iter()
            .map(|g| (*g, server.metric(g)))
            .filter(|(_, v)| *v > 0)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left {within:?} after the call: {left:?}\n{}",
            server.metrics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 20 ms Opus frames of a tone.
pub struct OpusTone {
    enc: opus::Encoder,
    hz: f64,
    phase: f64,
}

impl OpusTone {
    pub fn new(hz: f64) -> OpusTone {
        let enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("opus encoder");
        OpusTone {
            enc,
            hz,
            phase: 0.0,
        }
    }

    pub fn frame(&mut self) -> Vec<u8> {
        let pcm: Vec<i16> = (0..960)
            .map(|_| {
                self.phase += 2.0 * std::f64::consts::PI * self.hz / 48_000.0;
                (self.phase.sin() * 8000.0) as i16
            })
            .collect();
        let mut out = vec![0u8; 400];
        let n = self.enc.encode(&pcm, &mut out).expect("encode");
        out.truncate(n);
        out
    }
}

/// The `service: "sip"` peers in the member's room now (there when it joined, or joined
/// since, and not left), in the order they joined: (id, name). A room sees calls come
/// and go (a call that failed, one that ended, the next one), like the app's tiles do.
pub fn sip_peers(b: &SfuClient) -> Vec<(String, String)> {
    let present = b.joined["peers"].as_array().into_iter().flatten();
    present
        .chain(&b.joined_peers)
        .filter(|p| p["service"] == "sip")
        .filter_map(|p| {
            let id = p["id"].as_str()?;
            let name = p["name"].as_str().unwrap_or_default();
            (!b.left_peers.iter().any(|l| l == id)).then(|| (id.to_string(), name.to_string()))
        })
        .collect()
}

/// The `service: "sip"` peer that joined the member's room last and is still there.
pub fn sip_peer(b: &SfuClient) -> Option<String> {
    sip_peers(b).pop().map(|(id, _)| id)
}

/// Opus payloads the member received from `peer`'s audio tracks, in sequence order
/// (also on m-lines the SFU reused for later tracks: [`SfuClient::audio_from`]).
pub fn heard_from(b: &SfuClient, peer: &str) -> Vec<Vec<u8>> {
    b.audio_from(peer)
}

/// Opus payloads decoded (48 kHz mono).
pub fn decode_opus(payloads: &[Vec<u8>]) -> Vec<i16> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; 5760];
    for p in payloads {
        if let Ok(n) = dec.decode(p, &mut frame, false) {
            pcm.extend_from_slice(&frame[..n]);
        }
    }
    pcm
}
