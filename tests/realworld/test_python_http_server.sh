#!/usr/bin/env bash
# Debian's `python3 -m http.server` (a ThreadingHTTPServer: a thread per connection) serves a
# directory of files from 1 B to 2 MiB to 200 concurrent keep-alive clients (http_client.py,
# threads of http.client), 4 requests each, every body checked by SHA-256. Natively the server
# then has ~200 threads; under cooprun one OS thread, and coop's statistics say that ~200
# greenlets were alive at once.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need "$PYTHON" python3
need_library

CLIENTS=200 ROUNDS=4 TIMEOUT_S=40
# Runtime threads allowed under coop: the pool's. The server's only name lookup (getfqdn of
# the bound address) runs before any thread exists, as a plain call, and files are read
# without offload, so the pool should stay unstarted; it is allowed all the same.
ALLOWED_RUNTIME=$POOL

mkdir -p "$TMP/www"
for size in 1 100 1000 4096 65536 100000 1048576 2097152; do
    head -c $size /dev/urandom >"$TMP/www/file-$size"
done

# run MODE [PREFIX...]: one server, one client run; sets max_threads and peak (coop only).
run() {
    local mode=$1 port client line
    shift
    port=$(free_port)
    # env --default-signal: a background job of a script starts with SIGINT ignored, and
    # Python keeps it so; http.server exits cleanly (status 0) on SIGINT, where coop prints
    # its statistics.
    start_server "$mode" env --default-signal=INT "$@" "$PYTHON" -m http.server \
        -p HTTP/1.1 -b 127.0.0.1 -d "$TMP/www" "$port"
    wait_port "$port"
    start_sampler "$server"
    "$PYTHON" "$REALWORLD/http_client.py" "$port" "$TMP/www" $CLIENTS $ROUNDS $TIMEOUT_S \
        >"$TMP/client.$mode" 2>&1
    client=$?
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: the server died: $(tail -n 20 "$TMP/$mode.err")"
    stop_server "$server" INT
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line"
    note "$mode: at most $max_threads OS threads in $samples samples; server exit status $status"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "requests=$((CLIENTS * ROUNDS)) ok=$((CLIENTS * ROUNDS)) bad=0 errors=0 bytes=$expected_bytes" ] ||
        fail "$mode: unexpected totals: $line"
    [ "$status" -eq 0 ] || fail "$mode: the server exited with status $status on SIGINT: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

# Client i asks for file (i + r) mod 8 in round r: with 200 clients each file equally often.
expected_bytes=$(( (1 + 100 + 1000 + 4096 + 65536 + 100000 + 1048576 + 2097152) * CLIENTS * ROUNDS / 8 ))

run native
native_threads=$max_threads
((native_threads > CLIENTS / 2)) ||
    fail "native: only $native_threads threads for $CLIENTS concurrent connections"

COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/coop.err")
peak=$(coop_stat "peak alive" "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
[ -n "$peak" ] || fail "coop: no statistics printed at exit: $(tail -n 5 "$TMP/coop.err")"
((peak > CLIENTS / 2)) || fail "coop: only $peak greenlets alive at once for $CLIENTS connections"

matrix "python3 -m http.server" "$(pkg_version python3.11)" "$native_threads" \
    "$coop_threads ($created greenlets, $peak at once)" pass
echo "PASS: $((CLIENTS * ROUNDS)) bodies verified natively and under coop; $native_threads OS threads natively, $coop_threads under coop"
