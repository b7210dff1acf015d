#!/usr/bin/env bash
# memcheck runs samples under coop, greenlet stacks registered with valgrind
# (VALGRIND_STACK_REGISTER in core/stack.c): no invalid reads or writes, no use of
# uninitialised values, in the switch, the parking lot or the shim.
source "$(dirname "$0")/lib.sh"
command -v valgrind >/dev/null || skip "valgrind is not installed"
[ -z "$ASAN_RUNTIME" ] || skip "a sanitizer build: ASan checks it, and memcheck cannot run beside ASan"
memcheck() {
    timeout 300 valgrind --trace-children=yes --error-exitcode=9 --quiet \
        --suppressions="$ROOT/tests/integration/valgrind.supp" \
        env LD_PRELOAD="$COOP_LIBRARY" "$@" >"$TMP/out" 2>"$TMP/err" \
        || { tail -40 "$TMP/err"; fail "memcheck: $*"; }
    note "clean: $*"
}
memcheck "$SAMPLES/sleepers" 50 1
memcheck "$SAMPLES/torture" mutex recursive_mutex cond_turns rwlock once keys join
