//! Calls through Switchboard's SIP gateway: per call, the peer joins its own room through
//! signaling and the SFU and publishes one audio track (crate::switchboard), then
//! `POST /api/sip/calls {"room","to"}` (docs/sip.md "For apps") dials the far end; the
//! gateway joins the room as the phone and the SFU offers its track to the peer, whose
//! signaling thread answers. `DELETE /api/sip/calls/<room>/<call>` hangs up at the end.
//! Rooms need no token here (the benchmark's server has no `--room-token-secret`).

use crate::calls::CallBackend;
use crate::media::{AudioCodec, Cmd, Role};
use crate::switchboard::{offer_and_answer, Session};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::Duration;

pub struct SwitchboardSip {
    ws_url: String,
    /// The HTTP API's address and Host header.
    api: SocketAddr,
    api_host: String,
    /// Call k's room is `<room>-<k>`.
    room: String,
    far_end: String,
    codec: AudioCodec,
    /// (room, call id) of every call placed.
    calls: Mutex<Vec<(String, String)>>,
}

impl SwitchboardSip {
    pub fn new(
        ws_url: &str,
        api_url: &str,
        room: &str,
        far_end: &str,
        codec: AudioCodec,
    ) -> Result<Self> {
        if !ws_url.starts_with("ws://") {
            bail!("the Switchboard URL is ws://host:port/ws, got {ws_url}");
        }
        let host = api_url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("the API URL is http://host:port, got {api_url}"))?
            .trim_end_matches('/');
        let api = host
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
        Ok(SwitchboardSip {
            ws_url: ws_url.to_string(),
            api,
            api_host: host.to_string(),
            room: room.to_string(),
            far_end: far_end.to_string(),
            codec,
            calls: Mutex::new(Vec::new()),
        })
    }

    /// One HTTP/1.0 request to the API: the status and the body.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&self.api, Duration::from_secs(5))
            .context("connecting to Switchboard's HTTP API")?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.api_host,
            body.len()
        )?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        parse_response(&String::from_utf8_lossy(&out))
    }
}

/// Status code and body of a raw HTTP response.
fn parse_response(text: &str) -> Result<(u16, String)> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end in the reply"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The call id of `POST /api/sip/calls`'s `201 {"call":"c7"}`; any other answer is an error.
fn call_id(status: u16, body: &str) -> Result<String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if status != 201 {
        bail!("POST /api/sip/calls answered {status}: {body}");
    }
    v["call"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no call id in {body}"))
}

impl CallBackend for SwitchboardSip {
    fn place(&self, id: usize, media: &Sender<Cmd>) -> Result<()> {
        let room = format!("{}-{id}", self.room);
        let mut s = Session::join(&self.ws_url, &room, &format!("call{id}"))?;
        let role = Role::Call {
            codec: self.codec,
            send_recv: false,
        };
        offer_and_answer(&mut s, id, role, media)?;
        let serve_media = media.clone();
        std::thread::spawn(move || s.serve(id, serve_media));
        let (status, body) = self.request(
            "POST",
            "/api/sip/calls",
            Some(&json!({"room": room, "to": self.far_end})),
        )?;
        let call = call_id(status, &body)?;
        self.calls
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .push((room, call));
        Ok(())
    }

    fn hang_up_all(&self) {
        let calls = match self.calls.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(_) => return,
        };
        for (room, call) in calls {
            match self.request("DELETE", &format!("/api/sip/calls/{room}/{call}"), None) {
                Ok((200, _)) => {}
                Ok((status, body)) => eprintln!("hangup {room}/{call}: {status} {body}"),
                Err(e) => eprintln!("hangup {room}/{call}: {e:#}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_call_id_and_refusals() {
        let (status, body) =
            parse_response("HTTP/1.1 201 Created\r\ncontent-length: 13\r\n\r\n{\"call\":\"c7\"}")
                .unwrap();
        assert_eq!(call_id(status, &body).unwrap(), "c7");
        let (status, body) =
            parse_response("HTTP/1.1 503 Service Unavailable\r\n\r\n{\"error\":\"busy\"}").unwrap();
        assert!(call_id(status, &body)
            .unwrap_err()
            .to_string()
            .contains("503"));
        assert!(call_id(201, "{}").is_err());
        assert!(parse_response("garbage").is_err());
    }
}
