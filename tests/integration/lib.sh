# Shared helpers for the integration tests; each test sources this file.
# A test exits 0 when it passes, 77 when it must be skipped, anything else on failure.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
COOPRUN=$ROOT/scripts/cooprun
# The library cooprun preloads: this build's (BUILD=build/asan for make test-asan).
export COOP_LIBRARY=${COOP_LIBRARY:-$BUILD/libcoop.so}
# ASan's runtime when the library is a sanitizer build, which cooprun preloads right behind it.
ASAN_RUNTIME=$(env -u LD_PRELOAD ldd "$COOP_LIBRARY" 2>/dev/null | sed -n 's/^[[:space:]]*libasan\.so[.0-9]* => \(\/[^ ]*\) .*/\1/p')
SAMPLES=$BUILD/samples
# The ways this machine lets coop move the thread pointer (COOP_TLS=MECHANISM): the tests
# that depend on thread-local storage run under each.
mapfile -t TLS_MECHANISMS < <("$ROOT/tests/tls_mechanisms.sh")
TLS_MECHANISM_LIST=$(IFS=,; echo "${TLS_MECHANISMS[*]}") # for messages: syscall,fsgsbase
BENCH=$BUILD/bench
TMP=$(mktemp -d "${TMPDIR:-/tmp}/coop-test.XXXXXX")
trap 'rm -rf "$TMP"; jobs -p | xargs -r kill 2>/dev/null' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
note() { echo "  $*"; }

# The program's OS threads in a running process. coop's monitor thread (preemption, from the
# second greenlet on) is the runtime's, not the program's: it is named coop-monitor from its
# first instant, and not counted. Past 64 threads every thread counts: reading thousands of
# names would take longer than a sample's interval, and no count near one is at stake.
os_threads() {
    local n
    n=$(ls "/proc/$1/task" | wc -l)
    ((n > 64)) || n=$(cat /proc/"$1"/task/*/comm 2>/dev/null | grep -cvx coop-monitor)
    echo "$n"
}

# Waits for what a test started to get ready: HANG_GUARD_S is the most it waits, a guard
# against a hang, never a judgement of speed.
HANG_GUARD_S=60

# coop's own OS threads once a program creates a thread: a thread per hub beyond the main
# thread's (COOP_HUBS, by default one per CPU the process may use) and the blocking monitor,
# which hands a stuck hub's work over (os_threads leaves it out: it is coop-monitor, so this
# counts one more than needed). Under coop a threaded program has at most
# 1 + SCHED_THREADS + the runtime threads a test allows for (a threadpool...).
coop_hubs() {
    local hubs=${COOP_HUBS:-auto}
    # nproc heeds OpenMP's variables, which coop does not; coop makes 96 hubs at most.
    [ "$hubs" = auto ] && hubs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    echo $((hubs > 96 ? 96 : hubs))
}
SCHED_THREADS=$(coop_hubs)
# A greenlet stuck in a call coop cannot make cooperative (a write to a slow disk, libuv
# starting its threadpool, which waits for its threads, a page fault or a lock on a loaded
# machine) hands its hub's other work to another hub, or to a spare thread when none is
# free: the thread counts allow for these (twice as many in a sanitizer build, where
# everything runs slower and more threads are caught in such calls at once: seen 3 with
# the JVM and node under make test-asan).
# COOP_MAX_SPARES makes that allowance the runtime's own bound: a machine where system calls
# take milliseconds (a VM whose page-table updates trap) started 4 spares in test_threads_many.
SPARE_THREADS=2
[ -z "$ASAN_RUNTIME" ] || SPARE_THREADS=4
export COOP_MAX_SPARES=$SPARE_THREADS
# So a program's own count of the OS threads its threads ran on (the distinct gettid of
# threads alive at once: "os_threads: K of N" lines) is, under coop, 1 to COOP_OS_THREADS_MAX:
# its hubs' threads, and a spare's while a hub was stuck. (On one hub with no handoff, 1.)
COOP_OS_THREADS_MAX=$((SCHED_THREADS + SPARE_THREADS))
coop_os_threads_ok() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= COOP_OS_THREADS_MAX)); }

# wait_port PORT [PID [LOG...]]: waits until a TCP port on 127.0.0.1 accepts connections;
# fails at once, with the LOG files' last lines, when PID ends first.
wait_port() {
    local i
    for i in $(seq $((HANG_GUARD_S * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        [ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null ||
            fail "pid $2 ended before it listened on port $1${3:+: $(tail -n 5 "${@:3}" 2>&1)}"
        sleep 0.1
    done
    fail "nothing listens on port $1"
}

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# listening_port OUTFILE PID: waits until the server PID prints "listening on PORT" into
# OUTFILE (at most ~10 s) and prints PORT.
listening_port() {
    local _ port
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on //p' "$1")
        [ -n "$port" ] && { echo "$port"; return 0; }
        kill -0 "$2" 2>/dev/null || fail "the server died before listening: $(cat "$1")"
        sleep 0.1
    done
    fail "the server printed no port"
}

# start_server [PREFIX...]: starts echo_threads; sets server and port.
start_server() {
    local _
    : >"$TMP/server.out"    # the background shell may not have truncated it when first read
    "$@" "$SAMPLES/echo_threads" >"$TMP/server.out" 2>"$TMP/server.err" &
    server=$!
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        port=$(sed -n 's/^listening on //p' "$TMP/server.out")
        [ -n "$port" ] && return 0
        kill -0 "$server" 2>/dev/null || fail "echo_threads died: $(cat "$TMP/server.err")"
        sleep 0.1
    done
    fail "echo_threads printed no port"
}

# stop_server LABEL: SIGTERM must end it with status 0.
stop_server() {
    local _ status
    kill -TERM "$server"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$server" 2>/dev/null && fail "$1: echo_threads still runs $HANG_GUARD_S s after SIGTERM"
    wait "$server"
    status=$?
    [ $status -eq 0 ] || fail "$1: echo_threads exited with status $status on SIGTERM: $(cat "$TMP/server.err")"
}

# run_sampled LIMIT_S OUTFILE COMMAND...: runs COMMAND, stdout in OUTFILE and stderr in
# OUTFILE.err, sampling its OS threads every 20 ms; sets status and max_threads. A run past
# LIMIT_S is killed and fails the test.
run_sampled() {
    local limit=$1 outfile=$2 pid n deadline
    shift 2
    deadline=$((SECONDS + limit))
    "$@" >"$outfile" 2>"$outfile.err" &
    pid=$!
    max_threads=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            fail "$*: still running after $limit s (killed)"
        fi
        n=$(os_threads "$pid" 2>/dev/null)
        ((n > max_threads)) && max_threads=$n
        sleep 0.02
    done
    wait "$pid"
    status=$?
}

# same_without_handoff PROGRAM WHAT: runs PROGRAM (a sample whose waiting thread must leave
# another running) natively and under coop on one hub with handoff off (COOP_HANDOFF_MS=0);
# the same lines both times. A wait that blocked the hub's thread would leave the other
# thread nowhere to run, and the program would never end: the hang guard fails it. Status
# 77 from the native run skips the test with its last line.
same_without_handoff() {
    local program=$1 what=$2
    run_sampled "$HANG_GUARD_S" "$TMP/native" "$program"
    [ "$status" -eq 77 ] && skip "$(tail -n 1 "$TMP/native.err")"
    [ "$status" -eq 0 ] || fail "native: status $status: $(cat "$TMP/native" "$TMP/native.err")"
    sed 's/^/  native: /' "$TMP/native"
    COOP_HUBS=1 COOP_HANDOFF_MS=0 run_sampled "$HANG_GUARD_S" "$TMP/coop" "$COOPRUN" -- "$program"
    [ "$status" -eq 0 ] || fail "coop: status $status: $(cat "$TMP/coop" "$TMP/coop.err")"
    sed 's/^/  coop: /' "$TMP/coop"
    diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop's lines differ from the native ones"
    note "coop, one hub, handoff off: $what waited cooperatively"
}
