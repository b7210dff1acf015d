#!/usr/bin/env bash
# echo_threads, an ordinary thread-per-connection server, takes 1,000 concurrent connections
# whose messages run from 1 B to 1 MiB, 3 round trips each, checked byte for byte. It runs
# natively and under coop: every byte must come back both times, with the same totals.
# Natively the server then has a thread per connection; under coop it has its hubs' OS
# threads (one per CPU, or COOP_HUBS; and spares while a hub is stuck: lib.sh) (sampled from
# /proc while loaded: samples can miss threads, so they only bound coop's from above).
source "$(dirname "$0")/lib.sh"
for program in "$SAMPLES/echo_threads" "$BENCH/loadgen"; do
    [ -x "$program" ] || fail "$program is not built (make)"
done

CONNS=1000 MIN_SIZE=1 MAX_SIZE=1048576 ROUNDS=3
LOADGEN_LIMIT_S=100 # -n mode: loadgen counts unfinished round trips after this as errors
# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# What loadgen must report: the sizes are spread as loadgen spreads them (integer steps).
expected_bytes=$(awk -v n=$CONNS -v lo=$MIN_SIZE -v hi=$MAX_SIZE -v r=$ROUNDS 'BEGIN {
    for (i = 0; i < n; i++) total += lo + int((hi - lo) * i / (n - 1))
    printf "%.0f", total * r }')
expected="conns=$CONNS size=$MIN_SIZE requests=$((CONNS * ROUNDS)) errors=0 verified=$((CONNS * ROUNDS)) bytes=$expected_bytes"


# Samples the OS threads of process $1 every 20 ms while process $2 runs; sets max_threads
# and samples.
sample_threads() {
    local n
    max_threads=0 samples=0
    while kill -0 "$2" 2>/dev/null; do
        n=$(os_threads "$1" 2>/dev/null)
        ((n > max_threads)) && max_threads=$n
        samples=$((samples + 1))
        sleep 0.02
    done
}

# run_echo MODE [PREFIX...]: one whole run; sets totals to loadgen's line less its timings.
run_echo() {
    local mode=$1 loadgen line
    shift
    start_server "$@"
    "$BENCH/loadgen" -p "$port" -c $CONNS -s $MIN_SIZE -m $MAX_SIZE -n $ROUNDS \
        -d $LOADGEN_LIMIT_S --verify >"$TMP/loadgen.out" 2>"$TMP/loadgen.err" &
    loadgen=$!
    sample_threads "$server" $loadgen
    wait $loadgen || fail "$mode: loadgen failed: $(cat "$TMP/loadgen.out" "$TMP/loadgen.err")"
    kill -0 "$server" 2>/dev/null || fail "$mode: echo_threads died: $(cat "$TMP/server.err")"
    stop_server "$mode"

    line=$(cat "$TMP/loadgen.out")
    note "$mode: $line"
    note "$mode: at most $max_threads OS threads in $samples samples"
    [ "$mode" = native ] || ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
        fail "coop: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
    # In loadgen's order, without seconds, rps and latencies.
    totals=$(tr ' ' '\n' <<<"$line" | grep -E '^(conns|size|requests|errors|verified|bytes)=' | paste -sd' ')
}

run_echo native
native=$totals
[ "$native" = "$expected" ] || fail "native: got '$native', expected '$expected'"

[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"

run_echo coop "$COOPRUN" --
[ "$totals" = "$native" ] || fail "coop: got '$totals', natively '$native'"
echo "PASS: every byte echoed natively and under coop, one OS thread under coop"
