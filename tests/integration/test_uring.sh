#!/usr/bin/env bash
# io_uring waits (tests/samples/uring_wait.c, liburing): a thread waits for a read's
# completion while a worker works; the byte comes only after the worker's rounds, so the
# program ends only if the wait leaves the worker running. The same lines natively and
# under coop; under coop on one hub with handoff off, so only if liburing's waits park on
# the ring's fd (shim/uring.c) instead of blocking the hub's thread.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/uring_wait" ] || fail "$SAMPLES/uring_wait is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

same_without_handoff "$SAMPLES/uring_wait" "the io_uring waits"
echo "PASS: io_uring waits leave the other threads running, natively and under coop"
