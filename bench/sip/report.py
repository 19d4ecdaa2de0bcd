#!/usr/bin/env python3
"""Figures of a bench/sip.sh run (docs/benchmarks.md, "SIP gateway (issue 12)").

  report.py sample PID METRICS_URL                    one JSON line: time, CPU-s, RSS, metrics, nft counters
  report.py held TRIALS SERVER N ROUND IDLE S0 S1 SIPPDIR EXTRA   append one held-load trial
  report.py cps TRIALS RATE ROUND S0 S1 SIPPDIR EXTRA      append one call-rate trial
  report.py aggregate TRIALS META_JSON > out.json     medians per point, and the summary
  report.py markdown out.json > out.md                the tables
  report.py plot out.json out.png                     gnuplot PNG

A sample's CPU-s is utime+stime of /proc/PID/stat (the whole server: SIP, media tasks,
SFU; or rtpengine); packets and losses are the gateway's counters (docs/config.md,
Metrics) and, for both servers, nft counters of the UDP packets to and from the SIPp
phones' media ports (table inet sipbench, set up by bench/sip.sh).
"""
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PTIME_PPS = 50  # 20 ms G.711 packets: what each phone sends and should get per second
LOSS_MAX_PCT = 0.1  # "held with no RTP loss": lost + late under this share of packets
SETUP_P99_MAX_MS = 1000  # a call rate is sustained while 99 % of set-ups take less
CPU_MAX_PCT = 95.0  # ... and the server under one core


def metric_key(name, labels):
    parts = sorted(p.strip() for p in labels.split(",") if p.strip())
    return name + ("{" + ",".join(parts) + "}" if parts else "")


def scrape(url):
    out = {}
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        if not line.startswith(("switchboard_sip", "rtpengine_")):
            continue
        try:
            head, value = line.rsplit(" ", 1)
            if "{" in head:
                name, labels = head.split("{", 1)
                labels = labels.rstrip("}")
            else:
                name, labels = head, ""
            out[metric_key(name, labels)] = float(value)
        except ValueError:
            continue
    return out


def sample(pid, url):
    tick = os.sysconf("SC_CLK_TCK")
    cpu, rss = None, None
    t = time.time()
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            st = f.read()
        fields = st[st.rfind(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    m = scrape(url)
    # The kernel's counters are read at their own time: scraping a busy server can take a while.
    t_nft = time.time()
    print(json.dumps({"t": t, "cpu_s": cpu, "rss_kb": rss, "m": m, "t_nft": t_nft, "nft": nft_counters()}))


def nft_counters():
    """Packets counted by the rules of table inet sipbench, by their comments."""
    try:
        out = subprocess.run(["nft", "-j", "list", "table", "inet", "sipbench"], capture_output=True,
                             text=True, timeout=5).stdout
        items = json.loads(out).get("nftables", [])
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    counts = {}
    for it in items:
        rule = it.get("rule")
        if not rule or "comment" not in rule:
            continue
        for e in rule.get("expr", []):
            if "counter" in e:
                counts[rule["comment"]] = e["counter"]["packets"]
    return counts


def get(s, name, **labels):
    if not s or not s.get("m"):
        return None
    key = metric_key(name, ",".join(f'{k}="{v}"' for k, v in labels.items()))
    return s["m"].get(key)


def delta(s0, s1, name, **labels):
    a, b = get(s0, name, **labels), get(s1, name, **labels)
    return None if a is None or b is None else b - a


def pct(part, whole):
    return round(100 * part / whole, 4) if part is not None and whole else None


def sipp_stats(sippdir):
    """Successful/failed calls (last line of every -trace_stat CSV) and the setup times
    (INVITE -> 200, ms) of every call (-trace_rtt CSVs), over all SIPp processes."""
    ok = failed = created = 0
    for path in glob.glob(f"{sippdir}/*_.csv") + glob.glob(f"{sippdir}/*stat*.csv"):
        try:
            lines = [l.rstrip("\n") for l in open(path, encoding="utf-8", errors="replace") if l.strip()]
        except OSError:
            continue
        if len(lines) < 2:
            continue
        head = lines[0].split(";")
        last = lines[-1].split(";")
        row = dict(zip(head, last))
        try:
            ok += int(row.get("SuccessfulCall(C)", 0))
            failed += int(row.get("FailedCall(C)", 0))
            created += int(row.get("TotalCallCreated", 0))
        except ValueError:
            continue
    setup, done_at = [], []
    for path in glob.glob(f"{sippdir}/*_rtt.csv"):
        for line in open(path, encoding="utf-8", errors="replace"):
            f = line.split(";")
            try:
                # ms since that SIPp's start when the 200 came; the set-up time
                done_at.append(float(f[0]))
                setup.append(float(f[1]))
            except (IndexError, ValueError):
                continue
    setup.sort()
    # Completed set-ups per second: the 200s over the time from the first to the last
    # (the SIPp processes of a sweep point start within milliseconds of each other).
    span = (max(done_at) - min(done_at)) / 1000 if len(done_at) > 1 else 0
    completed = round((len(done_at) - 1) / span, 1) if span > 0 else None

    def q(p):
        return round(setup[min(len(setup) - 1, int(p * len(setup)))], 1) if setup else None

    return {"successful": ok, "failed": failed, "created": created, "setups_per_s": completed,
            "setup_ms_p50": q(0.5), "setup_ms_p99": q(0.99), "setup_ms_max": setup[-1] if setup else None}


def load(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("{"):
                return json.loads(line)
    return None


def nft_delta(s0, s1, name):
    a, b = (s0.get("nft") or {}).get(name), (s1.get("nft") or {}).get(name)
    return None if a is None or b is None else b - a


def held(trials, server, n, rnd, idle, s0, s1, sippdir, extra):
    n = int(n)
    idle, s0, s1 = load(idle), load(s0), load(s1)
    r = {"kind": "held", "server": server, "n": n, "round": int(rnd)}
    r.update(sipp_stats(sippdir))
    if s0 and s1 and s0["cpu_s"] is not None and s1["cpu_s"] is not None:
        dt = s1["t"] - s0["t"]
        cpu = s1["cpu_s"] - s0["cpu_s"]
        expected = n * PTIME_PPS * dt
        # What the SIPp phones sent and got (nft, the same for every server).
        from_phones, to_phones = nft_delta(s0, s1, "from_uac"), nft_delta(s0, s1, "to_uac")
        expected_nft = n * PTIME_PPS * (s1.get("t_nft", s1["t"]) - s0.get("t_nft", s0["t"]))
        r.update({
            "window_s": round(dt, 2),
            "server_cpu_pct": round(100 * cpu / dt, 1),
            "server_cpu_s": round(cpu, 3),
            "phone_in": from_phones, "phone_out": to_phones,
            "phone_in_pct": pct(from_phones, expected_nft),
            "phone_out_pct": pct(to_phones, expected_nft),
            "rss_kb": s1["rss_kb"],
            "rss_per_call_kb": round((s1["rss_kb"] - idle["rss_kb"]) / n, 1)
            if idle and idle.get("rss_kb") and s1.get("rss_kb") else None,
            "us_per_call_tick": round(1e6 * cpu / expected, 1) if n else None,
        })
        if server == "switchboard":
            lost = {leg: delta(s0, s1, "switchboard_sip_media_lost_total", leg=leg) for leg in ("phone", "room")}
            late = {leg: delta(s0, s1, "switchboard_sip_media_late_total", leg=leg) for leg in ("phone", "room")}
            gw = {k: delta(s0, s1, "switchboard_sip_media_packets_total", direction=dirn, leg=leg)
                  for k, leg, dirn in [("gw_phone_in", "phone", "in"), ("gw_phone_out", "phone", "out"),
                                       ("gw_room_in", "room", "in"), ("gw_room_out", "room", "out")]}
            r.update(gw)
            r.update({
                "calls_up_start": get(s0, "switchboard_sip_calls"),
                "calls_up_end": get(s1, "switchboard_sip_calls"),
                "phone_lost": lost["phone"], "phone_late": late["phone"],
                "room_lost": lost["room"], "room_late": late["room"],
                "concealed": delta(s0, s1, "switchboard_sip_media_concealed_total", leg="phone"),
                # The jitter buffers' view: frames the calls never got or got too late.
                "phone_loss_pct": pct((lost["phone"] or 0) + (late["phone"] or 0), gw["gw_phone_in"]),
                "room_loss_pct": pct((lost["room"] or 0) + (late["room"] or 0), gw["gw_room_in"]),
            })
            pkts = (gw["gw_phone_in"] or 0) + (gw["gw_phone_out"] or 0)
        else:
            # rtpengine: the phone's stream comes back through the echo UAS, so what the
            # phones got against what they sent is the loss of both directions.
            from_far, to_far = nft_delta(s0, s1, "from_uas"), nft_delta(s0, s1, "to_uas")
            # Less one packet per call that may be on its way (through rtpengine's
            # transcoder and the echo) at either edge of the window.
            back = None
            if from_phones and to_phones is not None:
                back = round(100 * max(0, from_phones - to_phones - n) / from_phones, 4)
            r.update({
                "calls_up_start": get(s0, "rtpengine_sessions", type="own"),
                "calls_up_end": get(s1, "rtpengine_sessions", type="own"),
                "far_in": from_far, "far_out": to_far,
                "phone_loss_pct": back, "room_loss_pct": back,
                "rtpe_packets": delta(s0, s1, "rtpengine_packets_total", type="userspace"),
                "rtpe_packet_errors": delta(s0, s1, "rtpengine_packet_errors_total", type="userspace"),
            })
            pkts = (from_phones or 0) + (to_phones or 0)
        # Per phone-side packet (in + out): the same count for both servers.
        r["us_per_phone_packet"] = round(1e6 * cpu / pkts, 2) if pkts else None
    r.update(json.loads(extra))
    with open(trials, "a", encoding="utf-8") as f:
        f.write(json.dumps(r) + "\n")


def cps(trials, rate, rnd, s0, s1, sippdir, extra):
    s0, s1 = load(s0), load(s1)
    r = {"kind": "cps", "server": "switchboard", "rate": float(rate), "round": int(rnd)}
    r.update(sipp_stats(sippdir))
    if s0 and s1 and s0["cpu_s"] is not None and s1["cpu_s"] is not None:
        dt = s1["t"] - s0["t"]
        r.update({
            "span_s": round(dt, 2),
            "server_cpu_pct": round(100 * (s1["cpu_s"] - s0["cpu_s"]) / dt, 1),
            "gateway_in": delta(s0, s1, "switchboard_sip_calls_total", outcome="in"),
            "gateway_refused": delta(s0, s1, "switchboard_sip_calls_total", outcome="refused"),
            "flood_dropped": delta(s0, s1, "switchboard_sip_flood_dropped_total"),
        })
    r.update(json.loads(extra))
    with open(trials, "a", encoding="utf-8") as f:
        f.write(json.dumps(r) + "\n")


def median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def aggregate(trials, meta):
    rows = [json.loads(l) for l in open(trials, encoding="utf-8") if l.strip()]

    def group(kind, key):
        groups = {}
        for r in rows:
            if r["kind"] == kind:
                groups.setdefault((r.get("server", "switchboard"), r[key]), []).append(r)
        res = {}
        for (server, k), rs in sorted(groups.items()):
            clean = [r for r in rs if not r.get("disturbed")] or rs
            fields = sorted({f for r in clean for f, v in r.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)} - {key, "round"})
            fig = {f: median([r.get(f) for r in clean]) for f in fields}
            fig["trials"] = len(clean)
            fig["trials_disturbed"] = sum(1 for r in clean if r.get("disturbed"))
            res.setdefault(server, {})[str(int(k) if float(k).is_integer() else k)] = fig
        return res

    out = {"held": group("held", "n"), "cps": group("cps", "rate")}

    def held_ok(n, f):
        return (f.get("calls_up_start") == n and f.get("calls_up_end") == n
                and f.get("failed") == 0
                and f.get("phone_loss_pct") is not None and f["phone_loss_pct"] < LOSS_MAX_PCT
                and f.get("room_loss_pct") is not None and f["room_loss_pct"] < LOSS_MAX_PCT
                and (f.get("phone_out_pct") or 0) >= 99
                and f.get("server_cpu_pct") is not None and f["server_cpu_pct"] < CPU_MAX_PCT)

    summary = {}
    for server, by_n in out["held"].items():
        good = [int(n) for n, f in by_n.items() if held_ok(int(n), f)]
        best = max(good) if good else None
        bf = by_n.get(str(best)) if best else None
        summary[server] = {
            "held_no_loss": best,
            # What one core would hold at the same cost per call (linear estimate).
            "calls_per_core_estimate": round(best * 100 / bf["server_cpu_pct"])
            if bf and bf["server_cpu_pct"] else None,
            "us_per_phone_packet_at_largest": bf["us_per_phone_packet"] if bf else None,
            "us_per_call_tick_at_largest": bf["us_per_call_tick"] if bf else None,
        }
    for server, by_r in out["cps"].items():
        ok = [float(r) for r, f in by_r.items()
              if f.get("failed") == 0 and f.get("successful") and f.get("successful") >= f.get("created", 0) > 0]
        sustained = [float(r) for r in ok
                     if (by_r[str(int(r)) if r.is_integer() else str(r)].get("setup_ms_p99") or 1e9) < SETUP_P99_MAX_MS]
        rates = [f.get("setups_per_s") for f in by_r.values() if f.get("setups_per_s")]
        summary.setdefault(server, {}).update({
            "cps_no_failures": max(ok) if ok else None,
            "cps_sustained": max(sustained) if sustained else None,
            "setups_per_s_max": max(rates) if rates else None,
        })
    print(json.dumps({"meta": json.loads(meta), "results": out, "summary": summary}, indent=1))


def fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}"


WHAT = {
    "switchboard": "Switchboard: G.711 -> Opus (8 -> 48 kHz) into the room's SFU over DTLS-SRTP; "
                   "the room's Opus decoded, mixed, G.711 back to the phone",
    "rtpengine-opus": "rtpengine (userspace) transcoding PCMU <-> Opus between the phone and an echo far end",
    "rtpengine-relay": "rtpengine (userspace, --table=-1) relaying PCMU between the phone and an echo far end",
}


def markdown(path):
    d = json.load(open(path, encoding="utf-8"))
    m, res = d["meta"], d["results"]
    print(f"SIP run of {m['date']} ({m['duration_s']} s): servers on core {m['server_core']}, SIPp "
          f"{m['sipp_version']} (and kamailio for rtpengine) on core {m['load_core']}; medians of "
          f"{m['rounds']} round(s); calls ramped at {m['ramp_cps']} calls/s, then {m['warmup_s']} s of "
          f"warm-up and a {m['window_s']} s window. Switchboard {m['switchboard_version']}, "
          f"rtpengine {m.get('rtpengine_version', '–')}.")
    print()
    for server in res["held"]:
        print(f"- {server}: {WHAT.get(server, server)}.")
    print()
    print("| server | concurrent calls | up at start / end | server CPU % | µs CPU per phone packet "
          "| µs CPU per call per 20 ms | phone pkt sent / got (% of 50/s per call) | lost + late % "
          "| RSS MiB (per call KiB) | setup p50 / p99 ms | failed | rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for server, by_n in res["held"].items():
        for n in sorted(by_n, key=int):
            f = by_n[n]
            rss = f.get("rss_kb")
            loss = f"{fmt(f.get('phone_loss_pct'), 3)}"
            if server == "switchboard":
                loss += f" / {fmt(f.get('room_loss_pct'), 3)}"
            print(f"| {server} | {n} | {fmt(f.get('calls_up_start'), 0)} / {fmt(f.get('calls_up_end'), 0)} "
                  f"| {fmt(f.get('server_cpu_pct'))} | {fmt(f.get('us_per_phone_packet'), 1)} "
                  f"| {fmt(f.get('us_per_call_tick'), 0)} "
                  f"| {fmt(f.get('phone_in_pct'))} / {fmt(f.get('phone_out_pct'))} "
                  f"| {loss} "
                  f"| {fmt(rss / 1024 if rss else None)} ({fmt(f.get('rss_per_call_kb'), 0)}) "
                  f"| {fmt(f.get('setup_ms_p50'), 0)} / {fmt(f.get('setup_ms_p99'), 0)} "
                  f"| {fmt(f.get('failed'), 0)} | {f['trials']} |")
    cps_rows = res["cps"].get("switchboard", {})
    if cps_rows:
        print()
        print(f"Call rate (Switchboard): {m['cps_secs']} s of calls at each rate from {m['sipp_procs']} SIPp "
              f"processes (own source addresses: the gateway takes at most 200 SIP messages a second per "
              f"address), {m['cps_hold_ms']} ms calls, two per room.")
        print()
        print("| offered calls/s | created | successful | failed | completed set-ups/s | setup p50 / p99 / max ms "
              "| server CPU % | refused by the gateway | flood-dropped messages | rounds |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in sorted(cps_rows, key=float):
            f = cps_rows[r]
            print(f"| {r} | {fmt(f.get('created'), 0)} | {fmt(f.get('successful'), 0)} | {fmt(f.get('failed'), 0)} "
                  f"| {fmt(f.get('setups_per_s'), 0)} | {fmt(f.get('setup_ms_p50'), 0)} / {fmt(f.get('setup_ms_p99'), 0)} / {fmt(f.get('setup_ms_max'), 0)} "
                  f"| {fmt(f.get('server_cpu_pct'))} | {fmt(f.get('gateway_refused'), 0)} "
                  f"| {fmt(f.get('flood_dropped'), 0)} | {f['trials']} |")
    print()
    for server, s in d["summary"].items():
        line = (f"- {server}: held with no RTP loss (every call up through the window, lost + late < "
                f"{LOSS_MAX_PCT} %, ≥ 99 % of the phones' packets delivered, server < {CPU_MAX_PCT:.0f} % of "
                f"its core): {fmt(s.get('held_no_loss'), 0)} calls; one core at that cost per call: "
                f"~{fmt(s.get('calls_per_core_estimate'), 0)} calls; CPU per phone packet (in + out) "
                f"{fmt(s.get('us_per_phone_packet_at_largest'), 1)} µs, per call per 20 ms "
                f"{fmt(s.get('us_per_call_tick_at_largest'), 0)} µs")
        if server in res["cps"]:
            line += (f"; call rate sustained (no failed call, set-up p99 < {SETUP_P99_MAX_MS} ms): "
                     f"{fmt(s.get('cps_sustained'))} calls/s offered; most set-ups completed per second: "
                     f"{fmt(s.get('setups_per_s_max'))}; highest offered rate with no failed call: "
                     f"{fmt(s.get('cps_no_failures'))}")
        print(line + ".")


def plot(path, png):
    d = json.load(open(path, encoding="utf-8"))
    res = d["results"]
    if not res["held"]:
        sys.exit("no held-load points to plot")
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb = [], []
        for server, by_n in res["held"].items():
            dat = f"{tmp}/{server}.dat"
            with open(dat, "w", encoding="utf-8") as f:
                for n in sorted(by_n, key=int):
                    g = by_n[n]
                    vals = [g.get("server_cpu_pct"), g.get("us_per_phone_packet")]
                    f.write(f"{n} " + " ".join("NaN" if v is None else str(v) for v in vals) + "\n")
            pa.append(f'"{dat}" using 1:2 with linespoints lw 2 title "{server}"')
            pb.append(f'"{dat}" using 1:3 with linespoints lw 2 title "{server}"')
        cps_rows = res["cps"].get("switchboard", {})
        with open(f"{tmp}/cps.dat", "w", encoding="utf-8") as f:
            for r in sorted(cps_rows, key=float):
                g = cps_rows[r]
                vals = [g.get("setup_ms_p50"), g.get("setup_ms_p99"), g.get("failed")]
                f.write(f"{r} " + " ".join("NaN" if v is None else str(v) for v in vals) + "\n")
        cps_plot = ""
        if cps_rows:
            cps_plot = f"""
set title "Switchboard: call set-up"
set xlabel "offered calls per second"
set ylabel "set-up time INVITE -> 200, ms"
set y2label "failed calls"
set y2tics
set y2range [0:*]
set logscale y
set yrange [*:*]
plot "{tmp}/cps.dat" using 1:2 with linespoints lw 2 title "p50", \\
     "{tmp}/cps.dat" using 1:3 with linespoints lw 2 title "p99", \\
     "{tmp}/cps.dat" using 1:4 axes x1y2 with impulses lw 4 title "failed"
"""
        gp = f"""
set terminal pngcairo size 1400,460 font ",10"
set output "{png}"
set multiplot layout 1,{3 if cps_rows else 2} title "SIP: SIPp G.711 calls (20 ms), server pinned to one core"
set key top left
set grid
set xlabel "concurrent calls"
set ylabel "server CPU, % of one core"
set yrange [0:*]
plot {", ".join(pa)}
set ylabel "server CPU-µs per phone RTP packet (in + out)"
set logscale y
set yrange [*:*]
plot {", ".join(pb)}
unset logscale y
{cps_plot}
unset multiplot
"""
        subprocess.run(["gnuplot"], input=gp, text=True, check=True)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "sample":
        sample(sys.argv[2], sys.argv[3])
    elif cmd == "held":
        held(*sys.argv[2:11])
    elif cmd == "cps":
        cps(*sys.argv[2:9])
    elif cmd == "aggregate":
        aggregate(sys.argv[2], sys.argv[3])
    elif cmd == "markdown":
        markdown(sys.argv[2])
    elif cmd == "plot":
        plot(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
