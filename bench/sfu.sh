#!/usr/bin/env bash
# SFU benchmark: Janus VideoRoom 1.1.2 (Debian `janus`) and Switchboard's SFU under the
# same load, same run, in a network namespace. See docs/benchmarks.md ("SFU (issue 11)").
#
#   sudo bench/sfu.sh                                # ~15 min on 2 cores
#   sudo ROUNDS=1 SUBS="50 200" DURATION=10 bench/sfu.sh
#   sudo SERVERS=janus bench/sfu.sh
#
# For each round, each subscriber count N in SUBS and each server: start the server
# fresh, pinned to SERVER_CORE (Janus: one event loop, bench/janus/; Switchboard: one SFU
# worker), run `switchboard-sfu-load` pinned to LOAD_CORE: ceil(N / SUBS_PER_ROOM) rooms,
# each with PUBLISHERS publishers of synthetic VP8 (VIDEO_KBPS, 30 fps, keyframe every
# 3 s, ≤1200 B packets) + Opus 20 ms, N subscribers spread over the rooms, WARMUP s of
# steady load, then a DURATION s window
# in which the client counts what subscribers receive and reads the server's
# utime+stime and VmRSS from /proc. Writes bench/results/sfu-<date>.json (medians over
# ROUNDS), .md (the table) and .png (gnuplot, if installed), and prints the table.
# PROFILE=10 also records the server with `perf record -g` during each window
# (bench/results/sfu-<date>.perf/; `perf report -i … --sort dso,sym`).
# Needs root (netns), python3, janus, and release builds of `switchboard-sfu-load` and
# `switchboard` (built here unless NO_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbsfu}
ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-"25 50 100 200 400"}
PUBLISHERS=${PUBLISHERS:-1}     # per room
SUBS_PER_ROOM=${SUBS_PER_ROOM:-100} # N subscribers fill ceil(N / this) rooms (at most 8), one
                                 # publisher set each: Switchboard forwards a track to at most
                                 # 100 subscribers (sfu Limits::subscribers_per_publisher)
VIDEO_KBPS=${VIDEO_KBPS:-1200}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-20}
JOIN_CONCURRENCY=${JOIN_CONCURRENCY:-4}
SERVERS=${SERVERS:-"janus switchboard"}
SERVER_CORE=${SERVER_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}
NICE=${NICE:--15}                # this session and the server and load client: ahead of other work
PROFILE=${PROFILE:-0}            # > 0: `perf record` the server for this many seconds of each run ...
PROFILE_DELAY=${PROFILE_DELAY:-12} # ... starting this long after the load client (in its window)
FOREIGN_MAX=${FOREIGN_MAX:-15}   # % of a core other processes may use during a run ...
RETRIES=${RETRIES:-1}            # ... else it is repeated up to this many times
OUT=${OUT:-$ROOT/bench/results/sfu-$(date +%F).json}
SB=${SB:-$ROOT/target/release/switchboard}
LOAD=${LOAD:-$ROOT/target/release/switchboard-sfu-load}
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
# Switchboard with every room an SFU room, one SFU worker on one UDP port.
SB_ARGS=${SB_ARGS:-"--sfu-threshold 0 --sfu-threads 1 --sfu-port 3480 --sfu-room-capacity 10000"}
IP=10.98.0.1        # the media address (Janus does not gather on loopback)
X=(ip netns exec "$NS")
REPORT="python3 $ROOT/bench/report.py"
SFUREPORT="python3 $ROOT/bench/sfu_report.py"
declare -A URL=([janus]="http://127.0.0.1:8088/janus" [switchboard]="ws://127.0.0.1:8080/ws")
declare -A PORT=([janus]=8088 [switchboard]=8080)
# Server counters read over the window (Janus has none without its admin API).
declare -A METRICS=([janus]="" [switchboard]="--metrics-url http://127.0.0.1:9641/metrics")

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
. "$ROOT/bench/trial.sh"
case " $SERVERS " in *" janus "*)
    command -v janus >/dev/null || { echo "janus is not installed (apt-get install janus)" >&2; exit 1; } ;;
esac
if [ "${NO_BUILD:-0}" != 1 ]; then
    pkgs=(-p switchboard-sfu-load)
    case " $SERVERS " in *" switchboard "*) pkgs+=(-p switchboard) ;; esac
    (cd "$ROOT" && cargo build --release -q "${pkgs[@]}")
fi

netns_setup sbsfu
# With autogroup scheduling (kernel.sched_autogroup_enabled) a process's nice only ranks
# it within its session; the session's own nice ranks it against the others (e.g. builds
# in other terminals). Both are raised for this run; the session's is restored on exit.
AUTOGROUP_NICE=$(awk '{print $3}' "/proc/$$/autogroup" 2>/dev/null || echo 0)
trap 'echo "$AUTOGROUP_NICE" >"/proc/$$/autogroup" 2>/dev/null; netns_cleanup' EXIT
echo "$NICE" >"/proc/$$/autogroup" 2>/dev/null || echo "cannot renice the session's autogroup" >&2
# A veth pair gives the namespace a non-loopback address; traffic to it stays local.
ip -n "$NS" link add sfu0 type veth peer name sfu1
ip -n "$NS" addr add $IP/24 dev sfu0
ip -n "$NS" link set sfu0 up
ip -n "$NS" link set sfu1 up
"${X[@]}" sysctl -qw net.core.rmem_max=8388608 net.core.wmem_max=8388608
TRIALS=$TMP/trials.jsonl
: >"$TRIALS"
SPID=

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

start_server() { # name
    case $1 in
    janus)
        "${X[@]}" nice -n "$NICE" taskset -c "$SERVER_CORE" janus -C "$ROOT/bench/janus/janus.jcfg" \
            -F "$ROOT/bench/janus" </dev/null >"$TMP/janus.log" 2>&1 &
        ;;
    switchboard)
        # shellcheck disable=SC2086 # SB_ARGS is a list of flags
        "${X[@]}" nice -n "$NICE" taskset -c "$SERVER_CORE" "$SB" serve --http-listen 127.0.0.1:8080 \
            --listening-ip 127.0.0.1 --listening-port 3478 --threads 1 --metrics-listen 127.0.0.1:9641 \
            --log warn --sfu-bind $IP $SB_ARGS </dev/null >"$TMP/switchboard.log" 2>&1 &
        ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    wait_tcp "${PORT[$1]}"
    sleep 0.5
}

stop_server() {
    [ -n "$SPID" ] || return 0
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

run_one() { # server subscribers round
    local s=$1 n=$2 r=$3 a f0 t0 foreign alive disturbed rooms
    rooms=$(((n + SUBS_PER_ROOM - 1) / SUBS_PER_ROOM))
    for ((a = 0; a <= RETRIES; a++)); do
        start_server "$s"
        log "round $r: $s (pid $SPID), $n subscribers in $rooms room(s)"
        f0=$($REPORT foreign $$)
        t0=$(date +%s.%N)
        if [ "$PROFILE" -gt 0 ]; then
            mkdir -p "${OUT%.json}.perf"
            (sleep "$PROFILE_DELAY" && perf record -q -F 999 -g -p "$SPID" \
                -o "${OUT%.json}.perf/$s-$n-r$r.data" -- sleep "$PROFILE" >/dev/null 2>&1) &
        fi
        # shellcheck disable=SC2086 # METRICS holds a flag and its value, or nothing
        "${X[@]}" nice -n "$NICE" taskset -c "$LOAD_CORE" "$LOAD" --target "$s" --url "${URL[$s]}" \
            --room 1234 --rooms "$rooms" --publishers "$PUBLISHERS" --subscribers "$n" \
            --video-kbps "$VIDEO_KBPS" --warmup "$WARMUP" --duration "$DURATION" \
            --join-concurrency "$JOIN_CONCURRENCY" --server-pid "$SPID" --bind-ip $IP \
            ${METRICS[$s]} \
            >"$TMP/last.out" 2>"$TMP/last.err" || true
        trial_end "$s" "$f0" "$t0"
        $SFUREPORT record "$TRIALS" "$s" "$n" "$r" "$TMP/last.out" \
            "{\"foreign_cpu_pct\": $foreign, \"disturbed\": $disturbed, \"server_survived\": $alive, \"attempt\": $a}"
        if trial_retry "$a"; then return 0; fi
    done
}

START=$(date +%s)
log "sfu: servers $SERVERS, subscribers $SUBS, $ROUNDS rounds, ${DURATION}s windows"
for ((r = 1; r <= ROUNDS; r++)); do
    for n in $SUBS; do
        for s in $SERVERS; do
            run_one "$s" "$n" "$r"
        done
    done
done

JANUS_VERSION=$(dpkg-query -W -f '${Version}' janus 2>/dev/null || echo none)
META=$(python3 - <<PY
import json, time
print(json.dumps({
    "date": time.strftime("%Y-%m-%d %H:%M", time.localtime($START)),
    "duration_s": int(time.time()) - $START,
    "rounds": $ROUNDS, "subscribers": "$SUBS", "publishers": $PUBLISHERS,
    "subs_per_room": $SUBS_PER_ROOM,
    "video_kbps": $VIDEO_KBPS, "warmup_s": $WARMUP, "window_s": $DURATION,
    "join_concurrency": $JOIN_CONCURRENCY, "server_core": $SERVER_CORE, "load_core": $LOAD_CORE,
    "nice": $NICE,
    "switchboard_version": "$SB_VERSION", "switchboard_args": "$SB_ARGS",
    "janus_version": "$JANUS_VERSION", "kernel": "$(uname -r)", "cpus": $(nproc),
}))
PY
)
mkdir -p "$(dirname "$OUT")"
$SFUREPORT aggregate "$TRIALS" "$META" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$TRIALS" "${OUT%.json}.trials.jsonl"
$SFUREPORT markdown "$OUT" >"${OUT%.json}.md"
if command -v gnuplot >/dev/null; then
    $SFUREPORT plot "$OUT" "${OUT%.json}.png" || log "plot failed"
fi
mkdir -p "${OUT%.json}.logs"
for s in $SERVERS; do cp "$TMP/$s.all.log" "${OUT%.json}.logs/$s.log" 2>/dev/null || true; done
echo
cat "${OUT%.json}.md"
echo
echo "results: $OUT ($(($(date +%s) - START)) s)"
