#!/usr/bin/env bash
# Family signal, natively and under coop, with the same output both times: a thread takes
# signals with sigwait and sigwaitinfo (sigtimedwait times out), a handler interrupts a read
# with EINTR without SA_RESTART and lets it go on with it, a thread's signal to itself runs its
# handler at once and leaves its next read alone, sigsuspend and pause return after a handler;
# and meanwhile a ticker thread keeps running (the sample checks its ticks). Under coop the
# program has one OS thread.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/signals" ] || fail "$SAMPLES/signals is not built (make)"
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# run LABEL OUTFILE COMMAND...: sets max_threads; fails on a non-zero status.
run() {
    local label=$1 outfile=$2
    shift 2
    run_sampled 30 "$outfile" "$@"
    [ $status -eq 0 ] || fail "$label: exit status $status: $(cat "$outfile" "$outfile.err")"
}

run native "$TMP/native" "$SAMPLES/signals"
sed 's/^/  native: /' "$TMP/native.err"
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
# swapcontext sets a mask at every switch: it must be the one the thread has (a stale one
# unblocked SIGUSR1, which every thread blocks, and its default action killed the process).
# COOP_PATCH=-signal, one mask per OS thread, ends a greenlet's wait for a signal sent to it
# as the handler's flags say.
for setting in COOP_SWITCH=fast COOP_SWITCH=ucontext COOP_PATCH=-signal; do
    run "coop ($setting)" "$TMP/coop" env $setting "$COOPRUN" -- "$SAMPLES/signals"
    sed "s/^/  coop ($setting): /" "$TMP/coop.err"
    diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop's output ($setting) differs from the native one"
    ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
        fail "coop ($setting): $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
done
echo "PASS: sigwait, sigwaitinfo, sigtimedwait, EINTR and SA_RESTART on a read, a thread's own signal, sigsuspend and pause, natively and under coop (both switches, and without the signal family), one OS thread under coop"
