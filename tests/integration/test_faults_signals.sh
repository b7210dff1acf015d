#!/usr/bin/env bash
# Signals arriving during waits (tests/samples/signal_waits), natively and under coop, with the
# same output both times. For about two seconds SIGUSR1 hits threads blocked in read (a TCP
# socket, a pipe), accept, nanosleep, pthread_cond_wait, sem_wait and sem_timedwait:
# pthread_kill to each in turn every millisecond, kill() of the process every 5 ms, and
# kill -USR1 from this script every 10 ms. With a handler without SA_RESTART, then with it:
# - every byte and connection arrives, every value and post is received;
# - read and accept fail with EINTR only without SA_RESTART; nanosleep may always (and,
#   resumed with the time left, lasts what was asked); pthread_cond_wait never fails;
# - sem_wait and sem_timedwait as natively: Linux restarts sem_wait after an SA_RESTART
#   handler (a futex wait without a timeout), never sem_timedwait (a futex wait with a
#   timeout fails with EINTR whenever a handler ran).
# Under coop the program has one OS thread.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/signal_waits" ] || fail "$SAMPLES/signal_waits is not built (make)"
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# run LABEL OUTFILE COMMAND...: sets max_threads; fails on a non-zero status.
run() {
    local label=$1 outfile=$2 pid n status i=0 deadline=$((SECONDS + 120)) # a hang guard
    shift 2
    "$@" >"$outfile" 2>"$outfile.err" &
    pid=$!
    max_threads=0
    # A kill before the handler is in place would end the program.
    while ! grep -qs "ready for SIGUSR1" "$outfile.err" && kill -0 $pid 2>/dev/null; do
        ((SECONDS < deadline)) || fail "$label: not ready after 120 s"
        sleep 0.01
    done
    while kill -0 $pid 2>/dev/null; do
        ((SECONDS < deadline)) || fail "$label: still running after 120 s"
        kill -USR1 $pid 2>/dev/null
        if ((i++ % 5 == 0)); then
            n=$(os_threads $pid 2>/dev/null)
            ((n > max_threads)) && max_threads=$n
        fi
        sleep 0.01
    done
    wait $pid
    status=$?
    sed "s/^/  $label: /" "$outfile.err"
    [ $status -eq 0 ] || fail "$label: exit status $status: $(cat "$outfile")"
}

failed=""
for flag in "" -r; do
    what="handler $([ -n "$flag" ] && echo with || echo without) SA_RESTART"
    run "native, $what" "$TMP/native$flag" "$SAMPLES/signal_waits" $flag
done
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
for flag in "" -r; do
    what="handler $([ -n "$flag" ] && echo with || echo without) SA_RESTART"
    run "coop, $what" "$TMP/coop$flag" "$COOPRUN" -- "$SAMPLES/signal_waits" $flag
    if ! diff -u "$TMP/native$flag" "$TMP/coop$flag" >&2; then
        failed="$failed; $what: output differs from the native one (above)"
    fi
    ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
        failed="$failed; $what: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
done
[ -z "$failed" ] || fail "under coop${failed}"
echo "PASS: SIGUSR1 during read, accept, nanosleep, cond_wait, sem_wait and sem_timedwait, with and without SA_RESTART: the same results natively and under coop, no data lost"
