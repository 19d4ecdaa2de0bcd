#!/usr/bin/env bash
# Cluster benchmark (issue 14): one real redis-server and two Switchboard nodes with
# `--cluster redis://...` (--cluster-placement local), on loopback inside a
# loopback-only network namespace, against a single node without --cluster in the same
# run. See docs/benchmarks.md ("Cluster").
#
#   sudo bench/cluster.sh                          # ~4 min on 2 cores
#   sudo ROUNDS=1 KILLS=2 DURATION=3 bench/cluster.sh
#
# Each round starts everything fresh and measures, with `switchboard-load`:
#   1. relay latency at RATE msg/s (`signal`, latency phase only): single node; both
#      peers of every pair on node A; each pair split over A and B (--server-b);
#   2. joins/s (`joins`): JOINS clients into rooms created through A, joining through
#      A (the owner) and through B (bridged); and on the single node;
#   3. failover (`failover`, KILLS times): rooms owned by A with clients bridged through
#      B; kill -9 A; time until every client has `resumed` on B; A restarted after each.
# Writes bench/results/cluster-<date>.json (medians over ROUNDS; failover over all
# kills) and prints a summary. Needs root (netns), python3, redis-server, and release
# builds of `switchboard` and `switchboard-load` (built here unless NO_BUILD=1). Every
# knob can be set in the environment.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbcluster}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-2000}         # signaling clients (pairs) in the latency runs
CONNECT_RATE=${CONNECT_RATE:-2000}
RATE=${RATE:-20000}              # relay messages/s in the latency phase (all clients)
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-5}          # recorded seconds of the latency phase (short: noisy box)
JOINS=${JOINS:-2000}             # timed joiners per joins run
PER_ROOM=${PER_ROOM:-4}          # joiners per room (plus the room's creator)
INFLIGHT=${INFLIGHT:-32}         # joins in progress at once
KILLS=${KILLS:-2}                # failovers per round
FROOMS=${FROOMS:-20}             # rooms per failover
FBRIDGED=${FBRIDGED:-2}          # clients per room bridged through B
SOURCES=${SOURCES:-4}            # client source addresses 127.0.1.1..N
FOREIGN_MAX=${FOREIGN_MAX:-25}   # % of a core other processes may use during a run, else
                                 # it is marked disturbed (left out of the medians if any
                                 # run of its kind was not)
QUIET_WAIT=${QUIET_WAIT:-60}     # before each run, wait up to this many seconds for them to go quiet
OUT=${OUT:-$ROOT/bench/results/cluster-$(date +%F).json}

SB=${SB:-$ROOT/target/release/switchboard}
LOAD=${LOAD:-$ROOT/target/release/switchboard-load}
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
REPORT="python3 $ROOT/bench/report.py"
CREPORT="python3 $ROOT/bench/cluster_report.py"
X=(ip netns exec "$NS")
IP=127.0.0.1
REDIS_PORT=6379
REDIS=redis://$IP:$REDIS_PORT
declare -A HTTP=([single]=8080 [a]=8081 [b]=8082) TURN=([single]=3478 [a]=3479 [b]=3480)
declare -A NODE_PID=()

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-loadgen)
fi

netns_setup sbcluster
TRIALS=$TMP/trials.jsonl
: >"$TRIALS"
"${X[@]}" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
    net.core.somaxconn=4096
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

start_redis() {
    # No persistence: every round starts from an empty store.
    "${X[@]}" redis-server --bind $IP --port $REDIS_PORT --save '' --appendonly no \
        --daemonize no --loglevel warning </dev/null >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_tcp $REDIS_PORT
}

start_node() { # single|a|b
    local n=$1 cluster=()
    [ "$n" = single ] || cluster=(--cluster "$REDIS" --node-name "node-$n"
        --cluster-placement local)
    # --signal-rate 0: the default (50 msg/s per connection) is a per-client limit, not
    # what is measured here. --sfu-threshold off: signaling only (rooms of 5 stay mesh,
    # and no node binds the SFU's port).
    "${X[@]}" "$SB" serve --http-listen "$IP:${HTTP[$n]}" --listening-ip $IP \
        --listening-port "${TURN[$n]}" --threads 1 --metrics-listen off --log warn \
        --signal-rate 0 --sfu-threshold off "${cluster[@]}" </dev/null >>"$TMP/node-$n.log" 2>&1 &
    NODE_PID[$n]=$!
    PIDS+=("${NODE_PID[$n]}")
    wait_tcp "${HTTP[$n]}"
}

stop_pid() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Wait until node $1 is listed by `switchboard cluster status` (it has registered).
wait_registered() {
    local i
    for i in $(seq 100); do
        "${X[@]}" "$SB" cluster status --cluster "$REDIS" 2>/dev/null | grep -q "node-$1" && return 0
        sleep 0.1
    done
    log "  node-$1 did not show up in cluster status"
}

run_load() { # kind round mode args...
    local kind=$1 r=$2 f0 f1 t0 t1 foreign
    shift 2
    wait_quiet
    f0=$($REPORT foreign $$)
    t0=$(date +%s.%N)
    "${X[@]}" "$LOAD" "$@" >"$TMP/last.out" 2>"$TMP/last.err" || true
    f1=$($REPORT foreign $$)
    t1=$(date +%s.%N)
    foreign=$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" \
        'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
    grep -v '^RESULT' "$TMP/last.out" | sed "s/^/    [$kind] /" >&2
    grep -q '^RESULT' "$TMP/last.out" || sed 's/^/    stderr: /' "$TMP/last.err" | tail -5 >&2
    local disturbed=false
    awk -v f="$foreign" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f <= m) }' || disturbed=true
    [ "$disturbed" = false ] || log "  (other processes used $foreign % of a core during that run)"
    $CREPORT record "$TRIALS" "$kind" "$r" "$TMP/last.out" \
        "{\"foreign_cpu_pct\": $foreign, \"disturbed\": $disturbed}"
}

signal_run() { # kind round server server-b|"" pid [more pids: CPU also reported]
    local kind=$1 r=$2 server=$3 b=() also=()
    [ -z "$4" ] || b=(--server-b "$4")
    local p
    for p in "${@:6}"; do also+=(--also-pid "$p"); done
    run_load "$kind" "$r" signal --proto switchboard --server "$server" "${b[@]}" \
        --server-pid "$5" "${also[@]}" --clients "$CLIENTS" --connect-rate "$CONNECT_RATE" \
        --settle-ms 500 --hold 1 --rate "$RATE" --warmup "$WARMUP" --duration "$DURATION" \
        --saturate 0 --loopback-sources "$SOURCES"
}

joins_run() { # kind round owner server
    run_load "$1" "$2" joins --owner "$3" --server "$4" --clients "$JOINS" \
        --per-room "$PER_ROOM" --inflight "$INFLIGHT" --loopback-sources "$SOURCES"
}

A=$IP:${HTTP[a]}
B=$IP:${HTTP[b]}
S=$IP:${HTTP[single]}
START=$(date +%s)
log "cluster: $ROUNDS rounds, $CLIENTS clients at $RATE msg/s for $DURATION s, $JOINS joins, $KILLS kills per round"
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r: single node"
    start_node single
    signal_run single "$r" "$S" "" "${NODE_PID[single]}"
    joins_run joins_single "$r" "$S" "$S"
    stop_pid "${NODE_PID[single]}"

    log "round $r: redis + nodes a, b"
    start_redis
    start_node a
    start_node b
    wait_registered a
    wait_registered b
    # Alternate the order of same-node and cross-node runs between rounds.
    if ((r % 2)); then order="same cross"; else order="cross same"; fi
    for k in $order; do
        if [ "$k" = same ]; then
            signal_run same_node "$r" "$A" "" "${NODE_PID[a]}" "${NODE_PID[b]}" "$REDIS_PID"
        else
            signal_run cross_node "$r" "$A" "$B" "${NODE_PID[a]}" "${NODE_PID[b]}" "$REDIS_PID"
        fi
    done
    joins_run joins_owner "$r" "$A" "$A"
    joins_run joins_bridged "$r" "$A" "$B"

    for ((k = 1; k <= KILLS; k++)); do
        [ "$k" = 1 ] || { start_node a; wait_registered a; }
        log "round $r: failover $k (kill -9 node a, pid ${NODE_PID[a]})"
        run_load failover "$r" failover --owner "$A" --owner-pid "${NODE_PID[a]}" --via "$B" \
            --rooms "$FROOMS" --bridged "$FBRIDGED"
        wait "${NODE_PID[a]}" 2>/dev/null || true
    done
    stop_pid "${NODE_PID[b]}"
    stop_pid "$REDIS_PID"
    for n in single a b; do cat "$TMP/node-$n.log" >>"$TMP/all-$n.log" 2>/dev/null || true; : >"$TMP/node-$n.log"; done
done

META=$(python3 - <<PY
import json, time
print(json.dumps({
    "date": time.strftime("%Y-%m-%d %H:%M", time.localtime($START)),
    "duration_s": int(time.time()) - $START,
    "rounds": $ROUNDS, "clients": $CLIENTS, "connect_rate": $CONNECT_RATE, "rate": $RATE,
    "warmup_s": $WARMUP, "duration_latency_s": $DURATION, "joins": $JOINS,
    "per_room": $PER_ROOM, "inflight": $INFLIGHT, "kills_per_round": $KILLS,
    "failover_rooms": $FROOMS, "failover_bridged_per_room": $FBRIDGED,
    "sources": $SOURCES, "placement": "local", "foreign_max_pct": $FOREIGN_MAX,
    "switchboard_version": "$SB_VERSION",
    "redis_version": "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')",
    "kernel": "$(uname -r)", "cpus": $(nproc),
}))
PY
)
mkdir -p "$(dirname "$OUT")"
$CREPORT aggregate "$TRIALS" "$META" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$TRIALS" "${OUT%.json}.trials.jsonl"
mkdir -p "${OUT%.json}.logs"
for n in single a b; do cp "$TMP/all-$n.log" "${OUT%.json}.logs/node-$n.log" 2>/dev/null || true; done
echo
$CREPORT summary "$OUT"
echo
echo "results: $OUT ($(($(date +%s) - START)) s)"
