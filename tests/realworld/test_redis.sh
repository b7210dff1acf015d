#!/usr/bin/env bash
# Debian's redis-server (jemalloc; three background threads, bio_close_file, bio_aof_fsync and
# bio_lazy_free, waiting on condition variables) under redis_client.py: 50 concurrent
# connections SET 10,000 keys (1 B to 8 KiB), INCR one shared counter 10,000 times and GET
# every key back; the counter must read 10,000 and DBSIZE 10,001; then BGSAVE (a fork) must
# write the snapshot. Natively redis has 4 OS threads; under cooprun one.
#
# Then --io-threads 4: redis's main thread hands the replies to its I/O threads and spins
# until their pending counts drop to zero (a loop over atomic loads,
# handleClientsWithPendingWritesUsingThreads), while each I/O thread spins a million times
# waiting for work before it looks at its mutex (IOThreadMain): waits without a blocking
# call on either side. Under coop, where they share one OS thread, each such wait lasts until
# the spinning greenlet is preempted (COOP_PREEMPT_MS, 10 ms by default): without preemption
# it was a livelock. The same client, with IO_KEYS keys natively and under coop, so that the
# run stays short (each batch of replies costs a few time slices: thousands of preemptions
# for 10,000 keys).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need "$PYTHON" python3
need_library

CONNS=50 KEYS=10000 IO_KEYS=2000 TIMEOUT_S=60 # a hang guard
DUMP_SIGNAL=RTMIN+5 # coop's dump signal (COOP_DUMP_SIGNAL), which redis does not use
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

# client MODE [KEYS]: runs redis_client.py against $port, sampling the server's threads.
client() {
    local mode=$1 keys=${2:-$KEYS} rc line
    start_sampler "$server"
    "$PYTHON" "$REALWORLD/redis_client.py" "$port" $CONNS "$keys" $TIMEOUT_S >"$TMP/client.$mode" 2>&1
    rc=$?
    stop_sampler
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line"
    note "$mode: at most $max_threads OS threads in $samples samples"
    ((rc == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")$(dump "$mode")"
    [ "$line" = "conns=$CONNS keys=$keys sets=$keys gets=$keys verified=$keys counter=$keys dbsize=$((keys + 1)) errors=0" ] ||
        fail "$mode: unexpected totals: $line"
}

# dump MODE: under coop, the server's greenlets as its dump signal lists them (each hub prints
# its own; a hub that never gets back to its loop prints nothing), for a failure's report.
dump() {
    [[ $1 == coop* ]] || return 0
    kill -s "$DUMP_SIGNAL" "$server" 2>/dev/null
    sleep 2
    printf "\nthe server's greenlets:\n"
    sed -n '/^coop: greenlets/,$p' "$TMP/$1.err" | head -n 200
}

# bgsave MODE: BGSAVE, redis's fork of a child that writes the snapshot; it must succeed
# (INFO persistence) and leave the dump file, within HANG_GUARD_S. jemalloc's fork handlers
# run in that fork: under coop they once deadlocked there, registered twice (locals.c).
bgsave() {
    local mode=$1 info _
    rm -f "$TMP/dump.rdb"
    timeout "$HANG_GUARD_S" redis-cli -p "$port" BGSAVE >/dev/null || fail "$mode: BGSAVE got no answer$(dump "$mode")"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        info=$(timeout "$HANG_GUARD_S" redis-cli -p "$port" INFO persistence | tr -d '\r')
        grep -q '^rdb_bgsave_in_progress:0' <<<"$info" && break
        sleep 0.1
    done
    grep -q '^rdb_last_bgsave_status:ok' <<<"$info" && [ -s "$TMP/dump.rdb" ] ||
        fail "$mode: BGSAVE did not write $TMP/dump.rdb: $(grep -E '^rdb_(bgsave_in_progress|last_bgsave_status)' <<<"$info" | tr '\n' ' ')$(dump "$mode")"
    note "$mode: BGSAVE wrote a dump of $(stat -c %s "$TMP/dump.rdb") bytes"
    rm "$TMP/dump.rdb"      # the next server would start from it
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
bgsave native
shutdown native

COOP_STATS=1 COOP_DUMP_SIGNAL=$DUMP_SIGNAL start coop "$COOPRUN" -- --
client coop
coop_threads=$max_threads
check_threads coop "$coop_threads"
bgsave coop
shutdown coop
created=$(coop_stat created "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= 3)) || fail "coop: redis's 3 background threads did not become greenlets (created '$created')"

# --- --io-threads 4: the waits are spin loops, which preemption breaks under coop ---
start native-io -- --io-threads 4
started_io=$SECONDS
client native-io $IO_KEYS
note "native-io: in about $((SECONDS - started_io)) s"
native_io_threads=$max_threads
shutdown native-io

COOP_STATS=1 COOP_DUMP_SIGNAL=$DUMP_SIGNAL start coop-io "$COOPRUN" -- --io-threads 4
started_io=$SECONDS
client coop-io $IO_KEYS
coop_io_seconds=$((SECONDS - started_io))
coop_io_threads=$max_threads
check_threads coop "$coop_io_threads"
shutdown coop-io
created_io=$(coop_stat created "$TMP/coop-io.err")
preemptions=$(coop_stat preemptions "$TMP/coop-io.err")
note "coop-io: $(grep '^coop: stats: preemptions' "$TMP/coop-io.err"), in about $coop_io_seconds s"
((created_io >= 6)) || fail "coop-io: redis's 3 bio and 3 I/O threads did not become greenlets (created '$created_io')"
((preemptions > 0)) || fail "coop-io: no preemption, yet the I/O greenlets ran"

matrix redis-server "$(pkg_version redis-server)" "$native_threads; --io-threads 4: $native_io_threads" \
    "$coop_threads ($created greenlets); --io-threads 4: $coop_io_threads ($created_io greenlets, $preemptions preemptions)" \
    "pass; --io-threads 4: pass (its spin-waits preempted)"
echo "PASS: redis served $KEYS keys natively and under coop, and with --io-threads 4 $IO_KEYS keys, its spin-waits preempted under coop"
