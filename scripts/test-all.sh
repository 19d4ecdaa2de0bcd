#!/usr/bin/env bash
# Install the test prerequisites (Debian packages) and run every test.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
command -v turnutils_uclient >/dev/null 2>&1 || missing+=(coturn)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test prerequisites: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/switchboard-test.log | grep -E '^(test result|running|error|failures|---- )|FAILED|panicked' || true
status=${PIPESTATUS[0]}
echo "== browser tests (Chromium, loopback-only network namespace)"
set +e
tests/browser/run.sh 2>&1 | tee /tmp/switchboard-browser.log | grep -E '^(✔|✖|▶|browser:|==)|not ok|Error' 
bstatus=${PIPESTATUS[0]}
echo "== NAT traversal matrix (Chromium pairs across the namespace NAT lab; writes docs/nat-matrix.md)"
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" ${SUDO:+$SUDO -E} tests/nat/matrix.sh 2>&1 | tee /tmp/switchboard-matrix.log | grep -E '^(ok|FAIL|nat matrix:|nat lab)'
mstatus=${PIPESTATUS[0]}
# The matrix did not even start (it prints its own count otherwise): count that as a failure.
if [ "$mstatus" != 0 ] && ! grep -q '^nat matrix: [0-9]* passed' /tmp/switchboard-matrix.log; then
  echo "nat matrix: 0 passed, 1 failed (did not run, exit $mstatus)" | tee -a /tmp/switchboard-matrix.log
fi
set -e
awk '/^test result/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^(browser|nat matrix): [0-9]+ passed/ { n = ($1 == "nat") ? 3 : 2; p += $n; f += $(n + 2) }
     END { printf "%d passed, %d failed\n", p, f }' /tmp/switchboard-test.log /tmp/switchboard-browser.log /tmp/switchboard-matrix.log
[ "$status" = 0 ] && status=$bstatus
[ "$status" = 0 ] && status=$mstatus
exit "$status"
