#!/usr/bin/env python3
"""Helpers for bench/run.sh and the report for docs/benchmarks.md (python3 stdlib only).

  report.py get FILE KEY[.KEY...]          value from the RESULT line in FILE
  report.py verdict FILE RATE MAX_LOSS     pass | fail | genlimit | error
  report.py record TRIALS TEST SERVER SIZE RATE ROUND VERDICT FILE [EXTRA_JSON]
  report.py foreign PID                    CPU seconds used so far by everything but
                                           PID's process tree and kernel threads
  report.py aggregate TRIALS META_JSON     -> results JSON (stdout)
  report.py summary RESULTS_JSON           plain-text summary table
  report.py markdown RESULTS_JSON          markdown tables for docs/benchmarks.md

A trial is one load-generator run; TRIALS is a JSON-lines file of them.
"""

import json
import statistics
import sys

SERVERS = ["switchboard", "coturn", "forward"]
NAMES = {"switchboard": "Switchboard", "coturn": "coturn 4.6.1", "forward": "raw forwarder"}
# Generator counts as having kept up when it sent at least this share of the rate.
KEPT_UP = 0.98


def result_of(path):
    """The JSON of the last `RESULT {...}` line in a file (None if there is none)."""
    res = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("RESULT "):
                    try:
                        res = json.loads(line[7:])
                    except ValueError:
                        pass
    except OSError:
        return None
    return res


def dig(obj, key):
    for k in key.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


def foreign_cpu_s(root):
    """utime+stime+cutime+cstime of all user processes outside `root`'s tree, in seconds.

    Reaped children count in their parent's cutime/cstime, so short-lived processes
    (a test run, a compiler) show up once their parent has waited for them."""
    import os
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", encoding="utf-8", errors="replace") as f:
                st = f.read()
        except OSError:
            continue
        f = st[st.rfind(")") + 2:].split()
        # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
        procs[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
    ours = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in procs.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    kernel = {2} | {pid for pid, (ppid, _) in procs.items() if ppid == 2}
    ticks = sum(t for pid, (_, t) in procs.items() if pid not in ours and pid not in kernel)
    return ticks / os.sysconf("SC_CLK_TCK")


def verdict(res, rate, max_loss):
    if not res or res.get("error"):
        return "error"
    if res.get("sent_per_s", 0) < KEPT_UP * rate:
        return "genlimit"
    return "pass" if res.get("loss_pct", 100.0) <= max_loss else "fail"


def med(values):
    v = [x for x in values if isinstance(x, (int, float))]
    return statistics.median(v) if v else None


def stat(values):
    v = [x for x in values if isinstance(x, (int, float))]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def load_trials(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def pick(trials, test, server, size=None):
    """Trials of one kind; those disturbed by other processes only if all were."""
    ts = [t for t in trials if t["test"] == test and t["server"] == server
          and (size is None or t.get("size") == size)]
    clean = [t for t in ts if not t.get("extra", {}).get("disturbed")]
    return ts if test.endswith("_search") or not clean else clean


def search_summary(ts):
    """Confirmed rate per search round (best passing step when there was no
    confirmation run), then the median over rounds."""
    rounds = {}
    for t in ts:
        r = rounds.setdefault(t["round"], {"best": 0, "limited": False, "steps": [],
                                           "confirmed": None})
        r["steps"].append([t["rate"], t["verdict"], dig(t["result"], "loss_pct")])
        if t["verdict"] == "pass":
            r["best"] = max(r["best"], t["rate"])
        if t["verdict"] == "confirmed":
            r["confirmed"] = t["rate"]
        if t["verdict"] == "genlimit":
            r["limited"] = True
    for r in rounds.values():
        if r["confirmed"] is not None:
            r["best"] = r["confirmed"]
        elif any(v == "fail" and rate <= r["best"] for rate, v, _ in r["steps"][-1:]):
            r["best"] = 0  # the confirmation runs all failed
    if not rounds:
        return None
    best = [r["best"] for r in rounds.values()]
    return {
        "rate": med(best),
        "per_round": best,
        "generator_limited": any(r["limited"] for r in rounds.values()),
        "steps": [r["steps"] for _, r in sorted(rounds.items())],
    }


def efficiency(ts):
    if not ts:
        return None
    return {
        "rate": ts[0]["rate"],
        "per_cpu_s": stat([dig(t["result"], "relayed_per_cpu_s") for t in ts]),
        "relayed_per_s": stat([dig(t["result"], "relayed_both_per_s") for t in ts]),
        "cpu_pct": stat([dig(t["result"], "server_cpu_pct") for t in ts]),
        "loss_pct": stat([dig(t["result"], "loss_pct") for t in ts]),
    }


def latency(ts):
    if not ts:
        return None
    return {
        "rate": ts[0]["rate"],
        "p50_us": stat([dig(t["result"], "rtt_us.p50") for t in ts]),
        "p99_us": stat([dig(t["result"], "rtt_us.p99") for t in ts]),
        "loss_pct": stat([dig(t["result"], "loss_pct") for t in ts]),
    }


def aggregate(trials, meta):
    meta = dict(meta)
    meta["trials"] = len(trials)
    meta["trials_disturbed"] = sum(1 for t in trials if t.get("extra", {}).get("disturbed"))
    meta["foreign_cpu_pct_max"] = max((t.get("extra", {}).get("foreign_cpu_pct") or 0
                                       for t in trials), default=0)
    out = {"meta": meta, "stun": {}, "relay": {}, "churn": {}, "memory": {}}
    sizes = sorted({t["size"] for t in trials if t["test"].startswith("relay_")})
    for s in SERVERS:
        sat = pick(trials, "stun_sat", s)
        if sat or pick(trials, "stun_search", s):
            out["stun"][s] = {
                "per_cpu_s": stat([dig(t["result"], "answered_per_cpu_s") for t in sat]),
                "answered_per_s": stat([dig(t["result"], "answered_per_s") for t in sat]),
                "cpu_pct": stat([dig(t["result"], "server_cpu_pct") for t in sat]),
                "loss_pct": stat([dig(t["result"], "loss_pct") for t in sat]),
                "lossfree": search_summary(pick(trials, "stun_search", s)),
                "latency_70": latency(pick(trials, "stun_lat", s)),
                "latency_common": latency(pick(trials, "stun_latc", s)),
            }
        for size in sizes:
            cpu = pick(trials, "relay_cpu", s, size)
            srch = pick(trials, "relay_search", s, size)
            if not (cpu or srch):
                continue
            out["relay"].setdefault(str(size), {})[s] = {
                "rate": cpu[0]["rate"] if cpu else None,
                "per_cpu_s": stat([dig(t["result"], "relayed_per_cpu_s") for t in cpu]),
                "relayed_per_s": stat([dig(t["result"], "relayed_both_per_s") for t in cpu]),
                "cpu_pct": stat([dig(t["result"], "server_cpu_pct") for t in cpu]),
                "loss_pct": stat([dig(t["result"], "loss_pct") for t in cpu]),
                "lossfree": search_summary(srch),
                "common": efficiency(pick(trials, "relay_cpuc", s, size)),
                "latency_70": latency(pick(trials, "relay_lat", s, size)),
                "latency_common": latency(pick(trials, "relay_latc", s, size)),
            }
        ch = pick(trials, "churn", s)
        if ch:
            out["churn"][s] = {
                "cycles_per_s": stat([dig(t["result"], "cycles_per_s") for t in ch]),
                "per_cpu_s": stat([dig(t["result"], "cycles_per_cpu_s") for t in ch]),
                "cpu_pct": stat([dig(t["result"], "server_cpu_pct") for t in ch]),
                "failed": sum(dig(t["result"], "failed") or 0 for t in ch),
                "failures": [dig(t["result"], "failures") for t in ch],
                "auth_round_trips_per_cycle": med([
                    (dig(t["result"], "auth_round_trips") or 0) / max(dig(t["result"], "cycles") or 1, 1)
                    for t in ch]),
            }
        for t in pick(trials, "memory", s):
            x = t.get("extra", {})
            opened = dig(t["result"], "allocations_opened") or 0
            rss0, rss1 = x.get("rss_before_kb"), x.get("rss_after_kb")
            per = (rss1 - rss0) * 1024 / opened if opened and rss0 is not None and rss1 is not None else None
            out["memory"].setdefault(s, {})[str(x.get("requested"))] = {
                "requested": x.get("requested"),
                "opened": opened,
                "capped_by_nofile": x.get("capped"),
                "rss_before_kb": rss0,
                "rss_after_kb": rss1,
                "bytes_per_allocation": per,
                "setup_s": (dig(t["result"], "setup_ms") or 0) / 1000,
                "setup_failures": dig(t["result"], "setup_failures") or dig(t["result"], "error"),
            }
    return out


# ---------------------------------------------------------------- presentation

def m(x):
    return x["median"] if isinstance(x, dict) else x


def fmt(x, unit=""):
    more = "+" if isinstance(x, dict) and x.get("limited") else ""
    x = m(x)
    if x is None:
        return "–"
    if more:
        return f"{x:,.0f}{unit}{more}"
    if isinstance(x, float) and abs(x) < 100:
        return f"{x:.1f}{unit}"
    return f"{x:,.0f}{unit}"


def ratio(a, b):
    a, b = m(a), m(b)
    if not a or not b:
        return "–"
    return f"{a / b:.2f}x"


def pct(a, b):
    a, b = m(a), m(b)
    if not a or not b:
        return "–"
    return f"{100 * a / b:.0f} %"


def lossfree(x):
    if not x:
        return "–"
    s = fmt(x["rate"])
    return s + (" (generator-limited)" if x.get("generator_limited") else "")


def lat(x):
    if not x:
        return "–"
    return f"{fmt(x['p50_us'])} / {fmt(x['p99_us'])} µs @ {fmt(x['rate'])}/s"


def rows(r):
    """(section, figure, {server: value}, goal, goal check or None, show ratios) rows."""
    out = []

    def add(sec, fig, v, goal="", check=None, ratios=True):
        out.append((sec, fig, v, goal, check, ratios))

    def lat_rows(sec, d, unit):
        for key, what in [("latency_70", "at 70 % of its own loss-free rate"),
                          ("latency_common", "at one common rate (70 % of the lowest loss-free rate)")]:
            if not any((d.get(s) or {}).get(key) for s in SERVERS):
                continue
            rates = {(d.get(s) or {}).get(key, {}).get("rate") for s in SERVERS if (d.get(s) or {}).get(key)}
            at = f", {fmt(rates.pop())} {unit}" if len(rates) == 1 else ""
            for p in ("p50", "p99"):
                add(sec, f"RTT {p} {what}{at}, µs",
                    {s: ((d.get(s) or {}).get(key) or {}).get(f"{p}_us") for s in SERVERS})

    st = r.get("stun", {})
    if st:
        g = lambda s, k: (st.get(s) or {}).get(k)
        add("STUN Binding", "answers per server CPU-second (saturation)",
            {s: g(s, "per_cpu_s") for s in SERVERS}, ">= 3x coturn",
            lambda v: ok(v, "switchboard") >= 3 * ok(v, "coturn") > 0)
        add("STUN Binding", "answers/s at saturation", {s: g(s, "answered_per_s") for s in SERVERS})
        add("STUN Binding", "server CPU at saturation, % of one core",
            {s: g(s, "cpu_pct") for s in SERVERS}, ratios=False)
        add("STUN Binding", "highest loss-free rate (0 % loss), req/s",
            {s: limited(g(s, "lossfree"), 1) for s in SERVERS})
        lat_rows("STUN Binding", st, "req/s")
    for size, per in sorted(r.get("relay", {}).items(), key=lambda kv: int(kv[0])):
        sec = f"TURN relay, ChannelData {size} B"
        g = lambda s, k: (per.get(s) or {}).get(k)
        goal = lambda v: ok(v, "switchboard") >= max(2 * ok(v, "coturn"), 0.8 * ok(v, "forward")) > 0
        add(sec, "highest loss-free rate (<= 0.1 % loss), relayed pkt/s",
            {s: limited(g(s, "lossfree"), 2) for s in SERVERS})
        add(sec, "relayed pkt per server CPU-second at that rate",
            {s: g(s, "per_cpu_s") for s in SERVERS}, ">= 2x coturn, >= 80 % of raw", goal)
        add(sec, "server CPU at that rate, % of one core", {s: g(s, "cpu_pct") for s in SERVERS},
            ratios=False)
        add(sec, "loss at that rate over the rounds, %", {s: g(s, "loss_pct") for s in SERVERS},
            ratios=False)
        com = {s: g(s, "common") or {} for s in SERVERS}
        rates = {c.get("rate") for c in com.values() if c}
        if rates:
            at = f"{2 * rates.pop():,} pkt/s" if len(rates) == 1 else "one rate"
            add(sec, f"relayed pkt per server CPU-second at {at} for all "
                "(90 % of the lowest loss-free rate)",
                {s: com[s].get("per_cpu_s") for s in SERVERS}, ">= 2x coturn, >= 80 % of raw", goal)
            add(sec, "server CPU at that common rate, % of one core",
                {s: com[s].get("cpu_pct") for s in SERVERS}, ratios=False)
            add(sec, "loss at that common rate, %",
                {s: com[s].get("loss_pct") for s in SERVERS}, ratios=False)
        lat_rows(sec, per, "pkt/s client->peer")
    ch = r.get("churn", {})
    if ch:
        add("Allocations", "allocate + release cycles/s",
            {s: (ch.get(s) or {}).get("cycles_per_s") for s in SERVERS}, ">= 20,000/s",
            lambda v: ok(v, "switchboard") >= 20000)
        add("Allocations", "cycles per server CPU-second",
            {s: (ch.get(s) or {}).get("per_cpu_s") for s in SERVERS})
        add("Allocations", "server CPU, % of one core",
            {s: (ch.get(s) or {}).get("cpu_pct") for s in SERVERS}, ratios=False)
    for n in sorted({k for v in r.get("memory", {}).values() for k in v}, key=int):
        mem = {s: r["memory"].get(s, {}).get(n, {}) for s in SERVERS}
        opened = {s: mem[s].get("opened") for s in SERVERS if mem[s]}
        label = f"RSS per idle allocation, {int(n):,} requested, bytes"
        reached = ", ".join(f"{NAMES[s]} {o:,}" for s, o in opened.items() if o != int(n))
        if reached:
            label += f" (opened: {reached})"
        add("Memory", label, {s: mem[s].get("bytes_per_allocation") for s in SERVERS}, "<= 2 KiB",
            lambda v: 0 < ok(v, "switchboard") <= 2048)
    return out


def limited(lf, factor):
    """A search result as a row value: rate x factor, marked when generator-limited."""
    if not lf or not lf.get("rate"):
        return None
    return {"median": factor * lf["rate"], "limited": lf.get("generator_limited")}


def ok(v, s):
    """Median of server `s` in a row, 0 when missing (for goal checks)."""
    return m(v.get(s)) or 0


def markdown(r):
    meta = r.get("meta", {})
    lines = [
        f"Run {meta.get('date', '?')}, {meta.get('threads', '?')} worker thread(s) each, "
        f"kernel {meta.get('kernel', '?')}, {meta.get('cpus', '?')} CPUs, "
        f"switchboard {meta.get('switchboard_version', '?')}, coturn {meta.get('coturn_version', '?')}; "
        f"medians of {meta.get('rounds', '?')} rounds ({meta.get('window_s', '?')} s windows) unless noted.",
        "",
        "| benchmark | figure | Switchboard | coturn | raw forwarder | Switchboard / coturn "
        "| Switchboard / raw | goal | met? |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for sec, fig, v, goal, check, show in rows(r):
        met = "" if check is None else ("yes" if check(v) else "**no**")
        rc = ratio(v.get("switchboard"), v.get("coturn")) if show else ""
        rf = pct(v.get("switchboard"), v.get("forward")) if show else ""
        lines.append(
            f"| {sec} | {fig} | {fmt(v.get('switchboard'))} | {fmt(v.get('coturn'))} | "
            f"{fmt(v.get('forward'))} | {rc} | {rf} | {goal} | {met} |")
    lines += ["", "A `+` marks a search stopped by the load generator (it could not offer the "
              "next step), so the server's limit is higher.", "",
              "Spread (min–max over rounds) of the medians above:", ""]
    for sec, fig, v, _, _, _ in rows(r):
        spread = []
        for s in SERVERS:
            x = v.get(s)
            if isinstance(x, dict) and x.get("n", 0) > 1:
                spread.append(f"{NAMES[s]} {fmt(x['min'])}–{fmt(x['max'])}")
        if spread:
            lines.append(f"- {sec}, {fig}: " + "; ".join(spread))
    lines += ["", "Loss-free searches (rate: verdict, loss %):", ""]
    for sec, data in [("STUN", r.get("stun", {}))] + [
            (f"relay {k} B", v) for k, v in sorted(r.get("relay", {}).items(), key=lambda kv: int(kv[0]))]:
        for s in SERVERS:
            lf = (data.get(s) or {}).get("lossfree")
            if not lf:
                continue
            steps = "; ".join(
                ", ".join(f"{rate:,}: {v}" + (f" {loss}" if loss is not None else "")
                          for rate, v, loss in rnd) for rnd in lf["steps"])
            lines.append(f"- {sec}, {NAMES[s]}: {steps}")
    return "\n".join(lines)


def summary(r):
    out = []
    w = [72, 13, 13, 13, 8, 8]
    out.append(f"{'figure':<{w[0]}}{'switchboard':>{w[1]}}{'coturn':>{w[2]}}{'forward':>{w[3]}}"
               f"{'sb/ct':>{w[4]}}{'sb/raw':>{w[5]}}  goal")
    section = None
    for sec, fig, v, goal, check, show in rows(r):
        if sec != section:
            out.append(f"-- {sec}")
            section = sec
        met = "" if check is None else (" [met]" if check(v) else " [MISSED]")
        rc = ratio(v.get("switchboard"), v.get("coturn")) if show else ""
        rf = pct(v.get("switchboard"), v.get("forward")) if show else ""
        out.append(f"{fig[:w[0] - 1]:<{w[0]}}{fmt(v.get('switchboard')):>{w[1]}}"
                   f"{fmt(v.get('coturn')):>{w[2]}}{fmt(v.get('forward')):>{w[3]}}"
                   f"{rc:>{w[4]}}{rf:>{w[5]}}  {goal}{met}")
    return "\n".join(out)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "get":
        v = dig(result_of(args[0]), args[1])
        print("" if v is None else v)
    elif cmd == "foreign":
        print(f"{foreign_cpu_s(int(args[0])):.2f}")
    elif cmd == "verdict":
        print(verdict(result_of(args[0]), float(args[1]), float(args[2])))
    elif cmd == "record":
        trials, test, server, size, rate, rnd, verd, path = args[:8]
        extra = json.loads(args[8]) if len(args) > 8 else {}
        rec = {"test": test, "server": server, "size": int(size) if size else None,
               "rate": int(float(rate)), "round": int(rnd), "verdict": verd,
               "result": result_of(path), "extra": extra}
        with open(trials, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
    elif cmd == "aggregate":
        meta = json.loads(args[1])
        print(json.dumps(aggregate(load_trials(args[0]), meta), indent=1))
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
