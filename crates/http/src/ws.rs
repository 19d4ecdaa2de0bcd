//! The WebSocket transport: one task per connection, reading frames into the hub and
//! writing what the hub queues for it, with keepalive pings (queued by the signaling
//! timer for all connections, so that an idle connection holds no timer of its own).

use crate::transport::{Transports, IDLE_TIMEOUT, TRANSPORT_LIMIT};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Instant;
use switchboard_signal::{Connection, ErrorCode, Out, Signaling};

/// `GET /ws`
pub async fn upgrade(
    State(t): State<Arc<Transports>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin_ok = t.origin.allows(&headers);
    let sig = t.signaling.clone();
    // Small buffers: an idle connection should cost little memory; the read side grows
    // as a message needs. The write buffer fills within one burst, which is then flushed
    // at once; it keeps its largest size, so it is kept small.
    ws.read_buffer_size(256)
        .write_buffer_size(4096)
        .max_message_size(TRANSPORT_LIMIT)
        .max_frame_size(TRANSPORT_LIMIT)
        .on_upgrade(move |socket| {
            // A task of its own: axum's upgrade task would keep its settings, the callback
            // and the protocol header (136 bytes) next to `run` for the connection's life.
            tokio::spawn(run(sig, socket, origin_ok));
            std::future::ready(())
        })
}

/// The connection's task. Not an `async fn`: an `async fn` moves its arguments into
/// locals and keeps their first slots too, so the 368-byte `WebSocket` would be stored
/// twice in every idle connection's future; an `async move` block uses them in place.
#[allow(clippy::manual_async_fn)]
fn run(
    sig: Arc<Signaling>,
    mut socket: WebSocket,
    origin_ok: bool,
) -> impl std::future::Future<Output = ()> {
    async move {
        let conn = sig.connect();
        if !origin_ok {
            conn.report(
                ErrorCode::OriginNotAllowed,
                "this page's origin may not use this server's signaling",
                true,
            );
        }
        // No timer here: the hub queues an `Out::Keepalive` every KEEPALIVE (see
        // `spawn_signal_timer`), which pings the client or ends a silent connection.
        let mut last_heard = Instant::now();
        // The select only picks what to do; the writing happens after it, so that no
        // received frame or select output is held while a burst is written (each await
        // point's locals count in every idle connection's task).
        let mut too_large = false;
        loop {
            let first = tokio::select! {
                frame = socket.recv() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(t))) => conn.receive(t.as_str()).await,
                        Some(Ok(Message::Binary(_))) => conn.report(
                            ErrorCode::BadMessage,
                            "messages are JSON text frames, not binary",
                            false,
                        ),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Err(e)) => {
                            too_large = e.to_string().contains("too long")
                                || e.to_string().contains("too big");
                            break;
                        }
                    }
                    continue;
                }
                out = conn.recv() => match out {
                    Some(first) => first,
                    None => break,
                },
            };
            // Write everything already queued, then flush once: one syscall for a burst
            // (trickled candidates, a replay) instead of one per message.
            if !write_burst(&mut socket, &conn, first, last_heard).await {
                break;
            }
        }
        if too_large {
            conn.report(
                ErrorCode::TooLarge,
                "frame over the 1 MiB transport limit",
                true,
            );
            // The socket cannot be read any more: write out the error and close.
            if let Some(first) = conn.try_recv() {
                write_burst(&mut socket, &conn, first, last_heard).await;
            }
        }
        conn.close();
    }
}

/// Feed `first` and whatever else is queued, then flush; false when the connection
/// should end (a close was sent, writing failed, or a keepalive found the client silent
/// since `last_heard` for longer than [`IDLE_TIMEOUT`]).
async fn write_burst(
    socket: &mut WebSocket,
    rx: &Connection,
    first: Out,
    last_heard: Instant,
) -> bool {
    let mut next = Some(first);
    let mut keep = true;
    while let Some(out) = next.take() {
        // `feed`, by hand: wait for room before the frame is built, so that no message
        // is held across the wait (it would enlarge every connection's task).
        if std::future::poll_fn(|cx| socket.poll_ready_unpin(cx))
            .await
            .is_err()
        {
            return false;
        }
        let msg = match out {
            Out::Text(text) => Message::Text(text.as_ref().into()),
            Out::Keepalive if last_heard.elapsed() > IDLE_TIMEOUT => return false,
            Out::Keepalive => Message::Ping(Default::default()),
            Out::Close(code) => {
                keep = false;
                Message::Close(Some(CloseFrame {
                    code,
                    reason: "".into(),
                }))
            }
        };
        if socket.start_send_unpin(msg).is_err() {
            return false;
        }
        if keep {
            next = rx.try_recv();
        }
    }
    socket.flush().await.is_ok() && keep
}
