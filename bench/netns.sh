# Sourced by the benchmark scripts: a loopback-only network namespace $NS for one run,
# and a scratch folder $TMP, both removed on exit together with every process in PIDS.
#   netns_setup PREFIX     (needs root; refuses if $NS exists)

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
