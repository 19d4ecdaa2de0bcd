//! The fallback transport for networks that break WebSockets: server-to-client messages
//! as an EventSource stream at `/sse`, client-to-server messages as `POST /signal?conn=`.

use crate::transport::{Transports, KEEPALIVE, TRANSPORT_LIMIT};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use switchboard_signal::{Connection, ErrorCode, Out, ServerMessage};

fn refusal(status: StatusCode, code: ErrorCode, reason: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        ServerMessage::error_text(code, reason, None, true).to_string(),
    )
        .into_response()
}

fn origin_refused() -> Response {
    refusal(
        StatusCode::FORBIDDEN,
        ErrorCode::OriginNotAllowed,
        "this page's origin may not use this server's signaling",
    )
}

/// Ends the transport (suspending its session) when the event stream is dropped, that
/// is when the client went away.
struct Guard {
    transports: Arc<Transports>,
    conn: Connection,
    token: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.transports.unregister_sse(&self.token);
        self.conn.close();
    }
}

/// `GET /sse`
pub async fn stream(State(t): State<Arc<Transports>>, headers: HeaderMap) -> Response {
    if !t.origin.allows(&headers) {
        return origin_refused();
    }
    let conn = t.signaling.connect();
    let token = switchboard_util::random_hex(16);
    t.register_sse(token.clone(), conn.clone());
    let hello = Event::default().data(&*ServerMessage::hello_text(&token));
    let guard = Guard {
        transports: t,
        conn,
        token,
    };
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(hello) });
    let rest = futures_util::stream::unfold(guard, |guard| async move {
        loop {
            match guard.conn.recv().await {
                Some(Out::Text(t)) => return Some((Ok(Event::default().data(&*t)), guard)),
                // The stream has axum's keep-alive comments (below) instead.
                Some(Out::Keepalive) => {}
                Some(Out::Close(_)) | None => return None,
            }
        }
    });
    let stream = futures_util::StreamExt::chain(first, rest);
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE).text("keepalive"))
        .into_response();
    // Proxies must not buffer the stream.
    resp.headers_mut()
        .insert("x-accel-buffering", "no".parse().expect("static header"));
    resp
}

/// `POST /signal?conn=…`
pub async fn post(
    State(t): State<Arc<Transports>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !t.origin.allows(&headers) {
        return origin_refused();
    }
    let Some(conn) = q.get("conn").and_then(|c| t.sse_conn(c)) else {
        return refusal(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownConnection,
            "no open /sse stream with this conn; open /sse and resume",
        );
    };
    let bytes = match axum::body::to_bytes(body, TRANSPORT_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                "body over the 1 MiB transport limit",
            )
        }
    };
    match std::str::from_utf8(&bytes) {
        Ok(text) => conn.receive(text).await,
        Err(_) => conn.report(ErrorCode::BadMessage, "body is not UTF-8", false),
    }
    StatusCode::NO_CONTENT.into_response()
}
