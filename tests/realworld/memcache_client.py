#!/usr/bin/env python3
"""A memcached client for the realworld tests: raw sockets, the text protocol.

    memcache_client.py PORT CONNS KEYS [TIMEOUT_S]

CONNS threads, one connection each, started together behind a barrier; connection c owns the
keys c, c + CONNS, c + 2 CONNS... below KEYS. Each stores its keys with `set` (values of 1 B
to 16 KiB, bytes derived from the key, flags the key number), reads each back with `get`,
then all of them with one multi-key `get`, and checks every value and flag. Prints one line
"conns=N keys=N sets=N gets=N verified=N errors=N" and up to 10 lines "error: ...", and
exits 0 only when every value came back as stored.
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
    size = 1 + (k * 7919) % 16384
    unit = f"<{k}:{size}>".encode()
    return (unit * (size // len(unit) + 1))[:size]


class Conn:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def values(self):
        """The VALUE blocks of a get's answer, up to END: {key: (flags, data)}."""
        got = {}
        while True:
            line = self.line()
            if line == b"END":
                return got
            parts = line.split()
            if parts[0] != b"VALUE" or len(parts) != 4:
                raise ValueError(f"unexpected line {line[:80]!r}")
            data = self.exactly(int(parts[3]) + 2)
            if data[-2:] != b"\r\n":
                raise ValueError("value not followed by CRLF")
            got[parts[1].decode()] = (int(parts[2]), data[:-2])


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
            data = value(k)
            conn.sock.sendall(b"set key:%d %d 0 %d\r\n%s\r\n" % (k, k, len(data), data))
            answer = conn.line()
            if answer != b"STORED":
                problem(f"set key:{k}: {answer[:80]!r}")
            add("sets")
        for k in mine:
            conn.sock.sendall(b"get key:%d\r\n" % k)
            got = conn.values()
            add("gets")
            if got.get(f"key:{k}") == (k, value(k)):
                add("verified")
            else:
                problem(f"get key:{k}: wrong value or flags")
        if mine:
            conn.sock.sendall(b"get " + b" ".join(b"key:%d" % k for k in mine) + b"\r\n")
            got = conn.values()
            add("gets", len(mine))
            for k in mine:
                if got.get(f"key:{k}") == (k, value(k)):
                    add("verified")
                else:
                    problem(f"multi-get key:{k}: wrong value or flags")
        conn.sock.close()
    except Exception as e:
        problem(f"conn {c}: {type(e).__name__}: {e}")


threads = [threading.Thread(target=client, args=(c,)) for c in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"conns={conns} keys={keys} " + " ".join(f"{k}={v}" for k, v in totals.items()))
for p in problems:
    print("error:", p)
sys.exit(0 if totals["verified"] == 2 * keys and totals["errors"] == 0 else 1)
