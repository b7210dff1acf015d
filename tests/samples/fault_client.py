#!/usr/bin/env python3
"""Misbehaving clients of an echo server, for the fault tests (tests/integration/test_faults*.sh).

    fault_client.py SCENARIO --port PORT --pid PID [--cycles N]

PID is the server's process: its descriptors (/proc/PID/fd) and CPU time (/proc/PID/stat)
are watched. Each scenario prints its verdicts on stdout, one line each, worded so that the
same server gives the same lines natively and under coop; measurements (timings, counts that
depend on how many descriptors the runtime holds) go to stderr. Exit status 0 when every
check passed, 1 otherwise (the failed check is on stderr), 2 for a usage error.

Scenarios:
  reset      clients send a large message without reading, so the server is blocked writing
             its echo, then reset (SO_LINGER 0 + close) after reading part of it; before they
             do, a bystander client's echo must come back whole
  halfclose  clients send, then shutdown(SHUT_WR): the whole echo comes back, then EOF
  slowloris  clients send one byte a second for 5 s, and between their bytes a normal
             client makes round trips while every slow one is mid-message (their times go
             to stderr, for the record)
  vanish     clients connect and close (or reset) without sending anything
  cycles     N (default 10000) connect/close cycles
  emfile     the server runs with a low RLIMIT_NOFILE: more clients than that connect; the
             server fills its table, sees EMFILE (counted with strace), does not spin, serves
             the clients it accepted, and recovers when they leave
After each scenario the server must serve a new client, and its descriptor count must return
to what it was before. No verdict depends on how fast the machine is: every wait for the
server is for something it must do, with a generous time-out (HANG_GUARD_S) only against a
hang.
"""
import argparse
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

failures = 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
HANG_GUARD_S = 60.0  # for waits that end as soon as the server has done its part


def say(line):
    print(line, flush=True)


def measure(line):
    print("  " + line, file=sys.stderr, flush=True)


def check(ok, verdict, detail=""):
    """Prints the verdict; a failed one also goes to stderr with its detail."""
    global failures
    say(("ok: " if ok else "FAILED: ") + verdict)
    if not ok:
        failures += 1
        print("fault_client: check failed: %s %s" % (verdict, detail), file=sys.stderr, flush=True)
    return ok


def pattern(n, seed):
    return random.Random(seed).randbytes(n)


def connect(port, timeout=HANG_GUARD_S):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def echo(s, data):
    """Sends data while reading its echo (a big message would otherwise fill both buffers)."""
    errors = []

    def sender():
        try:
            s.sendall(data)
        except OSError as e:
            errors.append(e)

    if len(data) <= 32768:
        s.sendall(data)
        got = recv_exactly(s, len(data))
    else:
        t = threading.Thread(target=sender)
        t.start()
        try:
            got = recv_exactly(s, len(data))
        finally:
            t.join()
    if errors:
        raise errors[0]
    return got


def fresh_client_ok(port, size=1 << 20, seed=99):
    """A new client's verified round trip; it then shuts down its side and waits for the
    server's EOF, which comes once the server has closed its descriptor."""
    try:
        with connect(port) as s:
            data = pattern(size, seed)
            ok = echo(s, data) == data
            s.shutdown(socket.SHUT_WR)
            return s.recv(1) == b"" and ok
    except OSError as e:
        measure("fresh client: %r" % e)
        return False


def is_runtime_kind(pid, fd):
    """An epoll set or an eventfd: a thread pool's or event loop's own (coop's hubs add some
    when they start a spare thread), never a connection's; or a thread's file in /proc, which
    coop's monitor keeps open from its first look at that thread on."""
    try:
        target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
    except OSError:
        return False
    return target in ("anon_inode:[eventpoll]", "anon_inode:[eventfd]") or \
        (target.startswith("/proc/") and "/task/" in target)


def fd_count(pid, below=None):
    """The server's open descriptors (those numbered below below, if given); at rest (no
    limit given), its epoll sets, eventfds and threads' /proc files are left out."""
    fds = [int(x) for x in os.listdir("/proc/%d/fd" % pid)]
    if below is None:
        return sum(1 for x in fds if not is_runtime_kind(pid, x))
    return sum(1 for x in fds if x < below)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def nofile_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise RuntimeError("no 'Max open files' line")


def wait_fds(pid, want, seconds=HANG_GUARD_S, below=None):
    """Waits until the server has want descriptors; returns the last count seen."""
    deadline = time.monotonic() + seconds
    while True:
        n = fd_count(pid, below)
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def accept_queue(port):
    """Connections waiting in the accept queue of the listener on port (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    raise RuntimeError("no listener on port %d in /proc/net/tcp" % port)


def settled(look, seconds=HANG_GUARD_S):
    """look() once two looks 0.2 s apart agree (or the last one after seconds)."""
    deadline = time.monotonic() + seconds
    last = look()
    while True:
        time.sleep(0.2)
        now = look()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def wait_accept_queue(port, seconds=HANG_GUARD_S):
    deadline = time.monotonic() + seconds
    while True:
        n = accept_queue(port)
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def baseline(port, pid):
    """The server's descriptor count at rest, after one client has come and gone (its EOF
    says the server closed its side)."""
    fresh_client_ok(port, 1000, 1)
    return fd_count(pid)


def linger_reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def run_threads(fn, args_list):
    results = [None] * len(args_list)

    def body(i, args):
        try:
            results[i] = fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is a result here
            results[i] = e

    threads = [threading.Thread(target=body, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Bystander:
    """A client doing verified round trips in the background until stopped."""

    def __init__(self, port, size, seed):
        self.port, self.size, self.seed = port, size, seed
        self.done = threading.Event()
        self.echoed = threading.Event()  # set after the first whole echo, or on failure
        self.trips = 0
        self.bad = []
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        try:
            with connect(self.port) as s:
                i = 0
                while not self.done.is_set():
                    data = pattern(self.size, self.seed + i)
                    if echo(s, data) != data:
                        self.bad.append("echo %d differs" % i)
                        return
                    self.trips += 1
                    self.echoed.set()
                    i += 1
        except OSError as e:
            self.bad.append(repr(e))
        finally:
            self.echoed.set()

    def stop(self):
        self.done.set()
        self.thread.join()
        return not self.bad


# --- scenarios ---

def reset_one(port, i, bystander):
    """Sends until the server is stuck writing the echo, holds it stuck until the bystander
    has had an echo, reads some of it, resets. Returns (the part read was right, bytes sent,
    the sending stalled)."""
    s = connect(port)
    block = pattern(1 << 20, 1000 + i)   # the message: this block over and over
    limit, sent, stalled = 64 << 20, 0, False
    s.settimeout(0.5)
    try:
        while sent < limit:
            off = sent % len(block)
            sent += s.send(block[off:])
    except socket.timeout:
        stalled = True
    bystander.echoed.wait(HANG_GUARD_S)
    s.settimeout(HANG_GUARD_S)
    part = recv_exactly(s, min(sent, 100000 + 1000 * i))
    ok = len(part) > 0 and part == block[:len(part)]
    linger_reset(s)
    return ok, sent, stalled


def scenario_reset(port, pid, args):
    base = baseline(port, pid)
    bystander = Bystander(port, 256 * 1024, 7)
    results = run_threads(reset_one, [(port, i, bystander) for i in range(16)])
    bystander_ok = bystander.stop()
    errors = [r for r in results if isinstance(r, Exception)]
    sent = [r[1] for r in results if not isinstance(r, Exception)]
    measure("reset: 16 clients sent %s KiB before the server stopped reading; bystander made %d round trips"
            % (sorted(x >> 10 for x in sent), bystander.trips))
    check(not errors, "16 clients reset while the server was writing their echo", repr(errors[:3]))
    check(all(r[2] for r in results if not isinstance(r, Exception)),
          "the server was blocked writing each echo (the client's sending stalled)")
    check(all(r[0] for r in results if not isinstance(r, Exception)),
          "the part of each echo read before the reset was right")
    check(bystander_ok and bystander.trips > 0,
          "a bystander's echoes came back whole while the server was stuck writing to them",
          repr(bystander.bad))
    finish(port, pid, base)


def halfclose_one(port, size, seed):
    with connect(port) as s:
        data = pattern(size, seed)
        errors = []

        def sender():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=sender)
        t.start()
        got = recv_exactly(s, len(data))
        t.join()
        if errors:
            raise errors[0]
        eof = s.recv(1) == b""
        return got == data, eof


def scenario_halfclose(port, pid, args):
    base = baseline(port, pid)
    sizes = [0, 1, 100, 16384, 16385, 65536, 1 << 20, 4 << 20, 9 << 20]
    results = run_threads(halfclose_one, [(port, n, 2000 + i) for i, n in enumerate(sizes)])
    errors = [r for r in results if isinstance(r, Exception)]
    check(not errors, "9 clients (0 B to 9 MiB) sent and shut down their writing side", repr(errors[:3]))
    ok = [r for r in results if not isinstance(r, Exception)]
    check(len(ok) == len(sizes) and all(r[0] for r in ok), "every byte came back after shutdown(SHUT_WR)")
    check(len(ok) == len(sizes) and all(r[1] for r in ok), "then EOF")
    finish(port, pid, base)


def scenario_slowloris(port, pid, args):
    base = baseline(port, pid)
    slow_clients, seconds, trips_between = 10, 5, 40
    socks = [connect(port) for _ in range(slow_clients)]
    latencies, slow_latencies = [], []
    slow_ok = fast_ok = True
    with connect(port) as fast:
        for k in range(seconds):
            # Every slow client is mid-message (its server thread waits in read) while the
            # normal client makes its round trips: on a server that a waiting read held up,
            # they would never come back.
            for i in range(trips_between):
                data = pattern(64, 3000 + (k * trips_between + i) % 100)
                t0 = time.monotonic()
                fast_ok = fast_ok and echo(fast, data) == data
                latencies.append(time.monotonic() - t0)
            for j, s in enumerate(socks):
                b = bytes([65 + (j + k) % 26])
                t0 = time.monotonic()
                s.sendall(b)
                slow_ok = slow_ok and recv_exactly(s, 1) == b
                slow_latencies.append(time.monotonic() - t0)
            time.sleep(1)
    for s in socks:
        s.close()
    latencies.sort()
    n = len(latencies)
    measure("slowloris: fast client %d round trips, median %.3f ms, p99 %.3f ms, max %.3f ms; "
            "slow bytes echoed in at most %.3f ms" % (n, latencies[n // 2] * 1e3,
                                                     latencies[min(n - 1, n * 99 // 100)] * 1e3,
                                                     latencies[-1] * 1e3, max(slow_latencies) * 1e3))
    check(slow_ok, "10 slow clients (1 byte a second for 5 s) had each byte echoed")
    check(fast_ok, "a normal client's %d round trips came back whole while every slow client "
          "was mid-message" % n)
    finish(port, pid, base)


def scenario_vanish(port, pid, args):
    base = baseline(port, pid)
    socks = [connect(port) for _ in range(200)]
    time.sleep(0.3)
    for i, s in enumerate(socks):
        if i % 2:
            linger_reset(s)
        else:
            s.close()
    check(True, "200 clients connected and left without sending (half of them with a reset)")
    finish(port, pid, base)


def scenario_cycles(port, pid, args):
    base = baseline(port, pid)
    n, errors = args.cycles, []
    t0 = time.monotonic()
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S)
            s.close()
        except OSError as e:
            errors.append(e)
            if len(errors) > 10:
                break
        if i % 1000 == 999:  # the server must stay responsive all along
            if not fresh_client_ok(port, 1000, i):
                errors.append("round trip after %d cycles failed" % (i + 1))
    measure("cycles: %d connect/close cycles in %.1f s" % (n, time.monotonic() - t0))
    check(not errors, "%d connect/close cycles, with a round trip every 1000" % n, repr(errors[:3]))
    queued = wait_accept_queue(port)
    check(queued == 0, "the server accepted every one of them (its accept queue drained)", "%d left" % queued)
    finish(port, pid, base)


def strace_emfile(pid):
    """Traces the server's accept calls until two have failed with EMFILE (HANG_GUARD_S at
    most); returns (failures seen, seconds traced), or None without strace or ptrace. Every
    thread is traced (-f): under coop the accepting greenlet runs on any hub's thread."""
    if shutil.which("strace") is None:
        return None
    log = "/tmp/fault_client.%d.strace" % os.getpid()
    try:
        t0 = time.monotonic()
        p = subprocess.Popen(["strace", "-f", "-p", str(pid), "-e", "trace=accept,accept4",
                              "-e", "status=failed", "-o", log], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        failed = 0
        while failed < 2 and p.poll() is None and time.monotonic() - t0 < HANG_GUARD_S:
            time.sleep(0.1)
            if os.path.exists(log):
                with open(log) as f:
                    failed = f.read().count("EMFILE")
        if p.poll() is not None:  # could not attach (no ptrace here): no count
            measure("strace -p %d: %s" % (pid, p.stderr.read().decode(errors="replace").strip()))
            return None
        p.send_signal(signal.SIGINT)
        p.wait(timeout=HANG_GUARD_S)
        traced = time.monotonic() - t0
        with open(log) as f:
            return f.read().count("EMFILE"), traced
    finally:
        if os.path.exists(log):
            os.unlink(log)


def scenario_emfile(port, pid, args):
    base = baseline(port, pid)
    limit = nofile_limit(pid)
    # Descriptors inherited with numbers above the limit count as open but leave no room.
    base_below = fd_count(pid, limit)
    # As many as its table holds, then at most half as many more: once the served ones leave,
    # every waiting one finds a descriptor, however many the server holds at rest, with some
    # left for a runtime's own.
    room = limit - base_below
    extra = min(40, room // 2)
    socks = []
    for _ in range(room + extra):
        socks.append(connect(port))
    full = wait_fds(pid, limit, below=limit)
    # A runtime may open descriptors of its own meanwhile (coop's spare thread, started when a
    # hub's thread stands still in a call, opens two epoll sets and an eventfd): the server
    # accepted those that left its accept queue (until two looks agree: a descriptor held
    # for a moment, as a look at /proc, may let one more in).
    accepted = settled(lambda: len(socks) - accept_queue(port))
    measure("emfile: RLIMIT_NOFILE %d, %d fds at rest (%d below the limit), %d connections made, "
            "server fds below the limit now %d, %d connections accepted"
            % (limit, base, base_below, len(socks), full, accepted))
    check(full == limit, "the server accepted connections until its descriptor table was full",
          "%d of %d" % (full, limit))
    # The first ones were accepted (the backlog is first in, first out): each is served.
    served = 0
    for i, s in enumerate(socks[:accepted]):
        try:
            data = pattern(1000, 5000 + i)
            if echo(s, data) == data:
                served += 1
        except OSError as e:
            measure("emfile: connection %d: %r" % (i, e))
    check(served == accepted, "every connection it accepted is served while it is out of descriptors",
          "%d of %d" % (served, accepted))
    # The others wait in the backlog: nothing comes back.
    waiting = socks[accepted:]
    for s in waiting:
        s.sendall(b"x")
    readable, _, _ = select.select(waiting, [], [], 1.0)
    check(not readable, "the connections beyond the limit wait in the backlog", "%d answered" % len(readable))
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(2.0)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    busy = (cpu1 - cpu0) / (t1 - t0)
    measure("emfile: server CPU while saturated: %.1f%% over %.1f s" % (busy * 100, t1 - t0))
    check(busy < 0.25, "no busy loop while saturated (server CPU < 25%)", "%.1f%%" % (busy * 100))
    traced = strace_emfile(pid)
    if traced is not None:
        failed, seconds = traced
        # At least two: it is retried. At most 200 a second while traced: after a pause (the
        # server waits 10 ms), which a slower machine can only make rarer.
        measure("emfile: %d accept calls failed with EMFILE in %.1f s (the server retries every 10 ms)"
                % (failed, seconds))
        check(2 <= failed <= 200 * seconds, "accept keeps failing with EMFILE and is retried after a pause",
              "%d in %.1f s" % (failed, seconds))
    # Recovery: the served clients leave, and the waiting ones are accepted and served.
    for s in socks[:accepted]:
        s.close()
    answered = 0
    for s in waiting:
        try:
            s.settimeout(HANG_GUARD_S)
            if recv_exactly(s, 1) == b"x" and echo(s, b"more") == b"more":
                answered += 1
        except OSError as e:
            measure("emfile: waiting connection: %r" % e)
    check(answered == len(waiting), "once the served clients left, the waiting ones were accepted and served",
          "%d of %d" % (answered, len(waiting)))
    for s in waiting:
        s.close()
    finish(port, pid, base)


def finish(port, pid, base):
    """After a scenario: a new client is served and the descriptors return to the baseline."""
    check(fresh_client_ok(port), "then a new client's 1 MiB echo came back whole")
    n = wait_fds(pid, base)
    measure("descriptors: %d at rest before, %d after" % (base, n))
    check(n == base, "the server's descriptor count returned to what it was", "%d, was %d" % (n, base))


SCENARIOS = {
    "reset": scenario_reset,
    "halfclose": scenario_halfclose,
    "slowloris": scenario_slowloris,
    "vanish": scenario_vanish,
    "cycles": scenario_cycles,
    "emfile": scenario_emfile,
}


def main():
    parser = argparse.ArgumentParser(description="misbehaving clients of an echo server")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--cycles", type=int, default=10000)
    args = parser.parse_args()
    try:
        SCENARIOS[args.scenario](args.port, args.pid, args)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        check(False, "%s ran to its end" % args.scenario, repr(e))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
