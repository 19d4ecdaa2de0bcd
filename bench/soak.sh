#!/usr/bin/env bash
# Soak: one Switchboard under an hour (or more) of mixed churn, its memory, descriptors
# and live objects sampled every 10 s; a leak shows as growth. See docs/benchmarks.md
# ("Soak").
#
#   sudo bench/soak.sh                       # 60 min of load + the drain, ~65 min
#   sudo DURATION=600 bench/soak.sh          # a 10-minute rehearsal
#
# The load (`switchboard-load soak`): allocations created, refreshed, released and left
# to expire; ChannelData through long-lived allocations to an echo peer; signaling
# sessions joining rooms, exchanging messages, leaving, resuming after a lost
# connection, or vanishing; /api/ice-servers from 254 source addresses. The server runs
# with --max-allocate-lifetime 120 (so abandoned allocations expire within 2 minutes,
# many times over in an hour) and the default 30 s signaling grace. After the load, the
# script waits DRAIN seconds: every allocation and session must then be gone.
#
# Writes bench/results/soak-<date>.csv (the samples) and .json (figures), the plot
# docs/soak.png, and prints the figures and the markdown for docs/benchmarks.md.
# Needs root (netns), python3, gnuplot (gnuplot-nox), and release builds of `switchboard`
# and `switchboard-load` (built here unless NO_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbsoak}
DURATION=${DURATION:-3600}       # seconds of load
DRAIN=${DRAIN:-240}              # seconds after the load (lifetime 120 s + grace 30 s + margin)
SAMPLE=${SAMPLE:-10}             # seconds between samples
PRELOAD=${PRELOAD:-30}           # seconds sampled before the load starts (the idle baseline)
WARMUP_S=${WARMUP_S:-300}        # growth is measured from here on (the issue's 5 minutes)
ALLOC_RATE=${ALLOC_RATE:-5}      # churned allocations per second
MEDIA_ALLOCS=${MEDIA_ALLOCS:-20} # long-lived allocations with ChannelData
MEDIA_PPS=${MEDIA_PPS:-1000}     # ChannelData packets per second, all of them
SESSION_RATE=${SESSION_RATE:-3}  # new signaling sessions per second
ICE_RATE=${ICE_RATE:-2}          # /api/ice-servers requests per second
HEAP_TRIM=${HEAP_TRIM:-60}       # the server's --heap-trim (0: glibc keeps what it freed)
NOFILE=${NOFILE:-65536}
STAMP=${STAMP:-$(date +%F)}
OUT=${OUT:-$ROOT/bench/results/soak-$STAMP}
PLOT=${PLOT:-$ROOT/docs/soak.png}
SB=${SB:-$ROOT/target/release/switchboard}
LOAD=${LOAD:-$ROOT/target/release/switchboard-load}
X=(ip netns exec "$NS")

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
# shellcheck source=bench/soak_server.sh
. "$ROOT/bench/soak_server.sh"
command -v gnuplot >/dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-loadgen)
fi
netns_setup switchboard-soak
mkdir -p "$(dirname "$OUT")"
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
soak_server
SERVER=$SOAK_PID
echo "soak: switchboard pid $SERVER ($("$SB" --version)), load ${DURATION} s, drain ${DRAIN} s, sample every ${SAMPLE} s"

"${X[@]}" python3 "$ROOT/bench/soak_sample.py" --pid "$SERVER" --every "$SAMPLE" \
    --metrics http://127.0.0.1:9641/metrics --out "$OUT.csv" &
SAMPLER=$!
PIDS+=("$SAMPLER")
sleep "$PRELOAD"

"${X[@]}" "$LOAD" soak --server 127.0.0.1:3478 --http 127.0.0.1:8080 --secret soak-secret \
    --duration "$DURATION" --alloc-rate "$ALLOC_RATE" --media-allocs "$MEDIA_ALLOCS" \
    --media-pps "$MEDIA_PPS" --session-rate "$SESSION_RATE" --ice-rate "$ICE_RATE" \
    2>"$TMP/load.log" | tee "$TMP/load.out" | grep '^RESULT' || true
echo "soak: load done; draining ${DRAIN} s"
sleep "$DRAIN"
sleep "$SAMPLE"
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
grep '^RESULT' "$TMP/load.out" | sed 's/^RESULT //' >"$TMP/result.json" || echo '{}' >"$TMP/result.json"
soak_trim_summary soak
if grep -qiE 'panicked|error' "$TMP/server.log"; then
    echo "soak: the server logged errors:" >&2
    grep -iE 'panicked|error' "$TMP/server.log" | head -20 >&2
fi
python3 "$ROOT/bench/soak_report.py" --csv "$OUT.csv" --load "$TMP/result.json" \
    --load-start "$PRELOAD" --warmup "$WARMUP_S" --load-seconds "$DURATION" --plot "$PLOT" --json "$OUT.json" \
    --command "sudo DURATION=$DURATION DRAIN=$DRAIN ALLOC_RATE=$ALLOC_RATE MEDIA_ALLOCS=$MEDIA_ALLOCS MEDIA_PPS=$MEDIA_PPS SESSION_RATE=$SESSION_RATE ICE_RATE=$ICE_RATE HEAP_TRIM=$HEAP_TRIM bench/soak.sh"
