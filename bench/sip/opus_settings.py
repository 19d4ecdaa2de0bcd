#!/usr/bin/env python3
"""CPU per 20 ms Opus frame of the libopus the gateway links (Debian libopus0), for the
encoder settings that decide the gateway's per-call cost: application, FEC, complexity,
and the bandwidth a G.711 source actually has. Input: a 440 Hz tone plus noise, band
limited like G.711 (8 kHz upsampled), mono 48 kHz. A measurement, not a test:

  python3 bench/sip/opus_settings.py [FRAMES]

Prints µs of CPU per frame encoded (process time, one thread) for each setting."""
import ctypes
import ctypes.util
import math
import random
import sys
import time

lib = ctypes.CDLL(ctypes.util.find_library("opus") or "libopus.so.0")
VOIP, AUDIO = 2048, 2049
SET_BITRATE, SET_COMPLEXITY, SET_INBAND_FEC, SET_PACKET_LOSS_PERC = 4002, 4010, 4012, 4014
SET_MAX_BANDWIDTH, SET_SIGNAL = 4004, 4024
BW_NB, BW_WB, BW_FB = 1101, 1103, 1105
SIGNAL_VOICE = 3001
lib.opus_encoder_create.restype = ctypes.c_void_p
lib.opus_encoder_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
lib.opus_encoder_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.c_int,
                            ctypes.c_char_p, ctypes.c_int32]
lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]


def frames(n):
    rnd = random.Random(1)
    out = []
    for k in range(n):
        pcm8 = [int(6000 * (0.5 + 0.5 * math.sin(2 * math.pi * 3 * (k * 0.02 + i / 8000)))
                    * math.sin(2 * math.pi * 440 * (k * 0.02 + i / 8000)) + rnd.gauss(0, 300))
                for i in range(160)]
        pcm48 = [pcm8[i // 6] for i in range(960)]  # sample-and-hold: G.711's band only
        out.append((ctypes.c_int16 * 960)(*pcm48))
    return out


def run(name, app, ctls, pcm):
    err = ctypes.c_int(0)
    enc = lib.opus_encoder_create(48000, 1, app, ctypes.byref(err))
    for ctl, val in ctls:
        lib.opus_encoder_ctl(enc, ctl, val)
    buf = ctypes.create_string_buffer(1500)
    t0 = time.process_time()
    size = 0
    for f in pcm:
        size += lib.opus_encode(enc, f, 960, buf, 1500)
    us = 1e6 * (time.process_time() - t0) / len(pcm)
    lib.opus_encoder_destroy(enc)
    print(f"{name:58s} {us:7.1f} µs/frame  {size * 8 / (len(pcm) * 0.02) / 1000:5.1f} kbit/s")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    pcm = frames(n)
    base = [(SET_BITRATE, 32000)]
    fec = [(SET_INBAND_FEC, 1), (SET_PACKET_LOSS_PERC, 10)]
    run("gateway now: voip 32k, FEC 10 %, complexity 10 (default)", VOIP, base + fec, pcm)
    run("voip 32k, no FEC, complexity 10", VOIP, base, pcm)
    run("voip 32k, FEC 10 %, complexity 5", VOIP, base + fec + [(SET_COMPLEXITY, 5)], pcm)
    run("voip 32k, FEC 10 %, complexity 0", VOIP, base + fec + [(SET_COMPLEXITY, 0)], pcm)
    run("voip 32k, FEC 10 %, max bandwidth NB (G.711's), voice", VOIP,
        base + fec + [(SET_MAX_BANDWIDTH, BW_NB), (SET_SIGNAL, SIGNAL_VOICE)], pcm)
    run("voip 32k, FEC 10 %, max bandwidth WB, voice", VOIP,
        base + fec + [(SET_MAX_BANDWIDTH, BW_WB), (SET_SIGNAL, SIGNAL_VOICE)], pcm)
    run("voip 24k, FEC 10 %, NB, voice, complexity 5", VOIP,
        [(SET_BITRATE, 24000)] + fec + [(SET_MAX_BANDWIDTH, BW_NB), (SET_SIGNAL, SIGNAL_VOICE),
                                        (SET_COMPLEXITY, 5)], pcm)
    run("audio 32k, no FEC, complexity 10 (CELT)", AUDIO, base, pcm)
    run("audio 64k, no FEC, complexity 10 (ffmpeg's libopus default rate)", AUDIO,
        [(SET_BITRATE, 64000)], pcm)


main()
