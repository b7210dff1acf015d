#!/usr/bin/env bash
# CPython's threads (py_threads.py, run by Debian's /usr/bin/python3): Thread, Lock, RLock,
# Condition, Event, Semaphore, Barrier, queue.Queue, threading.local, 50 threads in time.sleep
# at once, and a socketserver.ThreadingTCPServer echo with 20 client threads. CPython's locks
# are POSIX semaphores and its GIL a mutex and a condition variable. Natively and under coop
# with each TLS mechanism (COOP_TLS): the same result lines (all but the time: and
# os_threads: lines); the 50 sleepers wait for one another, so they overlap or never end; by
# the program's own count (get_native_id) they ran on 50 OS threads natively and on one under
# coop, where the process never has more than one OS thread (+ coop's runtime threads).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
ulimit -c 0
PYTHON=/usr/bin/python3 # Debian's, linked against libc (a static or foreign build would not do)
[ -x "$PYTHON" ] || skip "no $PYTHON"
SCRIPT=$ROOT/tests/samples/py_threads.py

RUN_LIMIT_S=120        # a hang guard (natively it takes about 2 s)

# coop's own runtime threads (such as a threadpool) are not the program's threads: they are
# counted separately, and COOP_RUNTIME_THREADS says how many the library may start.
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-0}

# shellcheck source=tests/integration/threads_lib.sh
source "$(dirname "$0")/threads_lib.sh"

run_both py_threads "$PYTHON" -I "$SCRIPT"
echo "PASS: py_threads prints the same natively and under coop (COOP_TLS=$TLS_MECHANISM_LIST), one OS thread under coop"
