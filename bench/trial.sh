# Sourced by bench/sfu.sh and bench/sip-janus.sh: the end of one trial, after the load
# client returned. Needs the caller's `log`, `stop_server`, $REPORT, $TMP, $SPID,
# $FOREIGN_MAX and $RETRIES.
#
#   trial_end SERVER F0 T0   stop the server and judge the run: sets `foreign` (% of a
#                            core other processes used since F0/T0), `alive` and
#                            `disturbed` (foreign over FOREIGN_MAX)
#   trial_retry ATTEMPT      after recording it: returns 0 when the trial stands, else
#                            logs that it is repeated (or kept, marked disturbed) and 1

trial_end() {
    local s=$1 f0=$2 t0=$3 f1 t1
    f1=$($REPORT foreign $$)
    t1=$(date +%s.%N)
    alive=true
    kill -0 "$SPID" 2>/dev/null || alive=false
    stop_server
    cat "$TMP/$s.log" >>"$TMP/$s.all.log" 2>/dev/null || true
    sed 's/^/    /' "$TMP/last.err" | head -5 >&2
    foreign=$(awk -v a="$f0" -v b="$f1" -v s="$t0" -v e="$t1" \
        'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
    [ "$alive" = true ] || log "  $s DIED during the run (see its log)"
    disturbed=false
    awk -v f="$foreign" -v m="$FOREIGN_MAX" 'BEGIN { exit !(f <= m) }' || disturbed=true
}

trial_retry() {
    [ "$disturbed" = true ] || return 0
    if [ "$1" -lt "$RETRIES" ]; then
        log "  (other processes used $foreign % of a core during that run; again)"
    else
        log "  (other processes used $foreign % of a core during that run; kept, marked disturbed)"
    fi
    return 1
}
