//! For links without trickle ICE (SIP): a browser's description waits for its candidates,
//! which the SDK relays one by one and without an end-of-candidates, then leaves with
//! them written in (`a=candidate` per m-section, by mid, and `a=end-of-candidates`).
//! Gathering counts as settled after a quiet spell, or at a bound: host candidates come
//! at once, a TURN relay candidate within a round trip to the server.

use std::time::{Duration, Instant};
use switchboard_xmpp::TrickleCandidate;

/// No new candidate for this long: gathering is over.
const QUIET: Duration = Duration::from_millis(500);
/// The description leaves by then whatever still comes.
const BOUND: Duration = Duration::from_secs(3);
/// Candidates written into one description at most.
const MAX_CANDIDATES: usize = 64;

pub struct Gathering {
    sdp: String,
    candidates: Vec<TrickleCandidate>,
    quiet_at: Instant,
    bound: Instant,
}

impl Gathering {
    pub fn new(sdp: String, now: Instant) -> Gathering {
        Gathering {
            sdp,
            candidates: Vec::new(),
            quiet_at: now + QUIET,
            bound: now + BOUND,
        }
    }

    pub fn add(&mut self, c: TrickleCandidate, now: Instant) {
        if self.candidates.len() < MAX_CANDIDATES {
            self.candidates.push(c);
        }
        self.quiet_at = now + QUIET;
    }

    /// When the description should leave.
    pub fn due(&self) -> Instant {
        self.quiet_at.min(self.bound)
    }

    /// The description with the candidates written in.
    pub fn finish(self) -> String {
        with_candidates(&self.sdp, &self.candidates)
    }
}

/// `sdp` with `candidates` added to the m-sections of their mid, each section closed by
/// `a=end-of-candidates` (RFC 8840 §4.1); candidates already there are kept.
pub fn with_candidates(sdp: &str, candidates: &[TrickleCandidate]) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 96);
    let mut mid: Option<&str> = None;
    let mut in_media = false;
    let close = |out: &mut String, mid: Option<&str>, in_media: bool| {
        if !in_media {
            return;
        }
        for c in candidates.iter().filter(|c| Some(c.mid.as_str()) == mid) {
            let line = c.candidate.strip_prefix("a=").unwrap_or(&c.candidate);
            out.push_str("a=");
            out.push_str(line);
            out.push_str(eol);
        }
        out.push_str("a=end-of-candidates");
        out.push_str(eol);
    };
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            close(&mut out, mid, in_media);
            in_media = true;
            mid = None;
        }
        if line == "a=end-of-candidates" {
            continue;
        }
        if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m);
        }
        out.push_str(line);
        out.push_str(eol);
    }
    close(&mut out, mid, in_media);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(mid: &str, port: u16) -> TrickleCandidate {
        TrickleCandidate {
            mid: mid.into(),
            candidate: format!("candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host"),
            ufrag: None,
        }
    }

    #[test]
    fn candidates_land_in_the_section_of_their_mid() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=end-of-candidates\r\n";
        let out = with_candidates(sdp, &[cand("1", 5001), cand("0", 5000), cand("9", 1)]);
        let lines: Vec<&str> = out.split("\r\n").collect();
        let audio = lines.iter().position(|l| l.contains(" 5000 ")).unwrap();
        let video = lines.iter().position(|l| l.contains(" 5001 ")).unwrap();
        let m_video = lines.iter().position(|l| l.starts_with("m=video")).unwrap();
        assert!(audio < m_video && video > m_video, "{out}");
        assert_eq!(out.matches("a=end-of-candidates").count(), 2, "{out}");
        assert!(!out.contains(" 1 typ"), "a candidate of no section: {out}");
        assert!(lines[audio].starts_with("a=candidate:1 1 udp"));
        assert!(out.ends_with("a=end-of-candidates\r\n"));
    }

    #[test]
    fn settles_after_quiet_or_at_the_bound() {
        let t0 = Instant::now();
        let mut g = Gathering::new("v=0\n".into(), t0);
        assert_eq!(g.due(), t0 + QUIET);
        for i in 1..=10u32 {
            g.add(cand("0", 5000), t0 + Duration::from_millis(400) * i);
        }
        assert_eq!(g.due(), t0 + BOUND);
    }
}
