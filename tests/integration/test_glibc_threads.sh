#!/usr/bin/env bash
# Threads that glibc starts by itself call the program back (tests/samples/glibc_threads.c):
# a SIGEV_THREAD timer, POSIX AIO, getaddrinfo_a and a message queue's notification. Under
# coop those threads are not greenlets (glibc's internal thread creation is not interposed),
# so their callbacks reach coop's wrappers from OS threads no hub runs, and wake greenlets
# that wait in a condition variable, a semaphore and a pipe. Natively and under coop every
# check passes (a message queue is skipped where a sandbox forbids it or the netlink socket
# of its notification) with the same lines.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/glibc_threads" ] || fail "$SAMPLES/glibc_threads is not built (make)"

for mode in native coop; do
    prefix=()
    [ $mode = coop ] && prefix=("$COOPRUN" --)
    timeout 120 "${prefix[@]}" "$SAMPLES/glibc_threads" >"$TMP/$mode" 2>"$TMP/$mode.err" # a hang guard
    status=$?
    [ $status -eq 0 ] || fail "$mode: status $status (124: it hung): $(cat "$TMP/$mode" "$TMP/$mode.err" | head -c 600)"
    note "$mode: $(grep -c '^ok' "$TMP/$mode") checks passed"
done
cmp -s "$TMP/native" "$TMP/coop" || fail "the lines differ: $(diff "$TMP/native" "$TMP/coop" | head -n 10)"
