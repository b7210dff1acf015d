#!/usr/bin/env bash
# echo_threads out of file descriptors at accept, natively and under coop, with the same
# verdicts both times (tests/samples/fault_client.py emfile). The server runs with
# RLIMIT_NOFILE 64 (ulimit -n sets the hard limit too, so the server cannot raise it) and
# up to 40 more clients connect than it has descriptors (at most half as many as it has room
# for: a runtime may open descriptors of its own meanwhile):
# - it accepts until its table is full and serves every client it accepted;
# - the others wait in the backlog; accept fails with EMFILE, which the program sees (it
#   pauses 10 ms and retries: strace sees it fail at least twice, never more than 200 times
#   a second) without a busy loop (under 25% CPU over 2 s, from /proc/PID/stat);
# - when the served clients leave, the waiting ones are accepted and served, then a new
#   client; its descriptor count returns to where it was.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/echo_threads" ] || fail "$SAMPLES/echo_threads is not built (make)"
command -v python3 >/dev/null || skip "needs python3"
CLIENT=$ROOT/tests/samples/fault_client.py
NOFILE=64

# run MODE [PREFIX...]: the verdicts go to $TMP/MODE.
run() {
    local mode=$1 _ status rc
    shift
    : >"$TMP/server.out"    # the background shell may not have truncated it when first read
    # shellcheck disable=SC2016 # expanded by the inner shell
    bash -c 'ulimit -n "$1" && shift && exec "$@"' _ $NOFILE "$@" "$SAMPLES/echo_threads" \
        >"$TMP/server.out" 2>"$TMP/server.err" &
    server=$!
    port=
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        port=$(sed -n 's/^listening on //p' "$TMP/server.out")
        [ -n "$port" ] && break
        kill -0 "$server" 2>/dev/null || fail "$mode: echo_threads died: $(cat "$TMP/server.err")"
        sleep 0.1
    done
    [ -n "$port" ] || fail "$mode: echo_threads printed no port"
    grep -q "^Max open files  *$NOFILE  *$NOFILE " "/proc/$server/limits" ||
        fail "$mode: the server's limit is not $NOFILE: $(grep 'open files' "/proc/$server/limits")"
    python3 "$CLIENT" emfile --port "$port" --pid "$server" >"$TMP/$mode" 2>"$TMP/$mode.err"
    rc=$?
    sed "s/^/  $mode: /" "$TMP/$mode.err"
    kill -0 "$server" 2>/dev/null || fail "$mode: echo_threads died: $(cat "$TMP/server.err")"
    [ $rc -eq 0 ] || fail "$mode: $(grep -h 'check failed' "$TMP/$mode.err" | head -5)"
    kill -TERM "$server"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$server" 2>/dev/null && fail "$mode: echo_threads still runs $HANG_GUARD_S s after SIGTERM"
    wait "$server"
    status=$?
    [ $status -eq 0 ] || fail "$mode: echo_threads exited with status $status: $(cat "$TMP/server.err")"
}

run native
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
run coop "$COOPRUN" --
diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop's verdicts differ from the native ones"
echo "PASS: EMFILE at accept reaches the program natively and under coop, no busy loop, and the server recovers"
