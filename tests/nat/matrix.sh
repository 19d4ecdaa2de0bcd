#!/usr/bin/env bash
# The NAT traversal matrix (tests/nat/matrix.mjs): Chromium pairs across every pair of NAT
# kinds of the lab, with STUN only and with STUN + TURN; writes its table to
# target/nat-matrix.md and fails when the verdicts differ from docs/nat-matrix.md.
#
#   sudo tests/nat/matrix.sh                          # the whole matrix (30 cases)
#   sudo NAT_MATRIX_ONLY='symmetric' tests/nat/matrix.sh   # cases whose name matches
#
# Env: SWITCHBOARD_BIN (default target/debug/switchboard, built when unset), CHROMIUM
# (default /usr/bin/chromium), NAT_MATRIX_DOC (default target/nat-matrix.md; - for none),
# NAT_MATRIX_VERBOSE=1, NAT_MATRIX_FAIL_LANES (calls predicted to fail run this many at
# once, default 4). Needs root, iproute2, iptables, node and Chromium; uses the
# playwright-core of tests/browser (npm ci there when missing). Prints
# `nat matrix: N passed, M failed, H harness failures` and exits non-zero when a case was
# not as predicted or the harness could not run it (Chromium did not start, a page did
# not load, within the limits of tests/browser/chromium.mjs).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
fail() { echo "nat matrix: $*" >&2; echo "nat matrix: 0 passed, 0 failed, 1 harness failures"; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces): run it with sudo"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM (apt-get install chromium)"
command -v node >/dev/null || fail "node is missing (apt-get install nodejs npm)"
if [ ! -f "$ROOT/tests/browser/node_modules/playwright-core/package.json" ]; then
  (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in tests/browser failed"
fi
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  export SWITCHBOARD_BIN="$ROOT/target/debug/switchboard"
  (cd "$ROOT" && cargo build -q --locked -p switchboard) || { echo "nat matrix: 0 passed, 1 failed, 0 harness failures (cargo build -p switchboard failed)"; exit 1; }
fi
NATLAB_SERVER=none NATLAB_TWINS=1 exec "$HERE/lab.sh" run node "$HERE/matrix.mjs"
