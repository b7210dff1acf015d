#!/usr/bin/env bash
# Debian's aria2c, a single-threaded download manager (one epoll loop, no threads), fetches a
# 64 MiB file from a local nginx (running natively) over 16 connections (`-x16 -s16 -k1M`: a
# split of 1 MiB, since aria2's default of 20 MiB would open 4), with `--checksum=sha-256=`:
# natively, under cooprun, and under `cooprun --always-cooperative`, where every call takes
# the cooperative path as in a program that has another thread (aria2c alone has one
# greenlet, so its calls go straight to libc). Each run must exit 0 with a file of the right
# SHA-256; a wrong checksum must fail with aria2c's own status for it (32) in every mode.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need aria2c aria2
need nginx nginx
need_library
# aria2c links libp11-kit (through GnuTLS), whose constructor calls newlocale(): with ASan's
# runtime preloaded, as for curl (test_curl_parallel.sh), glibc's locale lock breaks and the
# download made no progress in 60 s under make test-asan.
[ -z "$ASAN_RUNTIME" ] || skip "a sanitizer build: ASan preloaded into aria2c (libp11-kit) corrupts glibc's locale lock"

SIZE_MB=64 ARIA2_LIMIT_S=60
# Runtime threads allowed under coop: none, since aria2c starts no thread (its one greenlet
# calls libc directly); with --always-cooperative none either: its getaddrinfo of a numeric
# address runs on the caller (shim/dns.c).
ALLOWED_RUNTIME=0

mkdir -p "$TMP/www" "$TMP/nginx/logs" "$TMP/nginx/tmp"
head -c $((SIZE_MB << 20)) /dev/urandom >"$TMP/www/file"
sum=$(sha256sum "$TMP/www/file" | cut -d' ' -f1)
wrong=$(printf x | sha256sum | cut -d' ' -f1)

# One process, in the foreground, that never changes user (root's workers would be nobody's,
# who cannot read $TMP); every path under $TMP.
port=$(free_port)
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/tmp;
    proxy_temp_path $TMP/nginx/tmp;
    fastcgi_temp_path $TMP/nginx/tmp;
    uwsgi_temp_path $TMP/nginx/tmp;
    scgi_temp_path $TMP/nginx/tmp;
    server { listen 127.0.0.1:$port; root $TMP/www; }
}
EOF
start_server nginx nginx -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx.conf"
wait_port "$port"

# fetch MODE CHECKSUM [PREFIX...]: one download into $TMP/out.MODE; sets rc and max_threads.
fetch() {
    local mode=$1 checksum=$2 pid
    shift 2
    rm -rf "$TMP/out.$mode"
    mkdir "$TMP/out.$mode"
    "$@" aria2c -q -x16 -s16 -k1M --checksum=sha-256="$checksum" -d "$TMP/out.$mode" -o file \
        "http://127.0.0.1:$port/file" >"$TMP/aria2c.$mode.out" 2>"$TMP/aria2c.$mode.err" &
    pid=$! # aria2c's own: cooprun execs it
    start_sampler $pid
    watchdog $pid $ARIA2_LIMIT_S
    wait $pid
    rc=$?
    stop_sampler
    stop_watchdog
}

# run MODE [PREFIX...]: sets max_threads (of the good download).
run() {
    local mode=$1 got threads
    shift
    fetch "$mode" "$sum" "$@"
    threads=$max_threads
    ((rc == 0)) || fail "$mode: aria2c exited with status $rc: $(head -n 10 "$TMP/aria2c.$mode.out" "$TMP/aria2c.$mode.err")"
    got=$(sha256sum "$TMP/out.$mode/file" | cut -d' ' -f1)
    [ "$got" = "$sum" ] || fail "$mode: the file's SHA-256 is $got, not $sum"
    note "$mode: $SIZE_MB MiB verified; at most $threads OS threads in $samples samples"
    check_threads "$mode" "$threads"
    fetch "$mode-wrong" "$wrong" "$@"
    ((rc == 32)) || fail "$mode: with a wrong checksum aria2c exited with status $rc, not 32"
    max_threads=$threads
}

run native
native_threads=$max_threads
COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
note "$(grep '^coop: stats: greenlets' "$TMP/aria2c.coop.err")"
run always "$COOPRUN" --always-cooperative --
always_threads=$max_threads
kill -0 "$server" 2>/dev/null || fail "nginx died: $(tail -n 20 "$TMP/nginx/logs/error.log")"
stop_server "$server" QUIT
[ "$status" -eq 0 ] || fail "nginx exited with status $status on SIGQUIT"

matrix "aria2c -x16 (single-threaded epoll loop)" "$(pkg_version aria2)" "$native_threads" \
    "$coop_threads (always cooperative: $always_threads)" pass
echo "PASS: $SIZE_MB MiB by aria2c over 16 connections, checksum verified, natively and under coop (also always cooperative)"
