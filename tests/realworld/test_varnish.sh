#!/usr/bin/env bash
# Debian's Varnish Cache (jemalloc; a manager process that closes every fd above stdio at
# start-up, compiles the VCL with cc in forked children, then forks the cache child, whose
# thread pools serve) as a reverse proxy in front of Python's http.server (native), under
# http_client.py: 100 clients, two requests each for files of 1 B to 1 MiB, every body
# checked by SHA-256. SIGTERM to the manager must end it, and its child, with status 0. The
# manager restarts no child that dies (auto_restart=off): a crash fails the run.
#
# Under coop it once never started: jemalloc's fork handlers, registered twice, deadlocked
# the first fork (shim/locals.c), and past that the manager's close_range(3, ~0) closed the
# hub's own epoll sets, whose numbers the listening socket then took, and which the child
# replaced with its own new sets (core/hub.c, runtime fds).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin # varnishd is in /usr/sbin, which a user's PATH may lack
need varnishd varnish
need "$PYTHON" python3
need_library

CLIENTS=100 TIMEOUT_S=30
# Runtime threads allowed under coop: none (numeric addresses, no pool).
ALLOWED_RUNTIME=0

make_www $CLIENTS 2
# As root varnishd runs its child as an unprivileged user, which must reach its directory.
chmod a+rx "$TMP"

start_http_backend
printf 'vcl 4.1;\nbackend default { .host = "127.0.0.1"; .port = "%s"; }\n' "$backend_port" >"$TMP/default.vcl"
chmod a+r "$TMP/default.vcl"
if [ "$(id -u)" -eq 0 ] && getent passwd vcache >/dev/null; then
    runuser -u vcache -- test -r "$TMP/default.vcl" || skip "vcache cannot read $TMP (a parent of TMPDIR closed to others)"
fi

# proxy MODE [PREFIX...]: one run; sets max_threads (of the busiest process: the child).
proxy() {
    local mode=$1 port
    shift
    port=$(free_port)
    start_server "$mode" "$@" varnishd -F -a "127.0.0.1:$port" -f "$TMP/default.vcl" -n "$TMP/varnish.$mode" \
        -s malloc,64m -p thread_pools=1 -p thread_pool_min=10 -p auto_restart=off
    SAMPLER=start_tree_sampler drive_http_proxy "$mode" varnishd "$port" TERM $CLIENTS 2 "$expected_bytes"
    if pgrep -f "$TMP/varnish.$mode" >/dev/null; then
        pkill -KILL -f "$TMP/varnish.$mode"
        fail "$mode: a varnishd process outlived the manager"
    fi
}

native_and_coop proxy
stop_server "$backend" TERM
# The child's stats line comes through the manager ("Child (PID) said ..." on its stderr).
created=$(sed -n 's/.*said coop: stats: greenlets created \([0-9][0-9]*\).*/\1/p' "$TMP/coop.err" | sort -n | tail -n 1)
((${created:-0} >= 10)) || fail "coop: varnishd's threads did not become greenlets (created '$created')"

matrix "varnishd (a manager that closes every fd, a forked cache child with thread pools)" \
    "$(pkg_version varnish)" "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: $((CLIENTS * 2)) bodies through varnishd verified natively and under coop; SIGTERM ends it both times"
