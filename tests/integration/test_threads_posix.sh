#!/usr/bin/env bash
# The rest of POSIX threads, per greenlet as per thread: cancellation in each kind of
# cancellation point with C cleanup handlers (cancel) and C++ destructors (cancel_unwind),
# pthread_exit and cancellation of the main thread (main_exit); mutexes and semaphores
# exactly as glibc's, process-shared ones shared with a plain glibc process (pshared); calls
# on threads already joined or detached (joined); scheduling attributes, CPU affinity and CPU
# clocks per thread (sched_clock); stacks that overflow where a thread's of the same size and
# guard does (stack_depth, within a page); a read-write lock, a semaphore and a condition variable that
# a library's constructor used first, which the loader may run before coop's, and its pin of
# the initial thread, main's alone (early_locks);
# a daemon's close of every fd at start-up, then waits and a fork (close_all).
# Each program runs natively and under coop with each TLS mechanism (COOP_TLS): the same
# result lines, and under coop one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0

RUN_LIMIT_S=20         # a run that lasts longer is stuck (natively each takes under 1 s)
# Waits on process-shared objects sleep in a thread of coop's pool: two of them here.
export COOP_THREADPOOL_SIZE=2
RUNTIME_THREADS=$((${COOP_RUNTIME_THREADS:-0} + COOP_THREADPOOL_SIZE))
export COOP_STATS=1     # early_locks' count of hubs below; the others' stats line goes to stderr, not compared

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

# NAME PROGRAM [ARG...] per line
RUNS=(
    "cancel cancel"
    "cancel_unwind cancel_unwind"
    "main_exit main_exit exit"
    "main_cancel main_exit cancel"
    "pshared pshared"
    "joined joined"
    "sched_clock sched_clock"
    "stack_depth stack_depth"
    "early_locks early_locks"
    "close_range close_all range"
    "closefrom close_all from"
    "close_each close_all each"
)

for run in "${RUNS[@]}"; do
    read -r -a words <<<"$run"
    [ -x "$SAMPLES/${words[1]}" ] || fail "$SAMPLES/${words[1]} is not built (make)"
    check_native "${words[0]}" "$SAMPLES/${words[1]}" "${words[@]:2}"
done

# depths_within_a_page MODE: stack_depth overflowed at the native depth, within a page.
depths_within_a_page() {
    local mode=$1 name frames bytes coop_frames
    while read -r _ name frames _ _ bytes _; do
        coop_frames=$(sed -n "s/^depth: $name \([0-9]*\) .*/\1/p" "$TMP/stack_depth.$mode.out")
        if ! [[ "$coop_frames" =~ ^[0-9]+$ ]]; then
            problems+=("$mode: stack_depth printed no depth for $name")
        elif (((coop_frames - frames) * bytes > 4096 || (frames - coop_frames) * bytes > 4096)); then
            problems+=("$mode: $name overflowed after $coop_frames frames of $bytes bytes, natively after $frames")
        else
            note "$mode: $name overflowed after $coop_frames frames, natively after $frames ($bytes bytes each)"
        fi
    done < <(grep '^depth: ' "$TMP/stack_depth.native.out")
}

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
for mechanism in "${TLS_MECHANISMS[@]}"; do
    for run in "${RUNS[@]}"; do
        read -r -a words <<<"$run"
        check_coop "COOP_TLS=$mechanism" "${words[0]}" "$SAMPLES/${words[1]}" "${words[@]:2}"
    done
    depths_within_a_page "COOP_TLS=$mechanism"
    # early_locks tests something only where the loader ran its library's constructor first.
    grep -q "ran before coop's" "$TMP/early_locks.COOP_TLS=$mechanism.err" ||
        problems+=("COOP_TLS=$mechanism: early_locks' constructor did not run before coop's: $(cat "$TMP/early_locks.COOP_TLS=$mechanism.err")")
    # Its pin of the initial thread is main's: the OS thread, whose set decides how many hubs
    # run, keeps the process's (COOP_STATS's count).
    grep -q "^coop: stats: hubs $SCHED_THREADS," "$TMP/early_locks.COOP_TLS=$mechanism.err" ||
        problems+=("COOP_TLS=$mechanism: early_locks did not run on $SCHED_THREADS hubs: $(grep 'stats: hubs' "$TMP/early_locks.COOP_TLS=$mechanism.err")")
done
fail_on_problems
echo "PASS: ${#RUNS[@]} programs print the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
