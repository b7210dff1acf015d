# shellcheck shell=bash disable=SC2034 # variables for the tests that source this file
# What test_ruby.sh and test_jvm.sh share: a thread-per-connection server of digest_client.py's
# protocol (digest_server.rb, DigestServer.java), loaded by CONNS concurrent connections
# sending REQUESTS requests in all, and stopped with SIGTERM, natively and under coop.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS=100 REQUESTS=400 CLIENT_TIMEOUT_S=20 START_LIMIT_S=30

# The bytes digest_client.py sends (and gets back): request k carries 1 + (k * 7919) % 192 KiB.
expected_bytes=0
for ((k = 0; k < REQUESTS; k++)); do
    expected_bytes=$((expected_bytes + 1 + (k * 7919) % (192 * 1024)))
done
EXPECTED_CLIENT="conns=$CONNS requests=$REQUESTS digests_ok=$REQUESTS echoes_ok=$REQUESTS bytes=$expected_bytes errors=0"
EXPECTED_STOPPED="stopped: connections=$CONNS requests=$REQUESTS"

# digest_run MODE STOP_STATUS COMMAND...: runs COMMAND PORT as the server (output in
# $TMP/MODE.out and .err), waits for its "listening on PORT", loads it with digest_client.py
# while sampling its OS threads, and stops it with SIGTERM. Sets problem to what went wrong,
# empty when everything did as it should: every answer right, the server's "stopped:" line
# counting every connection and request, exit status STOP_STATUS. Sets max_threads, samples.
digest_run() {
    local mode=$1 stop_status=$2 client_line stopped _
    shift 2
    problem="" max_threads=0 samples=0
    port=$(free_port)
    start_server "$mode" "$@" "$port"
    for _ in $(seq $((START_LIMIT_S * 10))); do
        grep -qx "listening on $port" "$TMP/$mode.out" && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    if grep -qx "listening on $port" "$TMP/$mode.out"; then
        start_sampler "$server"
        "$PYTHON" "$REALWORLD/digest_client.py" "$port" $CONNS $REQUESTS $CLIENT_TIMEOUT_S >"$TMP/client.$mode" 2>&1
        stop_sampler
        client_line=$(head -n 1 "$TMP/client.$mode")
        note "$mode: client: $client_line"
        note "$mode: at most $max_threads OS threads in $samples samples"
        [ "$client_line" = "$EXPECTED_CLIENT" ] ||
            problem="the client saw errors: $(head -n 4 "$TMP/client.$mode" | tr '\n' ' ')"
    elif kill -0 "$server" 2>/dev/null; then
        problem="no 'listening on $port' within $START_LIMIT_S s"
    else
        problem="the server died before listening"
    fi
    stop_server "$server" TERM
    stopped=$(grep '^stopped:' "$TMP/$mode.out")
    note "$mode: exit status $status${stopped:+, \"$stopped\"}"
    if [ -z "$problem" ] && [ "$stopped" != "$EXPECTED_STOPPED" ]; then
        problem="it printed '$stopped' on SIGTERM, not '$EXPECTED_STOPPED'"
    fi
    if [ -z "$problem" ] && [ "$status" -ne "$stop_status" ]; then
        problem="exit status $status on SIGTERM, not $stop_status"
    fi
    [ -z "$problem" ] ||
        problem="$problem (exit status $status): $(cat "$TMP/$mode.out" "$TMP/$mode.err" | grep -v '^#*$' | head -n 5)"
}

# digest_serve MODE STOP_STATUS COMMAND...: digest_run, which must go right; checks the OS
# threads (check_threads). Sets max_threads.
digest_serve() {
    local mode=$1
    digest_run "$@"
    [ -z "$problem" ] || fail "$mode: $problem"
    check_threads "$mode" "$max_threads"
}

# digest_test ROW VERSION STOP_STATUS COMMAND...: the whole test of a server, natively, then
# under coop, where every connection's thread must be a greenlet. Prints the matrix line for
# ROW (VERSION: the program's package version) and the PASS line.
digest_test() {
    local row=$1 version=$2 stop_status=$3 native_threads created
    shift 3
    digest_serve native "$stop_status" "$@"
    native_threads=$max_threads
    ((native_threads > CONNS / 2)) || fail "native: only $native_threads OS threads for $CONNS connections"
    COOP_STATS=1 digest_serve coop "$stop_status" "$COOPRUN" -- "$@"
    created=$(coop_stat created "$TMP/coop.err")
    note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
    ((created >= CONNS)) || fail "coop: the $CONNS connection threads did not become greenlets (created '$created')"
    matrix "$row" "$version" "$native_threads" "$max_threads ($created greenlets)" pass
    echo "PASS: $REQUESTS answers verified natively and under coop; $native_threads OS threads natively, $max_threads under coop"
}
