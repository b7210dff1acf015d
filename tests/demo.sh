#!/usr/bin/env bash
# make demo: the same unmodified thread-per-connection echo server, natively and under
# cooprun, each driven by 10,000 concurrent connections from the project's load generator.
set -u
cd "$(dirname "$0")/.." || exit 2
CONNS=${CONNS:-10000} SIZE=${SIZE:-64} SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
ulimit -n "$(ulimit -Hn)"

# Runs echo_threads under the given command prefix and prints one line of figures.
run() {
    local label=$1; shift
    local out; out=$(mktemp)
    "$@" build/samples/echo_threads >"$out" 2>&1 &
    local server=$! port="" _
    for _ in $(seq 100); do
        port=$(sed -n 's/^listening on //p' "$out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "$label: the server did not start"; cat "$out"; return 1; }
    build/bench/loadgen -p "$port" -c "$CONNS" -s "$SIZE" -d "$SECONDS_PER_RUN" >"$out.load" &
    local client=$!
    sleep $((SECONDS_PER_RUN / 2 + 1))
    local threads rss
    threads=$(ls "/proc/$server/task" | wc -l)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
    wait "$client"
    kill "$server"; wait "$server" 2>/dev/null
    local rps p99
    rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' "$out.load")
    p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' "$out.load")
    printf '%-18s %10s req/s   p99 %9s us   %6s OS threads   RSS %7s KiB\n' "$label" "$rps" "$p99" "$threads" "$rss"
    rm -f "$out" "$out.load"
}

echo "echo_threads, $CONNS connections, $SIZE-byte messages, $SECONDS_PER_RUN s each:"
run "under cooprun" scripts/cooprun --
run "native threads" env
