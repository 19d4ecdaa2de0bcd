//! Janus VideoRoom over the Janus HTTP API (plain HTTP/1.0, one request per connection):
//! create a session, attach `janus.plugin.videoroom`, then
//! - publisher: `join` (ptype publisher) → `configure` with our offer → Janus's answer;
//! - subscriber: `join` (ptype subscriber, the publisher's feed) → Janus's offer →
//!   `start` with our answer.
//!
//! Asynchronous plugin replies arrive on the session's long poll (`GET /janus/<session>`).
//! Candidates travel in the SDP (ours: one host candidate; Janus's: gathered on loopback),
//! so trickle only says "completed". Sessions never time out in bench/janus/janus.jcfg.

use crate::media::{Cmd, Role};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

/// `http://host:port/path` split for raw requests.
#[derive(Clone, Debug)]
pub struct JanusUrl {
    addr: SocketAddr,
    host: String,
    path: String,
}

impl JanusUrl {
    pub fn parse(url: &str) -> Result<JanusUrl> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("the Janus URL must start with http://: {url}"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr = host
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
        Ok(JanusUrl {
            addr,
            host: host.to_string(),
            path: format!("/{}", path.trim_end_matches('/')),
        })
    }
}

fn request(url: &JanusUrl, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut s = TcpStream::connect(url.addr).context("connecting to Janus")?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        url.host,
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end in Janus's reply"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        bail!("Janus answered {status}: {body}");
    }
    serde_json::from_str(body).with_context(|| format!("Janus sent no JSON: {body}"))
}

fn transaction() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// One Janus session with one plugin handle.
pub(crate) struct Handle {
    url: JanusUrl,
    session: u64,
    handle: u64,
}

impl Handle {
    /// A new session with a handle on `plugin` (`janus.plugin.videoroom`, `janus.plugin.sip`).
    pub(crate) fn attach(url: &JanusUrl, plugin: &str) -> Result<Handle> {
        let r = request(
            url,
            "POST",
            &url.path,
            Some(&json!({"janus": "create", "transaction": transaction()})),
        )?;
        let session = id_of(&r).context("create")?;
        let r = request(
            url,
            "POST",
            &format!("{}/{session}", url.path),
            Some(&json!({"janus": "attach", "plugin": plugin, "transaction": transaction()})),
        )?;
        let handle = id_of(&r).context("attach")?;
        Ok(Handle {
            url: url.clone(),
            session,
            handle,
        })
    }

    /// Sends a plugin message and waits for its asynchronous event (on the long poll).
    pub(crate) fn message(&self, body: Value, jsep: Option<Value>) -> Result<Value> {
        let t = transaction();
        let mut msg = json!({"janus": "message", "body": body, "transaction": t});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let path = format!("{}/{}/{}", self.url.path, self.session, self.handle);
        let r = request(&self.url, "POST", &path, Some(&msg))?;
        match r["janus"].as_str() {
            Some("ack") => {}
            Some("success") => return Ok(r),
            _ => bail!("Janus refused {}: {r}", msg["body"]),
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ev = request(
                &self.url,
                "GET",
                &format!("{}/{}?maxev=1", self.url.path, self.session),
                None,
            )?;
            if ev["transaction"].as_str() == Some(&t) {
                if let Some(err) = ev["plugindata"]["data"].get("error") {
                    bail!("plugin error: {err}");
                }
                return Ok(ev);
            }
        }
        bail!("no reply from Janus to {} within 30 s", msg["body"])
    }

    /// The session's next event (long poll: Janus holds it up to 30 s when there is none).
    pub(crate) fn next_event(&self) -> Result<Value> {
        request(
            &self.url,
            "GET",
            &format!("{}/{}?maxev=1", self.url.path, self.session),
            None,
        )
    }

    /// Ends the session (and with it the handle and any call).
    pub(crate) fn destroy(&self) -> Result<()> {
        let path = format!("{}/{}", self.url.path, self.session);
        request(
            &self.url,
            "POST",
            &path,
            Some(&json!({"janus": "destroy", "transaction": transaction()})),
        )?;
        Ok(())
    }

    pub(crate) fn trickle_done(&self) -> Result<()> {
        let path = format!("{}/{}/{}", self.url.path, self.session, self.handle);
        request(
            &self.url,
            "POST",
            &path,
            Some(
                &json!({"janus": "trickle", "candidate": {"completed": true},
                         "transaction": transaction()}),
            ),
        )?;
        Ok(())
    }
}

fn id_of(r: &Value) -> Result<u64> {
    r["data"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("no id in Janus's reply: {r}"))
}

pub(crate) fn ask<T>(
    media: &Sender<Cmd>,
    make: impl FnOnce(Sender<Result<T, String>>) -> Cmd,
) -> Result<T> {
    let (tx, rx) = channel();
    media
        .send(make(tx))
        .map_err(|_| anyhow!("media thread gone"))?;
    rx.recv()
        .map_err(|_| anyhow!("media thread gone"))?
        .map_err(|e| anyhow!(e))
}

/// Joins room `room` as publisher `id`; returns the feed id subscribers ask for.
pub fn publish(url: &JanusUrl, room: u64, id: usize, media: &Sender<Cmd>) -> Result<u64> {
    let started_ns = crate::sys::mono_ns();
    let h = Handle::attach(url, "janus.plugin.videoroom")?;
    let joined = h.message(
        json!({"request": "join", "ptype": "publisher", "room": room,
               "display": format!("pub{id}")}),
        None,
    )?;
    let feed = joined["plugindata"]["data"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("join: no publisher id in {joined}"))?;
    let offer = ask(media, |reply| Cmd::CreateOffer {
        id,
        role: Role::Publisher,
        started_ns,
        reply,
    })?;
    let ev = h.message(
        json!({"request": "configure", "audio": true, "video": true}),
        Some(json!({"type": "offer", "sdp": offer})),
    )?;
    let answer = ev["jsep"]["sdp"]
        .as_str()
        .ok_or_else(|| anyhow!("configure: no answer in {ev}"))?
        .to_string();
    if std::env::var_os("SFU_LOAD_DEBUG").is_some() {
        eprintln!("offer:\n{offer}\nanswer:\n{answer}");
    }
    ask(media, |reply| Cmd::AcceptAnswer {
        id,
        sdp: answer,
        reply,
    })?;
    h.trickle_done()?;
    Ok(feed)
}

/// Joins room `room` as subscriber `id` of `feeds` (one PeerConnection for all).
pub fn subscribe(
    url: &JanusUrl,
    room: u64,
    feeds: &[u64],
    id: usize,
    media: &Sender<Cmd>,
) -> Result<()> {
    let started_ns = crate::sys::mono_ns();
    let h = Handle::attach(url, "janus.plugin.videoroom")?;
    let ev = h.message(
        json!({"request": "join", "ptype": "subscriber", "room": room,
               "streams": feeds.iter().map(|f| json!({"feed": f})).collect::<Vec<_>>()}),
        None,
    )?;
    let offer = ev["jsep"]["sdp"]
        .as_str()
        .ok_or_else(|| anyhow!("subscriber join: no offer in {ev}"))?
        .to_string();
    let answer = ask(media, |reply| Cmd::AcceptOffer {
        id,
        started_ns,
        sdp: offer,
        reply,
    })?;
    h.message(
        json!({"request": "start"}),
        Some(json!({"type": "answer", "sdp": answer})),
    )?;
    h.trickle_done()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let u = JanusUrl::parse("http://127.0.0.1:8088/janus").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8088".parse().unwrap());
        assert_eq!(u.path, "/janus");
        assert!(JanusUrl::parse("ws://127.0.0.1:8188").is_err());
    }
}
