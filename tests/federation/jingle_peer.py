#!/usr/bin/env python3
"""An independent Jingle audio/video peer, headless: slixmpp (XMPP), aiortc (media) and
its own SDP <-> Jingle mapping (jingle_map.py), none of it from Switchboard's crates, so
that a call between it and Switchboard tests Switchboard's Jingle against another reading
of the XEPs (issue 13, "an independent Jingle peer calls ada and ada calls it").

Signalling as Conversations and Dino do it: XEP-0353 Jingle Message Initiation to the
callee's bare JID (propose, ringing, proceed, reject, retract, finish), then XEP-0166
IQs to the full JID that proceeded: session-initiate, session-accept, transport-info
(trickled candidates, accepted at any time, no end-of-candidates needed),
session-terminate. Media: aiortc's VP8 and Opus from synthetic sources (moving colour
bars, a 440 Hz tone) or a file; what arrives is decoded and counted.

Usage (Debian: apt-get install python3-slixmpp python3-aiortc; the account must exist,
e.g. `prosodyctl register carol b.test pw`; c2s without TLS is fine):

  python3 jingle_peer.py --jid carol@b.test/peer --password pw [--server 127.0.0.2:5222]
      [--seconds N] [--min-frames N] [--timeout S] [--media-file F] [--ice-server URL]...
      [--ice-username U --ice-credential P] [--trickle] [--video-size WxH] [--verbose]
      call TARGET_JID                # propose to TARGET, session-initiate on proceed
  python3 jingle_peer.py ... answer [--reject decline|busy] [--answer-after S]

e.g. `... call ada@sb.a.test` calls a Switchboard user through its component. aiortc
gathers every candidate before the offer/answer exists, so they travel inside
session-initiate/-accept unless --trickle sends them as transport-info. Its host
candidates are every interface address but 127.0.0.1 and ::1 (so a lab in a network
namespace adds one, e.g. 127.0.0.2 on lo); no STUN/TURN unless --ice-server.

Output: one JSON object per line on stdout, in this order as far as it applies:
  {"event":"connected","jid":FULL}                 signed in, presence sent
  {"event":"proposed","sid":S,"to":T}              (call) propose sent
  {"event":"incoming","sid":S,"from":F,"media":[..]}  (answer) a propose arrived
  {"event":"ringing","sid":S}                      (call) the callee rings
  {"event":"proceed","sid":S,"from":FULL}          (call) the callee took the call
  {"event":"accepted","sid":S}                     session-accept received / acknowledged
  {"event":"remote_candidate","mid":M,"candidate":C}  a candidate trickled by transport-info
  {"event":"connection","state":ST}                aiortc's connectionState changes
  {"event":"media","video_frames":N,"audio_frames":N,"width":W,"height":H,"audio_rms":R}
                                                   decoded so far (once a second, and last);
                                                   audio_rms: mean RMS 0..1 (the tone: ~0.21)
  {"event":"ended","sid":S,"reason":R,"by":"local"|"remote"}
  {"event":"error","error":TEXT,"exit":CODE}       then the process exits with CODE
Exit codes: 0 the call was connected and ended (or --reject was sent as asked);
1 the call ended before media (declined, busy, cancelled, unreachable, timeout);
2 usage or missing module; 3 XMPP connection or authentication failed; 4 media failed
(ICE/DTLS, or fewer than --min-frames decoded of either kind); 5 protocol error.
The call ends after --seconds of connected media, on SIGTERM/SIGINT (session-terminate
with <success/>, or retract/reject before the session), or when the peer ends it.
"""

import argparse
import asyncio
import fractions
import json
import logging
import math
import os
import signal
import sys
import time
import xml.etree.ElementTree as ET

EXIT_OK, EXIT_NO_CALL, EXIT_USAGE, EXIT_XMPP, EXIT_MEDIA, EXIT_PROTOCOL = 0, 1, 2, 3, 4, 5


def emit(event: str, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Fatal(Exception):
    """Ends the run with a JSON error line and an exit code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


try:
    import av
    import numpy
    import slixmpp
    from aiortc import (
        RTCConfiguration,
        RTCIceServer,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
    )
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
    from aiortc.sdp import candidate_from_sdp
    from slixmpp.exceptions import IqError, IqTimeout
    from slixmpp.xmlstream.handler import Callback

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jingle_map as jm
except ImportError as missing:
    emit("error", error=f"missing module: {missing} (apt-get install python3-slixmpp python3-aiortc)", exit=EXIT_USAGE)
    sys.exit(EXIT_USAGE)

NS_CLIENT = "jabber:client"
NS_JMI = "urn:xmpp:jingle-message:0"
NS_HINTS = "urn:xmpp:hints"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"


def bare(jid: str) -> str:
    return jid.split("/", 1)[0]


# --- media ---------------------------------------------------------------------------

class ToneTrack(MediaStreamTrack):
    """A 440 Hz sine at 48 kHz in 20 ms frames, paced in real time."""

    kind = "audio"
    RATE, SAMPLES = 48000, 960

    def __init__(self):
        super().__init__()
        self._start = None
        self._pts = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._pts += self.SAMPLES
            await asyncio.sleep(self._start + self._pts / self.RATE - time.time())
        t = (self._pts + numpy.arange(self.SAMPLES)) / self.RATE
        samples = (0.3 * 32767 * numpy.sin(2 * math.pi * 440 * t)).astype(numpy.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


class BarsTrack(VideoStreamTrack):
    """Colour bars that move a pixel column per frame (so VP8 has something to code)."""

    def __init__(self, width: int, height: int):
        super().__init__()
        x = numpy.arange(width)
        colours = numpy.array(
            [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]],
            dtype=numpy.uint8,
        )
        self._row = colours[(x * 8 // width) % 8]
        self._height = height
        self._n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self._n += 1
        row = numpy.roll(self._row, self._n, axis=0)
        image = numpy.repeat(row[numpy.newaxis, :, :], self._height, axis=0)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def prefer_vp8_opus(pc):
    """VP8 and Opus only (plus VP8's rtx): the codecs every WebRTC stack has."""
    for t in pc.getTransceivers():
        caps = RTCRtpSender.getCapabilities(t.kind).codecs
        keep = [c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx", "audio/opus")]
        t.setCodecPreferences(keep)


class Received:
    """What the remote side's tracks decode to."""

    def __init__(self):
        self.video_frames = 0
        self.audio_frames = 0
        self.width = 0
        self.height = 0
        self._rms_sum = 0.0
        self._rms_n = 0
        self.tasks = []

    def consume(self, track):
        self.tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.video_frames += 1
                self.width, self.height = frame.width, frame.height
            else:
                self.audio_frames += 1
                pcm = frame.to_ndarray().astype(numpy.float64) / 32768.0
                self._rms_sum += float(numpy.sqrt(numpy.mean(pcm * pcm)))
                self._rms_n += 1

    def summary(self) -> dict:
        rms = self._rms_sum / self._rms_n if self._rms_n else 0.0
        return {
            "video_frames": self.video_frames,
            "audio_frames": self.audio_frames,
            "width": self.width,
            "height": self.height,
            "audio_rms": round(rms, 4),
        }

    def stop(self):
        for t in self.tasks:
            t.cancel()


# --- XMPP ----------------------------------------------------------------------------

class StanzaMatch:
    """A slixmpp matcher from a predicate on the stanza's XML."""

    def __init__(self, predicate):
        self.predicate = predicate

    def match(self, stanza) -> bool:
        return self.predicate(stanza.xml)


class Client(slixmpp.ClientXMPP):
    """The XMPP side: signs in, hands call stanzas to `on_jmi`/`on_jingle`/`on_bounce`."""

    def __init__(self, jid: str, password: str):
        super().__init__(jid, password)
        self["feature_mechanisms"].unencrypted_plain = True
        self.register_plugin("xep_0030")
        for feature in (
            "urn:xmpp:jingle:1",
            "urn:xmpp:jingle:apps:rtp:1",
            "urn:xmpp:jingle:apps:rtp:audio",
            "urn:xmpp:jingle:apps:rtp:video",
            "urn:xmpp:jingle:transports:ice-udp:1",
            "urn:xmpp:jingle:apps:dtls:0",
            "urn:xmpp:jingle:apps:grouping:0",
            NS_JMI,
        ):
            self["xep_0030"].add_feature(feature)
        self.ready = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_auth", lambda _: self._fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self._fail(f"connection failed: {e}"))
        self.add_event_handler("disconnected", lambda _: self._lost())
        self.on_jmi = self.on_jingle = self.on_bounce = lambda stanza: None
        self.on_lost = lambda: None
        is_jmi = lambda x: x.tag == f"{{{NS_CLIENT}}}message" and x.get("type") != "error" and any(
            c.tag.startswith(f"{{{NS_JMI}}}") for c in x
        )
        is_bounce = lambda x: x.tag == f"{{{NS_CLIENT}}}message" and x.get("type") == "error"
        is_jingle = lambda x: x.tag == f"{{{NS_CLIENT}}}iq" and x.get("type") == "set" and x.find(
            f"{{{jm.NS_JINGLE}}}jingle"
        ) is not None
        self.register_handler(Callback("jmi", StanzaMatch(is_jmi), lambda s: self.on_jmi(s)))
        self.register_handler(Callback("bounce", StanzaMatch(is_bounce), lambda s: self.on_bounce(s)))
        self.register_handler(Callback("jingle", StanzaMatch(is_jingle), lambda s: self.on_jingle(s)))

    def _started(self, _):
        self.send_presence()
        if not self.ready.done():
            self.ready.set_result(None)

    def _lost(self):
        if self.ready.done():
            self.on_lost()
        else:
            self._fail("disconnected")

    def _fail(self, why: str):
        if not self.ready.done():
            self.ready.set_exception(Fatal(EXIT_XMPP, why))

    def jmi(self, to: str, name: str, sid: str, reason=None, media=(), msg_id=None):
        """An XEP-0353 message (type chat, with a store hint, as XEP-0353 asks)."""
        msg = self.make_message(mto=to, mtype="chat")
        msg["id"] = msg_id or f"{sid}-{name}-{os.urandom(3).hex()}"
        payload = ET.SubElement(msg.xml, f"{{{NS_JMI}}}{name}", {"id": sid})
        for kind in media:
            ET.SubElement(payload, f"{{{jm.NS_RTP}}}description", {"media": kind})
        if reason:
            r = ET.SubElement(payload, f"{{{jm.NS_JINGLE}}}reason")
            ET.SubElement(r, f"{{{jm.NS_JINGLE}}}{reason}")
        ET.SubElement(msg.xml, f"{{{NS_HINTS}}}store")
        msg.send()

    async def jingle(self, to: str, jingle: ET.Element, timeout: float = 20):
        """Sends a Jingle IQ set; raises Fatal(EXIT_PROTOCOL) on an error reply or none."""
        iq = self.make_iq_set(ito=to)
        iq.xml.append(jingle)
        action = jingle.get("action")
        try:
            await iq.send(timeout=timeout)
        except IqError as e:
            raise Fatal(EXIT_PROTOCOL, f"{action} refused: {e.iq['error']['condition']}") from e
        except IqTimeout as e:
            raise Fatal(EXIT_PROTOCOL, f"{action} not answered within {timeout} s") from e

    def reply(self, iq, condition=None, jingle_error=None, type_="cancel"):
        r = iq.reply(clear=True)
        if condition:
            r["type"] = "error"
            r["error"]["type"] = type_
            r["error"]["condition"] = condition
            if jingle_error:
                ET.SubElement(r["error"].xml, f"{{{NS_JINGLE_ERRORS}}}{jingle_error}")
        r.send()


# --- the call ------------------------------------------------------------------------

class Call:
    """One call, either side. Stanza handlers put what happened into `events`; the
    caller/callee coroutines below take them in order."""

    def __init__(self, client: Client, args, sid: str, peer: str, role: str):
        self.client, self.args = client, args
        self.sid, self.peer, self.role = sid, peer, role  # peer: bare, then full JID
        self.events: asyncio.Queue = asyncio.Queue()
        self.session = False  # a Jingle session exists (initiate sent / received)
        self.remote_set = False
        self.early_candidates = []
        servers = [
            RTCIceServer(urls=u, username=args.ice_username, credential=args.ice_credential)
            for u in args.ice_server
        ]
        config = RTCConfiguration(iceServers=servers)
        self.pc = RTCPeerConnection(config)
        self.received = Received()
        self.connected = asyncio.Event()
        self.pc.on("track", self.received.consume)
        self.pc.on("connectionstatechange", self._state)
        self.player = None
        self.last_media = None

    def emit_media(self):
        """A media line when the counts changed since the last one."""
        summary = self.received.summary()
        if summary != self.last_media:
            emit("media", **summary)
            self.last_media = summary

    def _state(self):
        state = self.pc.connectionState
        emit("connection", state=state)
        if state == "connected":
            self.connected.set()
        elif state == "failed":
            self.events.put_nowait(("failed", "ICE or DTLS failed"))

    def add_tracks(self):
        if self.args.media_file:
            from aiortc.contrib.media import MediaPlayer

            self.player = MediaPlayer(self.args.media_file, loop=True)
            tracks = [t for t in (self.player.audio, self.player.video) if t]
        else:
            w, h = self.args.video_size
            tracks = [ToneTrack(), BarsTrack(w, h)]
        for track in tracks:
            self.pc.addTrack(track)
        prefer_vp8_opus(self.pc)

    def from_peer(self, jid: str) -> bool:
        return bare(jid) == bare(self.peer)

    # Stanza handlers (slixmpp calls them; they never raise).

    def on_jmi(self, msg):
        for payload in msg.xml:
            if payload.tag.startswith(f"{{{NS_JMI}}}") and payload.get("id") == self.sid:
                if not self.from_peer(str(msg["from"])):
                    return
                name = payload.tag.split("}", 1)[1]
                self.events.put_nowait(("jmi", name, _reason(payload), str(msg["from"])))

    def on_bounce(self, msg):
        if str(msg["id"]).startswith(self.sid):
            self.events.put_nowait(("bounce", msg["error"]["condition"] or "error"))

    def on_jingle(self, iq):
        jingle = iq.xml.find(f"{{{jm.NS_JINGLE}}}jingle")
        action = jingle.get("action")
        if jingle.get("sid") != self.sid or not self.from_peer(str(iq["from"])):
            self.client.reply(iq, "item-not-found", "unknown-session")
            return
        if action in ("session-initiate", "session-accept"):
            expected = "session-initiate" if self.role == "callee" else "session-accept"
            if action != expected or self.remote_set:
                self.client.reply(iq, "unexpected-request", "out-of-order", "wait")
                return
            side = "initiator" if action == "session-initiate" else "responder"
            try:
                session = jm.jingle_to_session(jingle, side)
            except (jm.MapError, ValueError) as e:
                self.client.reply(iq, "bad-request", type_="modify")
                self.events.put_nowait(("bad", f"{action}: {e}"))
                return
            self.client.reply(iq)
            self.session = True
            self.events.put_nowait(("description", session, str(iq["from"])))
        elif action == "transport-info":
            try:
                found = jm.transport_info_candidates(jingle)
            except jm.MapError:
                self.client.reply(iq, "bad-request", type_="modify")
                return
            self.client.reply(iq)
            for mid, _ufrag, line in found:
                emit("remote_candidate", mid=mid, candidate=line)
                if self.remote_set:
                    asyncio.ensure_future(self._add_candidate(mid, line))
                else:
                    self.early_candidates.append((mid, line))
        elif action == "session-terminate":
            self.client.reply(iq)
            reason = _reason(jingle) or "success"
            self.events.put_nowait(("terminate", reason))
        elif action == "session-info":
            self.client.reply(iq)
        else:
            self.client.reply(iq, "feature-not-implemented", "unsupported-info", "modify")

    async def _add_candidate(self, mid: str, line: str):
        try:
            candidate = candidate_from_sdp(line.split(":", 1)[1])
            candidate.sdpMid = mid
            # aiortc 1.4 drops candidates for a mid bundled onto another transport
            # (its addIceCandidate only looks at unbundled transceivers): those belong
            # to transports the BUNDLE answer discards anyway.
            await self.pc.addIceCandidate(candidate)
        except Exception as e:  # a candidate aiortc cannot use is not fatal
            print(f"candidate {line!r} not used: {e}", file=sys.stderr)

    async def remote_description(self, session, kind: str):
        sdp = jm.write_sdp(jm.bundle_consistent(session))
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        except Exception as e:  # aiortc's own refusal (no common codec, ...)
            await self.hang_up("failed-application")
            raise Fatal(EXIT_PROTOCOL, f"aiortc refused the remote {kind}: {type(e).__name__}: {e}") from e
        self.remote_set = True
        early, self.early_candidates = self.early_candidates, []
        for mid, line in early:
            await self._add_candidate(mid, line)

    async def local_jingle(self, action: str, side: str) -> ET.Element:
        session = jm.bundle_consistent(jm.parse_sdp(self.pc.localDescription.sdp))
        if self.args.trickle:
            # Held back for transport-info (aiortc has them all already; browsers would
            # trickle them), so the far end's trickle path is what carries them.
            self.local_trickle = [(m.mid, m.ufrag, m.candidates) for m in session.media]
            for m in session.media:
                m.candidates = []
        return jm.session_to_jingle(session, action, self.sid, side, self.client.boundjid.full)

    async def send_trickle(self):
        """With --trickle: one transport-info per candidate, as browsers send them."""
        for mid, ufrag, lines in getattr(self, "local_trickle", []):
            for line in lines:
                await self.client.jingle(self.peer, jm.transport_info(self.sid, mid, ufrag, [line]))

    async def next_event(self, timeout: float, stop: asyncio.Event):
        """The next stanza event; ("stop",) on SIGTERM, ("timeout",) after `timeout`."""
        get = asyncio.ensure_future(self.events.get())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({get, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for f in (get, stopped):
            if f not in done:
                f.cancel()
        if get in done:
            return get.result()
        return ("stop",) if stopped in done else ("timeout",)

    async def media_phase(self, stop: asyncio.Event) -> int:
        """From the answer to the end: waits for ICE/DTLS, lets media run, hangs up."""
        args = self.args
        deadline = time.monotonic() + args.timeout
        while not self.connected.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                await self.hang_up("connectivity-error")
                raise Fatal(EXIT_MEDIA, f"not connected within {args.timeout} s")
            # Short waits: `connected` is an aiortc callback, not a queued event.
            event = await self.next_event(min(0.2, left), stop)
            if event[0] != "timeout":
                code = await self.end_on(event)
                if code is not None:
                    return code
        end = time.monotonic() + args.seconds
        while True:
            left = end - time.monotonic()
            event = await self.next_event(min(1.0, max(0.0, left)), stop)
            self.emit_media()
            if event[0] == "timeout":
                if left > 0:
                    continue
                await self.hang_up("success")
                return self.verdict()
            code = await self.end_on(event)
            if code is not None:
                return code

    async def end_on(self, event):
        """The exit code if `event` ends the session, None if it changes nothing."""
        kind = event[0]
        if kind == "terminate" or (kind == "jmi" and event[1] in ("finish", "reject", "retract")):
            reason = event[1] if kind == "terminate" else event[2]
            self.session = False
            self.emit_media()
            emit("ended", sid=self.sid, reason=reason or "success", by="remote")
            return self.verdict() if self.connected.is_set() else EXIT_NO_CALL
        if kind == "lost":
            raise Fatal(EXIT_XMPP, "the XMPP connection was lost during the call")
        if kind == "failed":
            await self.hang_up("failed-transport")
            raise Fatal(EXIT_MEDIA, event[1])
        if kind == "bad":
            await self.hang_up("failed-application")
            raise Fatal(EXIT_PROTOCOL, event[1])
        if kind == "stop":
            connected = self.connected.is_set()
            await self.hang_up("success" if connected else "cancel")
            return self.verdict() if connected else EXIT_NO_CALL
        return None  # a stray JMI message or a late bounce

    def verdict(self) -> int:
        s = self.received.summary()
        n = self.args.min_frames
        if s["video_frames"] < n or s["audio_frames"] < n:
            raise Fatal(EXIT_MEDIA, f"fewer than {n} frames decoded: {json.dumps(s)}")
        return EXIT_OK

    async def hang_up(self, reason: str):
        """Ends the call from this side, in the form the phase calls for."""
        self.emit_media()
        if self.session:
            self.session = False
            terminate = ET.Element(
                f"{{{jm.NS_JINGLE}}}jingle", {"action": "session-terminate", "sid": self.sid}
            )
            r = ET.SubElement(terminate, f"{{{jm.NS_JINGLE}}}reason")
            ET.SubElement(r, f"{{{jm.NS_JINGLE}}}{reason}")
            try:
                await self.client.jingle(self.peer, terminate, timeout=5)
            except Fatal as e:  # the peer may have ended it at the same moment
                print(f"session-terminate: {e}", file=sys.stderr)
            self.client.jmi(self.peer, "finish", self.sid, reason)
        elif self.role == "caller":
            self.client.jmi(self.peer, "retract", self.sid, reason)
        else:
            self.client.jmi(self.peer, "reject", self.sid, reason)
        emit("ended", sid=self.sid, reason=reason, by="local")

    async def close(self):
        self.received.stop()
        if self.player:
            for t in (self.player.audio, self.player.video):
                if t:
                    t.stop()
        await self.pc.close()


def _reason(parent: ET.Element):
    r = parent.find(f"{{{jm.NS_JINGLE}}}reason")
    if r is None:
        return None
    for c in r:
        name = c.tag.split("}", 1)[-1]
        if name != "text":
            return name
    return None


async def place_call(client: Client, args, stop: asyncio.Event) -> int:
    sid = os.urandom(8).hex()
    call = Call(client, args, sid, bare(args.target), "caller")
    client.on_jmi, client.on_jingle, client.on_bounce = call.on_jmi, call.on_jingle, call.on_bounce
    client.on_lost = lambda: call.events.put_nowait(("lost",))
    try:
        call.add_tracks()
        # aiortc gathers every candidate before this returns: they go in session-initiate.
        await call.pc.setLocalDescription(await call.pc.createOffer())
        client.jmi(call.peer, "propose", sid, media=("audio", "video"), msg_id=sid)
        emit("proposed", sid=sid, to=call.peer)
        deadline = time.monotonic() + args.timeout
        while True:
            event = await call.next_event(max(0.1, deadline - time.monotonic()), stop)
            kind = event[0]
            if kind == "jmi" and event[1] == "ringing":
                emit("ringing", sid=sid)
            elif kind == "jmi" and event[1] == "proceed":
                call.peer = event[3]
                emit("proceed", sid=sid, **{"from": call.peer})
                break
            elif kind == "jmi" and event[1] in ("reject", "retract", "finish"):
                emit("ended", sid=sid, reason=event[2] or "decline", by="remote")
                return EXIT_NO_CALL
            elif kind == "bounce":
                emit("ended", sid=sid, reason=f"unreachable ({event[1]})", by="remote")
                return EXIT_NO_CALL
            elif kind in ("stop", "timeout"):
                await call.hang_up("cancel" if kind == "stop" else "timeout")
                return EXIT_NO_CALL
            elif kind == "lost":
                await call.end_on(event)
        call.session = True
        initiate = await call.local_jingle("session-initiate", "initiator")
        await client.jingle(call.peer, initiate)
        await call.send_trickle()
        deadline = time.monotonic() + args.timeout
        while True:
            event = await call.next_event(max(0.1, deadline - time.monotonic()), stop)
            if event[0] == "description":
                await call.remote_description(event[1], "answer")
                emit("accepted", sid=sid)
                break
            if event[0] == "timeout":
                await call.hang_up("timeout")
                return EXIT_NO_CALL
            code = await call.end_on(event)
            if code is not None:
                return code
        return await call.media_phase(stop)
    finally:
        await call.close()


async def answer_call(client: Client, args, stop: asyncio.Event) -> int:
    proposals: asyncio.Queue = asyncio.Queue()

    def on_propose(msg):
        for payload in msg.xml:
            if payload.tag == f"{{{NS_JMI}}}propose" and payload.get("id"):
                media = [d.get("media") for d in payload if d.get("media")]
                proposals.put_nowait((payload.get("id"), str(msg["from"]), media))

    client.on_jmi = on_propose
    client.on_lost = lambda: proposals.put_nowait(None)
    client.on_jingle = lambda iq: client.reply(iq, "item-not-found", "unknown-session")
    get = asyncio.ensure_future(proposals.get())
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({get, stopped}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if get not in done:
        get.cancel()
        emit("ended", sid=None, reason="no call" if not stop.is_set() else "stopped", by="local")
        return EXIT_NO_CALL
    if get.result() is None:
        raise Fatal(EXIT_XMPP, "the XMPP connection was lost while waiting for a call")
    sid, caller, media = get.result()
    emit("incoming", sid=sid, media=media, **{"from": caller})
    call = Call(client, args, sid, caller, "callee")

    def on_jmi(msg):
        for payload in msg.xml:
            if payload.tag == f"{{{NS_JMI}}}propose" and payload.get("id") != sid:
                # One call at a time: a second caller hears busy.
                client.jmi(str(msg["from"]), "reject", payload.get("id"), "busy")
                return
        call.on_jmi(msg)

    client.on_jmi, client.on_jingle, client.on_bounce = on_jmi, call.on_jingle, call.on_bounce
    client.on_lost = lambda: call.events.put_nowait(("lost",))
    try:
        client.jmi(caller, "ringing", sid)
        if args.reject:
            await asyncio.sleep(args.answer_after)
            await call.hang_up(args.reject)
            return EXIT_OK
        ring_end = time.monotonic() + args.answer_after
        while ring_end > time.monotonic():
            event = await call.next_event(ring_end - time.monotonic(), stop)
            if event[0] == "timeout":
                break
            if event[0] == "stop":
                await call.hang_up("decline")
                return EXIT_NO_CALL
            code = await call.end_on(event)
            if code is not None:
                return code
        client.jmi(caller, "proceed", sid)
        deadline = time.monotonic() + args.timeout
        while True:
            event = await call.next_event(max(0.1, deadline - time.monotonic()), stop)
            if event[0] == "description":
                call.peer = event[2]
                break
            if event[0] == "jmi" and event[1] in ("retract", "finish"):
                emit("ended", sid=sid, reason=event[2] or "cancel", by="remote")
                return EXIT_NO_CALL
            if event[0] in ("stop", "timeout"):
                await call.hang_up("decline" if event[0] == "stop" else "timeout")
                return EXIT_NO_CALL
            code = await call.end_on(event)
            if code is not None:
                return code
        # Tracks and codec preferences first: aiortc 1.4 settles each transceiver's
        # codecs in setRemoteDescription, and reuses a transceiver without a mid.
        call.add_tracks()
        await call.remote_description(event[1], "offer")
        await call.pc.setLocalDescription(await call.pc.createAnswer())
        accept = await call.local_jingle("session-accept", "responder")
        await client.jingle(call.peer, accept)
        emit("accepted", sid=sid)
        await call.send_trickle()
        return await call.media_phase(stop)
    finally:
        await call.close()


class JsonArgumentParser(argparse.ArgumentParser):
    """Usage errors as the JSON error line too (the usage text still goes to stderr)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        emit("error", error=f"usage: {message}", exit=EXIT_USAGE)
        sys.exit(EXIT_USAGE)


def parse_args(argv):
    p = JsonArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jid", required=True, help="full JID to sign in as, e.g. carol@b.test/peer")
    p.add_argument("--password", required=True)
    p.add_argument("--server", help="HOST:PORT of the c2s listener (default: the JID's domain, 5222)")
    p.add_argument("--seconds", type=float, default=10, help="hang up after this much connected media")
    p.add_argument("--min-frames", type=int, default=0, help="exit 4 unless this many video and audio frames decoded")
    p.add_argument("--timeout", type=float, default=60, help="seconds allowed for each step before media")
    p.add_argument("--media-file", help="send this file's audio/video (aiortc MediaPlayer) instead of bars and tone")
    p.add_argument("--video-size", default="320x240", help="WxH of the synthetic video")
    p.add_argument("--ice-server", action="append", default=[], help="stun:/turn: URL (repeatable); none by default")
    p.add_argument("--ice-username", help="TURN username for every --ice-server")
    p.add_argument("--ice-credential", help="TURN password for every --ice-server")
    p.add_argument("--trickle", action="store_true", help="send candidates in transport-info, not in initiate/accept")
    p.add_argument("--verbose", action="store_true", help="slixmpp and aiortc logs on stderr")
    sub = p.add_subparsers(dest="mode", required=True)
    call = sub.add_parser("call", help="call TARGET_JID")
    call.add_argument("target", metavar="TARGET_JID")
    answer = sub.add_parser("answer", help="wait for a call and answer it")
    answer.add_argument("--reject", choices=["decline", "busy"], help="refuse the call with this reason instead")
    answer.add_argument("--answer-after", type=float, default=0.5, help="seconds of ringing before proceed/reject")
    args = p.parse_args(argv)
    try:
        w, h = (int(x) for x in args.video_size.lower().split("x"))
        args.video_size = (w - w % 2, h - h % 2)
    except ValueError:
        p.error(f"--video-size {args.video_size!r} is not WxH")
    if "/" not in args.jid or "@" not in args.jid:
        p.error("--jid must be a full JID: user@domain/resource")
    return args


async def run(args) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = Client(args.jid, args.password)
    if args.server:
        host, _, port = args.server.rpartition(":")
        address = (host, int(port))
    else:
        address = (args.jid.split("@", 1)[1].split("/", 1)[0], 5222)
    client.connect(address=address, use_ssl=False, force_starttls=False, disable_starttls=True)
    try:
        try:
            await asyncio.wait_for(asyncio.shield(client.ready), 20)
        except asyncio.TimeoutError:
            raise Fatal(EXIT_XMPP, f"not signed in at {address[0]}:{address[1]} within 20 s") from None
        emit("connected", jid=client.boundjid.full)
        if args.mode == "call":
            return await place_call(client, args, stop)
        return await answer_call(client, args, stop)
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), 3)
        except Exception:  # already gone: nothing to close
            pass


def main(argv) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    try:
        return asyncio.run(run(args))
    except Fatal as e:
        emit("error", error=str(e), exit=e.code)
        return e.code
    except Exception as e:  # the contract: a JSON line and an exit code, never only a traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit("error", error=f"{type(e).__name__}: {e}", exit=EXIT_PROTOCOL)
        return EXIT_PROTOCOL


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
