#!/usr/bin/env bash
# Call set-up time through the trapezoid (issue 13) against a call on one server: Chromium
# pages, ada on Switchboard A calls bob on Switchboard B over XMPP/Jingle (A -> prosody a.test
# -> s2s -> prosody b.test -> B), then bob signed in on A (the same server). bob's page
# accepts at once; times are taken in ada's page from the dial to: ringing, answered, and
# the first decoded video frame of bob's. The browser test tests/browser/trapezoid.test.mjs
# does the calls (its SB_TRAPEZOID_BENCH mode, release build); this runs it ROUNDS times and
# reports the median of the rounds' medians, and the stanzas that crossed s2s per call.
#
#   bench/trapezoid.sh                       # 3 rounds of 10 calls each way
#   ROUNDS=5 CALLS=10 OUT=bench/results/trapezoid-DATE.json bench/trapezoid.sh
#   NO_BUILD=1 ...                           # use target/release/switchboard as it is
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-10}
OUT=${OUT:-bench/results/trapezoid-$(date -u +%Y-%m-%d-%H%M).json}
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --locked -p switchboard
  cargo build --release --locked -p switchboard-xmpp --example via_jingle
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS ($CALLS calls each way)"
  SB_TRAPEZOID_BENCH=1 SB_TRAPEZOID_CALLS="$CALLS" SB_TRAPEZOID_OUT="$TMP/round-$r.json" \
    SB_TEST_PATTERN='setup times' \
    SWITCHBOARD_BIN="$PWD/target/release/switchboard" SB_VIA_JINGLE="$PWD/target/release/examples/via_jingle" \
    tests/browser/run.sh trapezoid.test.mjs 2>&1 | grep -E '^(✔|✖|browser:)|ms \(' || true
  [ -s "$TMP/round-$r.json" ] || { echo "round $r wrote no results (see above)"; exit 1; }
done
python3 - "$TMP" "$ROUNDS" "$CALLS" "$OUT" "$(git rev-parse --short HEAD)" <<'PY'
import json, statistics, sys, os
tmp, rounds, calls, out, rev = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
runs = [json.load(open(os.path.join(tmp, f"round-{r}.json"))) for r in range(1, rounds + 1)]
steps = ["ringing", "answered", "media"]
def med(path, step):
    per_round = [statistics.median(c[step] for c in run[path]) for run in runs]
    return statistics.median(per_round), per_round
agg = {p: {s: med(p, s) for s in steps} for p in ["trapezoid", "same"]}
stanzas = {k: statistics.median(run["stanzas"][k] for run in runs) for k in ["aToB", "bToA"]}
result = {"rev": rev, "rounds": rounds, "calls_per_round": calls, "runs": runs,
          "median_of_round_medians": {p: {s: agg[p][s][0] for s in steps} for p in agg},
          "stanzas_per_call_across_s2s": stanzas}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
json.dump(result, open(out, "w"), indent=1)
names = {"ringing": "dial → ringing", "answered": "dial → answered", "media": "dial → first decoded frame"}
lines = [f"Switchboard {rev}, {rounds} rounds of {calls} calls each way; median of the rounds' medians (the rounds' medians), ms",
         "", "| | trapezoid (XMPP, two servers) | same server | trapezoid − same |", "|---|---|---|---|"]
for s in steps:
    t, tr = agg["trapezoid"][s]; o, orr = agg["same"][s]
    lines.append(f"| {names[s]} | {t:.0f} ({', '.join(f'{x:.0f}' for x in tr)}) | {o:.0f} ({', '.join(f'{x:.0f}' for x in orr)}) | {t - o:+.0f} |")
lines += ["", f"Stanzas per call across s2s (set-up and hang-up): A→B {stanzas['aToB']:.1f}, B→A {stanzas['bToA']:.1f}"]
md = "\n".join(lines) + "\n"
open(out.rsplit(".", 1)[0] + ".md", "w").write(md)
print(md)
PY
