#!/usr/bin/env bash
# tests/bench/run.sh [--quick] [--smoke] [--only SECTIONS] [--micro] [--out DIR]: coop's benchmark suite.
#
#   Echo matrix: 1, 100, 1,000 and 10,000 connections, 64 B and 16 KiB messages, driven by
#   build/bench/loadgen (closed loop, one thread) against
#     epoll          build/bench/echo_epoll, hand-written edge-triggered epoll (the reference)
#     epoll-mt       the same, one loop per CPU, each with its own SO_REUSEPORT listener
#     threads        build/samples/echo_threads, a thread per connection, natively
#     coop           the same binary under scripts/cooprun (default hubs: one per CPU)
#     coop-ucontext  the same under cooprun with COOP_SWITCH=ucontext (glibc's swapcontext)
#     coop-trace     the same under cooprun --trace (the timeline's cost; default size limit,
#                    the file removed after each run)
#     go1, go        tests/bench/echo_go.go, a goroutine per connection, GOMAXPROCS=1 / default
#     gevent         tests/bench/echo_gevent.py, gevent's StreamServer, Debian's python3
#   Within a level the servers run in turn (so that drift of this shared machine hits all of
#   them alike), each on a fresh process; a level is repeated and the medians reported. The
#   server's OS threads and resident set are sampled under load (maximum over the run).
#
#   Handoff: echo_threads -z 50 under coop (a thread sleeping 50 ms at a time in a raw
#   nanosleep system call, which blocks whichever hub runs it) at 100 connections, 64 B; part
#   of the echo section.
#
#   Micro-benchmarks (tests/bench/{switch,create_join,mutex,signal,sleep,idle,spawn,cpupool}.c
#   and idle_tls.cc, built without coop, run natively and under cooprun): context switch (coop
#   on one hub, as the native ping-pong runs on one CPU), thread create+join, mutexes and
#   condition variables, a signal handled (from the kernel, and by pthread_kill), the length
#   of a short sleep (and of a 1 ms sleep beside a computing thread per CPU, also on one CPU: taskset, under which coop runs one hub), resident memory
#   per idle thread, the wall time of 50 concurrent system() and popen() children (which
#   inherit coop), a pool
#   of a thread per CPU computing (coop on its default hubs), and Debian's pigz, xz, zstd and
#   sort, each with a thread per CPU, over 64 MB (tests/bench/compress.sh; wall time). The switch, create+join and the
#   idle threads (C, and C++ with a 16 KiB thread_local array) run again under each TLS
#   mechanism of the machine (COOP_TLS=syscall, and fsgsbase where it has it).
#
#   Preemption: echo_threads under cooprun on one hub (COOP_HUBS=1: with more, other hubs
#   would steal the hog's hub's work and hide what preemption does) at 100 connections, 64 B,
#   with preemption on (COOP_PREEMPT_MS=10, the default) and off (0), in back-to-back pairs:
#   without a hog (throughput: what preemption costs; and the coop-monitor thread's share of
#   the server's CPU, sampled at the end of each run) and with one (ECHO_HOG_MS=1000: one more
#   thread computes without a blocking call for 1 s at a time; latency: what preemption buys).
#
# Writes DIR/results.md (default build/bench-results/), DIR/raw.tsv and DIR/micro.tsv (every
# measurement), and with gnuplot DIR/rps.png, DIR/p99.png (64 B) and DIR/rps_16k.png,
# DIR/p99_16k.png; prints the tables at the end.
#
#   --quick  one repetition of 0.5 s per server and level (under 2 minutes instead of ~8.5)
#   --smoke  for tests: levels 1 and 100, 64 B only, 0.3 s, small micro-benchmarks, nothing
#            installed, missing peers skipped (under a minute)
#   --only SECTIONS  a comma list of micro, echo, preempt: only those run (default: all)
#   --micro  the micro-benchmarks only: --only micro
#
# As root (and not --smoke) it first installs missing peers from Debian (golang-go,
# python3-gevent, gnuplot-nox; pigz, xz-utils, zstd) with scripts/deps.sh; a peer that is
# still missing gets "n/a".
# A time budget (BENCH_BUDGET_S: 560 s, --quick 300, --smoke 50) drops repetitions after the
# first when the runs so far say the rest would not fit; results.md then says where.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
readonly COMMAND="tests/bench/run.sh $*"

quick=0 smoke=0 out=build/bench-results sections=micro,echo,preempt
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --smoke) smoke=1 quick=1 ;;
        --only) [ $# -ge 2 ] || { echo "run.sh: --only needs sections" >&2; exit 2; }; sections=$2; shift ;;
        --only=*) sections=${1#--only=} ;;
        --micro) sections=micro ;;
        --out) [ $# -ge 2 ] || { echo "run.sh: --out needs a directory" >&2; exit 2; }; out=$2; shift ;;
        --out=*) out=${1#--out=} ;;
        -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: tests/bench/run.sh [--quick] [--smoke] [--only SECTIONS] [--micro] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
for section in ${sections//,/ }; do
    case $section in
        micro | echo | preempt) ;;
        *) echo "run.sh: --only: '$section' is not one of micro, echo, preempt" >&2; exit 2 ;;
    esac
done
wanted() { [[ ",$sections," == *",$1,"* ]]; }

BUILD=$ROOT/build
BENCH=$BUILD/bench
SAMPLES=$BUILD/samples
COOPRUN=$ROOT/scripts/cooprun
# Debian's python3 (it has python3-gevent), not whatever python3 comes first in PATH.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3) || { echo "run.sh: needs python3" >&2; exit 2; }
export COOP_LIBRARY=${COOP_LIBRARY:-$BUILD/libcoop.so}

# --- the plan: what runs, how long, how often ---
LEVELS=(1 100 1000 10000)
SIZES=(64 16384)
SERVERS=(epoll epoll-mt threads coop coop-ucontext coop-trace go1 go gevent)
# SPAWN: children of each spawn round, and seconds of rounds per run (median round reported).
# CPU_UNITS: units of work of the CPU pool.
# The preemption section: pairs without a hog (the 3% comparison wants several), with one.
PREEMPT_LEVEL=100 PREEMPT_SIZE=64 PREEMPT_MS=10 HOG_MS=1000
if ((smoke)); then
    LEVELS=(1 100) SIZES=(64) REPS=1 DURATION=0.3 WARMUP=0.1 MICRO_T=0.05 MICRO_REPS=1 IDLE_NATIVE=1000 IDLE_COOP=(1000 10000)
    SPAWN_N=5 SPAWN_T=0.01 PAIRS=1 HOG_PAIRS=1 CPU_UNITS=50 BUDGET=50
elif ((quick)); then
    REPS=1 DURATION=0.5 WARMUP=0.25 MICRO_T=0.2 MICRO_REPS=1 IDLE_NATIVE=10000 IDLE_COOP=(10000 100000)
    SPAWN_N=50 SPAWN_T=1 PAIRS=2 HOG_PAIRS=1 CPU_UNITS=500 BUDGET=300
else
    REPS=3 DURATION=2 WARMUP=0.5 MICRO_T=0.5 MICRO_REPS=3 IDLE_NATIVE=10000 IDLE_COOP=(10000 100000)
    SPAWN_N=50 SPAWN_T=1.5 PAIRS=7 HOG_PAIRS=3 CPU_UNITS=1000 BUDGET=560
fi
BUDGET=${BENCH_BUDGET_S:-$BUDGET}
wanted echo || LEVELS=() SIZES=()
# The idle threads of each TLS mechanism: as many as the most of the coop column.
IDLE_TLS=${IDLE_COOP[-1]}
mapfile -t TLS_MECHANISMS < <(tests/tls_mechanisms.sh)
# Each run warms up first (loadgen -w): WARMUP seconds, and on until every connection has had
# an echo, so that 10,000 connections are measured at work, not while being accepted.
# At one connection throughput is bound by latency, and latency by where the kernel puts the
# server and the client: on one CPU a request costs ~16 us here, on two ~40-60 us (waking an
# idle vCPU). Left to chance, that placement decides the result, so at that level both run on
# CPU 0 (BENCH_PIN_LEVEL1=0 leaves them unpinned); higher levels keep both CPUs busy anyway.
PIN_LEVEL1=${BENCH_PIN_LEVEL1:-1}
pin_for() { # pin_for LEVEL: the command prefix that places the server and loadgen
    if ((PIN_LEVEL1 && $1 == 1)) && command -v taskset >/dev/null 2>&1; then echo "taskset -c 0"; fi
}
# 10,000 connections of 16 KiB move 160 MB per round of requests: one repetition there keeps
# the full run within its 10 minutes (results.md says so).
reps_for() { # reps_for LEVEL SIZE
    if (($1 >= 10000 && $2 >= 16384 && REPS > 1)); then echo 1; else echo "$REPS"; fi
}

mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
RAW=$out/raw.tsv MICRO=$out/micro.tsv LOG=$out/log
rm -rf "$LOG"
mkdir -p "$LOG"
started=$(date +%s)
say() { printf '[%4ds] %s\n' $(($(date +%s) - started)) "$*" >&2; }

# --- what it needs ---
if ((!smoke)) && [ "$(id -u)" -eq 0 ]; then
    scripts/deps.sh golang-go python3-gevent gnuplot-nox pigz xz-utils zstd ||
        say "warning: could not install every peer; missing ones are reported as n/a"
fi
# The C programs through the Makefile (its flags); every micro-benchmark in tests/bench.
targets=("build/samples/echo_threads")
for src in tests/bench/*.c tests/bench/*.cc; do targets+=("build/bench/$(basename "${src%.c*}")"); done
make --no-print-directory -s "${targets[@]}" >"$LOG/make.log" 2>&1 || {
    cat "$LOG/make.log" >&2
    echo "run.sh: the build of the benchmark programs failed" >&2
    exit 1
}
# The library, unless COOP_LIBRARY names another. While the tree does not build (others at
# work), an earlier build is measured rather than nothing, and results.md says so.
library_note=""
if [ "$COOP_LIBRARY" = "$BUILD/libcoop.so" ] &&
    ! make --no-print-directory -s build/libcoop.so >"$LOG/make-lib.log" 2>&1; then
    [ -f "$COOP_LIBRARY" ] || {
        cat "$LOG/make-lib.log" >&2
        echo "run.sh: the build of libcoop.so failed" >&2
        exit 1
    }
    library_note="make build/libcoop.so FAILED (see $LOG/make-lib.log): measured the earlier build of $(date -r "$COOP_LIBRARY" '+%F %T')"
    say "warning: $library_note"
fi
have_go=0 have_gevent=0
if command -v go >/dev/null 2>&1; then
    # Go's build cache goes under build/ when there is no usable home directory.
    if [ -z "${HOME:-}" ] || [ ! -w "$HOME" ]; then export GOCACHE=$BUILD/go-cache; fi
    if [ "$BENCH/echo_go" -nt tests/bench/echo_go.go ] ||
        GOPROXY=off go build -o "$BENCH/echo_go" tests/bench/echo_go.go >"$LOG/go-build.log" 2>&1; then
        have_go=1
    else
        say "warning: go build failed: $(tail -n 3 "$LOG/go-build.log")"
    fi
fi
"$PYTHON" -c 'import gevent' >/dev/null 2>&1 && have_gevent=1
have_gnuplot=0
command -v gnuplot >/dev/null 2>&1 && have_gnuplot=1

available() { # available SERVER: 0 if it can run here
    case $1 in
        go1 | go) ((have_go)) ;;
        gevent) ((have_gevent)) ;;
        *) return 0 ;;
    esac
}

# As many descriptors as allowed: 10,000 connections on each side, in two processes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || say "warning: cannot raise the descriptor limit"

# --- one echo run ---
# The command of each server; all take -p 0 and print "listening on PORT".
server_command() {
    case $1 in
        epoll) cmd=("$BENCH/echo_epoll" -p 0) ;;
        epoll-mt) cmd=("$BENCH/echo_epoll" -p 0 -t "$(nproc)") ;;
        coop-rawsleep) cmd=("$COOPRUN" -- "$SAMPLES/echo_threads" -p 0 -z 50) ;;
        threads) cmd=("$SAMPLES/echo_threads" -p 0) ;;
        coop) cmd=("$COOPRUN" -- "$SAMPLES/echo_threads" -p 0) ;;
        coop-ucontext) cmd=(env COOP_SWITCH=ucontext "$COOPRUN" -- "$SAMPLES/echo_threads" -p 0) ;;
        coop-preempt-on) cmd=(env COOP_HUBS=1 COOP_PREEMPT_MS=$PREEMPT_MS "$COOPRUN" -- "$SAMPLES/echo_threads" -p 0) ;;
        coop-preempt-off) cmd=(env COOP_HUBS=1 COOP_PREEMPT_MS=0 "$COOPRUN" -- "$SAMPLES/echo_threads" -p 0) ;;
        coop-hog-on) cmd=(env COOP_HUBS=1 ECHO_HOG_MS=$HOG_MS COOP_PREEMPT_MS=$PREEMPT_MS "$COOPRUN" -- "$SAMPLES/echo_threads" -p 0) ;;
        coop-hog-off) cmd=(env COOP_HUBS=1 ECHO_HOG_MS=$HOG_MS COOP_PREEMPT_MS=0 "$COOPRUN" -- "$SAMPLES/echo_threads" -p 0) ;;
        coop-trace) cmd=("$COOPRUN" --trace "$LOG/trace.json" -- "$SAMPLES/echo_threads" -p 0) ;;
        go1) cmd=(env GOMAXPROCS=1 "$BENCH/echo_go" -p 0) ;;
        go) cmd=("$BENCH/echo_go" -p 0) ;;
        gevent) cmd=("$PYTHON" "$ROOT/tests/bench/echo_gevent.py" -p 0) ;;
    esac
}

# Every exec keeps the process: $! is the server itself (cooprun and env exec it).
start_server() { # start_server SERVER TAG [PIN...]: sets srv_pid and srv_port, or returns 1
    local cmd _ server=$1 tag=$2
    shift 2
    server_command "$server"
    : >"$LOG/$tag.out"
    "$@" "${cmd[@]}" >"$LOG/$tag.out" 2>"$LOG/$tag.err" </dev/null &
    srv_pid=$! srv_port=""
    for _ in $(seq 200); do
        srv_port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$LOG/$tag.out")
        [ -n "$srv_port" ] && return 0
        kill -0 "$srv_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Stops the server: SIGTERM, then SIGKILL after 3 s; returns 1 if SIGKILL was needed.
stop_server() {
    local _ killed=0
    kill -TERM "$srv_pid" 2>/dev/null
    for _ in $(seq 60); do
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$srv_pid" 2>/dev/null && killed=1
    wait "$srv_pid" 2>/dev/null
    return $killed
}

# Threads and resident set of process $1, sampled every 0.1 s while process $2 runs.
sample_server() {
    local key value rest
    max_threads=0 max_rss=0
    while kill -0 "$2" 2>/dev/null; do
        while read -r key value rest; do
            case $key in
                Threads:) ((value > max_threads)) && max_threads=$value ;;
                VmRSS:) ((value > max_rss)) && max_rss=$value ;;
            esac
        done <"/proc/$1/status" 2>/dev/null
        sleep 0.1
    done
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# The share of process $1's CPU time so far that its coop-monitor thread used, in percent
# (schedstat: nanoseconds on a CPU), or NA without one.
monitor_share() {
    local task ns _ all=0 monitor=
    for task in /proc/"$1"/task/*; do
        read -r ns _ <"$task/schedstat" 2>/dev/null || continue
        all=$((all + ns))
        [ "$(cat "$task/comm" 2>/dev/null)" = coop-monitor ] && monitor=$ns
    done
    if [ -n "$monitor" ] && ((all > 0)); then
        awk -v m="$monitor" -v a="$all" 'BEGIN { printf "%.3f", 100 * m / a }'
    else
        echo NA
    fi
}

# echo_run SERVER LEVEL SIZE REP: one run, one line of raw.tsv.
echo_run() {
    local server=$1 level=$2 size=$3 rep=$4 tag="echo-$1-$2-$3-$4" lg status line note=ok
    local rps=NA p50=NA p99=NA errors=NA max_threads=NA max_rss=NA warm=NA starved=NA pin monitor=NA
    read -ra pin <<<"$(pin_for "$level")"
    if ! start_server "$server" "$tag" "${pin[@]}"; then
        note="server-failed-to-start"
        kill -KILL "$srv_pid" 2>/dev/null
        wait "$srv_pid" 2>/dev/null
    else
        "${pin[@]}" timeout -k 2 $((${DURATION%.*} + 60)) "$BENCH/loadgen" -p "$srv_port" -c "$level" -s "$size" \
            -d "$DURATION" -w "$WARMUP" >"$LOG/$tag.loadgen" 2>&1 &
        lg=$!
        sample_server "$srv_pid" "$lg"
        wait "$lg"
        status=$?
        line=$(grep '^conns=' "$LOG/$tag.loadgen")
        if [ -n "$line" ]; then
            rps=$(field rps "$line") p50=$(field p50_us "$line") p99=$(field p99_us "$line")
            errors=$(field errors "$line") warm=$(field warmup_s "$line") starved=$(field starved "$line")
        fi
        if ! kill -0 "$srv_pid" 2>/dev/null; then
            wait "$srv_pid"
            note="server-died-status-$?"
        elif ((status == 124 || status == 137)); then
            note="loadgen-timed-out"
        elif [ -z "$line" ]; then
            note="loadgen-failed-status-$status"
        elif [ "$errors" != 0 ]; then
            note="loadgen-errors"
        fi
        [[ $server != coop* ]] || ! kill -0 "$srv_pid" 2>/dev/null || monitor=$(monitor_share "$srv_pid")
        stop_server || { [ "$note" = ok ] && note="server-ignored-SIGTERM"; }
        rm -f "$LOG/trace.json"
    fi
    [ "$note" = ok ] || say "  $server at $level x $size B: $note (see $LOG/$tag.*)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$size" "$level" "$server" "$rep" \
        "$rps" "$p50" "$p99" "$errors" "$max_threads" "$max_rss" "$warm" "$starved" "$note" "$monitor" >>"$RAW"
}

# --- micro-benchmarks ---
# micro VARIANT PROGRAM [ARG]...: runs it (natively, or under coop for coop variants) and
# appends "VARIANT line" for each bench= line it prints.
micro() {
    local variant=$1 program=$2 tag status
    shift 2
    local -a prefix=()
    case $variant in
        coop) prefix=("$COOPRUN" --) ;;
        coop-ucontext) prefix=(env COOP_SWITCH=ucontext "$COOPRUN" --) ;;
        coop-tls-*) prefix=(env "COOP_TLS=${variant#coop-tls-}" "$COOPRUN" --) ;;
        coop-trace) prefix=("$COOPRUN" --trace "$LOG/trace.json" --) ;;
        native-onecpu) prefix=(taskset -c "$ONE_CPU") ;;
        coop-onecpu) prefix=(taskset -c "$ONE_CPU" "$COOPRUN" --) ;;
    esac
    tag="micro-$variant-$(basename "$program")-${*// /_}"
    tag=${tag//\//_}
    [[ $program == */* ]] || program=$BENCH/$program
    timeout -k 2 120 "${prefix[@]}" "$program" "$@" >"$LOG/$tag.out" 2>"$LOG/$tag.err" </dev/null
    status=$?
    rm -f "$LOG/trace.json"
    grep '^bench=' "$LOG/$tag.out" | sed "s/^/$variant /" >>"$MICRO"
    if ((status != 0)); then
        say "  micro $variant $program $*: status $status: $(tail -n 2 "$LOG/$tag.err" | tr '\n' ' ')"
        printf '%s bench=%s failed=%s args=%s\n' "$variant" "$program" "$status" "${*// /_}" >>"$MICRO"
    fi
}

# MICRO_REPS rounds, native and coop in turn within each; results.md has the medians. The
# compressors (not with --smoke) read COMPRESS_MB of numbers and base64 of random bytes.
COMPRESS_MB=64
# The first CPU this process may use, for the runs on one CPU (none without taskset).
ONE_CPU=$(command -v taskset >/dev/null 2>&1 && taskset -cp $$ 2>/dev/null | sed 's/.*: *//; s/[-,].*//')
run_micro() {
    local n round mode tool tools=()
    say "micro-benchmarks ($MICRO_REPS x ${MICRO_T} s each)"
    if ((!smoke)); then
        for tool in pigz xz zstd sort; do command -v $tool >/dev/null && tools+=($tool); done
        { seq 1 5000000; head -c $((COMPRESS_MB * 600000)) /dev/urandom | base64; } |
            head -c $((COMPRESS_MB * 1000000)) >"$LOG/compress.in"
    fi
    for ((round = 1; round <= MICRO_REPS; round++)); do
        micro native switch -t "$MICRO_T"
        # The switch ping-pong on one hub, as the native one runs on one CPU.
        COOP_HUBS=1 micro coop switch -m yield -t "$MICRO_T"
        COOP_HUBS=1 micro coop-ucontext switch -m yield -t "$MICRO_T"
        COOP_HUBS=1 micro coop-trace switch -m yield -t "$MICRO_T"
        micro native create_join -t "$MICRO_T"
        micro coop create_join -t "$MICRO_T"
        micro native mutex -t "$MICRO_T"
        micro coop mutex -t "$MICRO_T"
        micro native signal -t "$MICRO_T"
        micro coop signal -t "$MICRO_T"
        for mode in pair beside; do
            micro native sleep -m $mode -t "$MICRO_T"
            micro coop sleep -m $mode -t "$MICRO_T"
        done
        if [ -n "$ONE_CPU" ]; then
            micro native-onecpu sleep -m beside -t "$MICRO_T"
            micro coop-onecpu sleep -m beside -t "$MICRO_T"
        fi
        micro native idle -n "$IDLE_NATIVE"
        for n in "${IDLE_COOP[@]}"; do micro coop idle -n "$n"; done
        micro native idle_tls -n "$IDLE_NATIVE"
        for mechanism in "${TLS_MECHANISMS[@]}"; do
            COOP_HUBS=1 micro "coop-tls-$mechanism" switch -m yield -t "$MICRO_T"
            micro "coop-tls-$mechanism" create_join -t "$MICRO_T"
            micro "coop-tls-$mechanism" idle -n "$IDLE_TLS"
            micro "coop-tls-$mechanism" idle_tls -n "$IDLE_TLS"
        done
        for what in system popen; do
            micro native spawn -m "$what" -n "$SPAWN_N" -t "$SPAWN_T"
            micro coop spawn -m "$what" -n "$SPAWN_N" -t "$SPAWN_T"
        done
        micro native cpupool -u "$CPU_UNITS"
        micro coop cpupool -u "$CPU_UNITS"
        for tool in "${tools[@]}"; do
            micro native "$ROOT/tests/bench/compress.sh" $tool "$LOG/compress.in"
            micro coop "$ROOT/tests/bench/compress.sh" $tool "$LOG/compress.in"
        done
    done
    rm -f "$LOG/compress.in"
}

# --- preemption: what it costs without a hog, what it buys with one ---
# Pairs alternate which runs first, so that drift of this shared machine hits both alike.
run_preempt() {
    local pair server servers
    say "preemption: echo at $PREEMPT_LEVEL connections, $PREEMPT_SIZE B: $PAIRS pairs without a hog, $HOG_PAIRS with one"
    for ((pair = 1; pair <= PAIRS + HOG_PAIRS; pair++)); do
        if ((pair <= PAIRS)); then servers=(coop-preempt-on coop-preempt-off); else servers=(coop-hog-on coop-hog-off); fi
        ((pair % 2)) || servers=("${servers[1]}" "${servers[0]}")
        for server in "${servers[@]}"; do echo_run "$server" "$PREEMPT_LEVEL" "$PREEMPT_SIZE" "$pair"; done
    done
}

# --- the echo matrix, within its time budget ---
run_echo() {
    # The time budget: runs planned, made and dropped, and the seconds the made ones took.
    planned=0 made=0 dropped=0 run_ms=0 budget_notes=()
    servers_here=0
    for server in "${SERVERS[@]}"; do available "$server" && servers_here=$((servers_here + 1)); done
    for size in "${SIZES[@]}"; do
        for level in "${LEVELS[@]}"; do planned=$((planned + servers_here * $(reps_for "$level" "$size"))); done
    done
    fits() { # fits: would the runs left fit in the budget at the pace so far?
        local left=$((planned - made - dropped))
        ((made == 0)) && return 0
        (($(date +%s) - started + run_ms * left / made / 1000 <= BUDGET))
    }

    for size in "${SIZES[@]}"; do
        for level in "${LEVELS[@]}"; do
            reps=$(reps_for "$level" "$size")
            say "echo: $level connections, $size B, $reps x ${DURATION} s per server"
            for ((rep = 1; rep <= reps; rep++)); do
                skip_rep=0
                if ((rep > 1)) && ! fits; then
                    skip_rep=1 dropped=$((dropped + servers_here))
                    budget_notes+=("repetition $rep of $level connections x $size B")
                    say "  repetition $rep dropped: the time budget of $BUDGET s would not hold"
                fi
                # Each repetition starts with another server, so that none is always first.
                for ((i = 0; i < ${#SERVERS[@]}; i++)); do
                    server=${SERVERS[(i + rep - 1) % ${#SERVERS[@]}]}
                    if ! available "$server"; then
                        printf '%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tn/a\n' "$size" "$level" "$server" "$rep" >>"$RAW"
                    elif ((skip_rep)); then
                        printf '%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tskipped-for-time\n' "$size" "$level" "$server" "$rep" >>"$RAW"
                    else
                        run_start=$(date +%s%N)
                        echo_run "$server" "$level" "$size" "$rep"
                        run_ms=$((run_ms + ($(date +%s%N) - run_start) / 1000000))
                        made=$((made + 1))
                    fi
                done
            done
        done
    done
}

# --- handoff: the same level as coop's 100 x 64 B runs, with a thread in raw nanosleeps ---
run_handoff() {
    local rep
    say "handoff: 100 connections, 64 B, a thread in raw 50 ms nanosleeps, $REPS x ${DURATION} s"
    for ((rep = 1; rep <= REPS; rep++)); do echo_run coop-rawsleep 100 64 "$rep"; done
}

# --- the run ---
printf 'size\tlevel\tserver\trep\trps\tp50_us\tp99_us\terrors\tthreads\trss_kib\twarmup_s\tstarved\tnote\tmonitor_cpu_pct\n' >"$RAW"
: >"$MICRO"
budget_notes=()
! wanted micro || run_micro
! wanted echo || run_echo
! wanted echo || run_handoff
! wanted preempt || run_preempt

elapsed=$(($(date +%s) - started))
say "done in ${elapsed} s; writing $out/results.md"
machine="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)"
report_args=(--raw "$RAW" --micro "$MICRO" --out "$out" --machine "$machine" --command "$COMMAND"
    --seconds "$elapsed" --duration "$DURATION" --reps "$REPS" --gnuplot "$have_gnuplot"
    --library "$COOP_LIBRARY${library_note:+ ($library_note)}" --preempt-ms "$PREEMPT_MS" --hog-ms "$HOG_MS"
    --tls-mechanisms "$(IFS=,; echo "${TLS_MECHANISMS[*]}")")
[ -n "$(pin_for 1)" ] && report_args+=(--pinned-level1 1)
if [ ${#budget_notes[@]} -gt 0 ]; then
    dropped_list=$(printf '%s; ' "${budget_notes[@]}")
    report_args+=(--note "time budget of $BUDGET s: dropped ${dropped_list%; }")
fi
"$PYTHON" tests/bench/report.py "${report_args[@]}" || exit 1
cat "$out/results.md"
