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

start_http_backend

# run MODE [PREFIX...]: sets max_threads.
run() {
    local mode=$1 port
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
    drive_http_proxy "$mode" haproxy "$port" USR1 $CLIENTS $ROUNDS "$expected_bytes"
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
