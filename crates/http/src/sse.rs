//! The fallback transport for networks that break WebSockets: server-to-client messages
//! as an EventSource stream at `/sse`, client-to-server messages as `POST /signal?conn=`.

use crate::signaling::{Out, Signaling, KEEPALIVE, TRANSPORT_LIMIT};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use switchboard_signal::protocol::{error_text, hello_text};
use switchboard_signal::{ConnId, ErrorCode};

fn refusal(status: StatusCode, code: ErrorCode, reason: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        error_text(code, reason, None, true),
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
    sig: Arc<Signaling>,
    conn: ConnId,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.sig.close(self.conn);
    }
}

/// `GET /sse`
pub async fn stream(State(sig): State<Arc<Signaling>>, headers: HeaderMap) -> Response {
    if !sig.origin.allows(&headers) {
        return origin_refused();
    }
    let (conn, rx) = sig.open();
    let token = switchboard_util::random_hex(16);
    sig.register_sse(token.clone(), conn);
    let guard = Guard { sig, conn };
    let hello = Event::default().data(hello_text(&token));
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(hello) });
    let rest = futures_util::stream::unfold((guard, rx), |(guard, rx)| async move {
        match rx.recv().await {
            Some(Out::Text(t)) => Some((Ok(Event::default().data(&*t)), (guard, rx))),
            Some(Out::Close(_)) | None => None,
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
    State(sig): State<Arc<Signaling>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !sig.origin.allows(&headers) {
        return origin_refused();
    }
    let Some(conn) = q.get("conn").and_then(|c| sig.sse_conn(c)) else {
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
        Ok(text) => sig.receive(conn, text),
        Err(_) => sig.report(conn, ErrorCode::BadMessage, "body is not UTF-8", false),
    }
    StatusCode::NO_CONTENT.into_response()
}
