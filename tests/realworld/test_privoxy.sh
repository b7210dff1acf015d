#!/usr/bin/env bash
# Debian's privoxy (a thread per connection) as the forward proxy of http_client.py for
# Python's http.server (native): 100 clients, two requests each on one connection for files
# of 1 B to 1 MiB (all 100 connections open at once after the first), every body checked by
# SHA-256. SIGTERM must end it both times, with status 15: privoxy's
# handler exits with the signal's number.
#
# privoxy sets SO_LINGER (5 s) on every connection it accepts, so its close of a connection
# waits until the client has read every byte: under coop each such close held its hub's OS
# thread (89 hand-offs in 200 requests under curl) until closes of lingering sockets went to
# the threadpool (test_lingering_close holds that by construction).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin # privoxy is in /usr/sbin, which a user's PATH may lack
need privoxy privoxy
need "$PYTHON" python3
need_library

CLIENTS=100 TIMEOUT_S=30 STOP_STATUS=15
# Runtime threads allowed under coop: the threadpool, where the lingering closes run.
ALLOWED_RUNTIME=$POOL

make_www $CLIENTS 2

start_http_backend
export HTTP_CLIENT_ORIGIN=http://127.0.0.1:$backend_port

# proxy MODE [PREFIX...]: one run; sets max_threads.
proxy() {
    local mode=$1 port
    shift
    port=$(free_port)
    mkdir -p "$TMP/privoxy.$mode"
    printf 'listen-address 127.0.0.1:%s\nconfdir %s\nlogdir %s\nmax-client-connections %s\n' \
        "$port" "$TMP/privoxy.$mode" "$TMP/privoxy.$mode" $((CLIENTS * 2)) >"$TMP/privoxy.$mode.conf"
    start_server "$mode" "$@" privoxy --no-daemon "$TMP/privoxy.$mode.conf"
    drive_http_proxy "$mode" privoxy "$port" TERM $CLIENTS 2 "$expected_bytes"
}

native_and_coop proxy
thread_per_connection_proxy_done privoxy privoxy "privoxy (a thread per connection; SO_LINGER on each)"
echo "PASS: $((CLIENTS * 2)) bodies through privoxy verified natively and under coop; SIGTERM ends it both times (status 15)"
