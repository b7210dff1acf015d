#!/usr/bin/env bash
# Debian's PostgreSQL: a process per connection (the postmaster forks a backend for each
# client, beside its own background processes) whose latches are woken by SIGURG, which each
# process blocks and reads from a signalfd in its epoll set. Under coop, a backend waiting for
# a lock never woke: coop kept SIGURG, its preemption signal, open in the real mask, so the
# kernel handed it to a handler instead of leaving it pending for the signalfd (shim/signal.c).
#
# A private cluster made by initdb in $TMP (run as the user postgres when the test is root),
# its own Unix socket and no TCP, Debian's defaults otherwise. Natively, then with the server
# and pgbench (-j JOBS: threads, greenlets under coop) both under cooprun: pgbench -i at SCALE,
# then CLIENTS clients run TRANSACTIONS transactions each (a fixed amount of work, -t): every
# one processed, none failed, and the balances agree (each TPC-B transaction adds one delta to
# an account, its teller and its branch, and writes it to the history: the four sums are
# equal, and the history holds every transaction); a parallel count of the accounts (two
# workers, which report through shared memory and latches; EXPLAIN ANALYZE shows both launched)
# finds every row; SIGTERM ends the server with status 0.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need pg_ctlcluster postgresql
PGBIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/postgres" ] || skip "no server in /usr/lib/postgresql/*/bin (Debian's postgresql)"
PATH=$PGBIN:$PATH
need_library
# Natively too: LD_PRELOAD=libasan.so.8 postgres --version hangs in libgpg-error's constructor.
[ -z "$ASAN_RUNTIME" ] || skip "a sanitizer build: ASan preloaded into postgres corrupts glibc's locale lock"

SCALE=2 CLIENTS=16 JOBS=4 TRANSACTIONS=200 CLIENT_LIMIT_S=180 # a hang guard for each client
PORT=5432                                                     # names the socket file only
server=""
trap '[ -n "$server" ] && kill -KILL "$server" 2>/dev/null; rm -rf "$TMP"; jobs -p | xargs -r kill 2>/dev/null' EXIT

# PostgreSQL refuses to run as root: as root the server runs as postgres, which must reach
# $TMP and a copy of the library there (the tree may be closed to others).
AS=()
cp "$COOP_LIBRARY" "$TMP/libcoop.so"
export COOP_LIBRARY=$TMP/libcoop.so
if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null || skip "no user postgres to run the server as"
    chmod a+rx "$TMP" "$TMP/libcoop.so"
    AS=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    "${AS[@]}" test -r "$TMP/libcoop.so" || skip "postgres cannot read $TMP (a parent of TMPDIR closed to others)"
fi

# die MODE MESSAGE: kills the server and fails with MESSAGE and the end of its log.
die() {
    local mode=$1
    shift
    [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
    server=""
    echo "  $mode: the server's log ($TMP/$mode.err), last lines:" >&2
    tail -n 25 "$TMP/$mode.err" 2>/dev/null | sed 's/^/    /' >&2
    fail "$mode: $*"
}

# client MODE COMMAND...: a client command with a hang guard, output in $TMP/client.MODE.
client() {
    local mode=$1
    shift
    timeout -s KILL $CLIENT_LIMIT_S "$@" >"$TMP/client.$mode" 2>&1 ||
        die "$mode" "$*: status $?: $(tail -n 10 "$TMP/client.$mode")"
}

# sql MODE STATEMENTS: psql's rows in $TMP/client.MODE, columns separated by spaces.
sql() {
    client "$1" psql -h "$TMP/$1" -p $PORT -U postgres -X -q -A -t -F ' ' -c "$2" postgres
}

# run MODE [PREFIX...]: initdb, the server (PREFIX before it), pgbench, the checks, SIGTERM.
run() {
    local mode=$1 dir=$TMP/$1 _ sums
    shift
    mkdir "$dir"
    [ ${#AS[@]} -eq 0 ] || chown postgres "$dir"
    "${AS[@]}" initdb -D "$dir/data" -A trust -U postgres >"$TMP/initdb.$mode" 2>&1 ||
        fail "$mode: initdb failed: $(tail -n 10 "$TMP/initdb.$mode")"
    start_server "$mode" "$@" "${AS[@]}" postgres -D "$dir/data" -k "$dir" -p $PORT -c listen_addresses=''
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        pg_isready -q -h "$dir" -p $PORT -U postgres && break
        kill -0 "$server" 2>/dev/null || die "$mode" "the server died at start"
        sleep 0.1
    done
    pg_isready -q -h "$dir" -p $PORT -U postgres || die "$mode" "no connections accepted after $HANG_GUARD_S s (a hang guard)"
    if [ "$mode" = coop ]; then
        grep -q libcoop "/proc/$server/maps" || die "$mode" "the server runs without coop"
    fi
    client "$mode" "$@" pgbench -h "$dir" -p $PORT -U postgres -i -s $SCALE postgres
    COOP_STATS=1 client "$mode" "$@" pgbench -h "$dir" -p $PORT -U postgres -n -c $CLIENTS -j $JOBS \
        -t $TRANSACTIONS postgres
    note "$mode: pgbench: $(grep -E '^(number of (transactions actually processed|failed)|tps)' "$TMP/client.$mode" |
        tr '\n' ';')"
    grep -q "^number of transactions actually processed: $((CLIENTS * TRANSACTIONS))/$((CLIENTS * TRANSACTIONS))$" \
        "$TMP/client.$mode" || die "$mode" "pgbench did not process every transaction: $(cat "$TMP/client.$mode")"
    grep -q '^number of failed transactions: 0 ' "$TMP/client.$mode" || die "$mode" "failed transactions"
    if [ "$mode" = coop ]; then
        created=$(coop_stat created "$TMP/client.$mode")
        ((${created:-0} >= JOBS - 1)) || die "$mode" "pgbench's $((JOBS - 1)) threads did not become greenlets (created '$created')"
    fi
    sql "$mode" "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
        (SELECT sum(bbalance) FROM pgbench_branches), sum(delta), count(*) FROM pgbench_history"
    read -r accounts tellers branches history count <"$TMP/client.$mode"
    [ "$accounts" = "$history" ] && [ "$tellers" = "$history" ] && [ "$branches" = "$history" ] &&
        [ "$count" = $((CLIENTS * TRANSACTIONS)) ] ||
        die "$mode" "balances of accounts, tellers, branches, the history's sum and rows: $(cat "$TMP/client.$mode")"
    sql "$mode" "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
        SET min_parallel_table_scan_size = 0; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT count(*) FROM pgbench_accounts;
        SELECT count(*) FROM pgbench_accounts"
    grep -q 'Workers Launched: 2' "$TMP/client.$mode" && [ "$(tail -n 1 "$TMP/client.$mode")" = $((SCALE * 100000)) ] ||
        die "$mode" "a parallel count of the accounts: $(cat "$TMP/client.$mode")"
    note "$mode: the balances agree ($history over $((CLIENTS * TRANSACTIONS)) transactions); 2 workers counted $((SCALE * 100000)) accounts"
    stop_server "$server" TERM
    server=""
    [ "$status" -eq 0 ] || die "$mode" "status $status on SIGTERM (137: still running $HANG_GUARD_S s after it, killed)"
    grep -q 'database system is shut down' "$TMP/$mode.err" || die "$mode" "status 0 on SIGTERM, but no shut down in the log"
}

run native
run coop "$COOPRUN" --
matrix "postgres, pgbench (-j $JOBS)" "$(pkg_version "postgresql-$(basename "$(dirname "$PGBIN")")")" \
    "1 per process" "1 per process; pgbench: $created greenlets" "pass"
echo "PASS: PostgreSQL natively and under coop: pgbench, $CLIENTS clients x $TRANSACTIONS transactions, balances and a parallel count checked; SIGTERM: status 0"
