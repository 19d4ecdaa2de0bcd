# Sourced by the benchmark scripts: a loopback-only network namespace $NS for one run,
# and a scratch folder $TMP, both removed on exit together with every process in PIDS.
#   netns_setup PREFIX     (needs root; refuses if $NS exists)
#   wait_tcp PORT          (until something listens on it in $NS; wait_listen udp PORT)
#   wait_quiet             (until the rest of the machine is quiet, see below)

netns_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}

netns_setup() {
    [ "$(id -u)" = 0 ] || { echo "run as root (network namespace)" >&2; exit 1; }
    if ip netns list | grep -qw "$NS"; then
        echo "network namespace $NS exists already (another run?); remove it first" >&2
        exit 1
    fi
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap netns_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns add "$NS"
    ip -n "$NS" link set lo up
}

# Wait (at most QUIET_WAIT s) until other processes use at most FOREIGN_MAX % of a core
# over 2 s: a build or test run elsewhere on the box would distort every figure. Uses the
# caller's $REPORT (bench/report.py) and log().
wait_quiet() {
    local waited=0 a b f
    while :; do
        a=$($REPORT foreign $$)
        sleep 2
        b=$($REPORT foreign $$)
        f=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f", 100 * (b - a) / 2 }')
        [ "$f" -le "$FOREIGN_MAX" ] && return 0
        waited=$((waited + 2))
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            log "  other processes still use $f % of a core; going on"
            return 0
        fi
        [ $((waited % 30)) -ne 0 ] || log "  waiting for other processes to go quiet ($f % of a core)"
    done
}

# Until something listens on `port` (tcp or udp) in $NS (10 s at most). Uses the caller's
# $X (`ip netns exec "$NS"`).
wait_listen() { # tcp|udp port
    local i flags=-Htln
    [ "$1" = udp ] && flags=-Huln
    for i in $(seq 200); do
        "${X[@]}" ss "$flags" "sport = :$2" | grep -q . && return 0
        sleep 0.05
    done
    echo "nothing listens on ${1^^} port $2" >&2
    return 1
}
wait_tcp() { wait_listen tcp "$1"; }
