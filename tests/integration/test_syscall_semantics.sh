#!/usr/bin/env bash
# The syscall_semantics sample asks the kernel what a runtime in between could answer
# otherwise: futexes shared with other processes, sigaction's old action, calls the kernel
# answers at once, a blocking connect's end state, bad pointers and timeouts, popen in a
# forked child. It runs three ways: natively, under cooprun (one greenlet: the calls pass
# through) and under cooprun --always-cooperative (every call takes the cooperative path).
# The three must print the same lines; the native run must pass its own checks. Answers
# that depend on the kernel's version are only recorded by the sample, so the comparison
# with the native run is what holds them.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/syscall_semantics" ] || fail "$SAMPLES/syscall_semantics is not built (make)"

RUN_LIMIT_S=120

# run MODE [PREFIX...]: one run, its lines in $TMP/MODE.out.
run() {
    local mode=$1 status
    shift
    timeout -k 5 $RUN_LIMIT_S "$@" "$SAMPLES/syscall_semantics" >"$TMP/$mode.out" 2>"$TMP/$mode.err"
    status=$?
    sed "s/^/  $mode: /" "$TMP/$mode.out"
    [ $status -eq 0 ] || fail "$mode: syscall_semantics exited with status $status $(cat "$TMP/$mode.err")"
}

run native
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
run coop "$COOPRUN" --
run cooperative "$COOPRUN" --always-cooperative --
diff -u "$TMP/native.out" "$TMP/coop.out" >&2 || fail "under coop the lines differ from the native ones"
diff -u "$TMP/native.out" "$TMP/cooperative.out" >&2 ||
    fail "with the cooperative path forced the lines differ from the native ones"
echo "PASS: the same $(wc -l <"$TMP/native.out") lines natively, under coop and on the cooperative path"
