#!/usr/bin/env bash
# The C pthread surface: torture (200 threads over each kind of synchronisation object, keys,
# once, join values, identity, 500 overlapping sleeps) and timedwaits (every timed wait times
# out with the right error, no earlier than its deadline, while the other threads run). Each
# runs natively and under coop: the result lines (all but the time: lines) must be the same,
# and under coop the process never has more than one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
PROGRAMS=(torture timedwaits)
for p in "${PROGRAMS[@]}"; do
    [ -x "$SAMPLES/$p" ] || fail "$SAMPLES/$p is not built (make)"
done

RUN_LIMIT_S=20         # a run that lasts longer is stuck (natively each takes about 2 s)
MAX_SLEEPERS_MS=5000   # torture's 500 sleeps of 1 s must overlap; generous: not a timing test
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

# ---- the programs ----

# check_native NAME ARGS...: the program must pass natively, with more than one thread seen.
check_native() {
    local name=$1
    shift
    run_program native "$name" "$SAMPLES/$name" "$@"
    [ "$status" -eq 0 ] || fail "$(describe_failure native "$name")"
    note "native: $name passed in $elapsed_ms ms, at most $max_threads OS threads in $samples samples"
    ((max_threads > 1)) || fail "native: $name showed $max_threads OS threads: is sampling broken?"
}

# check_coop NAME ARGS...: under coop, the same result lines on one OS thread.
check_coop() {
    local name=$1 ok=1
    shift
    run_program coop "$name" "$COOPRUN" -- "$SAMPLES/$name" "$@"
    note "coop: $name status $status in $elapsed_ms ms, at most $max_threads OS threads in $samples samples"
    if [ "$status" -ne 0 ]; then
        problems+=("$(describe_failure coop "$name")")
        ok=0
    elif ! diff -u <(results native "$name") <(results coop "$name") >"$TMP/$name.diff"; then
        problems+=("coop: $name printed other result lines than natively:
$(cat "$TMP/$name.diff")")
        ok=0
    fi
    if ((max_threads > 1 + RUNTIME_THREADS)); then
        problems+=("coop: $name had $max_threads OS threads, expected 1 (+ $RUNTIME_THREADS runtime threads)")
        ok=0
    fi
    ((ok)) && note "coop: $name: the same result lines as natively, one OS thread"
    return 0
}

check_sleepers_overlap() {
    local mode=$1 ms
    ms=$(time_value "$mode" torture sleepers)
    [[ "$ms" =~ ^[0-9]+$ ]] || { problems+=("$mode: torture printed no 'time: sleepers' line"); return; }
    ((ms <= MAX_SLEEPERS_MS)) ||
        problems+=("$mode: torture's 500 sleeps of 1 s took $ms ms: they did not overlap")
    note "$mode: torture's 500 sleeps of 1 s took $ms ms"
}

check_native torture
check_sleepers_overlap native
((${#problems[@]} == 0)) || fail "${problems[*]}"
check_native timedwaits

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

check_coop torture
[ "$status" -eq 0 ] && check_sleepers_overlap coop
check_coop timedwaits

if ((${#problems[@]} > 0)); then
    printf '%s\n' "${problems[@]}" >&2
    fail "${#problems[@]} problem(s) under coop (above)"
fi
echo "PASS: torture and timedwaits print the same natively and under coop, one OS thread under coop"
