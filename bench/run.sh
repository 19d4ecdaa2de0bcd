#!/usr/bin/env bash
# Switchboard vs Debian coturn vs the raw batched UDP forwarder (`switchboard-load
# forward`), same load and same number of worker threads, on loopback inside a
# loopback-only network namespace. See docs/benchmarks.md.
#
#   sudo bench/run.sh                     # full run (~15-20 min on 2 cores)
#   sudo SECTIONS="stun churn" ROUNDS=3 bench/run.sh
#
# Writes bench/results/latest.json (+ the raw trials next to it) and prints a summary.
# Needs root (netns), python3, coturn's `turnserver`, and release builds of
# `switchboard` and `switchboard-load` (built here unless NO_BUILD=1; SB=/LOAD= point
# at other binaries). Every knob below can be set in the environment.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbbench}
THREADS=${THREADS:-1}          # worker threads of every server (coturn -m)
ROUNDS=${ROUNDS:-5}            # rounds of the CPU-efficiency and churn measurements
LAT_ROUNDS=${LAT_ROUNDS:-3}    # rounds of the latency measurements
SEARCH_ROUNDS=${SEARCH_ROUNDS:-1} # repetitions of each loss-free search
WINDOW=${WINDOW:-4}            # seconds of load per measurement
SEARCH_WINDOW=${SEARCH_WINDOW:-$WINDOW} # seconds of load per search step
STUN_STEP=${STUN_STEP:-50000}  # STUN search steps, req/s
RELAY_STEP=${RELAY_STEP:-25000} # relay search steps, client->peer pkt/s (relayed = 2x)
MAX_STEPS=${MAX_STEPS:-16}
BISECT=${BISECT:-3}            # bisection steps between last pass and first fail
CONFIRM=${CONFIRM:-6}          # confirmation runs at (lowered) best rates
STUN_LOSS=${STUN_LOSS:-0}      # loss-free criterion for STUN, %
RELAY_LOSS=${RELAY_LOSS:-0.1}  # loss-free criterion for relaying, %
STUN_SOCKETS=${STUN_SOCKETS:-4}
ALLOCS=${ALLOCS:-32}           # allocations (client sockets) in the relay tests
SIZES=${SIZES:-"200 1200"}     # relay payload sizes, bytes
CHURN_CONC=${CHURN_CONC:-8}
CHURN_SOURCES=${CHURN_SOURCES:-64}
MEM_SIZES=${MEM_SIZES:-"10000 50000"}
MEM_SOURCES=${MEM_SOURCES:-8}
NOFILE=${NOFILE:-200000}
FOREIGN_MAX=${FOREIGN_MAX:-5}  # % of a core other processes may use during a run ...
RETRIES=${RETRIES:-3}          # ... else it is repeated up to this many times
RETRY_PAUSE=${RETRY_PAUSE:-5}
SERVERS=${SERVERS:-"switchboard coturn forward"}
SERVER_CPUS=${SERVER_CPUS:-}   # e.g. 0: pin the servers (taskset -c) ...
LOAD_CPUS=${LOAD_CPUS:-}       # ... e.g. 1: and the generator; default: no pinning
SECTIONS=${SECTIONS:-"stun relay churn memory"}
OUT=${OUT:-$ROOT/bench/results/latest.json}

SB=${SB:-$ROOT/target/release/switchboard}        # binaries under test / of the generator
LOAD=${LOAD:-$ROOT/target/release/switchboard-load}
SB_VERSION=${SB_VERSION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
REPORT="python3 $ROOT/bench/report.py"
X=(ip netns exec "$NS")
XS=("${X[@]}")                # how servers and the generator are started
XL=("${X[@]}")
[ -z "$SERVER_CPUS" ] || XS=(taskset -c "$SERVER_CPUS" "${X[@]}")
[ -z "$LOAD_CPUS" ] || XL=(taskset -c "$LOAD_CPUS" "${X[@]}")
IP=127.0.0.1
declare -A PORT=([switchboard]=3478 [coturn]=3578 [forward]=3678)
ECHO=$IP:3490                 # the relay tests' echo peer; the forwarder sends there

[ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
command -v turnserver >/dev/null || { echo "coturn's turnserver is not installed" >&2; exit 1; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p switchboard -p switchboard-loadgen)
fi

# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
netns_setup sbbench
TRIALS=$TMP/trials.jsonl
: > "$TRIALS"
declare -A SPID=()

# File descriptors: 50k allocations need 50k relay sockets in the server and 50k
# client sockets in the generator. Without CAP_SYS_RESOURCE the hard limit caps this.
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- servers

start_server() { # name [min_port max_port]
    local name=$1 minp=${2:-49152} maxp=${3:-65535} port=${PORT[$1]}
    case $name in
    switchboard)
        "${XS[@]}" "$SB" serve --listening-ip $IP --listening-port "$port" --threads "$THREADS" \
            --metrics-listen off --log warn --user alice:alicepw --allowed-peer-ip $IP \
            --min-port "$minp" --max-port "$maxp" </dev/null >"$TMP/switchboard.log" 2>&1 &
        ;;
    coturn)
        rm -f "$TMP/turndb"
        "${XS[@]}" turnserver -n --listening-ip=$IP --listening-port="$port" -m "$THREADS" \
            --min-port="$minp" --max-port="$maxp" --lt-cred-mech --user=alice:alicepw \
            --realm=bench.test --fingerprint --allow-loopback-peers --no-tls --no-dtls --no-cli \
            --userdb="$TMP/turndb" --pidfile="$TMP/turn.pid" --log-file="$TMP/turn.log" \
            --simple-log --no-stdout-log </dev/null >/dev/null 2>&1 &
        ;;
    forward)
        "${XS[@]}" "$LOAD" forward --listen "$IP:$port" --threads "$THREADS" --peer "$ECHO" \
            --relay-ip $IP </dev/null >"$TMP/forward.log" 2>&1 &
        ;;
    esac
    SPID[$name]=$!
    PIDS+=("$!")
    wait_listen udp "$port"
    if [ "$name" = coturn ]; then # accepts requests once its user DB is open
        local i
        for i in $(seq 100); do
            grep -q "SQLite DB connection success" "$TMP/turn.log" 2>/dev/null && break
            sleep 0.05
        done
    fi
}

stop_server() { # name
    local p=${SPID[$1]:-}
    [ -n "$p" ] || return 0
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "SPID[$1]"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- trials

# One load run against a server; its output goes to $TMP/last.out.
#   load stun|relay|churn SERVER RATE SECS [SIZE] [extra args...]
load() {
    local kind=$1 s=$2 rate=$3 secs=$4 size=${5:-200}
    shift 5 || shift $#
    local raw=() tgt=(--server "$IP:${PORT[$s]}" --server-pid "${SPID[$s]}")
    [ "$s" = forward ] && raw=(--raw)
    case $kind in
    stun)
        "${XL[@]}" "$LOAD" stun "${tgt[@]}" "${raw[@]}" --rate "$rate" --duration "$secs" \
            --sockets "$STUN_SOCKETS" "$@" >"$TMP/last.out" 2>&1 || true ;;
    relay)
        local auth=(--user alice:alicepw)
        [ "$s" = forward ] && auth=()
        "${XL[@]}" "$LOAD" relay "${tgt[@]}" "${raw[@]}" "${auth[@]}" --echo-bind "$ECHO" \
            --allocations "$ALLOCS" --size "$size" --rate "$rate" --duration "$secs" "$@" \
            >"$TMP/last.out" 2>&1 || true ;;
    churn)
        "${XL[@]}" "$LOAD" churn "${tgt[@]}" --user alice:alicepw --duration "$secs" \
            --concurrency "$CHURN_CONC" --tuples fresh --loopback-sources "$CHURN_SOURCES" "$@" \
            >"$TMP/last.out" 2>&1 || true ;;
    esac
}

# Run `load` until other processes (anything outside this script's process tree, e.g.
# a build or test run on the same machine) used at most FOREIGN_MAX % of a core during
# it, at most RETRIES more times. Sets FOREIGN (that %) and DISTURBED for `record`.
measure() {
    local a f0 f1 t0 t1
    for ((a = 0; a <= RETRIES; a++)); do
        f0=$($REPORT foreign $$)
        t0=$(date +%s.%N)
        load "$@"
        f1=$($REPORT foreign $$)
        t1=$(date +%s.%N)
        FOREIGN=$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
        if awk -v f="$FOREIGN" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f <= m) }'; then
            DISTURBED=false
            return
        fi
        DISTURBED=true
        log "  (other processes used $FOREIGN % of a core during that run; again in ${RETRY_PAUSE}s)"
        sleep "$RETRY_PAUSE"
    done
}
FOREIGN=0
DISTURBED=false

record() { # test server size rate round verdict [extra JSON fields]
    local extra="{\"foreign_cpu_pct\": $FOREIGN, \"disturbed\": $DISTURBED${7:+, $7}}"
    $REPORT record "$TRIALS" "$1" "$2" "$3" "$4" "$5" "$6" "$TMP/last.out" "$extra"
}

get() { $REPORT get "$TMP/last.out" "$1"; }

# Highest rate meeting the loss criterion: steps of STEP until the first failure,
# then BISECT bisections, then a confirmation run of WINDOW seconds at the best rate
# (lowered by STEP/4 until one passes, at most CONFIRM times: a step that passed by
# luck next to the cliff should not set the rate for the measurements).
# Echoes the confirmed rate (0 if none).
#   search stun|relay SERVER SIZE STEP MAX_LOSS ROUND
search() {
    local kind=$1 s=$2 size=$3 step=$4 maxloss=$5 rnd=$6
    local pass=0 fail=0 k v rate
    for ((k = 1; k <= MAX_STEPS; k++)); do
        rate=$((k * step))
        measure "$kind" "$s" "$rate" "$SEARCH_WINDOW" "$size"
        v=$($REPORT verdict "$TMP/last.out" "$rate" "$maxloss")
        record "${kind}_search" "$s" "$size" "$rate" "$rnd" "$v"
        log "  $kind search $s ${size:+$size B }$rate/s: $v (loss $(get loss_pct) %)"
        case $v in
        pass) pass=$rate ;;
        fail) fail=$rate; break ;;
        *) break ;; # generator-limited or error: stop stepping
        esac
    done
    for ((k = 0; k < BISECT && fail > 0 && fail - pass > step / 8; k++)); do
        rate=$(((pass + fail) / 2))
        measure "$kind" "$s" "$rate" "$SEARCH_WINDOW" "$size"
        v=$($REPORT verdict "$TMP/last.out" "$rate" "$maxloss")
        record "${kind}_search" "$s" "$size" "$rate" "$rnd" "$v"
        log "  $kind search $s ${size:+$size B }$rate/s: $v (loss $(get loss_pct) %)"
        if [ "$v" = pass ]; then pass=$rate; else fail=$rate; fi
    done
    for ((k = 0; k < CONFIRM && pass > 0; k++)); do
        measure "$kind" "$s" "$pass" "$WINDOW" "$size"
        v=$($REPORT verdict "$TMP/last.out" "$pass" "$maxloss")
        [ "$v" = pass ] && v=confirmed
        record "${kind}_search" "$s" "$size" "$pass" "$rnd" "$v"
        log "  $kind search $s ${size:+$size B }$pass/s for ${WINDOW}s: $v (loss $(get loss_pct) %)"
        [ "$v" = confirmed ] && break
        pass=$((pass - step / 4))
    done
    [ "$v" = confirmed ] || pass=0
    echo "$pass"
}

start_all() { local s; for s in $SERVERS; do start_server "$s"; done; }
stop_all() { local s; for s in $SERVERS; do stop_server "$s"; done; }

# ---------------------------------------------------------------- sections

section_stun() {
    log "STUN: saturation, $ROUNDS rounds of ${WINDOW}s"
    start_all
    local r s
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in $SERVERS; do # servers interleaved, so drift hits all alike
            measure stun "$s" 0 "$WINDOW"
            record stun_sat "$s" "" 0 "$r" sat
            log "  round $r $s: $(get answered_per_s) answers/s, $(get server_cpu_pct) % CPU, $(get answered_per_cpu_s) per CPU-s"
        done
    done
    declare -A best=()
    for s in $SERVERS; do
        log "STUN: highest loss-free rate, $s"
        local b=() x
        for ((r = 1; r <= SEARCH_ROUNDS; r++)); do
            b+=("$(search stun "$s" "" "$STUN_STEP" "$STUN_LOSS" "$r")")
        done
        x=$(printf '%s\n' "${b[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        best[$s]=$x
    done
    latency stun "" "$(common_rate best 70)"
    stop_all
}

# PERCENT % of the lowest loss-free rate among the servers.
#   common_rate ARRAY_NAME PERCENT
common_rate() {
    local -n b=$1
    local s min=0
    for s in $SERVERS; do
        if [ "${b[$s]}" -gt 0 ] && { [ "$min" = 0 ] || [ "${b[$s]}" -lt "$min" ]; }; then
            min=${b[$s]}
        fi
    done
    echo $((min * $2 / 100))
}

# RTT at 70 % of each server's own loss-free rate (array `best` of the caller), and
# at one common rate for all.   latency stun|relay SIZE COMMON_RATE
latency() {
    local kind=$1 size=$2 common=$3 r s rate
    for ((r = 1; r <= LAT_ROUNDS; r++)); do
        for s in $SERVERS; do
            rate=$((best[$s] * 7 / 10))
            [ "$rate" -gt 0 ] || continue
            measure "$kind" "$s" "$rate" "$WINDOW" "$size"
            record "${kind}_lat" "$s" "$size" "$rate" "$r" lat
            log "  latency round $r $s @ $rate/s: p50 $(get rtt_us.p50) p99 $(get rtt_us.p99) µs, loss $(get loss_pct) %"
            [ "$common" -gt 0 ] || continue
            measure "$kind" "$s" "$common" "$WINDOW" "$size"
            record "${kind}_latc" "$s" "$size" "$common" "$r" lat
            log "  latency round $r $s @ $common/s (common): p50 $(get rtt_us.p50) p99 $(get rtt_us.p99) µs, loss $(get loss_pct) %"
        done
    done
}

section_relay() {
    local size r s
    start_all
    for size in $SIZES; do
        declare -A best=()
        for s in $SERVERS; do
            log "relay $size B: highest rate with <= $RELAY_LOSS % loss, $s"
            local b=() x
            for ((r = 1; r <= SEARCH_ROUNDS; r++)); do
                b+=("$(search relay "$s" "$size" "$RELAY_STEP" "$RELAY_LOSS" "$r")")
            done
            x=$(printf '%s\n' "${b[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            best[$s]=$x
        done
        log "relay $size B: pkt per CPU-second at that rate, $ROUNDS rounds"
        for ((r = 1; r <= ROUNDS; r++)); do
            for s in $SERVERS; do
                [ "${best[$s]}" -gt 0 ] || continue
                measure relay "$s" "${best[$s]}" "$WINDOW" "$size"
                record relay_cpu "$s" "$size" "${best[$s]}" "$r" cpu
                log "  round $r $s @ ${best[$s]}/s: $(get relayed_both_per_s) relayed/s, $(get server_cpu_pct) % CPU, $(get relayed_per_cpu_s) per CPU-s, loss $(get loss_pct) %"
            done
        done
        local common
        common=$(common_rate best 90)
        log "relay $size B: pkt per CPU-second at one common rate, $common/s, $ROUNDS rounds"
        for ((r = 1; r <= ROUNDS; r++)); do
            for s in $SERVERS; do
                [ "$common" -gt 0 ] || continue
                measure relay "$s" "$common" "$WINDOW" "$size"
                record relay_cpuc "$s" "$size" "$common" "$r" cpu
                log "  round $r $s @ $common/s: $(get relayed_both_per_s) relayed/s, $(get server_cpu_pct) % CPU, $(get relayed_per_cpu_s) per CPU-s, loss $(get loss_pct) %"
            done
        done
        latency relay "$size" "$(common_rate best 70)"
    done
    stop_all
}

section_churn() {
    log "churn: allocate + release, $ROUNDS rounds of ${WINDOW}s"
    local r s
    for s in $SERVERS; do [ "$s" = forward ] || start_server "$s"; done
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in $SERVERS; do
            [ "$s" = forward ] && continue
            measure churn "$s" 0 "$WINDOW"
            record churn "$s" "" 0 "$r" churn
            log "  round $r $s: $(get cycles_per_s) cycles/s, $(get server_cpu_pct) % CPU, failures $(get failures)"
        done
    done
    stop_all
}

section_memory() {
    local s n
    for s in $SERVERS; do
        [ "$s" = forward ] && continue
        for n in $MEM_SIZES; do
            # Generator and server each need one descriptor per allocation.
            local want=$n capped=false
            if [ "$n" -gt $((FD_LIMIT - 200)) ]; then
                want=$((FD_LIMIT - 200)); capped=true
            fi
            log "memory $s: $want idle allocations (requested $n, fd limit $FD_LIMIT)"
            start_server "$s" 10000 65535
            sleep 0.5
            local p=${SPID[$s]} rss0 rss1="" f0 t0
            rss0=$(rss_kb "$p")
            f0=$($REPORT foreign $$)
            t0=$(date +%s.%N)
            "${XL[@]}" "$LOAD" relay --server "$IP:${PORT[$s]}" --user alice:alicepw \
                --echo-bind "$ECHO" --allocations "$want" --loopback-sources "$MEM_SOURCES" \
                --partial --rate 1 --size 200 --duration 4 >"$TMP/last.out" 2>"$TMP/mem.err" &
            local lp=$!
            PIDS+=("$lp")
            while kill -0 "$lp" 2>/dev/null; do
                if grep -q '^setup:' "$TMP/last.out"; then
                    sleep 1.5
                    rss1=$(rss_kb "$p")
                    break
                fi
                sleep 0.2
            done
            wait "$lp" || true
            FOREIGN=$(awk -v a="$f0" -v b="$($REPORT foreign $$)" -v s="$t0" -v e="$(date +%s.%N)" \
                'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
            DISTURBED=false
            record memory "$s" "" 0 1 mem \
                "\"requested\": $n, \"capped\": $capped, \"rss_before_kb\": $rss0, \"rss_after_kb\": ${rss1:-null}"
            log "  $s: RSS $rss0 -> ${rss1:-?} kB with $(get allocations_opened) allocations (setup $(get setup_ms) ms, failures $(get setup_failures))"
            stop_server "$s"
        done
    done
}

START=$(date +%s)
for sec in $SECTIONS; do
    "section_$sec"
done

COTURN_VERSION=$(turnserver --version 2>/dev/null | head -1 || true)
META=$(python3 - "$THREADS" "$ROUNDS" "$LAT_ROUNDS" "$SEARCH_ROUNDS" "$WINDOW" "$SEARCH_WINDOW" \
    "$ALLOCS" "$FD_LIMIT" "$COTURN_VERSION" "$(uname -r)" "$(nproc)" "$START" \
    "$SB_VERSION" \
    "$STUN_LOSS" "$RELAY_LOSS" "$CHURN_CONC" "$CHURN_SOURCES" "$STUN_SOCKETS" \
    "$SERVER_CPUS" "$LOAD_CPUS" <<'PY'
import json, sys, time
a = sys.argv[1:]
print(json.dumps({
    "threads": int(a[0]), "rounds": int(a[1]), "latency_rounds": int(a[2]),
    "search_rounds": int(a[3]), "window_s": float(a[4]), "search_window_s": float(a[5]),
    "relay_allocations": int(a[6]), "fd_limit": int(a[7]), "coturn_version": a[8],
    "kernel": a[9], "cpus": int(a[10]),
    "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(int(a[11]))),
    "duration_s": int(time.time()) - int(a[11]), "switchboard_version": a[12],
    "stun_loss_pct": float(a[13]), "relay_loss_pct": float(a[14]),
    "churn_concurrency": int(a[15]), "churn_sources": int(a[16]), "stun_sockets": int(a[17]),
    "server_cpus": a[18] or None, "load_cpus": a[19] or None,
}))
PY
)
mkdir -p "$(dirname "$OUT")"
$REPORT aggregate "$TRIALS" "$META" >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cp "$TRIALS" "${OUT%.json}.trials.jsonl"
mkdir -p "${OUT%.json}.logs"
cp "$TMP"/*.log "${OUT%.json}.logs/" 2>/dev/null || true
echo
$REPORT summary "$OUT"
echo
echo "results: $OUT ($(($(date +%s) - START)) s)"
