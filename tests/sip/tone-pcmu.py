#!/usr/bin/env python3
"""Write tone-pcmu.pcap (or the path given): SECS seconds (default 60) of a 440 Hz tone
as 20 ms PCMU RTP packets (PT 0) in an Ethernet/IPv4/UDP pcap, for the inbound
scenarios' play_pcap_audio when they run by hand. The tests write the same file
themselves (crates/switchboard/tests/sip_sipp.rs, write_tone_pcap)."""
import math
import struct
import sys


def ulaw(sample):
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    while exponent > 0 and not magnitude & (0x80 << exponent):
        exponent -= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~((0x80 if sample < 0 else 0) | (exponent << 4) | mantissa) & 0xFF


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tone-pcmu.pcap"
    secs = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    phase = 0.0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(secs * 50):
            payload = bytearray()
            for _ in range(160):
                phase += 2 * math.pi * 440 / 8000
                payload.append(ulaw(int(math.sin(phase) * 8000)))
            rtp = struct.pack("!BBHII", 0x80, 0, (i + 1) & 0xFFFF, i * 160, 0x5EED) + payload
            udp = struct.pack("!HHHH", 6000, 20000, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
            frame = bytes(12) + b"\x08\x00" + ip
            micros = i * 20000
            out.write(struct.pack("<IIII", micros // 1000000, micros % 1000000, len(frame), len(frame)))
            out.write(frame)


main()
