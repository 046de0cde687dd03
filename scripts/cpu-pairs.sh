#!/usr/bin/env bash
# Compares the CPU time of two ridehail binaries on one run, in alternating pairs, so that
# both share the machine's drift (which on the project's machine moves a run by up to 2x within
# an hour; see docs/benchmarks.md). A difference that does not show in most pairs is noise.
#
#   scripts/cpu-pairs.sh BEFORE AFTER PAIRS [RUN ARGS...]
#   scripts/cpu-pairs.sh /tmp/before target/release/ridehail 8 --events 2000000 -p 1
#
# Each run is `BINARY run RUN_ARGS -q --out $TMPDIR/sluice-cpu-pairs`, timed by GNU time
# (/usr/bin/time, Debian package `time`): user + system CPU seconds. Prints every pair, the
# medians, the mean ratio AFTER / BEFORE and in how many pairs AFTER used less CPU.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
before=$1 after=$2 pairs=$3
shift 3
out="${TMPDIR:-/tmp}/sluice-cpu-pairs"
cpu() {
    rm -rf "$out"
    /usr/bin/time -f "%U %S" -o "$out.time" "$1" run "${@:2}" -q --out "$out" > /dev/null
    awk '{ printf "%.2f\n", $1 + $2 }' "$out.time"
}
rows=""
for ((i = 0; i < pairs; i++)); do
    a=$(cpu "$before" "$@")
    b=$(cpu "$after" "$@")
    echo "pair $((i + 1)): $a s / $b s"
    rows+="$a $b"$'\n'
done
rm -rf "$out" "$out.time"
printf '%s' "$rows" | awk '
    { a[NR] = $1; b[NR] = $2; r += $2 / $1; if ($2 < $1) w++ }
    function median(x, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    }
    END {
        printf "median before %.2f s, after %.2f s; mean ratio after/before %.3f; after used less CPU in %d of %d pairs\n",
            median(a, NR), median(b, NR), r / NR, w, NR
    }'
