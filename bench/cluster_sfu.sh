#!/usr/bin/env bash
# SFU forwarding cost of a room that spans two nodes (issue 14) against the same room on
# one node, same run, in a loopback-only network namespace. See docs/benchmarks.md
# ("Cluster: a spanning SFU room").
#
#   sudo bench/cluster_sfu.sh                      # ~4 min on 2 cores
#   sudo ROUNDS=1 SUBS=20 DURATION=5 bench/cluster_sfu.sh
#
# Each round, with `switchboard-sfu-load` (PUBLISHERS publishers of synthetic VP8 at
# VIDEO_KBPS + Opus, SUBS subscribers, one room, a DURATION s window):
#   1. single: one node without --cluster; everyone signals to it and uses its SFU;
#   2. spanning: a redis-server and nodes a and b (--cluster); the publishers signal to
#      a (the room's node), the subscribers to b and use b's SFU edge (`SFU@node-b`),
#      so every track crosses the node link a -> b once and b forwards it to each
#      subscriber.
# Reported per run: packets the subscribers received per CPU-second of the server
# processes (single: the node; spanning: a + b, Redis apart), the subscribers' delivery,
# and, spanning, the link's packets (b's `switchboard_sfu_link_packets_total{dir="in"}`).
# Each node runs one SFU worker thread. Writes bench/results/cluster-sfu-<date>.json
# (all runs and medians) and prints a summary. Needs root (netns), python3, redis-server
# and release builds of `switchboard` and `switchboard-sfu-load` (built here unless
# NO_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
PUBLISHERS=${PUBLISHERS:-1}
SUBS=${SUBS:-50}
VIDEO_KBPS=${VIDEO_KBPS:-1200}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-15}
OUT=${OUT:-$ROOT/bench/results/cluster-sfu-$(date +%F).json}
SB=${SB:-$ROOT/target/release/switchboard}
LOAD=${LOAD:-$ROOT/target/release/switchboard-sfu-load}
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
NS=${NS:-sbclsfu}
X=(ip netns exec "$NS")
FOREIGN_MAX=${FOREIGN_MAX:-25}   # % of a core other processes may use before a run (wait_quiet)
QUIET_WAIT=${QUIET_WAIT:-60}
REPORT="python3 $ROOT/bench/report.py"
IP=127.0.0.1
REDIS_PORT=6379
declare -A HTTP=([single]=8080 [a]=8081 [b]=8082) TURN=([single]=3478 [a]=3479 [b]=3477)
declare -A SFU=([single]=3480 [a]=3481 [b]=3482) METRICS=([single]=9640 [a]=9641 [b]=9642)
declare -A NODE_PID=()

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-sfu-load)
fi
netns_setup sbclsfu
RUNS=$TMP/runs.jsonl
: >"$RUNS"
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

start_node() { # single|a|b
    local n=$1 cluster=()
    [ "$n" = single ] || cluster=(--cluster "redis://$IP:$REDIS_PORT" --node-name "node-$n"
        --cluster-placement local)
    "${X[@]}" "$SB" serve --http-listen "$IP:${HTTP[$n]}" --listening-ip $IP \
        --listening-port "${TURN[$n]}" --threads 1 --metrics-listen "$IP:${METRICS[$n]}" \
        --log warn --signal-rate 0 --sfu-threshold 0 --sfu-threads 1 \
        --sfu-port "${SFU[$n]}" --sfu-candidate $IP --sfu-room-capacity 10000 \
        "${cluster[@]}" </dev/null >>"$TMP/node-$n.log" 2>&1 &
    NODE_PID[$n]=$!
    PIDS+=("${NODE_PID[$n]}")
    wait_tcp "${HTTP[$n]}"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

run() { # kind round sub-url sub-sfu pids...
    local kind=$1 r=$2 sub_url=$3 sub_sfu=$4 metrics=$5 pid_args=() p
    shift 5
    for p in "$@"; do pid_args+=(--server-pid "$p"); done
    local extra=()
    [ -z "$sub_url" ] || extra+=(--sub-url "$sub_url")
    [ -z "$sub_sfu" ] || extra+=(--sub-sfu "$sub_sfu")
    wait_quiet
    "${X[@]}" "$LOAD" --target switchboard --url "ws://$IP:${PUB_HTTP}/ws" --room "span$r" \
        --publishers "$PUBLISHERS" --subscribers "$SUBS" --video-kbps "$VIDEO_KBPS" \
        --warmup "$WARMUP" --duration "$DURATION" "${pid_args[@]}" "${extra[@]}" \
        --metrics-url "http://$IP:${METRICS[$metrics]}/metrics" \
        >"$TMP/last.out" 2>"$TMP/last.err" || true
    if ! grep -q '^{' "$TMP/last.out"; then
        log "  $kind run $r failed:"; tail -5 "$TMP/last.err" >&2
        return
    fi
    python3 - "$kind" "$r" "$TMP/last.out" >>"$RUNS" <<'PY'
import json, sys
kind, rnd, path = sys.argv[1:4]
res = json.loads([l for l in open(path) if l.startswith('{')][-1])
print(json.dumps({"kind": kind, "round": int(rnd), "result": res}))
PY
    python3 - "$RUNS" <<'PY' >&2
import json, sys
t = [json.loads(l) for l in open(sys.argv[1])][-1]
r = t["result"]
w = r.get("window") or {}
print(f"  {t['kind']}: {r.get('fwd_pkt_per_cpu_s')} pkt per server CPU-s, server CPU {r.get('server_cpu_pct')} %, "
      f"delivery {r.get('delivery_pct')} %, subscribers got {w.get('rx_packets')} packets, "
      f"publishers sent {w.get('sent_packets')}, link relayed in {(r.get('server_counters') or {}).get('link_packets_in')}")
PY
}

START=$(date +%s)
log "cluster SFU: $ROUNDS rounds, $PUBLISHERS publisher(s) at $VIDEO_KBPS kbit/s, $SUBS subscribers, $DURATION s windows"
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r: single node"
    start_node single
    PUB_HTTP=${HTTP[single]}
    run single "$r" "" "" single "${NODE_PID[single]}"
    stop_pid "${NODE_PID[single]}"

    log "round $r: redis + nodes a (the room's) and b (the subscribers')"
    "${X[@]}" redis-server --bind $IP --port $REDIS_PORT --save '' --appendonly no \
        --daemonize no --loglevel warning </dev/null >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_tcp $REDIS_PORT
    start_node a
    start_node b
    sleep 1.5 # both registered (heartbeat every second)
    PUB_HTTP=${HTTP[a]}
    run spanning "$r" "ws://$IP:${HTTP[b]}/ws" "SFU@node-b" b "${NODE_PID[a]}" "${NODE_PID[b]}"
    stop_pid "${NODE_PID[a]}"
    stop_pid "${NODE_PID[b]}"
    stop_pid "$REDIS_PID"
done

mkdir -p "$(dirname "$OUT")"
python3 - "$RUNS" "$OUT" <<PY
import json, statistics, sys, time
runs = [json.loads(l) for l in open(sys.argv[1])]
def med(kind, f):
    xs = [f(t) for t in runs if t["kind"] == kind and f(t) is not None]
    return statistics.median(xs) if xs else None
fig = lambda k: lambda t: t["result"].get(k)
summary = {kind: {
    "fwd_pkt_per_cpu_s": med(kind, fig("fwd_pkt_per_cpu_s")),
    "server_cpu_pct": med(kind, fig("server_cpu_pct")),
    "delivery_pct": med(kind, fig("delivery_pct")),
    "rx_pkt_per_s": med(kind, lambda t: (t["result"].get("window") or {}).get("rx_pkt_per_s")),
    "sent_packets": med(kind, lambda t: (t["result"].get("window") or {}).get("sent_packets")),
    "link_packets_in": med(kind, lambda t: (t["result"].get("server_counters") or {}).get("link_packets_in")),
} for kind in ["single", "spanning"]}
s, p = summary["single"]["fwd_pkt_per_cpu_s"], summary["spanning"]["fwd_pkt_per_cpu_s"]
out = {"date": time.strftime("%Y-%m-%d %H:%M", time.localtime($START)),
       "rounds": $ROUNDS, "publishers": $PUBLISHERS, "subscribers": $SUBS,
       "video_kbps": $VIDEO_KBPS, "duration_s": $DURATION, "switchboard_version": "$SB_VERSION",
       "cpus": $(nproc), "kernel": "$(uname -r)",
       "summary": summary, "spanning_over_single": round(p / s, 3) if s and p else None,
       "runs": runs}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps({"summary": summary, "spanning_over_single": out["spanning_over_single"]}, indent=1))
PY
log "results: $OUT"
