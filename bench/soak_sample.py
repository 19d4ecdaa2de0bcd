#!/usr/bin/env python3
"""Sample a running Switchboard every N seconds for bench/soak.sh: RSS, open descriptors,
threads (from /proc) and the live-object gauges and lifetime counters from /metrics.
One CSV row per sample; runs until killed."""
import argparse
import csv
import os
import re
import sys
import time
import urllib.request

GAUGES = {
    "allocations": "switchboard_turn_allocations",
    "allocations_created": "switchboard_turn_allocations_created_total",
    "allocations_expired": "switchboard_turn_allocations_expired_total",
    "stream_connections": "switchboard_turn_stream_connections",
    "tcp_peer_connections": "switchboard_turn_tcp_peer_connections",
    "relayed_packets": "switchboard_turn_relayed_packets_total",
    "signal_connections": "switchboard_signal_connections",
    "signal_sessions": "switchboard_signal_sessions",
    "signal_suspended": "switchboard_signal_sessions_suspended",
    "signal_rooms": "switchboard_signal_rooms",
    "signal_joins": "switchboard_signal_joins_total",
    "signal_resumes": "switchboard_signal_resumes_total",
    "ice_sources": "switchboard_ice_rate_limit_sources",
    "ice_ok": 'switchboard_ice_requests_total{result="ok"}',
    "heap_in_use": "switchboard_process_heap_in_use_bytes",
    "heap_free": "switchboard_process_heap_free_bytes",
}


def proc(pid):
    status = open(f"/proc/{pid}/status").read()
    def kb(field):
        return int(re.search(field + r":\s+(\d+)", status).group(1))

    # VmRSS = RssAnon (heap, stacks: where a leak shows) + RssFile (the binary's pages
    # faulted in as code paths first run, bounded by its size) + RssShmem.
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kb": kb("VmRSS"), "rss_anon_kb": kb("RssAnon"), "rss_file_kb": kb("RssFile"),
            "fds": fds, "threads": kb("Threads")}


def metrics(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = values.get(name, 0) + float(value)
        base = name.split("{", 1)[0]
        if base != name:
            values[base] = values.get(base, 0) + float(value)
    return {k: int(values.get(m, 0)) for k, m in GAUGES.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    fields = ["t", "rss_kb", "fds", "threads"] + list(GAUGES) + ["rss_anon_kb", "rss_file_kb"]
    t0 = time.monotonic()
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        k = 0
        while True:
            try:
                row = {"t": round(time.monotonic() - t0, 1)}
                row.update(proc(a.pid))
                row.update(metrics(a.metrics))
                w.writerow(row)
                f.flush()
            except (OSError, ValueError, AttributeError) as e:
                print(f"soak_sample: {e}", file=sys.stderr)
                if not os.path.exists(f"/proc/{a.pid}"):
                    return
            k += 1
            time.sleep(max(0.0, t0 + k * a.every - time.monotonic()))


if __name__ == "__main__":
    main()
