#!/usr/bin/env bash
# C++20 threads (pool.cc): a std::thread pool on std::mutex and std::condition_variable,
# std::async, 50 threads in std::this_thread::sleep_for at once, std::atomic wait/notify (a
# futex system call of libstdc++'s own), std::jthread with stop tokens, timed waits. Natively
# and under coop with each TLS mechanism (COOP_TLS): the same result lines (all but the time:
# and os_threads: lines); the 50 sleepers wait for one another, so they overlap or never end;
# by the program's own count (gettid) they ran on 50 OS threads natively and on one under
# coop, where the process never has more than one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
[ -x "$SAMPLES/pool" ] || fail "$SAMPLES/pool is not built (make)"

RUN_LIMIT_S=120        # a hang guard (natively it takes under 1 s)

# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

run_both pool "$SAMPLES/pool"
echo "PASS: pool prints the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
