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
from kv_load import Conn, add, conns, finish, keys, problem, run, totals, value


def value_of(k):
    return value(k, 16384)


def values(conn):
    """The VALUE blocks of a get's answer, up to END: {key: (flags, data)}."""
    got = {}
    while True:
        line = conn.line()
        if line == b"END":
            return got
        parts = line.split()
        if parts[0] != b"VALUE" or len(parts) != 4:
            raise ValueError(f"unexpected line {line[:80]!r}")
        data = conn.exactly(int(parts[3]) + 2)
        if data[-2:] != b"\r\n":
            raise ValueError("value not followed by CRLF")
        got[parts[1].decode()] = (int(parts[2]), data[:-2])


def check(got, k, what):
    if got.get(f"key:{k}") == (k, value_of(k)):
        add("verified")
    else:
        problem(f"{what} key:{k}: wrong value or flags")


def session(conn: Conn, mine):
    for k in mine:
        data = value_of(k)
        conn.sock.sendall(b"set key:%d %d 0 %d\r\n%s\r\n" % (k, k, len(data), data))
        answer = conn.line()
        if answer != b"STORED":
            problem(f"set key:{k}: {answer[:80]!r}")
        add("sets")
    for k in mine:
        conn.sock.sendall(b"get key:%d\r\n" % k)
        add("gets")
        check(values(conn), k, "get")
    if mine:
        conn.sock.sendall(b"get " + b" ".join(b"key:%d" % k for k in mine) + b"\r\n")
        got = values(conn)
        add("gets", len(mine))
        for k in mine:
            check(got, k, "multi-get")


run(session)
finish(f"conns={conns} keys={keys} " + " ".join(f"{k}={v}" for k, v in totals.items()),
       totals["verified"] == 2 * keys)
