#!/usr/bin/env bash
# Debian's redis-server (jemalloc; three background threads, bio_close_file, bio_aof_fsync and
# bio_lazy_free, waiting on condition variables) under redis_client.py: 50 concurrent
# connections SET 10,000 keys (1 B to 8 KiB), INCR one shared counter 10,000 times and GET
# every key back; the counter must read 10,000 and DBSIZE 10,001. Natively redis has 4 OS
# threads; under cooprun one.
#
# Then the expected failure: with --io-threads 4 redis's main thread hands the replies to its
# I/O threads and spins until their pending counts drop to zero (a loop over atomic loads,
# handleClientsWithPendingWritesUsingThreads), while the I/O threads spin too before they
# block. Greenlets that never make a blocking call never yield, so under coop the I/O
# greenlets never run and the main one spins for ever: a livelock that no LD_PRELOAD library
# can break. Natively the same configuration serves the same client; under coop the test
# asserts the livelock as coop diagnoses it: COOP_MAX_BLOCKING_MS reports the main greenlet
# running without yielding inside handleClientsWithPendingWritesUsingThreads.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need "$PYTHON" python3
need_library

CONNS=50 KEYS=10000 TIMEOUT_S=60 SPIN_WAIT_S=60 # hang guards
# Runtime threads allowed under coop: none. redis resolves its bind address before it starts
# any thread (a plain call, no pool), and --jemalloc-bg-thread no keeps jemalloc from starting
# its background thread, which jemalloc creates with the real pthread_create (it finds it with
# dlsym(RTLD_NEXT), past coop), so that it would be an OS thread under coop too.
ALLOWED_RUNTIME=0
ARGS=(--bind 127.0.0.1 --save '' --appendonly no --jemalloc-bg-thread no --dir "$TMP")

# start MODE [PREFIX...] -- [REDIS ARGS]: starts redis-server; sets server, port.
start() {
    local mode=$1 prefix=() _
    shift
    while [ "$1" != -- ]; do prefix+=("$1"); shift; done
    shift
    port=$(free_port)
    start_server "$mode" "${prefix[@]}" redis-server --port "$port" "${ARGS[@]}" "$@"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$server" 2>/dev/null || fail "$mode: redis-server died at start, status $(
            wait "$server"; echo $?): $(tail -n 5 "$TMP/$mode.err" "$TMP/$mode.out")"
        sleep 0.1
    done
    fail "$mode: redis-server does not listen on port $port"
}

# client MODE: runs redis_client.py against $port, sampling the server's threads.
client() {
    local mode=$1 rc line
    start_sampler "$server"
    "$PYTHON" "$REALWORLD/redis_client.py" "$port" $CONNS $KEYS $TIMEOUT_S >"$TMP/client.$mode" 2>&1
    rc=$?
    stop_sampler
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line"
    note "$mode: at most $max_threads OS threads in $samples samples"
    ((rc == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "conns=$CONNS keys=$KEYS sets=$KEYS gets=$KEYS verified=$KEYS counter=$KEYS dbsize=$((KEYS + 1)) errors=0" ] ||
        fail "$mode: unexpected totals: $line"
}

# shutdown MODE: SHUTDOWN NOSAVE through the protocol; redis exits 0.
shutdown() {
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'SHUTDOWN NOSAVE\r\n' >&3
    exec 3<&-
    stop_server "$server" TERM
    [ "$status" -eq 0 ] || fail "$1: redis-server exited with status $status: $(tail -n 5 "$TMP/$1.out" "$TMP/$1.err")"
}

# --- the default configuration: it works ---
start native --
client native
native_threads=$max_threads
check_threads native "$native_threads"
shutdown native

COOP_STATS=1 start coop "$COOPRUN" -- --
client coop
coop_threads=$max_threads
check_threads coop "$coop_threads"
shutdown coop
created=$(coop_stat created "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= 3)) || fail "coop: redis's 3 background threads did not become greenlets (created '$created')"

# --- --io-threads 4: natively it works, under coop the main greenlet spins ---
start native-io -- --io-threads 4
client native-io
native_io_threads=$max_threads
shutdown native-io

COOP_MAX_BLOCKING_MS=1000 start coop-io "$COOPRUN" -- --io-threads 4
"$PYTHON" "$REALWORLD/redis_client.py" "$port" $CONNS $KEYS $SPIN_WAIT_S >"$TMP/client.coop-io" 2>&1 &
client_pid=$!
spin=
for _ in $(seq $((SPIN_WAIT_S * 10))); do
    grep -q 'without yielding' "$TMP/coop-io.err" && spin=$(grep -A1 'without yielding' "$TMP/coop-io.err" | tail -n 1) && break
    kill -0 $client_pid 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$server" 2>/dev/null # the client's connections end with it
wait $client_pid
client_rc=$?
wait "$server" 2>/dev/null
note "coop-io: client status $client_rc: $(head -n 1 "$TMP/client.coop-io")"
note "coop-io: coop: $(grep -m1 'without yielding' "$TMP/coop-io.err")"
note "coop-io:   $spin"
if ((client_rc == 0)); then
    fail "coop-io: redis --io-threads 4 served every request under coop: the livelock this test expects is gone (update the test and README)"
fi
[[ "$spin" == *handleClientsWithPendingWritesUsingThreads* ]] ||
    fail "coop-io: the client failed but coop reported no spin in handleClientsWithPendingWritesUsingThreads: $(head -n 20 "$TMP/coop-io.err")"

matrix redis-server "$(pkg_version redis-server)" "$native_threads; --io-threads 4: $native_io_threads" \
    "$coop_threads ($created greenlets); --io-threads 4: 1, livelocked" \
    "pass; --io-threads 4: expected failure (spin-wait), asserted via COOP_MAX_BLOCKING_MS"
echo "PASS: redis served $KEYS keys natively and under coop; with --io-threads 4 it livelocks under coop as expected"
