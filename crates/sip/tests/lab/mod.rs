//! Shared by the interop tests with Debian's SIP tools (`baresip_*.rs`): a baresip phone
//! in a temporary directory (its config, a 440 Hz WAV to play, a recording directory, its
//! control and console ports), WAV reading and writing, a tone's frequency and level, and
//! a few SIP message helpers. Harness failures (a tool that does not start) panic saying so.
#![allow(dead_code)] // each test file uses a part

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_media::g711::Law;
use switchboard_media::rtp::{demux, write_rtp_header, PacketKind, RtpHeader};
use switchboard_media::srtp::SrtpContext;
use switchboard_sip::{Message, Method, Uri};

pub const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub struct Baresip {
    child: Child,
    pub sip: SocketAddr,
    /// Its `cons` console (UDP): a digit sent there is sent as DTMF in the call.
    pub console: SocketAddr,
    /// Its `ctrl_tcp` event stream (netstrings of JSON), read during the call.
    pub ctrl: std::net::TcpStream,
    pub dir: tempfile::TempDir,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port whose next one is free too (baresip takes sip_listen + 1 for TLS).
pub fn free_port_pair() -> u16 {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p < 65000
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
}

/// 8 kHz mono 16-bit WAV of a sine.
pub fn write_tone_wav(path: &Path, hz: f64, seconds: u32) {
    let n = 8000 * seconds;
    let mut b = Vec::with_capacity(44 + 2 * n as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let s = (2.0 * std::f64::consts::PI * hz * f64::from(i) / 8000.0).sin() * 12000.0;
        b.extend_from_slice(&(s as i16).to_le_bytes());
    }
    std::fs::write(path, b).expect("write wav");
}

/// The samples of a 16-bit PCM WAV (mono or the first channel) and its rate.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let b = std::fs::read(path).expect("read wav");
    let rate = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    let channels = usize::from(u16::from_le_bytes([b[22], b[23]]));
    // Find the data chunk.
    let mut i = 12;
    while i + 8 <= b.len() {
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if &b[i..i + 4] == b"data" {
            let data = &b[i + 8..(i + 8 + len).min(b.len())];
            let samples = data
                .chunks_exact(2 * channels)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (samples, rate);
        }
        i += 8 + len;
    }
    panic!("no data chunk in {}", path.display());
}

/// Dominant frequency by zero crossings, and RMS, of the loud part of `s`.
pub fn tone_of(s: &[i16], rate: u32) -> (f64, f64) {
    let loud: Vec<i16> = s
        .iter()
        .copied()
        .skip_while(|x| x.unsigned_abs() < 500)
        .collect();
    let rms =
        (loud.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / loud.len().max(1) as f64).sqrt();
    let crossings = loud.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let secs = loud.len() as f64 / f64::from(rate);
    (crossings as f64 / 2.0 / secs.max(1e-9), rms)
}

/// baresip with one account `alice` on its own port, calling and called directly (no
/// registrar), auto-answering, offering `codec` (`mediaenc=srtp-mand` with `srtp`).
pub fn start_baresip(srtp: bool, codec: &str) -> Baresip {
    let enc = if srtp { ";mediaenc=srtp-mand" } else { "" };
    start_baresip_with(|port| {
        format!("<sip:alice@127.0.0.1:{port};transport=udp>;regint=0;answermode=auto;audio_codecs={codec}{enc}")
    })
}

/// baresip with the account line `account(its SIP port)`.
pub fn start_baresip_with(account: impl FnOnce(u16) -> String) -> Baresip {
    start_baresip_full(account, "")
}

/// baresip offering DTLS-SRTP with ICE (`mediaenc=dtls_srtp;medianat=ice`, RTP and RTCP
/// multiplexed), calling and called directly, auto-answering, offering `codec`.
pub fn start_baresip_dtls(codec: &str) -> Baresip {
    start_baresip_full(
        |port| {
            format!("<sip:alice@127.0.0.1:{port};transport=udp>;regint=0;answermode=auto;audio_codecs={codec};mediaenc=dtls_srtp;medianat=ice")
        },
        "module dtls_srtp.so\nmodule ice.so\nrtcp_mux yes\n",
    )
}

/// baresip with `account` and `extra` config lines (modules among them are loaded before
/// the accounts are read).
fn start_baresip_full(account: impl FnOnce(u16) -> String, extra: &str) -> Baresip {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port_pair();
    let rtp = free_port_pair();
    let ctrl = free_port_pair();
    let console = free_port_pair();
    let tone = dir.path().join("tone440.wav");
    write_tone_wav(&tone, 440.0, 30);
    let rec = dir.path().join("rec");
    std::fs::create_dir(&rec).expect("rec dir");
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{port}\naudio_player alsa,null\naudio_alert alsa,null\n\
         audio_source aufile,{tone}\nrtp_ports {rtp}-{rtp_end}\nrtp_timeout 10\nnet_interface 127.0.0.1\n\
         module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule alsa.so\nmodule aufile.so\n\
         module sndfile.so\nmodule srtp.so\n{extra}module_tmp uuid.so\nmodule_tmp account.so\nmodule_app menu.so\n\
         module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\nmodule_app cons.so\ncons_listen 127.0.0.1:{console}\n\
         snd_path {rec}\n",
        tone = tone.display(),
        rtp_end = rtp + 1,
        rec = rec.display(),
    );
    std::fs::write(dir.path().join("config"), config).expect("config");
    std::fs::write(dir.path().join("accounts"), format!("{}\n", account(port))).expect("accounts");
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("harness failure: cannot run baresip ({e}); install Debian's baresip-core")
        });
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(20);
    let ctrl = loop {
        match std::net::TcpStream::connect(("127.0.0.1", ctrl)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                let _ = child.kill();
                panic!("harness failure: baresip's ctrl_tcp did not accept within 20 s ({e})");
            }
        }
    };
    ctrl.set_nonblocking(true).expect("nonblocking");
    let b = Baresip {
        child,
        sip: SocketAddr::new(LOCALHOST, port),
        console: SocketAddr::new(LOCALHOST, console),
        ctrl,
        dir,
    };
    let sock = sip_socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 1.. {
        let local = sock.local_addr().expect("addr");
        let ping = format!(
            "OPTIONS sip:alice@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKping{n}\r\nMax-Forwards: 70\r\nFrom: <sip:test@127.0.0.1>;tag=p\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: ping{n}-{port}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(ping.as_bytes(), b.sip);
        let mut buf = [0u8; 8192];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 ") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "harness failure: baresip did not answer OPTIONS within 20 s"
        );
    }
    b
}

pub fn sip_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

pub fn request(
    method: Method<'static>,
    ruri: &str,
    local: SocketAddr,
    call: &str,
    cseq: u32,
    to_tag: Option<&str>,
    branch: &str,
) -> Message<'static> {
    let mut m =
        Message::request(method.clone(), Uri::parse(ruri).expect("uri").into_owned()).into_owned();
    let h = m.headers_mut();
    h.push(
        "Via",
        format!("SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport"),
    );
    h.push("Max-Forwards", "70");
    h.push("From", "<sip:gateway@127.0.0.1>;tag=gw1".to_string());
    h.push(
        "To",
        match to_tag {
            Some(t) => format!("<sip:alice@127.0.0.1>;tag={t}"),
            None => "<sip:alice@127.0.0.1>".to_string(),
        },
    );
    h.push("Call-ID", call.to_string());
    h.push("CSeq", format!("{cseq} {}", method.as_str()));
    h.push("Contact", format!("<sip:gateway@{local}>"));
    m
}

pub fn bytes(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.to_bytes(&mut out);
    out
}

/// The To tag of a response.
pub fn to_tag(m: &Message<'_>) -> Option<String> {
    let to = m.headers().get("To")?;
    to.split(';')
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_owned))
}

/// Digits baresip reported receiving (`CALL_DTMF_START` events on its control stream).
pub fn dtmf_events(text: &str) -> String {
    text.split("CALL_DTMF_START")
        .skip(1)
        .filter_map(|rest| {
            let p = rest.split("\"param\":\"").nth(1)?;
            p.chars().next()
        })
        .collect()
}

pub fn send_rtp(
    media: &UdpSocket,
    srtp: &mut Option<SrtpContext>,
    packet: &mut [u8],
    len: usize,
    to: SocketAddr,
) {
    let len = match srtp.as_mut() {
        Some(c) => c.protect_rtp(packet, len).expect("protect"),
        None => len,
    };
    media.send_to(&packet[..len], to).expect("send RTP");
}

/// Everything baresip's control stream has said since the last call, appended to `text`.
pub fn read_ctrl(b: &mut Baresip, text: &mut String) {
    let mut chunk = [0u8; 4096];
    while let Ok(k) = b.ctrl.read(&mut chunk) {
        if k == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&chunk[..k]));
    }
}

/// Sends a command on baresip's control stream (`{"command":…,"params":…}` as a netstring).
pub fn ctrl_command(b: &mut Baresip, command: &str, params: &str) {
    use std::io::Write as _;
    let json = format!(r#"{{"command":"{command}","params":"{params}","token":"t"}}"#);
    let msg = format!("{}:{json},", json.len());
    b.ctrl.set_nonblocking(false).expect("blocking");
    b.ctrl.write_all(msg.as_bytes()).expect("ctrl write");
    b.ctrl.set_nonblocking(true).expect("nonblocking");
}

/// Frequency and RMS of what baresip decoded in its (one) call: the `-dec.wav` its
/// `sndfile` module writes, waited for up to 5 s after the call ended.
pub fn recorded_tone(b: &Baresip) -> (f64, f64) {
    let (samples, rate) = recorded_samples(b);
    tone_of(&samples, rate)
}

/// Power of `hz` in `s` relative to the whole signal's, in dB (Goertzel): near 0 for
/// the only tone, about -3 dB for one of two equal tones, far below for an absent one.
pub fn tone_share_db(s: &[i16], rate: u32, hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / f64::from(rate);
    let coeff = 2.0 * w.cos();
    // Goertzel per 250 ms block, the blocks' tone energies summed: a jitter buffer that
    // drops or repeats a packet shifts the tone's phase, and one Goertzel over the whole
    // recording would let the parts before and after such a jump cancel.
    let block = (rate as usize / 4).max(1);
    let (mut tone, mut total) = (0.0f64, 0.0f64);
    for b in s.chunks_exact(block) {
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in b {
            let x = f64::from(x);
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
            total += x * x;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        // A sine of amplitude A gives power (A·N/2)² over N samples and energy N·A²/2.
        tone += 2.0 * power / block as f64;
    }
    10.0 * (tone / total.max(1e-9)).max(1e-12).log10()
}

/// The samples and rate of what baresip decoded in its (one) call (see
/// [`recorded_tone`]).
pub fn recorded_samples(b: &Baresip) -> (Vec<i16>, u32) {
    let rec = b.dir.path().join("rec");
    let deadline = Instant::now() + Duration::from_secs(5);
    // The file exists from the start of the call; it is complete when baresip closed it at
    // the end: its data chunk then has a length and the file stops growing.
    let mut last_size = None;
    loop {
        let found = std::fs::read_dir(&rec)
            .expect("rec dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
        if let Some(f) = found {
            let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            if last_size == Some(size) && size > 44 {
                let (samples, rate) = read_wav(&f);
                if !samples.is_empty() {
                    return (samples, rate);
                }
            }
            last_size = Some(size);
        }
        assert!(
            Instant::now() < deadline,
            "baresip wrote no complete recording of what it received"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `packets` × 20 ms of a 1,000 Hz tone in G.711 `law` (payload type of the law) to
/// `remote`, SRTP-protected with `tx` if set; returns what arrived on `media` meanwhile,
/// unprotected with `rx` and decoded (other payload types and RTCP skipped).
pub fn exchange_tone(
    media: &UdpSocket,
    remote: SocketAddr,
    law: Law,
    tx: &mut Option<SrtpContext>,
    rx: &mut Option<SrtpContext>,
    packets: u32,
) -> Vec<i16> {
    media
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let mut heard = Vec::new();
    let (mut pcm, mut packet, mut buf, mut decoded) =
        ([0i16; 160], [0u8; 200], [0u8; 2048], [0i16; 1024]);
    let start = Instant::now();
    for n in 0..packets {
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = f64::from(n * 160 + i as u32) / 8000.0;
            *s = ((2.0 * std::f64::consts::PI * 1000.0 * t).sin() * 10000.0) as i16;
        }
        let h = write_rtp_header(
            &mut packet,
            n == 0,
            law.payload_type(),
            n as u16,
            n * 160,
            0x00c0_ffee,
        )
        .expect("header");
        law.encode(&pcm, &mut packet[h..h + 160]).expect("encode");
        send_rtp(media, tx, &mut packet, h + 160, remote);
        let until = start + Duration::from_millis(20 * u64::from(n + 1));
        while Instant::now() < until {
            let Some(hdr) = recv_rtp(media, rx, &mut buf) else {
                continue;
            };
            if hdr.payload_type != law.payload_type() {
                continue;
            }
            let payload = &buf[hdr.payload_start..hdr.payload_end];
            let out = &mut decoded[..payload.len().min(1024)];
            law.decode(&payload[..out.len()], out).expect("decode");
            heard.extend_from_slice(out);
        }
    }
    heard
}

pub const CONFIG: &str = include_str!("kamailio.cfg");

pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // kamailio forks its workers into the same process group.
        let _ = Command::new("pkill")
            .args(["-f", &format!("{}", self._dir.path().display())])
            .status();
    }
}

pub fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let p = s.local_addr().expect("addr").port();
    let t = std::net::TcpListener::bind(("127.0.0.1", p));
    if t.is_err() {
        return free_port();
    }
    p
}

pub fn start_kamailio(defines: &[&str]) -> Kamailio {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg, CONFIG.replace("@PORT@", &port.to_string())).expect("write cfg");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("run dir");
    let mut cmd = Command::new("kamailio");
    cmd.arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-m", "32", "-M", "4"])
        .arg("-Y")
        .arg(&run);
    for d in defines {
        cmd.args(["-A", d]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("harness failure: cannot run kamailio ({e}); install Debian's kamailio")
        });
    let k = Kamailio {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: dir,
    };
    // Up when it answers an OPTIONS to itself.
    let sock = sip_socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let ping = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKping{n}\r\nMax-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: ping{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            local = sock.local_addr().expect("addr")
        );
        let _ = sock.send_to(ping.as_bytes(), k.addr);
        let mut buf = [0u8; 4096];
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            if buf[..len].starts_with(b"SIP/2.0 200") {
                return k;
            }
        }
        assert!(
            Instant::now() < deadline,
            "harness failure: kamailio did not answer OPTIONS within 20 s"
        );
    }
}

/// The two checks of every call with baresip: we heard its 440 Hz tone in `heard` (8 kHz
/// samples, at least a second), and its recording of the call holds our 1,000 Hz.
pub fn assert_tones_crossed(heard: &[i16], phone: &Baresip) {
    let (hz, rms) = tone_of(heard, 8000);
    eprintln!(
        "heard from baresip: {} samples, {hz:.1} Hz, RMS {rms:.0}",
        heard.len()
    );
    assert!(
        heard.len() > 8000,
        "we received {} samples from baresip",
        heard.len()
    );
    assert!(
        (hz - 440.0).abs() < 15.0 && rms > 1000.0,
        "we heard {hz:.0} Hz at RMS {rms:.0}, not baresip's 440 Hz"
    );
    let (hz, rms) = recorded_tone(phone);
    eprintln!("baresip heard {hz:.1} Hz, RMS {rms:.0}");
    assert!(
        (hz - 1000.0).abs() < 25.0 && rms > 1000.0,
        "baresip heard {hz:.0} Hz at RMS {rms:.0}, not our 1,000 Hz"
    );
}

/// The next RTP packet on `media` (RTCP and non-RTP skipped), SRTP-unprotected with `rx`
/// if set, in `buf`: its header. None when nothing arrived within the socket's timeout.
pub fn recv_rtp(
    media: &UdpSocket,
    rx: &mut Option<SrtpContext>,
    buf: &mut [u8],
) -> Option<RtpHeader> {
    let (len, _) = media.recv_from(buf).ok()?;
    if demux(&buf[..len]) != PacketKind::Rtp {
        return None;
    }
    let len = match rx.as_mut() {
        Some(c) => c
            .unprotect_rtp(&mut buf[..len])
            .expect("the peer's SRTP authenticates with its SDES key"),
        None => len,
    };
    Some(RtpHeader::parse(&buf[..len]).expect("RTP"))
}
