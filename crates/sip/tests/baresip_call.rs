//! A call with a real SIP phone: Debian's baresip 1.0 answers our INVITE (built, framed and
//! parsed by this crate, with our SDP offer), and audio crosses both ways over the SIP
//! leg's RTP, encoded with `switchboard-media`'s G.711 and, in the second test, protected
//! with its SDES-SRTP keyed by the `a=crypto` lines of the offer/answer. baresip plays a
//! 440 Hz tone (a WAV we write); we decode what arrives and measure its frequency. We send
//! 1,000 Hz; baresip records what it decoded (its `sndfile` module) and we measure that
//! file after the BYE. Either side hearing the wrong thing, or nothing, fails the test.
//!
//! Ignored by default (it needs the `baresip` binary); `scripts/test-all.sh` installs
//! Debian's `baresip-core` and runs the ignored tests. A baresip that does not answer
//! OPTIONS within 20 s is a harness failure (the panic says so).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::Read as _;
use switchboard_media::dtmf::{char_to_event, event_to_char, DtmfReceiver, DtmfSender};
use switchboard_media::g711::Law;
use switchboard_media::rtp::{demux, write_rtp_header, PacketKind, RtpHeader};
use switchboard_media::srtp::{SrtpContext, SrtpProfile};
use switchboard_sip::sdp::{Codec, Direction, LocalAudio, SdpSession, SessionDescription};
use switchboard_sip::{Message, Method, Uri};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

struct Baresip {
    child: Child,
    sip: SocketAddr,
    /// Its `cons` console (UDP): a digit sent there is sent as DTMF in the call.
    console: SocketAddr,
    /// Its `ctrl_tcp` event stream (netstrings of JSON), read during the call.
    ctrl: std::net::TcpStream,
    dir: tempfile::TempDir,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP port whose next one is free too (baresip takes sip_listen + 1 for TLS).
fn free_port_pair() -> u16 {
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
fn write_tone_wav(path: &Path, hz: f64, seconds: u32) {
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
fn read_wav(path: &Path) -> (Vec<i16>, u32) {
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
fn tone_of(s: &[i16], rate: u32) -> (f64, f64) {
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

fn start_baresip(srtp: bool, codec: &str) -> Baresip {
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
         module sndfile.so\nmodule srtp.so\nmodule_tmp uuid.so\nmodule_tmp account.so\nmodule_app menu.so\n\
         module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\nmodule_app cons.so\ncons_listen 127.0.0.1:{console}\n\
         snd_path {rec}\n",
        tone = tone.display(),
        rtp_end = rtp + 1,
        rec = rec.display(),
    );
    std::fs::write(dir.path().join("config"), config).expect("config");
    let enc = if srtp { ";mediaenc=srtp-mand" } else { "" };
    std::fs::write(
        dir.path().join("accounts"),
        format!("<sip:alice@127.0.0.1:{port};transport=udp>;regint=0;answermode=auto;audio_codecs={codec}{enc}\n"),
    )
    .expect("accounts");
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

fn sip_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

fn request(
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

fn bytes(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.to_bytes(&mut out);
    out
}

/// The To tag of a response.
fn to_tag(m: &Message<'_>) -> Option<String> {
    let to = m.headers().get("To")?;
    to.split(';')
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_owned))
}

/// Digits baresip reported receiving (`CALL_DTMF_START` events on its control stream).
fn dtmf_events(text: &str) -> String {
    text.split("CALL_DTMF_START")
        .skip(1)
        .filter_map(|rest| {
            let p = rest.split("\"param\":\"").nth(1)?;
            p.chars().next()
        })
        .collect()
}

fn send_rtp(
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

fn call(srtp: bool, law: Law, dtmf: bool) {
    let codec = match law {
        Law::Mu => "PCMU/8000/1",
        Law::A => "PCMA/8000/1",
    };
    let mut phone = start_baresip(srtp, codec);
    let sip = sip_socket();
    let local = sip.local_addr().expect("addr");
    let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    media
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let audio = LocalAudio {
        addr: LOCALHOST,
        port: media.local_addr().expect("addr").port(),
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        direction: Direction::SendRecv,
        srtp_key: srtp.then(|| {
            let mut k = [0u8; 30];
            for (i, b) in k.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37).wrapping_add(11);
            }
            k
        }),
        rtcp_mux: false,
        ptime: 20,
    };
    let mut sdp = SdpSession::new(4242, LOCALHOST);
    let offer = sdp.offer(&audio);
    let ruri = format!("sip:alice@{}", phone.sip);
    let call_id = format!("call-{}", local.port());
    let mut invite = request(Method::Invite, &ruri, local, &call_id, 1, None, "inv1");
    invite.headers_mut().push("Content-Type", "application/sdp");
    invite.set_body(offer.to_string_crlf().into_bytes());
    let out = bytes(&invite);

    // INVITE, retransmitted until a final response (baresip answers at once: answermode=auto).
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        sip.send_to(&out, phone.sip).expect("send INVITE");
        let mut buf = vec![0u8; 65536];
        let mut fin = None;
        while let Ok((len, _)) = sip.recv_from(&mut buf) {
            let m = Message::parse(&buf[..len])
                .expect("baresip's message parses")
                .into_owned();
            if let Message::Response(r) = &m {
                if r.status >= 200 {
                    fin = Some(m);
                    break;
                }
            }
        }
        if let Some(m) = fin {
            break m;
        }
        assert!(Instant::now() < deadline, "no final response to INVITE");
    };
    let Message::Response(r) = &ok else {
        unreachable!()
    };
    assert_eq!(r.status, 200, "{ok:?}");
    let tag = to_tag(&ok).expect("To tag in the 200");
    let answer = SessionDescription::parse(ok.body()).expect("baresip's SDP answer parses");
    let negotiated = sdp
        .accept_answer(&offer, &answer, &audio)
        .expect("the answer fits our offer");
    assert_eq!(negotiated.pt, law.payload_type(), "{negotiated:?}");
    assert_eq!(negotiated.srtp.is_some(), srtp, "{negotiated:?}");
    let remote = negotiated.remote_rtp.expect("baresip's RTP address");
    let te_pt = negotiated.telephone_event;
    if dtmf {
        assert_eq!(
            te_pt,
            Some(101),
            "telephone-event/8000 negotiated: {negotiated:?}"
        );
    }
    let mut dtmf_tx = DtmfSender::new(8000).expect("sender");
    let mut dtmf_rx = DtmfReceiver::new(8000).expect("receiver");
    let mut to_send: Vec<char> = if dtmf {
        "19#".chars().collect()
    } else {
        Vec::new()
    };
    to_send.reverse();
    let mut ctrl_text = String::new();
    // ACK for the 2xx, to the Contact of the 200.
    let contact = ok.headers().get("Contact").expect("Contact in the 200");
    let target = contact
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_owned();
    let ack = request(Method::Ack, &target, local, &call_id, 1, Some(&tag), "ack1");
    sip.send_to(&bytes(&ack), phone.sip).expect("send ACK");

    let (mut tx_srtp, mut rx_srtp) = match &negotiated.srtp {
        Some(k) => {
            let profile = SrtpProfile::from_sdes_name(&k.suite).expect("a suite we know");
            (
                Some(SrtpContext::new(profile, &k.local_key_salt).expect("tx key")),
                Some(SrtpContext::new(profile, &k.remote_key_salt).expect("rx key")),
            )
        }
        None => (None, None),
    };
    // 3 s of 1,000 Hz out, everything that comes back decoded.
    let mut heard: Vec<i16> = Vec::new();
    let mut pcm = [0i16; 160];
    let mut packet = [0u8; 12 + 160 + 16];
    let mut rx = [0u8; 2048];
    let mut decoded = [0i16; 1024];
    let start = Instant::now();
    let mut seq: u16 = 0;
    for n in 0..150u32 {
        let now = Instant::now();
        // From 1 s on, our digits, one every 400 ms (audio pauses while one is sent); at 2
        // and 2.4 s baresip is asked (on its console) to send two of its own.
        if dtmf && n >= 50 && n % 20 == 10 && !dtmf_tx.is_busy() {
            if let Some(c) = to_send.pop() {
                let ev = char_to_event(c).expect("a DTMF digit");
                dtmf_tx
                    .start(ev, 10, Duration::from_millis(160), n * 160, now)
                    .expect("start digit");
            }
        }
        if dtmf && (n == 100 || n == 120) {
            let digit: &[u8] = if n == 100 { b"5\x04" } else { b"7\x04" };
            media.send_to(digit, phone.console).expect("console");
        }
        while let Some(p) = dtmf_tx.poll(now) {
            let pt = te_pt.expect("telephone-event negotiated");
            let h = write_rtp_header(&mut packet, p.marker, pt, seq, p.timestamp, 0x5eed_0001)
                .expect("header");
            seq = seq.wrapping_add(1);
            packet[h..h + 4].copy_from_slice(&p.payload);
            send_rtp(&media, &mut tx_srtp, &mut packet, h + 4, remote);
        }
        for (i, s) in pcm.iter_mut().enumerate() {
            let t = f64::from(n * 160 + i as u32) / 8000.0;
            *s = ((2.0 * std::f64::consts::PI * 1000.0 * t).sin() * 10000.0) as i16;
        }
        if !dtmf_tx.is_busy() {
            let h = write_rtp_header(
                &mut packet,
                n == 0,
                law.payload_type(),
                seq,
                n * 160,
                0x5eed_0001,
            )
            .expect("header");
            seq = seq.wrapping_add(1);
            law.encode(&pcm, &mut packet[h..h + 160]).expect("encode");
            send_rtp(&media, &mut tx_srtp, &mut packet, h + 160, remote);
        }
        let mut chunk = [0u8; 4096];
        while let Ok(k) = phone.ctrl.read(&mut chunk) {
            if k == 0 {
                break;
            }
            ctrl_text.push_str(&String::from_utf8_lossy(&chunk[..k]));
        }
        let until = start + Duration::from_millis(20 * u64::from(n + 1));
        while Instant::now() < until {
            let Ok((len, _)) = media.recv_from(&mut rx) else {
                continue;
            };
            if demux(&rx[..len]) != PacketKind::Rtp {
                continue;
            }
            let len = match rx_srtp.as_mut() {
                Some(c) => c
                    .unprotect_rtp(&mut rx[..len])
                    .expect("baresip's SRTP authenticates with the answer's key"),
                None => len,
            };
            let hdr = RtpHeader::parse(&rx[..len]).expect("RTP");
            if Some(hdr.payload_type) == te_pt {
                dtmf_rx
                    .receive(hdr.timestamp, &rx[hdr.payload_start..hdr.payload_end])
                    .expect("baresip's telephone-event parses");
                continue;
            }
            if hdr.payload_type != law.payload_type() {
                continue;
            }
            let payload = &rx[hdr.payload_start..hdr.payload_end];
            let out = &mut decoded[..payload.len().min(1024)];
            law.decode(&payload[..out.len()], out).expect("decode");
            heard.extend_from_slice(out);
        }
    }
    let bye = request(Method::Bye, &target, local, &call_id, 2, Some(&tag), "bye1");
    let mut got_200 = false;
    for _ in 0..10 {
        sip.send_to(&bytes(&bye), phone.sip).expect("send BYE");
        let mut buf = vec![0u8; 65536];
        while let Ok((len, _)) = sip.recv_from(&mut buf) {
            if let Ok(Message::Response(r)) = Message::parse(&buf[..len]) {
                if r.status == 200 && r.headers.get("CSeq") == Some("2 BYE") {
                    got_200 = true;
                }
            }
        }
        if got_200 {
            break;
        }
    }
    assert!(got_200, "baresip answered our BYE");

    if dtmf {
        dtmf_rx.flush();
        let mut got = String::new();
        while let Some(d) = dtmf_rx.poll_digit() {
            got.extend(event_to_char(d.event));
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut chunk = [0u8; 4096];
        while let Ok(k) = phone.ctrl.read(&mut chunk) {
            if k == 0 {
                break;
            }
            ctrl_text.push_str(&String::from_utf8_lossy(&chunk[..k]));
        }
        eprintln!(
            "digits from baresip: {got:?}; baresip received: {:?}",
            dtmf_events(&ctrl_text)
        );
        assert_eq!(got, "57", "the digits baresip sent, each once");
        assert_eq!(
            dtmf_events(&ctrl_text),
            "19#",
            "the digits we sent, each once, in order"
        );
    }
    let (hz, rms) = tone_of(&heard, 8000);
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

    // What baresip decoded from us: its recording of the call (written when the call ends).
    let rec = phone.dir.path().join("rec");
    let deadline = Instant::now() + Duration::from_secs(5);
    let file: PathBuf = loop {
        let found = std::fs::read_dir(&rec)
            .expect("rec dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "baresip wrote no recording of what it received"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(300));
    let (samples, rate) = read_wav(&file);
    let (hz, rms) = tone_of(&samples, rate);
    eprintln!(
        "baresip's recording {}: {} samples at {rate} Hz, {hz:.1} Hz, RMS {rms:.0}",
        file.display(),
        samples.len()
    );
    assert!(
        (hz - 1000.0).abs() < 25.0 && rms > 1000.0,
        "baresip heard {hz:.0} Hz at RMS {rms:.0}, not our 1,000 Hz"
    );
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn baresip_answers_our_invite_and_g711_crosses_both_ways_pcma() {
    call(false, Law::A, false);
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn baresip_answers_our_invite_and_sdes_srtp_pcmu_crosses_both_ways() {
    call(true, Law::Mu, false);
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn dtmf_crosses_both_ways_as_rfc4733_telephone_events() {
    call(false, Law::Mu, true);
}
