#!/usr/bin/env bash
# Node.js (the nodejs package as installed) running node_app.js: 4 worker_threads compute
# SHA-256 chains at start, then an HTTP server reads each requested file with fs.readFile and
# derives a key with crypto.pbkdf2, both on libuv's threadpool, which Node runs on 4 threads of
# its own, beside V8's platform threads (garbage collection, compilation). curl --parallel
# --parallel-max 50 (native) fetches 300 files (1 B to 2 MiB): every body's SHA-256 must match,
# and the pbkdf2 keys and the workers' results must be the same natively and under cooprun.
# Natively node has ~11 OS threads; under coop one: the workers, the threadpool and V8's
# platform threads are greenlets, and the pool's work runs on the main OS thread.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need node nodejs
need curl curl
need_library

FILES=300 PARALLEL=50 CURL_LIMIT_S=40
# Runtime threads allowed under coop: none. node listens on a numeric address (no lookup) and
# its own threadpool is greenlets; coop's pool has no work to do.
ALLOWED_RUNTIME=0

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

# run MODE [PREFIX...]: sets max_threads.
run() {
    local mode=$1 port rc bad
    shift
    port=$(free_port)
    start_server "$mode" "$@" node "$REALWORLD/node_app.js" "$port" "$TMP/www"
    wait_line "$TMP/$mode.out" '^listening' "$server" "$mode: node"
    for i in $(seq 0 $((FILES - 1))); do
        printf 'url = "http://127.0.0.1:%s/f%s"\noutput = "f%s"\n' "$port" "$i" "$i"
    done >"$TMP/urls.$mode"
    mkdir "$TMP/out.$mode"
    start_sampler "$server"
    (cd "$TMP/out.$mode" && exec timeout $CURL_LIMIT_S curl -sS --parallel --parallel-max $PARALLEL \
        -K "$TMP/urls.$mode" -w '%{url_effective} %{http_code} %header{x-key}\n' \
        >"$TMP/keys.$mode.raw" 2>"$TMP/curl.$mode.err")
    rc=$?
    stop_sampler
    curl -sS "http://127.0.0.1:$port/workers" >"$TMP/workers.$mode"
    kill -0 "$server" 2>/dev/null || fail "$mode: node died: $(tail -n 20 "$TMP/$mode.err")"
    stop_server "$server" TERM
    note "$mode: curl status $rc; at most $max_threads OS threads in $samples samples; node exit status $status"
    ((rc == 0)) || fail "$mode: curl exited with status $rc: $(head -n 5 "$TMP/curl.$mode.err")"
    bad=$(cd "$TMP/out.$mode" && sha256sum -c "$TMP/sums" 2>&1 | grep -v ': OK$')
    [ -z "$bad" ] || fail "$mode: bodies differ: $(head -n 10 <<<"$bad")"
    sed "s|127.0.0.1:$port|HOST|" "$TMP/keys.$mode.raw" | sort >"$TMP/keys.$mode"
    (($(grep -c ' 200 [0-9a-f]\{32\}$' "$TMP/keys.$mode") == FILES)) ||
        fail "$mode: not every response had status 200 and a key: $(grep -v ' 200 [0-9a-f]\{32\}$' "$TMP/keys.$mode" | head -n 5)"
    (($(grep -c '^[0-9a-f]\{64\}$' "$TMP/workers.$mode") == 4)) ||
        fail "$mode: /workers answered: $(cat "$TMP/workers.$mode")"
    [ "$status" -eq 0 ] || fail "$mode: node exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    note "$mode: $FILES bodies verified, $FILES pbkdf2 keys, 4 worker results"
    check_threads "$mode" "$max_threads"
}

run native
native_threads=$max_threads
((native_threads >= 7)) || fail "native: node had only $native_threads OS threads"
COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= 8)) || fail "coop: node's threads did not become greenlets (created '$created')"
cmp -s "$TMP/keys.native" "$TMP/keys.coop" || fail "the pbkdf2 keys differ under coop: $(diff "$TMP/keys.native" "$TMP/keys.coop" | head -n 5)"
cmp -s "$TMP/workers.native" "$TMP/workers.coop" || fail "the workers' results differ under coop"
note "the same keys and worker results natively and under coop"

matrix "node (worker_threads, fs, crypto; HTTP)" "$(pkg_version nodejs)" "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: $FILES responses verified natively and under coop; $native_threads OS threads natively, $coop_threads under coop"
