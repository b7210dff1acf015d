#!/usr/bin/env bash
# iperf 2 (Debian's iperf: a thread per stream on both sides, a listener thread and a reporter
# thread that the traffic threads hand their reports to): `iperf -s` and `iperf -c -P 16 -n
# 128M`, both natively, then both under cooprun. Every one of the 16 streams must carry exactly
# 128 MiB by both sides' CSV reports (-y C). Natively the server has a thread per stream;
# under coop each side has one OS thread.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need iperf iperf
need_library

STREAMS=16 BYTES=$((128 * 1024 * 1024)) CLIENT_LIMIT_S=40
# Runtime threads allowed under coop: none. The server's listener thread resolves the -B
# address with getaddrinfo, a numeric one that needs no pool (shim/dns.c); the client resolves
# before it starts any thread (a plain call).
ALLOWED_RUNTIME=0

# run MODE [PREFIX...]: sets server_threads and client_threads.
run() {
    local mode=$1 port client rc lines
    shift
    port=$(free_port)
    start_server "server.$mode" "$@" iperf -s -B 127.0.0.1 -p "$port" -y C
    wait_port "$port"
    "$@" iperf -c 127.0.0.1 -p "$port" -P $STREAMS -n $BYTES -y C >"$TMP/client.$mode.out" 2>"$TMP/client.$mode.err" &
    client=$!
    watchdog $client $CLIENT_LIMIT_S
    # Both sides' threads, sampled together: the server's into $TMP/samples.
    start_sampler "$server"
    : >"$TMP/client_samples"
    while kill -0 $client 2>/dev/null; do
        os_threads $client >>"$TMP/client_samples" 2>/dev/null
        sleep 0.02
    done
    wait $client
    rc=$?
    stop_watchdog
    # The server writes its reports as the streams end: wait for them (the guard: 60 s).
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        (($(grep -c . "$TMP/server.$mode.out") >= STREAMS)) && break
        sleep 0.1
    done
    stop_sampler
    server_threads=$max_threads
    client_threads=$(sort -n "$TMP/client_samples" | tail -n 1)
    kill -0 "$server" 2>/dev/null || fail "$mode: iperf -s died: $(tail -n 20 "$TMP/server.$mode.err")"
    stop_server "$server" TERM
    note "$mode: client status $rc; at most $server_threads OS threads in the server ($samples samples), $client_threads in the client"
    ((rc == 0)) || fail "$mode: iperf -c exited with status $rc: $(tail -n 5 "$TMP/client.$mode.err")"
    # CSV: ...,stream id,interval,bytes,bits per second; one line per stream.
    for side in client server; do
        lines=$(awk -F, -v b=$BYTES '$8 == b' "$TMP/$side.$mode.out" | cut -d, -f6 | sort -un | grep -c .)
        note "$mode: $side reports $lines streams of exactly $BYTES bytes"
        ((lines == STREAMS)) ||
            fail "$mode: the $side reported $lines streams of $BYTES bytes, expected $STREAMS: $(head -n 20 "$TMP/$side.$mode.out")"
    done
}

run native
native_server=$server_threads native_client=$client_threads

COOP_STATS=1 run coop "$COOPRUN" --
check_threads coop "$server_threads"
check_threads coop "${client_threads:-0}"
created=$(coop_stat created "$TMP/server.coop.err")
note "coop: server $(grep '^coop: stats: greenlets' "$TMP/server.coop.err")"
note "coop: client $(grep '^coop: stats: greenlets' "$TMP/client.coop.err")"
((created >= STREAMS)) || fail "coop: the server created '$created' greenlets for $STREAMS streams"

matrix "iperf 2 (-s; -c -P $STREAMS)" "$(pkg_version iperf)" \
    "server $native_server, client $native_client" \
    "server $server_threads (hubs; $created greenlets), client $client_threads" pass
echo "PASS: $STREAMS streams of $BYTES bytes natively and under coop"
