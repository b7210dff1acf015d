#!/usr/bin/env bash
# Debian's stunnel4 (a thread per connection; OpenSSL 3) terminating TLS in front of Python's
# http.server (native): 100 TLS clients, two requests each for files of 1 B to 1 MiB, every
# body checked by SHA-256; then 50 connections held open while SIGTERM ends it, which must
# exit with status 0 and close each of them. At SIGTERM stunnel's main thread lists its
# connection threads, wakes them through a pipe and joins each, while each, as it ends, takes
# itself off that list and detaches itself. Under coop a thread that detached itself while
# main was already joining it left main joining for ever (seen once in four runs of 3,000
# connections ended by SIGTERM as they closed; this run need not meet that moment, which
# test_greenlet's test_join_errors makes by construction).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need stunnel stunnel4
need openssl openssl
need "$PYTHON" python3
need_library

CLIENTS=100 HELD=50 TIMEOUT_S=30
# Runtime threads allowed under coop: none (numeric addresses need no pool, shim/dns.c).
ALLOWED_RUNTIME=0

make_www $CLIENTS 2
start_http_backend
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >"$TMP/openssl.log" 2>&1 ||
    fail "openssl could not make a certificate: $(tail -n 3 "$TMP/openssl.log")"

# tunnel MODE [PREFIX...]: one run; sets max_threads.
tunnel() {
    local mode=$1 port client line holder
    shift
    port=$(free_port)
    printf '%s\n' "foreground = yes" "pid =" "debug = 4" "output = $TMP/stunnel.$mode.log" \
        "[https]" "accept = 127.0.0.1:$port" "connect = 127.0.0.1:$backend_port" \
        "cert = $TMP/cert.pem" "key = $TMP/key.pem" >"$TMP/stunnel.$mode.conf"
    start_server "$mode" "$@" stunnel "$TMP/stunnel.$mode.conf"
    wait_port "$port"
    start_sampler "$server"
    HTTP_CLIENT_TLS=1 "$PYTHON" "$REALWORLD/http_client.py" "$port" "$TMP/www" $CLIENTS 2 "$TIMEOUT_S" \
        >"$TMP/client.$mode" 2>&1
    client=$?
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "requests=$((CLIENTS * 2)) ok=$((CLIENTS * 2)) bad=0 errors=0 bytes=$expected_bytes" ] ||
        fail "$mode: unexpected totals: $line"
    : >"$TMP/hold.$mode"
    "$PYTHON" "$REALWORLD/tls_hold.py" "$port" $HELD "/$(ls "$TMP/www" | head -n 1)" "$HANG_GUARD_S" \
        >"$TMP/hold.$mode" 2>&1 &
    holder=$!
    wait_line "$TMP/hold.$mode" '^held ' "$holder" "tls_hold.py"
    stop_sampler
    stop_server "$server" TERM
    wait "$holder"
    note "$mode: $(tr '\n' ' ' <"$TMP/hold.$mode"); at most $max_threads OS threads in $samples samples; exit status $status after SIGTERM"
    [ "$(head -n 1 "$TMP/hold.$mode")" = "held $HELD" ] || fail "$mode: connections not held: $(cat "$TMP/hold.$mode")"
    [ "$status" -eq 0 ] || fail "$mode: stunnel exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    grep -qx "closed $HELD" "$TMP/hold.$mode" || fail "$mode: held connections not closed: $(cat "$TMP/hold.$mode")"
    check_threads "$mode" "$max_threads"
}

native_and_coop tunnel
thread_per_connection_proxy_done stunnel stunnel4 "stunnel4 terminating TLS (a thread per connection)"
echo "PASS: $((CLIENTS * 2)) bodies through stunnel verified natively and under coop; SIGTERM with $HELD connections open ends it both times"
