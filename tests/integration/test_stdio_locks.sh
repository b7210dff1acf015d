#!/usr/bin/env bash
# stdio's FILE locks under coop (tests/samples/stdio_locks): threads that hold stdout with
# flockfile across a sleep, and threads that print to it meanwhile. Natively and under coop
# the program ends, prints every line once, and a locker's lines with no blocking call between
# them stand together. (Before shim/stdio.c, coop hung here: the next printf waited in glibc's
# futex for a holder that was parked on the same OS thread.)
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/stdio_locks" ] || fail "$SAMPLES/stdio_locks is not built (make)"

# check MODE FILE: every line once, "a" lines followed by their "b", "done" last.
check() {
    local mode=$1 out=$2 lines
    lines=$(wc -l <"$out")
    [ "$lines" -eq $((4 * 20 * 3 + 4 * 50 + 1)) ] || fail "$mode: $lines lines, expected 441"
    [ "$(sort "$out" | uniq -d | wc -l)" -eq 0 ] || fail "$mode: lines printed twice"
    [ "$(tail -n 1 "$out")" = done ] || fail "$mode: 'done' is not last"
    awk '/ a$/ { want = $1 " b"; next } want != "" { if ($0 != want) { print "after " want; exit 1 } want = "" }' \
        "$out" >"$TMP/awk.out" || fail "$mode: a locker's first two lines were split ($(cat "$TMP/awk.out"))"
    note "ok: $mode: 441 lines, each once, every locker's pair together"
}

for mode in native coop; do
    prefix=()
    [ $mode = coop ] && prefix=("$COOPRUN" --)
    timeout 120 "${prefix[@]}" "$SAMPLES/stdio_locks" >"$TMP/$mode" 2>"$TMP/$mode.err" # a hang guard
    status=$?
    [ $status -eq 0 ] || fail "$mode: status $status (124: it hung): $(head -c 400 "$TMP/$mode.err")"
    check $mode "$TMP/$mode"
done
