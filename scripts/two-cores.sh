#!/usr/bin/env bash
# What two cores give this workload (docs/benchmarks.md, ninth session): one one-worker
# `ridehail run` over N/2 generated events, then two of them at once (sharing nothing: no
# exchange, no common cache lines), then one two-worker run over N. Prints events/s of each,
# timed from process start to exit, and the ratios to the first.
#
#   scripts/two-cores.sh                         # the release build of this checkout, N = 6M
#   scripts/two-cores.sh /tmp/ridehail 4000000   # a given binary and N
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
    cargo build --release -q -p sluice-jobs --bin ridehail
fi
bin="${1:-target/release/ridehail}"
n="${2:-6000000}"
half=$((n / 2))
tmp="${TMPDIR:-/tmp}/sluice-two-cores"
mkdir -p "$tmp"
run() { "$bin" run --events "$1" -p "$2" -q --out "$tmp/$3" > /dev/null; }
secs() { date +%s.%N; }
rm -rf "$tmp"/{a,b,c}
t0=$(secs); run "$half" 1 a; t1=$(secs)
rm -rf "$tmp"/a
# Each waited for by its pid, so that a failed run stops the script (a bare `wait` returns 0).
t2=$(secs); run "$half" 1 a & pa=$!; run "$half" 1 b & pb=$!; wait "$pa"; wait "$pb"; t3=$(secs)
rm -rf "$tmp"/{a,b}
t4=$(secs); run "$n" 2 c; t5=$(secs)
rm -rf "$tmp"
python3 - "$half" "$n" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'PY'
import sys
half, n = int(sys.argv[1]), int(sys.argv[2])
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[3:])
one = half / (t1 - t0)
pair = n / (t3 - t2)
p2 = n / (t5 - t4)
print(f"one process, one worker: {one / 1e3:.0f}K events/s")
print(f"two processes at once, one worker each: {pair / 1e3:.0f}K events/s ({pair / one:.2f}x)")
print(f"one process, two workers: {p2 / 1e3:.0f}K events/s ({p2 / one:.2f}x)")
PY
