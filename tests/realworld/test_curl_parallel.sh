#!/usr/bin/env bash
# Debian's curl, a single-threaded poll-driven client, fetches 300 files (1 B to 2 MiB) with
# `curl --parallel --parallel-max 50` from Python's http.server running natively, under cooprun
# and natively: curl must exit 0 both times and every body's SHA-256 must match. The URLs name
# the host by a name from /etc/hosts (not "localhost", which curl resolves by itself), so that
# curl's threaded resolver starts a thread for the lookup: under coop that thread is a greenlet
# and its getaddrinfo goes to coop's threadpool.
# The server is http_server_backlog.py: http.server with a listen backlog of 128 instead of 5
# (see that file: with 5, 50 connects at once leave transfers in the kernel's retransmission
# backoff for up to 90 s, in both modes).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need curl curl
need "$PYTHON" python3
need_library
# ASan's runtime preloaded into curl, even without coop, breaks glibc's locale lock: it starts
# lazily at the first malloc, inside libp11-kit's constructor's newlocale(), and its dlerror()
# takes that lock again; curl then hangs or survives by luck.
[ -z "$ASAN_RUNTIME" ] || skip "a sanitizer build: ASan preloaded into curl corrupts glibc's locale lock"

FILES=300 PARALLEL=50 CURL_LIMIT_S=40
# Runtime threads allowed under coop: the pool's, started by the resolver greenlet's
# getaddrinfo. curl's own threads (the resolver's) are greenlets.
ALLOWED_RUNTIME=$POOL

# A name other than localhost that resolves to a loopback address through /etc/hosts.
host=$(awk '$1 ~ /^127\./ { for (i = 2; i <= NF; i++) if ($i !~ /^localhost/) { print $i; exit } }' /etc/hosts)
if [ -n "$host" ] && getent ahostsv4 "$host" | grep -q '^127\.0\.0\.1 '; then
    resolver="host $host from /etc/hosts: curl's threaded resolver runs"
else
    host=127.0.0.1 resolver="no name for 127.0.0.1 in /etc/hosts: curl resolves nothing"
fi
note "$resolver"

mkdir -p "$TMP/www"
for i in $(seq 0 $((FILES - 1))); do
    case $i in
        0) size=1 ;;
        1 | 2) size=2097152 ;;
        *) size=$(((i * 7919) % 300000 + 1)) ;;
    esac
    head -c $size /dev/urandom >"$TMP/www/f$i"
done
(cd "$TMP/www" && sha256sum f*) >"$TMP/sums"

port=$(free_port)
start_server httpd "$PYTHON" "$REALWORLD/http_server_backlog.py" "$port" "$TMP/www"
wait_port "$port"
for i in $(seq 0 $((FILES - 1))); do
    printf 'url = "http://%s:%s/f%s"\noutput = "f%s"\n' "$host" "$port" "$i" "$i"
done >"$TMP/urls.cfg"

# run MODE [PREFIX...]: sets max_threads and elapsed_ms.
run() {
    local mode=$1 pid rc start bad
    shift
    rm -rf "$TMP/out.$mode"
    mkdir "$TMP/out.$mode"
    start=$(date +%s%N)
    (cd "$TMP/out.$mode" && exec "$@" curl -sS --parallel --parallel-max $PARALLEL \
        -K "$TMP/urls.cfg" >"$TMP/curl.$mode.out" 2>"$TMP/curl.$mode.err") &
    pid=$! # curl's own: the subshell and cooprun exec it
    start_sampler $pid
    watchdog $pid $CURL_LIMIT_S
    wait $pid
    rc=$?
    stop_sampler
    stop_watchdog
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
    note "$mode: curl exit status $rc in $elapsed_ms ms; at most $max_threads OS threads in $samples samples"
    ((rc == 0)) || fail "$mode: curl exited with status $rc: $(head -n 10 "$TMP/curl.$mode.err")"
    bad=$(cd "$TMP/out.$mode" && sha256sum -c "$TMP/sums" 2>&1 | grep -v ': OK$')
    [ -z "$bad" ] || fail "$mode: bodies differ: $(head -n 10 <<<"$bad")"
    note "$mode: $FILES bodies verified"
}

run native
native_threads=$max_threads
COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
check_threads coop "$coop_threads"
kill -0 "$server" 2>/dev/null || fail "the server died: $(tail -n 20 "$TMP/httpd.err")"
stop_server "$server" TERM
note "coop: $(grep '^coop: stats: greenlets' "$TMP/curl.coop.err")"
created=$(coop_stat created "$TMP/curl.coop.err")
if [ "$host" != 127.0.0.1 ]; then
    ((created >= 1)) || fail "coop: curl's resolver thread did not become a greenlet (created '$created')"
fi

matrix "curl --parallel" "$(pkg_version curl)" "$native_threads (+ a short-lived resolver thread)" \
    "$coop_threads (hubs + pool of $POOL; resolver: $created greenlet)" pass
echo "PASS: $FILES transfers verified natively and under coop ($resolver)"
