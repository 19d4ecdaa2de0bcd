//! Switchboard's SFU over the signaling WebSocket (docs/signaling.md, the SFU protocol of
//! issue 11): every participant joins the room with `topology: "sfu"`, finds the peer
//! whose `service` is `"sfu"`, and talks to it with the ordinary relays.
//! - publisher: `message` `{"sfu":"publish","tracks":[…]}`, then `offer` → the SFU's `answer`;
//! - subscriber: `offer` with the data channel only (as the SDK's first offer) → the SFU's
//!   `answer`; then the SFU's `offer` with the remote tracks, answered.
//!
//! Each participant keeps its WebSocket on its own thread for the whole run: the SFU may
//! renegotiate (new offers are answered), and the connection must stay alive (reading
//! answers the server's pings). Every relayed message is acknowledged (`ack`).

use crate::media::{Cmd, Role};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

pub struct SwitchboardBackend {
    url: String,
    /// Where subscribers signal (another node of a cluster), and the SFU they use by name.
    sub_url: String,
    sub_sfu: Option<String>,
    /// Room names: the given name alone for one room, else `name-0`, `name-1`, …
    rooms: Vec<String>,
}

impl SwitchboardBackend {
    pub fn new(
        url: &str,
        sub_url: Option<&str>,
        sub_sfu: Option<&str>,
        room: &str,
        rooms: usize,
    ) -> Result<SwitchboardBackend> {
        let sub_url = sub_url.unwrap_or(url);
        for u in [url, sub_url] {
            if !u.starts_with("ws://") {
                bail!("the Switchboard URL is ws://host:port/ws, got {u}");
            }
        }
        let rooms = match rooms {
            0 | 1 => vec![room.to_string()],
            n => (0..n).map(|k| format!("{room}-{k}")).collect(),
        };
        Ok(SwitchboardBackend {
            url: url.to_string(),
            sub_url: sub_url.to_string(),
            sub_sfu: sub_sfu.map(str::to_string),
            rooms,
        })
    }
}

/// One participant's signaling connection.
pub(crate) struct Session {
    ws: Ws,
    sfu: Option<String>,
    /// Use only the SFU peer of this name (an edge of a cluster).
    want_sfu: Option<String>,
    /// When this participant started signaling (the start of its join time).
    started_ns: u64,
}

impl Session {
    pub(crate) fn join(url: &str, room: &str, name: &str) -> Result<Session> {
        Session::join_with(url, room, name, None)
    }

    /// As [`Session::join`], using only the SFU peer named `want_sfu` when given.
    pub(crate) fn join_with(
        url: &str,
        room: &str,
        name: &str,
        want_sfu: Option<&str>,
    ) -> Result<Session> {
        let started_ns = crate::sys::mono_ns();
        let (mut ws, _) = tungstenite::connect(url).with_context(|| format!("connecting {url}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            s.set_nodelay(true)?;
        }
        let mut s = Session {
            ws,
            sfu: None,
            want_sfu: want_sfu.map(str::to_string),
            started_ns,
        };
        s.send(&json!({"type": "join", "room": room, "name": name, "topology": "sfu"}))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = s
                .recv(deadline)?
                .ok_or_else(|| anyhow!("no `joined` within 10 s"))?;
            match m["type"].as_str() {
                Some("joined") => {
                    s.sfu = m["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|p| s.is_our_sfu(p))
                        .and_then(|p| p["id"].as_str())
                        .map(str::to_string);
                    return Ok(s);
                }
                Some("error") => bail!("join refused: {m}"),
                _ => {}
            }
        }
    }

    fn send(&mut self, v: &Value) -> Result<()> {
        self.ws.send(Message::text(v.to_string()))?;
        Ok(())
    }

    /// The next JSON message before `deadline` (None when it passed); acks relays.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Value>> {
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    if let Some(seq) = v["seq"].as_u64() {
                        self.send(&json!({"type": "ack", "seq": seq}))?;
                    }
                    if v["type"] == "peer-joined" && self.is_our_sfu(&v["peer"]) {
                        self.sfu = v["peer"]["id"].as_str().map(str::to_string);
                    }
                    return Ok(Some(v));
                }
                Ok(Message::Close(_)) => bail!("the server closed the signaling connection"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Whether peer `p` (a `peers` entry) is the SFU this participant uses.
    fn is_our_sfu(&self, p: &Value) -> bool {
        p["service"] == "sfu"
            && self
                .want_sfu
                .as_deref()
                .is_none_or(|name| p["name"] == name)
    }

    /// Waits for the SFU peer to be known.
    fn sfu(&mut self, deadline: Instant) -> Result<String> {
        while self.sfu.is_none() {
            if self.recv(deadline)?.is_none() {
                bail!("no SFU peer (service \"sfu\") in the room");
            }
        }
        self.sfu.clone().ok_or_else(|| anyhow!("no SFU peer"))
    }

    /// Answers every SFU offer for participant `id` until the connection ends.
    pub(crate) fn serve(mut self, id: usize, media: Sender<Cmd>) {
        loop {
            let far = Instant::now() + Duration::from_secs(3600);
            match self.recv(far) {
                Ok(Some(m)) if m["type"] == "offer" => {
                    if answer_offer(&mut self, id, &m, &media).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

fn answer_offer(s: &mut Session, id: usize, offer: &Value, media: &Sender<Cmd>) -> Result<()> {
    let from = offer["from"].as_str().unwrap_or_default().to_string();
    let sdp = offer["sdp"]
        .as_str()
        .ok_or_else(|| anyhow!("offer without sdp"))?
        .to_string();
    let (tx, rx) = channel();
    media
        .send(Cmd::AcceptOffer {
            id,
            started_ns: s.started_ns,
            sdp,
            reply: tx,
        })
        .map_err(|_| anyhow!("media thread gone"))?;
    let answer = rx
        .recv()
        .map_err(|_| anyhow!("media thread gone"))?
        .map_err(|e| anyhow!(e))?;
    s.send(&json!({"type": "answer", "to": from, "sdp": answer}))
}

/// `tracks` of the `publish` message: the m-lines of our offer with their sources.
fn publish_tracks(sdp: &str) -> Vec<Value> {
    let mut tracks = Vec::new();
    let mut kind = "";
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split(' ').next().unwrap_or("");
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            let source = match kind {
                "audio" => "microphone",
                "video" => "camera",
                _ => continue,
            };
            tracks.push(json!({"mid": mid.trim(), "source": source}));
        }
    }
    tracks
}

/// Sends participant `id`'s first offer (with the `publish` message for a publisher) and
/// applies the SFU's answer.
pub(crate) fn offer_and_answer(
    s: &mut Session,
    id: usize,
    role: Role,
    media: &Sender<Cmd>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let sfu = s.sfu(deadline)?;
    let (tx, rx) = channel();
    media
        .send(Cmd::CreateOffer {
            id,
            role,
            started_ns: s.started_ns,
            reply: tx,
        })
        .map_err(|_| anyhow!("media thread gone"))?;
    let offer = rx
        .recv()
        .map_err(|_| anyhow!("media thread gone"))?
        .map_err(|e| anyhow!(e))?;
    if role != Role::Subscriber {
        let tracks = json!({"sfu": "publish", "tracks": publish_tracks(&offer)});
        s.send(&json!({"type": "message", "to": sfu, "data": tracks}))?;
    }
    s.send(&json!({"type": "offer", "to": sfu, "sdp": offer}))?;
    let answer = loop {
        let m = s
            .recv(deadline)?
            .ok_or_else(|| anyhow!("no answer from the SFU within 10 s"))?;
        match m["type"].as_str() {
            Some("answer") => break m["sdp"].as_str().unwrap_or_default().to_string(),
            Some("message") if m["data"]["sfu"] == "error" => bail!("SFU refused: {m}"),
            Some("offer") => bail!("glare with the SFU's offer (not handled by the load client)"),
            _ => {}
        }
    };
    let (tx, rx) = channel();
    media
        .send(Cmd::AcceptAnswer {
            id,
            sdp: answer,
            reply: tx,
        })
        .map_err(|_| anyhow!("media thread gone"))?;
    rx.recv()
        .map_err(|_| anyhow!("media thread gone"))?
        .map_err(|e| anyhow!(e))
}

impl crate::Backend for SwitchboardBackend {
    fn publish(&self, id: usize, room: usize, media: &Sender<Cmd>) -> Result<()> {
        let room = self
            .rooms
            .get(room)
            .ok_or_else(|| anyhow!("no room {room}"))?;
        let mut s = Session::join(&self.url, room, &format!("pub{id}"))?;
        offer_and_answer(&mut s, id, Role::Publisher, media)?;
        let media = media.clone();
        std::thread::spawn(move || s.serve(id, media));
        Ok(())
    }

    /// Offers the data channel first (as the SDK does: the SFU offers remote tracks only
    /// to a participant that has described itself), then answers the SFU's offer.
    fn subscribe(&self, id: usize, room: usize, media: &Sender<Cmd>) -> Result<()> {
        let room = self
            .rooms
            .get(room)
            .ok_or_else(|| anyhow!("no room {room}"))?;
        let mut s = Session::join_with(
            &self.sub_url,
            room,
            &format!("sub{id}"),
            self.sub_sfu.as_deref(),
        )?;
        offer_and_answer(&mut s, id, Role::Subscriber, media)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = s
                .recv(deadline)?
                .ok_or_else(|| anyhow!("no offer from the SFU within 10 s"))?;
            match m["type"].as_str() {
                Some("offer") => {
                    answer_offer(&mut s, id, &m, media)?;
                    break;
                }
                Some("message") if m["data"]["sfu"] == "error" => bail!("SFU refused: {m}"),
                _ => {}
            }
        }
        let media = media.clone();
        std::thread::spawn(move || s.serve(id, media));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_from_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";
        assert_eq!(
            publish_tracks(sdp),
            vec![
                json!({"mid": "0", "source": "microphone"}),
                json!({"mid": "1", "source": "camera"})
            ]
        );
    }
}
