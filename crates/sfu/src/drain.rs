//! Draining the participants' `Rtc`s. What a str0m call costs is mostly fixed: every
//! `poll_output` walks ICE, DTLS, SCTP, the session and every timer, and every
//! `handle_input(Timeout)` runs every stream's and the estimator's timers, whatever it
//! moves. A forwarded packet needs one timeout of its subscriber's `Rtc` to leave (str0m's
//! pacer releases one packet per timeout), so the packets written into a subscriber are
//! not moved per datagram but once per input batch: [`Sfu::flush`] gives each written
//! subscriber one timeout per packet written and polls it once, the batch's packets share
//! the drain's closing poll and the pacer's "timeout 1 µs later" round. The publisher's
//! own `Rtc` is still drained per datagram (its `RtpPacket` events are what is forwarded).

use std::cmp::Reverse;

use str0m::net::Protocol;
use str0m::{Input, Output};

use crate::output::{GoneReason, SfuOutput, Transport};
use crate::participant::Pid;
use crate::sfu::Sfu;

impl Sfu {
    /// Move the packets forwarded since the last flush to the wire (and everything else
    /// pending). The driver calls it after each batch of [`Sfu::handle_datagram`] /
    /// [`Sfu::handle_tcp_frame`] calls (a `recvmmsg` batch), then polls the output; a
    /// driver that does not is served by [`Sfu::handle_timeout`], which
    /// [`Sfu::poll_timeout`] makes due at once while packets wait.
    #[inline(never)]
    pub fn flush(&mut self, now: std::time::Instant) {
        self.tick(now);
        self.drain();
    }

    /// Queue a participant for a drain of its output (once: `dirty` is true exactly
    /// while it is queued).
    pub(crate) fn mark(&mut self, pid: Pid) {
        if self.draining == Some(pid) {
            return;
        }
        if let Some(p) = self.parts[pid].as_mut() {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(pid);
            }
        }
    }

    /// A packet was written into one of `pid`'s (unpaced) send streams: it leaves on the
    /// next flush, which gives the participant one timeout per packet written.
    pub(crate) fn mark_written(&mut self, pid: Pid) {
        if let Some(p) = self.parts[pid].as_mut() {
            if p.written == 0 {
                self.due.push(pid);
            }
            p.written = p.written.saturating_add(1);
        }
    }

    /// Drain every participant that may have output, written subscribers included,
    /// until none has: forwarding into one participant's streams makes it dirty in turn.
    pub(crate) fn drain(&mut self) {
        self.settle(true);
        self.offer_due();
        self.settle(true);
    }

    /// Like [`Sfu::drain`], but what was forwarded stays in the subscribers' streams
    /// for the next flush (per datagram: the batch's packets share one flush).
    pub(crate) fn drain_inputs(&mut self) {
        self.settle(false);
        self.offer_due();
        self.settle(false);
    }

    fn settle(&mut self, written_too: bool) {
        loop {
            while let Some(pid) = self.dirty.pop() {
                self.drain_one(pid);
            }
            if !written_too {
                return;
            }
            let Some(pid) = self.due.pop() else {
                return;
            };
            self.release_written(pid);
        }
    }

    /// One timeout per packet written since the last flush, each followed by polls up to
    /// the packet str0m's pacer lets go (it releases one per timeout, then asks for a
    /// timeout 1 µs later; the poll that would only say so is skipped), then one more
    /// timeout, and polls until str0m has nothing left: that last round is the pacer's
    /// "1 µs later" one, done at once, so str0m's next deadline is a real one. A pacer that
    /// holds a packet back ends the rounds early: its own deadline takes over.
    fn release_written(&mut self, pid: Pid) {
        let Some(p) = self.parts[pid].as_mut() else {
            return;
        };
        let rounds = std::mem::take(&mut p.written);
        self.draining = Some(pid);
        for round in 0..=rounds {
            let Some(p) = self.parts[pid].as_mut() else {
                break;
            };
            if let Err(e) = p.rtc.handle_input(Input::Timeout(self.now)) {
                tracing::debug!(peer = %p.peer, "sfu: timeout failed: {e}");
                self.drop_participant(pid, Some(GoneReason::Error));
                break;
            }
            if !self.poll_rtc(pid, round < rounds) {
                break;
            }
        }
        self.draining = None;
    }

    fn drain_one(&mut self, pid: Pid) {
        if let Some(p) = self.parts[pid].as_mut() {
            p.dirty = false;
        }
        self.draining = Some(pid);
        self.poll_rtc(pid, false);
        self.draining = None;
    }

    /// Poll one participant's `Rtc` until it only has a deadline, or with `until_rtp`
    /// until it sent an RTP packet. True when it stopped at that packet (more may come).
    fn poll_rtc(&mut self, pid: Pid, until_rtp: bool) -> bool {
        loop {
            let Some(p) = self.parts[pid].as_mut() else {
                return false;
            };
            if !p.rtc.is_alive() {
                self.drop_participant(pid, Some(GoneReason::Closed));
                return false;
            }
            let output = match p.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(peer = %p.peer, "sfu: poll failed: {e}");
                    self.drop_participant(pid, Some(GoneReason::Error));
                    return false;
                }
            };
            match output {
                Output::Timeout(t) => {
                    if p.rtc_timeout != Some(t) {
                        p.rtc_timeout = Some(t);
                        self.timers.push(Reverse((t, pid)));
                    }
                    return false;
                }
                Output::Transmit(t) => {
                    let rtp = is_rtp(&t.contents);
                    self.out.push_back(SfuOutput::Transmit {
                        // Only UDP and plain TCP candidates are announced.
                        transport: match t.proto {
                            Protocol::Udp => Transport::Udp,
                            _ => Transport::Tcp,
                        },
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                    if until_rtp && rtp {
                        return true;
                    }
                }
                Output::Event(e) => self.on_event(pid, e),
            }
        }
    }
}

/// An SRTP packet (not SRTCP, DTLS or STUN): version 2, and not an RTCP packet type in
/// the second byte (RFC 5761 §4).
fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] >> 6 == 2 && !(192..=223).contains(&b[1])
}
