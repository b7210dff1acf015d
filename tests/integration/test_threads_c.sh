#!/usr/bin/env bash
# The C pthread surface: torture (200 threads over each kind of synchronisation object, keys,
# once, join values, identity, 500 overlapping sleeps) and timedwaits (every timed wait times
# out with the right error, no earlier than its deadline, while the other threads run). Each
# runs natively and under coop with each TLS mechanism (COOP_TLS): the result lines (all but
# the time: lines) must be the same, and under coop the process never has more than one OS
# thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
PROGRAMS=(torture timedwaits)
for p in "${PROGRAMS[@]}"; do
    [ -x "$SAMPLES/$p" ] || fail "$SAMPLES/$p is not built (make)"
done

RUN_LIMIT_S=20         # a run that lasts longer is stuck (natively each takes about 2 s)
MAX_SLEEPERS_MS=5000   # torture's 500 sleeps of 1 s must overlap; generous: not a timing test
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

# ---- the programs ----

check_sleepers_overlap() {
    local mode=$1 ms
    ms=$(time_value "$mode" torture sleepers)
    [[ "$ms" =~ ^[0-9]+$ ]] || { problems+=("$mode: torture printed no 'time: sleepers' line"); return; }
    ((ms <= MAX_SLEEPERS_MS)) ||
        problems+=("$mode: torture's 500 sleeps of 1 s took $ms ms: they did not overlap")
    note "$mode: torture's 500 sleeps of 1 s took $ms ms"
}

check_native torture "$SAMPLES/torture"
check_sleepers_overlap native
((${#problems[@]} == 0)) || fail "${problems[*]}"
check_native timedwaits "$SAMPLES/timedwaits"

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

for mechanism in "${TLS_MECHANISMS[@]}"; do
    check_coop "COOP_TLS=$mechanism" torture "$SAMPLES/torture"
    [ "$status" -eq 0 ] && check_sleepers_overlap "COOP_TLS=$mechanism"
    check_coop "COOP_TLS=$mechanism" timedwaits "$SAMPLES/timedwaits"
done
fail_on_problems
echo "PASS: torture and timedwaits print the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
