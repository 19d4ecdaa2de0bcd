//! The SDP <-> Jingle mapper (`switchboard_xmpp`) and its stanza parser.
//!
//! Input: the first byte chooses what the rest is: `0` a browser's SDP, `1` a `<jingle/>`
//! element as XML text, `2` one ICE candidate line (as trickled).
//!
//! Checks: no panic or overflow whatever the bytes (every refusal is a `MapError`);
//! whatever one side accepts, the other carries unchanged:
//! - SDP that maps gives, from either side (initiator, responder), a Jingle element whose
//!   XML parses back to the same element and maps back to the same session, and its SDP
//!   text reads back as the same session;
//! - a `<jingle/>` that maps to a session maps back to Jingle and to SDP text, and both read
//!   back as the same session; its candidates (as `transport-info`) survive the same way;
//! - a candidate line that parses writes out to a line that parses to the same candidate,
//!   and survives a `transport-info` round trip.

use switchboard_xmpp::xmpp_parsers::jingle::Action;
use switchboard_xmpp::{
    candidates_to_transport_info, jingle_to_session, jingle_to_xml, parse_candidate,
    parse_jingle_xml, parse_sdp, session_from_sdp, session_to_jingle, session_to_sdp,
    transport_info_to_candidates, write_candidate, write_sdp, JingleParams, MediaSession, Side,
    TrickleCandidate,
};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => sdp(text),
        1 => jingle(text),
        _ => candidate(text),
    }
}

fn params(side: Side) -> JingleParams {
    JingleParams {
        action: match side {
            Side::Initiator => Action::SessionInitiate,
            Side::Responder => Action::SessionAccept,
        },
        sid: "fuzz".into(),
        side,
        initiator: None,
        responder: None,
    }
}

/// The session survives Jingle (as XML text) and SDP text, from both sides.
fn check_session(session: &MediaSession) {
    for side in [Side::Initiator, Side::Responder] {
        let jingle = match session_to_jingle(session, &params(side)) {
            Ok(j) => j,
            Err(e) => panic!("an accepted session does not map to Jingle: {e}: {session:?}"),
        };
        let xml = jingle_to_xml(&jingle);
        let parsed = match parse_jingle_xml(&xml) {
            Ok(j) => j,
            Err(e) => panic!("our own XML does not parse: {e}: {xml}"),
        };
        assert_eq!(parsed, jingle, "XML round trip changed the element: {xml}");
        match jingle_to_session(&parsed, side) {
            Ok(back) => assert_eq!(
                &back, session,
                "Jingle round trip changed the session: {xml}"
            ),
            Err(e) => panic!("our own Jingle does not map back: {e}: {xml}"),
        }
    }
    let text = write_sdp(&session_to_sdp(session, 1));
    match parse_sdp(&text).and_then(|s| session_from_sdp(&s)) {
        Ok(back) => assert_eq!(&back, session, "SDP round trip changed the session: {text}"),
        Err(e) => panic!("our own SDP does not read back: {e}: {text}"),
    }
}

fn sdp(text: &str) {
    let Ok(sdp) = parse_sdp(text) else {
        return;
    };
    if let Ok(session) = session_from_sdp(&sdp) {
        check_session(&session);
    }
}

fn jingle(text: &str) {
    let Ok(jingle) = parse_jingle_xml(text) else {
        return;
    };
    let _ = jingle_to_xml(&jingle);
    if let Ok(candidates) = transport_info_to_candidates(&jingle) {
        check_trickle(&candidates);
    }
    for side in [Side::Initiator, Side::Responder] {
        if let Ok(session) = jingle_to_session(&jingle, side) {
            check_session(&session);
        }
    }
}

fn check_trickle(candidates: &[TrickleCandidate]) {
    if candidates.is_empty() {
        return;
    }
    let info = match candidates_to_transport_info("fuzz", candidates) {
        Ok(j) => j,
        Err(e) => panic!("read candidates do not map back: {e}: {candidates:?}"),
    };
    let xml = jingle_to_xml(&info);
    let mut back = match parse_jingle_xml(&xml).and_then(|j| transport_info_to_candidates(&j)) {
        Ok(b) => b,
        Err(e) => panic!("our transport-info does not read back: {e}: {xml}"),
    };
    let mut expected = candidates.to_vec();
    let key = |t: &TrickleCandidate| (t.mid.clone(), t.ufrag.clone(), t.candidate.clone());
    expected.sort_by_key(key);
    back.sort_by_key(key);
    assert_eq!(back, expected, "transport-info round trip: {xml}");
}

fn candidate(text: &str) {
    let Ok((cand, ufrag)) = parse_candidate(text) else {
        return;
    };
    let line = write_candidate(&cand);
    match parse_candidate(&line) {
        Ok((again, None)) => assert_eq!(again, cand, "{line}"),
        Ok((_, Some(_))) => panic!("a written candidate carries a ufrag: {line}"),
        Err(e) => panic!("a written candidate does not parse: {e}: {line}"),
    }
    check_trickle(&[TrickleCandidate {
        mid: "0".into(),
        candidate: line,
        ufrag,
    }]);
}
