#!/usr/bin/env bash
# Debian's Apache Traffic Server 9 (traffic_server alone, no manager) as a caching reverse
# proxy in front of Python's http.server (native), under http_client.py: 100 keep-alive
# clients, 4 requests each for files of 1 B to 1 MiB, every body checked by SHA-256.
# Its runtime is one of its own: 4 event threads, each an epoll loop with its own queues,
# C++ thread_locals throughout, task and accept threads, and a cache on a file (no RAM
# cache) read and written by a pool of AIO threads that hand their results back to the
# event threads: a file asked for again must come from it.
# SIGTERM must end it with status 0 both times. It runs from a runroot of its own under
# $TMP (its configuration, cache, logs), as the running user.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need traffic_server trafficserver
need "$PYTHON" python3
need curl curl
need_library

CLIENTS=100 ROUNDS=4 TIMEOUT_S=40 EVENT_THREADS=4
# Runtime threads allowed under coop: none. Its origin is a numeric address, which it
# resolves itself, and it looks up no user (user_id #-1).
ALLOWED_RUNTIME=0

make_www $CLIENTS $ROUNDS
start_http_backend

# runroot MODE PORT: a runroot of Debian's configuration with this run's port, event
# threads, cache file and remap rule; prints the path of its runroot.yaml.
runroot() {
    local root=$TMP/ts.$1
    mkdir -p "$root/etc" "$root/cache" "$root/log" "$root/run" "$root/var"
    cp -r /etc/trafficserver/. "$root/etc/"
    cat >"$root/runroot.yaml" <<YAML
prefix: $root
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $root/etc
cachedir: $root/cache
localstatedir: $root/var
runtimedir: $root/run
logdir: $root/log
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
YAML
    cat >>"$root/etc/records.config" <<CONF
CONFIG proxy.config.http.server_ports STRING $2
CONFIG proxy.config.admin.user_id STRING #-1
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT $EVENT_THREADS
CONFIG proxy.config.http.wait_for_cache INT 2
CONFIG proxy.config.http.cache.required_headers INT 0
CONFIG proxy.config.cache.ram_cache.size INT 0
CONFIG proxy.config.http.insert_response_via_str INT 3
CONF
    echo "$root/cache 64M" >"$root/etc/storage.config"
    echo "map http://127.0.0.1:$2/ http://127.0.0.1:$backend_port/" >>"$root/etc/remap.config"
    echo "$root/runroot.yaml"
}

# cache_hit MODE PORT: a file asked for again comes from the cache on disk (its Via header
# says "cH": a fresh hit; with no RAM cache, read by the AIO threads). The first answer may
# go out before its copy in the cache is complete: it is asked for again until a hit, for
# HANG_GUARD_S at most.
cache_hit() {
    local via end=$((SECONDS + HANG_GUARD_S))
    while ((SECONDS < end)); do
        via=$(curl -sfS --max-time "$HANG_GUARD_S" -o /dev/null -D - "http://127.0.0.1:$2/file-65536") ||
            fail "$1: a GET through traffic_server failed"
        [[ $via == *"[u"?"cH"* ]] && return 0
        sleep 0.1
    done
    fail "$1: no cache hit in $HANG_GUARD_S s of GETs of one file: $(grep -i '^via:' <<<"$via" | tr -d '\r')"
}

# run MODE [PREFIX...]: one run; sets max_threads.
run() {
    local mode=$1 port yaml
    shift
    port=$(free_port)
    yaml=$(runroot "$mode" "$port")
    start_server "$mode" "$@" traffic_server --run-root="$yaml"
    wait_port "$port" "$server" "$TMP/$mode.err" "$TMP/ts.$mode/log/diags.log"
    cache_hit "$mode" "$port"
    drive_http_proxy "$mode" traffic_server "$port" TERM $CLIENTS $ROUNDS "$expected_bytes"
}

native_and_coop run
((created > EVENT_THREADS)) || fail "coop: traffic_server's threads did not become greenlets (created '$created')"
stop_server "$backend" TERM
matrix "trafficserver ($EVENT_THREADS event threads, AIO cache)" "$(pkg_version trafficserver)" \
    "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: $((CLIENTS * ROUNDS)) bodies through Traffic Server verified natively and under coop; SIGTERM ends it both times"
