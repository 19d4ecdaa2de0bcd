#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the RFC vectors and from the traffic the tests
already produce.

    fuzz/corpus.py                 # run the sans-IO tests with capturing on, write fuzz/seeds/
    fuzz/corpus.py --logs DIR      # use logs captured before (SWITCHBOARD_FUZZ_CAPTURE=DIR)

The tests of crates/turn, crates/signal and crates/natprobe log every input their
harnesses hand the cores (crates/fuzz-capture). This turns those logs into inputs in each
target's own format (see fuzz/src/*.rs), one file per test case, named by content hash,
plus the RFC 5769 vectors from crates/stun/tests/rfc5769.rs. Deterministic: the same logs
give the same files.
"""
import argparse
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SKIP_IN_SIGNED = {0x0006, 0x0014, 0x0015, 0x0008, 0x001C, 0x8028}  # credentials and seals
TURN_PEERS = ["1.1.1.1:53", "8.8.8.8:4000", "[2606:4700::1111]:8443", "127.0.0.1:9", "198.51.100.1:50001"]
NATPROBE_FROM = ["203.0.113.1:3478", "203.0.113.1:3479", "203.0.113.2:3478", "203.0.113.2:3479",
                 "198.51.100.7:40001", "192.0.2.99:1234"]
SOCKS = {"Mapping": 0, "Filtering": 1, "Hairpin": 2}
MAX_RECORDS = 96


def record(op, who, body):
    body = body[:0xFFFF]
    return bytes([op & 0xFF, who & 0xFF]) + struct.pack(">H", len(body)) + body


def attrs_of(msg):
    """(type, value) of a STUN message's attributes, leniently."""
    out, off = [], 20
    while off + 4 <= len(msg):
        t, n = struct.unpack(">HH", msg[off:off + 4])
        out.append((t, msg[off + 4:off + 4 + n]))
        off += 4 + (n + 3) // 4 * 4
    return out


def is_stun(b):
    return len(b) >= 20 and b[0] & 0xC0 == 0 and b[4:8] == b"\x21\x12\xa4\x42"


def read_log(path):
    for line in open(path, encoding="utf-8"):
        parts = line.rstrip("\n").split(" ")
        yield parts[:-1], bytes.fromhex(parts[-1])


def rfc5769_vectors():
    src = open(os.path.join(ROOT, "crates/stun/tests/rfc5769.rs"), encoding="utf-8").read()
    for m in re.finditer(r'hex\("([0-9a-fA-F\s]+)"\)', src):
        yield bytes.fromhex("".join(m.group(1).split()))


class Corpora:
    def __init__(self, out):
        self.out = out
        self.counts = {}

    def add(self, target, data):
        if not data:
            return
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        p = os.path.join(d, name)
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
            self.counts[target] = self.counts.get(target, 0) + 1


def stun_messages(c, msg):
    """Seeds of the message-level targets from one STUN message or datagram."""
    c.add("stun_parse", msg)
    c.add("first_bytes_demux", msg[:16])
    if is_stun(msg):
        # stun_integrity: [method][flags][key len][key][tid][attributes]
        t = struct.unpack(">H", msg[0:2])[0]
        method = (t & 0xF) | ((t >> 1) & 0x70) | ((t >> 2) & 0xF80)
        cls = ((t >> 4) & 1) | ((t >> 7) & 2)
        a = attrs_of(msg)
        types = {x[0] for x in a}
        flags = (1 if 0x0008 in types else 0) | (2 if 0x001C in types else 0) | (4 if 0x8028 in types else 0) | (cls << 4)
        key = b"wonderland"
        body = b"".join(struct.pack(">HH", ty, len(v)) + v for ty, v in a if ty not in SKIP_IN_SIGNED)
        flips = b"\x00\x03\x01\x00\x18\x80"
        c.add("stun_integrity", struct.pack(">HBB", method, flags, len(key)) + key + msg[8:20] + body
              + struct.pack(">HH", 0xFFFF, 0) + flips)


def turn_log(c, path):
    recs, stream, clients = [], [], {}
    for head, data in read_log(path):
        kind = head[0]
        if kind == "client":
            transport, addr = head[1], head[2]
            stun_messages(c, data)
            if transport == "udp":
                who = clients.setdefault(addr, len([k for k in clients if not k.startswith("tcp")]) % 2)
            else:
                clients.setdefault("tcp" + addr, 2)
                who = 2
                stream.append(data)
            if is_stun(data) and any(t == 0x0008 for t, _ in attrs_of(data)):
                fp = any(t == 0x8028 for t, _ in attrs_of(data))
                recs.append(record(1, who | (0x80 if fp else 0), data))
            else:
                recs.append(record(0, who, data))
        elif kind == "answer":
            c.add("stun_parse", data)
            c.add("natprobe_response", record(0, 0, data))
        elif kind == "peer":
            peer = head[2]
            p = TURN_PEERS.index(peer) if peer in TURN_PEERS else int(hashlib.sha1(peer.encode()).hexdigest(), 16) % 3
            owner = int(head[1]) % 3
            recs.append(record(2, (owner << 4) | p, data[:1500]))
        elif kind == "advance":
            recs.append(record(3, 0, struct.pack(">H", min(int(head[1]) // 1000, 3999))))
    if recs:
        c.add("turn_server", b"".join(recs[:MAX_RECORDS]))
    if stream:
        whole = b"".join(stream)
        # The stream in chunks of 1, 7, 13... bytes: every split the framer must survive.
        chunks, at, step = [], 0, 1
        while at < len(whole) and len(chunks) < 200:
            chunks.append(record(0, 0, whole[at:at + step]))
            at += step
            step = step * 2 + 5 if step < 600 else 1
        c.add("stream_framing", b"".join(chunks))
        c.add("stream_framing", record(0, 0, whole[:4000]))


def signal_log(c, path):
    recs, conns, ids, resumes, joined_seen = [], {}, [], [], set()
    for head, data in read_log(path):
        kind = head[0]
        conn = conns.setdefault(head[1], len(conns) % 8) if len(head) > 1 else 0
        if kind == "connect":
            recs.append(record(0, conn, b""))
        elif kind == "disconnect":
            recs.append(record(1, conn, b""))
        elif kind == "advance":
            recs.append(record(3, 0, struct.pack(">H", min(int(head[1]) // 10, 0xFFFF))))
        elif kind == "out":
            text = data.decode("utf-8", "replace")
            m = re.search(r'"type":"(joined|resumed)".*?"peerId":"([^"]+)".*?"resume":"([^"]+)"', text)
            if m:
                pid, res = m.group(2), m.group(3)
                if pid not in ids:
                    ids.append(pid)
                    resumes.append(res)
                else:
                    resumes[ids.index(pid)] = res
        elif kind == "in":
            text = data.decode("utf-8", "replace")
            for i, (pid, res) in enumerate(zip(ids, resumes)):
                if i > 9:
                    break
                text = text.replace(pid, "@%d" % i).replace(res, "#%d" % i)
            recs.append(record(2, conn, text.encode()))
    if recs:
        c.add("signal_hub", b"\x00" + b"".join(recs[:MAX_RECORDS]))
        c.add("signal_hub", b"\x04" + b"".join(recs[:MAX_RECORDS]))


def natprobe_log(c, path):
    recs = []
    for head, data in read_log(path):
        if head[0] == "in":
            c.add("stun_parse", data)
            frm = head[2]
            who = NATPROBE_FROM.index(frm) if frm in NATPROBE_FROM else 5
            # A hairpinned request goes in raw (op 1) on its socket; answers as op 0.
            if data[0:2] == b"\x00\x01":
                recs.append(record(1, SOCKS.get(head[1], 0) | (4 << 2), data))
            else:
                recs.append(record(0, who, data))
        elif head[0] == "timeout":
            recs.append(record(2, 0, b""))
    if recs:
        c.add("natprobe_response", b"".join(recs[:MAX_RECORDS]))


def demux_extras(c):
    for s in [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"POST /signal HTTP/1.1\r\n", b"OPTIONS * HTTP/1.1",
              b"PRI * HTTP/2.0\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
              b"\x16\x03\x03\x00\x05\x01", b"\x40\x00\x00\x04abcd", b"SSH-2.0-OpenSSH_9.2\r\n"]:
        c.add("first_bytes_demux", s)


SFU_MESSAGES = [
    b'{"sfu":"publish","tracks":[{"mid":"0","source":"camera"},{"mid":"1","source":"microphone"}]}',
    b'{"sfu":"publish","tracks":[{"mid":"2","source":"screen"},{"mid":"3","source":"screen-audio"}]}',
    b'{"sfu":"tracks","tracks":[{"mid":"3","peer":"p0123456789abcdef0","source":"camera","kind":"video"},'
    b'{"mid":"4","peer":"p0123456789abcdef0","source":"microphone","kind":"audio"}]}',
    b'{"sfu":"view","tracks":[{"mid":"3","width":320,"height":180},{"mid":"5","width":0,"height":0},{"mid":"7"}]}',
    b'{"sfu":"view","tracks":[{"mid":"3","width":1279.5,"height":720.25}]}',
    b'{"sfu":"speaker","peer":"p0123456789abcdef0"}',
    b'{"sfu":"speaker","peer":null}',
    b'{"sfu":"error","code":"bad-sdp","reason":"no \\"m=\\" line\\n"}',
    b'{"sfu":"error","code":"forbidden","reason":"no publish grant"}',
    b'{"sfu":"layers","mid":"3","layer":"h"}',
    b'{"sfu":"layers","mid":"3","layer":null}',
    b'{"to":"p0123456789abcdef0","data":{"chat":"hello \\u00e9","n":[1,2.5e3,null,true]}}',
    b'{"data":"hi everyone"}',
    b'{"from":"p0123456789abcdef1","data":[{"a":{}},"\\ud83d\\ude00"]}',
]


def sfu_message_extras(c):
    for s in SFU_MESSAGES:
        c.add("sfu_message", s)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--logs", help="capture logs already made (SWITCHBOARD_FUZZ_CAPTURE=DIR)")
    ap.add_argument("--out", default=os.path.join(HERE, "seeds"), help="where the corpora go (default fuzz/seeds)")
    args = ap.parse_args()
    logs = args.logs
    tmp = None
    if not logs:
        tmp = logs = tempfile.mkdtemp(prefix="switchboard-capture-")
        env = dict(os.environ, SWITCHBOARD_FUZZ_CAPTURE=logs)
        cmd = ["cargo", "test", "-q", "-p", "switchboard-turn", "-p", "switchboard-signal", "-p", "switchboard-natprobe"]
        print("capturing:", " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    c = Corpora(args.out)
    for v in rfc5769_vectors():
        stun_messages(c, v)
    demux_extras(c)
    sfu_message_extras(c)
    for name in sorted(os.listdir(logs)):
        p = os.path.join(logs, name)
        if name.startswith("turn-"):
            turn_log(c, p)
        elif name.startswith("signal-"):
            signal_log(c, p)
        elif name.startswith("natprobe-"):
            natprobe_log(c, p)
    if tmp:
        shutil.rmtree(tmp)
    for t in sorted(c.counts):
        print(f"{t}: {c.counts[t]} new seed(s) in {os.path.join(args.out, t)}")


if __name__ == "__main__":
    main()
