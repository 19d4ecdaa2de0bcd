//! The call protocol on the wire: the `data` of `message`s between a device and the
//! server's `calls` peer in its line room. Requests are `{"call":"dial",…}` objects;
//! events are rendered here too, so that the JSON a device sees is defined in one place
//! (docs/signaling.md, "Direct calls").

use serde_json::{json, Map, Value};
use std::sync::Arc;

/// A client's `ref` (a string of at most 64 characters or a number), echoed on the
/// first answer to its dial.
pub type Reference = Value;

/// What a device asks of the calls peer.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Call `to` (`bob` or `bob@b.test`).
    Dial {
        to: String,
        reference: Option<Reference>,
    },
    /// Take the incoming call `id` on this device.
    Accept { id: String },
    /// Refuse the incoming call `id`; `busy` says "busy" rather than "declined".
    Decline { id: String, busy: bool },
    /// Stop calling (caller, before anyone answered).
    Cancel { id: String },
    /// Leave the call.
    Hangup { id: String },
    /// Ring `to` into the call `id` (same room).
    Invite { id: String, to: String },
}

/// A request that is not one, with what the answer can quote.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct RequestError {
    pub id: Option<String>,
    pub reference: Option<Reference>,
    pub reason: String,
}

fn valid_reference(v: &Value) -> bool {
    match v {
        Value::String(s) => s.chars().count() <= 64,
        Value::Number(n) => n.to_string().len() <= 64,
        _ => false,
    }
}

impl Request {
    /// Parse the `data` of a message (raw JSON text).
    pub fn parse(data: &str) -> Result<Request, RequestError> {
        let v: Value = serde_json::from_str(data).map_err(|e| RequestError {
            id: None,
            reference: None,
            reason: format!("not JSON: {e}"),
        })?;
        let reference = v.get("ref").filter(|r| valid_reference(r)).cloned();
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| s.len() <= 64)
            .map(str::to_string);
        let fail = |reason: String| RequestError {
            id: id.clone(),
            reference: reference.clone(),
            reason,
        };
        let Some(op) = v.get("call").and_then(Value::as_str) else {
            return Err(fail("no \"call\" field".into()));
        };
        let text = |field: &str| -> Result<String, RequestError> {
            v.get(field)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 320)
                .map(str::to_string)
                .ok_or_else(|| fail(format!("{op} needs a string {field:?}")))
        };
        Ok(match op {
            "dial" => Request::Dial {
                to: text("to")?,
                reference,
            },
            "accept" => Request::Accept { id: text("id")? },
            "decline" => {
                let busy = match v.get("reason").and_then(Value::as_str) {
                    None | Some("declined") => false,
                    Some("busy") => true,
                    Some(other) => {
                        return Err(fail(format!(
                            "decline reason {other:?} is not declined or busy"
                        )))
                    }
                };
                Request::Decline {
                    id: text("id")?,
                    busy,
                }
            }
            "cancel" => Request::Cancel { id: text("id")? },
            "hangup" => Request::Hangup { id: text("id")? },
            "invite" => Request::Invite {
                id: text("id")?,
                to: text("to")?,
            },
            other => return Err(fail(format!("unknown call request {other:?}"))),
        })
    }
}

/// Why a call (or one party's part in it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    Declined,
    Busy,
    Unreachable,
    Cancelled,
    NoAnswer,
    Hangup,
    AnsweredElsewhere,
    Failed,
    RateLimited,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Declined => "declined",
            EndReason::Busy => "busy",
            EndReason::Unreachable => "unreachable",
            EndReason::Cancelled => "cancelled",
            EndReason::NoAnswer => "no-answer",
            EndReason::Hangup => "hangup",
            EndReason::AnsweredElsewhere => "answered-elsewhere",
            EndReason::Failed => "failed",
            EndReason::RateLimited => "rate-limited",
        }
    }

    /// The reason named `s` (what a federation reports).
    pub fn from_wire(s: &str) -> Option<EndReason> {
        Some(match s {
            "declined" => EndReason::Declined,
            "busy" => EndReason::Busy,
            "unreachable" => EndReason::Unreachable,
            "cancelled" => EndReason::Cancelled,
            "no-answer" => EndReason::NoAnswer,
            "hangup" => EndReason::Hangup,
            "answered-elsewhere" => EndReason::AnsweredElsewhere,
            "failed" => EndReason::Failed,
            "rate-limited" => EndReason::RateLimited,
            _ => return None,
        })
    }
}

/// How a call attempt ended, for `switchboard_calls_total{result}`: `answered` once
/// someone took it, else why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallResult {
    Answered,
    Unanswered(EndReason),
}

impl CallResult {
    /// Every label, for metrics that list zeros too.
    pub const LABELS: [&'static str; 8] = [
        "answered",
        "declined",
        "busy",
        "unreachable",
        "cancelled",
        "no-answer",
        "failed",
        "rate-limited",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Unanswered(r) => r.as_str(),
        }
    }
}

/// What the calls peer tells a device (or a federation, about its party).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The dial `reference` is call `id`: join `room` (mesh) now.
    Dialing {
        id: Arc<str>,
        reference: Option<Reference>,
        to: String,
        room: Arc<str>,
    },
    /// `to` is being rung.
    Ringing { id: Arc<str>, to: String },
    /// `from` calls: accept (then join `room`) or decline.
    Incoming {
        id: Arc<str>,
        from: String,
        from_name: String,
        room: Arc<str>,
    },
    /// `by` took the call.
    Answered { id: Arc<str>, by: String },
    /// `who` is out of a call that goes on (an invitee declined, a party hung up).
    Left {
        id: Arc<str>,
        who: String,
        reason: EndReason,
        detail: String,
    },
    /// The call is over for this device.
    Ended {
        id: Arc<str>,
        reference: Option<Reference>,
        reason: EndReason,
        detail: String,
    },
    /// A request that could not be carried out; nothing changed.
    Error {
        id: Option<String>,
        reference: Option<Reference>,
        reason: String,
    },
}

impl Event {
    /// The call room this event admits to (a token for it goes along).
    pub fn room(&self) -> Option<&str> {
        match self {
            Event::Dialing { room, .. } | Event::Incoming { room, .. } => Some(room),
            _ => None,
        }
    }

    /// The JSON a device receives, with `token` (a room token for [`Event::room`], when
    /// the server uses them).
    pub fn to_json(&self, token: Option<&str>) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        match self {
            Event::Dialing {
                id,
                reference,
                to,
                room,
            } => {
                put("call", json!("dialing"));
                put("id", json!(id.as_ref()));
                if let Some(r) = reference {
                    put("ref", r.clone());
                }
                put("to", json!(to));
                put("room", json!(room.as_ref()));
            }
            Event::Ringing { id, to } => {
                put("call", json!("ringing"));
                put("id", json!(id.as_ref()));
                put("to", json!(to));
            }
            Event::Incoming {
                id,
                from,
                from_name,
                room,
            } => {
                put("call", json!("incoming"));
                put("id", json!(id.as_ref()));
                put("from", json!(from));
                put("fromName", json!(from_name));
                put("room", json!(room.as_ref()));
            }
            Event::Answered { id, by } => {
                put("call", json!("answered"));
                put("id", json!(id.as_ref()));
                put("by", json!(by));
            }
            Event::Left {
                id,
                who,
                reason,
                detail,
            } => {
                put("call", json!("left"));
                put("id", json!(id.as_ref()));
                put("who", json!(who));
                put("reason", json!(reason.as_str()));
                put("detail", json!(detail));
            }
            Event::Ended {
                id,
                reference,
                reason,
                detail,
            } => {
                put("call", json!("ended"));
                put("id", json!(id.as_ref()));
                if let Some(r) = reference {
                    put("ref", r.clone());
                }
                put("reason", json!(reason.as_str()));
                put("detail", json!(detail));
            }
            Event::Error {
                id,
                reference,
                reason,
            } => {
                put("call", json!("error"));
                if let Some(id) = id {
                    put("id", json!(id));
                }
                if let Some(r) = reference {
                    put("ref", r.clone());
                }
                put("reason", json!(reason));
            }
        }
        if let (Some(t), true) = (token, self.room().is_some()) {
            m.insert("token".into(), json!(t));
        }
        Value::Object(m)
    }
}
