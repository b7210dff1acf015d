#!/usr/bin/env bash
# Rust's std threads (rust_threads.rs): spawn/join with values, Mutex and Condvar, atomics,
# 50 threads in thread::sleep at once, Once/OnceLock, mpsc channels, named threads, scoped
# threads, park/unpark, RwLock, Barrier, and a thread-per-connection TCP echo server with 50
# client threads. Rust's Mutex, Condvar, Once and parking use the futex system call directly.
# Natively and under coop with each TLS mechanism (COOP_TLS): the same result lines (all but
# the time: and os_threads: lines); the 50 sleepers wait for one another, so they overlap or
# never end; by the program's own count (gettid) they ran on 50 OS threads natively and on one
# under coop, where the process never has more than one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
if [ ! -x "$SAMPLES/rust_threads" ]; then
    command -v rustc >/dev/null || skip "no rustc: $SAMPLES/rust_threads cannot be built here"
    fail "$SAMPLES/rust_threads is not built (make)"
fi

RUN_LIMIT_S=120        # a hang guard (natively it takes under 1 s)

# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

run_both rust_threads "$SAMPLES/rust_threads"
echo "PASS: rust_threads prints the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
