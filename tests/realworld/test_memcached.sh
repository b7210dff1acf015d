#!/usr/bin/env bash
# Debian's memcached with 4 worker threads (libevent: an epoll loop per worker, the listener
# handing connections over through a pipe per worker, plus its LRU, slab, hash-table and log
# maintainer threads) under memcache_client.py: 100 concurrent connections store 10,000 keys
# (values of 1 B to 16 KiB) with `set`, read each back with `get` and again with multi-key
# `get`s, every value and flag checked; `stats` must then count 10,000 items. Natively
# memcached has 10 OS threads (named mc-worker, mc-lrumaint...); under cooprun it has one.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need memcached memcached
need "$PYTHON" python3
need_library

THREADS=4 CONNS=100 KEYS=10000 TIMEOUT_S=30
# Runtime threads allowed under coop: none. memcached resolves its -l address with getaddrinfo
# after its threads exist, but a numeric address and port need no pool (shim/dns.c).
ALLOWED_RUNTIME=0
# -m 256: the values total ~80 MiB, more than the default 64 MiB (which would evict); -U 0:
# no UDP; -u root: memcached refuses to run as root without it.
ARGS=(-t "$THREADS" -m 256 -l 127.0.0.1 -U 0 -c 1024)
[ "$(id -u)" -eq 0 ] && ARGS+=(-u root)

# stats PORT: memcached's `stats` answer.
stats() {
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'stats\r\nquit\r\n' >&3
    timeout $HANG_GUARD_S cat <&3 | tr -d '\r'
    exec 3<&-
}

# run MODE [PREFIX...]: sets max_threads.
run() {
    local mode=$1 port client line items
    shift
    port=$(free_port)
    start_server "$mode" "$@" memcached "${ARGS[@]}" -p "$port"
    wait_port "$port"
    start_sampler "$server"
    "$PYTHON" "$REALWORLD/memcache_client.py" "$port" $CONNS $KEYS $TIMEOUT_S >"$TMP/client.$mode" 2>&1
    client=$?
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: memcached died: $(tail -n 20 "$TMP/$mode.err")"
    stats "$port" >"$TMP/stats.$mode"
    stop_server "$server" TERM
    line=$(head -n 1 "$TMP/client.$mode")
    items=$(sed -n 's/^STAT curr_items //p' "$TMP/stats.$mode")
    note "$mode: $line; memcached: curr_items $items, threads $(sed -n 's/^STAT threads //p' "$TMP/stats.$mode")"
    note "$mode: at most $max_threads OS threads in $samples samples; exit status $status"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "conns=$CONNS keys=$KEYS sets=$KEYS gets=$((2 * KEYS)) verified=$((2 * KEYS)) errors=0" ] ||
        fail "$mode: unexpected totals: $line"
    [ "$items" = "$KEYS" ] || fail "$mode: memcached holds '$items' items, expected $KEYS"
    [ "$status" -eq 0 ] || fail "$mode: memcached exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

run native
native_threads=$max_threads
((native_threads >= THREADS + 2)) || fail "native: only $native_threads OS threads for -t $THREADS"

COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
((created >= THREADS)) || fail "coop: only '$created' greenlets created for -t $THREADS"

matrix memcached "$(pkg_version memcached)" "$native_threads" \
    "$coop_threads (hubs; $created greenlets)" pass
echo "PASS: $KEYS keys set and read back natively and under coop; $native_threads OS threads natively, $coop_threads under coop"
