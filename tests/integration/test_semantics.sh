#!/usr/bin/env bash
# The semantics sample checks what blocking calls do (timeouts, errors, EINTR, poll on mixed
# descriptors, non-blocking flags...). It must pass natively, under coop, and under coop with the
# cooperative path forced (--always-cooperative), with the same lines.
#
# Its stdin and stdout are pipes that this shell holds too: the program's fds 0 and 1 share
# their open file descriptions with the shell's, as a terminal is shared with a login shell.
# After the program, the shell's own view (/proc/self/fdinfo) must still be blocking: a
# runtime that left O_NONBLOCK there would break every other holder of the pipe.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/semantics" ] || fail "$SAMPLES/semantics is not built (make)"

RUN_LIMIT_S=60

# The file status flags (octal) of this shell's descriptor $1, as its description has them.
description_flags() { sed -n 's/^flags:[[:space:]]*//p' "/proc/$BASHPID/fdinfo/$1"; }

# Fails when flags $2 include O_NONBLOCK (octal 04000).
expect_blocking() {
    ((8#$2 & 8#4000)) && fail "$1: O_NONBLOCK left on (flags $2)"
    return 0
}

# run_semantics MODE [PREFIX...]: one run; its output ends up in $TMP/MODE.out.
run_semantics() {
    local mode=$1 in out reader status in_flags out_flags
    shift
    mkfifo "$TMP/$mode.in" "$TMP/$mode.pipe"
    # Written late, so the program's read of stdin blocks.
    { sleep 0.2; echo "late input"; } >"$TMP/$mode.in" &
    cat "$TMP/$mode.pipe" >"$TMP/$mode.out" &
    reader=$!
    exec {in}<"$TMP/$mode.in" {out}>"$TMP/$mode.pipe"

    # The program gets the two pipes as fds 0 and 1 only, not the shell's copies as well.
    timeout -k 5 $RUN_LIMIT_S "$@" "$SAMPLES/semantics" <&$in >&$out 2>"$TMP/$mode.err" \
        {in}<&- {out}>&-
    status=$?
    in_flags=$(description_flags $in)
    out_flags=$(description_flags $out)
    exec {in}<&- {out}>&-
    wait $reader

    sed "s/^/  $mode: /" "$TMP/$mode.out"
    [ $status -eq 0 ] || fail "$mode: semantics failed with status $status $(cat "$TMP/$mode.err")"
    expect_blocking "$mode: stdin" "$in_flags"
    expect_blocking "$mode: stdout" "$out_flags"
    grep -q '^ok stdin_read$' "$TMP/$mode.out" || fail "$mode: stdin was not read as a pipe"
}

run_semantics native

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

run_semantics coop "$COOPRUN" --
diff -u "$TMP/native.out" "$TMP/coop.out" >&2 || fail "coop's lines differ from the native ones"
run_semantics cooperative "$COOPRUN" --always-cooperative --
diff -u "$TMP/native.out" "$TMP/cooperative.out" >&2 ||
    fail "with the cooperative path forced the lines differ from the native ones"
echo "PASS: the same semantics natively, under coop and on the cooperative path; stdin and stdout left blocking"
