#!/usr/bin/env bash
# Debian's tinyproxy (a thread per connection; the main thread waits for connections in
# select) as a reverse proxy in front of Python's http.server (native), under http_client.py:
# 100 clients, one request each for files of 1 B to 1 MiB, every body checked by SHA-256.
# SIGTERM must end it with status 0 both times: its handler sets a flag that the main
# thread's select, ended by the signal, reads. Under coop the signal lands on whatever
# greenlet a hub runs, and coop hands it to the main greenlet, as the kernel gives a process
# signal to the thread the pid names (thread_signals checks that by construction; here
# tinyproxy under wrk once ignored SIGTERM in 2 runs of 15 without it).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need tinyproxy tinyproxy
need "$PYTHON" python3
need_library

CLIENTS=100 TIMEOUT_S=30
# Runtime threads allowed under coop: none. Its lookups are of numeric addresses, which need
# no pool (shim/dns.c).
ALLOWED_RUNTIME=0

mkdir -p "$TMP/www"
sizes=(1 1000 65536 1048576)
for size in "${sizes[@]}"; do
    head -c "$size" /dev/urandom >"$TMP/www/file-$size"
done
# One request per client, for the files in turn (http_client.py).
expected_bytes=$(( (1 + 1000 + 65536 + 1048576) * CLIENTS / ${#sizes[@]} ))

backend_port=$(free_port)
"$PYTHON" "$REALWORLD/http_server_backlog.py" "$backend_port" "$TMP/www" >"$TMP/backend.out" 2>&1 &
backend=$!
wait_port "$backend_port"

# proxy MODE [PREFIX...]: one run; sets max_threads.
proxy() {
    local mode=$1 port client line
    shift
    port=$(free_port)
    printf 'Port %s\nListen 127.0.0.1\nMaxClients %s\nLogLevel Critical\nReversePath "/" "http://127.0.0.1:%s/"\nReverseOnly Yes\n' \
        "$port" $((CLIENTS * 2)) "$backend_port" >"$TMP/tinyproxy.$mode.conf"
    start_server "$mode" "$@" tinyproxy -d -c "$TMP/tinyproxy.$mode.conf"
    wait_port "$port"
    start_sampler "$server"
    "$PYTHON" "$REALWORLD/http_client.py" "$port" "$TMP/www" $CLIENTS 1 $TIMEOUT_S >"$TMP/client.$mode" 2>&1
    client=$?
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: tinyproxy died: $(tail -n 20 "$TMP/$mode.err")"
    stop_server "$server" TERM
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line; at most $max_threads OS threads; exit status $status after SIGTERM"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "requests=$CLIENTS ok=$CLIENTS bad=0 errors=0 bytes=$expected_bytes" ] || fail "$mode: unexpected totals: $line"
    [ "$status" -eq 0 ] || fail "$mode: tinyproxy exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

proxy native
native_threads=$max_threads
COOP_STATS=1 proxy coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= CLIENTS)) || fail "coop: tinyproxy's threads did not become greenlets (created '$created')"
stop_server "$backend" TERM

matrix "tinyproxy (a thread per connection)" "$(pkg_version tinyproxy)" "$native_threads" \
    "$coop_threads ($created greenlets)" pass
echo "PASS: $CLIENTS bodies through tinyproxy verified natively and under coop; SIGTERM ends it both times"
