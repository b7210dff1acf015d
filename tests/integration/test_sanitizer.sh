#!/usr/bin/env bash
# make test-asan: AddressSanitizer still finds memory errors that a thread makes on its stack
# or its heap when the thread is a greenlet (tests/samples/memory_errors), and reports them as
# it does natively: the same error, in the same function, with the stack variable named (ASan
# knows the greenlet's stack bounds). A run without an error stays clean.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -n "$ASAN_RUNTIME" ] || skip "not a sanitizer build: make test-asan runs this test"
[ -x "$SAMPLES/memory_errors" ] || fail "$SAMPLES/memory_errors is not built (make)"

# check KIND ERROR FUNCTION DETAIL: both runs fail with ASan's report of ERROR in FUNCTION,
# the report containing DETAIL.
check() {
    local kind=$1 error=$2 function=$3 detail=$4 mode out
    for mode in native coop; do
        out=$TMP/$kind.$mode
        if [ $mode = coop ]; then
            "$COOPRUN" -- "$SAMPLES/memory_errors" "$kind" >"$out" 2>&1
        else
            "$SAMPLES/memory_errors" "$kind" >"$out" 2>&1
        fi
        status=$?
        [ $status -eq 1 ] || fail "$kind, $mode: status $status, expected ASan's 1: $(head -c 800 "$out")"
        grep -q "ERROR: AddressSanitizer: $error on address" "$out" ||
            fail "$kind, $mode: no $error report: $(head -c 800 "$out")"
        grep -q "in $function " "$out" || fail "$kind, $mode: the report does not name $function"
        grep -qF -- "$detail" "$out" || fail "$kind, $mode: the report lacks '$detail'"
    done
    note "ok: $kind: $error in $function, natively and under coop"
}

check stack stack-buffer-overflow overrun_stack "'array' (line"
check heap heap-use-after-free read_freed "freed by thread"
"$COOPRUN" -- "$SAMPLES/memory_errors" none >"$TMP/none" 2>&1 ||
    fail "none: status $?: $(head -c 800 "$TMP/none")"
grep -q '^no error' "$TMP/none" || fail "none: $(head -c 800 "$TMP/none")"
note "ok: no error, no report"
