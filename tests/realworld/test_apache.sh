#!/usr/bin/env bash
# Debian's Apache httpd serving static files, with its worker MPM (a thread per connection)
# and its event MPM (Debian's default: a listener thread polls idle keep-alive connections,
# workers serve requests), under http_client.py: 100 clients, two requests each for files of
# 1 B to 1 MiB, every body checked by SHA-256. The parent forks a child (which drops to
# www-data when run as root): its main thread reads the parent's pipe of death, a listener
# thread accepts and hands connections to 128 worker threads waiting on a condition
# variable; the workers share the scoreboard with the parent. SIGTERM to the parent must end
# both with status 0. Under coop the child inherits the forking greenlet and its threads
# become greenlets (its OS threads: its hubs).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin # apache2 is in /usr/sbin, which a user's PATH may lack
need apache2 apache2
need "$PYTHON" python3
need_library

CLIENTS=100 TIMEOUT_S=30
# Runtime threads allowed under coop: none. Apache resolves nothing and reads its files
# through the fd it opens (no pool).
ALLOWED_RUNTIME=0

make_www $CLIENTS 2
# As root Apache serves as www-data, which must reach the files.
chmod a+rx "$TMP" "$TMP/www" && chmod a+r "$TMP/www"/*
if [ "$(id -u)" -eq 0 ]; then
    getent passwd www-data >/dev/null || skip "no user www-data for Apache to serve as"
    runuser -u www-data -- test -r "$TMP/www/file-1" || skip "www-data cannot read $TMP/www (a parent of TMPDIR closed to others)"
fi

MODULES=/usr/lib/apache2/modules
# conf MODE MPM PORT: a configuration of its own (Debian's /etc/apache2 is left alone): a worker
# for every client, each connection kept open while the others are served.
conf() {
    cat <<EOF
ServerRoot $TMP
ServerName localhost
Listen 127.0.0.1:$3
LoadModule mpm_$2_module $MODULES/mod_mpm_$2.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule mime_module $MODULES/mod_mime.so
TypesConfig /etc/mime.types
PidFile $TMP/apache.$1.$2.pid
ErrorLog $TMP/apache.$1.$2.log
DocumentRoot $TMP/www
<Directory $TMP/www>
    Require all granted
</Directory>
StartServers 1
ServerLimit 1
ThreadLimit 128
ThreadsPerChild 128
MaxRequestWorkers 128
KeepAliveTimeout $TIMEOUT_S
EOF
    [ "$(id -u)" -eq 0 ] && printf 'User www-data\nGroup www-data\n'
}

# serve MODE MPM [PREFIX...]: one run; sets max_threads (the most OS threads of any one
# process: the child's).
serve() {
    local mode=$1 mpm=$2 port
    shift 2
    port=$(free_port)
    conf "$mode" "$mpm" "$port" >"$TMP/apache.$mode.$mpm.conf"
    start_server "$mode" "$@" apache2 -f "$TMP/apache.$mode.$mpm.conf" -DFOREGROUND
    SAMPLER=start_tree_sampler drive_http_proxy "$mode" "apache2 ($mpm MPM)" "$port" TERM $CLIENTS 2 "$expected_bytes"
    if pgrep -f "$TMP/apache.$mode.$mpm.conf" >/dev/null; then
        pkill -KILL -f "$TMP/apache.$mode.$mpm.conf"
        fail "$mode, $mpm MPM: an apache2 process outlived its parent"
    fi
}

for mpm in worker event; do
    serve native $mpm
    native_threads=$max_threads
    COOP_STATS=1 serve coop $mpm "$COOPRUN" --
    coop_threads=$max_threads
    # Every process prints its stats at exit on its stderr, which Apache points at its error
    # log; the child's has the workers.
    created=$(sed -n 's/^coop: stats: .*created \([0-9][0-9]*\).*/\1/p' "$TMP/apache.coop.$mpm.log" | sort -n | tail -n 1)
    note "coop, $mpm MPM: $(grep '^coop: stats: greenlets' "$TMP/apache.coop.$mpm.log" | tr '\n' ' ')"
    ((${created:-0} >= CLIENTS)) || fail "coop, $mpm MPM: Apache's threads did not become greenlets (created '$created')"
done

matrix "apache2, worker and event MPMs (threads in a forked child)" "$(pkg_version apache2)" \
    "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: $((CLIENTS * 2)) bodies from each of Apache's worker and event MPMs verified natively and under coop; SIGTERM ends it every time"
