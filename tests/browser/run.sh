#!/usr/bin/env bash
# Chromium end-to-end tests of Switchboard's web app and SDK.
#
#   tests/browser/run.sh                      # every tests/browser/*.test.mjs
#   tests/browser/run.sh call.test.mjs        # some files
#   SB_TEST_PATTERN='glare' tests/browser/run.sh   # tests whose name matches
#   SCREENSHOTS=1 tests/browser/run.sh        # also regenerate docs/screenshots/*.png
#   SCREENSHOTS=only tests/browser/run.sh     # only the screenshots
#
# Env: SWITCHBOARD_BIN (default target/debug/switchboard, built with cargo when unset),
#      SB_VIA_JINGLE (the SDP <-> Jingle round trip of jingle.test.mjs; default
#      target/debug/examples/via_jingle, built with cargo when unset, like the server),
#      CHROMIUM (default /usr/bin/chromium), SB_VERBOSE=1 (server and page logs on stderr),
#      SB_ARTIFACTS (failure screenshots and logs; default tests/browser/artifacts).
#
# Everything runs inside a fresh loopback-only network namespace (Chromium then gathers only
# 127.0.0.1 candidates and nothing leaves the machine); it is removed on exit together with
# any process left in it. Needs root (or sudo) for `ip netns`. Prints
# `browser: N passed, M failed, H harness failures` (a harness failure: Chromium did not
# start, or a page did not load, within the harness's own limits; see chromium.mjs) and
# exits non-zero when a test failed either way.
set -euo pipefail
CALLER_PWD="$PWD"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$HERE"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo -E"; fi

# --- prerequisites: Debian's Chromium, node, the pinned playwright-core ----------------------
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "installing chromium (Debian package)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# trapezoid.test.mjs runs two of Debian's prosody servers (XMPP federation; lua-unbound reads their hosts file).
if ! command -v prosody >/dev/null 2>&1; then
  echo "installing prosody (Debian package)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody lua-unbound >/dev/null
fi
for tool in node npm ip ss; do
  command -v "$tool" >/dev/null 2>&1 || { echo "browser: 0 passed, 0 failed, 1 harness failures"; echo "harness failure in setup: $tool is missing"; exit 1; }
done
if [ ! -f node_modules/playwright-core/package.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci (tests/browser)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# --- the server binary ------------------------------------------------------------------------
build() {
  (cd "$ROOT" && cargo build -q -p switchboard) || { echo "cargo build -p switchboard failed"; echo "browser: 0 passed, 1 failed, 0 harness failures"; exit 1; }
}
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  export SWITCHBOARD_BIN="$ROOT/target/debug/switchboard"
  echo "== cargo build -p switchboard"
  build
else
  case "$SWITCHBOARD_BIN" in /*) ;; *) SWITCHBOARD_BIN="$CALLER_PWD/$SWITCHBOARD_BIN" ;; esac
  export SWITCHBOARD_BIN
  if [ ! -x "$SWITCHBOARD_BIN" ]; then
    echo "== cargo build -p switchboard (SWITCHBOARD_BIN=$SWITCHBOARD_BIN missing)"
    build
  fi
fi
[ -x "$SWITCHBOARD_BIN" ] || { echo "no switchboard binary at $SWITCHBOARD_BIN"; echo "browser: 0 passed, 1 failed, 0 harness failures"; exit 1; }

# --- the via_jingle example (jingle.test.mjs), built the same way ------------------------------
build_via_jingle() {
  (cd "$ROOT" && cargo build -q -p switchboard-xmpp --example via_jingle) || { echo "cargo build -p switchboard-xmpp --example via_jingle failed"; echo "browser: 0 passed, 1 failed, 0 harness failures"; exit 1; }
}
if [ -z "${SB_VIA_JINGLE:-}" ]; then
  export SB_VIA_JINGLE="$ROOT/target/debug/examples/via_jingle"
  echo "== cargo build -p switchboard-xmpp --example via_jingle"
  build_via_jingle
else
  case "$SB_VIA_JINGLE" in /*) ;; *) SB_VIA_JINGLE="$CALLER_PWD/$SB_VIA_JINGLE" ;; esac
  export SB_VIA_JINGLE
  if [ ! -x "$SB_VIA_JINGLE" ]; then
    echo "== cargo build -p switchboard-xmpp --example via_jingle (SB_VIA_JINGLE=$SB_VIA_JINGLE missing)"
    build_via_jingle
  fi
fi
[ -x "$SB_VIA_JINGLE" ] || { echo "no via_jingle binary at $SB_VIA_JINGLE"; echo "browser: 0 passed, 1 failed, 0 harness failures"; exit 1; }

# --- loopback-only network namespace ----------------------------------------------------------
NS="sbtest-$$-$RANDOM"
LOG="$(mktemp /tmp/switchboard-browser.XXXXXX.log)"
cleanup() {
  set +e
  trap - EXIT INT TERM
  # Anything still running in the namespace was started by this run: end it by pid.
  for sig in TERM KILL; do
    pids=$($SUDO ip netns pids "$NS" 2>/dev/null)
    [ -z "$pids" ] && break
    for p in $pids; do $SUDO kill -s "$sig" "$p" 2>/dev/null; done
    sleep 1
  done
  $SUDO ip netns del "$NS" 2>/dev/null
  $SUDO rm -rf "/etc/netns/$NS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
$SUDO ip netns add "$NS"
$SUDO ip -n "$NS" link set lo up
$SUDO mkdir -p "/etc/netns/$NS"
echo "nameserver 127.0.0.1" | $SUDO tee "/etc/netns/$NS/resolv.conf" >/dev/null

in_ns() { $SUDO ip netns exec "$NS" "$@"; }

status=0
if [ "${SCREENSHOTS:-}" != only ]; then
  if [ $# -gt 0 ]; then files=("$@"); else files=(*.test.mjs); fi
  SUMMARY="$(mktemp /tmp/switchboard-browser-summary.XXXXXX)"
  args=(--test --test-concurrency=1 --test-timeout=180000
        --test-reporter=spec --test-reporter-destination=stdout
        --test-reporter=./summary-reporter.mjs --test-reporter-destination="$SUMMARY")
  [ -n "${SB_TEST_PATTERN:-}" ] && args+=(--test-name-pattern="$SB_TEST_PATTERN")
  echo "== node --test ${files[*]} (netns $NS)"
  set +e
  in_ns timeout --kill-after=10 1500 node "${args[@]}" "${files[@]}" 2>&1 | tee "$LOG"
  status=${PIPESTATUS[0]}
  set -e
  # Verdicts and harness failures (Chromium did not start, a page did not load: see
  # chromium.mjs) are counted apart; either fails the run.
  read -r pass fail harness < <(sed -n 's/^browser: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) harness failures$/\1 \2 \3/p' "$SUMMARY") || true
  if [ -z "${pass:-}" ]; then
    pass=0 fail=0 harness=1
    echo "harness failure in the runner: node --test exited $status before reporting (timeout or crash)" >>"$SUMMARY"
  elif [ "$status" != 0 ] && [ "$fail" = 0 ] && [ "$harness" = 0 ]; then
    harness=1
    echo "harness failure in the runner: node --test exited $status with no failed test (timeout or crash)" >>"$SUMMARY"
  fi
  echo "browser: $pass passed, $fail failed, $harness harness failures"
  grep '^harness failure in' "$SUMMARY" || true
  rm -f "$SUMMARY"
  todo=$(sed -n 's/^ℹ todo \([0-9]*\)$/\1/p' "$LOG" | tail -1)
  if [ "${todo:-0}" != 0 ]; then
    echo "(browser: $todo test(s) marked todo for known bugs, not counted above; see tests/browser/README.md)"
  fi
fi

if [ -n "${SCREENSHOTS:-}" ]; then
  echo "== screenshots"
  in_ns timeout --kill-after=10 180 node screenshots.mjs || status=1
fi
rm -f "$LOG"
exit "$status"
