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
from kv_load import Conn, add, conns, finish, keys, problem, run, totals, value


def value_of(k):
    return value(k, 8192)


def call(conn: Conn, *args):
    """Sends one command; returns its answer: bytes, an int, or None for a missing key."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    conn.sock.sendall(out)
    line = conn.line()
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else conn.exactly(n + 2)[:n]
    raise ValueError(f"unexpected answer {line[:80]!r}")


def session(conn, mine):
    for k in mine:
        answer = call(conn, "SET", f"key:{k}", value_of(k))
        if answer != b"OK":
            problem(f"SET key:{k}: {answer!r}")
        add("sets")
        call(conn, "INCR", "counter")
    for k in mine:
        got = call(conn, "GET", f"key:{k}")
        add("gets")
        if got == value_of(k):
            add("verified")
        else:
            problem(f"GET key:{k}: wrong value")


run(session)
counter = dbsize = None
try:
    conn = Conn()
    counter = int(call(conn, "GET", "counter") or 0)
    dbsize = call(conn, "DBSIZE")
except Exception as e:
    problem(f"final check: {type(e).__name__}: {e}")
finish(f"conns={conns} keys={keys} sets={totals['sets']} gets={totals['gets']} "
       f"verified={totals['verified']} counter={counter} dbsize={dbsize} errors={totals['errors']}",
       totals["verified"] == keys and counter == keys and dbsize == keys + 1)
