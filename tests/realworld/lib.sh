# shellcheck shell=bash disable=SC2034 # variables for the tests that source this file
# Shared helpers for the realworld tests (real programs from Debian's packages, run natively
# and under cooprun); each test sources this file, which sources the integration tests' lib.sh
# (fail, skip, note, os_threads, wait_port, free_port, $TMP, $COOPRUN...).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
REALWORLD=$ROOT/tests/realworld
# Debian's interpreter, not whatever python3 comes first in PATH (pyenv...).
PYTHON=/usr/bin/python3
ulimit -c 0

# coop's runtime threads are not the program's: libuv's threadpool (name lookups, child waits,
# file offload) starts COOP_THREADPOOL_SIZE threads (default 10) the first time a greenlet needs
# it, and the blocking monitor one more with COOP_MAX_BLOCKING_MS. The tests run with a pool of
# 2 so that the allowance stays small: a pool of 10 would hide up to 10 program threads that
# escaped coop. Each test says how many runtime threads it allows and why.
export COOP_THREADPOOL_SIZE=${COOP_THREADPOOL_SIZE:-2}
POOL=$COOP_THREADPOOL_SIZE

# need PROGRAM PACKAGE: PROGRAM must be in PATH (or a path); when it is not, installs PACKAGE
# with scripts/deps.sh as root, and skips the test when that cannot be done.
need() { provided "$1" "$2" command -v "$1"; }

# provided WHAT PACKAGE COMMAND...: as need, for WHAT (a library, say), there when COMMAND
# succeeds.
provided() {
    local what=$1 package=$2
    shift 2
    "$@" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ]; then
        note "$what missing: installing Debian's $package"
        "$ROOT/scripts/deps.sh" "$package" >"$TMP/deps.log" 2>&1 ||
            skip "$what: Debian's $package cannot be installed ($(tail -n 1 "$TMP/deps.log"))"
    fi
    "$@" >/dev/null 2>&1 || skip "$what not installed (Debian's $package: scripts/deps.sh $package)"
}

# need_library: the realworld tests compare runs with and without coop; without the library
# there is nothing to compare.
need_library() {
    [ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY is not built (make)"
}

# pkg_version PACKAGE: its installed version, as dpkg knows it.
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }

# start_sampler PID: samples the OS threads of PID every 20 ms, in the background, until
# stop_sampler; sets sampler.
start_sampler() {
    : >"$TMP/samples"
    (
        while kill -0 "$1" 2>/dev/null; do
            os_threads "$1" >>"$TMP/samples" 2>/dev/null
            sleep 0.02
        done
    ) &
    sampler=$!
}

# start_tree_sampler PID: like start_sampler, for PID and every process below it: each sample
# is the most OS threads any one of them has (a program may run its threads in a child).
start_tree_sampler() {
    : >"$TMP/samples"
    (
        tree() { local c; echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
        while kill -0 "$1" 2>/dev/null; do
            for p in $(tree "$1"); do os_threads "$p" 2>/dev/null; done | sort -n | tail -n 1 >>"$TMP/samples"
            sleep 0.02
        done
    ) &
    sampler=$!
}

# stop_sampler: ends the sampling; sets max_threads and samples (how many were taken).
stop_sampler() {
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    samples=$(grep -c . "$TMP/samples")
    max_threads=$(sort -n "$TMP/samples" | tail -n 1)
    max_threads=${max_threads:-0}
}

# start_server NAME COMMAND...: runs COMMAND in the background with its output in
# $TMP/NAME.out and $TMP/NAME.err; sets server (its pid: cooprun execs the program, so it is
# the program's own).
start_server() {
    local name=$1
    shift
    : >"$TMP/$name.out"
    : >"$TMP/$name.err"
    "$@" >>"$TMP/$name.out" 2>>"$TMP/$name.err" &
    server=$!
}

# wait_line FILE PATTERN PID WHAT: waits at most HANG_GUARD_S for a line of FILE that matches
# PATTERN (grep -E) while PID runs; fails, with FILE's last lines, when PID ends first or the
# time runs out. For a program that is ready only once it says so: an open port may come first.
wait_line() {
    local _
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        grep -qE "$2" "$1" && return 0
        kill -0 "$3" 2>/dev/null || fail "$4 ended before printing '$2': $(tail -n 5 "$1")"
        sleep 0.1
    done
    fail "$4 did not print '$2' within $HANG_GUARD_S s: $(tail -n 5 "$1")"
}

# stop_server PID [SIGNAL]: sends SIGNAL (default TERM), waits at most HANG_GUARD_S, then
# SIGKILL; sets status to the exit status (128 + n for a death by signal n, as the shell says
# it).
stop_server() {
    local _
    kill -"${2:-TERM}" "$1" 2>/dev/null
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        note "pid $1 still runs $HANG_GUARD_S s after SIG${2:-TERM}: killed"
        kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
    status=$?
}

# start_http_backend: Python's http.server (listen backlog 128) serving $TMP/www, natively, in
# front of which a proxy test puts its program; sets backend and backend_port.
start_http_backend() {
    backend_port=$(free_port)
    "$PYTHON" "$REALWORLD/http_server_backlog.py" "$backend_port" "$TMP/www" >"$TMP/backend.out" 2>&1 &
    backend=$!
    wait_port "$backend_port"
}

# make_www CLIENTS ROUNDS: four files of random bytes, 1 B to 1 MiB, in $TMP/www, for
# http_client.py with CLIENTS clients of ROUNDS requests each, which ask for the files in
# turn; sets expected_bytes, what they all receive (CLIENTS * ROUNDS a multiple of 4).
make_www() {
    local size sizes=(1 1000 65536 1048576) sum=0
    mkdir -p "$TMP/www"
    for size in "${sizes[@]}"; do
        head -c "$size" /dev/urandom >"$TMP/www/file-$size"
        sum=$((sum + size))
    done
    expected_bytes=$((sum * $1 * $2 / ${#sizes[@]}))
}

# start_dig MODE PORT BATCH [DIG OPTION...]: asks the server on 127.0.0.1:PORT the questions
# of $TMP/questions.BATCH in the background (bounded by LIMIT_S and DIG_TIMEOUT_S), the
# answers and statuses in $TMP/dig.MODE.BATCH; wait_digs MODE waits for every one started and
# puts their output together in $TMP/dig.MODE.
dig_pids=()
start_dig() {
    local mode=$1 port=$2 batch=$3
    shift 3
    timeout "$LIMIT_S" dig @127.0.0.1 -p "$port" "$@" +tries=1 +time="$DIG_TIMEOUT_S" \
        +noall +comments +answer -f "$TMP/questions.$batch" >"$TMP/dig.$mode.$batch" 2>&1 &
    dig_pids[batch]=$!
}
wait_digs() {
    local mode=$1 batch
    for batch in "${!dig_pids[@]}"; do
        wait "${dig_pids[batch]}" || fail "$mode: dig of batch $batch exited with status $?: $(tail -n 3 "$TMP/dig.$mode.$batch")"
    done
    dig_pids=()
    cat "$TMP/dig.$mode".* >"$TMP/dig.$mode"
}

# dns_ports COUNT: COUNT distinct ports free on 127.0.0.1 for both TCP and UDP, below the
# kernel's ephemeral range: the server's, and the source port of each UDP dig. unbound and
# knotd bind a UDP socket per thread with SO_REUSEPORT, and dig (BIND's network manager) binds
# each query's socket with SO_REUSEPORT too; for sockets of one user the kernel lets bind(port
# 0) pick a port such a socket holds. With ports from the ephemeral range (free_port), a dig
# socket now and then got unbound's port and its own query back as the answer ("Warning:
# query response not set"), or two digs shared a port and one got the other's answer ("ID
# mismatch", then a time-out): 5 runs of 140, natively and under coop alike. With a port of
# its own, below the range, each dig closes a query's socket before it sends the next query
# from the same port.
dns_ports() {
    "$PYTHON" - "$1" <<'PY'
import random
import socket
import sys

low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = []
while len(ports) < int(sys.argv[1]):
    port = random.randrange(1024, low)
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        continue
    if port not in ports:
        ports.append(port)
print(*ports)
PY
}

# The DNS tests ask NAMES names of ZONE that are in it and MISSING that are not, in BATCHES
# files of questions ($TMP/questions.0 ...), round robin.

# zone_file SERIAL NET: ZONE as a master file, $TMP/zone, of serial SERIAL in which host-N has
# the A record 10.NET.x.y; the answers due, sorted as count_answers sorts them, in
# $TMP/expected.sorted.
zone_file() {
    local n address
    {
        echo "\$TTL 300"
        echo "@ IN SOA ns.$ZONE. admin.$ZONE. $1 3600 600 86400 300"
        echo "@ IN NS ns.$ZONE."
        echo "ns IN A 127.0.0.1"
    } >"$TMP/zone"
    for n in $(seq "$NAMES"); do
        address=10.$2.$((n / 256)).$((n % 256))
        echo "host-$n IN A $address" >>"$TMP/zone"
        echo "host-$n.$ZONE. 300 IN A $address"
    done | sort >"$TMP/expected.sorted"
}

# a_questions: an A question for each of host-1 to host-NAMES, and for missing-1 to
# missing-MISSING.
a_questions() {
    local n
    rm -f "$TMP"/questions.*
    for n in $(seq "$NAMES"); do
        echo "host-$n.$ZONE. A" >>"$TMP/questions.$((n % BATCHES))"
    done
    for n in $(seq "$MISSING"); do
        echo "missing-$n.$ZONE. A" >>"$TMP/questions.$((n % BATCHES))"
    done
}

# ask MODE PORT SOURCE_PORT...: every batch through its own dig, at once; odd batches over TCP,
# even ones over UDP from a SOURCE_PORT each.
ask() {
    local mode=$1 port=$2 batch
    shift 2
    for batch in $(seq 0 $((BATCHES - 1))); do
        if ((batch % 2)); then
            start_dig "$mode" "$port" "$batch" +tcp
        else
            start_dig "$mode" "$port" "$batch" +notcp -b "127.0.0.1#$1"
            shift
        fi
    done
    wait_digs "$mode"
}

# count_answers MODE: what wait_digs MODE put together: the answer lines, blanks squeezed and
# sorted, in $TMP/answers.MODE; sets noerror and nxdomain (the statuses' counts).
count_answers() {
    grep -v '^;' "$TMP/dig.$1" | grep . | awk '{$1 = $1; print}' | sort >"$TMP/answers.$1"
    noerror=$(grep -c 'status: NOERROR' "$TMP/dig.$1")
    nxdomain=$(grep -c 'status: NXDOMAIN' "$TMP/dig.$1")
}

# check_answers MODE [WHEN]: the answers must be those due ($TMP/expected.sorted), with NAMES
# NOERROR and MISSING NXDOMAIN statuses.
check_answers() {
    local mode=$1 when=${2:+ $2}
    count_answers "$mode"
    cmp -s "$TMP/expected.sorted" "$TMP/answers.$mode" ||
        fail "$mode$when: answers differ from the zone's records: $(diff "$TMP/expected.sorted" "$TMP/answers.$mode" | head -n 10)"
    ((noerror == NAMES && nxdomain == MISSING)) ||
        fail "$mode$when: NOERROR $noerror (expected $NAMES), NXDOMAIN $nxdomain (expected $MISSING)"
}

# drive_http_proxy MODE NAME PORT SIGNAL CLIENTS ROUNDS BYTES: http_client.py through the proxy
# NAME ($server, started as MODE, listening on PORT) for the files of $TMP/www, its OS threads
# sampled meanwhile (those of the process tree with SAMPLER=start_tree_sampler), then SIGNAL
# to stop it: every body right, BYTES in all, exit status STOP_STATUS (0 unless the test says
# otherwise). Sets max_threads.
drive_http_proxy() {
    local mode=$1 name=$2 port=$3 signal=$4 requests=$(($5 * $6)) bytes=$7 client line
    wait_port "$port"
    "${SAMPLER:-start_sampler}" "$server"
    "$PYTHON" "$REALWORLD/http_client.py" "$port" "$TMP/www" "$5" "$6" "$TIMEOUT_S" >"$TMP/client.$mode" 2>&1
    client=$?
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: $name died: $(tail -n 20 "$TMP/$mode.err")"
    stop_server "$server" "$signal"
    line=$(head -n 1 "$TMP/client.$mode")
    note "$mode: $line"
    note "$mode: at most $max_threads OS threads in $samples samples; exit status $status after SIG$signal"
    ((client == 0)) || fail "$mode: the client saw errors: $(cat "$TMP/client.$mode")"
    [ "$line" = "requests=$requests ok=$requests bad=0 errors=0 bytes=$bytes" ] || fail "$mode: unexpected totals: $line"
    [ "$status" -eq "${STOP_STATUS:-0}" ] ||
        fail "$mode: $name exited with status $status on SIG$signal, expected ${STOP_STATUS:-0}: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

# thread_per_connection_proxy_done NAME PACKAGE DESCRIPTION: after native_and_coop has driven
# the proxy NAME (drive_http_proxy): a greenlet per client at least, the backend stopped, and
# the matrix line of DESCRIPTION.
thread_per_connection_proxy_done() {
    ((created >= CLIENTS)) || fail "coop: $1's threads did not become greenlets (created '$created')"
    stop_server "$backend" TERM
    matrix "$3" "$(pkg_version "$2")" "$native_threads" "$coop_threads ($created greenlets)" pass
}

# native_and_coop RUN: `RUN native`, then `COOP_STATS=1 RUN coop $COOPRUN --`; sets
# native_threads and coop_threads (their max_threads) and created (the greenlets coop's stats
# in $TMP/coop.err count).
native_and_coop() {
    "$1" native
    native_threads=$max_threads
    COOP_STATS=1 "$1" coop "$COOPRUN" --
    coop_threads=$max_threads
    created=$(coop_stat created "$TMP/coop.err")
    note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err")"
}

# coop_stat KEY FILE: a number from COOP_STATS=1's lines in FILE ("greenlets created 210,
# peak alive 201, ..."): coop_stat created FILE, coop_stat "peak alive" FILE.
coop_stat() { sed -n "s/^coop: stats: .*$1 \([0-9][0-9]*\).*/\1/p" "$2" | head -n 1; }

# check_threads MODE MAX_THREADS: under coop at most 1 + SCHED_THREADS + SPARE_THREADS +
# ALLOWED_RUNTIME (the hubs' and spares' threads, lib.sh of the integration tests; the runtime
# threads the test sets, with its reason) OS threads were sampled. Samples of /proc can miss
# threads (a short-lived one, a run shorter than a sample), so they only bound coop's from
# above; the native count is for the record (the matrix), not a verdict.
check_threads() {
    local mode=$1 n=${2:-0}
    [ "$mode" = native ] && return 0
    ((n <= 1 + SCHED_THREADS + SPARE_THREADS + ALLOWED_RUNTIME)) ||
        fail "coop: $n OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and at most $ALLOWED_RUNTIME runtime threads)"
}

# matrix PROGRAM VERSION NATIVE COOP RESULT: the line run.sh prints and README.md's table is
# made of (NATIVE and COOP: the OS threads seen natively and under coop).
matrix() { echo "matrix: $1 | $2 | $3 | $4 | $5"; }

# watched LABEL COMMAND...: runs COMMAND (at most LIMIT_S seconds), its stdout to
# $TMP/out.LABEL and its stderr to $TMP/err.LABEL, sampling the threads of its tree; sets
# status (its exit status), max_threads and samples.
watched() {
    local label=$1 pid
    shift
    "$@" >"$TMP/out.$label" 2>"$TMP/err.$label" &
    pid=$!
    start_tree_sampler $pid
    watchdog $pid "$LIMIT_S"
    wait $pid
    status=$?
    stop_watchdog
    stop_sampler
}

# run_watched LABEL COMMAND...: watched, and fails on an exit status other than 0.
run_watched() {
    watched "$@"
    ((status == 0)) || fail "$1: '${*:2}' exited with status $status: $(grep -v '^coop: stats' "$TMP/err.$1" | head -n 5)"
}

# watchdog PID SECONDS: kills PID (SIGKILL) if it still runs after SECONDS; stop_watchdog
# ends the watch. A killed program shows as status 137.
watchdog() {
    (
        sleep "$2" &
        trap 'kill $! 2>/dev/null; exit 0' TERM
        wait $!
        kill -KILL "$1" 2>/dev/null && echo "  watchdog: killed pid $1 after $2 s" >&2
    ) &
    watchdog_pid=$!
}
stop_watchdog() {
    kill "$watchdog_pid" 2>/dev/null
    wait "$watchdog_pid" 2>/dev/null
    return 0
}
