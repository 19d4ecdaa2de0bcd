//! One Switchboard signaling session seen from the generator's `joins` and `failover`
//! modes: read the next event or the close, join a room, resume a session, and the
//! exact percentiles of a few hundred timings.

use crate::signal_proto::{self as sp, Event};
use crate::ws_conn::Ws;
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::SignalProto::Switchboard;

/// What the next read brought.
#[derive(Debug)]
pub enum Got {
    Event(Event),
    /// The connection ended: the close code if the server sent one.
    Closed(Option<u16>),
}

/// The next server message or the end of the connection (read errors end it too).
pub async fn next(ws: &mut Ws) -> Got {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match sp::parse(Switchboard, t.as_str()) {
                Ok(ev) => return Got::Event(ev),
                Err(_) => continue, // counted by nobody: the server never sends it
            },
            Some(Ok(Message::Close(f))) => return Got::Closed(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Got::Closed(None),
        }
    }
}

/// A session's identity after `joined`.
#[derive(Debug, Clone)]
pub struct Joined {
    pub peer_id: String,
    /// The first member already in the room, if any.
    pub partner: Option<String>,
    pub resume: String,
}

/// `join` `room` and wait for `joined`.
pub async fn join(ws: &mut Ws, room: &str, name: &str) -> Result<Joined> {
    ws.send(Message::text(sp::join(room, name)))
        .await
        .context("send join")?;
    match next(ws).await {
        Got::Event(Event::Joined {
            peer_id,
            partner,
            resume,
        }) => Ok(Joined {
            peer_id,
            partner,
            resume,
        }),
        Got::Event(Event::Error { code, reason }) => bail!("join refused: {code} ({reason})"),
        Got::Event(e) => bail!("unexpected before joined: {e:?}"),
        Got::Closed(code) => bail!("closed before joined (code {code:?})"),
    }
}

/// The answer to a `resume`.
#[derive(Debug)]
pub enum Resume {
    Resumed {
        resume: String,
        gap: bool,
    },
    /// Refused with this error code (`unavailable` while a room moves: try again).
    Refused(String),
    /// Closed before answering (1012 when the room was still bridged to a dead node).
    Closed,
}

/// Send `resume` and wait for its answer.
pub async fn resume(ws: &mut Ws, token: &str, last_seq: u64) -> Result<Resume> {
    ws.send(Message::text(sp::resume(token, last_seq)))
        .await
        .context("send resume")?;
    Ok(match next(ws).await {
        Got::Event(Event::Resumed { resume, gap }) => Resume::Resumed { resume, gap },
        Got::Event(Event::Error { code, .. }) => Resume::Refused(code),
        Got::Event(e) => bail!("unexpected before resumed: {e:?}"),
        Got::Closed(_) => Resume::Closed,
    })
}

/// Exact median, p90, p99 and max of `v` (milliseconds), and how many.
pub fn summary_ms(v: &[f64]) -> Value {
    if v.is_empty() {
        return json!({ "n": 0 });
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least p % of the values at or below it.
    let at = |p: f64| s[((p / 100.0 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    let r = |x: f64| (x * 10.0).round() / 10.0;
    json!({
        "n": s.len(),
        "p50": r(at(50.0)),
        "p90": r(at(90.0)),
        "p99": r(at(99.0)),
        "max": r(s[s.len() - 1]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summary_ms(&v);
        assert_eq!(s["p50"], 50.0);
        assert_eq!(s["p90"], 90.0);
        assert_eq!(s["p99"], 99.0);
        assert_eq!(s["max"], 100.0);
        assert_eq!(summary_ms(&[7.0])["p50"], 7.0);
        assert_eq!(summary_ms(&[])["n"], 0);
    }
}
