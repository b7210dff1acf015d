#!/usr/bin/env bash
# 1,000 threads each sleep(1) at the same time, natively and under coop: the output must be
# the same, and the sleeps must overlap (about 1 s in all, not 1,000 s, nor a second per
# batch). Under coop the process never has more than one OS thread.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/sleepers" ] || fail "$SAMPLES/sleepers is not built (make)"

THREADS=1000 SECONDS_EACH=1
MAX_ELAPSED_MS=3000 # generous: a correctness test on a noisy machine, not a timing test
SLOW_ELAPSED_MS=1500 # past this it passes, with a note
RUN_LIMIT_S=30
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# Samples the OS threads of process $1 every 20 ms while it runs (at most RUN_LIMIT_S); sets
# max_threads and samples.
sample_threads() {
    local n deadline=$((SECONDS + RUN_LIMIT_S))
    max_threads=0 samples=0
    while kill -0 "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "still running after $RUN_LIMIT_S s"
        n=$(os_threads "$1" 2>/dev/null)
        ((n > max_threads)) && max_threads=$n
        samples=$((samples + 1))
        sleep 0.02
    done
}

# run_sleepers MODE [PREFIX...]: one run; sets first_line.
run_sleepers() {
    local mode=$1 pid status elapsed
    shift
    "$@" "$SAMPLES/sleepers" $THREADS $SECONDS_EACH >"$TMP/out" 2>"$TMP/err" &
    pid=$!
    sample_threads $pid
    wait $pid
    status=$?
    [ $status -eq 0 ] || fail "$mode: sleepers exited with status $status: $(cat "$TMP/err")"

    first_line=$(head -n 1 "$TMP/out")
    elapsed=$(sed -n 's/^elapsed_ms=//p' "$TMP/out")
    note "$mode: '$first_line' in ${elapsed:-?} ms, at most $max_threads OS threads in $samples samples"
    [ "$first_line" = "$THREADS threads slept" ] || fail "$mode: printed '$first_line'"
    [[ "$elapsed" =~ ^[0-9]+$ ]] || fail "$mode: no elapsed_ms line"
    ((elapsed >= SECONDS_EACH * 1000)) || fail "$mode: ${elapsed} ms is shorter than one sleep"
    ((elapsed <= MAX_ELAPSED_MS)) || fail "$mode: ${elapsed} ms: the sleeps did not overlap"
    ((elapsed <= SLOW_ELAPSED_MS)) || note "$mode: slow (${elapsed} ms for a ${SECONDS_EACH} s sleep)"
    if [ "$mode" = native ]; then
        ((max_threads > 100)) || fail "native: only $max_threads threads seen: is sampling broken?"
    else
        ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
            fail "coop: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
    fi
}

run_sleepers native
native=$first_line

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

run_sleepers coop "$COOPRUN" --
[ "$first_line" = "$native" ] || fail "coop printed '$first_line', natively '$native'"
echo "PASS: $THREADS overlapping sleeps natively and under coop, one OS thread under coop"
