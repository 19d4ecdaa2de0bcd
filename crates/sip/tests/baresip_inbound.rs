//! A call *from* a real SIP phone: Debian's baresip 1.0 dials us (its `dial` command), and
//! we answer as a user agent server would: our parser reads its INVITE and SDP offer
//! (plain RTP, then SDES-SRTP with `mediaenc=srtp-mand`), our offer/answer builds the
//! answer, we send 180 and 200, take its ACK, exchange 3 s of G.711 both ways, and answer
//! its BYE. We hear its 440 Hz; its recording holds our 1,000 Hz.
//!
//! Ignored by default (it needs `baresip`); `scripts/test-all.sh` installs Debian's
//! `baresip-core` and runs the ignored tests.

mod lab;
use lab::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_media::g711::Law;
use switchboard_media::srtp::{SrtpContext, SrtpProfile};
use switchboard_sip::sdp::{Codec, Direction, LocalAudio, SdpSession, SessionDescription};
use switchboard_sip::{Message, Method};

/// The next request from `from` (waiting up to `wait`), with where it came from.
fn next_request(sip: &UdpSocket, wait: Duration) -> Option<(Message<'static>, SocketAddr)> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((len, from)) = sip.recv_from(&mut buf) {
            let m = Message::parse(&buf[..len])
                .expect("baresip's request parses")
                .into_owned();
            if m.is_request() {
                return Some((m, from));
            }
        }
    }
    None
}

/// A response to `req` with its Via, From, To (+ our tag), Call-ID and CSeq.
fn response(
    req: &Message<'_>,
    status: u16,
    reason: &'static str,
    tag: &str,
    contact: SocketAddr,
) -> Message<'static> {
    let mut m = Message::response(status, reason).into_owned();
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for v in req.headers().get_all(name) {
            m.headers_mut().push(name, v.to_owned());
        }
    }
    let to = req.headers().get("To").expect("To");
    let to = if to.contains("tag=") {
        to.to_owned()
    } else {
        format!("{to};tag={tag}")
    };
    m.headers_mut().push("To", to);
    m.headers_mut()
        .push("Contact", format!("<sip:gateway@{contact}>"));
    m
}

fn method(m: &Message<'_>) -> Option<Method<'static>> {
    match m {
        Message::Request(r) => Some(r.method.clone().into_owned()),
        Message::Response(_) => None,
    }
}

fn inbound(srtp: bool) {
    let mut phone = start_baresip(srtp, "PCMU/8000/1");
    let sip = sip_socket();
    let local = sip.local_addr().expect("addr");
    ctrl_command(&mut phone, "dial", &format!("sip:room@{local}"));

    let (invite, from) = next_request(&sip, Duration::from_secs(10)).expect("baresip's INVITE");
    assert_eq!(method(&invite), Some(Method::Invite), "{invite:?}");
    let offer = SessionDescription::parse(invite.body()).expect("baresip's SDP offer parses");
    let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    media
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let local_audio = LocalAudio {
        addr: local.ip(),
        port: media.local_addr().expect("addr").port(),
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        direction: Direction::SendRecv,
        srtp_key: srtp.then_some([7u8; 30]),
        rtcp_mux: false,
        ptime: 20,
    };
    let mut sdp = SdpSession::new(777, local.ip());
    let (answer, negotiated) = sdp
        .answer(&offer, &local_audio)
        .expect("we can answer baresip's offer");
    assert_eq!(negotiated.pt, 0, "{negotiated:?}");
    assert_eq!(negotiated.srtp.is_some(), srtp, "{negotiated:?}");
    if srtp {
        let text = answer.to_string_crlf();
        assert!(
            text.contains("RTP/SAVP") && text.contains("a=crypto:"),
            "{text}"
        );
    }
    let tag = "gwtag1";
    sip.send_to(&bytes(&response(&invite, 180, "Ringing", tag, local)), from)
        .expect("180");
    let mut ok = response(&invite, 200, "OK", tag, local);
    ok.headers_mut().push("Content-Type", "application/sdp");
    ok.set_body(answer.to_string_crlf().into_bytes());
    let ok = bytes(&ok);
    // 200 retransmitted until the ACK (RFC 3261 §13.3.1.4).
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        sip.send_to(&ok, from).expect("200");
        if let Some((m, _)) = next_request(&sip, Duration::from_millis(500)) {
            if method(&m) == Some(Method::Ack) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no ACK for our 200");
    }

    let remote = negotiated.remote_rtp.expect("baresip's RTP address");
    let (mut tx, mut rx_ctx) = match &negotiated.srtp {
        Some(k) => {
            let profile = SrtpProfile::from_sdes_name(&k.suite).expect("suite");
            (
                Some(SrtpContext::new(profile, &k.local_key_salt).expect("tx key")),
                Some(SrtpContext::new(profile, &k.remote_key_salt).expect("rx key")),
            )
        }
        None => (None, None),
    };
    let heard = exchange_tone(&media, remote, Law::Mu, &mut tx, &mut rx_ctx, 150);
    // baresip hangs up: its BYE reaches us and is answered.
    ctrl_command(&mut phone, "hangup", "");
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if let Some((m, from)) = next_request(&sip, Duration::from_millis(500)) {
            if method(&m) == Some(Method::Bye) {
                sip.send_to(&bytes(&response(&m, 200, "OK", tag, local)), from)
                    .expect("200 BYE");
                break;
            }
        }
        assert!(Instant::now() < deadline, "no BYE after baresip's hangup");
    }
    assert_tones_crossed(&heard, &phone);
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn baresip_calls_us_and_we_answer_plain_rtp() {
    inbound(false);
}

#[test]
#[ignore = "needs Debian's baresip-core (scripts/test-all.sh installs it and runs ignored tests)"]
fn baresip_calls_us_with_sdes_srtp_and_we_answer() {
    inbound(true);
}
