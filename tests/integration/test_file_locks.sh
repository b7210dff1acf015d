#!/usr/bin/env bash
# File locks held by one holder while another thread waits for them and a third keeps
# working (tests/samples/file_locks.c): flock, OFD and POSIX record locks, lockf. The holder
# lets go only after the worker has worked during the wait, so the program ends only if
# the wait leaves the worker running. Natively and under coop the same lines; under coop
# on one hub with handoff off, so only if the waits went to the threadpool (shim/locks.c)
# instead of blocking the hub's thread.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/file_locks" ] || fail "$SAMPLES/file_locks is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

same_without_handoff "$SAMPLES/file_locks" "the lock waits"
echo "PASS: lock waits leave the other threads running, natively and under coop"
