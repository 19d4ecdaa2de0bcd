#!/usr/bin/env bash
# The independent Jingle peer (jingle_peer.py) proven against itself over real XMPP
# federation: two Debian prosody servers in a private network namespace, a.test on
# 127.0.0.1 and b.test on 127.0.0.2, s2s (dialback) between them, with the config every
# federation lab renders (prosody.cfg.lua.in; its Switchboard components stay unused
# here). carol@b.test calls dave@a.test: JMI and Jingle cross both servers (candidates
# trickled by transport-info), both peers must decode audio and video (at least
# MIN_FRAMES frames of each, the far end's 440 Hz tone audible);
# then dave declines a second call and carol must see "decline", a call to nobody@a.test
# must end "unreachable", a wrong password must be exit 3, and a SIGTERM must end a call
# with session-terminate on both sides.
#
# Usage: sudo tests/federation/jingle-peer-lab.sh      (root: unshare -n, prosody as root)
#   MIN_FRAMES=50 SECONDS_OF_MEDIA=6 KEEP=1 (keep the temp dir with logs)
#   CALLER_ARGS="--media-file clip.webm" (carol sends a file; its audio must not be silent)
# Needs: apt-get install prosody python3-slixmpp python3-aiortc jq
# Exit: 0 both decoded and the decline was seen; 1 a check failed; 2 "harness:" (no root,
# a missing tool, prosody not listening within 20 s): not a verdict on the peer.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
MIN_FRAMES=${MIN_FRAMES:-50}
SECONDS_OF_MEDIA=${SECONDS_OF_MEDIA:-6}
PY=${PY:-/usr/bin/python3}

harness() { echo "harness: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || harness "needs root (unshare -n, prosody run_as_root)"
for tool in prosody prosodyctl jq ip unshare "$PY"; do
    command -v "$tool" >/dev/null || harness "$tool is not installed"
done
"$PY" -c 'import slixmpp, aiortc' 2>/dev/null || harness "python3-slixmpp or python3-aiortc missing"

if [ -z "${JPEER_LAB_NETNS:-}" ]; then
    exec unshare -n env JPEER_LAB_NETNS=1 "$0" "$@"
fi

ip link set lo up || harness "ip link set lo up"
# 127.0.0.2 as an address of its own: aioice gathers every interface address except
# 127.0.0.1, so this is the peers' host candidate.
ip addr add 127.0.0.2/8 dev lo || harness "ip addr add 127.0.0.2/8 dev lo"

dir=$(mktemp -d /tmp/jpeer-lab.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "logs kept in $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

printf '127.0.0.1 a.test\n127.0.0.2 b.test\n' >"$dir/hosts"

start_prosody() { # name ip
    local name=$1 ip=$2 home="$dir/$1"
    mkdir -p "$home/data"
    # The config every federation lab runs (prosody.cfg.lua.in, see its header).
    local cfg
    cfg=$(<"$here/prosody.cfg.lua.in") || harness "no $here/prosody.cfg.lua.in"
    cfg=${cfg//@HOME@/$home}
    cfg=${cfg//@LOG@/$home/prosody.log}
    cfg=${cfg//@IP@/$ip}
    cfg=${cfg//@DOMAIN@/$name.test}
    cfg=${cfg//@HOSTS@/$dir/hosts}
    cfg=${cfg//@SECRET@/jingle-peer-lab}
    if [[ $cfg =~ @[A-Z]+@ ]]; then harness "prosody.cfg.lua.in: no value for ${BASH_REMATCH[0]}"; fi
    printf '%s\n' "$cfg" >"$home/prosody.cfg.lua"
    prosody --config "$home/prosody.cfg.lua" -F </dev/null >"$home/stdout.log" 2>&1 &
    pids+=($!)
}

wait_port() { # ip port name
    local deadline=$((SECONDS + 20))
    until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || harness "prosody $3 did not listen on $1:$2 within 20 s: $(tail -5 "$dir/$3/prosody.log" 2>/dev/null)"
        sleep 0.1
    done
}

start_prosody a 127.0.0.1
start_prosody b 127.0.0.2
wait_port 127.0.0.1 5222 a
wait_port 127.0.0.2 5222 b
prosodyctl --config "$dir/a/prosody.cfg.lua" register dave a.test pw >/dev/null 2>&1 || harness "prosodyctl register dave"
prosodyctl --config "$dir/b/prosody.cfg.lua" register carol b.test pw >/dev/null 2>&1 || harness "prosodyctl register carol"

peer() { # out-file jid server args...
    local out=$1 jid=$2 server=$3
    shift 3
    timeout 120 "$PY" "$here/jingle_peer.py" --jid "$jid" --password pw --server "$server" \
        --timeout 30 --min-frames "$MIN_FRAMES" "$@" >"$out" 2>"$out.err"
}
# For `&`: the background job is then `timeout` itself, which passes a SIGTERM on.
peer_bg() {
    local out=$1 jid=$2 server=$3
    shift 3
    exec timeout 120 "$PY" "$here/jingle_peer.py" --jid "$jid" --password pw --server "$server" \
        --timeout 30 --min-frames "$MIN_FRAMES" "$@" >"$out" 2>"$out.err"
}

wait_line() { # file event
    local deadline=$((SECONDS + 20))
    until grep -q "\"event\": \"$2\"" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "no $2 in $1: $(cat "$1" "$1.err")" >&2; return 1; }
        sleep 0.1
    done
}

failed=0
check() { # description, command...
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; failed=1; fi
}

# 1. carol@b.test calls dave@a.test; carol hangs up after SECONDS_OF_MEDIA.
# Both trickle their candidates by transport-info (none in initiate/accept).
peer_bg "$dir/dave.out" dave@a.test/peer 127.0.0.1:5222 --seconds 60 --trickle answer &
dave=$!
wait_line "$dir/dave.out" connected || failed=1
# shellcheck disable=SC2086 # CALLER_ARGS: extra peer options for carol, e.g. --media-file F
peer "$dir/carol.out" carol@b.test/peer 127.0.0.2:5222 --seconds "$SECONDS_OF_MEDIA" --trickle ${CALLER_ARGS:-} call dave@a.test
carol_rc=$?
wait $dave
dave_rc=$?
for who in carol dave; do
    echo "--- $who:"
    grep -v '"remote_candidate"' "$dir/$who.out"
    echo "(and $(grep -c '"remote_candidate"' "$dir/$who.out") remote_candidate lines)"
done
last_media() { grep '"event": "media"' "$1" | tail -1; }
decoded() { # file: at least MIN_FRAMES video and audio frames, a real picture, the tone
    last_media "$1" | jq -e --argjson n "$MIN_FRAMES" \
        '.video_frames >= $n and .audio_frames >= $n and .width > 0 and .audio_rms > 0.05' >/dev/null
}
check "carol (caller) exit 0, got $carol_rc" test "$carol_rc" = 0
check "dave (callee) exit 0, got $dave_rc" test "$dave_rc" = 0
check "carol rang and was accepted" grep -q '"event": "ringing"' "$dir/carol.out"
trickled() { grep -q '"remote_candidate"' "$dir/carol.out" && grep -q '"remote_candidate"' "$dir/dave.out"; }
check "both got the other's candidates by transport-info" trickled
check "carol decoded >= $MIN_FRAMES video and audio frames" decoded "$dir/carol.out"
check "dave decoded >= $MIN_FRAMES video and audio frames" decoded "$dir/dave.out"
check "dave saw carol hang up" grep -q '"reason": "success", "by": "remote"' "$dir/dave.out"

# 2. dave declines; carol sees it.
peer_bg "$dir/dave2.out" dave@a.test/peer 127.0.0.1:5222 answer --reject decline &
dave=$!
wait_line "$dir/dave2.out" connected || failed=1
peer "$dir/carol2.out" carol@b.test/peer 127.0.0.2:5222 call dave@a.test
carol_rc=$?
wait $dave
dave_rc=$?
echo "--- decline: carol:"
cat "$dir/carol2.out"
check "declined: carol exit 1 (no call), got $carol_rc" test "$carol_rc" = 1
check "declined: dave exit 0, got $dave_rc" test "$dave_rc" = 0
check "declined: carol saw decline" grep -q '"reason": "decline", "by": "remote"' "$dir/carol2.out"

# 3. Nobody of that name at a.test: the propose bounces across s2s.
peer "$dir/carol3.out" carol@b.test/peer 127.0.0.2:5222 call nobody@a.test
carol_rc=$?
echo "--- unknown user: carol: $(grep '"ended"' "$dir/carol3.out")"
check "unknown user: carol exit 1, got $carol_rc" test "$carol_rc" = 1
check "unknown user: carol saw unreachable" grep -q '"reason": "unreachable' "$dir/carol3.out"

# 4. A wrong password is exit 3 with a JSON error line.
peer "$dir/carol4.out" carol@b.test/peer 127.0.0.2:5222 --password wrong call dave@a.test
carol_rc=$?
echo "--- wrong password: $(cat "$dir/carol4.out")"
check "wrong password: exit 3, got $carol_rc" test "$carol_rc" = 3
error_line() { jq -e 'select(.event == "error") | .exit == 3' "$dir/carol4.out" >/dev/null; }
check "wrong password: a JSON error line" error_line

# 5. SIGTERM ends a call cleanly: dave (callee) is stopped after 3 s of media.
peer_bg "$dir/dave5.out" dave@a.test/peer 127.0.0.1:5222 --seconds 60 --min-frames 1 answer &
dave=$!
wait_line "$dir/dave5.out" connected || failed=1
peer_bg "$dir/carol5.out" carol@b.test/peer 127.0.0.2:5222 --seconds 60 --min-frames 1 call dave@a.test &
carol=$!
wait_line "$dir/dave5.out" media && sleep 3
kill -TERM "$dave"
wait $dave
dave_rc=$?
wait $carol
carol_rc=$?
echo "--- SIGTERM: dave: $(grep '"ended"' "$dir/dave5.out"); carol: $(grep '"ended"' "$dir/carol5.out")"
check "SIGTERM: dave exit 0, got $dave_rc" test "$dave_rc" = 0
check "SIGTERM: carol exit 0, got $carol_rc" test "$carol_rc" = 0
check "SIGTERM: dave hung up" grep -q '"reason": "success", "by": "local"' "$dir/dave5.out"
check "SIGTERM: carol saw it" grep -q '"reason": "success", "by": "remote"' "$dir/carol5.out"

# The stanzas crossed s2s (dialback) both ways.
for name in a b; do
    check "prosody $name: an outgoing s2s connection completed" \
        grep -q 's2sout.*complete\|complete.*s2sout' "$dir/$name/prosody.log"
done
exit $failed
