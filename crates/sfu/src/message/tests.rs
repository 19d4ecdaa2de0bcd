use super::*;

fn round_trip(m: &SfuMessage<'_>) {
    let text = m.render();
    let again = SfuMessage::parse(&text).unwrap();
    assert_eq!(&again, m, "{text}");
}

#[test]
fn publish_parses_with_sources_and_renders_back() {
    let m = SfuMessage::parse(
        r#"{"sfu":"publish","tracks":[{"mid":"0","source":"camera"},{"mid":"1","source":"screen-audio"}],"extra":1}"#,
    )
    .unwrap();
    assert_eq!(
        m,
        SfuMessage::Publish(vec![
            PublishedTrack {
                mid: "0".into(),
                source: Source::Camera,
                peer: None,
            },
            PublishedTrack {
                mid: "1".into(),
                source: Source::ScreenAudio,
                peer: None,
            },
        ])
    );
    assert!(m.is_from_browser());
    assert_eq!(
        m.render(),
        r#"{"sfu":"publish","tracks":[{"mid":"0","source":"camera"},{"mid":"1","source":"screen-audio"}]}"#
    );
    round_trip(&m);
}

#[test]
fn publish_entries_may_name_the_peer_a_node_link_forwards_for() {
    let m = SfuMessage::parse(
        r#"{"sfu":"publish","tracks":[{"mid":"0","source":"camera","peer":"p1"},{"mid":"1","source":"microphone"}]}"#,
    )
    .unwrap();
    let SfuMessage::Publish(tracks) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(tracks[0].peer.as_deref(), Some("p1"));
    assert_eq!(tracks[1].peer, None);
    assert_eq!(
        m.render(),
        r#"{"sfu":"publish","tracks":[{"mid":"0","source":"camera","peer":"p1"},{"mid":"1","source":"microphone"}]}"#
    );
    round_trip(&m);
    let long = "p".repeat(MAX_PEER_LEN + 1);
    for bad in [
        r#"{"sfu":"publish","tracks":[{"mid":"0","source":"camera","peer":""}]}"#.to_string(),
        format!(
            r#"{{"sfu":"publish","tracks":[{{"mid":"0","source":"camera","peer":"{long}"}}]}}"#
        ),
        r#"{"sfu":"publish","tracks":[{"mid":"0","source":"camera","peer":7}]}"#.to_string(),
    ] {
        assert!(SfuMessage::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_input() {
    let text = r#"{"sfu":"tracks","tracks":[{"mid":"3","peer":"pabc","source":"microphone","kind":"audio"}]}"#;
    let SfuMessage::Tracks(t) = SfuMessage::parse(text).unwrap() else {
        panic!("not tracks")
    };
    assert!(matches!(t[0].mid, Cow::Borrowed("3")));
    assert!(matches!(t[0].peer, Cow::Borrowed("pabc")));
}

#[test]
fn tracks_render_their_kind_and_a_wrong_kind_is_refused() {
    let m = SfuMessage::Tracks(vec![RemoteTrack {
        mid: "3".into(),
        peer: "p0123456789abcdef".into(),
        source: Source::Screen,
    }]);
    assert_eq!(
        m.render(),
        r#"{"sfu":"tracks","tracks":[{"mid":"3","peer":"p0123456789abcdef","source":"screen","kind":"video"}]}"#
    );
    assert!(!m.is_from_browser());
    round_trip(&m);
    let wrong =
        r#"{"sfu":"tracks","tracks":[{"mid":"3","peer":"p","source":"screen","kind":"audio"}]}"#;
    assert!(matches!(
        SfuMessage::parse(wrong),
        Err(MessageError::KindMismatch(Source::Screen, MediaKind::Audio))
    ));
}

#[test]
fn view_rounds_fractions_defaults_missing_sides_to_hidden_and_bounds_sizes() {
    let m = SfuMessage::parse(
        r#"{"sfu":"view","tracks":[{"mid":"3","width":320.4,"height":180.6},{"mid":"4"},{"mid":"5","width":640,"height":0}]}"#,
    )
    .unwrap();
    let SfuMessage::View(tiles) = &m else {
        panic!("not view")
    };
    assert_eq!((tiles[0].width, tiles[0].height), (320, 181));
    assert!(!tiles[0].is_hidden());
    assert!(tiles[1].is_hidden());
    assert!(tiles[2].is_hidden());
    round_trip(&m);
    for bad in ["-1", "16385", "1e999"] {
        let text = format!(r#"{{"sfu":"view","tracks":[{{"mid":"3","width":{bad},"height":1}}]}}"#);
        assert!(
            matches!(
                SfuMessage::parse(&text),
                Err(MessageError::BadTileSize | MessageError::Json(_))
            ),
            "{bad}"
        );
    }
    let max =
        format!(r#"{{"sfu":"view","tracks":[{{"mid":"3","width":{MAX_TILE_SIDE},"height":1}}]}}"#);
    assert!(SfuMessage::parse(&max).is_ok());
}

#[test]
fn speaker_error_and_layers_round_trip_with_their_nulls() {
    for m in [
        SfuMessage::Speaker(Some("p1".into())),
        SfuMessage::Speaker(None),
        SfuMessage::Error {
            code: ErrorCode::BadSdp,
            reason: "no \"m=\" line\n".into(),
        },
        SfuMessage::Error {
            code: ErrorCode::Forbidden,
            reason: "".into(),
        },
        SfuMessage::Layers {
            mid: "3".into(),
            layer: Some("h".into()),
        },
        SfuMessage::Layers {
            mid: "3".into(),
            layer: None,
        },
    ] {
        round_trip(&m);
    }
    assert_eq!(
        SfuMessage::Speaker(None).render(),
        r#"{"sfu":"speaker","peer":null}"#
    );
    assert_eq!(
        SfuMessage::parse(r#"{"sfu":"speaker"}"#).unwrap(),
        SfuMessage::Speaker(None)
    );
    assert_eq!(
        SfuMessage::parse(r#"{"sfu":"error","code":"limit","reason":"full"}"#).unwrap(),
        SfuMessage::Error {
            code: ErrorCode::Limit,
            reason: "full".into()
        }
    );
    assert!(SfuMessage::parse(r#"{"sfu":"error","code":"oops"}"#).is_err());
    for code in [
        ErrorCode::BadSdp,
        ErrorCode::Unsupported,
        ErrorCode::Limit,
        ErrorCode::Forbidden,
        ErrorCode::BadMessage,
    ] {
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            format!("\"{}\"", code.as_str())
        );
    }
}

#[test]
fn sources_have_their_kind_default_and_wire_name() {
    for s in [
        Source::Camera,
        Source::Microphone,
        Source::Screen,
        Source::ScreenAudio,
    ] {
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    assert_eq!(Source::default_for(MediaKind::Video), Source::Camera);
    assert_eq!(Source::default_for(MediaKind::Audio), Source::Microphone);
    assert_eq!(Source::ScreenAudio.kind(), MediaKind::Audio);
    assert!(
        SfuMessage::parse(r#"{"sfu":"publish","tracks":[{"mid":"0","source":"webcam"}]}"#).is_err()
    );
}

#[test]
fn limits_on_counts_lengths_and_characters_hold() {
    let list = |n: usize| {
        let tracks: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"mid":"m{i}","source":"camera"}}"#))
            .collect();
        format!(r#"{{"sfu":"publish","tracks":[{}]}}"#, tracks.join(","))
    };
    assert!(SfuMessage::parse(&list(MAX_TRACKS)).is_ok());
    let err = SfuMessage::parse(&list(MAX_TRACKS + 1)).unwrap_err();
    assert!(matches!(err, MessageError::TooManyTracks(257)));
    assert_eq!(err.code(), ErrorCode::Limit);

    let long = format!(
        r#"{{"sfu":"speaker","peer":"{}"}}"#,
        "x".repeat(MAX_MESSAGE_LEN)
    );
    let err = SfuMessage::parse(&long).unwrap_err();
    assert!(matches!(err, MessageError::TooLong(_)));
    assert_eq!(err.code(), ErrorCode::Limit);

    let mid = |m: &str| format!(r#"{{"sfu":"layers","mid":"{m}","layer":"f"}}"#);
    assert!(SfuMessage::parse(&mid(&"a".repeat(MAX_MID_LEN))).is_ok());
    for bad in [
        String::new(),
        "a".repeat(MAX_MID_LEN + 1),
        "a-b".into(),
        "é".into(),
    ] {
        let err = SfuMessage::parse(&mid(&bad)).unwrap_err();
        assert!(matches!(err, MessageError::BadField("mid")), "{bad}");
        assert_eq!(err.code(), ErrorCode::BadMessage);
    }
    let layer = |l: &str| format!(r#"{{"sfu":"layers","mid":"1","layer":"{l}"}}"#);
    assert!(SfuMessage::parse(&layer("abcdefgh")).is_ok());
    assert!(SfuMessage::parse(&layer("abcdefghi")).is_err());

    let peer = |p: &str| format!(r#"{{"sfu":"speaker","peer":"{p}"}}"#);
    assert!(SfuMessage::parse(&peer(&"é".repeat(MAX_PEER_LEN))).is_ok());
    assert!(SfuMessage::parse(&peer(&"é".repeat(MAX_PEER_LEN + 1))).is_err());
    assert!(SfuMessage::parse(&peer("")).is_err());
    assert!(SfuMessage::parse(&peer("a\\\"b")).is_err());
    assert!(SfuMessage::parse(&peer("a\\u0001")).is_err());

    let reason = |n: usize| {
        format!(
            r#"{{"sfu":"error","code":"limit","reason":"{}"}}"#,
            "r".repeat(n)
        )
    };
    assert!(SfuMessage::parse(&reason(MAX_REASON_LEN)).is_ok());
    assert!(SfuMessage::parse(&reason(MAX_REASON_LEN + 1)).is_err());
}

#[test]
fn duplicate_mids_unknown_types_and_non_sfu_objects_are_refused() {
    let dup = r#"{"sfu":"view","tracks":[{"mid":"3","width":1,"height":1},{"mid":"3"}]}"#;
    assert!(matches!(
        SfuMessage::parse(dup),
        Err(MessageError::DuplicateMid(m)) if m == "3"
    ));
    assert!(matches!(
        SfuMessage::parse(r#"{"sfu":"mute","mid":"1"}"#),
        Err(MessageError::UnknownType(t)) if t == "mute"
    ));
    assert!(matches!(
        SfuMessage::parse(r#"{"hello":1}"#),
        Err(MessageError::NotSfu)
    ));
    for bad in [
        "",
        "[]",
        "null",
        "{",
        r#"{"sfu":3}"#,
        r#"{"sfu":"publish"}"#,
        r#"{"sfu":"publish","tracks":{}}"#,
    ] {
        assert!(SfuMessage::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn escaped_strings_parse_owned_and_into_owned_keeps_the_value() {
    let text = String::from(
        r#"{"sfu":"tracks","tracks":[{"mid":"\u0033","peer":"p\u00e9","source":"camera","kind":"video"}]}"#,
    );
    let m = SfuMessage::parse(&text).unwrap();
    let owned = m.clone().into_owned();
    drop(text);
    assert_eq!(
        owned,
        SfuMessage::Tracks(vec![RemoteTrack {
            mid: "3".into(),
            peer: "pé".into(),
            source: Source::Camera
        }])
    );
    round_trip(&owned);
    assert_eq!(owned.to_string(), owned.render());
}

#[test]
fn envelope_keeps_data_as_written_and_relays_it_byte_for_byte() {
    let text = r#"{"to":"p1","data":{"b": [1, 2.50, "\u00e9"], "a":null}}"#;
    let e = Envelope::parse(text).unwrap();
    assert_eq!(e.to, Some("p1"));
    assert_eq!(e.data.get(), r#"{"b": [1, 2.50, "\u00e9"], "a":null}"#);
    let relayed = Relayed {
        from: "p0",
        data: e.data,
    };
    let out = relayed.render();
    assert_eq!(
        out,
        r#"{"from":"p0","data":{"b": [1, 2.50, "\u00e9"], "a":null}}"#
    );
    let back = Relayed::parse(&out).unwrap();
    assert_eq!((back.from, back.data.get()), ("p0", e.data.get()));
    let mut buf = String::from("x");
    relayed.render_into(&mut buf);
    assert_eq!(&buf[1..], out);

    let broadcast = Envelope::parse(r#"{"data":"hi"}"#).unwrap();
    assert_eq!((broadcast.to, broadcast.data.get()), (None, "\"hi\""));
    assert_eq!(broadcast.render(), r#"{"data":"hi"}"#);
    let null_to = Envelope::parse(r#"{"to":null,"data":null}"#).unwrap();
    assert_eq!((null_to.to, null_to.data.get()), (None, "null"));
    let rendered = e.render();
    let e2 = Envelope::parse(&rendered).unwrap();
    assert_eq!((e2.to, e2.data.get()), (e.to, e.data.get()));
}

#[test]
fn bad_envelopes_are_refused() {
    for bad in [
        "",
        "hello",
        "[1]",
        r#"{"to":"p1"}"#,
        r#"{"to":"","data":1}"#,
        r#"{"to":5,"data":1}"#,
        r#"{"to":"p\"1","data":1}"#,
        r#"{"data":}"#,
        r#"{"data":1"#,
    ] {
        assert!(Envelope::parse(bad).is_err(), "{bad}");
    }
    let huge = format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX_MESSAGE_LEN));
    assert!(matches!(
        Envelope::parse(&huge),
        Err(MessageError::TooLong(_))
    ));
    assert!(Relayed::parse(r#"{"data":1}"#).is_err());
}
