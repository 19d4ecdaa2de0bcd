//! The phone side of a call: SRTP, the jitter buffer and codec of what the phone sends, the
//! RTP stream we send it, and RFC 4733 DTMF both ways.
//!
//! Our stream keeps one sequence and timestamp line for the whole call: the timestamp
//! advances every tick whether or not a packet goes out (hold, a digit being sent), so the
//! phone's playout sees the real time gap, and the marker bit flags the first audio packet
//! after any gap. G.711 loss is concealed as [`G711Frames`] does; Opus uses the decoder's
//! PLC/FEC.
//!
//! What goes to the phone is either the room's mix, encoded, or (passthrough) a room
//! member's G.711 payload as it came: the header, SRTP and timing are ours either way.
//! A passed-through payload leaves on arrival ([`PhoneLeg::send_forwarded`], numbered by
//! bridge/forward.rs on the same line); the tick's own packets resume after it.
//!
//! The phone's own G.711, while it is forwarded to the room on arrival, is handed back
//! by [`PhoneLeg::on_packet`] instead of going into the jitter buffer.

use super::g711_frames::{G711Frames, G711_FRAME};
use super::room::opus_jitter_config;
use super::{play_opus, BridgeError, MediaStats, PhoneCodec, PhoneConfig, PhoneIn, Played};
use crate::dtmf::{char_to_event, event_to_char, DtmfReceiver, DtmfSender, TelephoneEvent};
use crate::g711::Law;
use crate::jitter::JitterBuffer;
use crate::opus::{OpusDecoder, OpusEncoder, FRAME_SAMPLES, MAX_PACKET_SAMPLES};
use crate::resample::{Downsampler, Upsampler};
use crate::rtp::{demux, rtcp_packets, write_rtp_header, PacketKind, RtpHeader, RTP_HEADER_LEN};
use crate::srtp::SrtpContext;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Received digits kept until polled; more are dropped.
const MAX_DIGITS: usize = 32;
/// A key press whose end packets were all lost is reported after this much event silence.
const DTMF_QUIET: Duration = Duration::from_millis(250);
/// Level of the digits we send, −dBm0 (RFC 4733: typical telephone-set level).
const DTMF_VOLUME: u8 = 10;

#[derive(Debug)]
pub(super) struct PhoneLeg {
    cfg: PhoneConfig,
    srtp_out: Option<SrtpContext>,
    srtp_in: Option<SrtpContext>,
    jitter: JitterBuffer,
    /// SSRC of the phone's audio stream; a new one restarts the jitter buffer.
    remote_ssrc: Option<u32>,
    /// The phone's newest audio packet: sequence number and timestamp.
    newest: Option<(u16, u32)>,
    /// After forwarding to the room ended: packets up to this sequence number went there
    /// already.
    forwarded_through: Option<u16>,
    opus_decoder: Option<OpusDecoder>,
    opus_encoder: Option<OpusEncoder>,
    /// Timestamp of the Opus frame last rebuilt from FEC.
    fec_done: Option<u32>,
    upsampler: Upsampler,
    downsampler: Downsampler,
    g711: G711Frames,
    scratch: Vec<i16>,
    dtmf_receiver: Option<DtmfReceiver>,
    last_event_at: Option<Instant>,
    dtmf_sender: Option<DtmfSender>,
    digits: VecDeque<char>,
    seq: u16,
    timestamp: u32,
    /// The next audio packet follows a gap (start, hold, DTMF, codec change): marker.
    after_gap: bool,
    /// The latest `now` seen (anchors buffers made by a reconfiguration).
    last_now: Instant,
    packets_in: u64,
    bytes_in: u64,
    rejected: u64,
    packets_out: u64,
    bytes_out: u64,
    concealed: u64,
    fec_recovered: u64,
    decode_errors: u64,
    /// Audio packets to the phone carrying a room member's payload as it came, and those
    /// we encoded (the mix, comfort silence).
    passed_out: u64,
    transcoded_out: u64,
    dtmf_in: u64,
    dtmf_out: u64,
    /// Lost/late of jitter buffers replaced by a new SSRC or codec.
    retired_lost: u64,
    retired_late: u64,
}

fn check(cfg: &PhoneConfig) -> Result<(), BridgeError> {
    if cfg.pt > 127 {
        return Err(BridgeError::BadConfig("payload type above 127"));
    }
    match cfg.telephone_event {
        Some(te) if te > 127 => Err(BridgeError::BadConfig(
            "telephone-event payload type above 127",
        )),
        Some(te) if te == cfg.pt => Err(BridgeError::BadConfig(
            "telephone-event and audio share a payload type",
        )),
        _ => Ok(()),
    }
}

fn jitter_for(codec: PhoneCodec, now: Instant) -> Result<JitterBuffer, BridgeError> {
    let config = crate::jitter::JitterConfig {
        clock_rate: codec.clock_rate(),
        ..opus_jitter_config()
    };
    Ok(JitterBuffer::new(config, now)?)
}

type SrtpPair = (Option<SrtpContext>, Option<SrtpContext>);

fn srtp_for(cfg: &PhoneConfig) -> Result<SrtpPair, BridgeError> {
    match &cfg.srtp {
        None => Ok((None, None)),
        Some((ours, theirs)) => Ok((
            Some(SrtpContext::new(cfg.srtp_profile, ours)?),
            Some(SrtpContext::new(cfg.srtp_profile, theirs)?),
        )),
    }
}

impl PhoneLeg {
    pub(super) fn new(cfg: PhoneConfig, now: Instant) -> Result<PhoneLeg, BridgeError> {
        check(&cfg)?;
        let (srtp_out, srtp_in) = srtp_for(&cfg)?;
        let mut leg = PhoneLeg {
            jitter: jitter_for(cfg.codec, now)?,
            srtp_out,
            srtp_in,
            remote_ssrc: None,
            newest: None,
            forwarded_through: None,
            opus_decoder: None,
            opus_encoder: None,
            fec_done: None,
            upsampler: Upsampler::new(),
            downsampler: Downsampler::new(),
            g711: G711Frames::new(),
            scratch: vec![0; MAX_PACKET_SAMPLES],
            dtmf_receiver: None,
            last_event_at: None,
            dtmf_sender: None,
            digits: VecDeque::with_capacity(MAX_DIGITS),
            // Random-looking start (RFC 3550 §5.1) without a dependency: derived from the SSRC.
            seq: (cfg.ssrc >> 7) as u16,
            timestamp: cfg.ssrc.rotate_left(13),
            after_gap: true,
            last_now: now,
            packets_in: 0,
            bytes_in: 0,
            rejected: 0,
            packets_out: 0,
            bytes_out: 0,
            concealed: 0,
            fec_recovered: 0,
            decode_errors: 0,
            passed_out: 0,
            transcoded_out: 0,
            dtmf_in: 0,
            dtmf_out: 0,
            retired_lost: 0,
            retired_late: 0,
            cfg: cfg.clone(),
        };
        leg.setup_codec(&cfg, None)?;
        Ok(leg)
    }

    /// Creates what `cfg`'s codec and telephone events need; `old` is the previous
    /// configuration (`None` at the start).
    fn setup_codec(
        &mut self,
        cfg: &PhoneConfig,
        old: Option<&PhoneConfig>,
    ) -> Result<(), BridgeError> {
        let codec_changed = old.map_or(true, |o| o.codec != cfg.codec);
        if cfg.codec == PhoneCodec::Opus && (codec_changed || self.opus_decoder.is_none()) {
            self.opus_decoder = Some(OpusDecoder::new()?);
            self.opus_encoder = Some(OpusEncoder::new()?);
        }
        let clock = cfg.codec.clock_rate();
        let events_changed = old.map_or(true, |o| {
            o.telephone_event.is_some() != cfg.telephone_event.is_some()
        }) || codec_changed;
        if events_changed {
            match cfg.telephone_event {
                Some(_) => {
                    self.dtmf_receiver = Some(DtmfReceiver::new(clock)?);
                    self.dtmf_sender = Some(DtmfSender::new(clock)?);
                }
                None => {
                    self.dtmf_receiver = None;
                    self.dtmf_sender = None;
                }
            }
        }
        Ok(())
    }

    pub(super) fn reconfigure(&mut self, cfg: PhoneConfig) -> Result<(), BridgeError> {
        check(&cfg)?;
        if cfg.srtp != self.cfg.srtp || cfg.srtp_profile != self.cfg.srtp_profile {
            (self.srtp_out, self.srtp_in) = srtp_for(&cfg)?;
        }
        let old = self.cfg.clone();
        self.setup_codec(&cfg, Some(&old))?;
        if cfg.codec != old.codec {
            self.replace_jitter(cfg.codec)?;
        }
        // The phone may restart its stream (new SSRC/sequence): take whatever comes next.
        self.remote_ssrc = None;
        self.after_gap = true;
        self.cfg = cfg;
        Ok(())
    }

    fn replace_jitter(&mut self, codec: PhoneCodec) -> Result<(), BridgeError> {
        let fresh = jitter_for(codec, self.last_now)?;
        let old = std::mem::replace(&mut self.jitter, fresh);
        self.retired_lost += old.stats().lost;
        self.retired_late += old.stats().late;
        Ok(())
    }

    /// A datagram from the phone. With `take`, a whole 20 ms G.711 frame of the current
    /// stream is not buffered but handed back ([`Taken`]) to be forwarded on arrival.
    pub(super) fn on_packet(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        take: bool,
    ) -> Result<(PhoneIn, Option<Taken>), BridgeError> {
        self.last_now = now;
        let received = packet.len();
        match self.receive(now, packet, take) {
            Ok(kind) => {
                self.packets_in += 1;
                self.bytes_in += received as u64;
                Ok(kind)
            }
            Err(e) => {
                self.rejected += 1;
                Err(e)
            }
        }
    }

    fn receive(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        take: bool,
    ) -> Result<(PhoneIn, Option<Taken>), BridgeError> {
        match demux(packet) {
            PacketKind::Rtcp => {
                let len = match self.srtp_in.as_mut() {
                    Some(ctx) => ctx.unprotect_rtcp(packet)?,
                    None => packet.len(),
                };
                // Only well-formed RTCP counts as the phone's (it latches the address).
                for p in rtcp_packets(&packet[..len]) {
                    p?;
                }
                Ok((PhoneIn::Rtcp, None))
            }
            PacketKind::Rtp => {
                let len = match self.srtp_in.as_mut() {
                    Some(ctx) => ctx.unprotect_rtp(packet)?,
                    None => packet.len(),
                };
                let rtp = &packet[..len];
                let header = RtpHeader::parse(rtp)?;
                let payload = &rtp[header.payload_start..header.payload_end];
                if header.payload_type == self.cfg.pt {
                    let same_stream = self.remote_ssrc == Some(header.ssrc);
                    if !same_stream {
                        if self.remote_ssrc.is_some() {
                            // A new source (transfer, re-INVITE): its sequence is unrelated.
                            self.replace_jitter(self.cfg.codec)?;
                            self.newest = None;
                            self.forwarded_through = None;
                        }
                        self.remote_ssrc = Some(header.ssrc);
                    }
                    let (seq, ts) = (header.sequence, header.timestamp);
                    if take && same_stream && payload.len() == G711_FRAME {
                        self.note_newest(seq, ts);
                        let taken = Taken {
                            start: header.payload_start,
                            end: header.payload_end,
                            seq,
                            timestamp: ts,
                        };
                        return Ok((PhoneIn::Audio, Some(taken)));
                    }
                    if let Some(through) = self.forwarded_through {
                        if (seq.wrapping_sub(through) as i16) <= 0 {
                            // Forwarded already (a duplicate, or late): not sent twice.
                            return Ok((PhoneIn::Audio, None));
                        }
                        self.forwarded_through = None;
                    }
                    self.jitter.push(seq, ts, payload, now)?;
                    self.note_newest(seq, ts);
                    return Ok((PhoneIn::Audio, None));
                }
                if Some(header.payload_type) != self.cfg.telephone_event {
                    return Ok((PhoneIn::Ignored, None));
                }
                let Some(receiver) = self.dtmf_receiver.as_mut() else {
                    return Ok((PhoneIn::Ignored, None));
                };
                let event = TelephoneEvent::parse(payload)?;
                receiver.receive(header.timestamp, payload)?;
                self.last_event_at = Some(now);
                self.collect_digits();
                let kind = event_to_char(event.event).map_or(PhoneIn::Ignored, PhoneIn::Dtmf);
                Ok((kind, None))
            }
            PacketKind::Other => Err(BridgeError::NotRtp),
        }
    }

    /// Remembers the newest packet by sequence number (reordered ones do not count).
    fn note_newest(&mut self, seq: u16, timestamp: u32) {
        match self.newest {
            Some((s, _)) if (seq.wrapping_sub(s) as i16) <= 0 => {}
            _ => self.newest = Some((seq, timestamp)),
        }
    }

    /// Starts forwarding the phone's G.711 to the room on arrival: the buffered frames are
    /// dropped (older than what arrives next). Returns the newest sequence number and
    /// timestamp received.
    pub(super) fn begin_forward(&mut self) -> Option<(u16, u32)> {
        let newest = self.newest?;
        self.jitter.reset();
        self.forwarded_through = None;
        Some(newest)
    }

    /// Forwarding to the room ended: the jitter buffer takes the phone's packets after
    /// `through` again.
    pub(super) fn end_forward(&mut self, through: u16) {
        self.forwarded_through = Some(through);
    }

    /// Whether a digit is being sent (its events replace audio).
    pub(super) fn dtmf_busy(&self) -> bool {
        self.dtmf_sender.as_ref().is_some_and(DtmfSender::is_busy)
    }

    /// Our stream's next sequence number and timestamp (the tick's line).
    pub(super) fn line(&self) -> (u16, u32) {
        (self.seq, self.timestamp)
    }

    /// Moves the tick's line to where forwarding left it; the next packet carries a
    /// marker.
    pub(super) fn set_line(&mut self, seq: u16, timestamp: u32) {
        self.seq = seq;
        self.timestamp = timestamp;
        self.after_gap = true;
    }

    /// Writes a room member's G.711 `payload` forwarded on arrival as our packet with
    /// sequence number `seq` and timestamp `timestamp` (from bridge/forward.rs), SRTP-
    /// protected, into `out`; returns its length.
    pub(super) fn send_forwarded(
        &mut self,
        payload: &[u8],
        seq: u16,
        timestamp: u32,
        marker: bool,
        out: &mut [u8],
    ) -> Result<usize, BridgeError> {
        let len = RTP_HEADER_LEN + payload.len();
        let marker = marker || self.after_gap;
        write_rtp_header(out, marker, self.cfg.pt, seq, timestamp, self.cfg.ssrc)?;
        out.get_mut(RTP_HEADER_LEN..len)
            .ok_or(BridgeError::BufferTooSmall)?
            .copy_from_slice(payload);
        let len = match self.srtp_out.as_mut() {
            Some(ctx) => ctx.protect_rtp(out, len)?,
            None => len,
        };
        self.after_gap = false;
        self.passed_out += 1;
        self.packets_out += 1;
        self.bytes_out += len as u64;
        Ok(len)
    }

    fn collect_digits(&mut self) {
        let Some(receiver) = self.dtmf_receiver.as_mut() else {
            return;
        };
        while let Some(digit) = receiver.poll_digit() {
            if let Some(c) = event_to_char(digit.event) {
                if self.digits.len() < MAX_DIGITS {
                    self.digits.push_back(c);
                    self.dtmf_in += 1;
                }
            }
        }
    }

    pub(super) fn poll_dtmf(&mut self) -> Option<char> {
        self.digits.pop_front()
    }

    /// Plays the phone's next 20 ms into `out` (48 kHz, one frame). With `upsample` false
    /// a G.711 frame is only decoded (its 8 kHz form, [`PhoneLeg::g711_frame`], is all that
    /// a passthrough tick needs) and `out` is left as it was.
    pub(super) fn play(&mut self, now: Instant, out: &mut [i16], upsample: bool) {
        self.last_now = now;
        if self
            .last_event_at
            .is_some_and(|at| now.saturating_duration_since(at) > DTMF_QUIET)
        {
            if let Some(receiver) = self.dtmf_receiver.as_mut() {
                receiver.flush();
            }
            self.last_event_at = None;
            self.collect_digits();
        }
        match (self.cfg.codec, self.opus_decoder.as_mut()) {
            (PhoneCodec::Opus, Some(decoder)) => {
                let (played, bad_packet) = play_opus(
                    &mut self.jitter,
                    decoder,
                    &mut self.fec_done,
                    now,
                    &mut self.scratch,
                    out,
                );
                self.decode_errors += u64::from(bad_packet);
                let rebuilt = matches!(played, Played::Concealed | Played::Recovered);
                self.concealed += u64::from(rebuilt);
                self.fec_recovered += u64::from(played == Played::Recovered);
            }
            (PhoneCodec::G711(law), _) => {
                let played = self.g711.play(law, &mut self.jitter, now);
                self.concealed += u64::from(played == Played::Concealed);
                if !upsample {
                    self.upsampler.skip(self.g711.pcm8());
                } else if self.upsampler.process(self.g711.pcm8(), out).is_err() {
                    out.fill(0);
                }
            }
            (PhoneCodec::Opus, None) => out.fill(0),
        }
    }

    /// The law of a phone that can take (and give) 20 ms G.711 frames unchanged: a
    /// G.711 leg whose ptime is 20 ms (stated, or not stated and what it sends).
    pub(super) fn passthrough_law(&self) -> Option<Law> {
        match self.cfg.codec {
            PhoneCodec::G711(law) if matches!(self.cfg.ptime, None | Some(20)) => Some(law),
            _ => None,
        }
    }

    /// This tick's G.711 frame from a passthrough-capable phone (see
    /// [`PhoneLeg::passthrough_law`]): its law, and the frame as it came (when it came
    /// whole) and at 8 kHz.
    pub(super) fn g711_frame(&self) -> Option<(Law, &G711Frames)> {
        Some((self.passthrough_law()?, &self.g711))
    }

    /// A tick with nothing sent (hold): time still passes on our stream.
    pub(super) fn skip_frame(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(self.cfg.codec.frame_ticks());
        self.after_gap = true;
    }

    /// Writes this tick's packet for the phone (a DTMF event while a digit is being sent,
    /// else `frame`) into `out`; returns its length (0: none this tick).
    pub(super) fn send(
        &mut self,
        now: Instant,
        frame: ToPhone<'_>,
        out: &mut [u8],
    ) -> Result<usize, BridgeError> {
        let timestamp = self.timestamp;
        self.timestamp = timestamp.wrapping_add(self.cfg.codec.frame_ticks());
        let len = match (self.dtmf_sender.as_mut(), self.cfg.telephone_event) {
            (Some(sender), Some(te)) if sender.is_busy() => {
                self.after_gap = true;
                let Some(event) = sender.poll(now) else {
                    return Ok(0); // between the 50 ms updates of a digit
                };
                write_rtp_header(
                    out,
                    event.marker,
                    te,
                    self.seq,
                    event.timestamp,
                    self.cfg.ssrc,
                )?;
                let payload = out
                    .get_mut(RTP_HEADER_LEN..RTP_HEADER_LEN + event.payload.len())
                    .ok_or(BridgeError::BufferTooSmall)?;
                payload.copy_from_slice(&event.payload);
                RTP_HEADER_LEN + event.payload.len()
            }
            _ => self.write_audio(timestamp, frame, out)?,
        };
        let len = match self.srtp_out.as_mut() {
            Some(ctx) => ctx.protect_rtp(out, len)?,
            None => len,
        };
        self.seq = self.seq.wrapping_add(1);
        self.packets_out += 1;
        self.bytes_out += len as u64;
        Ok(len)
    }

    fn write_audio(
        &mut self,
        timestamp: u32,
        frame: ToPhone<'_>,
        out: &mut [u8],
    ) -> Result<usize, BridgeError> {
        let marker = self.after_gap;
        write_rtp_header(out, marker, self.cfg.pt, self.seq, timestamp, self.cfg.ssrc)?;
        let body = &mut out[RTP_HEADER_LEN..];
        let mixed = match frame {
            ToPhone::Payload(payload) => {
                body.get_mut(..payload.len())
                    .ok_or(BridgeError::BufferTooSmall)?
                    .copy_from_slice(payload);
                self.passed_out += 1;
                self.after_gap = false;
                return Ok(RTP_HEADER_LEN + payload.len());
            }
            ToPhone::Mix(mixed) => mixed,
        };
        self.transcoded_out += 1;
        let payload_len = match (self.cfg.codec, self.opus_encoder.as_mut()) {
            (PhoneCodec::G711(law), _) => {
                let mut pcm8 = [0i16; G711_FRAME];
                let n = self
                    .downsampler
                    .process(mixed, &mut pcm8)
                    .map_err(|_| BridgeError::BufferTooSmall)?;
                law.encode(&pcm8[..n], body)
                    .map_err(|_| BridgeError::BufferTooSmall)?;
                n
            }
            (PhoneCodec::Opus, Some(encoder)) => encoder.encode(mixed, body)?,
            (PhoneCodec::Opus, None) => return Err(BridgeError::BadConfig("no Opus encoder")),
        };
        self.after_gap = false;
        Ok(RTP_HEADER_LEN + payload_len)
    }

    pub(super) fn send_dtmf(
        &mut self,
        now: Instant,
        digit: char,
        duration_ms: u32,
    ) -> Result<(), BridgeError> {
        if self.cfg.telephone_event.is_none() {
            return Err(BridgeError::NoTelephoneEvent);
        }
        let event = char_to_event(digit).ok_or(BridgeError::BadDigit(digit))?;
        let sender = self
            .dtmf_sender
            .as_mut()
            .ok_or(BridgeError::NoTelephoneEvent)?;
        let duration = Duration::from_millis(u64::from(duration_ms));
        sender.start(event, DTMF_VOLUME, duration, self.timestamp, now)?;
        self.dtmf_out += 1;
        Ok(())
    }

    pub(super) fn add_stats(&self, stats: &mut MediaStats) {
        let jitter = self.jitter.stats();
        stats.phone_packets_in = self.packets_in;
        stats.phone_bytes_in = self.bytes_in;
        stats.phone_rejected = self.rejected;
        stats.phone_packets_out = self.packets_out;
        stats.phone_bytes_out = self.bytes_out;
        stats.phone_lost = self.retired_lost + jitter.lost;
        stats.phone_late = self.retired_late + jitter.late;
        stats.phone_concealed = self.concealed;
        stats.decode_errors += self.decode_errors;
        stats.fec_recovered += self.fec_recovered;
        stats.frames_to_phone_passed = self.passed_out;
        stats.frames_to_phone_transcoded = self.transcoded_out;
        stats.dtmf_in = self.dtmf_in;
        stats.dtmf_out = self.dtmf_out;
    }
}

/// A whole G.711 frame of the phone taken for forwarding on arrival: where its payload is
/// in the packet, its sequence number and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Taken {
    pub start: usize,
    pub end: usize,
    pub seq: u16,
    pub timestamp: u32,
}

/// What a tick sends the phone as audio.
#[derive(Debug, Clone, Copy)]
pub(super) enum ToPhone<'a> {
    /// The room's mix (48 kHz, one frame), to encode in the phone's codec.
    Mix(&'a [i16]),
    /// A payload already in the phone's codec (a room member's G.711), sent as it is.
    Payload(&'a [u8]),
}

// Unused-import guard: FRAME_SAMPLES documents the 48 kHz frame `play`/`send` take.
const _: () = assert!(FRAME_SAMPLES == 6 * G711_FRAME);
