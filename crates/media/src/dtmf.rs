//! RFC 4733 telephone events (DTMF over RTP): the 4-byte payload, a sender that emits the
//! start, the 50 ms updates and the three end packets of one digit, and a receiver that
//! reports each digit once whatever the retransmissions.
//!
//! The clock rate is a parameter because telephone-event runs at its codec's rate (8000 with
//! G.711, 48000 with Opus): a digit bridged between legs keeps its length in time, not in
//! ticks ([`rescale_ticks`]). Hand-written: a few dozen lines, no crate offers it sans-IO.

use std::time::{Duration, Instant};
use thiserror::Error;

/// Payload length of one telephone event.
pub const EVENT_LEN: usize = 4;
/// Interval between update packets (RFC 4733 §2.5.1.2 suggests 50 ms).
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);
/// End packets sent per event (RFC 4733 §2.5.1.4: three, for loss).
pub const END_PACKETS: u8 = 3;

/// Why an event could not be read or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// Shorter than 4 bytes.
    #[error("telephone-event payload truncated")]
    Truncated,
    /// Volume above 63 (the field has 6 bits).
    #[error("volume {0} out of range (0..=63)")]
    BadVolume(u8),
    /// The duration does not fit 16 bits of ticks at this clock rate (segmenting long
    /// events, RFC 4733 §2.5.1.3, is not done).
    #[error("duration too long for one event at this clock rate")]
    DurationTooLong,
    /// A digit is still being sent.
    #[error("a digit is still being sent")]
    Busy,
    /// Clock rate zero.
    #[error("clock rate must be positive")]
    BadClockRate,
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9, 10 `*`, 11 `#`, 12–15 A–D.
    pub event: u8,
    /// End bit.
    pub end: bool,
    /// Power level in −dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in ticks of the clock rate.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the payload (extra bytes, e.g. a redundant event, are ignored).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let b = payload.get(..EVENT_LEN).ok_or(DtmfError::Truncated)?;
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The 4-byte payload.
    pub fn to_bytes(&self) -> Result<[u8; EVENT_LEN], DtmfError> {
        if self.volume > 63 {
            return Err(DtmfError::BadVolume(self.volume));
        }
        let d = self.duration.to_be_bytes();
        Ok([
            self.event,
            (u8::from(self.end) << 7) | self.volume,
            d[0],
            d[1],
        ])
    }
}

/// The DTMF character of an event code (`0`–`9`, `*`, `#`, `A`–`D`).
pub fn event_to_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of a DTMF character (as sent in SIP INFO `application/dtmf-relay`).
pub fn char_to_event(c: char) -> Option<u8> {
    match c.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        l @ 'A'..='D' => Some(l as u8 - b'A' + 12),
        _ => None,
    }
}

/// Converts a tick count between clock rates (bridging G.711 ↔ Opus telephone events).
pub fn rescale_ticks(ticks: u32, from_rate: u32, to_rate: u32) -> u32 {
    if from_rate == 0 {
        return 0;
    }
    (u64::from(ticks) * u64::from(to_rate) / u64::from(from_rate)).min(u64::from(u32::MAX)) as u32
}

fn ticks(d: Duration, clock_rate: u32) -> u64 {
    (d.as_micros() * u128::from(clock_rate) / 1_000_000).min(u128::from(u64::MAX)) as u64
}

/// One packet the sender wants on the wire: put `payload` after an RTP header with the
/// telephone-event payload type, this `timestamp` and `marker`, and the stream's next
/// sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The RFC 4733 payload.
    pub payload: [u8; EVENT_LEN],
    /// RTP timestamp: the event's start, the same for all its packets.
    pub timestamp: u32,
    /// Marker bit: set on the first packet of an event.
    pub marker: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sending {
    event: u8,
    volume: u8,
    timestamp: u32,
    started_at: Instant,
    ends_at: Instant,
    total_ticks: u16,
    next_update: Option<Instant>,
    ends_sent: u8,
}

/// Sends one digit at a time as RFC 4733 packets (sans-IO: call [`DtmfSender::poll`] at
/// [`DtmfSender::poll_timeout`]).
#[derive(Debug, Clone)]
pub struct DtmfSender {
    clock_rate: u32,
    sending: Option<Sending>,
}

impl DtmfSender {
    /// A sender for a telephone-event stream at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Result<DtmfSender, DtmfError> {
        if clock_rate == 0 {
            return Err(DtmfError::BadClockRate);
        }
        Ok(DtmfSender {
            clock_rate,
            sending: None,
        })
    }

    /// Whether a digit is in progress.
    pub fn is_busy(&self) -> bool {
        self.sending.is_some()
    }

    /// Starts sending `event` for `duration` from `now`, at RTP `timestamp` (the audio
    /// stream's current timestamp; the caller pauses audio packets meanwhile).
    pub fn start(
        &mut self,
        event: u8,
        volume: u8,
        duration: Duration,
        timestamp: u32,
        now: Instant,
    ) -> Result<(), DtmfError> {
        if self.sending.is_some() {
            return Err(DtmfError::Busy);
        }
        if volume > 63 {
            return Err(DtmfError::BadVolume(volume));
        }
        let total_ticks = u16::try_from(ticks(duration, self.clock_rate))
            .map_err(|_| DtmfError::DurationTooLong)?;
        self.sending = Some(Sending {
            event,
            volume,
            timestamp,
            started_at: now,
            ends_at: now + duration,
            total_ticks,
            next_update: Some(now),
            ends_sent: 0,
        });
        Ok(())
    }

    /// When [`DtmfSender::poll`] next has a packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.sending.as_ref()?;
        Some(match s.next_update {
            Some(next) if next < s.ends_at => next,
            _ => s.ends_at,
        })
    }

    /// The packet due at `now`, if any; call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<DtmfPacket> {
        let clock_rate = self.clock_rate;
        let s = self.sending.as_mut()?;
        let (end, duration, marker) = if now >= s.ends_at && s.next_update != Some(s.started_at) {
            s.ends_sent += 1;
            (true, s.total_ticks, false)
        } else {
            let next = s.next_update.filter(|&n| now >= n)?;
            let first = next == s.started_at;
            s.next_update = Some(next + UPDATE_INTERVAL);
            let elapsed = ticks(now.saturating_duration_since(s.started_at), clock_rate);
            (false, elapsed.min(u64::from(s.total_ticks)) as u16, first)
        };
        let packet = DtmfPacket {
            payload: encode(s.event, end, s.volume, duration),
            timestamp: s.timestamp,
            marker,
        };
        if s.ends_sent >= END_PACKETS {
            self.sending = None;
        }
        Some(packet)
    }
}

fn encode(event: u8, end: bool, volume: u8, duration: u16) -> [u8; EVENT_LEN] {
    let d = duration.to_be_bytes();
    [event, (u8::from(end) << 7) | (volume & 0x3F), d[0], d[1]]
}

/// A digit the receiver recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    /// Event code (see [`event_to_char`]).
    pub event: u8,
    /// How long it was pressed.
    pub duration: Duration,
    /// RTP timestamp of its start.
    pub timestamp: u32,
}

#[derive(Debug, Clone, Copy)]
struct Receiving {
    timestamp: u32,
    event: u8,
    duration: u16,
    reported: bool,
}

/// Turns received telephone-event packets into digits, each reported once: on its first end
/// packet, or (if all end packets were lost) when the next event starts or on
/// [`DtmfReceiver::flush`].
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    clock_rate: u32,
    current: Option<Receiving>,
    ready: [Option<DtmfDigit>; 2],
}

impl DtmfReceiver {
    /// A receiver for a telephone-event stream at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Result<DtmfReceiver, DtmfError> {
        if clock_rate == 0 {
            return Err(DtmfError::BadClockRate);
        }
        Ok(DtmfReceiver {
            clock_rate,
            current: None,
            ready: [None; 2],
        })
    }

    /// Takes one telephone-event packet (its RTP timestamp and payload); digits it completes
    /// come out of [`DtmfReceiver::poll_digit`].
    pub fn receive(&mut self, timestamp: u32, payload: &[u8]) -> Result<(), DtmfError> {
        let ev = TelephoneEvent::parse(payload)?;
        match &mut self.current {
            Some(cur) if cur.timestamp == timestamp => {
                if cur.reported {
                    return Ok(()); // a retransmitted end
                }
                cur.duration = cur.duration.max(ev.duration);
            }
            // An older event's late packet (wrapping comparison): ignore.
            Some(cur) if (timestamp.wrapping_sub(cur.timestamp) as i32) < 0 => return Ok(()),
            _ => {
                self.flush();
                self.current = Some(Receiving {
                    timestamp,
                    event: ev.event,
                    duration: ev.duration,
                    reported: false,
                });
            }
        }
        if ev.end {
            self.report();
        }
        Ok(())
    }

    /// Reports the event in progress, if not yet reported (call when the stream stops).
    pub fn flush(&mut self) {
        if self.current.is_some_and(|c| !c.reported) {
            self.report();
        }
    }

    fn report(&mut self) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.reported = true;
        let digit = DtmfDigit {
            event: cur.event,
            duration: Duration::from_micros(
                u64::from(cur.duration) * 1_000_000 / u64::from(self.clock_rate),
            ),
            timestamp: cur.timestamp,
        };
        if let Some(slot) = self.ready.iter_mut().find(|s| s.is_none()) {
            *slot = Some(digit);
        }
    }

    /// The next recognised digit, oldest first.
    pub fn poll_digit(&mut self) -> Option<DtmfDigit> {
        let first = self.ready[0].take();
        self.ready[0] = self.ready[1].take();
        first.or_else(|| self.ready[0].take())
    }
}

#[cfg(test)]
mod tests;
