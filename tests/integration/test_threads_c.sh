#!/usr/bin/env bash
# The C pthread surface: torture (200 threads over each kind of synchronisation object, keys,
# once, join values, identity, 500 sleepers that wait for one another) and timedwaits (every
# timed wait times out with the right error, no earlier than its deadline, while the other
# threads run). Each runs natively and under coop with each TLS mechanism (COOP_TLS): the
# result lines (all but the time: and os_threads: lines) must be the same; torture's sleepers
# ran on 500 OS threads natively and on one under coop, by its own count (gettid), and under
# coop the process never has more than one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
PROGRAMS=(torture timedwaits)
for p in "${PROGRAMS[@]}"; do
    [ -x "$SAMPLES/$p" ] || fail "$SAMPLES/$p is not built (make)"
done

RUN_LIMIT_S=120        # a hang guard (natively each takes about 2 s)
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

check_native torture "$SAMPLES/torture"
check_native timedwaits "$SAMPLES/timedwaits"

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

for mechanism in "${TLS_MECHANISMS[@]}"; do
    check_coop "COOP_TLS=$mechanism" torture "$SAMPLES/torture"
    check_coop "COOP_TLS=$mechanism" timedwaits "$SAMPLES/timedwaits"
done
fail_on_problems
echo "PASS: torture and timedwaits print the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
