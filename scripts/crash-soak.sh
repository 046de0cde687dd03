#!/usr/bin/env bash
# Soak test for exactly-once recovery: runs the four crash tests (the engine's, and `ridehail
# run` with all jobs, on a file at one worker, on the generator at two, and on a file at two,
# read in two stripes: a child SIGKILLed at
# random moments, restarted until it finishes, output compared with a failure-free run) ROUNDS
# times, each with its own seed. Not run in CI: CI runs one round of each as part of
# `cargo test --workspace`.
#
#   scripts/crash-soak.sh            # 100 rounds (about 20 minutes on 2 cores)
#   ROUNDS=10 scripts/crash-soak.sh  # fewer
#   SEED=42 ROUNDS=1 scripts/crash-soak.sh   # replay one round
#
# A failing round prints its seed and test; rerun it with SEED=<seed> ROUNDS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-100}"
FIRST_SEED="${SEED:-1}"
cargo test --release -p sluice-engine --test tests --no-run
cargo test --release -p sluice-jobs --test tests --no-run
for ((i = 0; i < ROUNDS; i++)); do
    seed=$((FIRST_SEED + i))
    for test in engine ridehail ridehail-generated ridehail-stripes; do
        status=0
        pkg=sluice-jobs
        case "$test" in
            engine)
                pkg=sluice-engine
                name=crash_kills_and_restarts_give_exactly_the_failure_free_output ;;
            ridehail) name=killed_and_resumed_runs_give_exactly_the_failure_free_output ;;
            ridehail-generated)
                name=killed_and_resumed_generated_runs_at_two_workers_give_exactly_the_failure_free_output ;;
            ridehail-stripes)
                name=killed_and_resumed_file_runs_at_two_workers_give_exactly_the_failure_free_output ;;
        esac
        # Each crash test reads its own seed variable; setting both is harmless.
        out=$(SLUICE_CRASH_SEED="$seed" RIDEHAIL_CRASH_SEED="$seed" cargo test --release -q \
            -p "$pkg" --test tests "it::crash::$name" -- --exact --nocapture 2>&1) || status=$?
        echo "$out" | grep -E "crash test|panicked" | sed -E 's/ \(per cycle: \[[^]]*\]\)//' || true
        if [ "$status" != 0 ]; then
            echo "$out" | tail -30 >&2
            echo "round $((i + 1)) FAILED ($test) with seed $seed" >&2
            exit 1
        fi
    done
    echo "round $((i + 1))/$ROUNDS ok (seed $seed)"
done
echo "all $ROUNDS rounds passed"
