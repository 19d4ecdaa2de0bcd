//! The app's side of outbound calls (docs/sip.md "For apps"): `POST /api/sip/calls`
//! `{"room","to"}` places a call from a room, `DELETE /api/sip/calls/{room}/{call}` hangs
//! it up. Both take the room token as `Authorization: Bearer` when rooms need tokens,
//! and need its `publish` grant (a call speaks into the room). Merged into the HTTP
//! service's router; the agent does the SIP.

use super::agent::ApiCmd;
use super::outbound::{self, NextHop};
use crate::config::sip::{valid_room, SipConfig};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use switchboard_signal::Signaling;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

/// How long a name lookup of a dialled host may take.
const LOOKUP_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Api {
    cfg: Arc<SipConfig>,
    signaling: Arc<Signaling>,
    agent: UnboundedSender<ApiCmd>,
}

pub fn routes(
    cfg: Arc<SipConfig>,
    signaling: Arc<Signaling>,
    agent: UnboundedSender<ApiCmd>,
) -> Router {
    Router::new()
        .route("/api/sip/calls", post(place))
        .route("/api/sip/calls/{room}/{call}", delete(hang_up))
        .with_state(Api {
            cfg,
            signaling,
            agent,
        })
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({"error": reason.into()}))).into_response()
}

/// The room token's grants allow calling from `room`; else the refusal (status, reason).
fn admit(api: &Api, headers: &HeaderMap, room: &str) -> Result<(), (StatusCode, String)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match api
        .signaling
        .admit_token(token, room, switchboard_util::unix_now())
    {
        Ok(g) if g.publish => Ok(()),
        Ok(_) => Err((
            StatusCode::FORBIDDEN,
            "the room token has no publish grant".into(),
        )),
        Err(e) => Err((StatusCode::UNAUTHORIZED, e.to_string())),
    }
}

async fn place(State(api): State<Api>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let (Some(room), Some(to)) = (v["room"].as_str(), v["to"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body needs \"room\" and \"to\" strings",
        );
    };
    if !valid_room(room) {
        return error(StatusCode::BAD_REQUEST, "room must be 1-64 of A-Za-z0-9_-.");
    }
    if let Err((status, reason)) = admit(&api, &headers, room) {
        return error(status, reason);
    }
    let target = match outbound::target(&api.cfg, to) {
        Ok(t) => t,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let dest = match &target.next_hop {
        NextHop::Addr(a) => *a,
        NextHop::Lookup(host, port) => {
            let found =
                tokio::time::timeout(LOOKUP_WAIT, tokio::net::lookup_host((host.as_str(), *port)))
                    .await;
            match found {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(a) => a,
                    None => {
                        return error(StatusCode::BAD_REQUEST, format!("`{host}` has no address"))
                    }
                },
                _ => return error(StatusCode::BAD_REQUEST, format!("cannot resolve `{host}`")),
            }
        }
    };
    let name: String = to.trim().chars().take(64).collect();
    let (reply, answer) = oneshot::channel();
    let cmd = ApiCmd::Dial {
        room: room.to_string(),
        name,
        target: Box::new(target),
        dest,
        reply,
    };
    if api.agent.send(cmd).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the SIP gateway stopped");
    }
    match answer.await {
        Ok(Ok(call)) => (StatusCode::CREATED, Json(json!({"call": call}))).into_response(),
        Ok(Err((status, reason))) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            reason,
        ),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the SIP gateway stopped"),
    }
}

async fn hang_up(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((room, call)): Path<(String, String)>,
) -> Response {
    if let Err((status, reason)) = admit(&api, &headers, &room) {
        return error(status, reason);
    }
    let (reply, answer) = oneshot::channel();
    let cmd = ApiCmd::Hangup { room, call, reply };
    if api.agent.send(cmd).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the SIP gateway stopped");
    }
    match answer.await {
        Ok(true) => (StatusCode::OK, Json(json!({"ok": true}))).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, "no such call in this room"),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the SIP gateway stopped"),
    }
}
