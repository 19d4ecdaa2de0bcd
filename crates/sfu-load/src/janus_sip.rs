//! Calls through Janus's SIP plugin (`janus.plugin.sip`, Janus 1.1.2) over the HTTP API,
//! one session and handle per call:
//! `register` as a guest (no REGISTER is sent: the plugin only takes the identity), `call`
//! with the peer's offer (the plugin answers `calling`), then the far end's 200 arrives as
//! an `accepted` event with Janus's answer; `hangup` and the session's destruction at the
//! end. Janus does not transcode: the codec of the peer's offer is what the far end gets.

use crate::calls::CallBackend;
use crate::janus::{ask, Handle, JanusUrl};
use crate::media::{AudioCodec, Cmd, Role};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct JanusSip {
    url: JanusUrl,
    /// Where every call goes (`sip:echo@10.98.0.1:5980`).
    far_end: String,
    /// Host part of the guests' identities (`sip:load<N>@<host>`).
    identity_host: String,
    codec: AudioCodec,
    handles: Mutex<Vec<Handle>>,
}

impl JanusSip {
    pub fn new(url: &str, far_end: &str, identity_host: &str, codec: AudioCodec) -> Result<Self> {
        if !far_end.starts_with("sip:") {
            bail!("the far end is a SIP URI (sip:user@host:port), got {far_end}");
        }
        Ok(JanusSip {
            url: JanusUrl::parse(url)?,
            far_end: far_end.to_string(),
            identity_host: identity_host.to_string(),
            codec,
            handles: Mutex::new(Vec::new()),
        })
    }
}

/// What a SIP plugin event says: its `result.event` (`registered`, `calling`, `accepted`,
/// `hangup`, …), the SIP code and reason of a hangup, and the JSEP SDP it carries.
#[derive(Debug, PartialEq)]
pub struct SipEvent<'a> {
    pub event: &'a str,
    pub code: Option<u64>,
    pub reason: Option<&'a str>,
    pub sdp: Option<&'a str>,
}

/// The SIP plugin's event in a Janus event message, if it is one; a plugin error
/// (`error_code`/`error`) is an error.
pub fn sip_event(ev: &Value) -> Result<Option<SipEvent<'_>>> {
    let data = &ev["plugindata"]["data"];
    if let Some(err) = data.get("error") {
        bail!("SIP plugin error {}: {err}", data["error_code"]);
    }
    let Some(event) = data["result"]["event"].as_str() else {
        return Ok(None);
    };
    Ok(Some(SipEvent {
        event,
        code: data["result"]["code"].as_u64(),
        reason: data["result"]["reason"].as_str(),
        sdp: ev["jsep"]["sdp"].as_str(),
    }))
}

/// Waits on the session's events for the call's `accepted` (its answer SDP); a `hangup`
/// first is the far end's (or Janus's) refusal.
fn wait_accepted(h: &Handle) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ev = h.next_event()?;
        let Some(e) = sip_event(&ev)? else { continue };
        match e.event {
            "accepted" => {
                return e
                    .sdp
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("accepted without an answer: {ev}"));
            }
            "hangup" => bail!(
                "the call ended before it was answered: {} {}",
                e.code.unwrap_or(0),
                e.reason.unwrap_or("")
            ),
            _ => {}
        }
    }
    bail!("no `accepted` within 30 s")
}

impl CallBackend for JanusSip {
    fn place(&self, id: usize, media: &Sender<Cmd>) -> Result<()> {
        let started_ns = crate::sys::mono_ns();
        let h = Handle::attach(&self.url, "janus.plugin.sip")?;
        let reg = h.message(
            json!({"request": "register", "type": "guest",
                   "username": format!("sip:load{id}@{}", self.identity_host)}),
            None,
        )?;
        match sip_event(&reg)? {
            Some(SipEvent {
                event: "registered",
                ..
            }) => {}
            _ => bail!("guest register: {reg}"),
        }
        let offer = ask(media, |reply| Cmd::CreateOffer {
            id,
            role: Role::Call {
                codec: self.codec,
                send_recv: true,
            },
            started_ns,
            reply,
        })?;
        let calling = h.message(
            json!({"request": "call", "uri": self.far_end}),
            Some(json!({"type": "offer", "sdp": offer})),
        )?;
        sip_event(&calling)?;
        let answer = wait_accepted(&h)?;
        if std::env::var_os("SFU_LOAD_DEBUG").is_some() {
            eprintln!("offer:\n{offer}\nanswer:\n{answer}");
        }
        ask(media, |reply| Cmd::AcceptAnswer {
            id,
            sdp: answer,
            reply,
        })?;
        h.trickle_done()?;
        self.handles
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .push(h);
        Ok(())
    }

    fn hang_up_all(&self) {
        let handles = match self.handles.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => return,
        };
        for h in handles {
            if let Err(e) = h
                .message(json!({"request": "hangup"}), None)
                .and_then(|_| h.destroy())
            {
                eprintln!("hangup: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_event_carries_the_answer() {
        let ev = json!({"janus": "event", "session_id": 1, "sender": 2,
            "plugindata": {"plugin": "janus.plugin.sip", "data": {"sip": "event",
                "call_id": "abc", "result": {"event": "accepted", "username": "sip:echo@h"}}},
            "jsep": {"type": "answer", "sdp": "v=0\r\n"}});
        let e = sip_event(&ev).unwrap().unwrap();
        assert_eq!(e.event, "accepted");
        assert_eq!(e.sdp, Some("v=0\r\n"));
        assert_eq!(e.code, None);
    }

    #[test]
    fn hangup_event_has_code_and_reason() {
        let ev = json!({"janus": "event", "plugindata": {"data": {"sip": "event",
            "result": {"event": "hangup", "code": 486, "reason": "Busy Here"}}}});
        let e = sip_event(&ev).unwrap().unwrap();
        assert_eq!(
            (e.event, e.code, e.reason),
            ("hangup", Some(486), Some("Busy Here"))
        );
        assert_eq!(e.sdp, None);
    }

    #[test]
    fn plugin_errors_and_other_events() {
        let err = json!({"plugindata": {"data": {"sip": "event", "error_code": 445,
            "error": "Invalid user address"}}});
        assert!(sip_event(&err).unwrap_err().to_string().contains("445"));
        let webrtcup = json!({"janus": "webrtcup", "session_id": 1});
        assert_eq!(sip_event(&webrtcup).unwrap(), None);
    }
}
