#!/usr/bin/env bash
# File locks held by one holder while another thread waits for them and a third keeps
# working (tests/samples/file_locks.c): flock, OFD and POSIX record locks, lockf. The holder
# lets go only after the worker has worked during the wait, so the program ends only if
# the wait leaves the worker running. Natively and under coop the same lines; under coop
# on one hub, with no handoff: the waits went to the threadpool (shim/locks.c), they did
# not stall the hub until the monitor stepped in.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/file_locks" ] || fail "$SAMPLES/file_locks is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

run_sampled 30 "$TMP/native" "$SAMPLES/file_locks"
[ "$status" -eq 0 ] || fail "native: status $status: $(cat "$TMP/native" "$TMP/native.err")"
sed 's/^/  native: /' "$TMP/native"

COOP_HUBS=1 COOP_STATS=1 run_sampled 30 "$TMP/coop" "$COOPRUN" -- "$SAMPLES/file_locks"
[ "$status" -eq 0 ] || fail "coop: status $status: $(cat "$TMP/coop" "$TMP/coop.err")"
sed 's/^/  coop: /' "$TMP/coop"
diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop's lines differ from the native ones"
handoffs=$(sed -n 's/^coop: stats: .*handoffs \([0-9]*\).*/\1/p' "$TMP/coop.err")
[ "$handoffs" = 0 ] || fail "coop: the lock waits were handed off ($handoffs times): they should not block the hub"
note "coop, one hub: every lock waited for cooperatively, no handoff"
echo "PASS: lock waits leave the other threads running, natively and under coop"
