#!/usr/bin/env bash
# Hardening of libcoop.so, a library preloaded into programs it does not know:
# - the binary (readelf): full RELRO (BIND_NOW / FLAGS_1 NOW and a GNU_RELRO segment), no
#   text relocations, no RPATH/RUNPATH, the stack protector (it imports __stack_chk_fail),
#   FORTIFY (it imports __*_chk functions), a non-executable stack (GNU_STACK RW, not RWE)
#   and no segment both writable and executable;
# - greenlet stacks are never executable: tests/samples/stack_maps finds, from inside the
#   main thread and threads with the default, a 1 MiB and a 16 MiB stack, the mapping of
#   /proc/self/maps that holds a local variable: it has no 'x', natively and under coop;
# - coop writes no files: stack_maps and thread_limits (threads, fork, getaddrinfo) run in an
#   empty directory under strace, natively and under cooprun (also with --stats --log debug
#   --max-blocking 50); once the program is executed, no file is
#   opened for writing, created, renamed, linked or removed that the native run does not,
#   and the directory stays empty;
# - the dump signal is opt-in: without COOP_DUMP_SIGNAL, SIGUSR1 kills echo_threads (status
#   138) under coop as natively, even with two greenlets; with COOP_DUMP_SIGNAL=USR1 it
#   prints the greenlets instead and goes on serving;
# - cooprun refuses setuid and setgid programs: tested by test_cooprun.sh (checked here to
#   still be there).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
for program in "$SAMPLES/stack_maps" "$SAMPLES/echo_threads"; do
    [ -x "$program" ] || fail "$program is not built (make)"
done
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built"
command -v readelf >/dev/null || skip "needs readelf (binutils)"
ulimit -c 0

check_binary() {
    local lib=$COOP_LIBRARY dynamic segments symbols
    dynamic=$(readelf -dW "$lib") || fail "readelf -d $lib failed"
    segments=$(readelf -lW "$lib") || fail "readelf -l $lib failed"
    symbols=$(readelf --dyn-syms -W "$lib" | awk '$7 == "UND" { print $8 }')
    grep -qE '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$dynamic" || fail "no BIND_NOW: RELRO is partial"
    grep -q 'GNU_RELRO' <<<"$segments" || fail "no GNU_RELRO segment"
    note "ok: full RELRO (BIND_NOW and GNU_RELRO)"
    grep -qE '\(TEXTREL\)|TEXTREL' <<<"$dynamic" && fail "text relocations"
    grep -qE '\((RPATH|RUNPATH)\)' <<<"$dynamic" && fail "an RPATH/RUNPATH: $(grep -E 'RPATH|RUNPATH' <<<"$dynamic")"
    note "ok: no text relocations, no RPATH/RUNPATH"
    grep -q '^__stack_chk_fail@' <<<"$symbols" || fail "does not import __stack_chk_fail: no stack protector"
    note "ok: stack protector (imports __stack_chk_fail)"
    grep -E '^__[a-z0-9_]+_chk@' <<<"$symbols" | grep -qv '^__stack_chk_fail@' ||
        fail "imports no __*_chk function: not built with FORTIFY"
    note "ok: FORTIFY (imports $(grep -E '^__[a-z0-9_]+_chk@' <<<"$symbols" | grep -v '^__stack_chk_fail@' |
        sed 's/@.*//' | sort -u | paste -sd' '))"
    local stack
    stack=$(awk '$1 == "GNU_STACK" { print $(NF - 1) }' <<<"$segments")
    [ -n "$stack" ] || fail "no GNU_STACK segment: the loader would assume an executable stack"
    [ "$stack" = RW ] || fail "GNU_STACK is $stack, expected RW"
    # LOAD lines: type, 5 addresses and sizes, the flags (R, W, E, with spaces), the alignment.
    if awk '$1 == "LOAD" { f = ""; for (i = 7; i < NF; i++) f = f $i; print f }' <<<"$segments" |
        grep -q 'W.*E'; then
        fail "a LOAD segment is both writable and executable: $(awk '$1 == "LOAD"' <<<"$segments")"
    fi
    note "ok: non-executable stack (GNU_STACK RW), no writable and executable segment"
}

check_stacks() {
    local status
    "$SAMPLES/stack_maps" >"$TMP/maps.native" 2>"$TMP/maps.native.err"
    status=$?
    [ $status -eq 0 ] || fail "native stack_maps: status $status: $(cat "$TMP/maps.native" "$TMP/maps.native.err")"
    "$COOPRUN" -- "$SAMPLES/stack_maps" >"$TMP/maps.coop" 2>"$TMP/maps.coop.err"
    status=$?
    [ $status -eq 0 ] || fail "coop stack_maps: status $status: $(cat "$TMP/maps.coop" "$TMP/maps.coop.err")"
    diff -u "$TMP/maps.native" "$TMP/maps.coop" >&2 || fail "stack mappings differ from the native ones"
    grep -q x <(cut -d: -f2 "$TMP/maps.coop") && fail "an executable stack under coop: $(cat "$TMP/maps.coop")"
    note "ok: stacks not executable: $(grep -v '^work' "$TMP/maps.coop" | paste -sd';')"
}

FILE_CALLS=open,openat,openat2,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,link,linkat,symlink,symlinkat,truncate,mknod,mknodat,execve

# writes LOG PROGRAM: the calls of LOG, from the execve of PROGRAM on, that write to the
# file system: opens for writing or creating, and the calls that create, rename or remove.
writes() {
    awk -v prog="$2" '
        !started && index($0, "execve(\"" prog "\"") { started = 1; next }
        !started { next }
        / (open|openat|openat2)\(/ && !/O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND/ { next }
        / (open|openat|openat2|creat|rename|renameat|renameat2|unlink|unlinkat|mkdir|mkdirat|link|linkat|symlink|symlinkat|truncate|mknod|mknodat)\(/ {
            sub(/^[0-9]+ +/, ""); sub(/ = .*/, ""); print }' "$1" | sort -u
}

# traced LABEL PROGRAM [PREFIX...]: PROGRAM (a sample, with its arguments, one word each) under
# strace in an empty directory; sets its writes in $TMP/writes.LABEL.
traced() {
    local label=$1 program=$2 dir=$TMP/empty.$1 status
    shift 2
    mkdir "$dir"
    # shellcheck disable=SC2086 # program is words
    (cd "$dir" && exec strace -f -qq -e signal=none -e trace=$FILE_CALLS -o "$TMP/strace.$label" \
        "$@" $program) >"$TMP/traced.$label" 2>"$TMP/traced.$label.err"
    status=$?
    [ $status -eq 0 ] || fail "$label: $program under strace: status $status: $(cat "$TMP/traced.$label.err")"
    program=${program%% *}
    grep -q "execve(\"$program\"" "$TMP/strace.$label" || fail "$label: strace did not see the execve"
    [ -z "$(ls -A "$dir")" ] || fail "$label: files appeared in the empty directory: $(ls -A "$dir")"
    writes "$TMP/strace.$label" "$program" >"$TMP/writes.$label"
}

check_no_files() {
    command -v strace >/dev/null || { note "SKIPPED: the check that coop writes no files needs strace"; return; }
    local name program label total=0
    # stack_maps: threads, a pipe, a socket pair, a sleep; thread_limits: 20 threads, fork and
    # waitpid, getaddrinfo (which starts coop's threadpool).
    for name in stack_maps thread_limits; do
        program=$SAMPLES/$name
        [ $name = thread_limits ] && program="$program -m 20 -w -d"
        [ -x "$SAMPLES/$name" ] || fail "$SAMPLES/$name is not built (make)"
        traced $name.native "$program"
        traced $name.coop "$program" "$COOPRUN" --
        traced $name.coop-diagnostics "$program" "$COOPRUN" --stats --log debug --max-blocking 50 --
        for label in coop coop-diagnostics; do
            if ! diff -u "$TMP/writes.$name.native" "$TMP/writes.$name.$label" >&2; then
                fail "$name, $label: calls that write files, beyond the native ones (+ above)"
            fi
        done
        total=$((total + $(grep -c . "$TMP/strace.$name.coop")))
    done
    note "ok: no file written, created or removed under coop beyond the native runs ($total file calls traced)"
}

# start_echo [PREFIX...]: echo_threads in the background with one client connected on fd 3;
# sets server.
start_echo() {
    local _ port=
    # Emptied first: the background shell may not have truncated it when the loop first reads
    # it, and the previous run's port would be found.
    : >"$TMP/echo.out"
    "$@" "$SAMPLES/echo_threads" >"$TMP/echo.out" 2>"$TMP/echo.err" &
    server=$!
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        port=$(sed -n 's/^listening on //p' "$TMP/echo.out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || fail "echo_threads printed no port: $(cat "$TMP/echo.err")"
    exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to echo_threads"
    round_trip || fail "no echo from echo_threads"
}

round_trip() {
    local line
    echo "ping $RANDOM" >&3
    read -r -t $HANG_GUARD_S line <&3 && [[ "$line" == "ping "* ]]
}

# status_after_usr1 [PREFIX...]: sets status, echo_threads' exit status after SIGUSR1.
status_after_usr1() {
    local _
    start_echo "$@"
    kill -USR1 "$server"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$server" 2>/dev/null && { kill -KILL "$server"; fail "SIGUSR1 did not end echo_threads ($*)"; }
    wait "$server"
    status=$?
    exec 3<&-
}

check_dump_signal() {
    local native _
    status_after_usr1
    native=$status
    [ $native -eq 138 ] || fail "native: status $native after SIGUSR1, expected 138"
    status_after_usr1 env -u COOP_DUMP_SIGNAL "$COOPRUN" --
    [ $status -eq $native ] || fail "coop without COOP_DUMP_SIGNAL: status $status after SIGUSR1, natively $native"
    note "ok: without COOP_DUMP_SIGNAL, SIGUSR1 kills echo_threads (status $status) as natively"

    start_echo env COOP_DUMP_SIGNAL=USR1 "$COOPRUN" --
    kill -USR1 "$server"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        grep -q 'greenlets of [0-9]* hub' "$TMP/echo.err" && break
        sleep 0.1
    done
    kill -0 "$server" 2>/dev/null || fail "COOP_DUMP_SIGNAL=USR1: SIGUSR1 ended echo_threads"
    grep -q 'greenlets of [0-9]* hub' "$TMP/echo.err" || fail "COOP_DUMP_SIGNAL=USR1: no dump: $(cat "$TMP/echo.err")"
    round_trip || fail "COOP_DUMP_SIGNAL=USR1: echo_threads stopped serving after the dump"
    exec 3<&-
    kill -TERM "$server"
    wait "$server"
    status=$?
    [ $status -eq 0 ] || fail "COOP_DUMP_SIGNAL=USR1: status $status on SIGTERM after the dump"
    note "ok: with COOP_DUMP_SIGNAL=USR1, SIGUSR1 prints $(grep -c '^  #' "$TMP/echo.err") greenlets and the program goes on"
}

check_setuid_reference() {
    grep -q 'setuid program refused' "$ROOT/tests/integration/test_cooprun.sh" ||
        fail "test_cooprun.sh no longer checks that cooprun refuses setuid programs"
    note "ok: cooprun refusing setuid and setgid programs is tested by test_cooprun.sh"
}

check_binary
check_stacks
check_no_files
check_dump_signal
check_setuid_reference
echo "PASS: full RELRO, stack protector, FORTIFY, no executable stack (nor greenlet stacks), no files written, dump signal opt-in"
