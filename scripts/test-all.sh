#!/usr/bin/env bash
# Install the test prerequisites (Debian packages) and run every test.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
command -v turnutils_uclient >/dev/null 2>&1 || missing+=(coturn)
# crates/media links Debian's libopus (the SIP gateway's Opus transcoding), found by pkg-config.
pkg-config --exists opus 2>/dev/null || missing+=(libopus-dev pkg-config)
# crates/media's DTLS-SRTP (the SIP gateway's DTLS phone leg) links Debian's OpenSSL.
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v kamailio >/dev/null 2>&1 || missing+=(kamailio) # crates/sip/tests/registrar.rs (--ignored)
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/websocket.so ] || missing+=(kamailio-websocket-modules) # tests/browser/jssip-federation.test.mjs
command -v prosody >/dev/null 2>&1 || missing+=(prosody lua-unbound) # crates/xmpp/tests/prosody.rs (--ignored), tests/browser/trapezoid.test.mjs
command -v baresip >/dev/null 2>&1 || missing+=(baresip-core) # crates/sip/tests/baresip_call.rs (--ignored)
/usr/bin/python3 -c 'import aiortc, websockets' >/dev/null 2>&1 || missing+=(python3-aiortc python3-websockets) # tests/browser/interop.test.mjs
/usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || missing+=(python3-slixmpp) # tests/browser/jingle-peer.test.mjs, tests/federation/jingle-peer-lab.sh
/usr/bin/python3 -c 'import pylibsrtp' >/dev/null 2>&1 || missing+=(python3-pylibsrtp) # crates/media SRTP interop (--ignored)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester) # tests/sip (--ignored)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server) # crates/cluster tests
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test prerequisites: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

started=$(date +%s)
# Logs of this run (not fixed names: two runs at once must not mix).
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/switchboard-test-all.XXXXXX")"

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
(cd fuzz && cargo clippy --locked --quiet -- -D warnings)
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# From here on a failing step does not stop the run: every part reports, and the exit
# status says whether any failed. (PIPESTATUS is read right after each pipeline: an
# `|| true` behind it would replace cargo's status with its own.)
set +e
# The test binaries `cargo test` builds, two at a time (scripts/test-lanes.py: they wait on
# timers and peers far more than they compute), then the doc tests.
echo "== cargo test (hermetic: no root, coturn or network namespaces)"
scripts/test-lanes.py --lanes 2 2>&1 | tee "$LOGS/test.log" | grep -E '^(test result|running|error|failures|---- |test-lanes)|FAILED|panicked'
status=${PIPESTATUS[0]}
cargo test --workspace --locked --doc 2>&1 | tee -a "$LOGS/test.log" | grep -E '^(test result|error|failures|---- )|FAILED|panicked'
dtstatus=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$dtstatus
# The tests `cargo test` leaves out (#[ignore]): interop with coturn's client tools, SIPp,
# baresip, kamailio and prosody, and the namespace labs (root, iptables). Their results
# count like the others.
echo "== cargo test -- --ignored (coturn, SIP and XMPP interop, NAT and cluster labs)"
scripts/test-lanes.py --lanes 2 -- --ignored 2>&1 | tee -a "$LOGS/test.log" | grep -E '^(test result|running|error|failures|---- |test-lanes)|FAILED|panicked'
istatus=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$istatus
echo "== NAT matrix table comparison (unit check, node --test)"
node --test tests/nat/matrix-doc.test.mjs >"$LOGS/matrix-doc.log" 2>&1
dstatus=$?
dpass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$LOGS/matrix-doc.log")
dfail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$LOGS/matrix-doc.log")
if [ -z "$dpass" ] || [ -z "$dfail" ]; then dpass=0; dfail=1; fi
echo "matrix doc: ${dpass} passed, ${dfail} failed" | tee -a "$LOGS/matrix-doc.log"
echo "== import cycles between the files of each crate (scripts/module-cycles.py)"
python3 scripts/module-cycles.py 2>&1 | tee "$LOGS/cycles.log"
cstatus=${PIPESTATUS[0]}
echo "== browser tests (Chromium, loopback-only network namespace)"
# The server and via_jingle that `cargo test --workspace` built (it builds every binary and
# example). run.sh's own `cargo build -p ...` would build them again with the features of
# that package alone (serde_json, tracing, syn, ... differ from the workspace's): ~55 s.
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" SB_VIA_JINGLE="$PWD/target/debug/examples/via_jingle" \
  tests/browser/run.sh 2>&1 | tee "$LOGS/browser.log" | grep -E '^(✔|✖|▶|browser:|harness failure|==|\[harness\])|not ok|Error'
bstatus=${PIPESTATUS[0]}
echo "== NAT traversal matrix (Chromium pairs across the namespace NAT lab; table in target/nat-matrix.md, verdicts compared with docs/nat-matrix.md)"
SWITCHBOARD_BIN="$PWD/target/debug/switchboard" NAT_MATRIX_DOC="$PWD/target/nat-matrix.md" ${SUDO:+$SUDO -E} tests/nat/matrix.sh 2>&1 | tee "$LOGS/matrix.log" | grep -E '^(ok|FAIL|HARNESS|nat matrix:|nat lab|    [-+] )'
mstatus=${PIPESTATUS[0]}
# The matrix did not even start (it prints its own count otherwise): a harness failure.
if [ "$mstatus" != 0 ] && ! grep -q '^nat matrix: [0-9]* passed' "$LOGS/matrix.log"; then
  echo "nat matrix: 0 passed, 0 failed, 1 harness failures (did not run, exit $mstatus)" | tee -a "$LOGS/matrix.log"
fi
echo "== fuzz targets, ~5 s each on their corpora (fuzz/run.sh --ci)"
fuzz/run.sh --ci 2>&1 | tee "$LOGS/fuzz.log" | grep -E '^(fuzz|==|    )'
fstatus=${PIPESTATUS[0]}
if [ "$fstatus" != 0 ] && ! grep -q '^fuzz: [0-9]* passed' "$LOGS/fuzz.log"; then
  echo "fuzz: 0 passed, 1 failed (did not run, exit $fstatus)" | tee -a "$LOGS/fuzz.log"
fi
set -e
# One line for everything: cargo's "test result" lines, then "matrix doc:", "module cycles:", "browser:",
# "nat matrix:" and "fuzz:" ("N passed, M failed[, H harness failures]").
awk '/^test result/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^(matrix doc|module cycles|browser|nat matrix|fuzz): [0-9]+ passed/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^harness/) h += $i
       }
     }
     END { printf "%d passed, %d failed, %d harness failures\n", p, f, h }' \
  "$LOGS/test.log" "$LOGS/matrix-doc.log" "$LOGS/cycles.log" "$LOGS/browser.log" "$LOGS/matrix.log" "$LOGS/fuzz.log"
echo "(whole run: $(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s; logs in $LOGS)"
for st in "$dstatus" "$cstatus" "$bstatus" "$mstatus" "$fstatus"; do
  [ "$status" = 0 ] && status=$st
done
exit "$status"
