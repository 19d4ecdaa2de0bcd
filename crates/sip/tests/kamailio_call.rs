//! A call through a real proxy: baresip registers as `bob` at Debian's kamailio (digest),
//! and we call `sip:bob@…` through kamailio as `alice`. kamailio challenges our INVITE
//! with 407; we ACK the 407, answer the challenge with our digest (`Proxy-Authorization`),
//! and the call is relayed to baresip and record-routed. Our `dialog::Dialog` (made from
//! the INVITE and the 200) builds the ACK and the BYE, which follow the route set through
//! kamailio (RFC 3261 §12.2.1.1), and G.711 crosses both ways between us and baresip.
//! What the gateway does with a registrar and an authenticating proxy.
//!
//! Ignored by default (it needs `kamailio` and `baresip`); `scripts/test-all.sh`
//! installs both and runs the ignored tests.

mod lab;
use lab::*;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use switchboard_media::g711::Law;
use switchboard_sip::dialog::Dialog;
use switchboard_sip::digest::{Challenge, DigestRequest};
use switchboard_sip::sdp::{Codec, Direction, LocalAudio, SdpSession, SessionDescription};
use switchboard_sip::{Message, Method, Uri};

/// A request of our (alice's) side of the call.
#[allow(clippy::too_many_arguments)]
fn alice_request(
    method: Method<'static>,
    ruri: &str,
    local: SocketAddr,
    call_id: &str,
    cseq: u32,
    branch: &str,
    to_tag: Option<&str>,
    route: Option<&str>,
) -> Message<'static> {
    let mut m =
        Message::request(method.clone(), Uri::parse(ruri).expect("uri").into_owned()).into_owned();
    let h = m.headers_mut();
    h.push(
        "Via",
        format!("SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport"),
    );
    if let Some(r) = route {
        h.push("Route", r.to_owned());
    }
    h.push("Max-Forwards", "70");
    h.push("From", "<sip:alice@127.0.0.1>;tag=alice1".to_owned());
    h.push(
        "To",
        match to_tag {
            Some(t) => format!("<sip:bob@127.0.0.1>;tag={t}"),
            None => "<sip:bob@127.0.0.1>".to_owned(),
        },
    );
    h.push("Call-ID", call_id.to_owned());
    h.push("CSeq", format!("{cseq} {}", method.as_str()));
    h.push("Contact", format!("<sip:alice@{local}>"));
    m
}

/// The next response to CSeq `cseq` (provisional ones skipped), waiting up to `wait`.
fn final_response(sip: &UdpSocket, cseq: &str, wait: Duration) -> Option<Message<'static>> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        let Ok((len, _)) = sip.recv_from(&mut buf) else {
            continue;
        };
        let m = Message::parse(&buf[..len])
            .expect("kamailio's message parses")
            .into_owned();
        if let Message::Response(r) = &m {
            if r.status >= 200 && r.headers.get("CSeq") == Some(cseq) {
                return Some(m);
            }
        }
    }
    None
}

fn status(m: &Message<'_>) -> u16 {
    match m {
        Message::Response(r) => r.status,
        Message::Request(_) => 0,
    }
}

#[test]
#[ignore = "needs Debian's kamailio and baresip-core (scripts/test-all.sh installs them and runs ignored tests)"]
fn a_call_through_kamailio_with_proxy_auth_and_record_route() {
    let k = start_kamailio(&[]);
    let kport = k.addr.port();
    let phone = start_baresip_with(|_| {
        format!(
            "<sip:bob@127.0.0.1:{kport};transport=udp>;auth_pass=bobpw;answermode=auto;audio_codecs=PCMU/8000/1;regint=60"
        )
    });
    let sip = sip_socket();
    let local = sip.local_addr().expect("addr");
    let media = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let audio = LocalAudio {
        addr: local.ip(),
        port: media.local_addr().expect("addr").port(),
        codecs: vec![Codec::Pcmu],
        direction: Direction::SendRecv,
        srtp_key: None,
        rtcp_mux: false,
        ptime: 20,
    };
    let mut sdp = SdpSession::new(99, local.ip());
    let offer = sdp.offer(&audio);
    let ruri = format!("sip:bob@127.0.0.1:{kport}");
    let call_id = format!("via-kamailio-{}", local.port());
    let invite = |cseq: u32, branch: &str, auth: Option<&str>| {
        let mut m = alice_request(
            Method::Invite,
            &ruri,
            local,
            &call_id,
            cseq,
            branch,
            None,
            None,
        );
        if let Some(a) = auth {
            m.headers_mut().push("Proxy-Authorization", a.to_owned());
        }
        m.headers_mut().push("Content-Type", "application/sdp");
        m.set_body(offer.to_string_crlf().into_bytes());
        bytes(&m)
    };

    // First INVITE: challenged.
    sip.send_to(&invite(1, "i1", None), k.addr).expect("INVITE");
    let challenge =
        final_response(&sip, "1 INVITE", Duration::from_secs(5)).expect("a final answer");
    assert_eq!(status(&challenge), 407, "{challenge:?}");
    // ACK for the 407: same branch, the 407's To tag (RFC 3261 §17.1.1.3).
    let tag = to_tag(&challenge).expect("To tag on the 407");
    let ack = alice_request(
        Method::Ack,
        &ruri,
        local,
        &call_id,
        1,
        "i1",
        Some(&tag),
        None,
    );
    sip.send_to(&bytes(&ack), k.addr).expect("ACK 407");
    let c = Challenge::parse(
        challenge
            .headers()
            .get("Proxy-Authenticate")
            .expect("Proxy-Authenticate on the 407"),
    )
    .expect("kamailio's challenge parses");

    // Second INVITE: relayed to baresip, which answers. (baresip registers as it starts;
    // until kamailio has its binding the INVITE gets 404: ACK it and ask again.)
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut cseq = 2;
    let ok = loop {
        let branch = format!("i{cseq}");
        let creds = c
            .respond(
                "alice",
                "alicepw",
                &DigestRequest {
                    method: "INVITE",
                    uri: &ruri,
                    body: &[],
                },
                "c0ffee01",
                cseq - 1,
            )
            .to_header_value();
        sip.send_to(&invite(cseq, &branch, Some(&creds)), k.addr)
            .expect("INVITE with credentials");
        let answer = final_response(&sip, &format!("{cseq} INVITE"), Duration::from_secs(10))
            .expect("a final answer");
        if status(&answer) != 404 || Instant::now() > deadline {
            break answer;
        }
        let tag = to_tag(&answer).unwrap_or_default();
        let ack = alice_request(
            Method::Ack,
            &ruri,
            local,
            &call_id,
            cseq,
            &branch,
            Some(&tag),
            None,
        );
        sip.send_to(&bytes(&ack), k.addr).expect("ACK 404");
        std::thread::sleep(Duration::from_millis(300));
        cseq += 1;
    };
    assert_eq!(status(&ok), 200, "{ok:?}");
    let record_route: Vec<String> = ok
        .headers()
        .values("Record-Route")
        .map(str::to_owned)
        .collect();
    assert!(
        record_route
            .iter()
            .any(|r| r.contains(&format!("127.0.0.1:{kport}")) && r.contains(";lr")),
        "kamailio record-routed the call: {record_route:?}"
    );
    // Our side of the dialog (the INVITE as sent, the 200 as received) builds the ACK and
    // the BYE: Request-URI = baresip's Contact, Route = kamailio, sent to kamailio.
    let sent = invite(cseq, &format!("i{cseq}"), Some("x"));
    let sent = Message::parse(&sent).expect("our INVITE parses");
    let mut dialog = Dialog::uac(&sent, &ok).expect("a dialog from the 200");
    let hop = dialog.next_hop();
    assert_eq!(
        (hop.host.to_string(), hop.port),
        ("127.0.0.1".to_string(), Some(kport)),
        "in-dialog requests go to kamailio"
    );
    let ack = dialog.ack(
        cseq,
        &format!("SIP/2.0/UDP {local};branch=z9hG4bKa{cseq};rport"),
    );
    assert!(ack
        .headers()
        .get("Route")
        .is_some_and(|r| r.contains(&kport.to_string())));
    sip.send_to(&bytes(&ack), k.addr)
        .expect("ACK 200 via kamailio");

    let answer = SessionDescription::parse(ok.body()).expect("baresip's answer parses");
    let negotiated = sdp
        .accept_answer(&offer, &answer, &audio)
        .expect("answer fits");
    let remote = negotiated.remote_rtp.expect("baresip's RTP address");
    let heard = exchange_tone(&media, remote, Law::Mu, &mut None, &mut None, 100);

    // BYE through kamailio, answered by baresip.
    let bye = dialog.request(
        Method::Bye,
        &format!("SIP/2.0/UDP {local};branch=z9hG4bKbye;rport"),
    );
    sip.send_to(&bytes(&bye), k.addr).expect("BYE via kamailio");
    let done = final_response(&sip, &format!("{} BYE", cseq + 1), Duration::from_secs(5))
        .expect("an answer to BYE");
    assert_eq!(status(&done), 200, "{done:?}");

    assert_tones_crossed(&heard, &phone);
}
