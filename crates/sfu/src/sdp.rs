//! The little SDP reading the SFU does itself, on the text, before str0m sees an offer:
//! which m-lines the browser sends on (its published tracks), and refusing some of them
//! (no `publish` grant, over a limit) by turning their direction into one that does not
//! send, so str0m's answer refuses them and nothing else changes. str0m parses the rest.

/// The kind of an m-line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SectionKind {
    Audio,
    Video,
    Other,
}

/// One m-section as offered: its mid and whether the offerer sends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Section {
    pub kind: SectionKind,
    pub mid: String,
    pub sends: bool,
    /// Port 0: rejected / stopped.
    pub stopped: bool,
}

/// The m-sections of an SDP, in order. `None` if an audio/video section has no mid
/// (str0m would refuse it too; BUNDLE requires mids).
pub(crate) fn sections(sdp: &str) -> Option<Vec<Section>> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split(' ');
            let kind = match parts.next() {
                Some("audio") => SectionKind::Audio,
                Some("video") => SectionKind::Video,
                _ => SectionKind::Other,
            };
            let stopped = parts.next() == Some("0");
            out.push(Section {
                kind,
                mid: String::new(),
                sends: true, // RFC 4566: sendrecv unless said otherwise
                stopped,
            });
        } else if let Some(cur) = out.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                cur.mid = mid.trim().to_string();
            } else if line == "a=recvonly" || line == "a=inactive" {
                cur.sends = false;
            } else if line == "a=sendonly" || line == "a=sendrecv" {
                cur.sends = true;
            }
        }
    }
    if out
        .iter()
        .any(|s| s.kind != SectionKind::Other && s.mid.is_empty())
    {
        return None;
    }
    Some(out)
}

/// `sdp` with the sending direction of the sections whose mid is in `refuse` removed
/// (`sendrecv` -> `recvonly`, `sendonly` -> `inactive`).
pub(crate) fn refuse_sending(sdp: &str, refuse: &[String]) -> String {
    let mut out = String::with_capacity(sdp.len());
    // Directions come after a=mid in some SDPs and before it in others: collect a
    // section, then emit it.
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let refused = section.iter().any(|l| {
            l.trim_end_matches('\r')
                .strip_prefix("a=mid:")
                .is_some_and(|m| refuse.iter().any(|r| r == m.trim()))
        });
        for l in section.drain(..) {
            let (body, cr) = match l.strip_suffix('\r') {
                Some(b) => (b, "\r"),
                None => (l, ""),
            };
            let body = match body {
                "a=sendrecv" if refused => "a=recvonly",
                "a=sendonly" if refused => "a=inactive",
                other => other,
            };
            out.push_str(body);
            out.push_str(cr);
            out.push('\n');
        }
    };
    for line in sdp.split_inclusive('\n') {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    if !sdp.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=mid:1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n";

    #[test]
    fn sections_and_directions() {
        let s = sections(OFFER).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(
            (s[0].kind, s[0].mid.as_str(), s[0].sends),
            (SectionKind::Audio, "0", true)
        );
        assert_eq!(
            (s[1].kind, s[1].mid.as_str(), s[1].sends),
            (SectionKind::Video, "1", true)
        );
        assert!(!s[2].sends);
        assert_eq!(s[3].kind, SectionKind::Other);
    }

    #[test]
    fn refusing_turns_off_sending_only_there() {
        let out = refuse_sending(OFFER, &["0".into(), "1".into()]);
        let s = sections(&out).unwrap();
        assert!(!s[0].sends && !s[1].sends && !s[2].sends);
        assert!(out.contains("a=mid:0\r\na=recvonly\r\n"));
        assert!(out.contains("a=inactive\r\na=mid:1\r\n"));
        assert_eq!(out.len(), OFFER.len());
        assert_eq!(refuse_sending(OFFER, &[]), OFFER);
    }

    #[test]
    fn missing_mid_is_refused() {
        assert!(sections("v=0\r\nm=audio 9 X 0\r\na=sendrecv\r\n").is_none());
    }
}
