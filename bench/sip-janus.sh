#!/usr/bin/env bash
# SIP gateway against Janus's SIP plugin: every call is one WebRTC peer (str0m, one audio
# track of 20 ms frames) that calls a SIP far end through the server under test; the far
# end is a SIPp UAS echoing RTP, so each peer gets its own audio back and counts what it
# lost. See docs/benchmarks.md ("SIP gateway against Janus's SIP plugin").
#
#   sudo bench/sip-janus.sh                                     # 3 rounds, 20..200 calls: ~25 min
#   sudo ROUNDS=1 CALLS="10 20" DURATION=10 bench/sip-janus.sh  # a smoke test
#   sudo SB_CODEC=pcmu bench/sip-janus.sh                       # G.711 end to end in both
#
# For each round, each N in CALLS and each server: start the server fresh, pinned to
# SERVER_CORE, and a SIPp echo UAS (bench/sip/uas_echo.xml, -rtp_echo) on LOAD_CORE, then
# `switchboard-sfu-load --target janus-sip|switchboard-sip` on LOAD_CORE places N calls
# JOIN_CONCURRENCY at a time:
#   janus         Janus 1.1.2 (Debian), bench/janus/sip/: HTTP API session, attach
#                 janus.plugin.sip, register as a guest, `call` sip:echo@… with the peer's
#                 offer (JANUS_CODEC, PCMU: Janus relays G.711 as it is, no transcoding)
#   switchboard   the peer joins its own room (SFU, SB_CODEC) and `POST /api/sip/calls`
#                 dials the far end; the gateway joins the room as the phone. SB_CODEC=opus
#                 is "transcoding" (Opus <-> PCMU in the gateway); pcmu needs an SFU that
#                 takes PCMU (G.711 passed through)
# Once every call hears audio, WARMUP s, then a DURATION s window: per call, packets sent
# against packets back (and sequence gaps, late packets), the server's utime+stime
# (/proc/PID/stat, all threads) and RSS, Switchboard's switchboard_sip_media_* counters.
# Everything runs in a network namespace with a veth address (IP): Janus gathers no
# loopback candidates. Writes bench/results/sip-janus-<date>.json (medians over ROUNDS),
# .md, .trials.jsonl and .png (gnuplot, if installed), and prints the table
# (bench/sip_janus_report.py).
# Needs root (netns), janus, sipp (Debian sip-tester), python3, and release builds of
# `switchboard` and `switchboard-sfu-load` (built here unless NO_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbsipj}
ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-"20 40 60 80 120 200"}
SERVERS=${SERVERS:-"janus switchboard"}
JANUS_CODEC=${JANUS_CODEC:-pcmu}
SB_CODEC=${SB_CODEC:-opus}
# Shown with the results: Switchboard transcodes with SB_CODEC=opus.
LABEL=${LABEL:-$([ "$SB_CODEC" = opus ] && echo transcoding || echo "G.711 passthrough")}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-20}
JOIN_CONCURRENCY=${JOIN_CONCURRENCY:-8}
JOIN_TIMEOUT=${JOIN_TIMEOUT:-60}
SERVER_CORE=${SERVER_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}
NICE=${NICE:--15}
FOREIGN_MAX=${FOREIGN_MAX:-15}   # % of a core other processes may use during a run ...
RETRIES=${RETRIES:-1}            # ... else it is repeated up to this many times
OUT=${OUT:-$ROOT/bench/results/sip-janus-$(date +%F).json}
SB=${SB:-$ROOT/target/release/switchboard}
LOAD=${LOAD:-$ROOT/target/release/switchboard-sfu-load}
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
SB_ARGS=${SB_ARGS:-"--threads 1 --sfu-threads 1 --sfu-threshold 0 --sfu-room-capacity 10000 --sip-rtp-ports 20000-29999"}
IP=10.98.0.1
UAS_PORT=5980
UAS_MEDIA=17000
FAR_END=sip:echo@$IP:$UAS_PORT
X=(ip netns exec "$NS")
REPORT="python3 $ROOT/bench/report.py"
SJREPORT="python3 $ROOT/bench/sip_janus_report.py"
declare -A PORT=([janus]=8088 [switchboard]=8080)
declare -A CODEC=([janus]=$JANUS_CODEC [switchboard]=$SB_CODEC)

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
. "$ROOT/bench/trial.sh"
case " $SERVERS " in *" janus "*)
    command -v janus >/dev/null || { echo "janus is not installed (apt-get install janus)" >&2; exit 1; } ;;
esac
command -v sipp >/dev/null || { echo "sipp is not installed (apt-get install sip-tester)" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-sfu-load)
fi

netns_setup sbsipj
AUTOGROUP_NICE=$(awk '{print $3}' "/proc/$$/autogroup" 2>/dev/null || echo 0)
trap 'echo "$AUTOGROUP_NICE" >"/proc/$$/autogroup" 2>/dev/null; netns_cleanup' EXIT
echo "$NICE" >"/proc/$$/autogroup" 2>/dev/null || echo "cannot renice the session's autogroup" >&2
ip -n "$NS" link add sj0 type veth peer name sj1
ip -n "$NS" addr add $IP/24 dev sj0
ip -n "$NS" link set sj0 up
ip -n "$NS" link set sj1 up
"${X[@]}" sysctl -qw net.core.rmem_max=8388608 net.core.wmem_max=8388608 2>/dev/null || true # not per namespace on every kernel
TRIALS=$TMP/trials.jsonl
: >"$TRIALS"
SPID=
UPID=

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

start_server() { # name
    case $1 in
    janus)
        "${X[@]}" nice -n "$NICE" taskset -c "$SERVER_CORE" janus -C "$ROOT/bench/janus/sip/janus.jcfg" \
            -F "$ROOT/bench/janus/sip" </dev/null >"$TMP/janus.log" 2>&1 &
        ;;
    switchboard)
        # shellcheck disable=SC2086 # SB_ARGS is a list of flags
        "${X[@]}" nice -n "$NICE" taskset -c "$SERVER_CORE" "$SB" serve --http-listen 127.0.0.1:8080 \
            --listening-ip 127.0.0.1 --listening-port 3478 --metrics-listen 127.0.0.1:9641 \
            --log warn --sfu-bind $IP --sip-listen $IP:5960 --sip-max-calls 100000 \
            $SB_ARGS </dev/null >"$TMP/switchboard.log" 2>&1 &
        ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    wait_tcp "${PORT[$1]}"
    sleep 0.5
    # The far end: one SIPp UAS answering every call, echoing every RTP packet.
    mkdir -p "$TMP/uas"
    (cd "$TMP/uas" && exec "${X[@]}" nice -n "$NICE" taskset -c "$LOAD_CORE" sipp \
        -sf "$ROOT/bench/sip/uas_echo.xml" -i $IP -p $UAS_PORT -mp $UAS_MEDIA -rtp_echo \
        -nostdin -trace_err >>"$TMP/uas.log" 2>&1) &
    UPID=$!
    PIDS+=("$UPID")
    sleep 0.5
}

stop_server() {
    local p
    for p in $UPID $SPID; do kill "$p" 2>/dev/null || true; done
    for p in $UPID $SPID; do wait "$p" 2>/dev/null || true; done
    SPID= UPID=
}

run_one() { # server calls round
    local s=$1 n=$2 r=$3 a f0 t0 foreign alive disturbed extra
    for ((a = 0; a <= RETRIES; a++)); do
        start_server "$s"
        log "round $r: $s (pid $SPID), $n calls, ${CODEC[$s]}"
        f0=$($REPORT foreign $$)
        t0=$(date +%s.%N)
        extra=()
        case $s in
        janus) extra=(--target janus-sip --url http://127.0.0.1:8088/janus) ;;
        switchboard) extra=(--target switchboard-sip --url ws://127.0.0.1:8080/ws
            --api-url http://127.0.0.1:8080 --metrics-url http://127.0.0.1:9641/metrics
            --room "sipbench-r$r") ;;
        esac
        "${X[@]}" nice -n "$NICE" taskset -c "$LOAD_CORE" "$LOAD" "${extra[@]}" --calls "$n" \
            --far-end "$FAR_END" --codec "${CODEC[$s]}" --warmup "$WARMUP" --duration "$DURATION" \
            --join-concurrency "$JOIN_CONCURRENCY" --join-timeout "$JOIN_TIMEOUT" \
            --server-pid "$SPID" --bind-ip $IP >"$TMP/last.out" 2>"$TMP/last.err" || true
        trial_end "$s" "$f0" "$t0"
        $SJREPORT record "$TRIALS" "$s" "$n" "$r" "$TMP/last.out" \
            "{\"foreign_cpu_pct\": $foreign, \"disturbed\": $disturbed, \"server_survived\": $alive, \"attempt\": $a, \"codec\": \"${CODEC[$s]}\"}"
        if trial_retry "$a"; then return 0; fi
    done
}

START=$(date +%s)
log "sip-janus: servers $SERVERS (janus $JANUS_CODEC, switchboard $SB_CODEC), calls $CALLS, $ROUNDS rounds, ${DURATION}s windows"
for ((r = 1; r <= ROUNDS; r++)); do
    for n in $CALLS; do
        for s in $SERVERS; do
            run_one "$s" "$n" "$r"
        done
    done
done

JANUS_VERSION=$(dpkg-query -W -f '${Version}' janus 2>/dev/null || echo none)
SIPP_VERSION=$(sipp -v 2>&1 | grep -o 'v[0-9][0-9.]*' | head -1 | tr -d '\r\n' || true)
META=$(python3 - <<PY
import json, time
print(json.dumps({
    "date": time.strftime("%Y-%m-%d %H:%M", time.localtime($START)),
    "duration_s": int(time.time()) - $START,
    "rounds": $ROUNDS, "calls": "$CALLS", "servers": "$SERVERS",
    "janus_codec": "$JANUS_CODEC", "switchboard_codec": "$SB_CODEC", "label": "$LABEL",
    "warmup_s": $WARMUP, "window_s": $DURATION, "join_concurrency": $JOIN_CONCURRENCY,
    "server_core": $SERVER_CORE, "load_core": $LOAD_CORE, "nice": $NICE,
    "switchboard_version": "$SB_VERSION", "switchboard_args": "$SB_ARGS",
    "janus_version": "$JANUS_VERSION", "sipp_version": "$SIPP_VERSION",
    "kernel": "$(uname -r)", "cpus": $(nproc),
}))
PY
)
mkdir -p "$(dirname "$OUT")"
$SJREPORT aggregate "$TRIALS" "$META" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$TRIALS" "${OUT%.json}.trials.jsonl"
$SJREPORT markdown "$OUT" >"${OUT%.json}.md"
if command -v gnuplot >/dev/null; then
    $SJREPORT plot "$OUT" "${OUT%.json}.png" || echo "plot failed" >&2
fi
mkdir -p "${OUT%.json}.logs"
for s in $SERVERS; do cp "$TMP/$s.all.log" "${OUT%.json}.logs/$s.log" 2>/dev/null || true; done
cp "$TMP/uas.log" "${OUT%.json}.logs/uas.log" 2>/dev/null || true
echo
cat "${OUT%.json}.md"
echo
echo "results: $OUT ($(($(date +%s) - START)) s)"
