#!/usr/bin/env python3
"""Figures of a bench/sip-janus.sh run (docs/benchmarks.md, "SIP gateway against Janus's
SIP plugin"). python3 stdlib only; shares the parsing, medians and the plotting of
bench/sfu_report.py.

  sip_janus_report.py record TRIALS SERVER N ROUND OUTFILE EXTRA_JSON   append one trial
  sip_janus_report.py aggregate TRIALS META_JSON > out.json             medians per (server, N)
  sip_janus_report.py markdown out.json > out.md                        the tables
  sip_janus_report.py plot out.json out.png                             CPU per call and round
                                                                        trip against calls (gnuplot)

A call is held when it got back at least 99.9 % of the packets it sent in the window with
lost (sequence gaps) + late (> 200 ms) under 0.1 % (switchboard-sfu-load's `calls_ok`).
A load N is held when, in the median of its rounds, every call was up, heard audio and was
held, and the server used under 95 % of its core.
"""
import json
import sys

import sfu_report
from sfu_report import dig, fmt, median

# (key in the aggregate, path in one trial's output)
FIGURES = [
    ("server_cpu_pct", ("server_cpu_pct",)),
    ("us_per_call_per_20ms", ("us_per_call_per_20ms",)),
    ("calls_hearing", ("setup", "hearing")),
    ("calls_ok", ("window", "calls_ok")),
    ("calls_connected", ("window", "calls_connected")),
    ("setup_errors", ("setup", "errors")),
    ("calls_per_s", ("setup", "calls_per_s")),
    ("all_hearing_s", ("setup", "all_hearing_s")),
    ("setup_p50_ms", ("window", "join_ms", "p50")),
    ("setup_p99_ms", ("window", "join_ms", "p99")),
    ("delivery_pct", ("delivery_pct",)),
    ("loss_pct", ("window", "loss_pct")),
    ("missing_packets", ("window", "calls_missing_packets")),
    ("late_packets", ("window", "late_packets")),
    ("sent_packets", ("window", "sent_packets")),
    ("rx_packets", ("window", "rx_packets")),
    ("rtt_p50_ms", ("window", "latency_ms", "p50")),
    ("rtt_p99_ms", ("window", "latency_ms", "p99")),
    ("rss_per_call_kb", ("rss_per_call_kb",)),
    ("rss_all_kb", ("rss_kb", "all")),
    ("client_cpu_pct", ("client_cpu_pct",)),
    ("gw_packets", ("server_counters", "packets_total")),
    ("gw_lost", ("server_counters", "lost_total")),
    ("gw_late", ("server_counters", "late_total")),
    ("gw_concealed", ("server_counters", "concealed_total")),
    ("gw_ticks_missed", ("server_counters", "ticks_missed_total")),
    ("gw_decode_errors", ("server_counters", "decode_errors_total")),
]
NAMES = {"janus": "Janus 1.1.2 SIP plugin", "switchboard": "Switchboard gateway"}
CPU_MAX = 95.0


def record(trials, server, n, rnd, outfile, extra):
    sfu_report.record(trials, server, n, rnd, outfile, extra, size_key="calls")


def held(n, f):
    """Every call up, hearing and held; the server under CPU_MAX % of its core."""
    return (f.get("calls_hearing") == n and f.get("calls_ok") == n
            and f.get("server_cpu_pct") is not None and f["server_cpu_pct"] < CPU_MAX)


def aggregate(rows, meta):
    groups = {}
    for r in rows:
        groups.setdefault((r["server"], r["calls"]), []).append(r)
    results = {}
    for (server, n), rs in sorted(groups.items()):
        clean = [r for r in rs if not r.get("disturbed") and r["result"]]
        use = clean or [r for r in rs if r["result"]]
        fig = {k: median([dig(r["result"], p) for r in use]) for k, p in FIGURES}
        fig["codec"] = next((r.get("codec") for r in rs if r.get("codec")), None)
        fig["trials"] = len(use)
        fig["trials_disturbed"] = sum(1 for r in use if r.get("disturbed"))
        fig["trials_failed"] = sum(1 for r in rs if not r["result"])
        fig["foreign_cpu_pct"] = median([r.get("foreign_cpu_pct") for r in use])
        fig["held"] = held(n, fig)
        results.setdefault(server, {})[str(n)] = fig
    summary = {}
    for server, by_n in results.items():
        good = [int(n) for n, f in by_n.items() if f["held"]]
        top = max(good) if good else None
        best = by_n.get(str(top)) if top else None
        us = best["us_per_call_per_20ms"] if best else None
        summary[server] = {
            "held": top,
            "us_per_call_per_20ms_at_held": us,
            # One core at that cost per call (20 ms = 20,000 µs of one core per tick).
            "calls_per_core_estimate": round(20000 / us) if us else None,
        }
    if "janus" in summary and "switchboard" in summary:
        j, s = summary["janus"], summary["switchboard"]
        if j["calls_per_core_estimate"] and s["calls_per_core_estimate"]:
            summary["switchboard_over_janus_per_core"] = round(
                s["calls_per_core_estimate"] / j["calls_per_core_estimate"], 2)
    return {"meta": meta, "results": results, "summary": summary}


def markdown(out):
    meta, results, summary = out["meta"], out["results"], out["summary"]
    lines = [
        f"SIP-against-Janus run ({meta.get('label', '')}) of {meta['date']} ({meta['duration_s']} s): servers on core "
        f"{meta['server_core']}, load client and SIPp {meta.get('sipp_version', '')} echo far end on "
        f"core {meta['load_core']}; medians of {meta['rounds']} round(s); calls placed "
        f"{meta['join_concurrency']} at a time, then {meta['warmup_s']} s of warm-up and a "
        f"{meta['window_s']} s window. Switchboard {meta['switchboard_version']} "
        f"(peer codec {meta['switchboard_codec']}), Janus {meta['janus_version']} "
        f"(peer codec {meta['janus_codec']}).",
        "",
        "| server | codec | calls | hearing / held | server CPU % | µs CPU per call per 20 ms "
        "| packets back % | lost + late pkts | round trip p50 / p99 ms | set-up p50 / p99 ms "
        "| calls set up per s | RSS per call KiB | gateway lost / concealed / missed ticks | rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, by_n in sorted(results.items()):
        for n, f in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            lost_late = None
            if f["loss_pct"] is not None or f["late_packets"] is not None:
                lost = (f["loss_pct"] or 0) * (f["rx_packets"] or 0) / 100
                lost_late = round(lost + (f["late_packets"] or 0))
            gw = "–"
            if server == "switchboard":
                gw = " / ".join(fmt(f[k], 0) for k in ("gw_lost", "gw_concealed", "gw_ticks_missed"))
            lines.append(
                f"| {server} | {f['codec'] or '–'} | {n} | {fmt(f['calls_hearing'])} / "
                f"{fmt(f['calls_ok'])} | {fmt(f['server_cpu_pct'])} | {fmt(f['us_per_call_per_20ms'], 0)} "
                f"| {fmt(f['delivery_pct'], 2)} | {fmt(lost_late)} | {fmt(f['rtt_p50_ms'], 2)} / "
                f"{fmt(f['rtt_p99_ms'], 2)} | {fmt(f['setup_p50_ms'], 0)} / {fmt(f['setup_p99_ms'], 0)} "
                f"| {fmt(f['calls_per_s'])} | {fmt(f['rss_per_call_kb'], 0)} | {gw} | {f['trials']}"
                + (f" ({f['trials_disturbed']} disturbed)" if f["trials_disturbed"] else "") + " |")
    lines.append("")
    for server, s in sorted(summary.items()):
        if not isinstance(s, dict):
            continue
        lines.append(
            f"- {NAMES.get(server, server)}: held with no loss (every call hearing, ≤ 0.1 % of its "
            f"packets missing, lost or late; server < {CPU_MAX:.0f} % of its core): {fmt(s['held'])} "
            f"calls; CPU per call per 20 ms there {fmt(s['us_per_call_per_20ms_at_held'], 0)} µs, "
            f"so ~{fmt(s['calls_per_core_estimate'])} calls per core at that cost.")
    if "switchboard_over_janus_per_core" in summary:
        lines.append(f"- Switchboard / Janus calls per core: {summary['switchboard_over_janus_per_core']}x.")
    return "\n".join(lines)


def plot(path, png):
    """CPU per call per 20 ms and the round trip p50 of each server against the calls."""
    d = json.load(open(path, encoding="utf-8"))
    series = []
    for server, by_n in d["results"].items():
        rows = [(int(n), by_n[n].get("us_per_call_per_20ms"), by_n[n].get("rtt_p50_ms"))
                for n in sorted(by_n, key=int)]
        series.append((NAMES.get(server, server), rows))
    sfu_report.gnuplot_panels(
        png,
        f"SIP gateway against Janus's SIP plugin, one WebRTC peer per call "
        f"({d.get('meta', {}).get('date', '')}), server on one core",
        "concurrent calls",
        series,
        [("server CPU per call per 20 ms (µs)", 1, []),
         ("round trip p50 (ms)", 2, ["set logscale y", "set yrange [0.1:*]"])],
    )


def main(argv):
    if len(argv) >= 7 and argv[1] == "record":
        record(*argv[2:8])
    elif len(argv) == 4 and argv[1] == "aggregate":
        rows = [json.loads(l) for l in open(argv[2], encoding="utf-8") if l.strip()]
        print(json.dumps(aggregate(rows, json.loads(argv[3])), indent=1))
    elif len(argv) == 3 and argv[1] == "markdown":
        print(markdown(json.load(open(argv[2], encoding="utf-8"))))
    elif len(argv) == 4 and argv[1] == "plot":
        plot(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
