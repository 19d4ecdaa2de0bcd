//! The data channel in SFU rooms, "exactly as in mesh": a browser's text message
//! `{"to":"<peer>"|absent,"data":<any>}` on the SDK's negotiated channel is relayed as
//! `{"from":"<peer>","data":<same raw JSON>}` to the named peer or to everyone else in the
//! room. `data` is never re-encoded. Binary, non-JSON or `data`-less messages, unknown
//! targets and receivers whose channel buffer is full are dropped and counted.

use str0m::channel::ChannelData;

use crate::message::{Envelope, Relayed};
use crate::participant::Pid;
use crate::sfu::Sfu;

impl Sfu {
    pub(crate) fn on_channel_data(&mut self, pid: Pid, d: ChannelData) {
        let Some(p) = self.parts[pid].as_ref() else {
            return;
        };
        let parsed = (!d.binary)
            .then(|| std::str::from_utf8(&d.data).ok())
            .flatten()
            .and_then(|t| Envelope::parse(t).ok());
        let Some(msg) = parsed else {
            self.counters.data_dropped += 1;
            return;
        };
        let text = Relayed {
            from: &p.peer,
            data: msg.data,
        }
        .render();
        let targets: Vec<Pid> = match self.rooms.get(&p.room) {
            Some(r) => match msg.to {
                Some(to) => r
                    .by_peer
                    .get(to)
                    .copied()
                    .filter(|t| *t != pid)
                    .into_iter()
                    .collect(),
                None => r.members.iter().copied().filter(|m| *m != pid).collect(),
            },
            None => Vec::new(),
        };
        if targets.is_empty() {
            self.counters.data_dropped += 1;
        }
        for t in targets {
            self.send_data(t, &text);
        }
    }

    fn send_data(&mut self, to: Pid, text: &str) {
        let limit = self.cfg.limits.data_queue_bytes;
        let Some(p) = self.parts[to].as_mut() else {
            return;
        };
        let sent = p
            .channel
            .and_then(|id| p.rtc.channel(id))
            .is_some_and(|mut ch| {
                ch.buffered_amount() + text.len() <= limit
                    && ch.write(false, text.as_bytes()).unwrap_or(false)
            });
        if sent {
            self.counters.data_relayed += 1;
            self.mark(to);
        } else {
            self.counters.data_dropped += 1;
        }
    }
}
