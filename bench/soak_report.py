#!/usr/bin/env python3
"""Figures and plot of a bench/soak.sh run: RSS growth after the warm-up, descriptors,
live objects during the load and after the drain. Writes a JSON file and a PNG (gnuplot),
prints the figures and a markdown table for docs/benchmarks.md."""
import argparse
import csv
import json
import os
import subprocess
import tempfile


def slope_per_hour(rows, key):
    xs = [r["t"] for r in rows]
    ys = [r[key] for r in rows]
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 3600


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--load", required=True, help="the load generator's RESULT json")
    ap.add_argument("--load-start", type=float, default=0, help="seconds of idle samples before the load")
    ap.add_argument("--warmup", type=float, default=300, help="seconds into the load where growth is measured from")
    ap.add_argument("--load-seconds", type=float, required=True)
    ap.add_argument("--plot", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--command", default="sudo bench/soak.sh")
    a = ap.parse_args()
    rows = []
    with open(a.csv) as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) for k, v in r.items()})
    if not rows:
        raise SystemExit("soak_report: no samples")
    load = json.load(open(a.load)) if os.path.getsize(a.load) else {}
    # Times from the start of the load; the idle baseline is the last sample before it.
    for r in rows:
        r["t"] -= a.load_start
    start = [r for r in rows if r["t"] < 0][-1] if rows[0]["t"] < 0 else rows[0]
    window = [r for r in rows if a.warmup <= r["t"] <= a.load_seconds]
    if len(window) < 2:
        window = [r for r in rows if 0 <= r["t"] <= a.load_seconds] or rows
    w0, w1 = window[0], window[-1]
    last = rows[-1]
    during = [r for r in rows if 0 <= r["t"] <= a.load_seconds]

    def memory(key):
        """A memory column (KiB) at the marks, its growth and slope after the warm-up;
        None for a column the samples lack (runs from before it was sampled)."""
        if key not in w0:
            return None
        return {
            "start": start[key], "at_warmup": w0[key], "end_of_load": w1[key],
            "max": max(r[key] for r in rows), "after_drain": last[key],
            "growth_after_warmup_pct": round((w1[key] - w0[key]) / w0[key] * 100, 2) if w0[key] else None,
            "slope_kb_per_hour_after_warmup": round(slope_per_hour(window, key), 1),
        }

    fig = {
        "command": a.command,
        "samples": len(rows),
        "load_s": a.load_seconds,
        "warmup_s": a.warmup,
        "rss_kb": memory("rss_kb"),
        "rss_anon_kb": memory("rss_anon_kb"),
        "rss_file_kb": memory("rss_file_kb"),
        "heap_in_use_kb": {
            "start": start.get("heap_in_use", 0) / 1024, "at_warmup": w0.get("heap_in_use", 0) / 1024,
            "end_of_load": w1.get("heap_in_use", 0) / 1024, "after_drain": last.get("heap_in_use", 0) / 1024,
            "slope_kb_per_hour_after_warmup": round(slope_per_hour(window, "heap_in_use") / 1024, 1) if "heap_in_use" in w0 else None,
        },
        "heap_free_kb": {"at_warmup": w0.get("heap_free", 0) / 1024, "end_of_load": w1.get("heap_free", 0) / 1024},
        "fds": {
            "start": start["fds"], "min_after_warmup": min(r["fds"] for r in window),
            "max_after_warmup": max(r["fds"] for r in window),
            "mean_after_warmup": round(sum(r["fds"] for r in window) / len(window), 1),
            "slope_per_hour_after_warmup": round(slope_per_hour(window, "fds"), 1),
            "after_drain": last["fds"],
        },
        "peak_live": {k: max(r[k] for r in during) for k in
                      ["allocations", "signal_sessions", "signal_connections", "signal_rooms", "signal_suspended", "ice_sources"]},
        "after_drain": {k: last[k] for k in
                        ["allocations", "stream_connections", "tcp_peer_connections", "signal_connections",
                         "signal_sessions", "signal_suspended", "signal_rooms", "threads"]},
        "totals": {k: last[k] for k in ["allocations_created", "allocations_expired", "relayed_packets", "signal_joins", "signal_resumes", "ice_ok"]},
        "load": load.get("counts", load),
    }
    growth = fig["rss_kb"]["growth_after_warmup_pct"]
    drained = all(v == 0 for k, v in fig["after_drain"].items() if k != "threads")
    fig["goals"] = {
        "rss_growth_under_1pct": growth < 1.0,
        "anon_rss_growth_under_1pct": fig["rss_anon_kb"]["growth_after_warmup_pct"] < 1.0 if fig["rss_anon_kb"] else None,
        "fds_back_to_start": last["fds"] == start["fds"],
        "every_ended_object_gone": drained,
    }
    json.dump(fig, open(a.json, "w"), indent=2)

    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as d:
        for r in rows:
            d.write(" ".join(str(x) for x in [r["t"] / 60, r["rss_kb"] / 1024, r["fds"], r["allocations"],
                                              r["signal_sessions"], r["signal_connections"], r["signal_rooms"],
                                              r.get("heap_in_use", 0) / 1048576, r.get("heap_free", 0) / 1048576,
                                              r.get("rss_anon_kb", 0) / 1024]) + "\n")
        dat = d.name
    gp = f"""
set terminal pngcairo size 1100,760 font ",10"
set output "{a.plot}"
set multiplot layout 2,1 title "Switchboard soak: {a.load_seconds / 60:.0f} min of mixed churn, then the drain (samples every {rows[1]['t'] - rows[0]['t'] if len(rows) > 1 else 0:.0f} s)"
set grid
set key outside right
set xlabel "minutes since the load started"
set arrow from 0,graph 0 to 0,graph 1 nohead dt 3 lc rgb "black"
set arrow from {a.warmup / 60},graph 0 to {a.warmup / 60},graph 1 nohead dt 2 lc rgb "gray"
set arrow from {a.load_seconds / 60},graph 0 to {a.load_seconds / 60},graph 1 nohead dt 2 lc rgb "gray"
set y2label "open descriptors"
set y2tics
set yrange [0:*]
set y2range [0:*]
set ylabel "MiB"
plot "{dat}" using 1:2 with lines lw 2 title "RSS", "" using 1:10 with lines lw 2 title "RSS, anonymous", \\
     "" using 1:8 with lines lw 2 title "heap in use", \\
     "" using 1:9 with lines title "heap freed, kept", "" using 1:3 axes x1y2 with lines title "descriptors"
unset y2tics
unset y2label
set ylabel "live objects"
plot "{dat}" using 1:4 with lines title "allocations", "" using 1:5 with lines title "signaling sessions", \\
     "" using 1:6 with lines title "signaling connections", "" using 1:7 with lines title "rooms"
unset multiplot
"""
    subprocess.run(["gnuplot"], input=gp, text=True, check=True)
    os.unlink(dat)

    r, fd, hp = fig["rss_kb"], fig["fds"], fig["heap_in_use_kb"]
    print(f"soak: RSS {w0['rss_kb'] / 1024:.1f} MiB at {a.warmup / 60:.0f} min -> {w1['rss_kb'] / 1024:.1f} MiB at the end of the load "
          f"({growth:+.2f} %, slope {r['slope_kb_per_hour_after_warmup']:+.0f} KiB/h), max {r['max'] / 1024:.1f} MiB, "
          f"{last['rss_kb'] / 1024:.1f} MiB after the drain")
    if hp["slope_kb_per_hour_after_warmup"] is not None:
        print(f"soak: heap in use {hp['at_warmup']:.0f} KiB at {a.warmup / 60:.0f} min -> {hp['end_of_load']:.0f} KiB at the end of the load "
              f"(slope {hp['slope_kb_per_hour_after_warmup']:+.0f} KiB/h), {hp['after_drain']:.0f} KiB after the drain; "
              f"freed but kept by malloc {fig['heap_free_kb']['at_warmup']:.0f} -> {fig['heap_free_kb']['end_of_load']:.0f} KiB")
    print(f"soak: descriptors {start['fds']:.0f} at start, {fd['min_after_warmup']:.0f}-{fd['max_after_warmup']:.0f} "
          f"(mean {fd['mean_after_warmup']}, slope {fd['slope_per_hour_after_warmup']:+.1f}/h) under load, {last['fds']:.0f} after the drain")
    print("soak: after the drain " + ", ".join(f"{k} {v:.0f}" for k, v in fig["after_drain"].items()))
    verdict = {True: "met", False: "MISSED", None: "n/a"}
    print("soak: goals " + ", ".join(f"{k}: {verdict[v]}" for k, v in fig["goals"].items()))
    print(f"soak: wrote {a.json}, {a.plot}")


if __name__ == "__main__":
    main()
