//! The SFU's own wire formats, parsed and rendered here and nowhere else (fuzzed by
//! `fuzz/fuzz_targets/sfu_message.rs`):
//!
//! - the `data` object of signaling `message` relays between a browser and the SFU
//!   (`{"sfu":"publish"|"tracks"|"view"|"speaker"|"error"|"layers",…}`, see
//!   docs/signaling.md "SFU rooms"): [`SfuMessage`];
//! - the data-channel envelope a browser sends (`{"to":"<peer>"?,"data":<any>}`,
//!   [`Envelope`]) and the one the SFU relays (`{"from":"<peer>","data":<same>}`,
//!   [`Relayed`]). `data` stays the sender's raw JSON text: the SFU never re-encodes it.
//!
//! Everything comes from the network, so parsing is strict and bounded: at most
//! [`MAX_MESSAGE_LEN`] bytes, [`MAX_TRACKS`] tracks, mids and rids the way str0m can hold
//! them without aliasing ([`MAX_MID_LEN`], [`MAX_RID_LEN`], ASCII letters, digits and `_`),
//! peer ids of at most [`MAX_PEER_LEN`] characters, sources and error codes from closed
//! sets, no duplicate mid in one list. A parse never panics; whatever parses renders to
//! JSON that parses back to the same value. Unknown fields are ignored (a newer SDK may
//! send more), unknown `sfu` types are an error the caller may ignore.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

mod envelope;

pub use envelope::{Envelope, Relayed};

/// The most bytes a `message` payload or a data-channel envelope may have (the hub's
/// default frame limit; bounds what one parse may allocate).
pub const MAX_MESSAGE_LEN: usize = 65536;
/// The most entries of a `publish`, `tracks` or `view` list.
pub const MAX_TRACKS: usize = 256;
/// The longest mid (str0m's `Mid` holds 16 bytes).
pub const MAX_MID_LEN: usize = 16;
/// The longest simulcast rid (str0m's `Rid` holds 8 bytes).
pub const MAX_RID_LEN: usize = 8;
/// The longest peer id, in characters (the hub's limit for references).
pub const MAX_PEER_LEN: usize = 64;
/// The longest `reason` of an `error`, in characters.
pub const MAX_REASON_LEN: usize = 512;
/// The largest tile side a `view` may report, in device pixels.
pub const MAX_TILE_SIDE: u32 = 16384;

/// What a track carries, as the SDK names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The camera (video, simulcast).
    Camera,
    /// The microphone (audio).
    Microphone,
    /// A screen share (video, one layer).
    Screen,
    /// The audio of a screen share.
    ScreenAudio,
}

impl Source {
    /// The media kind this source always has.
    pub fn kind(self) -> MediaKind {
        match self {
            Source::Camera | Source::Screen => MediaKind::Video,
            Source::Microphone | Source::ScreenAudio => MediaKind::Audio,
        }
    }

    /// The source of a sending m-line a `publish` did not list: camera for video,
    /// microphone for audio.
    pub fn default_for(kind: MediaKind) -> Source {
        match kind {
            MediaKind::Video => Source::Camera,
            MediaKind::Audio => Source::Microphone,
        }
    }

    /// The name on the wire (`"screen-audio"`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Microphone => "microphone",
            Source::Screen => "screen",
            Source::ScreenAudio => "screen-audio",
        }
    }
}

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// An audio m-line.
    Audio,
    /// A video m-line.
    Video,
}

/// The `code` of an `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The SDP could not be parsed or applied.
    BadSdp,
    /// A codec or feature the SFU does not forward.
    Unsupported,
    /// A room or participant limit was reached.
    Limit,
    /// The participant's grants do not allow it (publish/subscribe).
    Forbidden,
    /// A `message` to the SFU that it could not parse.
    BadMessage,
}

impl ErrorCode {
    /// The name on the wire (`"bad-sdp"`…).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadSdp => "bad-sdp",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Limit => "limit",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BadMessage => "bad-message",
        }
    }
}

/// One sending m-line of a browser, in a `publish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedTrack<'a> {
    /// The m-line's mid in the browser's next offer.
    pub mid: Cow<'a, str>,
    /// What it carries.
    pub source: Source,
    /// The peer whose track this is, when the sender forwards it for someone else: only a
    /// node link (`Sfu::set_link`) may name one; a browser's own tracks have none.
    pub peer: Option<Cow<'a, str>>,
}

/// One remote track on a browser's connection, in a `tracks` map. Its kind is
/// `source.kind()` (rendered as `"kind"`, checked when parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteTrack<'a> {
    /// The m-line of the browser's connection that carries it.
    pub mid: Cow<'a, str>,
    /// The peer that publishes it.
    pub peer: Cow<'a, str>,
    /// What it carries.
    pub source: Source,
}

/// The tile size one remote video is shown at, in a `view`; 0×0 is hidden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileView<'a> {
    /// The m-line of the remote video.
    pub mid: Cow<'a, str>,
    /// Width in device pixels (a fraction on the wire is rounded).
    pub width: u32,
    /// Height in device pixels.
    pub height: u32,
}

impl TileView<'_> {
    /// Whether the tile is hidden (either side 0): the SFU pauses that video.
    pub fn is_hidden(&self) -> bool {
        self.width == 0 || self.height == 0
    }
}

/// A `message` payload between a browser and the SFU (docs/signaling.md "SFU rooms").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SfuMessage<'a> {
    /// B→S, before each browser offer: the sources of its sending m-lines.
    Publish(Vec<PublishedTrack<'a>>),
    /// S→B, before each SFU offer and on every change: all remote tracks of its connection.
    Tracks(Vec<RemoteTrack<'a>>),
    /// B→S, on layout changes: the tile sizes of the remote videos (a mid left out is hidden).
    View(Vec<TileView<'a>>),
    /// S→B: the dominant speaker changed (`None`: silence).
    Speaker(Option<Cow<'a, str>>),
    /// S→B: a refusal.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// For people, at most [`MAX_REASON_LEN`] characters.
        reason: Cow<'a, str>,
    },
    /// S→B, informative: the simulcast layer (rid) now forwarded on a mid (`None`: paused).
    Layers {
        /// The m-line of the remote video.
        mid: Cow<'a, str>,
        /// The rid forwarded, or `None` when paused.
        layer: Option<Cow<'a, str>>,
    },
    /// B→S: the browser uses another SFU of the room from now on (in a cluster, its own
    /// node's edge): drop its connection and tracks here at once, without `gone`.
    Leave,
}

/// Why a message or envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Longer than [`MAX_MESSAGE_LEN`].
    #[error("message of {0} bytes, at most {MAX_MESSAGE_LEN}")]
    TooLong(usize),
    /// Not JSON of the expected shape (missing or mistyped field, unknown source…).
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// An object without a string `sfu` field.
    #[error("not an SFU message (no \"sfu\" field)")]
    NotSfu,
    /// An `sfu` type this version does not know (ignoring it is fine).
    #[error("unknown SFU message type {0:?}")]
    UnknownType(String),
    /// More than [`MAX_TRACKS`] entries.
    #[error("{0} tracks, at most {MAX_TRACKS}")]
    TooManyTracks(usize),
    /// A mid, rid, peer id or reason that is empty, too long or of forbidden characters.
    #[error("invalid {0}")]
    BadField(&'static str),
    /// The same mid twice in one list.
    #[error("mid {0:?} listed twice")]
    DuplicateMid(String),
    /// A `tracks` entry whose `kind` does not match its `source`.
    #[error("kind {1:?} does not match source {0:?}")]
    KindMismatch(Source, MediaKind),
    /// A tile side negative, not finite or above [`MAX_TILE_SIDE`].
    #[error("tile size out of range (0..={MAX_TILE_SIDE})")]
    BadTileSize,
}

impl MessageError {
    /// The `error` code to answer a browser with.
    pub fn code(&self) -> ErrorCode {
        match self {
            MessageError::TooLong(_) | MessageError::TooManyTracks(_) => ErrorCode::Limit,
            _ => ErrorCode::BadMessage,
        }
    }
}

// ---- wire shapes (serde) ----

#[derive(Deserialize)]
struct TagIn<'a> {
    #[serde(borrow, default)]
    sfu: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TracksIn<T> {
    tracks: Vec<T>,
}

#[derive(Deserialize)]
struct PublishedIn<'a> {
    #[serde(borrow)]
    mid: Cow<'a, str>,
    source: Source,
    #[serde(borrow, default)]
    peer: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RemoteIn<'a> {
    #[serde(borrow)]
    mid: Cow<'a, str>,
    #[serde(borrow)]
    peer: Cow<'a, str>,
    source: Source,
    kind: MediaKind,
}

#[derive(Deserialize)]
struct ViewIn<'a> {
    #[serde(borrow)]
    mid: Cow<'a, str>,
    #[serde(default)]
    width: f64,
    #[serde(default)]
    height: f64,
}

#[derive(Deserialize)]
struct SpeakerIn<'a> {
    #[serde(borrow, default)]
    peer: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorIn<'a> {
    code: ErrorCode,
    #[serde(borrow, default)]
    reason: Cow<'a, str>,
}

#[derive(Deserialize)]
struct LayersIn<'a> {
    #[serde(borrow)]
    mid: Cow<'a, str>,
    #[serde(borrow, default)]
    layer: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(tag = "sfu", rename_all = "kebab-case")]
enum Out<'m> {
    Publish {
        tracks: Vec<PublishedOut<'m>>,
    },
    Tracks {
        tracks: Vec<RemoteOut<'m>>,
    },
    View {
        tracks: Vec<ViewOut<'m>>,
    },
    Speaker {
        peer: Option<&'m str>,
    },
    Error {
        code: ErrorCode,
        reason: &'m str,
    },
    Layers {
        mid: &'m str,
        layer: Option<&'m str>,
    },
    Leave {},
}

#[derive(Serialize)]
struct PublishedOut<'m> {
    mid: &'m str,
    source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'m str>,
}

#[derive(Serialize)]
struct RemoteOut<'m> {
    mid: &'m str,
    peer: &'m str,
    source: Source,
    kind: MediaKind,
}

#[derive(Serialize)]
struct ViewOut<'m> {
    mid: &'m str,
    width: u32,
    height: u32,
}

pub(crate) fn check_len(text: &str) -> Result<(), MessageError> {
    if text.len() > MAX_MESSAGE_LEN {
        return Err(MessageError::TooLong(text.len()));
    }
    Ok(())
}

/// A mid or rid str0m holds as it is: 1..=`max` ASCII letters, digits or `_`.
fn token_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_mid(mid: &str) -> Result<(), MessageError> {
    if token_ok(mid, MAX_MID_LEN) {
        Ok(())
    } else {
        Err(MessageError::BadField("mid"))
    }
}

/// Whether `peer` is a peer id the SFU accepts: 1..=[`MAX_PEER_LEN`] characters, none
/// that JSON must escape (`"`, `\\`, control characters), so it is always read in place.
pub fn is_valid_peer(peer: &str) -> bool {
    !peer.is_empty()
        && peer.chars().nth(MAX_PEER_LEN).is_none()
        && !peer
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
}

pub(crate) fn check_peer(peer: &str) -> Result<(), MessageError> {
    if is_valid_peer(peer) {
        Ok(())
    } else {
        Err(MessageError::BadField("peer"))
    }
}

fn check_count(n: usize) -> Result<(), MessageError> {
    if n > MAX_TRACKS {
        return Err(MessageError::TooManyTracks(n));
    }
    Ok(())
}

/// No mid twice; n ≤ 256 so the quadratic scan is at most ~33k comparisons.
fn check_unique<'s>(mids: impl Iterator<Item = &'s str> + Clone) -> Result<(), MessageError> {
    for (i, a) in mids.clone().enumerate() {
        if mids.clone().skip(i + 1).any(|b| b == a) {
            return Err(MessageError::DuplicateMid(a.to_owned()));
        }
    }
    Ok(())
}

fn tile_side(v: f64) -> Result<u32, MessageError> {
    if !v.is_finite() || !(0.0..=f64::from(MAX_TILE_SIDE)).contains(&v) {
        return Err(MessageError::BadTileSize);
    }
    // In range and finite, so the cast is exact after rounding.
    Ok(v.round() as u32)
}

impl<'a> SfuMessage<'a> {
    /// Parses a `message` payload (the relay's `data` object, as JSON text).
    pub fn parse(json: &'a str) -> Result<SfuMessage<'a>, MessageError> {
        check_len(json)?;
        let tag: TagIn<'a> = serde_json::from_str(json)?;
        let Some(tag) = tag.sfu else {
            return Err(MessageError::NotSfu);
        };
        match &*tag {
            "publish" => {
                let m: TracksIn<PublishedIn<'a>> = serde_json::from_str(json)?;
                check_count(m.tracks.len())?;
                for t in &m.tracks {
                    check_mid(&t.mid)?;
                    if let Some(peer) = &t.peer {
                        check_peer(peer)?;
                    }
                }
                check_unique(m.tracks.iter().map(|t| &*t.mid))?;
                Ok(SfuMessage::Publish(
                    m.tracks
                        .into_iter()
                        .map(|t| PublishedTrack {
                            mid: t.mid,
                            source: t.source,
                            peer: t.peer,
                        })
                        .collect(),
                ))
            }
            "tracks" => {
                let m: TracksIn<RemoteIn<'a>> = serde_json::from_str(json)?;
                check_count(m.tracks.len())?;
                for t in &m.tracks {
                    check_mid(&t.mid)?;
                    check_peer(&t.peer)?;
                    if t.kind != t.source.kind() {
                        return Err(MessageError::KindMismatch(t.source, t.kind));
                    }
                }
                check_unique(m.tracks.iter().map(|t| &*t.mid))?;
                Ok(SfuMessage::Tracks(
                    m.tracks
                        .into_iter()
                        .map(|t| RemoteTrack {
                            mid: t.mid,
                            peer: t.peer,
                            source: t.source,
                        })
                        .collect(),
                ))
            }
            "leave" => Ok(SfuMessage::Leave),
            "view" => {
                let m: TracksIn<ViewIn<'a>> = serde_json::from_str(json)?;
                check_count(m.tracks.len())?;
                let mut tiles = Vec::with_capacity(m.tracks.len());
                for t in m.tracks {
                    check_mid(&t.mid)?;
                    tiles.push(TileView {
                        mid: t.mid,
                        width: tile_side(t.width)?,
                        height: tile_side(t.height)?,
                    });
                }
                check_unique(tiles.iter().map(|t| &*t.mid))?;
                Ok(SfuMessage::View(tiles))
            }
            "speaker" => {
                let m: SpeakerIn<'a> = serde_json::from_str(json)?;
                if let Some(p) = &m.peer {
                    check_peer(p)?;
                }
                Ok(SfuMessage::Speaker(m.peer))
            }
            "error" => {
                let m: ErrorIn<'a> = serde_json::from_str(json)?;
                if m.reason.chars().nth(MAX_REASON_LEN).is_some() {
                    return Err(MessageError::BadField("reason"));
                }
                Ok(SfuMessage::Error {
                    code: m.code,
                    reason: m.reason,
                })
            }
            "layers" => {
                let m: LayersIn<'a> = serde_json::from_str(json)?;
                check_mid(&m.mid)?;
                if let Some(l) = &m.layer {
                    if !token_ok(l, MAX_RID_LEN) {
                        return Err(MessageError::BadField("layer"));
                    }
                }
                Ok(SfuMessage::Layers {
                    mid: m.mid,
                    layer: m.layer,
                })
            }
            other => Err(MessageError::UnknownType(
                other.chars().take(MAX_PEER_LEN).collect(),
            )),
        }
    }

    /// Whether browsers send this type (`publish`, `view`); the SFU ignores the others
    /// when they come from a browser.
    pub fn is_from_browser(&self) -> bool {
        matches!(
            self,
            SfuMessage::Publish(_) | SfuMessage::View(_) | SfuMessage::Leave
        )
    }

    /// The JSON text of this payload. A message that [`SfuMessage::parse`] returned
    /// renders to text that parses back to an equal message; the SFU keeps to the same
    /// limits when it builds one.
    pub fn render(&self) -> String {
        let out = match self {
            SfuMessage::Publish(tracks) => Out::Publish {
                tracks: tracks
                    .iter()
                    .map(|t| PublishedOut {
                        mid: &t.mid,
                        source: t.source,
                        peer: t.peer.as_deref(),
                    })
                    .collect(),
            },
            SfuMessage::Tracks(tracks) => Out::Tracks {
                tracks: tracks
                    .iter()
                    .map(|t| RemoteOut {
                        mid: &t.mid,
                        peer: &t.peer,
                        source: t.source,
                        kind: t.source.kind(),
                    })
                    .collect(),
            },
            SfuMessage::View(tiles) => Out::View {
                tracks: tiles
                    .iter()
                    .map(|t| ViewOut {
                        mid: &t.mid,
                        width: t.width,
                        height: t.height,
                    })
                    .collect(),
            },
            SfuMessage::Speaker(peer) => Out::Speaker {
                peer: peer.as_deref(),
            },
            SfuMessage::Error { code, reason } => Out::Error {
                code: *code,
                reason,
            },
            SfuMessage::Layers { mid, layer } => Out::Layers {
                mid,
                layer: layer.as_deref(),
            },
            SfuMessage::Leave => Out::Leave {},
        };
        // Serializing plain strings, integers and unit enums into a String cannot fail.
        serde_json::to_string(&out).unwrap_or_default()
    }

    /// The same message owning its strings (to keep it past the input text).
    pub fn into_owned(self) -> SfuMessage<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        match self {
            SfuMessage::Publish(t) => SfuMessage::Publish(
                t.into_iter()
                    .map(|t| PublishedTrack {
                        mid: own(t.mid),
                        source: t.source,
                        peer: t.peer.map(own),
                    })
                    .collect(),
            ),
            SfuMessage::Tracks(t) => SfuMessage::Tracks(
                t.into_iter()
                    .map(|t| RemoteTrack {
                        mid: own(t.mid),
                        peer: own(t.peer),
                        source: t.source,
                    })
                    .collect(),
            ),
            SfuMessage::View(t) => SfuMessage::View(
                t.into_iter()
                    .map(|t| TileView {
                        mid: own(t.mid),
                        width: t.width,
                        height: t.height,
                    })
                    .collect(),
            ),
            SfuMessage::Speaker(p) => SfuMessage::Speaker(p.map(own)),
            SfuMessage::Error { code, reason } => SfuMessage::Error {
                code,
                reason: own(reason),
            },
            SfuMessage::Layers { mid, layer } => SfuMessage::Layers {
                mid: own(mid),
                layer: layer.map(own),
            },
            SfuMessage::Leave => SfuMessage::Leave,
        }
    }
}

impl fmt::Display for SfuMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests;
