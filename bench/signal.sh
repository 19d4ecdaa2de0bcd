#!/usr/bin/env bash
# Signaling benchmark: Switchboard's /ws vs the PeerJS server (npm `peer`), same load,
# same run, on loopback inside a loopback-only network namespace. See docs/benchmarks.md
# ("Signaling").
#
#   sudo bench/signal.sh                      # ~5 min on 2 cores
#   sudo ROUNDS=1 CLIENTS=4000 bench/signal.sh
#
# Each round starts each server fresh and runs `switchboard-load signal` against it:
# connect CLIENTS clients in pairs (reading the server's RSS at RSS_AT and at CLIENTS),
# hold them, relay RATE msg/s for DURATION s (latency), then saturate for SATURATE s.
# Writes bench/results/signal-<date>.json (medians over ROUNDS) and prints a summary.
# Needs root (netns), python3, node + npm, and release builds of `switchboard` and
# `switchboard-load` (built here unless NO_BUILD=1). Every knob can be set in the
# environment.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbsignal}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-}             # default: as many as the fd limit allows (max 100,000)
RSS_AT=${RSS_AT:-1000,5000,10000} # extra RSS readings on the way to CLIENTS
CONNECT_RATE=${CONNECT_RATE:-4000} # new connections per second
SETTLE_MS=${SETTLE_MS:-1500}     # quiet time before each RSS reading
HOLD=${HOLD:-3}                  # seconds all connections are held before the load phases
RATE=${RATE:-20000}              # relay messages/s in the latency phase (all clients)
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-10}         # recorded seconds of the latency phase
SATURATE=${SATURATE:-10}         # seconds of closed-loop saturation
SAT_PAIRS=${SAT_PAIRS:-0}        # pairs in the saturation phase (0 = all)
WINDOW=${WINDOW:-1}              # messages in flight per saturating pair
SOURCES=${SOURCES:-4}            # client source addresses 127.0.1.1..N
THREADS=${THREADS:-1}            # generator runtime threads
SIGNAL_RATE=${SIGNAL_RATE:-0}    # Switchboard --signal-rate during the run (0 = no limit)
SERVERS=${SERVERS:-"switchboard peerjs"}
FOREIGN_MAX=${FOREIGN_MAX:-10}   # % of a core other processes may use during a run ...
RETRIES=${RETRIES:-2}            # ... else it is repeated up to this many times
QUIET_WAIT=${QUIET_WAIT:-300}    # before each run, wait up to this many seconds for them to go quiet
NOFILE=${NOFILE:-200000}
OUT=${OUT:-$ROOT/bench/results/signal-$(date +%F).json}

SB=${SB:-$ROOT/target/release/switchboard}
LOAD=${LOAD:-$ROOT/target/release/switchboard-load}
NODE_DIR=$ROOT/bench/node
PEERJS=$NODE_DIR/node_modules/peer/dist/bin/peerjs.js
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
REPORT="python3 $ROOT/bench/report.py"
SREPORT="python3 $ROOT/bench/signal_report.py"
X=(ip netns exec "$NS")
IP=127.0.0.1
declare -A PORT=([switchboard]=8080 [peerjs]=9000)

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
command -v node >/dev/null || { echo "node is not installed" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-loadgen)
fi
if [ "${NO_NPM:-0}" != 1 ]; then # the PeerJS server, pinned by bench/node/package-lock.json
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
[ -f "$PEERJS" ] || { echo "PeerJS server not installed ($PEERJS); run npm ci in $NODE_DIR" >&2; exit 1; }

netns_setup sbsignal
TRIALS=$TMP/trials.jsonl
: >"$TRIALS"
SPID=
# More ephemeral ports, and reuse of TIME_WAIT ports between runs (per-namespace sysctls).
"${X[@]}" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
    net.core.somaxconn=4096

# One descriptor per connection in the server and in the generator.
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
CAPPED=false
if [ -z "$CLIENTS" ]; then
    CLIENTS=100000
    if [ "$CLIENTS" -gt $((FD_LIMIT - 200)) ]; then
        CLIENTS=$((FD_LIMIT - 200)); CAPPED=true
    fi
fi
CLIENTS=$((CLIENTS / 2 * 2))

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

start_server() { # name
    local name=$1 port=${PORT[$1]}
    case $name in
    switchboard)
        # Signaling is served on the HTTP listener. --signal-rate: the default (50
        # msg/s per connection) would refuse the saturation phase's closed loop.
        "${X[@]}" "$SB" serve --http-listen "$IP:$port" --listening-ip $IP \
            --listening-port 3478 --threads 1 --metrics-listen off --log warn \
            --signal-rate "$SIGNAL_RATE" </dev/null >"$TMP/switchboard.log" 2>&1 &
        ;;
    peerjs)
        # concurrent_limit defaults to 5000: raise it to the number of clients.
        "${X[@]}" node "$PEERJS" --host $IP --port "$port" --path / \
            --concurrent_limit $((CLIENTS + 100)) </dev/null >"$TMP/peerjs.log" 2>&1 &
        ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    wait_tcp "$port"
    sleep 0.5
}

stop_server() {
    [ -n "$SPID" ] || return 0
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

run_one() { # server round
    local s=$1 r=$2 a f0 f1 t0 t1 foreign res
    for ((a = 0; a <= RETRIES; a++)); do
        wait_quiet
        start_server "$s"
        log "round $r: $s (pid $SPID), $CLIENTS clients"
        f0=$($REPORT foreign $$)
        t0=$(date +%s.%N)
        "${X[@]}" "$LOAD" signal --proto "$s" --server "$IP:${PORT[$s]}" --server-pid "$SPID" \
            --clients "$CLIENTS" --connect-rate "$CONNECT_RATE" --rss-at "$RSS_AT" \
            --settle-ms "$SETTLE_MS" --hold "$HOLD" --rate "$RATE" --warmup "$WARMUP" \
            --duration "$DURATION" --saturate "$SATURATE" --sat-pairs "$SAT_PAIRS" \
            --window "$WINDOW" --loopback-sources "$SOURCES" --threads "$THREADS" \
            >"$TMP/last.out" 2>"$TMP/last.err" || true
        f1=$($REPORT foreign $$)
        t1=$(date +%s.%N)
        local alive=true
        kill -0 "$SPID" 2>/dev/null || alive=false
        stop_server
        cat "$TMP/$s.log" >>"$TMP/$s.all.log" 2>/dev/null || true
        grep -v '^RESULT' "$TMP/last.out" | sed 's/^/    /' >&2
        foreign=$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
        [ "$alive" = true ] || log "  $s DIED during the run (see its log)"
        # Every attempt is kept; the report leaves disturbed ones out when it can.
        local disturbed=false
        awk -v f="$foreign" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f <= m) }' || disturbed=true
        $SREPORT record "$TRIALS" "$s" "$r" "$TMP/last.out" \
            "{\"foreign_cpu_pct\": $foreign, \"disturbed\": $disturbed, \"server_survived\": $alive, \"attempt\": $a}"
        [ "$disturbed" = true ] || return 0
        log "  (other processes used $foreign % of a core during that run; again)"
    done
}

START=$(date +%s)
log "signaling: $CLIENTS clients (fd limit $FD_LIMIT), $ROUNDS rounds, servers: $SERVERS"
for ((r = 1; r <= ROUNDS; r++)); do
    for s in $SERVERS; do
        run_one "$s" "$r"
    done
done

PEER_VERSION=$(node -p "require('$NODE_DIR/node_modules/peer/package.json').version")
META=$(python3 - <<PY
import json, time
print(json.dumps({
    "date": time.strftime("%Y-%m-%d %H:%M", time.localtime($START)),
    "duration_s": int(time.time()) - $START,
    "rounds": $ROUNDS, "clients": $CLIENTS, "clients_capped_by_fd_limit": "$CAPPED" == "true",
    "fd_limit": $FD_LIMIT, "rss_at": "$RSS_AT", "connect_rate": $CONNECT_RATE,
    "hold_s": $HOLD, "rate": $RATE, "warmup_s": $WARMUP, "duration_latency_s": $DURATION,
    "saturate_s": $SATURATE, "sat_pairs": $SAT_PAIRS, "window": $WINDOW,
    "sources": $SOURCES, "generator_threads": $THREADS, "signal_rate": $SIGNAL_RATE,
    "switchboard_version": "$SB_VERSION", "peerjs_version": "$PEER_VERSION",
    "node_version": "$(node --version)", "kernel": "$(uname -r)", "cpus": $(nproc),
}))
PY
)
mkdir -p "$(dirname "$OUT")"
$SREPORT aggregate "$TRIALS" "$META" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$TRIALS" "${OUT%.json}.trials.jsonl"
mkdir -p "${OUT%.json}.logs"
for s in $SERVERS; do cp "$TMP/$s.all.log" "${OUT%.json}.logs/$s.log" 2>/dev/null || true; done
echo
$SREPORT summary "$OUT"
echo
echo "results: $OUT ($(($(date +%s) - START)) s)"
