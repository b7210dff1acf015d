#!/usr/bin/env bash
# 10,000 threads each park on one condition variable (many_threads): natively that is 10,000
# OS threads with 64 KiB stacks; under coop its hubs' OS threads (one per CPU, or COOP_HUBS; a
# spare's while a hub is stuck), by the program's own count (the distinct gettid of the parked
# threads), and never more than those (+ coop's runtime threads) in samples of /proc, which
# can only miss threads and so bound them from above; the same result lines both times. The
# resident memory per thread is printed for both, for the record (it is not checked: it
# depends on the stack size).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
[ -x "$SAMPLES/many_threads" ] || fail "$SAMPLES/many_threads is not built (make)"

THREADS=10000
RUN_LIMIT_S=120 # a hang guard (natively it takes about 2 s)
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# run_many MODE OS_THREADS COMMAND...: one run, its output in $TMP/MODE.{out,err}, whose
# parked threads must have been on OS_THREADS OS threads natively, and under coop on 1 to
# COOP_OS_THREADS_MAX (lib.sh); sets max_threads (sampled).
run_many() {
    local mode=$1 want=$2 os_threads
    shift 2
    run_sampled $RUN_LIMIT_S "$TMP/$mode.out" "$@"
    os_threads=$(sed -n 's/^os_threads: \([0-9]*\) of .*/\1/p' "$TMP/$mode.out")
    note "$mode: status $status; parked on ${os_threads:-?} OS threads; at most $max_threads OS threads sampled"
    note "$mode: $(grep '^rss_per_thread_kib:' "$TMP/$mode.out" || echo 'no rss_per_thread_kib line')"
    note "$mode: $(grep '^time:' "$TMP/$mode.out" || echo 'no time line')"
    if [ "$status" -ne 0 ]; then
        echo "$mode: exited with status $status" >&2
        sed "s/^/    $mode stdout: /" "$TMP/$mode.out" >&2
        head -n 30 "$TMP/$mode.out.err" | sed "s/^/    $mode stderr: /" >&2
        fail "$mode: many_threads $THREADS failed"
    fi
    results "$mode" | grep -qx "$THREADS threads done" || fail "$mode: no '$THREADS threads done' line"
    if [ "$mode" = native ]; then
        [ "$os_threads" = "$want" ] || fail "$mode: the parked threads were on ${os_threads:-?} OS threads, expected $want"
    else
        coop_os_threads_ok "$os_threads" ||
            fail "$mode: the parked threads were on ${os_threads:-?} OS threads, expected 1 to $COOP_OS_THREADS_MAX ($SCHED_THREADS hubs, $SPARE_THREADS spares)"
    fi
}

# The lines a run must print the same natively and under coop.
results() { grep -Ev '^(time|rss_per_thread_kib|os_threads):' "$TMP/$1.out"; }

run_many native $THREADS "$SAMPLES/many_threads" $THREADS

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

run_many coop "1-$COOP_OS_THREADS_MAX" "$COOPRUN" -- "$SAMPLES/many_threads" $THREADS
diff -u <(results native) <(results coop) >&2 || fail "coop printed other result lines than natively"
((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
    fail "coop: $max_threads OS threads at most, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
echo "PASS: $THREADS parked threads natively and under coop, on $SCHED_THREADS hub(s) under coop"
