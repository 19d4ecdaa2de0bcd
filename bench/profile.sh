#!/usr/bin/env bash
# Where Switchboard's CPU time goes under the bench/run.sh loads: `perf record -g` on
# the server process while `switchboard-load` drives it, then `perf report` by DSO
# (kernel vs. our binary vs. libc) and by symbol.
#
#   sudo bench/profile.sh                 # STUN at saturation, relay 200 B at 100k pkt/s
#   sudo SERVER=coturn bench/profile.sh   # the same for coturn (or SERVER=forward)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${NS:-sbprof}
SERVER=${SERVER:-switchboard}
THREADS=${THREADS:-1}
SECS=${SECS:-5}
RELAY_RATE=${RELAY_RATE:-100000}
SIZE=${SIZE:-200}
OUTDIR=${OUTDIR:-$ROOT/bench/results/profile}
SB=${SB:-$ROOT/target/release/switchboard}   # another build: SB=path
LOAD=$ROOT/target/release/switchboard-load
X=(ip netns exec "$NS")
# shellcheck source=bench/netns.sh
. "$ROOT/bench/netns.sh"
PORT=3478
ECHO=127.0.0.1:3490

command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
netns_setup sbprof
mkdir -p "$OUTDIR"

case $SERVER in
switchboard)
    "${X[@]}" "$SB" serve --listening-ip 127.0.0.1 --listening-port $PORT --threads "$THREADS" \
        --metrics-listen off --log warn --user alice:alicepw --allowed-peer-ip 127.0.0.1 \
        </dev/null >"$TMP/server.log" 2>&1 &
    RAW=() ;;
coturn)
    "${X[@]}" turnserver -n --listening-ip=127.0.0.1 --listening-port=$PORT -m "$THREADS" \
        --lt-cred-mech --user=alice:alicepw --realm=bench.test --fingerprint \
        --allow-loopback-peers --no-tls --no-dtls --no-cli --userdb="$TMP/turndb" \
        --pidfile="$TMP/turn.pid" --log-file="$TMP/turn.log" --simple-log --no-stdout-log \
        </dev/null >/dev/null 2>&1 &
    RAW=() ;;
forward)
    "${X[@]}" "$LOAD" forward --listen 127.0.0.1:$PORT --threads "$THREADS" --peer $ECHO \
        </dev/null >"$TMP/server.log" 2>&1 &
    RAW=(--raw) ;;
*) echo "SERVER must be switchboard, coturn or forward" >&2; exit 1 ;;
esac
SP=$!
PIDS+=("$SP")
sleep 1

profile() { # name, then the switchboard-load arguments
    local name=$1
    shift
    "${X[@]}" "$LOAD" "$@" >"$TMP/load.out" 2>&1 &
    local lp=$!
    PIDS+=("$lp")
    sleep 0.5 # past the relay setup
    perf record -q -g -p "$SP" -o "$OUTDIR/$SERVER-$name.data" -- sleep $((SECS - 2)) 2>/dev/null
    wait "$lp" || true
    echo "== $SERVER, $name: $(grep -E '^(sent|RTT)' "$TMP/load.out" | tr '\n' ' ')"
    perf report -i "$OUTDIR/$SERVER-$name.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -8 || true
    echo "-- top symbols"
    perf report -i "$OUTDIR/$SERVER-$name.data" --no-children --sort sym --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -"${TOP:-15}" || true
}

AUTH=(--user alice:alicepw)
[ "$SERVER" = forward ] && AUTH=()
profile stun stun --server 127.0.0.1:$PORT "${RAW[@]}" --rate 0 --duration "$SECS"
profile relay relay --server 127.0.0.1:$PORT "${RAW[@]}" "${AUTH[@]}" --echo-bind $ECHO \
    --allocations 32 --size "$SIZE" --rate "$RELAY_RATE" --duration "$SECS"
