#!/usr/bin/env python3
"""An aiortc participant of a Switchboard SFU room: an independent WebRTC stack (Python,
libvpx/opus through PyAV, its own ICE/DTLS/SRTP) against the server's SFU, for the interop
tests of issue 11 (tests/browser/interop.test.mjs).

Modes:
  publish    join the room over the signaling WebSocket (topology "sfu"), send the SFU a
             `publish` message and an offer carrying a synthetic video track (a moving
             pattern) and an audio tone; answer the SFU's offers (decoding what they bring:
             --watch counts that peer's frames); run until --duration passes or SIGTERM.
  subscribe  join, offer receive-only audio/video, answer the SFU's offers (remote tracks),
             read its `tracks` maps and decode the video of --watch (or of anyone); exit
             when --frames frames of it were decoded or --duration passed.
  whip       publish the same tracks with WHIP (POST /whip/<room>, DELETE at the end).
  whep       play the room with WHEP (POST /whep/<room>) and decode like subscribe.

Output: one JSON object per line on stdout, flushed: {"event":"joined","peerId":…} (or
"whip"/"whep" with the resource URL), "tracks", periodic "frames", and a final "result"
({"ok": bool, …}). Exit status 0 when ok, 1 when the verdict is negative, 2 when this
script could not even start (bad arguments, an import failing: the caller's harness
failure, not a verdict).

--loopback: aioice leaves 127.0.0.1 out of its host candidates; in the tests'
loopback-only network namespace that would leave none, so this makes it gather 127.0.0.1.
"""

import argparse
import asyncio
import fractions
import json
import math
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import av
    import numpy
    import websockets
    import aioice.ice
    from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
    from aiortc.mediastreams import MediaStreamError
except ImportError as e:  # the harness's problem (prerequisites), not a verdict
    print(json.dumps({"event": "import-error", "error": str(e)}), flush=True)
    sys.exit(2)


def emit(**fields):
    print(json.dumps(fields), flush=True)


class PatternTrack(VideoStreamTrack):
    """Synthetic video: a bright bar moving over a gradient, so every frame differs (the
    encoder sends real inter frames, not a frozen picture)."""

    def __init__(self, width=320, height=240):
        super().__init__()
        self.width, self.height = width, height
        self.n = 0
        x = numpy.arange(width, dtype=numpy.uint16)
        y = numpy.arange(height, dtype=numpy.uint16)[:, None]
        self.base = ((x + y) % 256).astype(numpy.uint8)

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        img = numpy.empty((self.height, self.width, 3), dtype=numpy.uint8)
        img[:, :, 0] = self.base
        img[:, :, 1] = numpy.roll(self.base, self.n * 3, axis=1)
        img[:, :, 2] = 80
        bar = (self.n * 4) % self.width
        img[:, bar:bar + 16, :] = 255
        self.n += 1
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class ToneTrack(MediaStreamTrack):
    """A steady 440 Hz tone, 48 kHz mono, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, hz=440.0, rate=48000):
        super().__init__()
        self.hz, self.rate = hz, rate
        self.samples = int(0.020 * rate)
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        else:
            wait = self.start + self.pts / self.rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (numpy.arange(self.samples) + self.pts) / self.rate
        pcm = (numpy.sin(2 * math.pi * self.hz * t) * 0.3 * 32767).astype(numpy.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self.pts += self.samples
        return frame


class FrameCounter:
    """Decoded video frames per receiving m-line (mid), mapped to peers by the SFU's
    `tracks` map when there is one."""

    def __init__(self):
        self.by_mid = {}  # mid -> {"frames", "width", "height"}
        self.mid_peer = {}  # mid -> peer id (from the latest `tracks` message)
        self.tasks = []
        self.audio_frames = 0

    def watch(self, pc, track):
        mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
        emit(event="track", kind=track.kind, mid=mid, peer=self.mid_peer.get(mid))
        if track.kind == "video":
            self.tasks.append(asyncio.ensure_future(self._count(str(mid), track)))
        else:
            self.tasks.append(asyncio.ensure_future(self._drain(track)))

    async def _count(self, mid, track):
        entry = self.by_mid.setdefault(mid, {"frames": 0, "width": 0, "height": 0})
        try:
            while True:
                frame = await track.recv()
                entry["frames"] += 1
                entry["width"], entry["height"] = frame.width, frame.height
        except MediaStreamError:
            pass

    async def _drain(self, track):
        try:
            while True:
                await track.recv()
                self.audio_frames += 1
        except MediaStreamError:
            pass

    def frames_of(self, peer):
        """(frames, width, height) decoded from `peer` (None: from any track), best m-line."""
        best = (0, 0, 0)
        for mid, e in self.by_mid.items():
            if peer is not None and self.mid_peer.get(mid) != peer:
                continue
            if e["frames"] > best[0]:
                best = (e["frames"], e["width"], e["height"])
        return best

    def summary(self):
        return {mid: dict(e, peer=self.mid_peer.get(mid)) for mid, e in self.by_mid.items()}


class Signaling:
    """The Switchboard signaling WebSocket: join, relays, acks."""

    def __init__(self, ws):
        self.ws = ws
        self.seq = 0

    async def send(self, **msg):
        await self.ws.send(json.dumps(msg))

    async def recv(self):
        msg = json.loads(await self.ws.recv())
        if isinstance(msg.get("seq"), int):
            self.seq = max(self.seq, msg["seq"])
        return msg

    async def ack_loop(self):
        acked = 0
        while True:
            await asyncio.sleep(1)
            if self.seq > acked:
                acked = self.seq
                await self.send(type="ack", seq=acked)


def ws_url(server):
    u = urllib.parse.urlparse(server)
    scheme = "wss" if u.scheme == "https" else "ws"
    return f"{scheme}://{u.netloc}/ws"


async def run_room(args, stop):
    """publish / subscribe through the signaling hub and the SFU."""
    pc = RTCPeerConnection()
    counter = FrameCounter()
    pc.on("track", lambda track: counter.watch(pc, track))
    pc.on("connectionstatechange", lambda: emit(event="connection", state=pc.connectionState))
    publishing = args.mode == "publish"
    if publishing:
        pc.addTrack(PatternTrack())
        pc.addTrack(ToneTrack())
    else:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")

    async with websockets.connect(ws_url(args.server), max_size=None) as ws:
        sig = Signaling(ws)
        join = {"type": "join", "room": args.room, "name": args.name, "topology": "sfu"}
        if args.token:
            join["token"] = args.token
        await sig.send(**join)
        joined = await sig.recv()
        if joined.get("type") != "joined":
            emit(event="result", ok=False, error=f"join refused: {joined}")
            return False
        me = joined["peerId"]
        emit(event="joined", peerId=me, topology=joined.get("topology"))
        acks = asyncio.ensure_future(sig.ack_loop())
        sfu = next((p["id"] for p in joined.get("peers", []) if p.get("service") == "sfu"), None)
        offered = False
        errors = []
        started = time.monotonic()

        async def offer():
            await pc.setLocalDescription(await pc.createOffer())
            if publishing:
                tracks = []
                for t in pc.getTransceivers():
                    if t.sender.track is not None:
                        source = "camera" if t.kind == "video" else "microphone"
                        tracks.append({"mid": t.mid, "source": source})
                await sig.send(type="message", to=sfu, data={"sfu": "publish", "tracks": tracks})
            await sig.send(type="offer", to=sfu, sdp=pc.localDescription.sdp)

        def done():
            if stop.is_set():
                return True
            if time.monotonic() - started > args.duration:
                return True
            if not publishing and args.frames and counter.frames_of(args.watch)[0] >= args.frames:
                return True
            return False

        last_report = 0.0
        try:
            if sfu:
                await offer()
                offered = True
            while not done():
                try:
                    msg = await asyncio.wait_for(sig.recv(), 0.5)
                except asyncio.TimeoutError:
                    msg = None
                now = time.monotonic()
                if now - last_report > 1.0:
                    last_report = now
                    f, w, h = counter.frames_of(args.watch)
                    emit(event="frames", frames=f, width=w, height=h, state=pc.connectionState)
                if msg is None:
                    continue
                kind = msg.get("type")
                if kind == "peer-joined" and msg["peer"].get("service") == "sfu" and not sfu:
                    sfu = msg["peer"]["id"]
                    if not offered:
                        await offer()
                        offered = True
                elif kind == "answer" and msg.get("from") == sfu:
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                    emit(event="answered")
                elif kind == "offer" and msg.get("from") == sfu:
                    # The SFU's renegotiation (remote tracks came or went). We never offer
                    # after the first exchange, so there is no glare to resolve.
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
                    await pc.setLocalDescription(await pc.createAnswer())
                    await sig.send(type="answer", to=sfu, sdp=pc.localDescription.sdp)
                    emit(event="sfu-offer-answered")
                elif kind == "message" and msg.get("from") == sfu and isinstance(msg.get("data"), dict):
                    data = msg["data"]
                    if data.get("sfu") == "tracks":
                        counter.mid_peer = {t.get("mid"): t.get("peer") for t in data.get("tracks", [])}
                        emit(event="tracks", tracks=data.get("tracks", []))
                    elif data.get("sfu") == "error":
                        errors.append(data)
                        emit(event="sfu-error", data=data)
                elif kind == "error":
                    errors.append(msg)
                    emit(event="hub-error", data=msg)
        finally:
            acks.cancel()
            f, w, h = counter.frames_of(args.watch)
            ok = (f >= args.frames and w > 0) if not publishing else pc.connectionState == "connected"
            if errors:
                ok = False
            emit(event="result", ok=ok, mode=args.mode, peerId=me, frames=f, width=w, height=h,
                 audioFrames=counter.audio_frames, state=pc.connectionState, errors=errors, perMid=counter.summary())
            try:
                await sig.send(type="leave")
            except Exception:
                pass
            await pc.close()
        return ok


def bundle_safe_extmaps(sdp):
    """Drop the a=extmap lines of an offer that reuse an id another m-line already gave to a
    different extension. aiortc 1.4 offers video `2 abs-send-time` and audio `2
    ssrc-audio-level` in one BUNDLE (RFC 8843 wants one id per extension across the bundle),
    then parses every incoming packet with one map: the first forwarded audio packet with
    its audio level (1 byte read as abs-send-time's 3) raises in its receive loop, which
    stops receiving altogether. Over the signaling protocol the SFU's own offers choose the
    ids, so this only matters where aiortc offers receive lines (WHEP)."""
    seen = {}  # id -> uri
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=extmap:"):
            ident, uri = line[len("a=extmap:"):].split(" ", 1)
            ident = ident.split("/")[0]
            uri = uri.split(" ")[0]
            if seen.setdefault(ident, uri) != uri:
                continue
        out.append(line)
    return "\r\n".join(out)


def http_request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


async def run_ingest(args, stop):
    """whip (publish) / whep (play) over HTTP: offer -> POST -> answer, DELETE at the end."""
    pc = RTCPeerConnection()
    counter = FrameCounter()
    pc.on("track", lambda track: counter.watch(pc, track))
    pc.on("connectionstatechange", lambda: emit(event="connection", state=pc.connectionState))
    publishing = args.mode == "whip"
    if publishing:
        pc.addTrack(PatternTrack())
        pc.addTrack(ToneTrack())
    else:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    url = f"{args.server}/{args.mode}/{urllib.parse.quote(args.room)}"
    headers = {"Content-Type": "application/sdp"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    loop = asyncio.get_running_loop()
    status, rh, body = await loop.run_in_executor(
        None, http_request, "POST", url, bundle_safe_extmaps(pc.localDescription.sdp).encode(), headers)
    location = rh.get("Location") or rh.get("location")
    if status != 201 or not location:
        emit(event="result", ok=False, mode=args.mode, error=f"POST {url}: {status} {body[:300]}")
        await pc.close()
        return False
    if args.verbose:
        print(f"--- offer\n{pc.localDescription.sdp}\n--- answer\n{body}", file=sys.stderr)
    resource = urllib.parse.urljoin(url, location)
    emit(event=args.mode, status=status, resource=resource)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    started = time.monotonic()
    last_report = 0.0
    try:
        while not stop.is_set() and time.monotonic() - started < args.duration:
            if not publishing and args.frames and counter.frames_of(None)[0] >= args.frames:
                break
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if now - last_report > 1.0:
                last_report = now
                f, w, h = counter.frames_of(None)
                emit(event="frames", frames=f, width=w, height=h, state=pc.connectionState)
                if args.verbose:
                    for t in pc.getTransceivers():
                        st = await t.receiver.getStats()
                        print(t.mid, [(s.type, getattr(s, "packetsReceived", None)) for s in st.values()], file=sys.stderr)
    finally:
        f, w, h = counter.frames_of(None)
        dstatus, _, _ = await loop.run_in_executor(
            None, http_request, "DELETE", resource, None,
            {"Authorization": headers["Authorization"]} if args.token else {})
        ok = pc.connectionState == "connected" if publishing else (f >= args.frames and w > 0)
        emit(event="result", ok=ok, mode=args.mode, frames=f, width=w, height=h,
             audioFrames=counter.audio_frames, state=pc.connectionState, deleteStatus=dstatus,
             perMid=counter.summary())
        await pc.close()
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="http://HOST:PORT of switchboard serve")
    ap.add_argument("--room", required=True)
    ap.add_argument("--mode", required=True, choices=["publish", "subscribe", "whip", "whep"])
    ap.add_argument("--name", default="aiortc")
    ap.add_argument("--token", help="room token (join token / WHIP-WHEP bearer)")
    ap.add_argument("--watch", help="subscribe: the peer id whose video is counted (default: anyone)")
    ap.add_argument("--frames", type=int, default=30, help="decoded frames that make the verdict ok")
    ap.add_argument("--duration", type=float, default=60, help="seconds at most")
    ap.add_argument("--verbose", action="store_true", help="SDPs and receiver stats on stderr")
    ap.add_argument("--loopback", action="store_true", help="gather 127.0.0.1 as host candidate")
    args = ap.parse_args()
    args.server = args.server.rstrip("/")
    if args.loopback:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    async def go():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        if args.mode in ("publish", "subscribe"):
            return await run_room(args, stop)
        return await run_ingest(args, stop)

    ok = asyncio.run(go())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
