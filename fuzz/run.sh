#!/usr/bin/env bash
# Run the fuzz targets (cargo fuzz, libFuzzer, on the stable toolchain; see README.md).
#
#   fuzz/run.sh --ci                      # every target ~5 s on its committed corpus (CI)
#   fuzz/run.sh --long                    # every target 30 min or 10^8 runs, seeds included,
#                                         # new coverage merged into fuzz/corpus/<target>
#   fuzz/run.sh --long turn_server        # some targets
#   SECONDS_EACH=60 fuzz/run.sh --ci      # another time per target
#   FUZZ_JOBS=1 fuzz/run.sh --ci          # one target at a time (default: one per core)
#   fuzz/run.sh --minimize                # shrink fuzz/corpus/<target> to a subset with
#                                         # the same coverage (libFuzzer -merge)
#
# Prints one line per target ("fuzz <target>: <runs> runs in <s> s (<rate>/s), cov <edges> ft
# <features>, corpus <n> files, no crash") and a last line "fuzz: N passed, M failed".
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run; the input
# then goes into a regression test of the crate it broke (see README.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"

mode="${1:---ci}"
shift || true
TARGETS=(first_bytes_demux stream_framing stun_parse natprobe_response stun_integrity signal_hub turn_server sfu_message sip_message sip_sdp sip_transaction media_bridge sip_ua xmpp_jingle xmpp_stanza)
if [ $# -gt 0 ]; then TARGETS=("$@"); fi

case "$mode" in
  --ci) each="${SECONDS_EACH:-5}"; runs=-1 ;;
  # Long runs are worth opt-level 3 (Cargo.toml's opt-level 1 keeps the CI build short):
  # 1.3-1.6x the executions a second, for a build of about a third more CPU.
  --long) each="${SECONDS_EACH:-1800}"; runs="${RUNS:-100000000}"; export CARGO_PROFILE_RELEASE_OPT_LEVEL=3 ;;
  --minimize) ;;
  *) echo "usage: fuzz/run.sh --ci|--long|--minimize [target...]" >&2; exit 2 ;;
esac

# Stable only: pin it when rustup knows a toolchain of that name (CI machines have nothing else).
if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^stable'; then
  export RUSTUP_TOOLCHAIN=stable
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi
echo "== $(rustc --version); cargo fuzz build -s none --debug-assertions"
# No sanitizer: the fuzzed crates have no unsafe code (AddressSanitizer needs nightly flags,
# see README.md). Debug assertions turn on integer overflow checks.
cargo fuzz build -s none --debug-assertions >/dev/null 2>&1 || cargo fuzz build -s none --debug-assertions

max_len() {
  case "$1" in
    first_bytes_demux) echo 64 ;;
    stream_framing) echo 140000 ;;
    stun_parse) echo 66000 ;;
    natprobe_response | stun_integrity) echo 8192 ;;
    *) echo 16384 ;;
  esac
}

BIN="$HERE/target/x86_64-unknown-linux-gnu/release"
if [ "$mode" = --minimize ]; then
  for t in "${TARGETS[@]}"; do
    corpus="$HERE/corpus/$t"
    small="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-min-$t.XXXXXX")"
    before=$(find "$corpus" -type f | wc -l)
    "$BIN/$t" -merge=1 -max_len="$(max_len "$t")" "$small" "$corpus" >"$small.log" 2>&1 \
      || { echo "fuzz $t: merge failed"; tail -5 "$small.log"; exit 1; }
    rm -rf "$corpus" && mv "$small" "$corpus" && rm -f "$small.log"
    echo "fuzz $t: corpus $before -> $(find "$corpus" -type f | wc -l) files ($(du -sb "$corpus" | cut -f1) bytes)"
  done
  exit 0
fi
# One target: its result line goes to "$2", a crash's input to fuzz/artifacts/<target>/.
run_target() {
  local t=$1 out=$2 corpus new dirs log rc line n cov ft secs rate files
  corpus="$HERE/corpus/$t"
  mkdir -p "$corpus" "$HERE/artifacts/$t"
  new="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$t.XXXXXX")"
  dirs=("$new" "$corpus")
  if [ "$mode" = --long ] && [ -d "$HERE/seeds/$t" ]; then dirs+=("$HERE/seeds/$t"); fi
  log="$new.log"
  set +e
  "$BIN/$t" "${dirs[@]}" -max_total_time="$each" -runs="$runs" -max_len="$(max_len "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$HERE/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  # The last status line: "#<runs> DONE cov: <n> ft: <n> corp: <n>/<size> ... exec/s: <n>"
  line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  n=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$line")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
  secs=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -1)
  if [ "$rc" = 0 ]; then
    if [ "$mode" = --long ]; then
      # Keep what adds coverage (libFuzzer's merge) in the committed corpus.
      "$BIN/$t" -merge=1 -max_len="$(max_len "$t")" "$corpus" "$new" >/dev/null 2>&1 || true
    fi
    files=$(find "$corpus" -type f | wc -l)
    echo "fuzz $t: ${n:-?} runs in ${secs:-?} s (${rate:-?}/s), cov ${cov:-?} ft ${ft:-?}, corpus $files files, no crash" >"$out"
  else
    {
      echo "fuzz $t: FAILED (exit $rc) after ${n:-?} runs; input in fuzz/artifacts/$t/:"
      grep -E 'panicked|SUMMARY|Test unit written|ERROR' "$log" | head -8 | sed 's/^/    /'
    } >"$out"
    cp "$log" "$HERE/artifacts/$t/last.log"
  fi
  rm -rf "$new" "$log"
  return "$rc"
}

# Targets run side by side, one per core (FUZZ_JOBS): libFuzzer is single-threaded, and
# in CI nothing else runs meanwhile. Results print in the order of TARGETS.
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "FUZZ_JOBS must be a positive number, not '$jobs'" >&2; exit 2; }
results="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-results.XXXXXX")"
trap 'rm -rf "$results"' EXIT
passed=0
failed=0
for ((i = 0; i < ${#TARGETS[@]}; i += jobs)); do
  batch=("${TARGETS[@]:i:jobs}")
  pids=()
  for t in "${batch[@]}"; do
    run_target "$t" "$results/$t" &
    pids+=($!)
  done
  for k in "${!batch[@]}"; do
    if wait "${pids[$k]}"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    cat "$results/${batch[$k]}" 2>/dev/null || echo "fuzz ${batch[$k]}: FAILED (the run gave no result)"
  done
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
