#!/usr/bin/env bash
# Debian's perl (built with ithreads: every thread a clone of the interpreter) running
# perl_threads_server.pl, a thread-per-connection line server whose connection threads block
# every signal while main handles SIGTERM through $SIG{TERM}. line_client.py opens 50
# connections at once and sends 5,000 lines of 1 B to 4 KiB over them, checking every answer;
# the server must then count 50 connection threads running, each connection must have a thread
# of its own, and the client holds all 50 open. With those 50 threads alive, each blocking
# every signal, SIGTERM must interrupt main's accept and run its handler in thread 0; main
# shuts the connections down (the client sees each end), joins every thread and exits 0.
# Natively the server has 51 OS threads while the client holds its connections; under cooprun
# one.
#
# Under coop every greenlet has its own signal mask: before that (issue 16), the connection
# threads' sigprocmask set the mask of the hub's one OS thread, SIGTERM stayed blocked and
# pending, and the server never stopped.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need perl perl
need "$PYTHON" python3
need_library
perl -Mthreads -e 1 2>/dev/null || skip "this perl has no ithreads ('use threads' fails)"

CONNS=50 LINES=5000 TIMEOUT_S=30
# Runtime threads allowed under coop: none. IO::Socket::INET resolves 127.0.0.1 before any
# thread exists (a plain call: coop's pool stays unstarted).
ALLOWED_RUNTIME=0

# run MODE [PREFIX...]: sets held_threads (the server's OS threads while the client holds its
# connections).
run() {
    local mode=$1 port client_pid client line
    shift
    port=$(free_port)
    start_server "$mode" "$@" perl "$REALWORLD/perl_threads_server.pl" "$port"
    # Not wait_port: its probe would count as one more connection.
    wait_line "$TMP/$mode.out" "^listening on $port\$" "$server" "$mode: the server"
    "$PYTHON" "$REALWORLD/line_client.py" "$port" $CONNS $LINES $TIMEOUT_S >"$TMP/client.$mode" 2>&1 &
    client_pid=$!
    wait_line "$TMP/client.$mode" "^holding $CONNS connections\$" $client_pid "$mode: the client"
    held_threads=$(os_threads "$server")
    stop_server "$server" TERM
    wait $client_pid
    client=$?
    line=$(tail -n +2 "$TMP/client.$mode" | head -n 1)
    note "$mode: $line"
    note "$mode: server: $(tail -n 1 "$TMP/$mode.out")"
    note "$mode: $held_threads OS threads while the client held its connections; exit status $status after SIGTERM"
    [ "$status" -eq 0 ] || fail "$mode: the server exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "conns=$CONNS lines=$LINES verified=$LINES running=$CONNS threads=$CONNS closed=$CONNS errors=0" ] ||
        fail "$mode: unexpected totals: $line"
    [ "$(tail -n 1 "$TMP/$mode.out")" = "stopped by SIGTERM in thread 0 after $CONNS connections, $LINES lines" ] ||
        fail "$mode: the server did not stop as expected: $(tail -n 3 "$TMP/$mode.out" "$TMP/$mode.err")"
}

run native
native_threads=$held_threads
((native_threads == CONNS + 1)) || fail "native: $native_threads OS threads with $CONNS connection threads running"

COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$held_threads
check_threads coop "$coop_threads"
created=$(coop_stat created "$TMP/coop.err")
alive=$(coop_stat "peak alive" "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= CONNS)) || fail "coop: the connection threads did not become greenlets (created '$created')"

matrix "perl ithreads server" "$(pkg_version perl)" "$native_threads" "$coop_threads ($alive greenlets)" pass
echo "PASS: $LINES lines over $CONNS connections answered by a Perl thread each, natively and under coop; SIGTERM stops the server, with every connection thread alive and blocking every signal, with status 0 both times"
