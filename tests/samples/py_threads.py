#!/usr/bin/python3
"""py_threads: CPython's threading module, one line per check:

  ok NAME: what was seen       as with the OS's threads
  FAIL NAME: why               not
  time: NAME MS                a duration (tests ignore these lines)
  os_threads: K of N sleepers  on how many OS threads (threading.get_native_id) the N
                               sleepers, all alive at once, ran (tests check it apart)

and exits 1 when a check failed. Run it with /usr/bin/python3 (Debian's, dynamically linked
against libc, so that a preloaded library sees its calls). CPython builds its locks on POSIX
semaphores (sem_wait, sem_clockwait), the GIL on a mutex and a condition variable with a
monotonic clock (pthread_cond_timedwait), threads on pthread_create, time.sleep on
clock_nanosleep, and sockets on poll() plus recv/send. The checks: Thread with results, Lock,
RLock, Condition, Event, Semaphore and BoundedSemaphore, Barrier, queue.Queue producers and
consumers, threading.local, timed acquires, 50 threads in time.sleep(0.2) together, the main
thread getting the GIL back from two computing threads, and a socketserver.ThreadingTCPServer
echo with 20 client threads. With arguments, it runs only the checks they name (py_threads.py
lock queue).
"""
import queue
import socket
import socketserver
import sys
import threading
import time

failures = 0


def report(name, passed, what):
    global failures
    print(f"{'ok' if passed else 'FAIL'} {name}: {what}", flush=True)
    failures += not passed


def run_threads(n, target, *args):
    """Starts n threads of target(i, *args), joins them, returns their results in order."""
    results = [None] * n

    def body(i):
        results[i] = target(i, *args)

    threads = [threading.Thread(target=body, args=(i,), name=f"worker-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_thread():
    def square(i):
        assert threading.current_thread().name == f"worker-{i}"
        return i * i

    results = run_threads(100, square)
    idents = set()
    lock = threading.Lock()
    all_alive = threading.Barrier(50)  # identities of ended threads may be reused

    def ident(i):
        with lock:
            idents.add(threading.get_ident())
        all_alive.wait()

    run_threads(50, ident)
    main_ok = threading.current_thread() is threading.main_thread()
    passed = results == [i * i for i in range(100)] and len(idents) == 50 and main_ok
    report("thread", passed,
           f"100 results summing to {sum(results)}, {len(idents)} distinct idents, "
           f"main thread {'recognised' if main_ok else 'NOT recognised'}")


def check_lock():
    lock = threading.Lock()
    counter = [0]

    def work(i):
        for k in range(1000):
            with lock:
                v = counter[0]
                if k % 100 == 0:
                    time.sleep(0)  # let another thread try the lock while it is held
                counter[0] = v + 1

    run_threads(20, work)
    # a timed acquire of a held lock times out
    lock.acquire()
    t0 = time.monotonic()
    got = [None]

    def try_it():
        got[0] = lock.acquire(timeout=0.1)

    t = threading.Thread(target=try_it)
    t.start()
    t.join()
    waited = time.monotonic() - t0
    lock.release()
    print(f"time: lock_acquire_timeout {waited * 1000:.0f} ms")
    passed = counter[0] == 20000 and got[0] is False and waited >= 0.1
    timed = "failed after 0.1 s" if got[0] is False and waited >= 0.1 else f"gave {got[0]} after {waited:.3f} s"
    report("lock", passed, f"20 threads counted to {counter[0]}, timed acquire of a held lock {timed}")


def check_rlock():
    rlock = threading.RLock()
    counter = [0]

    def work(i):
        for _ in range(200):
            with rlock:
                with rlock:
                    v = counter[0]
                    time.sleep(0)
                    counter[0] = v + 1

    run_threads(20, work)
    rlock.acquire()
    other = [None]
    t = threading.Thread(target=lambda: other.__setitem__(0, rlock.acquire(blocking=False)))
    t.start()
    t.join()
    rlock.release()
    passed = counter[0] == 4000 and other[0] is False
    report("rlock", passed, f"20 threads counted to {counter[0]} with nested locking, "
           f"another thread {'kept out' if other[0] is False else 'LET IN'}")


def check_condition():
    cond = threading.Condition()
    turn = [0]
    order = []
    n, rounds = 20, 5

    def work(i):
        for r in range(rounds):
            with cond:
                cond.wait_for(lambda: turn[0] == r * n + i)
                order.append(i)
                turn[0] += 1
                cond.notify_all()

    run_threads(n, work)
    with cond:
        timed_out = cond.wait(timeout=0.05) is False
    passed = order == [k % n for k in range(n * rounds)] and timed_out
    report("condition", passed,
           f"{len(order)} turns in order, wait(timeout) {'timed out' if timed_out else 'DID NOT time out'}")


def check_event_semaphore_barrier():
    event = threading.Event()
    woken = []
    lock = threading.Lock()

    def waiter(i):
        ok = event.wait(timeout=60)  # a hang guard: set() comes at once
        with lock:
            woken.append(ok)

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    event.set()
    for t in threads:
        t.join()
    unset = threading.Event()
    timed_out = unset.wait(timeout=0.05) is False

    sem = threading.BoundedSemaphore(3)
    inside = [0]
    most = [0]

    def limited(i):
        for _ in range(10):
            with sem:
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.001)
                with lock:
                    inside[0] -= 1

    run_threads(20, limited)
    try:
        sem.release()
        over_release = "allowed"
    except ValueError:
        over_release = "ValueError"

    barrier = threading.Barrier(10)
    indices = []

    def at_barrier(i):
        for _ in range(3):
            idx = barrier.wait()
            with lock:
                indices.append(idx)

    run_threads(10, at_barrier)
    passed = (woken == [True] * 20 and timed_out and most[0] <= 3 and
              over_release == "ValueError" and sorted(indices) == sorted(list(range(10)) * 3))
    report("event_semaphore_barrier", passed,
           f"{woken.count(True)} woken by Event.set, unset wait timed out: {timed_out}, "
           f"at most {'3' if most[0] <= 3 else most[0]} inside a BoundedSemaphore(3), "
           f"over-release {over_release}, barrier indices {'right' if len(indices) == 30 else 'WRONG'}")


def check_queue():
    q = queue.Queue(maxsize=10)
    producers, consumers, items = 5, 5, 1000
    totals = [0] * consumers
    done = object()

    def produce(i):
        for k in range(items):
            q.put(i * items + k + 1)

    def consume(i):
        while True:
            v = q.get()
            if v is done:
                q.task_done()
                return
            totals[i] += v
            q.task_done()

    cons = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    for t in cons:
        t.start()
    run_threads(producers, produce)
    for _ in range(consumers):
        q.put(done)
    q.join()
    for t in cons:
        t.join()
    try:
        queue.Queue().get(timeout=0.05)
        empty = "got something"
    except queue.Empty:
        empty = "queue.Empty"
    n = producers * items
    passed = sum(totals) == n * (n + 1) // 2 and empty == "queue.Empty"
    report("queue", passed, f"{n} items summing to {sum(totals)}, get(timeout) of an empty queue: {empty}")


def check_local():
    local = threading.local()
    local.value = "main"
    seen = []
    lock = threading.Lock()

    def work(i):
        if hasattr(local, "value"):
            with lock:
                seen.append(("inherited", i))
        local.value = i
        time.sleep(0.005)
        if local.value != i:
            with lock:
                seen.append(("changed", i))

    run_threads(30, work)
    passed = not seen and local.value == "main"
    report("local", passed, "30 threads kept their own values" if passed else f"problems: {seen[:3]}")


def check_sleep():
    """Each sleeper counts itself in, then sleeps until all have: were the sleeps not
    overlapping, the last could never count in (the test's time-out guards the hang)."""
    n = 50
    shortest = [10.0]
    native_ids = [None] * n
    arrived = [0]
    lock = threading.Lock()

    def nap(i):
        native_ids[i] = threading.get_native_id()
        with lock:
            arrived[0] += 1
        while True:
            s = time.monotonic()
            time.sleep(0.2)
            with lock:
                shortest[0] = min(shortest[0], time.monotonic() - s)
                if arrived[0] == n:
                    return

    run_threads(n, nap)
    print(f"os_threads: {len(set(native_ids))} of {n} sleepers")
    passed = shortest[0] >= 0.2
    report("sleep", passed, f"{n} threads slept 0.2 s at a time, all at once" if passed
           else f"a sleep lasted {shortest[0]:.3f} s")


def check_gil():
    """The main thread sleeps and wakes 20 times while two threads compute in pure Python:
    each wake needs the GIL back from them (CPython asks its holder to drop it after 5 ms).
    The computing threads give up after 30 s, a hang guard: natively the check takes well
    under a second, even on one CPU."""
    done, gave_up = [False], [False]
    started = time.monotonic()

    def compute(i):
        x = 0
        while not done[0]:
            x += 1
            if x % 100000 == 0 and time.monotonic() - started > 30:
                gave_up[0] = True
                return

    threads = [threading.Thread(target=compute, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for _ in range(20):
        time.sleep(0.001)
    done[0] = True
    for t in threads:
        t.join()
    report("gil", not gave_up[0], "the main thread got the GIL back 20 times from 2 computing threads"
           if not gave_up[0] else "the computing threads kept the GIL from the main thread for 30 s")


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # socketserver listens with a backlog of 5: 20 clients connecting at once would overflow
    # it, and a dropped SYN is sent again only after a second
    request_queue_size = 128


def check_tcp_echo():
    clients, messages = 20, 50
    server = EchoServer(("127.0.0.1", 0), EchoHandler)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    t0 = time.monotonic()

    def client(i):
        # socket() and connect() of a numeric address, not create_connection(): that one calls
        # getaddrinfo, which a runtime may hand to helper threads of its own
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(("127.0.0.1", port))
            f = s.makefile("rwb")
            ok = 0
            for m in range(messages):
                msg = f"client {i} message {m} {'y' * ((i * 31 + m * 97) % 2000)}\n".encode()
                f.write(msg)
                f.flush()
                if f.readline() == msg:
                    ok += 1
            return ok

    results = run_threads(clients, client)
    server.shutdown()
    serving.join()
    server.server_close()
    print(f"time: tcp_echo {(time.monotonic() - t0) * 1000:.0f} ms")
    verified = sum(results)
    report("tcp_echo", verified == clients * messages,
           f"{clients} clients, {verified} of {clients * messages} messages echoed and verified")


CHECKS = {
    "thread": check_thread,
    "lock": check_lock,
    "rlock": check_rlock,
    "condition": check_condition,
    "event_semaphore_barrier": check_event_semaphore_barrier,
    "queue": check_queue,
    "local": check_local,
    "sleep": check_sleep,
    "gil": check_gil,
    "tcp_echo": check_tcp_echo,
}


def main():
    only = sys.argv[1:]
    unknown = [name for name in only if name not in CHECKS]
    if unknown:
        sys.exit(f"py_threads: no check named {unknown[0]!r} (checks: {' '.join(CHECKS)})")
    t0 = time.monotonic()
    for name, check in CHECKS.items():
        if not only or name in only:
            try:
                check()
            except Exception as e:  # a check that raises has failed, the others still run
                report(name, False, f"raised {type(e).__name__}: {e}")
    print(f"time: total {(time.monotonic() - t0) * 1000:.0f} ms")
    print("py_threads: all checks passed" if failures == 0 else "py_threads: checks failed")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
