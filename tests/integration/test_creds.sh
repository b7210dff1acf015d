#!/usr/bin/env bash
# setuid and its kin under coop (shim/creds.c, tests/samples/creds_threads.c): a child a
# thread forks starts a thread and changes its ids (glibc knows the child's OS thread by
# the forking greenlet's record: its handler must run there, or glibc signals for ever); initgroups (whose setgroups is glibc's own) reaches every
# task; while workers compute, another thread changes the effective uid, main changes it
# back, then main drops root for good; after each step every worker and every task of the
# process shows the new ids. glibc makes the call on each OS thread with a signal whose
# handler clears a mark in the thread's own record: run on a greenlet's area, it cleared the
# wrong one and glibc signalled for ever (the program hung). The same lines natively and
# under coop, on one hub and on the suite's. Needs root (CI runs as root): skipped otherwise.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/creds_threads" ] || fail "$SAMPLES/creds_threads is not built (make)"

run_sampled "$HANG_GUARD_S" "$TMP/native" "$SAMPLES/creds_threads"
[ "$status" -eq 77 ] && skip "$(tail -n 1 "$TMP/native.err")"
[ "$status" -eq 0 ] || fail "native: status $status: $(cat "$TMP/native" "$TMP/native.err")"
sed 's/^/  native: /' "$TMP/native"
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
for hubs in 1 "${COOP_HUBS:-default}"; do
    ([ "$hubs" = default ] || export COOP_HUBS=$hubs
     run_sampled "$HANG_GUARD_S" "$TMP/coop" "$COOPRUN" -- "$SAMPLES/creds_threads"
     [ "$status" -eq 0 ] || fail "coop on $hubs hub(s): status $status: $(cat "$TMP/coop" "$TMP/coop.err")"
     diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop on $hubs hub(s): its lines differ from the native ones") || exit 1
    note "coop on $hubs hub(s): the same lines"
done
echo "PASS: setuid, setresuid, seteuid, setgid and setgroups reach every thread and task, natively and under coop"
