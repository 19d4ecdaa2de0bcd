# Sourced by bench/soak.sh and bench/soak_heap.sh after netns_setup: the server both run,
# with the same flags, so that the heap profile is the soak's server.
#   soak_server [WRAPPER...]   start it in $NS (under WRAPPER, e.g. heaptrack), log in
#                              $TMP/server.log, wait for /metrics; sets SOAK_PID
# Needs SB (the binary), HEAP_TRIM, X (the netns exec prefix), TMP and PIDS.

soak_server() {
    # A private copy of the binary: RssFile counts the binary's pages this process maps,
    # and the kernel maps neighbours already in the page cache on each fault, so another
    # process running the same file (a test, a second server) would move this one's RSS.
    cp "$SB" "$TMP/switchboard"
    "${X[@]}" "$@" "$TMP/switchboard" serve --listening-ip 127.0.0.1 -p 3478 \
        --http-listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:9641 \
        --static-auth-secret soak-secret --allowed-peer-ip 127.0.0.1 \
        --max-allocate-lifetime 120 --heap-trim "$HEAP_TRIM" \
        --log warn,switchboard::heap=debug >"$TMP/server.log" 2>&1 &
    PIDS+=("$!")
    local _
    for _ in $(seq 100); do
        "${X[@]}" python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9641/metrics", timeout=1)' 2>/dev/null && break
        sleep 0.2
    done
    # The server's own pid (ip netns exec execs it; a wrapper may fork it).
    SOAK_PID=$(pgrep -n -f "^$TMP/switchboard serve") \
        || { echo "the server did not start:" >&2; cat "$TMP/server.log" >&2; exit 1; }
}

# How long each malloc_trim took (the server logs it at debug level).
soak_trim_summary() {
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/server.log" | sed -nE 's/.*heap trimmed.* micros=([0-9]+).*/\1/p' | sort -n \
        | awk -v who="$1" '{ v[NR] = $1 } END { if (NR) printf "%s: %d heap trims, median %d us, max %d us\n", who, NR, v[int((NR + 1) / 2)], v[NR] }'
}
