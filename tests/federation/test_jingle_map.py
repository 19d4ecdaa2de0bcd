"""Checks of the independent peer's SDP <-> Jingle mapping (jingle_map.py), without XMPP:
round trips of aiortc's and Chromium's SDP through Jingle XML text, and two aiortc peers
that only ever see each other's Jingle (candidates trickled by transport-info, no
end-of-candidates) decoding each other's audio and video.

Run: python3 -m unittest tests/federation/test_jingle_map.py   (Debian's python3-aiortc)
"""

import asyncio
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jingle_map as jm  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "xmpp", "tests", "fixtures")


def through_xml(jingle: ET.Element) -> ET.Element:
    """What the far end parses: the element as text and back."""
    return ET.fromstring(ET.tostring(jingle, encoding="unicode"))


def normalized(session: jm.Session) -> jm.Session:
    """As the mapping writes it: candidate lines with a generation, and `a=msid` also a
    parameter of each source (as Conversations writes it)."""
    for m in session.media:
        m.candidates = [jm.candidate_from_element(jm.candidate_to_element(c)) for c in m.candidates]
        for params in m.sources.values():
            if m.msid and "msid" not in [n for n, _ in params]:
                params.append(("msid", m.msid))
    return session


class RoundTrip(unittest.TestCase):
    def trip(self, sdp: str, action: str, side: str):
        before = normalized(jm.parse_sdp(sdp))
        jingle = through_xml(jm.session_to_jingle(before, action, "s1", side, "a@b/c"))
        self.assertEqual(jingle.get(side), "a@b/c")
        after = jm.jingle_to_session(jingle, side)
        self.assertEqual(after, before)
        # And the SDP written from it reads back the same.
        self.assertEqual(normalized(jm.parse_sdp(jm.write_sdp(after))), before)
        return before

    def test_chromium_offer_and_answer_keep_every_field(self):
        with open(os.path.join(FIXTURES, "chromium-offer.sdp")) as f:
            offer = self.trip(f.read(), "session-initiate", "initiator")
        self.assertEqual(offer.bundle, ["0", "1", "2"])
        self.assertEqual([m.kind for m in offer.media], ["audio", "video", "application"])
        opus = offer.media[0].codecs[0]
        self.assertEqual((opus.name, opus.clock, opus.channels), ("opus", 48000, 2))
        self.assertIn(("useinbandfec", "1"), opus.params)
        self.assertTrue(offer.media[0].sources)
        self.assertTrue(offer.media[1].groups)
        self.assertEqual(offer.media[2].sctp_port, 5000)
        with open(os.path.join(FIXTURES, "chromium-answer.sdp")) as f:
            answer = self.trip(f.read(), "session-accept", "responder")
        self.assertEqual(answer.media[0].setup, "active")

    def test_directions_map_to_senders_per_side(self):
        sdp = (
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=sendonly\r\n"
            "a=rtpmap:111 opus/48000/2\r\n"
        )
        for side, senders in (("initiator", "initiator"), ("responder", "responder")):
            jingle = jm.session_to_jingle(jm.parse_sdp(sdp), "session-initiate", "s", side, "x@y/z")
            content = jingle.find(f"{{{jm.NS_JINGLE}}}content")
            self.assertEqual(content.get("senders"), senders)
            self.assertEqual(jm.jingle_to_session(jingle, side).media[0].direction, "sendonly")
        # The other side reads the initiator's "initiator sends" as receive-only for it.
        jingle = jm.session_to_jingle(jm.parse_sdp(sdp), "session-initiate", "s", "initiator", "x@y/z")
        self.assertEqual(jm.jingle_to_session(jingle, "responder").media[0].direction, "recvonly")

    def test_transport_info_carries_candidates_both_ways(self):
        line = "candidate:1 1 udp 2130706431 192.0.2.1 4000 typ srflx raddr 10.0.0.1 rport 5000 generation 0"
        jingle = through_xml(jm.transport_info("s1", "0", "uf", [line]))
        self.assertEqual(jm.transport_info_candidates(jingle), [("0", "uf", line)])

    def test_description_level_rtcp_fb_applies_to_every_payload_type(self):
        jingle = ET.fromstring(
            f"<jingle xmlns='{jm.NS_JINGLE}' action='session-initiate' sid='s'>"
            f"<content name='v' creator='initiator'><description xmlns='{jm.NS_RTP}' media='video'>"
            "<payload-type id='96' name='VP8' clockrate='90000'/>"
            "<payload-type id='98' name='VP9' clockrate='90000'/>"
            f"<rtcp-fb xmlns='{jm.NS_RTCP_FB}' type='nack' subtype='pli'/></description>"
            f"<transport xmlns='{jm.NS_ICE}' ufrag='u' pwd='p'/></content></jingle>"
        )
        codecs = jm.jingle_to_session(jingle, "initiator").media[0].codecs
        self.assertEqual([c.feedback for c in codecs], [[("nack", "pli")]] * 2)

    def test_unusable_jingle_is_an_error_not_a_crash(self):
        bad = ET.fromstring(
            f"<jingle xmlns='{jm.NS_JINGLE}' action='session-initiate' sid='s'>"
            "<content name='0' creator='initiator'/></jingle>"
        )
        with self.assertRaises(jm.MapError):
            jm.jingle_to_session(bad, "initiator")
        no_port = ET.fromstring(f"<candidate xmlns='{jm.NS_ICE}' foundation='1' component='1'/>")
        with self.assertRaises(jm.MapError):
            jm.candidate_from_element(no_port)


class AnswersChromium(unittest.TestCase):
    """aiortc, as the peer drives it, answers the offer shape Switchboard relays."""

    def test_every_content_is_answered_with_vp8_opus_and_the_data_channel(self):
        accept = asyncio.run(self.answer())
        answer = jm.jingle_to_session(accept, "responder")
        self.assertEqual([m.mid for m in answer.media], ["0", "1", "2"])
        self.assertEqual(answer.bundle, ["0", "1", "2"])
        self.assertEqual(answer.media[0].codecs[0].name, "opus")
        self.assertEqual({c.name for c in answer.media[1].codecs}, {"VP8", "rtx"})
        self.assertEqual(answer.media[2].kind, "application")
        for m in answer.media:
            self.assertEqual(m.setup, "active")
            self.assertTrue(m.fingerprint and m.ufrag and m.pwd and m.candidates)
        # Chromium's header extension ids are consistent: nothing was dropped.
        self.assertIn((1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"), answer.media[0].hdrexts)

    async def answer(self):
        sys.argv = sys.argv[:1]
        import jingle_peer as jp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        with open(os.path.join(FIXTURES, "chromium-offer.sdp")) as f:
            offer = jm.parse_sdp(f.read())
        initiate = through_xml(jm.session_to_jingle(offer, "session-initiate", "s", "initiator", "ada@sb.a.test/switchboard"))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sdp = jm.write_sdp(jm.bundle_consistent(jm.jingle_to_session(initiate, "initiator")))
        pc.addTrack(jp.ToneTrack())
        pc.addTrack(jp.BarsTrack(160, 120))
        jp.prefer_vp8_opus(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = jm.bundle_consistent(jm.parse_sdp(pc.localDescription.sdp))
        accept = jm.session_to_jingle(answer, "session-accept", "s", "responder", "carol@b.test/peer")
        await pc.close()
        await asyncio.sleep(0.1)  # let aiortc's connect task see the close
        return through_xml(accept)


class Loopback(unittest.TestCase):
    """Two aiortc peers signalling only through this mapping's Jingle."""

    def test_aiortc_to_aiortc_through_jingle_with_trickled_candidates(self):
        result = asyncio.run(asyncio.wait_for(self.call(), 60))
        for side in ("caller", "callee"):
            self.assertGreater(result[side]["video"], 30, result)
            self.assertGreater(result[side]["audio"], 30, result)

    async def call(self):
        sys.argv = sys.argv[:1]
        import jingle_peer as jp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        peers = {}
        for side in ("caller", "callee"):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            counts = {"video": 0, "audio": 0}

            def on_track(track, counts=counts):
                async def read():
                    while True:
                        try:
                            await track.recv()
                        except Exception:  # the track ended
                            return
                        counts[track.kind] += 1

                asyncio.ensure_future(read())

            pc.on("track", on_track)
            peers[side] = (pc, counts)
        caller, callee = peers["caller"][0], peers["callee"][0]
        for pc in (caller, callee):
            pc.addTrack(jp.ToneTrack())
            pc.addTrack(jp.BarsTrack(160, 120))
            jp.prefer_vp8_opus(pc)
        await caller.setLocalDescription(await caller.createOffer())
        # The offer crosses without candidates; they follow in transport-info.
        offer = jm.bundle_consistent(jm.parse_sdp(caller.localDescription.sdp))
        trickled = [(m.mid, m.ufrag, m.candidates) for m in offer.media]
        for m in offer.media:
            m.candidates = []
        initiate = through_xml(jm.session_to_jingle(offer, "session-initiate", "s", "initiator", "c@x/p"))
        sdp = jm.write_sdp(jm.bundle_consistent(jm.jingle_to_session(initiate, "initiator")))
        self.assertNotIn("end-of-candidates", sdp)
        await callee.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await callee.setLocalDescription(await callee.createAnswer())
        for mid, ufrag, lines in trickled:
            info = through_xml(jm.transport_info("s", mid, ufrag, lines))
            for c_mid, _, line in jm.transport_info_candidates(info):
                from aiortc.sdp import candidate_from_sdp

                cand = candidate_from_sdp(line.split(":", 1)[1])
                cand.sdpMid = c_mid
                await callee.addIceCandidate(cand)
        answer = jm.bundle_consistent(jm.parse_sdp(callee.localDescription.sdp))
        accept = through_xml(jm.session_to_jingle(answer, "session-accept", "s", "responder", "d@y/p"))
        await caller.setRemoteDescription(
            RTCSessionDescription(sdp=jm.write_sdp(jm.bundle_consistent(jm.jingle_to_session(accept, "responder"))), type="answer")
        )
        for _ in range(200):
            await asyncio.sleep(0.1)
            if all(min(c.values()) > 30 for _, c in peers.values()):
                break
        for pc, _ in peers.values():
            await pc.close()
        return {side: c for side, (_, c) in peers.items()}


if __name__ == "__main__":
    unittest.main()
