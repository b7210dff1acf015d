# shellcheck shell=bash disable=SC2034 # variables for the tests that source this file
# What test_ruby.sh and test_jvm.sh share: a thread-per-connection server of digest_client.py's
# protocol (digest_server.rb, DigestServer.java), loaded by CONNS concurrent connections
# sending REQUESTS requests in all, and stopped with SIGTERM; and whether its run under coop must pass,
# which depends on whether coop gives every greenlet a shared library's thread-locals of its
# own (library_tls_per_greenlet).
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

# library_tls_per_greenlet: builds library_tls_probe (cc) and runs it under coop; true when
# every greenlet had the thread-locals of a library linked at start and of one loaded with
# dlopen to itself. Sets tls_probe to the probe's line.
library_tls_per_greenlet() {
    local dir=$TMP/probe cc=${CC:-cc} rc
    mkdir -p "$dir"
    {
        $cc -shared -fPIC -DPROBE_LIBRARY -o "$dir/libprobe.so" "$REALWORLD/library_tls_probe.c" &&
            cp "$dir/libprobe.so" "$dir/libprobe_loaded.so" &&
            $cc -o "$dir/library_tls_probe" "$REALWORLD/library_tls_probe.c" -L"$dir" -lprobe \
                -Wl,-rpath,"$dir" -pthread -ldl
    } >"$dir/build.log" 2>&1 || fail "cannot build library_tls_probe with $cc: $(tail -n 3 "$dir/build.log")"
    tls_probe=$("$COOPRUN" "$dir/library_tls_probe" "$dir/libprobe_loaded.so" 2>&1)
    rc=$?
    note "coop: library_tls_probe: $tls_probe"
    ((rc < 2)) || fail "library_tls_probe could not run under coop (status $rc)"
    return $rc
}

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

# digest_expected_failure MODE STOP_STATUS SIGNATURE COMMAND...: digest_run, which must go
# wrong with output matching the extended regular expression SIGNATURE; as in test_redis.sh's
# --io-threads run, a run that goes right fails the test, so that the row and README are
# updated. Sets failure to the first line of output matching SIGNATURE.
digest_expected_failure() {
    local mode=$1 stop_status=$2 signature=$3
    shift 3
    digest_run "$mode" "$stop_status" "$@"
    [ -n "$problem" ] ||
        fail "$mode: the server passed under coop: the failure this test expects is gone (update the test and README)"
    note "$mode: failed as expected: $problem"
    failure=$(cat "$TMP/$mode.out" "$TMP/$mode.err" | grep -E -m 1 "$signature" | sed 's/^#[[:space:]]*//')
    failure=${failure//"$REALWORLD/"/}
    [ -n "$failure" ] ||
        fail "$mode: the server failed, but not with /$signature/: $problem"
    note "$mode: expected failure: $failure"
}

# digest_test ROW VERSION STOP_STATUS SIGNATURE HOW COMMAND...: the whole test of a server,
# natively, then under coop: a pass when coop gives greenlets the thread-locals of shared
# libraries (library_tls_per_greenlet), otherwise digest_expected_failure with SIGNATURE.
# Prints the matrix line for ROW (VERSION: the program's package version; HOW: how the run
# under coop ends while it fails) and the PASS line.
digest_test() {
    local row=$1 version=$2 stop_status=$3 signature=$4 how=$5 native_threads created
    shift 5
    digest_serve native "$stop_status" "$@"
    native_threads=$max_threads
    ((native_threads > CONNS / 2)) || fail "native: only $native_threads OS threads for $CONNS connections"
    if library_tls_per_greenlet; then
        COOP_STATS=1 digest_serve coop "$stop_status" "$COOPRUN" -- "$@"
        created=$(coop_stat created "$TMP/coop.err")
        note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
        ((created >= CONNS)) || fail "coop: the $CONNS connection threads did not become greenlets (created '$created')"
        matrix "$row" "$version" "$native_threads" "$max_threads ($created greenlets)" pass
        echo "PASS: $REQUESTS answers verified natively and under coop; $native_threads OS threads natively, $max_threads under coop"
    else
        digest_expected_failure coop "$stop_status" "$signature" "$COOPRUN" -- "$@"
        matrix "$row" "$version" "$native_threads" "- ($how)" \
            "expected failure: shared libraries' thread-locals shared by greenlets ($failure)"
        echo "PASS: $REQUESTS answers verified natively; under coop, with shared libraries' thread-locals shared by greenlets, it fails as expected"
    fi
}
