#!/usr/bin/env bash
# Where the soak's heap goes: the server under heaptrack, the soak's churn at ten times
# its rates for LOAD seconds (as many events as ~80 minutes of bench/soak.sh), then the
# drain, then SIGKILL, so that what heaptrack reports as "leaked" is exactly what was
# still live after every allocation and session had ended. See docs/benchmarks.md
# ("Soak").
#
#   sudo bench/soak_heap.sh                  # ~12 minutes
#   sudo LOAD=120 DRAIN=160 bench/soak_heap.sh
#
# Prints the heap in use every 30 s (a leak grows with the events; capacity reaches a
# plateau) and the call sites holding the most memory at the end. Needs root (netns),
# heaptrack (apt-get install heaptrack) and release builds (built here unless NO_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbheap}
LOAD=${LOAD:-480}
DRAIN=${DRAIN:-200}          # lifetime 120 s + grace 30 s + margin
HEAP_TRIM=${HEAP_TRIM:-60}
OUT=${OUT:-$ROOT/bench/results/soak-heap-$(date +%F)}
SB=${SB:-$ROOT/target/release/switchboard}
LOADGEN=${LOADGEN:-$ROOT/target/release/switchboard-load}
X=(ip netns exec "$NS")

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
# shellcheck source=bench/soak_server.sh
. "$ROOT/bench/soak_server.sh"
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-loadgen)
fi
netns_setup switchboard-heap
mkdir -p "$(dirname "$OUT")"

soak_server heaptrack -o "$TMP/heap"
server=$SOAK_PID
echo "soak_heap: switchboard pid $server under heaptrack; ${LOAD} s of churn at 10x the soak's rates, drain ${DRAIN} s"
"${X[@]}" "$LOADGEN" soak --server 127.0.0.1:3478 --http 127.0.0.1:8080 --secret soak-secret \
    --duration "$LOAD" --alloc-rate 50 --media-allocs 20 --media-pps 1000 --session-rate 30 \
    --ice-rate 20 2>"$TMP/load.log" | grep '^RESULT' | sed 's/^RESULT //' >"$OUT.load.json" || true
sleep "$DRAIN"
"${X[@]}" python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9641/metrics", timeout=5).read().decode())' \
    | grep -E '^switchboard_(allocations|signal_sessions|signal_connections|signal_rooms) ' || true
soak_trim_summary soak_heap
kill -9 "$server"
sleep 2
heaptrack_print -f "$TMP/heap.zst" -M "$TMP/massif.out" --massif-threshold 1 >/dev/null 2>&1
heaptrack_print -f "$TMP/heap.zst" --print-leaks 1 -n 12 -s 30 >"$TMP/report.txt" 2>&1
{
    echo "heap in use (bytes), every 30 s from the start:"
    grep -E '^(time|mem_heap_B)=' "$TMP/massif.out" | paste - - \
        | awk -F'[=\t]' '{ t = int($2 / 30); if (!(t in seen)) { seen[t] = 1; printf "  %4d s  %9d\n", $2, $4 } }'
    echo "still live after the drain, by call site (first frames in crates/):"
    sed -n '/^MEMORY LEAKS/,/^MOST TEMPORARY/p' "$TMP/report.txt" \
        | awk '/leaked over [0-9]+ calls from:$/ { if (site != "") print "  " site "\n    (no frame in crates/)"; site = ""; if (n++ < 12) site = $0; next }
               site != "" && /at crates\// { print "  " site "\n    " $0; site = "" }'
} | tee "$OUT.txt"
echo "soak_heap: wrote $OUT.txt"
