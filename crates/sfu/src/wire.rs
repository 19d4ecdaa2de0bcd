//! The SFU's own `message` payloads (SFU-DESIGN §3) and the data-channel envelope, until
//! the fuzzed parser in `message.rs` takes over: just what the core needs, never panics.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A browser's `{"sfu":...}` message.
#[derive(Debug)]
pub(crate) enum BrowserMsg {
    /// mid -> source of the browser's sending m-lines (for its next offer).
    Publish(Vec<(String, String)>),
    /// mid -> (width, height) of the tiles.
    View(Vec<(String, u32, u32)>),
}

#[derive(Deserialize)]
struct RawMsg<'a> {
    #[serde(borrow)]
    sfu: &'a str,
    #[serde(default)]
    tracks: Vec<RawTrack>,
}

#[derive(Deserialize)]
struct RawTrack {
    mid: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

const MAX_TRACKS: usize = 256;
const MAX_STR: usize = 64;

pub(crate) fn parse_browser_msg(json: &str) -> Option<BrowserMsg> {
    let raw: RawMsg = serde_json::from_str(json).ok()?;
    if raw.tracks.len() > MAX_TRACKS || raw.tracks.iter().any(|t| t.mid.len() > MAX_STR) {
        return None;
    }
    match raw.sfu {
        "publish" => Some(BrowserMsg::Publish(
            raw.tracks
                .into_iter()
                .filter_map(|t| {
                    let s = t.source?;
                    matches!(
                        s.as_str(),
                        "camera" | "microphone" | "screen" | "screen-audio"
                    )
                    .then_some((t.mid, s))
                })
                .collect(),
        )),
        "view" => Some(BrowserMsg::View(
            raw.tracks
                .into_iter()
                .map(|t| (t.mid, t.width.unwrap_or(0), t.height.unwrap_or(0)))
                .collect(),
        )),
        _ => None,
    }
}

/// One entry of a `tracks` message.
pub(crate) struct TrackEntry<'a> {
    pub mid: &'a str,
    pub peer: &'a str,
    pub source: &'a str,
    pub kind: &'a str,
}

pub(crate) fn render_tracks(tracks: &[TrackEntry<'_>]) -> String {
    let list: Vec<serde_json::Value> = tracks
        .iter()
        .map(|t| serde_json::json!({"mid": t.mid, "peer": t.peer, "source": t.source, "kind": t.kind}))
        .collect();
    serde_json::json!({"sfu": "tracks", "tracks": list}).to_string()
}

pub(crate) fn render_error(code: &str, reason: &str) -> String {
    serde_json::json!({"sfu": "error", "code": code, "reason": reason}).to_string()
}

pub(crate) fn render_layers(mid: &str, layer: &str) -> String {
    serde_json::json!({"sfu": "layers", "mid": mid, "layer": layer}).to_string()
}

#[allow(dead_code)] // the speaker message comes with speaker.rs
pub(crate) fn render_speaker(peer: Option<&str>) -> String {
    serde_json::json!({"sfu": "speaker", "peer": peer}).to_string()
}

/// A browser's data-channel text: `{"to": peer | absent, "data": <any>}`.
#[derive(Deserialize)]
pub(crate) struct DataIn<'a> {
    #[serde(default, borrow)]
    pub to: Option<&'a str>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

pub(crate) fn parse_data(text: &str) -> Option<DataIn<'_>> {
    serde_json::from_str(text).ok()
}

/// `{"from": peer, "data": <raw>}` without re-encoding `data`.
pub(crate) fn render_data(from: &str, data: &RawValue) -> String {
    let from = serde_json::to_string(from).unwrap_or_else(|_| "\"\"".into());
    let mut s = String::with_capacity(from.len() + data.get().len() + 20);
    s.push_str("{\"from\":");
    s.push_str(&from);
    s.push_str(",\"data\":");
    s.push_str(data.get());
    s.push('}');
    s
}

/// The SDP text of an `offer`/`answer` relay payload: a JSON string, or an object with
/// an `sdp` string.
pub(crate) fn sdp_of(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        Text(String),
        Obj { sdp: String },
    }
    match serde_json::from_str::<P>(payload).ok()? {
        P::Text(s) | P::Obj { sdp: s } => Some(s),
    }
}

/// The candidate line of a `candidate` payload (`{"candidate":"candidate:..."}` or a string).
pub(crate) fn candidate_of(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        Text(String),
        Obj { candidate: String },
    }
    match serde_json::from_str::<P>(payload).ok()? {
        P::Text(s) | P::Obj { candidate: s } => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let m = parse_browser_msg(
            r#"{"sfu":"publish","tracks":[{"mid":"0","source":"screen"},{"mid":"1","source":"bogus"}]}"#,
        );
        assert!(
            matches!(m, Some(BrowserMsg::Publish(v)) if v == vec![("0".to_string(), "screen".to_string())])
        );
        let m = parse_browser_msg(
            r#"{"sfu":"view","tracks":[{"mid":"3","width":320,"height":180},{"mid":"4"}]}"#,
        );
        assert!(
            matches!(m, Some(BrowserMsg::View(v)) if v == vec![("3".to_string(), 320, 180), ("4".to_string(), 0, 0)])
        );
        assert!(parse_browser_msg("nope").is_none());
        let d = parse_data(r#"{"to":"p1","data":{"x": [1, 2]}}"#).unwrap();
        assert_eq!(
            render_data("p\"0", d.data),
            r#"{"from":"p\"0","data":{"x": [1, 2]}}"#
        );
        assert_eq!(sdp_of(r#""v=0\r\n""#).unwrap(), "v=0\r\n");
        assert_eq!(sdp_of(r#"{"type":"offer","sdp":"v=0"}"#).unwrap(), "v=0");
    }
}
