#!/usr/bin/env python3
"""Helpers for bench/cluster.sh and the "Cluster" tables in docs/benchmarks.md (stdlib only).

  cluster_report.py record TRIALS KIND ROUND FILE [EXTRA_JSON]   append one run
  cluster_report.py aggregate TRIALS META_JSON   -> results JSON (stdout)
  cluster_report.py summary RESULTS_JSON         plain-text summary
  cluster_report.py markdown RESULTS_JSON        markdown tables for docs/benchmarks.md

Kinds: `single`, `same_node`, `cross_node` (`switchboard-load signal`, latency phase),
`joins_single`, `joins_owner`, `joins_bridged` (`joins`), `failover` (`failover`, one
per kill). Signal and joins figures are medians over the rounds, failover figures
medians over the kills (spread in the JSON).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import dig, fmt, load_trials, m, result_of, stat  # noqa: E402

LATENCY = ["single", "same_node", "cross_node"]
JOINS = ["joins_single", "joins_owner", "joins_bridged"]
NAMES = {
    "single": "single node (no --cluster)",
    "same_node": "cluster, both peers on node A",
    "cross_node": "cluster, peers on A and B",
    "joins_single": "single node (no --cluster)",
    "joins_owner": "cluster, through the owner (A)",
    "joins_bridged": "cluster, through the other node (B)",
}


def record(path, kind, rnd, out_file, extra):
    res = result_of(out_file)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, "round": int(rnd), "result": res,
                            "extra": json.loads(extra) if extra else {}}) + "\n")


def ok_runs(trials, kind):
    """Runs of one kind; those disturbed by other processes only if all were."""
    ts = [t for t in trials if t["kind"] == kind and t.get("result")
          and not t["result"].get("error")]
    calm = [t for t in ts if not t.get("extra", {}).get("disturbed")]
    return [t["result"] for t in (calm or ts)]


def latency_figures(res):
    lat = res.get("latency") or {}
    return {
        "p50_us": dig(lat, "one_way_us.p50"),
        "p99_us": dig(lat, "one_way_us.p99"),
        "p999_us": dig(lat, "one_way_us.p999"),
        "received_per_s": lat.get("received_per_s"),
        "lost": lat.get("lost"),
        "node_a_cpu_pct": lat.get("server_cpu_pct"),
        # Node A + node B + Redis (the single node alone without a cluster).
        "all_cpu_pct": sum(x for x in [lat.get("server_cpu_pct")] + (lat.get("also_cpu_pct") or [])
                           if isinstance(x, (int, float))),
        "paired": dig(res, "connect.paired"),
        "clients": res.get("clients"),
    }


def joins_figures(res):
    return {
        "joins_per_s": res.get("joins_per_s"),
        "connect_to_joined_p50_ms": dig(res, "connect_to_joined_ms.p50"),
        "connect_to_joined_p99_ms": dig(res, "connect_to_joined_ms.p99"),
        "join_to_joined_p50_ms": dig(res, "join_to_joined_ms.p50"),
        "join_to_joined_p99_ms": dig(res, "join_to_joined_ms.p99"),
        "joined": res.get("joined"),
        "failed": res.get("failed"),
    }


def failover_figures(res):
    return {
        "bridged_closed_p50_ms": dig(res, "bridged.kill_to_closed_ms.p50"),
        "bridged_resumed_p50_ms": dig(res, "bridged.kill_to_resumed_ms.p50"),
        "bridged_resumed_max_ms": dig(res, "bridged.kill_to_resumed_ms.max"),
        "owner_clients_resumed_p50_ms": dig(res, "owner_clients.kill_to_resumed_ms.p50"),
        "owner_clients_resumed_max_ms": dig(res, "owner_clients.kill_to_resumed_ms.max"),
        "all_resumed_ms": res.get("all_resumed_ms"),
        "clients": res.get("clients"),
        "resumed": res.get("resumed"),
        "gave_up": res.get("gave_up"),
        "gaps": res.get("gaps"),
        "peer_left_after_kill": res.get("peer_left_after_kill"),
        "sent_after": dig(res, "after.sent"),
        "delivered_after": dig(res, "after.delivered"),
    }


def medians(runs, figures):
    per = [figures(r) for r in runs]
    keys = per[0].keys() if per else []
    return {k: stat([p[k] for p in per]) for k in keys}, per


def aggregate(trials, meta):
    out = {"meta": meta, "latency": {}, "joins": {}, "failover": None, "runs": {}}
    errors = [{"kind": t["kind"], "round": t["round"],
               "error": (t.get("result") or {}).get("error", "no RESULT line")}
              for t in trials if not t.get("result") or t["result"].get("error")]
    for kind in LATENCY:
        out["latency"][kind], out["runs"][kind] = medians(ok_runs(trials, kind),
                                                          latency_figures)
    for kind in JOINS:
        out["joins"][kind], out["runs"][kind] = medians(ok_runs(trials, kind), joins_figures)
    fo, out["runs"]["failover"] = medians(ok_runs(trials, "failover"), failover_figures)
    totals = {k: sum(p.get(k) or 0 for p in out["runs"]["failover"])
              for k in ["clients", "resumed", "gave_up", "gaps", "peer_left_after_kill",
                        "sent_after", "delivered_after"]}
    out["failover"] = {"kills": len(out["runs"]["failover"]), "per_kill": fo,
                       "totals": totals}
    out["meta"]["foreign_cpu_pct"] = stat([t.get("extra", {}).get("foreign_cpu_pct")
                                          for t in trials])
    out["meta"]["disturbed_runs"] = {
        k: sum(1 for t in trials if t["kind"] == k and t.get("extra", {}).get("disturbed"))
        for k in LATENCY + JOINS + ["failover"]}
    out["meta"]["runs_used"] = {k: len(out["runs"][k]) for k in out["runs"]}
    out["errors"] = errors
    return out


def whole(x):
    """The median (or value) rounded to an integer: counts and µs need no decimals."""
    v = m(x)
    return None if v is None else round(v)


def us(x):
    return fmt(whole(x), " µs")


def ms(x):
    return fmt(x, " ms")


def latency_rows(r):
    rows = []
    for kind in LATENCY:
        d = r["latency"].get(kind) or {}
        if not d:
            continue
        rows.append([NAMES[kind], us(d.get("p50_us")), us(d.get("p99_us")),
                     us(d.get("p999_us")), fmt(whole(d.get("received_per_s"))), fmt(whole(d.get("lost"))),
                     fmt(d.get("node_a_cpu_pct"), " %"), fmt(d.get("all_cpu_pct"), " %")])
    return ["where the two peers are", "one-way p50", "p99", "p99.9", "received/s", "lost",
            "node A CPU", "A + B + Redis CPU"], rows


def joins_rows(r):
    rows = []
    for kind in JOINS:
        d = r["joins"].get(kind) or {}
        if not d:
            continue
        rows.append([NAMES[kind], fmt(d.get("joins_per_s")),
                     ms(d.get("join_to_joined_p50_ms")), ms(d.get("join_to_joined_p99_ms")),
                     ms(d.get("connect_to_joined_p50_ms")), fmt(whole(d.get("failed")))])
    return ["joining", "joins/s", "join→joined p50", "p99", "connect→joined p50",
            "failed"], rows


def failover_rows(r):
    f = r["failover"]
    d, t = f["per_kill"], f["totals"]
    if not d:
        return ["figure", "value"], []
    return ["figure (median over kills)", "value"], [
        ["kill -9 → bridged clients' connection closed (1012)", ms(d["bridged_closed_p50_ms"])],
        ["kill -9 → bridged clients `resumed`, median", ms(d["bridged_resumed_p50_ms"])],
        ["kill -9 → bridged clients `resumed`, slowest", ms(d["bridged_resumed_max_ms"])],
        ["kill -9 → the dead node's own clients `resumed` on B, median",
         ms(d["owner_clients_resumed_p50_ms"])],
        ["kill -9 → every client back", ms(d["all_resumed_ms"])],
        ["kills", str(f["kills"])],
        ["clients resumed / in all kills", f"{t['resumed']:,} / {t['clients']:,}"],
        ["`resumed` with `gap: true`", f"{t['gaps']:,}"],
        ["`peer-left` seen after the kill", f"{t['peer_left_after_kill']:,}"],
        ["messages after the failover delivered / sent",
         f"{t['delivered_after']:,} / {t['sent_after']:,}"],
    ]


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown(r):
    meta = r["meta"]
    parts = [
        f"Run {meta['date']} ({meta['duration_s']} s), Switchboard {meta['switchboard_version']}, "
        f"Redis {meta['redis_version']}, {meta['rounds']} rounds, kernel {meta['kernel']}, "
        f"{meta['cpus']} CPUs; other processes used a median "
        f"{fmt(dig(meta, 'foreign_cpu_pct.median'))} % of a core during the runs "
        f"(max {fmt(dig(meta, 'foreign_cpu_pct.max'))} %); runs where they used more than "
        f"{meta.get('foreign_max_pct')} % are left out when a calm run of the same kind "
        f"exists (runs used: {meta.get('runs_used')}).",
        "",
        f"Relay latency, {meta['clients']:,} clients in pairs, {meta['rate']:,} msg/s for "
        f"{meta['duration_latency_s']} s (medians of the rounds):",
        "",
        table(*latency_rows(r)),
        "",
        f"Joins, {meta['joins']:,} clients, {meta['per_room']} per room, "
        f"{meta['inflight']} at once, rooms created through A first (medians of the rounds):",
        "",
        table(*joins_rows(r)),
        "",
        f"Failover, {meta['failover_rooms']} rooms x (1 client on A + "
        f"{meta['failover_bridged_per_room']} bridged through B) per kill:",
        "",
        table(*failover_rows(r)),
    ]
    if r.get("errors"):
        parts += ["", "Runs that failed: " + "; ".join(
            f"{e['kind']} round {e['round']}: {e['error']}" for e in r["errors"])]
    return "\n".join(parts)


def summary(r):
    out = []
    for head, rows in [latency_rows(r), joins_rows(r), failover_rows(r)]:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)] if rows else []
        for row in [head] + rows:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        out.append("")
    if r.get("errors"):
        out.append(f"failed runs: {r['errors']}")
    return "\n".join(out)


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "record":
        record(args[0], args[1], args[2], args[3], args[4] if len(args) > 4 else "")
    elif cmd == "aggregate":
        print(json.dumps(aggregate(load_trials(args[0]), json.loads(args[1])), indent=1))
    elif cmd in ("summary", "markdown"):
        with open(args[0], encoding="utf-8") as f:
            r = json.load(f)
        print(summary(r) if cmd == "summary" else markdown(r))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
