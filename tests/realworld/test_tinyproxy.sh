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

make_www $CLIENTS 1

start_http_backend

# proxy MODE [PREFIX...]: one run; sets max_threads.
proxy() {
    local mode=$1 port
    shift
    port=$(free_port)
    printf 'Port %s\nListen 127.0.0.1\nMaxClients %s\nLogLevel Critical\nReversePath "/" "http://127.0.0.1:%s/"\nReverseOnly Yes\n' \
        "$port" $((CLIENTS * 2)) "$backend_port" >"$TMP/tinyproxy.$mode.conf"
    start_server "$mode" "$@" tinyproxy -d -c "$TMP/tinyproxy.$mode.conf"
    drive_http_proxy "$mode" tinyproxy "$port" TERM $CLIENTS 1 "$expected_bytes"
}

native_and_coop proxy
thread_per_connection_proxy_done tinyproxy tinyproxy "tinyproxy (a thread per connection)"
echo "PASS: $CLIENTS bodies through tinyproxy verified natively and under coop; SIGTERM ends it both times"
