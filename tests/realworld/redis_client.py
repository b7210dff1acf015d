#!/usr/bin/env python3
"""A Redis client for the realworld tests: raw sockets, RESP.

    redis_client.py PORT CONNS KEYS [TIMEOUT_S]

CONNS threads, one connection each, started together behind a barrier; connection c owns the
keys c, c + CONNS... below KEYS. Each SETs its keys (values of 1 B to 8 KiB derived from the
key), INCRs the shared key "counter" once per key, then GETs its keys back and checks them.
At the end one more connection checks that "counter" is KEYS and DBSIZE is KEYS + 1. Prints
one line "conns=N keys=N sets=N gets=N verified=N counter=N dbsize=N errors=N" and up to 10
lines "error: ...", and exits 0 only when everything came back as stored.
"""
import socket
import sys
import threading

port, conns, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
lock = threading.Lock()
totals = {"sets": 0, "gets": 0, "verified": 0, "errors": 0}
problems = []
barrier = threading.Barrier(conns)


def value(k):
    size = 1 + (k * 7919) % 8192
    unit = f"[{k}/{size}]".encode()
    return (unit * (size // len(unit) + 1))[:size]


class Conn:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        raise ValueError(f"unexpected answer {line[:80]!r}")


def problem(text):
    with lock:
        totals["errors"] += 1
        if len(problems) < 10:
            problems.append(text)


def add(key, n=1):
    with lock:
        totals[key] += n


def client(c):
    mine = list(range(c, keys, conns))
    try:
        conn = Conn()
    except OSError as e:
        problem(f"conn {c}: connect: {e}")
        mine = []
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        pass
    try:
        for k in mine:
            answer = conn.call("SET", f"key:{k}", value(k))
            if answer != b"OK":
                problem(f"SET key:{k}: {answer!r}")
            add("sets")
            conn.call("INCR", "counter")
        for k in mine:
            got = conn.call("GET", f"key:{k}")
            add("gets")
            if got == value(k):
                add("verified")
            else:
                problem(f"GET key:{k}: wrong value")
        if mine:
            conn.sock.close()
    except Exception as e:
        problem(f"conn {c}: {type(e).__name__}: {e}")


threads = [threading.Thread(target=client, args=(c,)) for c in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
counter = dbsize = None
try:
    conn = Conn()
    counter = int(conn.call("GET", "counter") or 0)
    dbsize = conn.call("DBSIZE")
except Exception as e:
    problem(f"final check: {type(e).__name__}: {e}")
print(f"conns={conns} keys={keys} sets={totals['sets']} gets={totals['gets']} "
      f"verified={totals['verified']} counter={counter} dbsize={dbsize} errors={totals['errors']}")
for p in problems:
    print("error:", p)
ok = totals["verified"] == keys and counter == keys and dbsize == keys + 1 and totals["errors"] == 0
sys.exit(0 if ok else 1)
