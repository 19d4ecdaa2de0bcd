//! The WebSocket transport: one task per connection, reading frames into the hub and
//! writing what the hub queues for it, with keepalive pings.

use crate::signaling::{Out, Signaling, IDLE_TIMEOUT, KEEPALIVE, TRANSPORT_LIMIT};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;
use switchboard_signal::ErrorCode;

/// `GET /ws`
pub async fn upgrade(
    State(sig): State<Arc<Signaling>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin_ok = sig.origin.allows(&headers);
    // Small buffers: most signaling messages are well under 4 KiB, and an idle
    // connection should cost little memory.
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(TRANSPORT_LIMIT)
        .max_frame_size(TRANSPORT_LIMIT)
        .on_upgrade(move |socket| run(sig, socket, origin_ok))
}

async fn run(sig: Arc<Signaling>, mut socket: WebSocket, origin_ok: bool) {
    let (conn, mut rx) = sig.open();
    if !origin_ok {
        sig.report(
            conn,
            ErrorCode::OriginNotAllowed,
            "this page's origin may not use this server's signaling",
            true,
        );
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(t))) => sig.receive(conn, t.as_str()),
                    Some(Ok(Message::Binary(_))) => sig.report(
                        conn,
                        ErrorCode::BadMessage,
                        "messages are JSON text frames, not binary",
                        false,
                    ),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        let too_large = e.to_string().contains("too long")
                            || e.to_string().contains("too big");
                        if too_large {
                            sig.report(conn, ErrorCode::TooLarge, "frame over the 1 MiB transport limit", true);
                            // The socket cannot be read any more: write out the error and close.
                            while let Ok(out) = rx.try_recv() {
                                let msg = match out {
                                    Out::Text(text) => Message::Text(text.as_ref().into()),
                                    Out::Close(code) => Message::Close(Some(CloseFrame { code, reason: "".into() })),
                                };
                                if socket.send(msg).await.is_err() {
                                    break;
                                }
                            }
                        }
                        break;
                    }
                }
            }
            out = rx.recv() => match out {
                Some(Out::Text(text)) => {
                    if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close(code)) => {
                    let frame = CloseFrame { code, reason: "".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    sig.close(conn);
}
