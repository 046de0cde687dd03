#!/usr/bin/env bash
# The ridehail end-to-end benchmark of docs/benchmarks.md: every job at once, exactly-once
# sinks, 10M generated events and a 3M-line file, at two and one workers. Given several
# binaries (say, a copy of the build before a change and the one after), it runs them in turn
# for each cell, ROUNDS times, so that they share the machine's drift.
#
#   scripts/bench-ridehail.sh                        # the release build of this checkout
#   ROUNDS=2 scripts/bench-ridehail.sh /tmp/before target/release/ridehail
#
# Prints, per run: binary, input, workers, events/s as the run reports it, wall time, CPU time,
# peak RSS; and before each round the machine's core-to-core round trip (benches/core_latency.rs),
# which two-worker runs depend on. Needs GNU time (/usr/bin/time, Debian package `time`) and about 2 GB free under
# $TMPDIR (the input file and one run's output).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-1}"
if [ "$#" -eq 0 ]; then
    cargo build --release -q -p sluice-jobs --bin ridehail
    set -- target/release/ridehail
fi
tmp="${TMPDIR:-/tmp}/sluice-bench-ridehail"
mkdir -p "$tmp"
input="$tmp/in3m.jsonl"
[ -s "$input" ] || "$1" generate --events 3000000 > "$input"
for ((round = 0; round < ROUNDS; round++)); do
    cargo bench -q --bench core_latency -- 1 500000 2>/dev/null | sed 's/^/core-to-core /' || true
    for cell in "gen 2" "gen 1" "file 2" "file 1"; do
        set -f; read -r kind workers <<< "$cell"; set +f
        for bin in "$@"; do
            if [ "$kind" = gen ]; then args=(--events 10000000); else args=(--input "$input"); fi
            rm -rf "$tmp/out"
            rate=$(/usr/bin/time -f "%e s wall, %U s user, %M KB" -o "$tmp/time" \
                "$bin" run "${args[@]}" -p "$workers" -q --out "$tmp/out" | awk '/events\/s/ {print $2}')
            echo "$bin $kind p$workers: $rate events/s, $(cat "$tmp/time")"
        done
    done
done
rm -rf "$tmp/out"
