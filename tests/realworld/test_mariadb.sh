#!/usr/bin/env bash
# Debian's MariaDB (mariadbd 10.11) with Debian's default configuration (/etc/mysql/my.cnf and
# what it includes: InnoDB with innodb_use_native_aio on, which on Linux means io_uring through
# liburing, and a thread per connection) under sysbench's oltp_read_write. A private instance:
# a datadir made by mariadb-install-db in $TMP, its own socket, pid file and loopback port;
# nothing else is set (the server's log goes to stderr, Debian's default).
#
# Natively, then under cooprun: sysbench prepares TABLES tables of TABLE_SIZE rows and runs
# EVENTS transactions on THREADS connections (a fixed amount of work, --events, not --time);
# sysbench must end with status 0, count every transaction and reconnect never (deadlocks,
# which InnoDB resolves by rolling a transaction back and sysbench retries, are counted as
# "ignored errors": reported, not a failure). Then the rows: each table must still hold ids 1
# to TABLE_SIZE exactly once (oltp_read_write deletes and re-inserts rows by id, updates
# others), CHECK TABLE must find every table and index OK, and SIGTERM must end the server
# with status 0 ("Shutdown complete"). The datadir is then opened again by a native server,
# which must find the same rows and pass CHECK TABLE: what the server wrote under coop is
# what InnoDB reads back. Under coop every connection's thread must be a greenlet (COOP_STATS).
#
# OS threads are sampled while sysbench runs and only reported: InnoDB's and the server's
# background threads, coop's runtime threads (hubs, the monitor, the pool for name lookups),
# none is asserted.
#
# MARIADB_MODES="native coop" (the default) runs both; "native" or "coop" runs one of them.
# COOP_LIBRARY chooses the library cooprun preloads (another tree's build/libcoop.so).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need mariadbd mariadb-server
need mariadb-install-db mariadb-server
# mariadb-server-core alone has the programs but not Debian's configuration, which is the point.
[ -f /etc/mysql/mariadb.conf.d/50-server.cnf ] ||
    skip "Debian's server configuration (/etc/mysql/mariadb.conf.d/50-server.cnf, package mariadb-server) is missing"
need mariadb mariadb-client
need sysbench sysbench
MODES=${MARIADB_MODES:-native coop}
[[ " $MODES " == *" coop "* ]] && need_library

TABLES=4 TABLE_SIZE=10000 THREADS=16 EVENTS=2000
CLIENT_LIMIT_S=180 # a hang guard for each client command (sysbench run under coop included)
server=""
ROOT_USER=()
[ "$(id -u)" -eq 0 ] && ROOT_USER=(--user=root) # mariadbd refuses to run as root without it

# The EXIT trap of lib.sh sends SIGTERM to what the test started; a server that hangs may not
# stop on it, so it is killed first.
trap '[ -n "$server" ] && kill -KILL "$server" 2>/dev/null; rm -rf "$TMP"; jobs -p | xargs -r kill 2>/dev/null' EXIT

# die MODE MESSAGE: kills the server (SIGKILL: a hung one must not outlive the test) and fails
# with MESSAGE and the end of the server's log.
die() {
    local mode=$1
    shift
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -KILL "$server" 2>/dev/null
        wait "$server" 2>/dev/null
    fi
    server=""
    echo "  $mode: the server's log ($TMP/$mode.err), last lines:" >&2
    tail -n 25 "$TMP/$mode.err" 2>/dev/null | sed 's/^/    /' >&2
    [ -s "$TMP/$mode.out" ] && tail -n 5 "$TMP/$mode.out" | sed 's/^/    stdout: /' >&2
    fail "$mode: $*"
}

# install MODE: a fresh datadir in $TMP/MODE (root without a password, as before MariaDB 10.4,
# so that sysbench can log in over TCP), made natively.
install() {
    local dir=$TMP/$1
    mkdir -p "$dir"
    mariadb-install-db --datadir="$dir/data" "${ROOT_USER[@]}" --auth-root-authentication-method=normal \
        --skip-test-db >"$dir/install.log" 2>&1 ||
        fail "$1: mariadb-install-db failed: $(tail -n 20 "$dir/install.log")"
}

# start NAME DIR [PREFIX...]: starts mariadbd on the datadir in DIR (output in $TMP/NAME.out
# and .err) and waits until it accepts connections; sets server and port.
start() {
    local name=$1 dir=$2 _
    shift 2
    port=$(free_port)
    start_server "$name" "$@" mariadbd --datadir="$dir/data" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --port="$port" "${ROOT_USER[@]}"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$server" 2>/dev/null || { wait "$server"; die "$name" "mariadbd died at start, status $?"; }
        sleep 0.1
    done
    die "$name" "mariadbd does not accept connections on port $port after $HANG_GUARD_S s (a hang guard)"
}

# sql NAME STATEMENTS: runs STATEMENTS with the mariadb client (native), tab-separated output
# without column names on stdout.
sql() {
    local name=$1
    timeout -s KILL $CLIENT_LIMIT_S mariadb --protocol=tcp -h 127.0.0.1 -P "$port" -u root -N -B \
        -e "$2" 2>"$TMP/sql.err" || die "$name" "mariadb -e '$2': status $?: $(cat "$TMP/sql.err")"
}

# bench NAME COMMAND [OPTIONS]: sysbench oltp_read_write (output in $TMP/sysbench.NAME.COMMAND).
bench() {
    local name=$1 command=$2 out=$TMP/sysbench.$1.$2
    shift 2
    timeout -s KILL $CLIENT_LIMIT_S sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 \
        --mysql-port="$port" --mysql-user=root --mysql-db=sbtest --tables=$TABLES \
        --table-size=$TABLE_SIZE "$@" "$command" >"$out" 2>&1 ||
        die "$name" "sysbench $command: status $?: $(grep -v '^$' "$out" | tail -n 10)"
    ! grep -q FATAL "$out" || die "$name" "sysbench $command: $(grep FATAL "$out" | head -n 5)"
}

# check_rows NAME: every table holds ids 1..TABLE_SIZE once each; CHECK TABLE finds all OK.
check_rows() {
    local name=$1 t line tables="" check
    for t in $(seq $TABLES); do
        line=$(sql "$name" "SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM sbtest.sbtest$t" | tr '\t' ' ')
        [ "$line" = "$TABLE_SIZE $TABLE_SIZE 1 $TABLE_SIZE" ] ||
            die "$name" "sbtest$t: count, distinct ids, min and max id are '$line', not '$TABLE_SIZE $TABLE_SIZE 1 $TABLE_SIZE'"
        tables="$tables${tables:+, }sbtest.sbtest$t"
    done
    check=$(sql "$name" "CHECK TABLE $tables")
    [ "$(grep -c $'\tcheck\tstatus\tOK$' <<<"$check")" -eq $TABLES ] ||
        die "$name" "CHECK TABLE: $(tr '\t\n' ' ;' <<<"$check")"
}

# stop NAME: SIGTERM must end the server with status 0 and "Shutdown complete" in its log.
stop() {
    local name=$1
    stop_server "$server" TERM # waits at most HANG_GUARD_S (a hang guard), then SIGKILL
    server=""
    [ "$status" -eq 0 ] || die "$name" "mariadbd exited with status $status on SIGTERM (137: still running $HANG_GUARD_S s after it, killed)"
    grep -q 'mariadbd: Shutdown complete' "$TMP/$name.err" || die "$name" "status 0 on SIGTERM, but no 'Shutdown complete' in the log"
}

# run MODE [PREFIX...]: the whole run of one mode; sets max_threads, samples, aio (the AIO
# interface InnoDB reported) and ignored (sysbench's ignored errors).
run() {
    local mode=$1 line
    shift
    install "$mode"
    start "$mode" "$TMP/$mode" "$@"
    aio=$(sed -n 's/.*InnoDB: Using \(io_uring\|Linux native AIO\).*/\1/p' "$TMP/$mode.err" | head -n 1)
    note "$mode: $(grep -o 'Starting MariaDB [^ ]*' "$TMP/$mode.err"), InnoDB AIO: ${aio:-none reported}"
    sql "$mode" "CREATE DATABASE sbtest"
    bench "$mode" prepare --threads=$TABLES
    start_sampler "$server"
    bench "$mode" run --threads=$THREADS --events=$EVENTS --time=0
    stop_sampler
    line=$(grep -E '^ +(transactions|queries|ignored errors|reconnects):' "$TMP/sysbench.$mode.run" | sed 's/ *(.*//; s/  */ /g' | tr '\n' ',')
    note "$mode: sysbench run:${line%,}"
    grep -qE "^ +transactions: +$EVENTS " "$TMP/sysbench.$mode.run" ||
        die "$mode" "sysbench did not count $EVENTS transactions: $(grep -E '^ +transactions:' "$TMP/sysbench.$mode.run")"
    grep -qE '^ +reconnects: +0 ' "$TMP/sysbench.$mode.run" ||
        die "$mode" "sysbench reconnected: $(grep -E '^ +reconnects:' "$TMP/sysbench.$mode.run")"
    ignored=$(sed -n 's/^ *ignored errors: *\([0-9]*\).*/\1/p' "$TMP/sysbench.$mode.run")
    note "$mode: at most $max_threads OS threads in $samples samples while sysbench ran"
    check_rows "$mode"
    stop "$mode"
    note "$mode: $TABLES tables of $TABLE_SIZE rows intact, CHECK TABLE OK, SIGTERM: status 0"
    # The datadir, opened again natively: what was written is what InnoDB reads back.
    start "$mode-reopened" "$TMP/$mode"
    check_rows "$mode-reopened"
    stop "$mode-reopened"
    note "$mode: reopened natively, the same rows, CHECK TABLE OK"
}

native_result="-" coop_result="-" native_threads="-" coop_threads="-"
for mode in $MODES; do
    case $mode in
        native)
            run native
            native_threads=$max_threads native_result="pass ($aio, $ignored deadlocks retried)" ;;
        coop)
            # The blocking monitor's reports (a greenlet that keeps its hub 2 s) go to the log,
            # which a failure prints: they name the call that stalls a hub.
            COOP_STATS=1 COOP_MAX_BLOCKING_MS=${COOP_MAX_BLOCKING_MS:-2000} run coop "$COOPRUN" --
            created=$(coop_stat created "$TMP/coop.err")
            grep '^coop: stats: ' "$TMP/coop.err" | sed 's/^/  /'
            ((${created:-0} >= THREADS)) ||
                fail "coop: the $THREADS connection threads did not become greenlets (created '$created')"
            coop_threads="$max_threads ($created greenlets)" coop_result="pass ($aio, $ignored deadlocks retried)" ;;
        *) fail "MARIADB_MODES: unknown mode '$mode' (native, coop)" ;;
    esac
done

matrix "mariadbd (Debian's default configuration)" "$(pkg_version mariadb-server)" "$native_threads" "$coop_threads" \
    "native: $native_result; coop: $coop_result"
echo "PASS: MariaDB ($MODES) served sysbench oltp_read_write, $EVENTS transactions on $THREADS connections; rows and tables checked; SIGTERM: status 0"
