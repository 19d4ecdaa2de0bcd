#!/usr/bin/env python3
"""Helpers for bench/signal.sh and the signaling tables in docs/benchmarks.md (stdlib only).

  signal_report.py record TRIALS SERVER ROUND FILE [EXTRA_JSON]   append one run
  signal_report.py aggregate TRIALS META_JSON   -> results JSON (stdout)
  signal_report.py summary RESULTS_JSON         plain-text summary table
  signal_report.py markdown RESULTS_JSON        markdown table for docs/benchmarks.md

A trial is one `switchboard-load signal` run against a fresh server; TRIALS is a
JSON-lines file of them. Figures are medians over the rounds (spread in the JSON).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import dig, fmt, load_trials, m, ratio, result_of, stat  # noqa: E402

SERVERS = ["switchboard", "peerjs"]
NAMES = {"switchboard": "Switchboard", "peerjs": "PeerJS"}
GIB = 1 << 30


def slope(points):
    """Least-squares slope and intercept of y over x; None with < 2 distinct x."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return b, my - b * mx


def runs_of(trials, server):
    """Runs against one server; those disturbed by other processes only if all were."""
    ts = [t for t in trials if t["server"] == server and t.get("result")
          and not t["result"].get("error")]
    calm = [t for t in ts if not t.get("extra", {}).get("disturbed")]
    return calm or ts


def per_run(res):
    """The figures of one run."""
    mem = res.get("memory") or {}
    pts = [p for p in mem.get("points", []) if p.get("rss_kb") is not None]
    base = next((p for p in pts if p.get("requested") == 0), None)
    loaded = [p for p in pts if p.get("requested")]
    fit = slope([(p["connections"], p["rss_kb"] * 1024) for p in loaded])
    top = max(loaded, key=lambda p: p["connections"]) if loaded else None
    out = {
        "baseline_rss_kb": base and base["rss_kb"],
        "connections": top and top["connections"],
        "rss_kb": top and top["rss_kb"],
        "points": {str(p["requested"]): p for p in loaded},
        "bytes_per_connection": fit and fit[0],
        "intercept_bytes": fit and fit[1],
        "projected_rss_100k_bytes": fit and fit[1] + 100_000 * fit[0],
        "avg_bytes_per_connection": (top and base and top["connections"]
                                     and (top["rss_kb"] - base["rss_kb"]) * 1024 / top["connections"]),
        "rss_after_hold_kb": dig(mem, "after_hold.rss_kb"),
        "rss_after_load_kb": dig(mem, "after_load.rss_kb"),
        "connect_per_s": dig(res, "connect.per_s"),
        "connect_failed": dig(res, "connect.failed"),
        "hold_server_cpu_pct": dig(res, "hold.server_cpu_pct"),
        "connections_at_end": res.get("connections_at_end"),
        "events": res.get("events") or {},
    }
    if out["bytes_per_connection"]:
        out["connections_per_gib"] = GIB / out["bytes_per_connection"]
    lat = res.get("latency") or {}
    for k in ("p50", "p90", "p99", "p999", "max", "mean"):
        out[f"lat_{k}_us"] = dig(lat, f"one_way_us.{k}")
    for k in ("target_rate", "sent_per_s", "received_per_s", "lost", "server_cpu_pct",
              "generator_cpu_pct"):
        out[f"lat_{k}"] = lat.get(k)
    sat = res.get("saturation") or {}
    for k in ("delivered_per_s", "delivered_per_cpu_s", "server_cpu_pct", "generator_cpu_pct",
              "pairs", "window"):
        out[f"sat_{k}"] = sat.get(k)
    for k in ("p50", "p99"):
        out[f"sat_rtt_{k}_us"] = dig(sat, f"rtt_us.{k}")
    return out


def aggregate(trials, meta):
    out = {"meta": meta, "servers": {}}
    meta["trials"] = len(trials)
    meta["trials_disturbed"] = sum(1 for t in trials if t.get("extra", {}).get("disturbed"))
    meta["servers_died"] = sorted({t["server"] for t in trials
                                   if t.get("extra", {}).get("server_survived") is False})
    for s in SERVERS:
        runs = [per_run(t["result"]) for t in runs_of(trials, s)]
        if not runs:
            continue
        agg = {"runs": len(runs),
               "runs_disturbed_used": sum(1 for t in runs_of(trials, s)
                                          if t.get("extra", {}).get("disturbed")),
               "foreign_cpu_pct": stat([t.get("extra", {}).get("foreign_cpu_pct")
                                        for t in runs_of(trials, s)])}
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) or v is None]
        for k in keys:
            agg[k] = stat([r.get(k) for r in runs])
        reqs = sorted({n for r in runs for n in r["points"]}, key=int)
        agg["points"] = {
            n: {
                "connections": stat([r["points"].get(n, {}).get("connections") for r in runs]),
                "rss_kb": stat([r["points"].get(n, {}).get("rss_kb") for r in runs]),
                "server_fds": stat([r["points"].get(n, {}).get("server_fds") for r in runs]),
            } for n in reqs}
        ev = {}
        for r in runs:
            for k, v in r["events"].items():
                ev[k] = ev.get(k, 0) + v
        agg["events"] = ev
        agg["failures"] = [dig(t["result"], "connect.first_failures")
                           for t in runs_of(trials, s)]
        out["servers"][s] = agg
    return out


# ---------------------------------------------------------------- presentation

def rows(r):
    """(section, figure, {server: value}, goal, check or None, show ratio)."""
    sv = r.get("servers", {})
    out = []

    def g(s, k):
        return (sv.get(s) or {}).get(k)

    def add(sec, fig, key=None, vals=None, goal="", check=None, show=True):
        v = vals if vals is not None else {s: g(s, key) for s in SERVERS}
        out.append((sec, fig, v, goal, check, show))

    meta = r.get("meta", {})
    reqs = sorted({n for s in SERVERS for n in (g(s, "points") or {})}, key=int)
    for n in reqs:
        pts = {s: (g(s, "points") or {}).get(n, {}) for s in SERVERS}
        add("Memory", f"server RSS with {int(n):,} connections open, MiB",
            vals={s: (None if not m(pts[s].get("rss_kb")) else m(pts[s]["rss_kb"]) / 1024)
                  for s in SERVERS}, show=False)
    add("Memory", "server RSS before any connection, MiB",
        vals={s: (m(g(s, "baseline_rss_kb")) or 0) / 1024 or None for s in SERVERS}, show=False)
    add("Memory", "connections held (all of them open at the end of the hold)", "connections",
        show=False)
    add("Memory", "RSS per connection, bytes (slope over the readings)", "bytes_per_connection")
    add("Memory", "RSS per connection incl. start-up, bytes ((RSS(N) - RSS(0)) / N)",
        "avg_bytes_per_connection")
    add("Memory", "connections per GiB of RSS (from the slope)", "connections_per_gib",
        goal=">= 5x PeerJS",
        check=lambda v: (m(v.get("switchboard")) or 0) >= 5 * (m(v.get("peerjs")) or float("inf")))
    add("Memory", "RSS projected at 100,000 connections (intercept + 100k x slope), MiB",
        vals={s: (m(g(s, "projected_rss_100k_bytes")) or 0) / (1 << 20) or None for s in SERVERS},
        goal="< 1 GiB (projected; 100k not reachable here)",
        check=lambda v: 0 < (m(v.get("switchboard")) or 0) < 1024)
    add("Memory", "server RSS after the load phases, MiB",
        vals={s: (m(g(s, "rss_after_load_kb")) or 0) / 1024 or None for s in SERVERS}, show=False)
    add("Connect", "connections opened per second (paced; TCP + handshake + join/OPEN)",
        "connect_per_s", show=False)
    rate = meta.get("rate")
    at = f" at {rate:,} msg/s" if rate else ""
    for k in ("p50", "p99", "p999"):
        add("Relay latency", f"one-way {k}{at}, µs", f"lat_{k}_us",
            goal="p99 < 2 ms" if k == "p99" else "",
            check=(lambda v: 0 < (m(v.get("switchboard")) or 0) < 2000) if k == "p99" else None)
    add("Relay latency", f"messages/s received{at}", "lat_received_per_s", show=False)
    add("Relay latency", "messages lost", "lat_lost", show=False)
    add("Relay latency", f"server CPU{at}, % of one core", "lat_server_cpu_pct")
    add("Saturation", "relayed messages/s delivered", "sat_delivered_per_s")
    add("Saturation", "messages per server CPU-second", "sat_delivered_per_cpu_s")
    add("Saturation", "server CPU, % of one core", "sat_server_cpu_pct", show=False)
    add("Saturation", "generator CPU, % of one core", "sat_generator_cpu_pct", show=False)
    add("Saturation", "round trip p50 (two relays), µs", "sat_rtt_p50_us")
    add("Saturation", "round trip p99 (two relays), µs", "sat_rtt_p99_us")
    return out


def markdown(r):
    meta = r.get("meta", {})
    lines = [
        f"Run {meta.get('date', '?')} ({meta.get('duration_s', '?')} s), "
        f"{meta.get('clients', '?'):,} clients ({meta.get('clients', 0) // 2:,} pairs), "
        f"medians of {meta.get('rounds', '?')} rounds; switchboard {meta.get('switchboard_version', '?')}, "
        f"PeerJS server {meta.get('peerjs_version', '?')} on node {meta.get('node_version', '?')}, "
        f"kernel {meta.get('kernel', '?')}, {meta.get('cpus', '?')} CPUs.",
        "",
        "| | figure | Switchboard | PeerJS | Switchboard / PeerJS | goal | met? |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for sec, fig, v, goal, check, show in rows(r):
        met = "" if check is None else ("yes" if check(v) else "**no**")
        rc = ratio(v.get("switchboard"), v.get("peerjs")) if show else ""
        lines.append(f"| {sec} | {fig} | {fmt(v.get('switchboard'))} | {fmt(v.get('peerjs'))} "
                     f"| {rc} | {goal} | {met} |")
    lines += ["", "Spread (min–max over rounds):", ""]
    for sec, fig, v, _, _, _ in rows(r):
        spread = [f"{NAMES[s]} {fmt(x['min'])}–{fmt(x['max'])}" for s in SERVERS
                  for x in [v.get(s)] if isinstance(x, dict) and x.get("n", 0) > 1]
        if spread:
            lines.append(f"- {sec}, {fig}: " + "; ".join(spread))
    for s in SERVERS:
        ev = (r.get("servers", {}).get(s) or {}).get("events")
        if ev:
            lines.append(f"- {NAMES[s]} events over all rounds: "
                         + ", ".join(f"{k}: {v}" for k, v in sorted(ev.items())))
    return "\n".join(lines)


def summary(r):
    w = [66, 13, 13, 8]
    out = [f"{'figure':<{w[0]}}{'switchboard':>{w[1]}}{'peerjs':>{w[2]}}{'sb/pj':>{w[3]}}  goal"]
    section = None
    for sec, fig, v, goal, check, show in rows(r):
        if sec != section:
            out.append(f"-- {sec}")
            section = sec
        met = "" if check is None else (" [met]" if check(v) else " [MISSED]")
        rc = ratio(v.get("switchboard"), v.get("peerjs")) if show else ""
        out.append(f"{fig[:w[0] - 1]:<{w[0]}}{fmt(v.get('switchboard')):>{w[1]}}"
                   f"{fmt(v.get('peerjs')):>{w[2]}}{rc:>{w[3]}}  {goal}{met}")
    meta = r.get("meta", {})
    for s in SERVERS:
        a = r.get("servers", {}).get(s) or {}
        if a:
            out.append(f"{NAMES[s]}: {a['runs']} runs used ({a.get('runs_disturbed_used', 0)} of them "
                       f"disturbed), other processes' CPU during them: median "
                       f"{fmt(a.get('foreign_cpu_pct'))} % of a core")
    if meta.get("trials_disturbed"):
        out.append(f"({meta['trials_disturbed']} runs disturbed by other processes)")
    if meta.get("servers_died"):
        out.append(f"SERVER DIED during a run: {', '.join(meta['servers_died'])}")
    return "\n".join(out)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "record":
        trials, server, rnd, path = args[:4]
        extra = json.loads(args[4]) if len(args) > 4 else {}
        rec = {"server": server, "round": int(rnd), "result": result_of(path), "extra": extra}
        with open(trials, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
    elif cmd == "aggregate":
        print(json.dumps(aggregate(load_trials(args[0]), json.loads(args[1])), indent=1))
    elif cmd == "summary":
        with open(args[0], encoding="utf-8") as f:
            print(summary(json.load(f)))
    elif cmd == "markdown":
        with open(args[0], encoding="utf-8") as f:
            print(markdown(json.load(f)))
    else:
        sys.exit(f"unknown command {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
