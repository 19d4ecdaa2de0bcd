//! [`MediaSession`] written as the SDP a browser reads (JSEP's layout, as Chromium
//! writes it), with the lines the model does not keep rebuilt (`o=`, `c=`, the m-line
//! port, `a=rtcp`, `a=ice-options:trickle`).

use std::net::{IpAddr, Ipv4Addr};

use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};

use crate::candidate::write_candidate;
use crate::model::{MediaKind, MediaSection, MediaSession, Setup};

/// Writes SDP text (`\r\n` line ends).
pub fn write_sdp(sdp: &Session) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail; sdp-types writes only UTF-8 it was given as String.
    let _ = sdp.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes the model as a browser's SDP. `session_id` becomes the `o=` line's id (stable
/// per session so that a re-offer reads as the same session).
pub fn session_to_sdp(session: &MediaSession, session_id: u64) -> Session {
    let mut sdp = Session::new(
        Origin::with_ip_addr(session_id, 2, Ipv4Addr::LOCALHOST),
        "-",
    );
    sdp.add_time(Time::new(0, 0));
    if !session.bundle.is_empty() {
        sdp.add_attribute_with_value("group", format!("BUNDLE {}", session.bundle.join(" ")));
    }
    sdp.add_attribute_with_value("msid-semantic", " WMS");
    for m in &session.media {
        sdp.add_media(media_to_sdp(m));
    }
    sdp
}

fn media_to_sdp(m: &MediaSection) -> Media {
    // The default candidate's address on the m-line (RFC 8839 §4.2.1.2); before any
    // candidate (trickle), the discard port and 0.0.0.0 as JSEP writes them.
    let default = m
        .candidates
        .iter()
        .find(|c| c.component == 1 && c.protocol == "udp")
        .map(|c| (c.ip, c.port))
        .unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9));
    let (proto, fmt) = match m.kind {
        MediaKind::Data => (
            "UDP/DTLS/SCTP".to_string(),
            "webrtc-datachannel".to_string(),
        ),
        _ => {
            let pts: Vec<String> = m
                .codecs
                .iter()
                .map(|c| c.payload_type.to_string())
                .collect();
            ("UDP/TLS/RTP/SAVPF".to_string(), pts.join(" "))
        }
    };
    let mut media = Media {
        media: m.kind.as_str().to_string(),
        port: default.1,
        num_ports: None,
        proto,
        fmt,
        media_title: None,
        connections: vec![Connection::from_ip_addr(default.0)],
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    let mut add = |name: &str, value: Option<String>| {
        media.attributes.push(match value {
            Some(v) => Attribute::with_value(name, v),
            None => Attribute::new(name),
        })
    };
    if m.kind != MediaKind::Data {
        add("rtcp", Some("9 IN IP4 0.0.0.0".into()));
    }
    for c in &m.candidates {
        let line = write_candidate(c);
        add(
            "candidate",
            Some(line.trim_start_matches("candidate:").to_string()),
        );
    }
    if let Some(u) = &m.ice_ufrag {
        add("ice-ufrag", Some(u.clone()));
    }
    if let Some(p) = &m.ice_pwd {
        add("ice-pwd", Some(p.clone()));
    }
    // Jingle always allows trickle (XEP-0176 transport-info).
    add("ice-options", Some("trickle".into()));
    if let Some(f) = &m.fingerprint {
        add("fingerprint", Some(crate::sdp::fingerprint_text(f)));
    }
    if let Some(s) = m.setup {
        let s = match s {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
        };
        add("setup", Some(s.into()));
    }
    add("mid", Some(m.mid.clone()));
    for x in &m.header_extensions {
        let id = match x.direction {
            Some(d) => format!("{}/{}", x.id, d.as_str()),
            None => x.id.to_string(),
        };
        add("extmap", Some(format!("{id} {}", x.uri)));
    }
    if m.kind != MediaKind::Data {
        add(m.direction.as_str(), None);
        if let Some(msid) = &m.msid {
            add("msid", Some(msid.clone()));
        }
    }
    if m.rtcp_mux {
        add("rtcp-mux", None);
    }
    for c in &m.codecs {
        let enc = if c.channels > 1 {
            format!(
                "{} {}/{}/{}",
                c.payload_type, c.name, c.clock_rate, c.channels
            )
        } else {
            format!("{} {}/{}", c.payload_type, c.name, c.clock_rate)
        };
        add("rtpmap", Some(enc));
        for (t, s) in &c.feedback {
            let v = match s {
                Some(s) => format!("{} {t} {s}", c.payload_type),
                None => format!("{} {t}", c.payload_type),
            };
            add("rtcp-fb", Some(v));
        }
        if !c.parameters.is_empty() {
            let params: Vec<String> = c
                .parameters
                .iter()
                .map(|(n, v)| {
                    if n.is_empty() {
                        v.clone()
                    } else {
                        format!("{n}={v}")
                    }
                })
                .collect();
            add(
                "fmtp",
                Some(format!("{} {}", c.payload_type, params.join(";"))),
            );
        }
    }
    for g in &m.source_groups {
        let ids: Vec<String> = g.ssrcs.iter().map(u32::to_string).collect();
        add(
            "ssrc-group",
            Some(format!("{} {}", g.semantics, ids.join(" "))),
        );
    }
    for s in &m.sources {
        for (n, v) in &s.parameters {
            add(
                "ssrc",
                Some(match v {
                    Some(v) => format!("{} {n}:{v}", s.ssrc),
                    None => format!("{} {n}", s.ssrc),
                }),
            );
        }
    }
    if let Some(sctp) = m.sctp {
        add("sctp-port", Some(sctp.port.to_string()));
        if let Some(size) = sctp.max_message_size {
            add("max-message-size", Some(size.to_string()));
        }
    }
    media
}
