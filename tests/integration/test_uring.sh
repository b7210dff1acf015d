#!/usr/bin/env bash
# io_uring waits (tests/samples/uring_wait.c, liburing): a thread waits for a read's
# completion while a worker works; the byte comes only after the worker's rounds, so the
# program ends only if the wait leaves the worker running. The same lines natively and
# under coop; under coop on one hub with no handoff: liburing's waits park on the ring's
# fd (shim/uring.c) instead of stalling the hub until the monitor steps in.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/uring_wait" ] || fail "$SAMPLES/uring_wait is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

run_sampled 30 "$TMP/native" "$SAMPLES/uring_wait"
[ "$status" -eq 77 ] && skip "$(cat "$TMP/native.err")"
[ "$status" -eq 0 ] || fail "native: status $status: $(cat "$TMP/native" "$TMP/native.err")"
sed 's/^/  native: /' "$TMP/native"

COOP_HUBS=1 COOP_STATS=1 run_sampled 30 "$TMP/coop" "$COOPRUN" -- "$SAMPLES/uring_wait"
[ "$status" -eq 0 ] || fail "coop: status $status: $(cat "$TMP/coop" "$TMP/coop.err")"
sed 's/^/  coop: /' "$TMP/coop"
diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop's lines differ from the native ones"
handoffs=$(sed -n 's/^coop: stats: .*handoffs \([0-9]*\).*/\1/p' "$TMP/coop.err")
[ "$handoffs" = 0 ] || fail "coop: the waits were handed off ($handoffs times): they should not block the hub"
note "coop, one hub: every wait parked on the ring's fd, no handoff"
echo "PASS: io_uring waits leave the other threads running, natively and under coop"
