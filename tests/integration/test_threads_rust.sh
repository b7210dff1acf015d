#!/usr/bin/env bash
# Rust's std threads (rust_threads.rs): spawn/join with values, Mutex and Condvar, atomics,
# 50 threads in thread::sleep at once, Once/OnceLock, mpsc channels, named threads, scoped
# threads, park/unpark, RwLock, Barrier, and a thread-per-connection TCP echo server with 50
# client threads. Rust's Mutex, Condvar, Once and parking use the futex system call directly.
# Natively and under coop with each TLS mechanism (COOP_TLS): the same result lines (all but
# the time: lines), the sleeps overlapping, and under coop one OS thread (+ coop's runtime
# threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
if [ ! -x "$SAMPLES/rust_threads" ]; then
    command -v rustc >/dev/null || skip "no rustc: $SAMPLES/rust_threads cannot be built here"
    fail "$SAMPLES/rust_threads is not built (make)"
fi

RUN_LIMIT_S=20         # a run that lasts longer is stuck (natively it takes under 1 s)
MAX_SLEEP_MS=2000      # 50 sleeps of 200 ms must overlap (10 s one after the other)

# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

run_both rust_threads sleep "$SAMPLES/rust_threads"
echo "PASS: rust_threads prints the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
