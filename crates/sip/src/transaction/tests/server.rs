//! Server transactions, CANCEL, limits, matching and malformed input.

use super::*;

fn receive_invite(
    l: &mut TransactionLayer,
    now: Instant,
    branch: &str,
    transport: Transport,
) -> TxId {
    feed(
        l,
        now,
        &request("INVITE", branch, "a84b4c76e66710", 314159),
        transport,
    );
    match &events(l)[..] {
        [TxEvent::Request { tx, source, .. }] => {
            assert_eq!(*source, peer());
            *tx
        }
        other => panic!("{other:?}"),
    }
}

fn answer(l: &TransactionLayer, tx: TxId, status: u16) -> Message<'static> {
    let req = &l.txs[&tx].request;
    let mut r = response_to(req, status, "Reason");
    let to = format!("{};tag=uas1", r.headers().get("To").unwrap());
    r.headers_mut().set("To", to);
    r
}

#[test]
fn server_invite_sends_100_trying_after_200_ms() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    assert!(transmits(&mut l).is_empty());
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_millis(200)));
    let sent = run(&mut l, t0, Duration::from_millis(200));
    assert_eq!(sent.len(), 1);
    let Message::Response(r) = Message::parse(&sent[0].1.bytes).unwrap() else {
        panic!()
    };
    assert_eq!(r.status, 100);
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bKs1"));
    assert_eq!(r.headers.cseq().unwrap().seq, 314159);
    assert_eq!(sent[0].1.dest, peer());
    assert_eq!(sent[0].1.tx, Some(tx));
}

#[test]
fn server_invite_answered_in_time_sends_no_100_and_resends_the_last_response() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    let ringing = answer(&l, tx, 180);
    l.respond(t0 + Duration::from_millis(50), tx, ringing)
        .unwrap();
    let first = transmits(&mut l);
    assert_eq!(start_line(&first[0]), "SIP/2.0 180 Reason");
    assert!(
        run(&mut l, t0, Duration::from_secs(1)).is_empty(),
        "no 100 Trying"
    );
    feed(
        &mut l,
        t0 + Duration::from_secs(1),
        &request("INVITE", "z9hG4bKs1", "a84b4c76e66710", 314159),
        Transport::Udp,
    );
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, first[0].bytes);
    assert!(events(&mut l).is_empty(), "the retransmission is absorbed");
}

#[test]
fn server_invite_retransmission_before_the_tu_answers_gets_100_at_once() {
    let mut l = layer();
    let t0 = Instant::now();
    receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    feed(
        &mut l,
        t0 + Duration::from_millis(100),
        &request("INVITE", "z9hG4bKs1", "a84b4c76e66710", 314159),
        Transport::Udp,
    );
    let sent = transmits(&mut l);
    assert_eq!(start_line(&sent[0]), "SIP/2.0 100 Trying");
    assert!(run(&mut l, t0, Duration::from_secs(1)).is_empty());
}

#[test]
fn server_invite_final_retransmitted_with_g_until_h() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    l.respond(t0, tx, answer(&l, tx, 486)).unwrap();
    assert_eq!(transmits(&mut l).len(), 1);
    let sent = run(&mut l, t0, Duration::from_secs(40));
    assert_eq!(
        secs(&sent),
        [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert!(sent
        .iter()
        .all(|(_, t)| start_line(t) == "SIP/2.0 486 Reason"));
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx }]);
    assert_eq!(l.counters().live(), 0);
}

#[test]
fn server_invite_ack_for_non_2xx_is_absorbed_and_ends_after_i() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    l.respond(t0, tx, answer(&l, tx, 486)).unwrap();
    transmits(&mut l);
    let t = t0 + Duration::from_millis(700);
    let ack = request("ACK", "z9hG4bKs1", "a84b4c76e66710", 314159);
    feed(&mut l, t, &ack, Transport::Udp);
    feed(&mut l, t, &ack, Transport::Udp);
    assert!(events(&mut l).is_empty());
    // G stops; I = T4.
    assert_eq!(l.poll_timeout(), Some(t + Duration::from_secs(5)));
    let sent = run(&mut l, t, Duration::from_secs(5));
    assert!(sent.is_empty());
    assert!(!l.contains(tx));
    assert!(events(&mut l).is_empty());
}

#[test]
fn server_invite_over_tcp_ack_ends_at_once_and_nothing_is_retransmitted() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Tcp);
    l.respond(t0, tx, answer(&l, tx, 404)).unwrap();
    transmits(&mut l);
    assert_eq!(
        l.poll_timeout(),
        Some(t0 + Duration::from_secs(32)),
        "H only"
    );
    feed(
        &mut l,
        t0,
        &request("ACK", "z9hG4bKs1", "a84b4c76e66710", 314159),
        Transport::Tcp,
    );
    assert!(!l.contains(tx));
}

#[test]
fn server_invite_2xx_accepted_passes_acks_up_and_ends_after_l() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    l.respond(t0, tx, answer(&l, tx, 200)).unwrap();
    // The TU retransmits its 2xx through the transaction.
    l.respond(t0 + Duration::from_millis(500), tx, answer(&l, tx, 200))
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 2);
    assert_eq!(
        l.respond(t0, tx, answer(&l, tx, 486)),
        Err(TxError::WrongState)
    );
    // The ACK of the 2xx has its own branch: up to the TU.
    feed(
        &mut l,
        t0 + Duration::from_secs(1),
        &request("ACK", "z9hG4bKack2xx", "a84b4c76e66710", 314159),
        Transport::Udp,
    );
    assert!(matches!(&events(&mut l)[..], [TxEvent::Ack { .. }]));
    assert!(run(&mut l, t0, Duration::from_secs(40)).is_empty());
    assert!(!l.contains(tx));
}

#[test]
fn server_invite_never_answered_gets_408_after_timer_c() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Tcp);
    let sent = run(&mut l, t0, Duration::from_secs(180));
    let lines: Vec<_> = sent.iter().map(|(_, t)| start_line(t)).collect();
    assert_eq!(lines, ["SIP/2.0 100 Trying", "SIP/2.0 408 Request Timeout"]);
    assert!(text(&sent[1].1).contains(";tag="));
    run(&mut l, t0, Duration::from_secs(212));
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx }]);
    assert!(!l.contains(tx));
}

#[test]
fn server_non_invite_absorbs_then_resends_and_ends_after_j() {
    let mut l = layer();
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKbye", "a84b4c76e66710", 314160);
    feed(&mut l, t0, &bye, Transport::Udp);
    let [TxEvent::Request { tx, .. }] = events(&mut l)[..] else {
        panic!()
    };
    feed(&mut l, t0, &bye, Transport::Udp);
    assert!(
        transmits(&mut l).is_empty() && events(&mut l).is_empty(),
        "absorbed in Trying"
    );
    l.respond(t0, tx, answer(&l, tx, 200)).unwrap();
    let first = transmits(&mut l);
    feed(&mut l, t0 + Duration::from_secs(2), &bye, Transport::Udp);
    assert_eq!(transmits(&mut l)[0].bytes, first[0].bytes);
    assert!(
        run(&mut l, t0, Duration::from_secs(31)).is_empty(),
        "no retransmission by timer"
    );
    assert!(l.contains(tx));
    run(&mut l, t0, Duration::from_secs(32));
    assert!(!l.contains(tx));
    assert!(events(&mut l).is_empty());
}

#[test]
fn cancel_matched_to_its_invite_is_answered_and_reported() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    let cancel = request("CANCEL", "z9hG4bKs1", "a84b4c76e66710", 314159);
    feed(&mut l, t0, &cancel, Transport::Udp);
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    let Message::Response(r) = Message::parse(&sent[0].bytes).unwrap() else {
        panic!()
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.cseq().unwrap().method, Method::Cancel);
    assert!(r.headers.to().unwrap().tag().is_some());
    match &events(&mut l)[..] {
        [TxEvent::Cancelled { invite: i, cancel }] => {
            assert_eq!(*i, invite);
            assert!(matches!(cancel, Message::Request(c) if c.method == Method::Cancel));
        }
        other => panic!("{other:?}"),
    }
    // A retransmitted CANCEL gets the same 200 and no second event.
    feed(&mut l, t0, &cancel, Transport::Udp);
    assert_eq!(transmits(&mut l)[0].bytes, sent[0].bytes);
    assert!(events(&mut l).is_empty());
    l.respond(t0, invite, answer(&l, invite, 487)).unwrap();
    assert_eq!(start_line(&transmits(&mut l)[0]), "SIP/2.0 487 Reason");
}

#[test]
fn cancel_of_an_unknown_transaction_gets_481() {
    let mut l = layer();
    let t0 = Instant::now();
    feed(
        &mut l,
        t0,
        &request("CANCEL", "z9hG4bKnone", "x", 1),
        Transport::Udp,
    );
    assert_eq!(
        start_line(&transmits(&mut l)[0]),
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );
    assert!(events(&mut l).is_empty());
}

#[test]
fn a_flood_beyond_the_limit_is_refused_with_503_without_growth() {
    let mut l = TransactionLayer::new(Config {
        max_transactions: 3,
        ..Config::default()
    });
    let t0 = Instant::now();
    for i in 0..10 {
        feed(
            &mut l,
            t0,
            &request("INVITE", &format!("z9hG4bKflood{i}"), "c", 1),
            Transport::Udp,
        );
    }
    assert_eq!(events(&mut l).len(), 3);
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 7);
    assert!(sent
        .iter()
        .all(|t| start_line(t) == "SIP/2.0 503 Service Unavailable"));
    let c = l.counters();
    assert_eq!((c.live_server_invite, c.live(), c.refused), (3, 3, 7));
    let options = owned(&request("OPTIONS", "z9hG4bKmine", "c", 1));
    assert_eq!(
        l.send_request(t0, options, peer(), Transport::Udp),
        Err(TxError::Limit)
    );
}

#[test]
fn same_call_id_different_branches_are_different_transactions() {
    let mut l = layer();
    let t0 = Instant::now();
    // Server side.
    let a = receive_invite(&mut l, t0, "z9hG4bKa", Transport::Udp);
    let b = receive_invite(&mut l, t0, "z9hG4bKb", Transport::Udp);
    assert_ne!(a, b);
    l.respond(t0, a, answer(&l, a, 180)).unwrap();
    l.respond(t0, b, answer(&l, b, 183)).unwrap();
    transmits(&mut l);
    feed(
        &mut l,
        t0,
        &request("INVITE", "z9hG4bKb", "a84b4c76e66710", 314159),
        Transport::Udp,
    );
    assert_eq!(start_line(&transmits(&mut l)[0]), "SIP/2.0 183 Reason");
    // The same branch from another sent-by is another transaction too.
    let other = request("INVITE", "z9hG4bKa", "a84b4c76e66710", 314159)
        .replace("pc33.atlanta.example:5060", "pc34.atlanta.example:5060");
    feed(&mut l, t0, &other, Transport::Udp);
    assert!(matches!(&events(&mut l)[..], [TxEvent::Request { tx, .. }] if *tx != a && *tx != b));
    // Client side.
    let o1 = owned(&request("OPTIONS", "z9hG4bKc1", "same", 1));
    let o2 = owned(&request("OPTIONS", "z9hG4bKc2", "same", 2));
    let c1 = l.send_request(t0, o1, peer(), Transport::Udp).unwrap();
    let c2 = l.send_request(t0, o2, peer(), Transport::Udp).unwrap();
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bKc2", "OPTIONS", Some("t")),
        Transport::Udp,
    );
    assert!(matches!(&events(&mut l)[..], [TxEvent::Response { tx, .. }] if *tx == c2));
    assert!(l.contains(c1));
    // Same branch, other CSeq method: no match.
    feed(
        &mut l,
        t0,
        &response(200, "z9hG4bKc1", "INFO", Some("t")),
        Transport::Udp,
    );
    assert!(events(&mut l).is_empty());
    assert_eq!(l.counters().stray, 1);
}

#[test]
fn malformed_requests_get_400_when_answerable() {
    let mut l = layer();
    let t0 = Instant::now();
    // Content-Length longer than the body: the parser refuses it, the headers are readable.
    let bad =
        request("OPTIONS", "z9hG4bKbad", "c", 1).replace("Content-Length: 0", "Content-Length: 40");
    feed(&mut l, t0, &bad, Transport::Udp);
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    let Message::Response(r) = Message::parse(&sent[0].bytes).unwrap() else {
        panic!()
    };
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bKbad"));
    assert_eq!(r.headers.call_id().unwrap(), "c");
    // Garbage and a broken response: dropped.
    feed(&mut l, t0, "\x00\x01garbage", Transport::Udp);
    feed(
        &mut l,
        t0,
        "SIP/2.0 200 OK\r\nVia: x\r\n\r\n",
        Transport::Udp,
    );
    assert!(transmits(&mut l).is_empty());
    // Parseable but without CSeq: 400 too.
    let no_cseq = request("OPTIONS", "z9hG4bKbad2", "c", 1).replace("CSeq: 1 OPTIONS\r\n", "");
    feed(&mut l, t0, &no_cseq, Transport::Udp);
    assert_eq!(start_line(&transmits(&mut l)[0]), "SIP/2.0 400 Bad Request");
    assert_eq!(l.counters().bad_requests, 2);
    assert_eq!(l.counters().live(), 0);
}

#[test]
fn rfc2543_branches_are_refused_with_400() {
    let mut l = layer();
    let t0 = Instant::now();
    feed(
        &mut l,
        t0,
        &request("INVITE", "old2543", "c", 1),
        Transport::Udp,
    );
    assert_eq!(start_line(&transmits(&mut l)[0]), "SIP/2.0 400 Bad Request");
    feed(
        &mut l,
        t0,
        &request("ACK", "old2543", "c", 1),
        Transport::Udp,
    );
    assert!(transmits(&mut l).is_empty() && events(&mut l).is_empty());
    assert_eq!(l.counters().live(), 0);
}

#[test]
fn transport_errors_end_the_transaction() {
    let mut l = layer();
    let t0 = Instant::now();
    let id = send_invite(&mut l, t0, Transport::Tcp);
    l.transport_error(id);
    assert_eq!(events(&mut l), [TxEvent::TransportError { tx: id }]);
    assert_eq!(l.counters().live(), 0);
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn send_request_checks_its_input() {
    let mut l = layer();
    let t0 = Instant::now();
    let ack = owned(&request("ACK", "z9hG4bKx", "c", 1));
    assert_eq!(
        l.send_request(t0, ack, peer(), Transport::Udp),
        Err(TxError::AckNotATransaction)
    );
    let old = owned(&request("OPTIONS", "nocookie", "c", 1));
    assert_eq!(
        l.send_request(t0, old, peer(), Transport::Udp),
        Err(TxError::NoBranch)
    );
    let wrong = owned(&request("OPTIONS", "z9hG4bKx", "c", 1).replace("1 OPTIONS", "1 INFO"));
    assert_eq!(
        l.send_request(t0, wrong, peer(), Transport::Udp),
        Err(TxError::BadCSeq)
    );
    let ok = owned(&request("OPTIONS", "z9hG4bKx", "c", 1));
    l.send_request(t0, ok.clone(), peer(), Transport::Udp)
        .unwrap();
    assert_eq!(
        l.send_request(t0, ok, peer(), Transport::Udp),
        Err(TxError::Duplicate)
    );
}

#[test]
fn poll_timeout_never_goes_back_before_the_latest_now() {
    let mut l = layer();
    let t0 = Instant::now();
    send_invite(&mut l, t0, Transport::Udp);
    // Time passes without handle_timeout, then an unrelated input.
    let late = t0 + Duration::from_secs(3);
    feed(&mut l, late, "garbage", Transport::Udp);
    assert_eq!(l.poll_timeout(), Some(late));
    l.handle_timeout(late);
    // The missed retransmissions are not burst out: one now, the next on schedule.
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_millis(3500)));
}

#[test]
fn a_400_never_copies_control_characters() {
    // Found by the sip_transaction fuzz target: a NUL inside Call-ID was copied into the
    // 400, which then did not parse. Such a value is not copied, and without a Call-ID
    // there is no answer.
    let mut l = layer();
    let t0 = Instant::now();
    let bad = request("OPTIONS", "z9hG4bKbad", "c\0d", 1)
        .replace("Content-Length: 0", "Content-Length: 9");
    feed(&mut l, t0, &bad, Transport::Udp);
    for t in transmits(&mut l) {
        assert!(Message::parse(&t.bytes).is_ok(), "{:?}", text(&t));
    }
    let tab = request("OPTIONS", "z9hG4bKbad", "c", 1)
        .replace("Content-Length: 0", "Content-Length: 9")
        .replace("Max-Forwards: 70", "Max-Forwards: 7\u{1}0");
    feed(&mut l, t0, &tab, Transport::Udp);
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    assert!(Message::parse(&sent[0].bytes).is_ok());
}

#[test]
fn received_requests_carry_received_and_rport_in_their_top_via() {
    let mut l = layer();
    let t0 = Instant::now();
    // sent-by is a name: received= is added, and the response built from it carries it.
    let tx = receive_invite(&mut l, t0, "z9hG4bKs1", Transport::Udp);
    let r = answer(&l, tx, 180);
    let via = r.headers().top_via().unwrap();
    assert_eq!(via.received(), Some("192.0.2.7"));
    assert_eq!(via.branch(), Some("z9hG4bKs1"));
    assert_eq!(via.rport(), None);
    // rport asked for (RFC 3581): filled in with the source port, behind a NAT.
    let nat = request("OPTIONS", "z9hG4bKnat", "c", 1).replace(
        "Via: SIP/2.0/UDP pc33.atlanta.example:5060;branch=z9hG4bKnat",
        "Via: SIP/2.0/UDP 10.0.0.5:5062;rport;branch=z9hG4bKnat, SIP/2.0/UDP p.example",
    );
    feed(&mut l, t0, &nat, Transport::Udp);
    let [TxEvent::Request { request: got, .. }] = &events(&mut l)[..] else {
        panic!()
    };
    let vias: Vec<_> = got.headers().vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].received(), Some("192.0.2.7"));
    assert_eq!(vias[0].rport(), Some(Some(5060)));
    assert_eq!(vias[0].port, Some(5062));
    assert_eq!(vias[1].host.to_string(), "p.example");
    // The sent-by is the source: nothing added.
    let direct = request("OPTIONS", "z9hG4bKdirect", "c", 1)
        .replace("pc33.atlanta.example:5060", "192.0.2.7:5060");
    feed(&mut l, t0, &direct, Transport::Udp);
    let [TxEvent::Request { request: got, .. }] = &events(&mut l)[..] else {
        panic!()
    };
    assert_eq!(
        got.headers().get("Via"),
        Some("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKdirect")
    );
}

#[test]
fn a_non_invite_the_tu_never_answers_times_out_after_64_t1() {
    let mut l = layer();
    let t0 = Instant::now();
    feed(
        &mut l,
        t0,
        &request("OPTIONS", "z9hG4bKo", "c", 1),
        Transport::Udp,
    );
    let [TxEvent::Request { tx, .. }] = events(&mut l)[..] else {
        panic!()
    };
    assert!(run(&mut l, t0, Duration::from_secs(31)).is_empty());
    assert!(l.contains(tx));
    run(&mut l, t0, Duration::from_secs(32));
    assert_eq!(events(&mut l), [TxEvent::Timeout { tx }]);
    assert_eq!(
        l.respond(t0, tx, an_options_200()),
        Err(TxError::UnknownTransaction)
    );
}

fn an_options_200() -> Message<'static> {
    owned(&response(200, "z9hG4bKo", "OPTIONS", Some("x")))
}

#[test]
fn full_queues_drop_and_count_and_nothing_leaks() {
    let mut l = TransactionLayer::new(Config {
        max_queued: 2,
        ..Config::default()
    });
    let t0 = Instant::now();
    for i in 0..5 {
        feed(
            &mut l,
            t0,
            &request("INVITE", &format!("z9hG4bKq{i}"), "c", 1),
            Transport::Tcp,
        );
    }
    assert_eq!(events(&mut l).len(), 2);
    assert_eq!(l.counters().dropped, 3);
    assert_eq!(l.counters().live_server_invite, 5);
    // The TU never heard of three of them: Timer C answers them 408, H ends them.
    run(&mut l, t0, Duration::from_secs(180 + 32));
    assert_eq!(l.counters().live(), 0);
    assert_eq!(l.poll_timeout(), None);
}
