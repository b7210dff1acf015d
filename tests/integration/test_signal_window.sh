#!/usr/bin/env bash
# Signals that land in a gap (tests/samples/signal_window): sigsuspend and ppoll with SIGUSR1
# open end with EINTR after exactly one handler, the signal sent by the process's own
# clock_gettime (through the kernel) on the first clock read it sees: under coop the wait's
# last one before it sleeps (a wait that slept on after that handler ran would end only for
# the child process's later signal, with two); and a process signal pending while every
# thread blocks it runs its handler in the thread that unblocks it, though spare hubs start
# meanwhile (under coop: threads block their hubs in raw system calls). The same lines
# natively and under coop, on every TLS mechanism, on one hub and two. Then, on one hub that
# never hands off (one OS thread for the kernel to deliver to), signals that come while their
# thread is in the kernel or leaving a wait: a ppoll on a file (a real call) and a thread
# cancelled in sigsuspend each run the handler in their thread.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/signal_window" ] || fail "$SAMPLES/signal_window is not built (make)"
HANG_GUARD_S=60

timeout "$HANG_GUARD_S" "$SAMPLES/signal_window" >"$TMP/native" || fail "native: status $?"
timeout "$HANG_GUARD_S" "$SAMPLES/signal_window" kernel-waits >"$TMP/native-kernel" || fail "native kernel-waits: status $?"
sed 's/^/  native: /' "$TMP/native" "$TMP/native-kernel"
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
for mechanism in "${TLS_MECHANISMS[@]}"; do
    for hubs in 1 2; do
        COOP_TLS=$mechanism COOP_HUBS=$hubs timeout "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/signal_window" >"$TMP/coop" ||
            fail "coop ($mechanism, $hubs hubs): status $?: $(cat "$TMP/coop")"
        diff -u "$TMP/native" "$TMP/coop" >&2 ||
            fail "coop ($mechanism, $hubs hubs): the lines differ from the native ones"
    done
    COOP_TLS=$mechanism COOP_HUBS=1 COOP_HANDOFF_MS=0 timeout "$HANG_GUARD_S" "$COOPRUN" -- \
        "$SAMPLES/signal_window" kernel-waits >"$TMP/coop" || fail "coop kernel-waits ($mechanism): status $?: $(cat "$TMP/coop")"
    diff -u "$TMP/native-kernel" "$TMP/coop" >&2 ||
        fail "coop kernel-waits ($mechanism): the lines differ from the native ones"
done
echo "PASS: a signal as sigsuspend and ppoll go to sleep ends them after one handler; a pending one as hubs start waits for the thread that unblocks it; one in a real ppoll or a cancelled thread's cleanup runs there; natively and under coop ($TLS_MECHANISM_LIST)"
