#!/usr/bin/env bash
# 1,000 threads each sleep(1) until all of them have started, natively and under coop: the
# run can end only if the sleeps overlap (a sleep that held up the process would keep the
# last thread from ever starting; RUN_LIMIT_S is the guard against that hang). The output
# must be the same; by the program's own count (gettid) the sleepers ran on 1,000 OS threads
# natively and under coop on its hubs' (one per CPU, or COOP_HUBS; a spare's while a hub is
# stuck), where the process never has more OS threads than those (lib.sh: SCHED_THREADS...).
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/sleepers" ] || fail "$SAMPLES/sleepers is not built (make)"

THREADS=1000 SECONDS_EACH=1
RUN_LIMIT_S=120 # a hang guard
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# run_sleepers MODE OS_THREADS [PREFIX...]: one run, whose sleepers must have run on
# OS_THREADS OS threads natively, and under coop on 1 to COOP_OS_THREADS_MAX (lib.sh); sets
# first_line.
run_sleepers() {
    local mode=$1 want=$2 elapsed os_threads
    shift 2
    run_sampled $RUN_LIMIT_S "$TMP/out" "$@" "$SAMPLES/sleepers" $THREADS $SECONDS_EACH
    [ $status -eq 0 ] || fail "$mode: sleepers exited with status $status: $(cat "$TMP/out.err")"

    first_line=$(head -n 1 "$TMP/out")
    elapsed=$(sed -n 's/^elapsed_ms=//p' "$TMP/out")
    os_threads=$(sed -n 's/^os_threads: \([0-9]*\) of .*/\1/p' "$TMP/out")
    note "$mode: '$first_line' in ${elapsed:-?} ms on $os_threads OS threads; at most $max_threads sampled"
    [ "$first_line" = "$THREADS threads slept, all at the same time" ] || fail "$mode: printed '$first_line'"
    [[ "$elapsed" =~ ^[0-9]+$ ]] || fail "$mode: no elapsed_ms line"
    ((elapsed >= SECONDS_EACH * 1000)) || fail "$mode: ${elapsed} ms is shorter than one sleep"
    if [ "$mode" = native ]; then
        [ "$os_threads" = "$want" ] || fail "$mode: the sleepers ran on $os_threads OS threads, expected $want"
    else
        coop_os_threads_ok "$os_threads" ||
            fail "$mode: the sleepers ran on ${os_threads:-?} OS threads, expected 1 to $COOP_OS_THREADS_MAX ($SCHED_THREADS hubs, $SPARE_THREADS spares)"
        ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
            fail "coop: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
    fi
}

run_sleepers native $THREADS
native=$first_line

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

run_sleepers coop "1-$COOP_OS_THREADS_MAX" "$COOPRUN" --
[ "$first_line" = "$native" ] || fail "coop printed '$first_line', natively '$native'"
echo "PASS: $THREADS sleepers that waited for one another, natively and under coop, on $SCHED_THREADS hub(s) under coop"
