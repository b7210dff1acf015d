#!/usr/bin/env bash
# Debian's haproxy with `nbthread 4` (four threads, an epoll loop each, sharing listeners,
# connections and tasks through atomics and spinlocks) as an HTTP reverse proxy in front of
# Python's http.server (native), under http_client.py: 200 concurrent keep-alive clients, 4
# requests each for files of 1 B to 2 MiB, every body checked by SHA-256. Natively haproxy has
# 4 OS threads; under cooprun one. SIGUSR1 (soft stop) must end it with status 0 both times.
# haproxy's spinlocks are safe under coop because no thread makes a blocking call while it
# holds one: a greenlet never parks with a lock held, so none spins on a lock whose holder
# cannot run.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need haproxy haproxy
need "$PYTHON" python3
need_library

CLIENTS=200 ROUNDS=4 TIMEOUT_S=40 NBTHREAD=4
# Runtime threads allowed under coop: none. haproxy resolves the addresses of its config
# before it starts its threads (plain calls, no pool).
ALLOWED_RUNTIME=0

mkdir -p "$TMP/www"
for size in 1 100 1000 4096 65536 100000 1048576 2097152; do
    head -c $size /dev/urandom >"$TMP/www/file-$size"
done
expected_bytes=$(( (1 + 100 + 1000 + 4096 + 65536 + 100000 + 1048576 + 2097152) * CLIENTS * ROUNDS / 8 ))

backend_port=$(free_port)
"$PYTHON" "$REALWORLD/http_server_backlog.py" "$backend_port" "$TMP/www" >"$TMP/backend.out" 2>&1 &
backend=$!
wait_port "$backend_port"

# run MODE [PREFIX...]: sets max_threads.
run() {
    local mode=$1 port client line
    shift
    port=$(free_port)
    cat >"$TMP/haproxy.$mode.cfg" <<EOF
global
    nbthread $NBTHREAD
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client ${TIMEOUT_S}s
    timeout server ${TIMEOUT_S}s
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
    server backend 127.0.0.1:$backend_port maxconn 1024
EOF
    start_server "$mode" "$@" haproxy -db -f "$TMP/haproxy.$mode.cfg"
    wait_port "$port"
    start_sampler "$server"
    "$PYTHON" "$REALWORLD/http_client.py" "$port" "$TMP/www" $CLIENTS $ROUNDS $TIMEOUT_S >"$TMP/client.$mode" 2>&1
    client=$?
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: haproxy died: $(tail -n 20 "$TMP/$mode.err")"
    stop_server "$server" USR1
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line"
    note "$mode: at most $max_threads OS threads in $samples samples; exit status $status after SIGUSR1"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "requests=$((CLIENTS * ROUNDS)) ok=$((CLIENTS * ROUNDS)) bad=0 errors=0 bytes=$expected_bytes" ] ||
        fail "$mode: unexpected totals: $line"
    [ "$status" -eq 0 ] || fail "$mode: haproxy exited with status $status on SIGUSR1: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

run native
native_threads=$max_threads
((native_threads >= NBTHREAD)) || fail "native: $native_threads OS threads with nbthread $NBTHREAD"

COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= NBTHREAD - 1)) || fail "coop: haproxy's threads did not become greenlets (created '$created')"
stop_server "$backend" TERM

matrix "haproxy (nbthread $NBTHREAD)" "$(pkg_version haproxy)" "$native_threads" \
    "$coop_threads ($created greenlets)" pass
echo "PASS: $((CLIENTS * ROUNDS)) bodies through haproxy verified natively and under coop; $native_threads OS threads natively, $coop_threads under coop"
