# Helpers of the test_threads_*.sh tests: run a program natively and under coop, with each
# COOP_TLS mechanism of TLS_MECHANISMS (lib.sh), and compare its result lines. A run's MODE is
# "native" or the setting it ran with, "COOP_TLS=MECHANISM". A test sets RUN_LIMIT_S (a hang
# guard) and RUNTIME_THREADS before calling them. Nothing here is timed: the programs prove
# what they claim by construction (their sleepers wait for one another), and count their own
# OS threads ("os_threads: K of N ..." lines: the distinct gettid of N threads alive at once).
# shellcheck shell=bash

# run_program MODE NAME COMMAND...: runs COMMAND with its output in $TMP/NAME.MODE.{out,err},
# sampling its OS threads every 20 ms; sets status, max_threads and samples. The samples may
# miss short-lived threads, so they only ever bound coop's threads from above. A run past
# RUN_LIMIT_S is killed (status 124, as timeout(1) says it).
run_program() {
    local mode=$1 name=$2 pid n deadline
    shift 2
    "$@" >"$TMP/$name.$mode.out" 2>"$TMP/$name.$mode.err" &
    pid=$!
    max_threads=0 samples=0 status=
    deadline=$((SECONDS + RUN_LIMIT_S))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            status=124
            break
        fi
        n=$(os_threads "$pid" 2>/dev/null) || n=0
        ((n > max_threads)) && max_threads=$n
        samples=$((samples + 1))
        sleep 0.02
    done
    if [ -z "$status" ]; then
        wait "$pid"
        status=$?
    fi
}

# The lines a run must print the same natively and under coop (depth: lines are compared
# with a tolerance by the tests that print them).
results() { grep -Ev '^(time|rss_per_thread_kib|os_threads|depth):' "$TMP/$2.$1.out"; }

# What went wrong in a run, for a failure message: its status, FAIL lines, last lines.
describe_failure() {
    local mode=$1 name=$2 what
    case $status in
        124) what="still running after $RUN_LIMIT_S s (killed)" ;;
        0) what="exited with status 0" ;;
        *) what="exited with status $status$( ((status > 128)) && echo " (signal $((status - 128)))")" ;;
    esac
    echo "$mode: $name $what"
    grep -E '^FAIL' "$TMP/$name.$mode.out" | head -n 20 | sed 's/^/    /'
    echo "    last result line: $(results "$mode" "$name" | tail -n 1)"
    [ -s "$TMP/$name.$mode.err" ] && head -n 30 "$TMP/$name.$mode.err" | sed 's/^/    stderr: /'
    return 0
}

# check_os_threads MODE NAME WANT: every "os_threads: K of N ..." line of the run says K is
# WANT (N: as many OS threads as threads; coop: 1 to COOP_OS_THREADS_MAX, its hubs' and
# spares', lib.sh); returns 1 and sets why otherwise.
check_os_threads() {
    local mode=$1 name=$2 want=$3 line k n
    while read -r line; do
        read -r k n <<<"$(sed -n 's/^os_threads: \([0-9]*\) of \([0-9]*\) .*/\1 \2/p' <<<"$line")"
        if [ "$want" = N ] && { [ -z "$k" ] || [ "$k" != "$n" ]; }; then
            why="$mode: $name reported '$line', expected $n OS threads"
            return 1
        elif [ "$want" = coop ] && ! coop_os_threads_ok "$k"; then
            why="$mode: $name reported '$line', expected 1 to $COOP_OS_THREADS_MAX OS threads ($SCHED_THREADS hubs, $SPARE_THREADS spares)"
            return 1
        fi
        note "$mode: $name: $line"
    done < <(grep '^os_threads:' "$TMP/$name.$mode.out")
    return 0
}

problems=() # failures under coop: every program still runs, the test fails at the end

# check_native NAME COMMAND...: the program must pass natively, each thread of its
# os_threads lines on an OS thread of its own.
check_native() {
    local name=$1 why
    shift
    run_program native "$name" "$@"
    [ "$status" -eq 0 ] || fail "$(describe_failure native "$name")"
    note "native: $name passed, at most $max_threads OS threads sampled"
    check_os_threads native "$name" N || fail "$why"
}

# check_coop SETTING NAME COMMAND...: under coop with SETTING (COOP_TLS=MECHANISM), the same
# result lines as natively, on its hubs' OS threads (by the program's own count: 1 to
# COOP_OS_THREADS_MAX), and never more than 1 + SCHED_THREADS + SPARE_THREADS +
# RUNTIME_THREADS OS threads sampled.
check_coop() {
    local mode=$1 name=$2 ok=1 why
    shift 2
    run_program "$mode" "$name" env "$mode" "$COOPRUN" -- "$@"
    note "$mode: $name status $status, at most $max_threads OS threads in $samples samples"
    if [ "$status" -ne 0 ]; then
        problems+=("$(describe_failure "$mode" "$name")")
        ok=0
    elif ! diff -u <(results native "$name") <(results "$mode" "$name") >"$TMP/$name.$mode.diff"; then
        problems+=("$mode: $name printed other result lines than natively:
$(cat "$TMP/$name.$mode.diff")")
        ok=0
    elif ! check_os_threads "$mode" "$name" coop; then
        problems+=("$why")
        ok=0
    fi
    if ((max_threads > 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)); then
        problems+=("$mode: $name had $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)")
        ok=0
    fi
    ((ok)) && note "$mode: $name: the same result lines as natively, on the hubs' OS threads"
    return 0
}

# fail_on_problems: fails the test with every problem seen under coop, if there were any.
fail_on_problems() {
    ((${#problems[@]} == 0)) && return 0
    printf '%s\n' "${problems[@]}" >&2
    fail "${#problems[@]} problem(s) under coop (above)"
}

# run_both NAME COMMAND...: natively (which must pass), then under coop with each TLS
# mechanism.
run_both() {
    local name=$1 mechanism
    shift
    check_native "$name" "$@"
    [ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
    for mechanism in "${TLS_MECHANISMS[@]}"; do
        check_coop "COOP_TLS=$mechanism" "$name" "$@"
    done
    fail_on_problems
}
