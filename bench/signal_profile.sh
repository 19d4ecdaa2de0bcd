#!/usr/bin/env bash
# Where a signaling server's CPU time goes under the bench/signal.sh load: `perf record
# -g` on the server process during the latency phase (RATE msg/s) and during saturation,
# then `perf report` by DSO and by symbol. Same namespace setup as bench/signal.sh.
#
#   sudo bench/signal_profile.sh                   # Switchboard, 19,800 clients
#   sudo SERVER=peerjs bench/signal_profile.sh     # the PeerJS server (node: JIT frames
#                                                  # show as addresses without perf maps)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbsigprof}
SERVER=${SERVER:-switchboard}
CLIENTS=${CLIENTS:-19800}
RATE=${RATE:-20000}
SECS=${SECS:-8}           # length of each load phase; perf records SECS - 3 s of it
WINDOW=${WINDOW:-1}
SAT_PAIRS=${SAT_PAIRS:-0}
TOP=${TOP:-25}
OUTDIR=${OUTDIR:-$ROOT/bench/results/profile}
SB=$ROOT/target/release/switchboard
LOAD=$ROOT/target/release/switchboard-load
PEERJS=$ROOT/bench/node/node_modules/peer/dist/bin/peerjs.js
X=(ip netns exec "$NS")
# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
IP=127.0.0.1

command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
netns_setup sbsigprof
"${X[@]}" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1 \
    net.core.somaxconn=4096
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUTDIR"

case $SERVER in
switchboard)
    PORT=8080
    "${X[@]}" "$SB" serve --http-listen $IP:$PORT --listening-ip $IP --listening-port 3478 \
        --threads 1 --metrics-listen off --log warn --signal-rate 0 \
        </dev/null >"$TMP/server.log" 2>&1 &
    ;;
peerjs)
    PORT=9000
    "${X[@]}" node --perf-basic-prof "$PEERJS" --host $IP --port $PORT --path / \
        --concurrent_limit $((CLIENTS + 100)) </dev/null >"$TMP/server.log" 2>&1 &
    ;;
*) echo "SERVER must be switchboard or peerjs" >&2; exit 1 ;;
esac
SP=$!
PIDS+=("$SP")
sleep 1.5

"${X[@]}" "$LOAD" signal --proto "$SERVER" --server $IP:$PORT --server-pid "$SP" \
    --clients "$CLIENTS" --connect-rate 4000 --loopback-sources 4 --hold 1 --settle-ms 200 \
    --rate "$RATE" --warmup 0 --duration "$SECS" --saturate "$SECS" --window "$WINDOW" \
    --sat-pairs "$SAT_PAIRS" >"$TMP/load.out" 2>"$TMP/load.err" &
LP=$!
PIDS+=("$LP")

profile() { # name, stderr line that starts the phase
    local name=$1 mark=$2
    until grep -q "$mark" "$TMP/load.err"; do
        kill -0 "$LP" 2>/dev/null || { echo "load generator ended early" >&2; cat "$TMP/load.err" >&2; exit 1; }
        sleep 0.1
    done
    sleep 1
    perf record -q -g -p "$SP" -o "$OUTDIR/signal-$SERVER-$name.data" -- sleep $((SECS - 3)) 2>/dev/null
    echo "== $SERVER, $name"
    perf report -i "$OUTDIR/signal-$SERVER-$name.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -8 || true
    echo "-- top symbols (self)"
    perf report -i "$OUTDIR/signal-$SERVER-$name.data" --no-children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -"$TOP" || true
    echo "-- top symbols (with children)"
    perf report -i "$OUTDIR/signal-$SERVER-$name.data" --children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -"$TOP" || true
}

profile latency "latency:"
profile saturation "saturation:"
wait "$LP" || true
echo "== load generator"
grep -E '^(latency|saturation|connect|memory)' "$TMP/load.out" || true
