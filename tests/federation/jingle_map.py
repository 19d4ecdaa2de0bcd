"""SDP <-> Jingle for the independent Jingle peer (jingle_peer.py).

Written from the XEPs, not from Switchboard's Rust mapper (crates/xmpp), so that a call
between the two is a test of both: XEP-0166 Jingle, XEP-0167 RTP descriptions with
XEP-0293 rtcp-fb, XEP-0294 rtp-hdrext and XEP-0339 sources, XEP-0176 ICE-UDP transports
with XEP-0320 DTLS fingerprints, XEP-0338 BUNDLE groups, XEP-0343 data channels.

The SDP side is what WebRTC stacks write (aiortc, browsers): a session part, then one
m-section per Jingle content whose `a=mid` is the content name. Only the fields a WebRTC
peer needs survive the trip; unknown attributes are dropped on purpose.
"""

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

NS_JINGLE = "urn:xmpp:jingle:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
NS_HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
NS_SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
NS_GROUP = "urn:xmpp:jingle:apps:grouping:0"
NS_ICE = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_DATACHANNEL = "urn:xmpp:jingle:apps:webrtc-datachannel:0"
NS_SCTP = "urn:xmpp:jingle:transports:dtls-sctp:1"


class MapError(ValueError):
    """An SDP or Jingle element this mapping cannot carry (the message says what)."""


@dataclass
class Codec:
    pt: int
    name: str
    clock: int
    channels: int = 1
    params: List[Tuple[str, str]] = field(default_factory=list)
    feedback: List[Tuple[str, Optional[str]]] = field(default_factory=list)


@dataclass
class Media:
    kind: str  # audio, video, application
    mid: str
    direction: str = "sendrecv"
    codecs: List[Codec] = field(default_factory=list)
    hdrexts: List[Tuple[int, str]] = field(default_factory=list)
    sources: Dict[int, List[Tuple[str, str]]] = field(default_factory=dict)
    groups: List[Tuple[str, List[int]]] = field(default_factory=list)
    msid: Optional[str] = None
    rtcp_mux: bool = False
    ufrag: Optional[str] = None
    pwd: Optional[str] = None
    fingerprint: Optional[Tuple[str, str]] = None  # (hash, value)
    setup: Optional[str] = None
    candidates: List[str] = field(default_factory=list)  # "candidate:..." lines
    sctp_port: Optional[int] = None
    max_message_size: Optional[int] = None


@dataclass
class Session:
    bundle: List[str] = field(default_factory=list)
    media: List[Media] = field(default_factory=list)


# --- SDP ----------------------------------------------------------------------------

def parse_sdp(text: str) -> Session:
    """The fields of an SDP offer or answer this mapping carries."""
    session = Session()
    defaults: Dict[str, str] = {}
    current: Optional[Media] = None
    codecs: Dict[int, Codec] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            words = line[2:].split()
            if len(words) < 4:
                raise MapError(f"bad m-line: {line}")
            current = Media(kind=words[0], mid=str(len(session.media)))
            for key, value in defaults.items():
                _media_attr(current, key, value)
            session.media.append(current)
            codecs = {}
            if words[0] in ("audio", "video"):
                for pt in words[3:]:
                    codecs[int(pt)] = Codec(pt=int(pt), name="", clock=0)
                current.codecs = list(codecs.values())
            continue
        if not line.startswith("a="):
            continue
        key, _, value = line[2:].partition(":")
        if current is None:
            if key == "group" and value.startswith("BUNDLE"):
                session.bundle = value.split()[1:]
            elif key in ("ice-ufrag", "ice-pwd", "fingerprint", "setup"):
                defaults[key] = value
            continue
        _media_attr(current, key, value, codecs)
    for m in session.media:
        m.codecs = [c for c in m.codecs if c.name]  # payload types without rtpmap
        if m.kind in ("audio", "video") and not m.codecs:
            raise MapError(f"m-section {m.mid}: no codec with an rtpmap")
    return session


def _media_attr(m: Media, key: str, value: str, codecs: Optional[Dict[int, Codec]] = None):
    codecs = codecs if codecs is not None else {}
    if key == "mid":
        m.mid = value
    elif key in ("sendrecv", "sendonly", "recvonly", "inactive"):
        m.direction = key
    elif key == "ice-ufrag":
        m.ufrag = value
    elif key == "ice-pwd":
        m.pwd = value
    elif key == "fingerprint":
        hash_, _, fp = value.partition(" ")
        m.fingerprint = (hash_.lower(), fp.strip())
    elif key == "setup":
        m.setup = value
    elif key == "candidate":
        m.candidates.append("candidate:" + value)
    elif key == "rtcp-mux":
        m.rtcp_mux = True
    elif key == "msid":
        m.msid = value
    elif key == "sctp-port":
        m.sctp_port = int(value)
    elif key == "max-message-size":
        m.max_message_size = int(value)
    elif key == "extmap":
        ident, _, uri = value.partition(" ")
        m.hdrexts.append((int(ident.split("/")[0]), uri.split()[0]))
    elif key == "rtpmap":
        pt, _, desc = value.partition(" ")
        codec = codecs.get(int(pt))
        if codec is not None:
            bits = desc.split("/")
            codec.name, codec.clock = bits[0], int(bits[1])
            codec.channels = int(bits[2]) if len(bits) > 2 else 1
    elif key == "fmtp":
        pt, _, params = value.partition(" ")
        codec = codecs.get(int(pt))
        if codec is not None:
            for p in params.split(";"):
                name, eq, val = p.strip().partition("=")
                codec.params.append((name, val) if eq else ("", name))
    elif key == "rtcp-fb":
        words = value.split(" ", 2)
        for codec in codecs.values():
            if words[0] in ("*", str(codec.pt)) and len(words) > 1:
                codec.feedback.append((words[1], words[2] if len(words) > 2 else None))
    elif key == "ssrc":
        ssrc, _, rest = value.partition(" ")
        name, _, val = rest.partition(":")
        m.sources.setdefault(int(ssrc), []).append((name, val))
    elif key == "ssrc-group":
        words = value.split()
        m.groups.append((words[0], [int(s) for s in words[1:]]))


def write_sdp(session: Session) -> str:
    """SDP text for a WebRTC stack's setRemoteDescription."""
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(2**62)} 2 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
    ]
    if session.bundle:
        lines.append("a=group:BUNDLE " + " ".join(session.bundle))
    lines.append("a=msid-semantic: WMS *")
    for m in session.media:
        if m.kind == "application":
            lines.append("m=application 9 UDP/DTLS/SCTP webrtc-datachannel")
        else:
            pts = " ".join(str(c.pt) for c in m.codecs)
            lines.append(f"m={m.kind} 9 UDP/TLS/RTP/SAVPF {pts}")
        lines.append("c=IN IP4 0.0.0.0")
        if m.kind != "application":
            lines.append("a=rtcp:9 IN IP4 0.0.0.0")
        if m.ufrag:
            lines.append(f"a=ice-ufrag:{m.ufrag}")
        if m.pwd:
            lines.append(f"a=ice-pwd:{m.pwd}")
        if m.fingerprint:
            lines.append(f"a=fingerprint:{m.fingerprint[0]} {m.fingerprint[1]}")
        if m.setup:
            lines.append(f"a=setup:{m.setup}")
        lines.append(f"a=mid:{m.mid}")
        for c in m.candidates:
            lines.append("a=" + c)
        if m.kind == "application":
            lines.append(f"a=sctp-port:{m.sctp_port or 5000}")
            if m.max_message_size:
                lines.append(f"a=max-message-size:{m.max_message_size}")
            continue
        for ident, uri in m.hdrexts:
            lines.append(f"a=extmap:{ident} {uri}")
        lines.append(f"a={m.direction}")
        if m.msid:
            lines.append(f"a=msid:{m.msid}")
        if m.rtcp_mux:
            lines.append("a=rtcp-mux")
        for c in m.codecs:
            suffix = f"/{c.channels}" if m.kind == "audio" and c.channels > 1 else ""
            lines.append(f"a=rtpmap:{c.pt} {c.name}/{c.clock}{suffix}")
            for type_, sub in c.feedback:
                lines.append(f"a=rtcp-fb:{c.pt} {type_}" + (f" {sub}" if sub else ""))
            if c.params:
                text = ";".join(f"{n}={v}" if n else v for n, v in c.params)
                lines.append(f"a=fmtp:{c.pt} {text}")
        for semantics, ssrcs in m.groups:
            lines.append(f"a=ssrc-group:{semantics} " + " ".join(map(str, ssrcs)))
        for ssrc, params in m.sources.items():
            for name, value in params:
                lines.append(f"a=ssrc:{ssrc} {name}:{value}" if value else f"a=ssrc:{ssrc} {name}")
    return "\r\n".join(lines) + "\r\n"


def bundle_consistent(session: Session) -> Session:
    """Drops header extensions whose id another bundled section binds to another URI.

    RFC 8843 §9.1 wants one meaning per id across a BUNDLE group; aiortc 1.4's offers
    break it (id 2 is audio-level for audio, abs-send-time for video) and its receiver
    keeps one id map per transport, so such an id kills the transport on the first
    packet. Applied to what is sent and what is received, the id is never negotiated.
    """
    first: Dict[int, str] = {}
    for m in session.media:
        if m.mid in session.bundle:
            for ident, uri in m.hdrexts:
                first.setdefault(ident, uri)
    for m in session.media:
        if m.mid in session.bundle:
            m.hdrexts = [(i, u) for i, u in m.hdrexts if first[i] == u]
    return session


# --- candidates ---------------------------------------------------------------------

def candidate_to_element(line: str) -> ET.Element:
    """`candidate:f 1 udp prio ip port typ host [raddr a rport p] ...` -> XEP-0176."""
    words = line.strip().removeprefix("a=").removeprefix("candidate:").split()
    if len(words) < 8 or words[6] != "typ":
        raise MapError(f"bad candidate: {line}")
    attrs = {
        "foundation": words[0],
        "component": words[1],
        "protocol": words[2].lower(),
        "priority": words[3],
        "ip": words[4],
        "port": words[5],
        "type": words[7],
        "generation": "0",
        "id": secrets.token_hex(5),
    }
    extra = dict(zip(words[8::2], words[9::2]))
    for sdp_name, xml_name in (
        ("raddr", "rel-addr"),
        ("rport", "rel-port"),
        ("generation", "generation"),
        ("network-id", "network"),
        ("tcptype", "tcptype"),
    ):
        if sdp_name in extra:
            attrs[xml_name] = extra[sdp_name]
    return ET.Element(f"{{{NS_ICE}}}candidate", attrs)


def candidate_from_element(e: ET.Element) -> str:
    """XEP-0176 `<candidate/>` -> `candidate:...` (RFC 8839 syntax)."""
    try:
        line = "candidate:{} {} {} {} {} {} typ {}".format(
            e.attrib["foundation"],
            e.attrib["component"],
            e.attrib["protocol"],
            int(e.attrib["priority"]),
            e.attrib["ip"],
            int(e.attrib["port"]),
            e.attrib["type"],
        )
    except (KeyError, ValueError) as err:
        raise MapError(f"candidate without a usable {err}") from err
    if "rel-addr" in e.attrib and "rel-port" in e.attrib:
        line += f" raddr {e.attrib['rel-addr']} rport {e.attrib['rel-port']}"
    if "tcptype" in e.attrib:
        line += f" tcptype {e.attrib['tcptype']}"
    line += f" generation {e.attrib.get('generation', '0')}"
    return line


# --- Jingle -------------------------------------------------------------------------

# SDP direction, written by the initiator or the responder <-> Jingle senders.
_SENDERS = {
    ("sendrecv", "initiator"): "both",
    ("sendrecv", "responder"): "both",
    ("inactive", "initiator"): "none",
    ("inactive", "responder"): "none",
    ("sendonly", "initiator"): "initiator",
    ("recvonly", "initiator"): "responder",
    ("sendonly", "responder"): "responder",
    ("recvonly", "responder"): "initiator",
}
_DIRECTION = {
    ("both", "initiator"): "sendrecv",
    ("both", "responder"): "sendrecv",
    ("none", "initiator"): "inactive",
    ("none", "responder"): "inactive",
    ("initiator", "initiator"): "sendonly",
    ("responder", "initiator"): "recvonly",
    ("initiator", "responder"): "recvonly",
    ("responder", "responder"): "sendonly",
}


def _sub(parent: ET.Element, ns: str, tag: str, **attrs) -> ET.Element:
    return ET.SubElement(parent, f"{{{ns}}}{tag}", {k.replace("_", "-"): str(v) for k, v in attrs.items()})


def session_to_jingle(session: Session, action: str, sid: str, side: str, me: str) -> ET.Element:
    """A `<jingle/>` for session-initiate (side initiator) or session-accept (responder)."""
    jingle = ET.Element(f"{{{NS_JINGLE}}}jingle", {"action": action, "sid": sid, side: me})
    for m in session.media:
        content = _sub(jingle, NS_JINGLE, "content", creator="initiator", name=m.mid)
        if m.kind == "application":
            _sub(content, NS_DATACHANNEL, "description")
        else:
            content.set("senders", _SENDERS[(m.direction, side)])
            _rtp_description(content, m)
        transport = _sub(content, NS_ICE, "transport")
        if m.ufrag:
            transport.set("ufrag", m.ufrag)
        if m.pwd:
            transport.set("pwd", m.pwd)
        if m.fingerprint:
            fp = _sub(transport, NS_DTLS, "fingerprint", hash=m.fingerprint[0], setup=m.setup or "actpass")
            fp.text = m.fingerprint[1]
        if m.kind == "application":
            sctp = _sub(transport, NS_SCTP, "sctpmap", number=m.sctp_port or 5000, protocol="webrtc-datachannel")
            if m.max_message_size:
                sctp.set("max-message-size", str(m.max_message_size))
        for c in m.candidates:
            transport.append(candidate_to_element(c))
    if session.bundle:
        group = _sub(jingle, NS_GROUP, "group", semantics="BUNDLE")
        for mid in session.bundle:
            _sub(group, NS_GROUP, "content", name=mid)
    return jingle


def _rtp_description(content: ET.Element, m: Media):
    d = _sub(content, NS_RTP, "description", media=m.kind)
    for c in m.codecs:
        pt = _sub(d, NS_RTP, "payload-type", id=c.pt, name=c.name, clockrate=c.clock)
        if c.channels > 1:
            pt.set("channels", str(c.channels))
        for name, value in c.params:
            _sub(pt, NS_RTP, "parameter", name=name, value=value)
        for type_, sub in c.feedback:
            fb = _sub(pt, NS_RTCP_FB, "rtcp-fb", type=type_)
            if sub:
                fb.set("subtype", sub)
    for ident, uri in m.hdrexts:
        _sub(d, NS_HDREXT, "rtp-hdrext", id=ident, uri=uri)
    for ssrc, params in m.sources.items():
        source = _sub(d, NS_SSMA, "source", ssrc=ssrc)
        names = [n for n, _ in params]
        if m.msid and "msid" not in names:
            params = params + [("msid", m.msid)]
        for name, value in params:
            _sub(source, NS_SSMA, "parameter", name=name, value=value)
    for semantics, ssrcs in m.groups:
        group = _sub(d, NS_SSMA, "ssrc-group", semantics=semantics)
        for ssrc in ssrcs:
            _sub(group, NS_SSMA, "source", ssrc=ssrc)
    if m.rtcp_mux:
        _sub(d, NS_RTP, "rtcp-mux")


def jingle_to_session(jingle: ET.Element, side: str) -> Session:
    """The session a session-initiate (side initiator) or -accept (responder) describes."""
    session = Session()
    group = jingle.find(f"{{{NS_GROUP}}}group")
    if group is not None and group.get("semantics") == "BUNDLE":
        session.bundle = [c.get("name", "") for c in group.findall(f"{{{NS_GROUP}}}content")]
    for content in jingle.findall(f"{{{NS_JINGLE}}}content"):
        name = content.get("name")
        if not name:
            raise MapError("a content without a name")
        transport = content.find(f"{{{NS_ICE}}}transport")
        if transport is None:
            raise MapError(f"content {name}: no ICE-UDP transport")
        rtp = content.find(f"{{{NS_RTP}}}description")
        if rtp is not None and rtp.get("media") in ("audio", "video"):
            m = Media(kind=rtp.get("media"), mid=name)
            senders = content.get("senders", "both")
            m.direction = _DIRECTION.get((senders, side), "sendrecv")
            _read_rtp(rtp, m)
        elif content.find(f"{{{NS_DATACHANNEL}}}description") is not None:
            m = Media(kind="application", mid=name)
            sctp = transport.find(f"{{{NS_SCTP}}}sctpmap")
            m.sctp_port = int(sctp.get("number", "5000")) if sctp is not None else 5000
            if sctp is not None and sctp.get("max-message-size"):
                m.max_message_size = int(sctp.get("max-message-size"))
        else:
            raise MapError(f"content {name}: neither RTP audio/video nor a data channel")
        m.ufrag, m.pwd = transport.get("ufrag"), transport.get("pwd")
        fp = transport.find(f"{{{NS_DTLS}}}fingerprint")
        if fp is not None:
            m.fingerprint = (fp.get("hash", "sha-256"), (fp.text or "").strip())
            m.setup = fp.get("setup", "actpass")
        m.candidates = [candidate_from_element(c) for c in transport.findall(f"{{{NS_ICE}}}candidate")]
        session.media.append(m)
    if not session.media:
        raise MapError("a session without contents")
    return session


def _read_rtp(d: ET.Element, m: Media):
    for pt in d.findall(f"{{{NS_RTP}}}payload-type"):
        try:
            codec = Codec(
                pt=int(pt.get("id")),
                name=pt.get("name") or "",
                clock=int(pt.get("clockrate") or 0),
                channels=int(pt.get("channels", "1")),
            )
        except (TypeError, ValueError) as err:
            raise MapError(f"bad payload-type in content {m.mid}: {err}") from err
        if not codec.name or not codec.clock:
            continue  # a static payload type without rtpmap data: not usable by name
        codec.params = [(p.get("name", ""), p.get("value", "")) for p in pt.findall(f"{{{NS_RTP}}}parameter")]
        codec.feedback = [(f.get("type", ""), f.get("subtype")) for f in pt.findall(f"{{{NS_RTCP_FB}}}rtcp-fb")]
        m.codecs.append(codec)
    if not m.codecs:
        raise MapError(f"content {m.mid}: no payload-type")
    # XEP-0293 §3: rtcp-fb directly in the description applies to every payload type.
    for f in d.findall(f"{{{NS_RTCP_FB}}}rtcp-fb"):
        for codec in m.codecs:
            codec.feedback.append((f.get("type", ""), f.get("subtype")))
    m.hdrexts = [(int(x.get("id", "0")), x.get("uri", "")) for x in d.findall(f"{{{NS_HDREXT}}}rtp-hdrext")]
    for source in d.findall(f"{{{NS_SSMA}}}source"):
        params = [(p.get("name", ""), p.get("value", "")) for p in source.findall(f"{{{NS_SSMA}}}parameter")]
        m.sources[int(source.get("ssrc", "0"))] = params
        for name, value in params:
            if name == "msid" and m.msid is None:
                m.msid = value
    for group in d.findall(f"{{{NS_SSMA}}}ssrc-group"):
        ssrcs = [int(s.get("ssrc", "0")) for s in group.findall(f"{{{NS_SSMA}}}source")]
        m.groups.append((group.get("semantics", "FID"), ssrcs))
    m.rtcp_mux = d.find(f"{{{NS_RTP}}}rtcp-mux") is not None


def transport_info(sid: str, mid: str, ufrag: Optional[str], lines: List[str]) -> ET.Element:
    """A transport-info trickling `lines` (candidate lines) of content `mid`."""
    jingle = ET.Element(f"{{{NS_JINGLE}}}jingle", {"action": "transport-info", "sid": sid})
    content = _sub(jingle, NS_JINGLE, "content", creator="initiator", name=mid)
    transport = _sub(content, NS_ICE, "transport")
    if ufrag:
        transport.set("ufrag", ufrag)
    for line in lines:
        transport.append(candidate_to_element(line))
    return jingle


def transport_info_candidates(jingle: ET.Element) -> List[Tuple[str, Optional[str], str]]:
    """(mid, ufrag, candidate line) for every candidate a transport-info carries."""
    out = []
    for content in jingle.findall(f"{{{NS_JINGLE}}}content"):
        transport = content.find(f"{{{NS_ICE}}}transport")
        if transport is None:
            continue
        for c in transport.findall(f"{{{NS_ICE}}}candidate"):
            out.append((content.get("name", ""), transport.get("ufrag"), candidate_from_element(c)))
    return out
