#!/usr/bin/env bash
# SIP gateway benchmark: SIPp calls G.711 into rooms, two calls per room, and the gateway
# transcodes (PCMU <-> Opus, 8 <-> 48 kHz) and mixes the room for each phone; side by
# side with rtpengine (Debian rtpengine-daemon, userspace) behind kamailio, relaying or
# transcoding the same SIPp calls to Opus. See docs/benchmarks.md ("SIP gateway (issue 12)").
#
#   sudo bench/sip.sh                  # 3 rounds, 10..150 calls, 3 servers + call rates: ~35-60 min
#   sudo bench/sip.sh --quick          # 1 round, 2 points each: ~4 min (a smoke test)
#   sudo SERVERS=switchboard ROUNDS=1 CALLS="50 150" CPS_RATES= bench/sip.sh
#
# Held load: for each round, each N in CALLS and each server, start the server fresh
# pinned to SERVER_CORE, then one SIPp UAC pinned to LOAD_CORE places N calls
# (bench/sip/uac_pair.xml) at RAMP_CPS calls/s, each playing 20 ms PCMU RTP from a pcap
# (a 440 Hz tone, tests/sip/tone-pcmu.py) for the whole call. Servers:
#   switchboard      release build, one runtime thread and one SFU worker; the injection
#                    file names each room twice, so two calls share a room and each phone
#                    hears the other through the SFU and the gateway's mix
#   rtpengine-opus   rtpengine --table=-1 (userspace), kamailio (bench/sip/
#                    kamailio-rtpengine.cfg, on LOAD_CORE) offers the far end only Opus
#                    (codec-mask-all codec-transcode-opus); the far end is a SIPp UAS
#                    (bench/sip/uas_echo.xml, -rtp_echo) that sends every packet back
#   rtpengine-relay  the same, relaying PCMU as it is
# Once all calls are up and WARMUP s have passed, a DURATION s window: the server's
# utime+stime (/proc/PID/stat), VmRSS, its counters (switchboard_sip_media_*, or
# rtpengine's /metrics) and nft counters of the packets to and from the phones' media
# port (table inet sipbench, removed at the end). Call rate (Switchboard): for each rate
# in CPS_RATES, SIPP_PROCS SIPp processes (each from its own 127.0.0.x: the gateway
# admits 200 SIP messages a second per address) place CPS_SECS s of CPS_HOLD_MS calls;
# SIPp counts successful and failed calls and the set-up time (INVITE -> 200). Writes
# bench/results/sip-<date>.json (medians over ROUNDS), .md, .png (gnuplot),
# .trials.jsonl (and the plot to docs/sip-bench.png, or PLOT), and prints the tables.
# PROFILE=8 also records each server with `perf record -g` during its windows
# (bench/results/sip-<date>.perf/; `perf report -i … --no-children --sort dso,sym`).
# Needs root (SIPp's pcap player sends with raw sockets; nft), sipp (Debian sip-tester),
# nft, python3, gnuplot (optional), rtpengine-daemon and kamailio for the rtpengine
# servers, and a release build of `switchboard` (built here unless NO_BUILD=1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=false
if [ "${1:-}" = --quick ]; then
    QUICK=true
    ROUNDS=${ROUNDS:-1} CALLS=${CALLS-"10 50"} WARMUP=${WARMUP:-2} DURATION=${DURATION:-8}
    CPS_RATES=${CPS_RATES-"20 80"} CPS_SECS=${CPS_SECS:-5}
fi
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-"switchboard rtpengine-opus rtpengine-relay"}
CALLS=${CALLS-"10 30 50 80 100 150"} # concurrent calls, two per room (even numbers; "": none)
RAMP_CPS=${RAMP_CPS:-10}          # calls/s while the held calls are placed
WARMUP=${WARMUP:-3}               # s after the last call is up before the window
DURATION=${DURATION:-20}          # s of the measuring window
CPS_RATES=${CPS_RATES-"10 20 40 80 120 160 200 250 300"} # offered calls/s of the sweep ("": none)
CPS_SECS=${CPS_SECS:-10}          # s of calls at each rate
CPS_HOLD_MS=${CPS_HOLD_MS:-1000}  # length of each call of the sweep
SIPP_PROCS=${SIPP_PROCS:-6}       # SIPp processes (source addresses) of the sweep: <= 50 calls/s each
SERVER_CORE=${SERVER_CORE:-1}
LOAD_CORE=${LOAD_CORE:-0}
NICE=${NICE:--15}                 # this session, the server and SIPp: ahead of other work
FOREIGN_MAX=${FOREIGN_MAX:-15}    # % of a core other processes may use during a run ...
RETRIES=${RETRIES:-1}             # ... else it is repeated up to this many times
PROFILE=${PROFILE:-0}             # > 0: `perf record -g` the server for this many s of each window
OUT=${OUT:-$ROOT/bench/results/sip-$(date +%F).json}
# The plot docs/benchmarks.md shows (not written by --quick runs unless PLOT is given).
PLOT=${PLOT:-$([ "$QUICK" = true ] || echo "$ROOT/docs/sip-bench.png")}
SB=${SB:-$ROOT/target/release/switchboard}
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
SIP_PORT=5960
METRICS=http://127.0.0.1:9643/metrics
# 5,000 RTP ports: the default range (500 calls) is what refuses calls first in the sweep.
SB_ARGS=${SB_ARGS:-"--threads 1 --sfu-threads 1 --sfu-threshold 0 --sfu-room-capacity 10000 --sip-rtp-ports 20000-29999"}
RTPE_METRICS=http://127.0.0.1:9644/metrics
KAMAILIO_PORT=5962
UAS_PORT=5980
UAC_MEDIA=16000
UAS_MEDIA=17000
declare -A RTPE_FLAGS=([rtpengine-opus]="codec-mask-all codec-transcode-opus" [rtpengine-relay]="")
REPORT="python3 $ROOT/bench/sip/report.py"
FOREIGN="python3 $ROOT/bench/report.py foreign"

command -v sipp >/dev/null || { echo "sipp is not installed (apt-get install sip-tester)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: SIPp's pcap player needs raw sockets" >&2; exit 1; }
command -v nft >/dev/null || { echo "nft is not installed (apt-get install nftables)" >&2; exit 1; }
case " $SERVERS " in *" rtpengine"*)
    command -v rtpengine >/dev/null || { echo "rtpengine is not installed (apt-get install rtpengine-daemon)" >&2; exit 1; }
    command -v kamailio >/dev/null || { echo "kamailio is not installed (apt-get install kamailio)" >&2; exit 1; } ;;
esac
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard)
fi

TMP=$(mktemp -d /tmp/sipbench.XXXXXX)
SPID=
LPIDS=()
HELPERS=()   # kamailio and the echo UAS of an rtpengine run
AUTOGROUP_NICE=$(awk '{print $3}' "/proc/$$/autogroup" 2>/dev/null || echo 0)
cleanup() {
    for p in "${LPIDS[@]}" "${HELPERS[@]}" $SPID; do kill "$p" 2>/dev/null || true; done
    nft delete table inet sipbench 2>/dev/null || true
    echo "$AUTOGROUP_NICE" >"/proc/$$/autogroup" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# With autogroup scheduling a process's nice ranks it only within its session; the
# session's own nice ranks it against other sessions (builds in other terminals).
echo "$NICE" >"/proc/$$/autogroup" 2>/dev/null || echo "cannot renice the session's autogroup" >&2
# Packets to and from the phones' (SIPp UAC's) and the echo UAS's media ports, counted
# in the kernel the same way for every server.
nft delete table inet sipbench 2>/dev/null || true
nft -f - <<NFT
table inet sipbench {
    chain out {
        type filter hook output priority 0; policy accept;
        udp sport $UAC_MEDIA counter comment "from_uac"
        udp dport $UAC_MEDIA counter comment "to_uac"
        udp sport $UAS_MEDIA counter comment "from_uas"
        udp dport $UAS_MEDIA counter comment "to_uas"
    }
}
NFT
TRIALS=$TMP/trials.jsonl
: >"$TRIALS"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

wait_metrics() { # url pattern
    local i
    for i in $(seq 200); do
        curl -sf "$1" 2>/dev/null | grep -q "$2" && return 0
        sleep 0.05
    done
    echo "the server did not come up (log: $TMP/server.log)" >&2
    tail -20 "$TMP/server.log" >&2
    exit 1
}

start_server() { # name: sets SPID (the measured process) and SURL (its metrics)
    case $1 in
    switchboard)
        # shellcheck disable=SC2086 # SB_ARGS is a list of flags
        nice -n "$NICE" taskset -c "$SERVER_CORE" "$SB" serve --http-listen 127.0.0.1:8093 \
            --listening-ip 127.0.0.1 --listening-port 3493 --metrics-listen 127.0.0.1:9643 \
            --log warn --sfu-bind 127.0.0.1 --sip-listen 127.0.0.1:$SIP_PORT --sip-max-calls 100000 \
            $SB_ARGS </dev/null >>"$TMP/server.log" 2>&1 &
        SPID=$!
        SURL=$METRICS
        SIP_TARGET=127.0.0.1:$SIP_PORT
        wait_metrics "$SURL" '^switchboard_sip_calls '
        ;;
    rtpengine-*)
        nice -n "$NICE" taskset -c "$SERVER_CORE" rtpengine --config-file=none --foreground --log-stderr \
            --log-level=3 --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 \
            --listen-http=127.0.0.1:9644 --port-min=30000 --port-max=39999 --num-threads=1 \
            </dev/null >>"$TMP/server.log" 2>&1 &
        SPID=$!
        SURL=$RTPE_METRICS
        SIP_TARGET=127.0.0.1:$KAMAILIO_PORT
        wait_metrics "$SURL" '^rtpengine_sessions'
        mkdir -p "$TMP/kamailio" "$TMP/uas"
        cp "$TMP/tone-pcmu.pcap" "$TMP/uas/"
        HELPERS=()
        nice -n "$NICE" taskset -c "$LOAD_CORE" kamailio -f "$ROOT/bench/sip/kamailio-rtpengine.cfg" -DD -E \
            -Y "$TMP/kamailio" -A "RTPE_FLAGS=\"${RTPE_FLAGS[$1]}\"" </dev/null >>"$TMP/kamailio.log" 2>&1 &
        HELPERS+=($!)
        (cd "$TMP/uas" && exec nice -n "$NICE" taskset -c "$LOAD_CORE" sipp -sf "$ROOT/bench/sip/uas_echo.xml" \
            -i 127.0.0.1 -p $UAS_PORT -mp $UAS_MEDIA -rtp_echo -nostdin -trace_err \
            >>"$TMP/uas.log" 2>&1) &
        HELPERS+=($!)
        sleep 1
        ;;
    esac
}

stop_server() {
    local p
    for p in "${HELPERS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${HELPERS[@]}"; do wait "$p" 2>/dev/null || true; done
    HELPERS=()
    [ -n "$SPID" ] || return 0
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

rooms_file() { # path calls tag: "SEQUENTIAL", then each room twice
    local i
    {
        echo SEQUENTIAL
        for ((i = 0; i < $2; i++)); do echo "$3r$((i / 2));"; done
    } >"$1"
}

sipp_run() { # dir ip port media-port rate calls hold-ms limit: SIPp UAC in the background
    local dir=$1
    mkdir -p "$dir"
    cp "$TMP/tone-pcmu.pcap" "$dir/"
    (cd "$dir" && exec nice -n "$NICE" taskset -c "$LOAD_CORE" sipp -sf "$ROOT/bench/sip/uac_pair.xml" \
        -inf "$dir/rooms.csv" -i "$2" -p "$3" -mp "$4" -r "$5" -m "$6" -l "$8" -d "$7" \
        -timeout $(($7 / 1000 + 120))s -timeout_error -nostdin -trace_err -trace_stat -stf "$dir/stat.csv" \
        -fd 1 -trace_rtt -rtt_freq 1 "$SIP_TARGET" >"$dir/sipp.out" 2>&1) &
    LPIDS+=($!)
}

# The pcap outlasts the longest call: SIPp stops playing at BYE.
longest=0
for n in $CALLS; do
    h=$((n / RAMP_CPS + WARMUP + DURATION + 3))
    [ "$h" -gt "$longest" ] && longest=$h
done
python3 "$ROOT/tests/sip/tone-pcmu.py" "$TMP/tone-pcmu.pcap" $((longest + 10))

held_one() { # server calls round
    local srv=$1 n=$2 r=$3 a d hold settle f0 f1 t0 t1 foreign disturbed alive
    hold=$(((n / RAMP_CPS + WARMUP + DURATION + 3) * 1000))
    settle=$(awk -v n="$n" -v c="$RAMP_CPS" -v w="$WARMUP" 'BEGIN { printf "%.2f", n / c + w }')
    for ((a = 0; a <= RETRIES; a++)); do
        d=$TMP/held-$srv-$n-$r-$a
        mkdir -p "$d"
        start_server "$srv"
        $REPORT sample "$SPID" "$SURL" >"$d/idle.json"
        log "round $r: $srv, $n calls (pid $SPID), window ${DURATION}s after ${settle}s"
        rooms_file "$d/rooms.csv" "$n" "h"
        LPIDS=()
        f0=$($FOREIGN $$)
        t0=$(date +%s.%N)
        sipp_run "$d" 127.0.0.1 5970 $UAC_MEDIA "$RAMP_CPS" "$n" "$hold" "$n"
        sleep "$settle"
        $REPORT sample "$SPID" "$SURL" >"$d/s0.json"
        if [ "$PROFILE" -gt 0 ]; then
            mkdir -p "${OUT%.json}.perf"
            perf record -q -F 999 -g -p "$SPID" -o "${OUT%.json}.perf/$srv-$n-r$r.data" \
                -- sleep "$PROFILE" >/dev/null 2>&1 &
        fi
        sleep "$DURATION"
        $REPORT sample "$SPID" "$SURL" >"$d/s1.json"
        f1=$($FOREIGN $$)
        t1=$(date +%s.%N)
        wait "${LPIDS[@]}" 2>/dev/null || true
        alive=true
        kill -0 "$SPID" 2>/dev/null || alive=false
        stop_server
        tail -3 "$d/sipp.out" | sed 's/^/    sipp: /' >&2
        foreign=$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
        disturbed=false
        awk -v f="$foreign" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f <= m) }' || disturbed=true
        $REPORT held "$TRIALS" "$srv" "$n" "$r" "$d/idle.json" "$d/s0.json" "$d/s1.json" "$d" \
            "{\"foreign_cpu_pct\": $foreign, \"disturbed\": $disturbed, \"server_survived\": $alive, \"attempt\": $a}"
        tail -1 "$TRIALS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("    cpu %s%%, calls up %s/%s, phone in/out %s/%s pkt, lost+late %s/%s %%, %s us/pkt, failed %s" % (r.get("server_cpu_pct"), r.get("calls_up_start"), r.get("calls_up_end"), r.get("phone_in"), r.get("phone_out"), r.get("phone_loss_pct"), r.get("room_loss_pct"), r.get("us_per_phone_packet"), r.get("failed")))' >&2
        [ "$disturbed" = true ] || return 0
        log "  (other processes used $foreign % of a core during that run$([ "$a" -lt "$RETRIES" ] && echo '; again' || echo '; kept, marked disturbed'))"
    done
}

cps_one() { # rate round
    local rate=$1 r=$2 a d k per calls f0 f1 t0 t1 foreign disturbed
    per=$(awk -v x="$rate" -v p="$SIPP_PROCS" 'BEGIN { printf "%g", x / p }')
    calls=$(awk -v x="$per" -v s="$CPS_SECS" 'BEGIN { c = int(x * s + 0.5); c += c % 2; print (c < 2 ? 2 : c) }')
    for ((a = 0; a <= RETRIES; a++)); do
        d=$TMP/cps-$rate-$r-$a
        mkdir -p "$d"
        start_server switchboard
        log "round $r: $rate calls/s offered ($SIPP_PROCS x $per, $calls calls each of ${CPS_HOLD_MS} ms)"
        f0=$($FOREIGN $$)
        t0=$(date +%s.%N)
        $REPORT sample "$SPID" "$SURL" >"$d/s0.json"
        LPIDS=()
        for ((k = 0; k < SIPP_PROCS; k++)); do
            mkdir -p "$d/p$k"
            rooms_file "$d/p$k/rooms.csv" "$calls" "c${k}x"
            sipp_run "$d/p$k" "127.0.0.$((11 + k))" $((5970 + k)) $((18000 + 100 * k)) "$per" "$calls" \
                "$CPS_HOLD_MS" 100000
        done
        wait "${LPIDS[@]}" 2>/dev/null || true
        $REPORT sample "$SPID" "$SURL" >"$d/s1.json"
        f1=$($FOREIGN $$)
        t1=$(date +%s.%N)
        stop_server
        foreign=$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
        disturbed=false
        awk -v f="$foreign" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f <= m) }' || disturbed=true
        # Every process's CSVs and setup times count together.
        mkdir -p "$d/all"
        for ((k = 0; k < SIPP_PROCS; k++)); do
            cp "$d/p$k/stat.csv" "$d/all/p$k-stat.csv" 2>/dev/null || true
            for f in "$d/p$k"/*_rtt.csv; do [ -e "$f" ] && cp "$f" "$d/all/p$k-$(basename "$f")"; done
        done
        $REPORT cps "$TRIALS" "$rate" "$r" "$d/s0.json" "$d/s1.json" "$d/all" \
            "{\"foreign_cpu_pct\": $foreign, \"disturbed\": $disturbed, \"attempt\": $a}"
        tail -1 "$TRIALS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("    created %s, successful %s, failed %s, setup p50/p99 %s/%s ms, cpu %s%%, flood drops %s" % (r.get("created"), r.get("successful"), r.get("failed"), r.get("setup_ms_p50"), r.get("setup_ms_p99"), r.get("server_cpu_pct"), r.get("flood_dropped")))' >&2
        [ "$disturbed" = true ] || return 0
        log "  (other processes used $foreign % of a core during that run$([ "$a" -lt "$RETRIES" ] && echo '; again' || echo '; kept, marked disturbed'))"
    done
}

START=$(date +%s)
log "sip: servers $SERVERS, calls $CALLS, rates ${CPS_RATES:-none}, $ROUNDS round(s), ${DURATION}s windows"
for ((r = 1; r <= ROUNDS; r++)); do
    for n in $CALLS; do
        for srv in $SERVERS; do held_one "$srv" "$n" "$r"; done
    done
    case " $SERVERS " in *" switchboard "*)
        for rate in $CPS_RATES; do cps_one "$rate" "$r"; done ;;
    esac
done

SIPP_VERSION=$(sipp -v 2>&1 | grep -o 'v[0-9][0-9.]*' | head -1 | tr -d '\r\n' || true)
RTPE_VERSION=$(dpkg-query -W -f '${Version}' rtpengine-daemon 2>/dev/null || echo none)
META=$(python3 - <<PY
import json, time
print(json.dumps({
    "date": time.strftime("%Y-%m-%d %H:%M", time.localtime($START)),
    "duration_s": int(time.time()) - $START,
    "rounds": $ROUNDS, "servers": "$SERVERS", "calls": "$CALLS", "ramp_cps": $RAMP_CPS, "warmup_s": $WARMUP,
    "window_s": $DURATION, "cps_rates": "$CPS_RATES", "cps_secs": $CPS_SECS,
    "cps_hold_ms": $CPS_HOLD_MS, "sipp_procs": $SIPP_PROCS,
    "server_core": $SERVER_CORE, "load_core": $LOAD_CORE, "nice": $NICE,
    "switchboard_version": "$SB_VERSION", "switchboard_args": "$SB_ARGS",
    "sipp_version": "$SIPP_VERSION", "rtpengine_version": "$RTPE_VERSION", "kernel": "$(uname -r)", "cpus": $(nproc),
}))
PY
)
mkdir -p "$(dirname "$OUT")"
$REPORT aggregate "$TRIALS" "$META" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$TRIALS" "${OUT%.json}.trials.jsonl"
$REPORT markdown "$OUT" >"${OUT%.json}.md"
if command -v gnuplot >/dev/null; then
    if $REPORT plot "$OUT" "${OUT%.json}.png"; then
        [ -z "$PLOT" ] || cp "${OUT%.json}.png" "$PLOT"
    else
        log "plot failed"
    fi
fi
mkdir -p "${OUT%.json}.logs"
for f in server kamailio uas; do cp "$TMP/$f.log" "${OUT%.json}.logs/" 2>/dev/null || true; done
echo
cat "${OUT%.json}.md"
echo
echo "results: $OUT ($(($(date +%s) - START)) s)"
