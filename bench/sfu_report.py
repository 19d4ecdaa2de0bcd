#!/usr/bin/env python3
"""Figures of a bench/sfu.sh run (docs/benchmarks.md, "SFU (issue 11)").

  sfu_report.py record TRIALS SERVER N ROUND OUTFILE EXTRA_JSON   append one trial
  sfu_report.py aggregate TRIALS META_JSON > out.json             medians per (server, N)
  sfu_report.py markdown out.json > out.md                        the table
  sfu_report.py plot out.json out.png                             gnuplot PNG
"""
import json
import statistics
import subprocess
import sys
import tempfile

# (key in the aggregate, path in one trial's output)
FIGURES = [
    ("fwd_pkt_per_cpu_s", ("fwd_pkt_per_cpu_s",)),
    ("server_cpu_pct", ("server_cpu_pct",)),
    ("rx_pkt_per_s", ("window", "rx_pkt_per_s")),
    ("sent_pkt", ("window", "sent_packets")),
    ("loss_pct", ("window", "loss_pct")),
    ("subscribers_receiving", ("window", "subscribers_receiving")),
    ("subscribers_lossless", ("window", "subscribers_lossless")),
    ("subscribers_under_1pct", ("window", "subscribers_under_1pct")),
    ("subscribers_ok", ("window", "subscribers_ok")),
    ("late_packets", ("window", "late_packets")),
    ("delivery_pct", ("delivery_pct",)),
    ("latency_p50_ms", ("window", "latency_ms", "p50")),
    ("latency_p99_ms", ("window", "latency_ms", "p99")),
    ("latency_p999_ms", ("window", "latency_ms", "p999")),
    ("join_p50_ms", ("window", "join_ms", "p50")),
    ("join_p99_ms", ("window", "join_ms", "p99")),
    ("rss_per_sub_kb", ("rss_per_sub_kb",)),
    ("rss_all_kb", ("rss_kb", "all")),
    ("client_cpu_pct", ("client_cpu_pct",)),
    ("keyframe_requests", ("window", "keyframe_requests")),
    ("rx_packets", ("window", "rx_packets")),
    ("server_forwarded_packets", ("server_counters", "forwarded_packets")),
    ("server_dropped_packets", ("server_counters", "subscriber_dropped_packets")),
    ("server_plis_sent", ("server_counters", "plis_sent")),
    ("server_bwe_min_bps", ("server_counters", "bwe_min_bps")),
    ("server_bwe_mean_bps", ("server_counters", "bwe_mean_bps")),
]


def dig(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def last_json_line(path):
    """The last line of `path` that is a JSON object (the load client's result), or None."""
    result = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("{"):
                    result = json.loads(line)
    except (OSError, ValueError):
        result = None
    return result


def record(trials, server, n, rnd, outfile, extra, size_key="subscribers"):
    row = {"server": server, size_key: int(n), "round": int(rnd), "result": last_json_line(outfile)}
    row.update(json.loads(extra))
    with open(trials, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def aggregate(trials, meta):
    rows = [json.loads(l) for l in open(trials, encoding="utf-8") if l.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["server"], r["subscribers"]), []).append(r)
    results = {}
    for (server, n), rs in sorted(groups.items()):
        clean = [r for r in rs if not r.get("disturbed") and r["result"]]
        use = clean or [r for r in rs if r["result"]]
        fig = {k: median([dig(r["result"], p) for r in use]) for k, p in FIGURES}
        fig["trials"] = len(use)
        fig["trials_disturbed"] = sum(1 for r in use if r.get("disturbed"))
        fig["trials_failed"] = sum(1 for r in rs if not r["result"])
        fig["foreign_cpu_pct"] = median([r.get("foreign_cpu_pct") for r in use])
        results.setdefault(server, {})[str(n)] = fig
    summary = {}
    for server, by_n in results.items():
        def held(ok):
            good = [int(n) for n, f in by_n.items() if ok(int(n), f)]
            return max(good) if good else None

        def full(n, f):
            return f["subscribers_receiving"] == n and f["server_cpu_pct"] is not None

        lossless = held(lambda n, f: full(n, f) and f["subscribers_lossless"] == n)
        # Held: every subscriber lost or got late (> 200 ms) under 1 % of its packets, and
        # the subscribers got at least 99 % of what was sent.
        ok = held(lambda n, f: full(n, f) and f["subscribers_ok"] == n
                  and (f["delivery_pct"] or 0) >= 99)
        best = by_n.get(str(ok)) if ok else None
        summary[server] = {
            "held_lossless": lossless,
            "held": ok,
            # What one core would hold at the same cost per subscriber (linear estimate).
            "subscribers_per_core_estimate": round(ok * 100 / best["server_cpu_pct"])
            if best and best["server_cpu_pct"] else None,
            "fwd_pkt_per_cpu_s_at_largest": best["fwd_pkt_per_cpu_s"] if best else None,
        }
    print(json.dumps({"meta": json.loads(meta), "results": results, "summary": summary}, indent=1))


def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float) and x >= 1000:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}"


def markdown(path):
    d = json.load(open(path, encoding="utf-8"))
    m = d["meta"]
    print(f"SFU run of {m['date']}: rooms of {m['publishers']} publisher(s) of VP8 {m['video_kbps']} kbit/s "
          f"+ Opus and up to {m.get('subs_per_room', 'N')} subscribers each, N subscribers in all, {m['window_s']} s windows, medians of the "
          f"rounds (of {m['rounds']}) during which other processes used at most 15 % of a core (all rounds if none did); "
          f"server on core {m['server_core']}, load client on core {m['load_core']}; "
          f"Switchboard {m['switchboard_version']}, Janus {m['janus_version']}.")
    print()
    print("| server | N | forwarded pkt per server CPU-s | server CPU % | received pkt/s | delivered % "
          "| loss % | subscribers lossless / held | added latency p50 / p99 ms | join p50 / p99 ms "
          "| RSS per subscriber KiB | client CPU % | rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for server, by_n in d["results"].items():
        for n in sorted(by_n, key=int):
            f = by_n[n]
            print(f"| {server} | {n} | {fmt(f['fwd_pkt_per_cpu_s'], 0)} | {fmt(f['server_cpu_pct'])} "
                  f"| {fmt(f['rx_pkt_per_s'], 0)} | {fmt(f['delivery_pct'])} | {fmt(f['loss_pct'], 2)} "
                  f"| {fmt(f['subscribers_lossless'], 0)} / {fmt(f['subscribers_ok'], 0)} "
                  f"| {fmt(f['latency_p50_ms'], 2)} / {fmt(f['latency_p99_ms'], 2)} "
                  f"| {fmt(f['join_p50_ms'], 0)} / {fmt(f['join_p99_ms'], 0)} "
                  f"| {fmt(f['rss_per_sub_kb'], 0)} | {fmt(f['client_cpu_pct'])} | {f['trials']} |")
    print()
    for server, s in d["summary"].items():
        print(f"- {server}: largest N with every subscriber lossless: {s['held_lossless']}; "
              f"held (every subscriber: lost + later than 200 ms < 1 %, ≥ 99 % delivered): {s['held']} "
              f"(one core at that cost per subscriber: ~{s['subscribers_per_core_estimate']}).")


def gnuplot_panels(png, title, xlabel, series, panels):
    """A PNG of panels side by side, one line per series. `series` is (title, rows) with
    rows of (x, y1, y2, ...) (None for a missing value); `panels` is (ylabel, column,
    extra gnuplot commands) per panel, `column` counting from 1 for y1."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (name, rows) in enumerate(series):
            dat = f"{tmp}/{i}.dat"
            with open(dat, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(" ".join("NaN" if v is None else str(v) for v in row) + "\n")
            files.append((dat, name.replace('"', "'")))
        gp = [
            'set terminal pngcairo size 1100,480 font ",10"',
            f'set output "{png}"',
            f'set multiplot layout 1,{len(panels)} title "{title}"',
            "set key top left",
            "set grid",
            f'set xlabel "{xlabel}"',
        ]
        for ylabel, column, extra in panels:
            gp += [f'set ylabel "{ylabel}"', "set yrange [0:*]", *extra]
            lines = [f'"{dat}" using 1:{column + 1} with linespoints lw 2 title "{name}"' for dat, name in files]
            gp.append("plot " + ", ".join(lines))
        gp.append("unset multiplot")
        subprocess.run(["gnuplot"], input="\n".join(gp) + "\n", text=True, check=True)


def plot(path, png):
    d = json.load(open(path, encoding="utf-8"))
    series = []
    for server, by_n in d["results"].items():
        rows = [(int(n), by_n[n]["fwd_pkt_per_cpu_s"], by_n[n]["server_cpu_pct"])
                for n in sorted(by_n, key=int)]
        series.append((server, rows))
    gnuplot_panels(
        png,
        "SFU: VP8 + Opus publisher to N subscribers (rooms of at most 100), server on one core",
        "subscribers",
        series,
        [("forwarded packets per server CPU-second", 1, []), ("server CPU, % of one core", 2, [])],
    )


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "record":
        record(*sys.argv[2:8])
    elif cmd == "aggregate":
        aggregate(sys.argv[2], sys.argv[3])
    elif cmd == "markdown":
        markdown(sys.argv[2])
    elif cmd == "plot":
        plot(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
