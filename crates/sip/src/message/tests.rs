use super::*;
use crate::uri::Host;

const ALL: [(&str, &[u8]); 10] = [
    (
        "rfc3261_register",
        include_bytes!("../../testdata/rfc3261_register.sip"),
    ),
    (
        "rfc3261_register_200",
        include_bytes!("../../testdata/rfc3261_register_200.sip"),
    ),
    (
        "rfc3261_invite",
        include_bytes!("../../testdata/rfc3261_invite.sip"),
    ),
    (
        "rfc3261_invite_200",
        include_bytes!("../../testdata/rfc3261_invite_200.sip"),
    ),
    (
        "rfc3261_bye",
        include_bytes!("../../testdata/rfc3261_bye.sip"),
    ),
    (
        "kamailio_register_401",
        include_bytes!("../../testdata/kamailio_register_401.sip"),
    ),
    (
        "baresip_invite_sdes",
        include_bytes!("../../testdata/baresip_invite_sdes.sip"),
    ),
    (
        "baresip_invite_dtls",
        include_bytes!("../../testdata/baresip_invite_dtls.sip"),
    ),
    (
        "sipp_invite",
        include_bytes!("../../testdata/sipp_invite.sip"),
    ),
    (
        "compact_folded",
        include_bytes!("../../testdata/compact_folded.sip"),
    ),
];

#[test]
fn every_sample_round_trips() {
    for (name, bytes) in ALL {
        let msg = Message::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut out = Vec::new();
        msg.to_bytes(&mut out);
        let again = Message::parse(&out).unwrap_or_else(|e| panic!("{name} again: {e}"));
        assert_eq!(again, msg, "{name}");
        // Messages without folding or compact forms come back byte for byte.
        if name != "compact_folded" {
            assert_eq!(out, bytes, "{name}");
        }
        let mut second = Vec::new();
        again.to_bytes(&mut second);
        assert_eq!(second, out, "{name}");
    }
}

#[test]
fn rfc3261_invite_fields() {
    let msg = Message::parse(ALL[2].1).unwrap();
    let Message::Request(req) = &msg else {
        panic!("not a request")
    };
    assert_eq!(req.method, Method::Invite);
    assert_eq!(req.uri.to_string(), "sip:bob@biloxi.com");
    let h = msg.headers();
    let via = h.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, Host::Domain("pc33.atlanta.com".into()));
    assert_eq!(via.port, None);
    assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(h.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(h.from().unwrap().display.as_deref(), Some("Alice"));
    assert_eq!(h.to().unwrap().tag(), None);
    assert_eq!(h.call_id().unwrap(), "a84b4c76e66710@pc33.atlanta.com");
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Invite));
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    assert_eq!(h.content_type(), Some("application/sdp"));
    assert_eq!(h.content_length().unwrap(), Some(msg.body().len()));
    assert!(msg.body().starts_with(b"v=0\r\n"));
}

#[test]
fn response_with_via_list_and_record_route() {
    let msg = Message::parse(ALL[3].1).unwrap();
    let Message::Response(resp) = &msg else {
        panic!("not a response")
    };
    assert_eq!((resp.status, &*resp.reason), (200, "OK"));
    let h = msg.headers();
    let vias: Vec<_> = h.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].received(), Some("192.0.2.3"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK776asdhds"));
    let rr = h.record_route().unwrap();
    assert_eq!(rr.len(), 2);
    assert!(rr[1].uri.params.has("lr"));
    assert_eq!(
        rr[1].uri.host,
        Host::Domain("bigbox3.site3.atlanta.com".into())
    );
    assert!(h.route().unwrap().is_empty());
}

#[test]
fn compact_forms_folding_and_quoted_commas() {
    let msg = Message::parse(ALL[9].1).unwrap();
    let h = msg.headers();
    // Compact names are expanded, lookups ignore case.
    assert!(h.iter().any(|x| x.name == "Via"));
    assert_eq!(h.get("call-id"), Some("0ha0isndaksdj@10.0.0.1"));
    let via = h.top_via().unwrap();
    assert_eq!(via.transport, "TCP");
    assert_eq!(via.host, Host::V6("2001:db8::20".parse().unwrap()));
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.rport(), Some(None));
    let from = h.from().unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J. "Rosenberg", Jr."#));
    let contacts = h.contacts().unwrap();
    assert_eq!(contacts.len(), 2);
    let Contact::Addr(second) = &contacts[1] else {
        panic!("star")
    };
    assert_eq!(second.display.as_deref(), Some("Comma, inside"));
    assert_eq!(contacts[1].expires(), Some(60));
    // Folded lines join with one space.
    assert_eq!(h.get("Subject"), Some("a long subject that was folded"));
    assert_eq!(h.route().unwrap().len(), 2);
    assert_eq!(h.supported(), vec!["100rel", "timer"]);
    assert!(h.has_token("Supported", "TIMER"));
    assert_eq!(h.content_length().unwrap(), Some(0));
}

#[test]
fn list_splitting_respects_quotes_and_angles() {
    let parts: Vec<_> =
        split_list(r#""a, b" <sip:x@y;p=1,2>;q=1, <sip:z@w?h=a,b>, , plain"#).collect();
    assert_eq!(
        parts,
        vec![r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z@w?h=a,b>", "plain"]
    );
}

#[test]
fn kamailio_challenge_and_baresip_credentials_are_reachable() {
    let msg = Message::parse(ALL[5].1).unwrap();
    let challenge = msg.headers().www_authenticate().next().unwrap();
    assert!(challenge.starts_with("Digest realm=\"127.0.0.1\""));
    assert_eq!(msg.headers().top_via().unwrap().rport(), Some(Some(5070)));
    let msg = Message::parse(ALL[6].1).unwrap();
    assert_eq!(msg.headers().proxy_authorization().count(), 1);
    assert!(msg.headers().allow().contains(&Method::Update));
}

#[test]
fn extension_headers_typed() {
    let raw = b"PRACK sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 PRACK\r\nRAck: 776656 1 INVITE\r\n\
RSeq: 5\r\nSession-Expires: 1800;refresher=uac\r\nMin-SE: 90\r\nRequire: 100rel\r\nExpires: 30\r\n\
Contact: *\r\nContent-Length: 0\r\n\r\n";
    let msg = Message::parse(raw).unwrap();
    let h = msg.headers();
    let rack = h.rack().unwrap().unwrap();
    assert_eq!(
        (rack.rseq, rack.cseq, rack.method),
        (776656, 1, Method::Invite)
    );
    assert_eq!(h.rseq().unwrap(), Some(5));
    let se = h.session_expires().unwrap().unwrap();
    assert_eq!((se.delta, se.refresher), (1800, Some("uac")));
    assert_eq!(h.min_se().unwrap(), Some(90));
    assert_eq!(h.require(), vec!["100rel"]);
    assert_eq!(h.expires().unwrap(), Some(30));
    assert_eq!(h.contacts().unwrap(), vec![Contact::Star]);
    assert_eq!(h.top_via().unwrap().transport, "WSS");
}

#[test]
fn building_a_message() {
    let uri = crate::uri::Uri::parse("sip:alice@127.0.0.1").unwrap();
    let mut msg = Message::request(Method::Options, uri);
    let h = msg.headers_mut();
    h.push("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx");
    h.push("Content-Length", "999");
    h.set("Max-Forwards", "70");
    h.push("Allow", "INVITE");
    h.push("Allow", "BYE");
    h.set("Allow", "INVITE, BYE, ACK");
    msg.set_body(&b"hello"[..]);
    let mut out = Vec::new();
    msg.to_bytes(&mut out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.starts_with("OPTIONS sip:alice@127.0.0.1 SIP/2.0\r\n"));
    assert!(text.ends_with("Content-Length: 5\r\n\r\nhello"));
    let parsed = Message::parse(&out).unwrap();
    assert_eq!(parsed.headers().get_all("Allow").count(), 1);
    assert_eq!(parsed.headers().allow().len(), 3);
    let owned: Message<'static> = parsed.clone().into_owned();
    assert_eq!(owned, parsed);
}

#[test]
fn malformed_inputs_are_errors() {
    let cases: &[(&[u8], ParseError)] = &[
        (b"", ParseError::Empty),
        (b"\r\n\r\n", ParseError::Empty),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n",
            ParseError::Incomplete,
        ),
        (b"SIP/2.0 20 OK\r\n\r\n", ParseError::BadStatus),
        (b"SIP/2.0 700 Huh\r\n\r\n", ParseError::BadStatus),
        (b"SIP/2.0 2x0 OK\r\n\r\n", ParseError::BadStatus),
        (b"SIP/3.0 200 OK\r\n\r\n", ParseError::BadVersion),
        (b"OPTIONS sip:a@b SIP/3.0\r\n\r\n", ParseError::BadVersion),
        (b"OPTIONS sip:a@b\r\n\r\n", ParseError::BadStartLine),
        (
            b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n",
            ParseError::BadStartLine,
        ),
        (
            b"OPT<IONS sip:a@b SIP/2.0\r\n\r\n",
            ParseError::BadStartLine,
        ),
        (
            b"OPTIONS http://a SIP/2.0\r\n\r\n",
            ParseError::Uri(UriError::Scheme),
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n",
            ParseError::BadContentLength,
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n",
            ParseError::BadContentLength,
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999\r\n\r\n",
            ParseError::BadContentLength,
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab",
            ParseError::BadContentLength,
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\n\r\nab",
            ParseError::BodyTruncated,
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\n folded first\r\n\r\n",
            ParseError::BadHeader(1),
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nNo colon\r\n\r\n",
            ParseError::BadHeader(1),
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
            ParseError::BadHeader(1),
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nX: a\x00b\r\n\r\n",
            ParseError::BadHeader(1),
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n",
            ParseError::NotUtf8,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            Message::parse(input).unwrap_err(),
            *want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Typed accessors refuse what is malformed.
    let msg = Message::parse(
        b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 2147483648 OPTIONS\r\nVia: SIP/2.0 UDP x\r\nMax-Forwards: -1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        msg.headers().cseq().unwrap_err(),
        ParseError::BadHeaderValue("CSeq")
    );
    assert_eq!(
        msg.headers().top_via().unwrap_err(),
        ParseError::BadHeaderValue("Via")
    );
    assert!(msg.headers().max_forwards().is_err());
    assert_eq!(
        msg.headers().from().unwrap_err(),
        ParseError::MissingHeader("From")
    );
    assert_eq!(ParseError::TooLarge.status(), 513);
    assert_eq!(ParseError::Uri(UriError::Scheme).status(), 416);
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        max_message: 200,
        max_headers: 3,
        max_line: 40,
    };
    let mut big = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n".to_vec();
    big.resize(201, b'x');
    assert_eq!(
        parse::parse(&big, &limits).unwrap_err(),
        ParseError::TooLarge
    );
    let many = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(
        parse::parse(many, &limits).unwrap_err(),
        ParseError::TooManyHeaders
    );
    let long = format!("OPTIONS sip:a@b SIP/2.0\r\nA: {}\r\n\r\n", "y".repeat(50));
    assert_eq!(
        parse::parse(long.as_bytes(), &limits).unwrap_err(),
        ParseError::LineTooLong
    );
    let folded = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nA: {0}\r\n {0}\r\n\r\n",
        "y".repeat(25)
    );
    assert_eq!(
        parse::parse(folded.as_bytes(), &limits).unwrap_err(),
        ParseError::LineTooLong
    );
    // A stream that never ends its headers is cut off at the limit.
    assert_eq!(
        frame_len(&[b'a'; 200], &limits).unwrap_err(),
        ParseError::TooLarge
    );
    let huge_body = b"OPTIONS sip:a@b SIP/2.0\r\nl: 500\r\n\r\n";
    assert_eq!(
        frame_len(huge_body, &limits).unwrap_err(),
        ParseError::TooLarge
    );
}

#[test]
fn stream_framing_partial_and_back_to_back() {
    let limits = Limits::default();
    let one = ALL[2].1;
    let two = ALL[0].1;
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(one);
    stream.extend_from_slice(two);
    // Keep-alive CRLFs first, as their own frame.
    assert_eq!(frame_len(&stream, &limits).unwrap(), Some(4));
    assert_eq!(Message::parse(&stream[..4]).unwrap_err(), ParseError::Empty);
    let rest = &stream[4..];
    // Every prefix shorter than the first message asks for more.
    for cut in 0..one.len() {
        assert_eq!(frame_len(&rest[..cut], &limits).unwrap(), None, "cut {cut}");
    }
    assert_eq!(frame_len(rest, &limits).unwrap(), Some(one.len()));
    let first = Message::parse(&rest[..one.len()]).unwrap();
    assert_eq!(first.headers().cseq().unwrap().method, Method::Invite);
    let rest = &rest[one.len()..];
    assert_eq!(frame_len(rest, &limits).unwrap(), Some(two.len()));
    assert!(Message::parse(rest).unwrap().is_request());
    // On a stream Content-Length is required.
    assert_eq!(
        frame_len(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", &limits).unwrap_err(),
        ParseError::MissingContentLength
    );
    // A datagram without it takes the rest as body; extra bytes past it are dropped.
    let msg = Message::parse(b"MESSAGE sip:a@b SIP/2.0\r\n\r\nhi").unwrap();
    assert_eq!(msg.body(), b"hi");
    let msg = Message::parse(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\n\r\nhi").unwrap();
    assert_eq!(msg.body(), b"h");
}

#[test]
fn framing_reads_headers_as_the_parser_does() {
    // Found by fuzzing: a folded " l:0" continues the previous header, so there is no
    // Content-Length, for the framer as for the parser.
    let limits = Limits::default();
    let folded = b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 70\r\n l:0\r\n\r\n";
    assert_eq!(
        frame_len(folded, &limits).unwrap_err(),
        ParseError::MissingContentLength
    );
    assert_eq!(
        Message::parse(folded).unwrap().headers().content_length(),
        Ok(None)
    );
    let compact = b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n 2\r\n\r\nhi";
    assert_eq!(frame_len(compact, &limits).unwrap(), Some(compact.len()));
    assert_eq!(Message::parse(compact).unwrap().body(), b"hi");
}
