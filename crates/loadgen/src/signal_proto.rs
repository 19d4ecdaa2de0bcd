//! The two signaling protocols the `signal` mode speaks, reduced to what the benchmark
//! needs: how a client connects and learns its partner, what a relayed message looks
//! like on the way out and on the way in, and the keepalive a real client sends.
//!
//! - **Switchboard** (docs/signaling.md): `GET /ws`, `join` room `r<tag>-<pair>`, the
//!   answer `joined` has `peerId` and `peers`; the partner arrives in `joined.peers` or
//!   later as `peer-joined`. Relay: `message` with `to`, arriving as `message` with
//!   `seq` and `from`. Keepalive: `ack` of the highest `seq` about once a second.
//! - **PeerJS** (npm `peer`): `GET /peerjs?key=..&id=..&token=..`, the server says
//!   `OPEN`; ids are chosen by the client, so the partner's id is known up front. Relay:
//!   `OFFER` with `dst`, arriving with `src` added. Keepalive: `HEARTBEAT` every 5 s.
//!
//! The relayed payload is the same for both: `{"t":<send time, ns>,"n":<counter>}`
//! (plus `"p":"xx.."` with `--pad`).

use crate::cli::SignalProto;
use serde::Deserialize;
use std::borrow::Cow;
/// Switchboard `join`, `ack` and `resume`: the builders the test clients use too.
pub use switchboard_client::signal::{ack, join, resume};

/// A relayed payload as we send it: send timestamp (CLOCK_MONOTONIC ns) and a counter.
#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    #[serde(default)]
    pub t: Option<u64>,
    #[serde(default)]
    pub n: Option<u64>,
}

#[derive(Deserialize, Debug)]
struct PeerRef<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// PeerJS `payload`: our stamp in relayed messages, `msg` in errors.
#[derive(Deserialize, Debug, Default)]
struct Payload<'a> {
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default, borrow)]
    msg: Option<Cow<'a, str>>,
}

/// Every field either protocol's server sends that we look at; unknown ones are skipped.
#[derive(Deserialize, Debug)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    src: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Option<Stamp>,
    #[serde(default, borrow)]
    payload: Option<Payload<'a>>,
    #[serde(default, rename = "peerId", borrow)]
    peer_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    peers: Option<Vec<PeerRef<'a>>>,
    #[serde(default, borrow)]
    peer: Option<PeerRef<'a>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    resume: Option<Cow<'a, str>>,
    #[serde(default)]
    gap: Option<bool>,
}

/// What a server message means to a benchmark client.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Switchboard `joined`: our id, the first other member, if any, and the resume token.
    Joined {
        peer_id: String,
        partner: Option<String>,
        resume: String,
    },
    /// Switchboard `resumed`: the new resume token, and whether messages were lost.
    Resumed { resume: String, gap: bool },
    /// PeerJS `OPEN`.
    Open,
    /// Switchboard `peer-joined`.
    PeerJoined { seq: Option<u64>, id: String },
    /// Switchboard `peer-left` / PeerJS `LEAVE` or `EXPIRE`.
    PeerLeft { seq: Option<u64>, id: String },
    /// A relayed message from a peer (`message` / `OFFER`).
    Relay {
        seq: Option<u64>,
        from: String,
        stamp: Stamp,
    },
    /// Switchboard `error` (by `code`) / PeerJS `ERROR` or `ID-TAKEN` (by `msg`).
    Error { code: String, reason: String },
    /// Anything else (counted by `type`), with its `seq` if it had one.
    Other { ty: String, seq: Option<u64> },
}

/// Parse one text frame from the server.
pub fn parse(proto: SignalProto, text: &str) -> Result<Event, String> {
    let r: Raw = serde_json::from_str(text).map_err(|e| format!("bad JSON from server: {e}"))?;
    let ty = r.ty.as_ref();
    Ok(match (proto, ty) {
        (SignalProto::Switchboard, "message") => Event::Relay {
            seq: r.seq,
            from: r.from.map(Cow::into_owned).unwrap_or_default(),
            stamp: r.data.unwrap_or_default(),
        },
        (SignalProto::Peerjs, "OFFER" | "ANSWER" | "CANDIDATE") => Event::Relay {
            seq: None,
            from: r.src.map(Cow::into_owned).unwrap_or_default(),
            stamp: r
                .payload
                .map(|p| Stamp { t: p.t, n: p.n })
                .unwrap_or_default(),
        },
        (SignalProto::Switchboard, "joined") => Event::Joined {
            peer_id: r.peer_id.map(Cow::into_owned).unwrap_or_default(),
            partner: r
                .peers
                .and_then(|p| p.into_iter().next())
                .map(|p| p.id.into_owned()),
            resume: r.resume.map(Cow::into_owned).unwrap_or_default(),
        },
        (SignalProto::Switchboard, "resumed") => Event::Resumed {
            resume: r.resume.map(Cow::into_owned).unwrap_or_default(),
            gap: r.gap.unwrap_or(false),
        },
        (SignalProto::Peerjs, "OPEN") => Event::Open,
        (SignalProto::Switchboard, "peer-joined") => Event::PeerJoined {
            seq: r.seq,
            id: r.peer.map(|p| p.id.into_owned()).unwrap_or_default(),
        },
        (SignalProto::Switchboard, "peer-left") => Event::PeerLeft {
            seq: r.seq,
            id: r.peer_id.map(Cow::into_owned).unwrap_or_default(),
        },
        (SignalProto::Peerjs, "LEAVE" | "EXPIRE") => Event::PeerLeft {
            seq: None,
            id: r.src.map(Cow::into_owned).unwrap_or_default(),
        },
        (SignalProto::Switchboard, "error") => Event::Error {
            code: r.code.map(Cow::into_owned).unwrap_or_default(),
            reason: r.reason.map(Cow::into_owned).unwrap_or_default(),
        },
        (SignalProto::Peerjs, "ERROR" | "ID-TAKEN") => {
            let msg = r
                .payload
                .and_then(|p| p.msg)
                .map(Cow::into_owned)
                .unwrap_or_default();
            Event::Error {
                code: if ty == "ERROR" {
                    msg.clone()
                } else {
                    ty.to_string()
                },
                reason: msg,
            }
        }
        _ => Event::Other {
            ty: ty.to_string(),
            seq: r.seq,
        },
    })
}

/// The WebSocket URL path and query for client `id` (PeerJS needs the id and a token).
pub fn url(
    proto: SignalProto,
    server: &str,
    path: &str,
    key: &str,
    id: &str,
    token: u64,
) -> String {
    match proto {
        SignalProto::Switchboard => format!("ws://{server}{path}"),
        SignalProto::Peerjs => {
            format!("ws://{server}{path}?key={key}&id={id}&token={token:x}")
        }
    }
}

/// A relayed message to `to` carrying `t` and `n`, with `pad` bytes of padding.
pub fn relay(proto: SignalProto, to: &str, t: u64, n: u64, pad: &str) -> String {
    let padding = if pad.is_empty() {
        String::new()
    } else {
        format!(r#","p":"{pad}""#)
    };
    match proto {
        SignalProto::Switchboard => {
            format!(r#"{{"type":"message","to":"{to}","data":{{"t":{t},"n":{n}{padding}}}}}"#)
        }
        SignalProto::Peerjs => {
            format!(r#"{{"type":"OFFER","dst":"{to}","payload":{{"t":{t},"n":{n}{padding}}}}}"#)
        }
    }
}

/// PeerJS `HEARTBEAT`.
pub const HEARTBEAT: &str = r#"{"type":"HEARTBEAT"}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use SignalProto::{Peerjs, Switchboard};

    #[test]
    fn outgoing_is_valid_json() {
        let v: serde_json::Value =
            serde_json::from_str(&relay(Switchboard, "p1", 123, 4, "")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"message","to":"p1","data":{"t":123,"n":4}})
        );
        let v: serde_json::Value = serde_json::from_str(&relay(Peerjs, "c-1", 9, 1, "xx")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"OFFER","dst":"c-1","payload":{"t":9,"n":1,"p":"xx"}})
        );
        let v: serde_json::Value = serde_json::from_str(&join("r-1", "c2")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"join","room":"r-1","name":"c2"})
        );
        let v: serde_json::Value = serde_json::from_str(&ack(17)).unwrap();
        assert_eq!(v, serde_json::json!({"type":"ack","seq":17}));
        let v: serde_json::Value = serde_json::from_str(&resume("r\"1", 5)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"resume","token":"r\"1","lastSeq":5})
        );
        serde_json::from_str::<serde_json::Value>(HEARTBEAT).unwrap();
        assert_eq!(
            url(Peerjs, "127.0.0.1:9000", "/peerjs", "peerjs", "c-1", 255),
            "ws://127.0.0.1:9000/peerjs?key=peerjs&id=c-1&token=ff"
        );
        assert_eq!(
            url(Switchboard, "127.0.0.1:8080", "/ws", "peerjs", "c-1", 255),
            "ws://127.0.0.1:8080/ws"
        );
    }

    #[test]
    fn switchboard_events() {
        let joined = r#"{"type":"joined","protocol":1,"room":"demo","peerId":"p77","name":"Bob","resume":"r9","grace":30,"peers":[{"id":"p3f","name":"Ada"}],"grants":["publish"]}"#;
        assert_eq!(
            parse(Switchboard, joined).unwrap(),
            Event::Joined {
                peer_id: "p77".into(),
                partner: Some("p3f".into()),
                resume: "r9".into()
            }
        );
        let alone = r#"{"type":"joined","protocol":1,"peerId":"p3f","peers":[]}"#;
        assert_eq!(
            parse(Switchboard, alone).unwrap(),
            Event::Joined {
                peer_id: "p3f".into(),
                partner: None,
                resume: String::new()
            }
        );
        let resumed = r#"{"type":"resumed","protocol":1,"room":"demo","peerId":"p77","resume":"r10","peers":[],"gap":true}"#;
        assert_eq!(
            parse(Switchboard, resumed).unwrap(),
            Event::Resumed {
                resume: "r10".into(),
                gap: true
            }
        );
        let pj = r#"{"type":"peer-joined","seq":1,"peer":{"id":"p77","name":"Bob"}}"#;
        assert_eq!(
            parse(Switchboard, pj).unwrap(),
            Event::PeerJoined {
                seq: Some(1),
                id: "p77".into()
            }
        );
        let m = r#"{"type":"message","seq":2,"from":"p77","data":{"t":5,"n":6}}"#;
        assert_eq!(
            parse(Switchboard, m).unwrap(),
            Event::Relay {
                seq: Some(2),
                from: "p77".into(),
                stamp: Stamp {
                    t: Some(5),
                    n: Some(6)
                }
            }
        );
        let e = r#"{"type":"error","code":"rate-limited","reason":"slow down","fatal":false}"#;
        assert_eq!(
            parse(Switchboard, e).unwrap(),
            Event::Error {
                code: "rate-limited".into(),
                reason: "slow down".into()
            }
        );
        let l = r#"{"type":"peer-left","seq":3,"peerId":"p77","reason":"left"}"#;
        assert_eq!(
            parse(Switchboard, l).unwrap(),
            Event::PeerLeft {
                seq: Some(3),
                id: "p77".into()
            }
        );
        assert_eq!(
            parse(Switchboard, r#"{"type":"pong","id":1}"#).unwrap(),
            Event::Other {
                ty: "pong".into(),
                seq: None
            }
        );
        // escaped strings are fine too
        let m = r#"{"type":"message","seq":2,"from":"p\u0037","data":{"t":5,"n":6,"p":"x"}}"#;
        assert!(
            matches!(parse(Switchboard, m).unwrap(), Event::Relay { from, .. } if from == "p7")
        );
        assert!(parse(Switchboard, "not json").is_err());
    }

    #[test]
    fn peerjs_events() {
        assert_eq!(parse(Peerjs, r#"{"type":"OPEN"}"#).unwrap(), Event::Open);
        let m = r#"{"type":"OFFER","src":"c-0","dst":"c-1","payload":{"t":7,"n":8}}"#;
        assert_eq!(
            parse(Peerjs, m).unwrap(),
            Event::Relay {
                seq: None,
                from: "c-0".into(),
                stamp: Stamp {
                    t: Some(7),
                    n: Some(8)
                }
            }
        );
        let e =
            r#"{"type":"ERROR","payload":{"msg":"Server has reached its concurrent user limit"}}"#;
        assert!(
            matches!(parse(Peerjs, e).unwrap(), Event::Error { code, .. } if code.contains("concurrent"))
        );
        let t = r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#;
        assert!(
            matches!(parse(Peerjs, t).unwrap(), Event::Error { code, .. } if code == "ID-TAKEN")
        );
        let x = r#"{"type":"EXPIRE","src":"c-1","dst":"c-0"}"#;
        assert_eq!(
            parse(Peerjs, x).unwrap(),
            Event::PeerLeft {
                seq: None,
                id: "c-1".into()
            }
        );
    }
}
