#!/usr/bin/env bash
# C++20 threads (pool.cc): a std::thread pool on std::mutex and std::condition_variable,
# std::async, 50 threads in std::this_thread::sleep_for at once, std::atomic wait/notify (a
# futex system call of libstdc++'s own), std::jthread with stop tokens, timed waits. Natively
# and under coop with each TLS mechanism (COOP_TLS): the same result lines (all but the time:
# lines), the sleeps overlapping, and under coop one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
[ -x "$SAMPLES/pool" ] || fail "$SAMPLES/pool is not built (make)"

RUN_LIMIT_S=20         # a run that lasts longer is stuck (natively it takes under 1 s)
MAX_SLEEP_MS=2000      # 50 sleeps of 200 ms must overlap (10 s one after the other)

# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

run_both pool sleep_for "$SAMPLES/pool"
echo "PASS: pool prints the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
