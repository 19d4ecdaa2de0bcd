//! WHIP (RFC 9725) and WHEP: `POST /whip/<room>` with an SDP offer publishes a
//! broadcaster (OBS, GStreamer `whipsink`) into a room through the SFU, `POST
//! /whep/<room>` lets a player watch it; `DELETE` of the returned resource ends either.
//! Each session is a service participant of the room (`service: "whip"` or `"whep"`):
//! its offer goes to the room's SFU peer as any browser's would, through the hub, and the
//! SFU's answer is the response. The SFU treats them as one-shot participants (no offers
//! or messages back; a player's recvonly m-lines carry the room's tracks). No media
//! passes here.
//!
//! Admission is by the room tokens of signaling (`Authorization: Bearer <token>` when
//! `--room-token-secret` is set; WHIP needs the `publish` grant, WHEP `subscribe`).
//! Trickle ICE (`PATCH`) is not offered: the SFU is ICE-lite and its answer carries its
//! candidates.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_signal::{
    Grants, RelayKind, ServiceEvent, ServiceParticipant, Signaling, TokenError,
};
use tokio::time::timeout;

/// Largest offer taken.
const MAX_OFFER: usize = 64 * 1024;
/// How long the SFU may take to join a room that just turned SFU, then to answer.
const SFU_JOIN_WAIT: Duration = Duration::from_secs(5);
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// WHIP and WHEP sessions one server holds.
const MAX_SESSIONS: usize = 1024;

/// Which endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingest {
    /// A publisher (`/whip`).
    Whip,
    /// A player (`/whep`).
    Whep,
}

impl Ingest {
    /// Its service kind in the room, and its path segment.
    pub fn kind(self) -> &'static str {
        match self {
            Ingest::Whip => "whip",
            Ingest::Whep => "whep",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ingest::Whip => "WHIP",
            Ingest::Whep => "WHEP",
        }
    }

    /// What the hub lets the session do: offer, both; a player takes the SFU's tracks
    /// (the SFU itself refuses a player's sending m-lines).
    fn grants(self) -> Grants {
        Grants {
            publish: true,
            subscribe: self == Ingest::Whep,
            admin: false,
        }
    }

    /// Whether the room token's grants allow it.
    fn allowed(self, g: Grants) -> bool {
        match self {
            Ingest::Whip => g.publish,
            Ingest::Whep => g.subscribe,
        }
    }
}

struct Session {
    room: String,
    /// Leaves the room when dropped (with the session).
    _participant: Arc<ServiceParticipant>,
    watch: tokio::task::AbortHandle,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// The WHIP or WHEP endpoint's state.
pub struct Whip {
    ingest: Ingest,
    signaling: Arc<Signaling>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Whip {
    pub fn new(ingest: Ingest, signaling: Arc<Signaling>) -> Arc<Whip> {
        Arc::new(Whip {
            ingest,
            signaling,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], text.into()).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The grants of the request's bearer token for `room`, or why not.
fn admit(w: &Whip, headers: &HeaderMap, room: &str) -> Result<Grants, TokenError> {
    w.signaling
        .admit_token(bearer(headers), room, switchboard_util::unix_now())
}

/// 401 with the Bearer challenge.
fn unauthorized(e: &TokenError) -> Response {
    let mut r = plain(StatusCode::UNAUTHORIZED, format!("room token: {e}"));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// `POST /whip/{room}`, `POST /whep/{room}`.
pub async fn publish(
    State(w): State<Arc<Whip>>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"));
    if !is_sdp {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be Content-Type: application/sdp",
        );
    }
    let grants = match admit(&w, &headers, &room) {
        Ok(g) => g,
        Err(e) => return unauthorized(&e),
    };
    let ingest = w.ingest;
    if !ingest.allowed(grants) {
        let grant = match ingest {
            Ingest::Whip => "publish",
            Ingest::Whep => "subscribe",
        };
        return plain(
            StatusCode::FORBIDDEN,
            format!("the room token has no {grant} grant"),
        );
    }
    if body.len() > MAX_OFFER {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "offer over 64 KiB");
    }
    let Ok(offer) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "the offer is not UTF-8");
    };
    if !offer.starts_with("v=0") {
        return plain(StatusCode::BAD_REQUEST, "the body is not an SDP offer");
    }
    if w.sessions().len() >= MAX_SESSIONS {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WHIP/WHEP sessions",
        );
    }
    // In a cluster the room may live on another node: the session joins it there and
    // its media goes to this node's edge of the room.
    let joined = w
        .signaling
        .join_sfu_service(&room, ingest.name(), ingest.kind(), ingest.grants())
        .await;
    let joined = match joined {
        Ok(Some(j)) => j,
        Ok(None) => {
            return plain(
                StatusCode::CONFLICT,
                "this room is mesh-only (its creator chose mesh, or the SFU is off)",
            )
        }
        Err(e) if e.code == switchboard_signal::ErrorCode::BadRoom => {
            return plain(StatusCode::BAD_REQUEST, e.reason)
        }
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.reason),
    };
    let Some(sfu) = joined.find_sfu(SFU_JOIN_WAIT).await else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the SFU did not join the room",
        );
    };
    let p = Arc::new(joined.participant);
    let relayed = serde_json::to_string(offer)
        .ok()
        .and_then(|s| RawValue::from_string(s).ok());
    let Some(sdp) = relayed else {
        return plain(StatusCode::BAD_REQUEST, "the offer cannot be relayed");
    };
    if let Err(e) = p.send_offer(&sfu, &sdp) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, e.reason);
    }
    let answer = match timeout(ANSWER_WAIT, answer_from(&p, &sfu)).await {
        Ok(Ok(a)) => a,
        Ok(Err(reason)) => return plain(StatusCode::BAD_REQUEST, reason),
        Err(_) => return plain(StatusCode::GATEWAY_TIMEOUT, "the SFU did not answer"),
    };
    let id = switchboard_util::random_hex(12);
    let location = format!("/{}/{room}/{id}", ingest.kind());
    // Read the participant's events until the SFU says its connection is gone (the
    // publisher vanished without a DELETE): then the session ends. Reading also keeps
    // its queue from filling (the hub would take it out of the room).
    let watch = Watch {
        whip: w.clone(),
        participant: p.clone(),
        sfu: sfu.clone(),
        id: id.clone(),
    };
    let watch = tokio::spawn(watch.run()).abort_handle();
    tracing::info!(%room, peer = %p.peer_id(), "{} session in", ingest.name());
    w.sessions().insert(
        id,
        Session {
            room,
            _participant: p,
            watch,
        },
    );
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response()
}

/// What follows a WHIP session after its answer.
struct Watch {
    whip: Arc<Whip>,
    participant: Arc<ServiceParticipant>,
    sfu: Arc<str>,
    id: String,
}

impl Watch {
    async fn run(self) {
        while let Some(ev) = self.participant.recv().await {
            let ServiceEvent::Relay {
                from,
                kind: RelayKind::Message,
                payload,
            } = ev
            else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(payload.get()).unwrap_or_default();
            if from == self.sfu && v["sfu"] == "gone" {
                tracing::info!(room = self.participant.room(), reason = %v["reason"], "{} session gone", self.whip.ingest.name());
                break;
            }
        }
        // Out of the room (or never to send again): the session ends. Taken out of the
        // map first, then dropped here, not inside the lock.
        let session = self.whip.sessions().remove(&self.id);
        drop(session);
    }
}

/// `DELETE /whip/{room}/{id}`, `DELETE /whep/{room}/{id}`: the session leaves the room.
pub async fn end(
    State(w): State<Arc<Whip>>,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = admit(&w, &headers, &room) {
        return unauthorized(&e);
    }
    let removed = {
        let mut sessions = w.sessions();
        match sessions.get(&id) {
            Some(s) if s.room == room => sessions.remove(&id),
            _ => None,
        }
    };
    match removed {
        Some(_) => StatusCode::OK.into_response(),
        None => plain(StatusCode::NOT_FOUND, "no such session"),
    }
}

/// The SFU's answer (SDP text), or the reason of its `error` message.
async fn answer_from(p: &ServiceParticipant, sfu: &str) -> Result<String, String> {
    while let Some(ev) = p.recv().await {
        let ServiceEvent::Relay {
            from,
            kind,
            payload,
        } = ev
        else {
            continue;
        };
        if &*from != sfu {
            continue;
        }
        match kind {
            RelayKind::Answer => {
                return serde_json::from_str::<String>(payload.get())
                    .map_err(|_| "the SFU's answer is not an SDP string".to_string())
            }
            RelayKind::Message => {
                let v: serde_json::Value = serde_json::from_str(payload.get()).unwrap_or_default();
                if v["sfu"] == "error" {
                    return Err(format!(
                        "{}: {}",
                        v["code"].as_str().unwrap_or("error"),
                        v["reason"].as_str().unwrap_or("refused")
                    ));
                }
            }
            _ => {}
        }
    }
    Err("left the room before an answer".into())
}
