# Helpers of the test_threads_*.sh tests: run a program natively and under coop, sample its
# OS threads, compare the result lines. A test sets RUN_LIMIT_S (and, for run_both,
# MAX_SLEEP_MS and MIN_NATIVE_THREADS) before calling them.
# shellcheck shell=bash

# run_program MODE NAME COMMAND...: runs COMMAND with its output in $TMP/NAME.MODE.{out,err},
# sampling its OS threads every 20 ms; sets status, elapsed_ms, max_threads and samples. A run
# past RUN_LIMIT_S is killed (status 124, as timeout(1) says it).
run_program() {
    local mode=$1 name=$2 pid n start deadline
    shift 2
    start=$(date +%s%N)
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
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
}

# The lines a run must print the same natively and under coop.
results() { grep -Ev '^(time|rss_per_thread_kib):' "$TMP/$2.$1.out"; }

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

# A "time: KEY N ms" value printed by run MODE of NAME.
time_value() { sed -n "s/^time: $3 \([0-9][0-9]*\)\(\.[0-9]*\)\{0,1\} ms.*/\1/p" "$TMP/$2.$1.out" | head -n 1; }

problems=() # failures under coop: every program still runs, the test fails at the end


# check_native NAME COMMAND...: the program must pass natively, with many threads seen.
check_native() {
    local name=$1
    shift
    run_program native "$name" "$@"
    [ "$status" -eq 0 ] || fail "$(describe_failure native "$name")"
    note "native: $name passed in $elapsed_ms ms, at most $max_threads OS threads in $samples samples"
    ((max_threads >= MIN_NATIVE_THREADS)) ||
        fail "native: $name showed $max_threads OS threads, expected $MIN_NATIVE_THREADS or more: is sampling broken?"
}

# check_coop NAME COMMAND...: under coop, the same result lines on one OS thread.
check_coop() {
    local name=$1 ok=1
    shift
    run_program coop "$name" "$COOPRUN" -- "$@"
    note "coop: $name status $status in $elapsed_ms ms, at most $max_threads OS threads in $samples samples"
    if [ "$status" -ne 0 ]; then
        problems+=("$(describe_failure coop "$name")")
        ok=0
    elif ! diff -u <(results native "$name") <(results coop "$name") >"$TMP/$name.diff"; then
        problems+=("coop: $name printed other result lines than natively:
$(cat "$TMP/$name.diff")")
        ok=0
    fi
    if ((max_threads > 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)); then
        problems+=("coop: $name had $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)")
        ok=0
    fi
    ((ok)) && note "coop: $name: the same result lines as natively, one OS thread"
    return 0
}

# check_overlap MODE NAME KEY: the "time: KEY MS" line of a run shows sleeps that overlapped.
check_overlap() {
    local mode=$1 name=$2 key=$3 ms
    ms=$(time_value "$mode" "$name" "$key")
    if ! [[ "$ms" =~ ^[0-9]+$ ]]; then
        problems+=("$mode: $name printed no 'time: $key' line")
    elif ((ms > MAX_SLEEP_MS)); then
        problems+=("$mode: $name's 50 sleeps of 200 ms took $ms ms: they did not overlap")
    else
        note "$mode: $name's 50 sleeps of 200 ms took $ms ms"
    fi
}

# run_both NAME SLEEP_KEY COMMAND...: natively (which must pass), then under coop.
run_both() {
    local name=$1 key=$2
    shift 2
    check_native "$name" "$@"
    check_overlap native "$name" "$key"
    ((${#problems[@]} == 0)) || fail "${problems[*]}"

    [ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

    check_coop "$name" "$@"
    [ "$status" -eq 0 ] && check_overlap coop "$name" "$key"
    if ((${#problems[@]} > 0)); then
        printf '%s\n' "${problems[@]}" >&2
        fail "${#problems[@]} problem(s) under coop (above)"
    fi
}

