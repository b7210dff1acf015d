#!/usr/bin/env bash
# 10,000 threads each park on one condition variable (many_threads): natively that is 10,001
# OS threads with 64 KiB stacks; under coop it must be one OS thread (+ coop's runtime
# threads) while all are parked, and the same result lines. The resident memory per thread
# is printed for both, for the record (it is not checked: it depends on the stack size).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
[ -x "$SAMPLES/many_threads" ] || fail "$SAMPLES/many_threads is not built (make)"

THREADS=10000
RUN_LIMIT_S=40 # a run that lasts longer is stuck (natively it takes about 2 s)
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# run_many MODE COMMAND...: one run, its output in $TMP/MODE.{out,err}; sets status,
# elapsed_ms, max_threads (over the whole run), parked_threads and parked_samples (the most
# OS threads seen, and how many samples, while the program said every thread was parked).
run_many() {
    local mode=$1 pid n start deadline
    shift
    start=$(date +%s%N)
    "$@" >"$TMP/$mode.out" 2>"$TMP/$mode.err" &
    pid=$!
    max_threads=0 parked_threads=0 parked_samples=0 status=
    deadline=$((SECONDS + RUN_LIMIT_S))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            status=124
            break
        fi
        n=$(os_threads "$pid" 2>/dev/null) || n=0
        ((n > max_threads)) && max_threads=$n
        # parked: the program printed "N threads parked" and not yet "N threads done"
        if grep -q 'threads parked$' "$TMP/$mode.out" && ! grep -q 'threads done$' "$TMP/$mode.out"; then
            ((n > parked_threads)) && parked_threads=$n
            parked_samples=$((parked_samples + 1))
        fi
        sleep 0.02
    done
    if [ -z "$status" ]; then
        wait "$pid"
        status=$?
    fi
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
    note "$mode: status $status in $elapsed_ms ms; at most $max_threads OS threads, $parked_threads while parked ($parked_samples samples)"
    note "$mode: $(grep '^rss_per_thread_kib:' "$TMP/$mode.out" || echo 'no rss_per_thread_kib line')"
    note "$mode: $(grep '^time:' "$TMP/$mode.out" || echo 'no time line')"
    if [ "$status" -ne 0 ]; then
        case $status in
            124) echo "$mode: still running after $RUN_LIMIT_S s (killed)" >&2 ;;
            *) echo "$mode: exited with status $status" >&2 ;;
        esac
        sed "s/^/    $mode stdout: /" "$TMP/$mode.out" >&2
        head -n 30 "$TMP/$mode.err" | sed "s/^/    $mode stderr: /" >&2
        fail "$mode: many_threads $THREADS failed"
    fi
    results "$mode" | grep -qx "$THREADS threads done" || fail "$mode: no '$THREADS threads done' line"
    ((parked_samples > 0)) || fail "$mode: no sample of the thread count while every thread was parked"
}

# The lines a run must print the same natively and under coop.
results() { grep -Ev '^(time|rss_per_thread_kib):' "$TMP/$1.out"; }

run_many native "$SAMPLES/many_threads" $THREADS
((parked_threads > THREADS)) ||
    fail "native: $parked_threads OS threads while parked, expected $((THREADS + 1)): is sampling broken?"

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

run_many coop "$COOPRUN" -- "$SAMPLES/many_threads" $THREADS
diff -u <(results native) <(results coop) >&2 || fail "coop printed other result lines than natively"
((parked_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
    fail "coop: $parked_threads OS threads while parked, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
    fail "coop: $max_threads OS threads at most, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
echo "PASS: $THREADS parked threads natively and under coop, one OS thread under coop"
