//! The mapper's round trip as a property: for any session a browser could describe (within
//! what the model keeps), SDP -> Jingle -> XML -> Jingle -> SDP gives the same session,
//! from either side, and the SDP text alone round-trips too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use switchboard_xmpp::model::*;
use switchboard_xmpp::xmpp_parsers::jingle::Action;
use switchboard_xmpp::*;

fn word() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9+/._-]{0,11}"
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive)
    ]
}

fn candidate() -> impl Strategy<Value = Candidate> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ];
    let kind = prop_oneof![
        Just(CandidateType::Host),
        Just(CandidateType::Srflx),
        Just(CandidateType::Prflx),
        Just(CandidateType::Relay)
    ];
    (
        (
            "[a-zA-Z0-9+/]{1,32}",
            1u8..=2,
            prop_oneof![Just("udp"), Just("tcp")],
            any::<u32>(),
        ),
        (
            ip.clone(),
            any::<u16>(),
            kind,
            option::of((ip, any::<u16>())),
        ),
        (
            option::of(prop_oneof![Just("active"), Just("passive"), Just("so")]),
            any::<u32>(),
            option::of(any::<u32>()),
        ),
    )
        .prop_map(
            |(
                (foundation, component, protocol, priority),
                (ip, port, kind, related),
                (tcp, generation, network_id),
            )| Candidate {
                foundation,
                component,
                protocol: protocol.to_string(),
                priority,
                ip,
                port,
                kind,
                related,
                tcp_type: tcp.map(str::to_string),
                generation,
                network_id,
            },
        )
}

fn codec(payload_type: u8) -> impl Strategy<Value = Codec> {
    let parameter = prop_oneof![
        ("[a-z][a-z0-9-]{0,15}", "[A-Za-z0-9/.-]{1,12}").prop_map(|(n, v)| (n, v)),
        "[0-9][0-9/-]{0,8}".prop_map(|v| (String::new(), v)),
    ];
    let feedback = ("[a-z][a-z-]{0,10}", option::of("[a-z]{1,6}"))
        .prop_filter("trr-int is not kept", |(t, _)| t != "trr-int");
    (
        "[A-Za-z0-9][A-Za-z0-9-]{0,11}",
        1u32..200_000,
        1u8..=8,
        vec(parameter, 0..4),
        vec(feedback, 0..4),
    )
        .prop_map(
            move |(name, clock_rate, channels, parameters, feedback)| Codec {
                payload_type,
                name,
                clock_rate,
                channels,
                parameters,
                feedback,
            },
        )
}

fn rtp_section(mid: String, kind: MediaKind) -> impl Strategy<Value = MediaSection> {
    let codecs = proptest::sample::subsequence((0u8..=127).collect::<Vec<_>>(), 1..6)
        .prop_shuffle()
        .prop_flat_map(|pts| pts.into_iter().map(codec).collect::<Vec<_>>());
    let extension = (
        1u16..=255,
        "urn:[a-z0-9:.-]{1,20}",
        option::of(prop_oneof![
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly)
        ]),
    )
        .prop_map(|(id, uri, direction)| HeaderExtension { id, uri, direction });
    let sources = (
        proptest::collection::btree_set(any::<u32>(), 0..4),
        option::of("[a-z0-9-]{1,10} [a-z0-9-]{1,10}"),
        word(),
    )
        .prop_map(|(ids, msid, cname)| {
            let sources: Vec<Source> = ids
                .into_iter()
                .map(|ssrc| {
                    let mut parameters = vec![("cname".to_string(), Some(cname.clone()))];
                    if let Some(m) = &msid {
                        parameters.push(("msid".to_string(), Some(m.clone())));
                    }
                    Source { ssrc, parameters }
                })
                .collect();
            let msid = if sources.is_empty() { None } else { msid };
            (sources, msid)
        });
    let groups = vec(
        (
            prop_oneof![Just("FID"), Just("FEC"), Just("LS")],
            vec(any::<u32>(), 1..4),
        )
            .prop_map(|(s, ssrcs)| SourceGroup {
                semantics: s.to_string(),
                ssrcs,
            }),
        0..2,
    );
    (
        codecs,
        vec(extension, 0..4),
        sources,
        groups,
        direction(),
        any::<bool>(),
        transport(),
    )
        .prop_map(
            move |(
                codecs,
                header_extensions,
                (sources, msid),
                source_groups,
                direction,
                rtcp_mux,
                t,
            )| MediaSection {
                kind,
                mid: mid.clone(),
                direction,
                codecs,
                header_extensions,
                sources,
                source_groups,
                msid,
                rtcp_mux,
                ice_ufrag: t.0,
                ice_pwd: t.1,
                fingerprint: t.2.as_ref().map(|(f, _)| f.clone()),
                setup: t.2.map(|(_, s)| s),
                candidates: t.3,
                sctp: None,
            },
        )
}

type TransportParts = (
    Option<String>,
    Option<String>,
    Option<(Fingerprint, Setup)>,
    Vec<Candidate>,
);

fn transport() -> impl Strategy<Value = TransportParts> {
    let fingerprint = (
        prop_oneof![Just("sha-1"), Just("sha-256"), Just("sha-512")],
        vec(any::<u8>(), 1..=64),
        prop_oneof![
            Just(Setup::ActPass),
            Just(Setup::Active),
            Just(Setup::Passive)
        ],
    )
        .prop_map(|(hash, value, setup)| {
            (
                Fingerprint {
                    hash: hash.to_string(),
                    value,
                },
                setup,
            )
        });
    (
        option::of("[A-Za-z0-9+/]{4,32}"),
        option::of("[A-Za-z0-9+/]{22,40}"),
        option::of(fingerprint),
        vec(candidate(), 0..4),
    )
}

fn data_section(mid: String) -> impl Strategy<Value = MediaSection> {
    (transport(), any::<u16>(), option::of(any::<u64>())).prop_map(
        move |(t, port, max_message_size)| MediaSection {
            kind: MediaKind::Data,
            mid: mid.clone(),
            direction: Direction::SendRecv,
            codecs: Vec::new(),
            header_extensions: Vec::new(),
            sources: Vec::new(),
            source_groups: Vec::new(),
            msid: None,
            rtcp_mux: false,
            ice_ufrag: t.0,
            ice_pwd: t.1,
            fingerprint: t.2.as_ref().map(|(f, _)| f.clone()),
            setup: t.2.map(|(_, s)| s),
            candidates: t.3,
            sctp: Some(Sctp {
                port,
                max_message_size,
            }),
        },
    )
}

fn session() -> impl Strategy<Value = MediaSession> {
    vec(0u8..3, 0..4)
        .prop_flat_map(|kinds| {
            kinds
                .into_iter()
                .enumerate()
                .map(|(i, k)| {
                    let mid = format!("m{i}");
                    match k {
                        0 => rtp_section(mid, MediaKind::Audio).boxed(),
                        1 => rtp_section(mid, MediaKind::Video).boxed(),
                        _ => data_section(mid).boxed(),
                    }
                })
                .collect::<Vec<_>>()
        })
        .prop_flat_map(|media| {
            let mids: Vec<String> = media.iter().map(|m| m.mid.clone()).collect();
            let n = mids.len();
            (Just(media), proptest::sample::subsequence(mids, 0..=n))
        })
        .prop_map(|(media, bundle)| MediaSession { bundle, media })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sdp_to_jingle_to_sdp_keeps_the_session(session in session(), initiator in any::<bool>()) {
        let side = if initiator { Side::Initiator } else { Side::Responder };
        let params = JingleParams {
            action: if initiator { Action::SessionInitiate } else { Action::SessionAccept },
            sid: "sid1".into(),
            side,
            initiator: None,
            responder: None,
        };
        // The SDP text the model writes reads back as the same model.
        let text = write_sdp(&session_to_sdp(&session, 7));
        let read = session_from_sdp(&parse_sdp(&text).unwrap()).unwrap();
        prop_assert_eq!(&read, &session, "SDP:\n{}", text);
        // Through Jingle and its XML text.
        let jingle = sdp_to_jingle(&parse_sdp(&text).unwrap(), &params).unwrap();
        let xml = jingle_to_xml(&jingle);
        let parsed = parse_jingle_xml(&xml).unwrap();
        prop_assert_eq!(&parsed, &jingle);
        let back = session_from_sdp(&parse_sdp(&write_sdp(&jingle_to_sdp(&parsed, side).unwrap())).unwrap()).unwrap();
        prop_assert_eq!(&back, &session, "XML:\n{}", xml);
    }

    #[test]
    fn trickled_candidates_survive_transport_info(cands in vec((0u8..3, candidate(), option::of("[a-z0-9]{4,8}")), 1..8)) {
        let trickled: Vec<TrickleCandidate> = cands
            .iter()
            .map(|(mid, c, ufrag)| TrickleCandidate { mid: format!("m{mid}"), candidate: write_candidate(c), ufrag: ufrag.clone() })
            .collect();
        let xml = jingle_to_xml(&candidates_to_transport_info("sid1", &trickled).unwrap());
        let mut back = transport_info_to_candidates(&parse_jingle_xml(&xml).unwrap()).unwrap();
        // Grouped per (mid, ufrag) in order of first appearance: compare as multisets.
        let mut expected = trickled.clone();
        let key = |t: &TrickleCandidate| (t.mid.clone(), t.ufrag.clone(), t.candidate.clone());
        expected.sort_by_key(key);
        back.sort_by_key(key);
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn candidate_text_round_trips(c in candidate()) {
        let line = write_candidate(&c);
        prop_assert_eq!(parse_candidate(&line).unwrap(), (c, None));
    }
}
