#!/usr/bin/env bash
# Misbehaving clients against echo_threads (one thread per connection, blocking read/write),
# natively and under coop, with the same verdicts both times (tests/samples/fault_client.py):
# - reset:     16 clients send a large message without reading it back, so the server is
#              blocked writing their echo, read part of it, then reset (SO_LINGER 0 + close);
#              a bystander client's echoes keep coming back whole meanwhile;
# - halfclose: clients of 0 B to 9 MiB send, then shutdown(SHUT_WR): every byte comes back,
#              then EOF;
# - slowloris: 10 clients send one byte a second for 5 s while a normal client's round trips
#              stay fast (median < 20 ms, max < 500 ms);
# - vanish:    200 clients connect and leave without sending (half with a reset);
# - cycles:    10,000 connect/close cycles, with a round trip every 1,000, and the accept queue
#              drains.
# After each one a new client's 1 MiB echo comes back whole and the server's descriptor count
# (/proc/PID/fd) returns to where it was. The server then stops on SIGTERM with status 0, and
# under coop it had one OS thread all along.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/echo_threads" ] || fail "$SAMPLES/echo_threads is not built (make)"
command -v python3 >/dev/null || skip "needs python3"
CLIENT=$ROOT/tests/samples/fault_client.py
SCENARIOS="reset halfclose slowloris vanish cycles"
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}


# run MODE [PREFIX...]: every scenario against one server; the verdicts go to $TMP/MODE.
run() {
    local mode=$1 scenario n max_threads=0
    shift
    start_server "$@"
    : >"$TMP/$mode"
    for scenario in $SCENARIOS; do
        echo "== $scenario" >>"$TMP/$mode"
        python3 "$CLIENT" "$scenario" --port "$port" --pid "$server" >>"$TMP/$mode" 2>"$TMP/$mode.err"
        local rc=$?
        sed "s/^/  $mode: /" "$TMP/$mode.err"
        kill -0 "$server" 2>/dev/null || fail "$mode: echo_threads died during $scenario: $(cat "$TMP/server.err")"
        n=$(os_threads "$server")
        ((n > max_threads)) && max_threads=$n
        [ $rc -eq 0 ] || fail "$mode: $scenario: $(grep -h 'check failed' "$TMP/$mode.err" | head -5)"
    done
    stop_server "$mode"
    if [ "$mode" = coop ]; then
        ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
            fail "coop: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
    fi
}

run native
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
run coop "$COOPRUN" --
diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop's verdicts differ from the native ones"
echo "PASS: resets mid-echo, half-closes, slow clients, vanishing clients and 10,000 connect/close cycles, natively and under coop: no byte lost, descriptors back to baseline"
