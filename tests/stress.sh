#!/usr/bin/env bash
# tests/stress.sh: the tests under load, as a busy CI machine or laptop runs them. CI runs it
# after make test (.ci/run); it must pass.
#   1. the whole integration suite twice more, on one hub (COOP_HUBS=1) and on the default
#      (one per CPU), while two CPU hogs run (stress-ng --cpu 2, or two busy loops where
#      stress-ng is not installed);
#   2. the threads tests (test_threads_*.sh, test_sleepers, test_proc) five times in a row,
#      the hogs still running, alternately on the default hubs and on one.
# It takes the environment as it finds it (BUILD=build/asan for a sanitizer build, COOP_*
# settings...), writes each run's logs under $BUILD/stress-log/, and ends with the line
#   stress: N passed, N failed
# counting every test run (skipped ones are counted apart, on the line before). The hogs
# are stopped however the script ends.
cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-build}
THREADS_ROUNDS=5
THREADS_TESTS=(tests/integration/test_threads_*.sh tests/integration/test_sleepers.sh
    tests/integration/test_proc.sh)
LOGS=$BUILD/stress-log
rm -rf "$LOGS"
mkdir -p "$LOGS"

# --- the hogs, each in a process group of its own so that all its processes can be stopped ---
hogs=()
stop_hogs() {
    local pgid
    for pgid in "${hogs[@]}"; do
        kill -TERM -- "-$pgid" 2>/dev/null
    done
    for pgid in "${hogs[@]}"; do
        wait "$pgid" 2>/dev/null
    done
    hogs=()
}
trap stop_hogs EXIT
trap 'exit 130' INT TERM

if command -v stress-ng >/dev/null; then
    setsid stress-ng --cpu 2 --quiet >/dev/null 2>&1 &
    hogs+=($!)
    hog_kind="stress-ng --cpu 2"
else
    for _ in 1 2; do
        setsid bash -c 'while :; do :; done' &
        hogs+=($!)
    done
    hog_kind="two busy loops (no stress-ng)"
fi
echo "stress: CPU hogs: $hog_kind"

# run_suite NAME HUBS TEST...: runs the tests through run-integration.sh on HUBS hubs
# (default: unset, one per CPU), its logs in $LOGS/NAME; adds to passed, failed and skipped.
passed=0 failed=0 skipped=0
run_suite() {
    local name=$1 hubs=$2 lines=$LOGS/$1.lines
    shift 2
    echo "stress: $name"
    if [ "$hubs" = default ]; then
        (unset COOP_HUBS; TEST_LOG="$LOGS/$name" tests/run-integration.sh "$@") | tee "$lines"
    else
        COOP_HUBS=$hubs TEST_LOG="$LOGS/$name" tests/run-integration.sh "$@" | tee "$lines"
    fi
    passed=$((passed + $(grep -c '^PASS ' "$lines")))
    failed=$((failed + $(grep -c '^FAIL ' "$lines")))
    skipped=$((skipped + $(grep -c '^SKIP ' "$lines")))
}

run_suite integration-hubs1 1
run_suite integration-default-hubs default
for ((round = 1; round <= THREADS_ROUNDS; round++)); do
    hubs=$( ((round % 2)) && echo default || echo 1)
    run_suite "threads-$round-hubs-$hubs" "$hubs" "${THREADS_TESTS[@]}"
done
stop_hogs

echo "stress: $skipped skipped; logs in $LOGS"
echo "stress: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
