#!/usr/bin/env python3
"""A client for perl_threads_server.pl: raw sockets, one line per request.

    line_client.py PORT CONNS LINES [TIMEOUT_S]

CONNS threads, one connection each, started together behind a barrier; connection c sends
the lines c, c + CONNS... below LINES (1 B to 4 KiB, derived from the line number) one at a
time, and checks each answer: "LENGTH REVERSED-LINE". When every connection has had its
answers (so the server has a thread for each), each asks "RUNNING", which must count CONNS
threads, and "THREAD", whose answer "THREAD TID lines N" must count its lines, with TIDs that
all differ (a thread per connection). When all have asked, it prints "holding CONNS
connections" and keeps them open until the server closes each (the end of the stream, no
more bytes). Then it prints one line "conns=N lines=N verified=N running=N threads=N closed=N
errors=N" (running: the connections told CONNS; threads: the distinct TIDs; closed: the
connections the server closed) and up to 10 lines "error: ...", and exits 0 only when every
answer was right and the server closed every connection.
"""
import re
import threading

from kv_load import Conn, add, conns, finish, keys as lines, problem, run, timeout, totals, value

totals.update(lines=0, running=0, closed=0)
all_answered = threading.Barrier(conns)
all_asked = threading.Barrier(conns, action=lambda: print(f"holding {conns} connections", flush=True))
tids = set()
tids_lock = threading.Lock()


def ask(conn, line):
    conn.sock.sendall(line + b"\n")
    return conn.line(b"\n")


def session(conn, mine):
    for n in mine:
        line = value(n, 4096)
        add("lines")
        answer = ask(conn, line)
        if answer == b"%d %s" % (len(line), line[::-1]):
            add("verified")
        else:
            problem(f"line {n}: answer {answer[:60]!r}")
    all_answered.wait(timeout)
    answer = ask(conn, b"RUNNING")
    if answer == b"RUNNING %d" % conns:
        add("running")
    else:
        problem(f"RUNNING with {conns} connections open: answer {answer!r}")
    answer = ask(conn, b"THREAD")
    m = re.fullmatch(rb"THREAD (\d+) lines (\d+)", answer)
    if m and int(m.group(2)) == len(mine):
        with tids_lock:
            tids.add(int(m.group(1)))
    else:
        problem(f"THREAD after {len(mine)} lines: answer {answer!r}")
    all_asked.wait(timeout)
    rest = conn.sock.recv(65536)  # until the server closes the connection
    if rest == b"" and conn.buf == b"":
        add("closed")
    else:
        problem(f"bytes where the end of the stream was due: {(conn.buf + rest)[:60]!r}")


run(session)
finish(f"conns={conns} lines={totals['lines']} verified={totals['verified']} "
       f"running={totals['running']} threads={len(tids)} closed={totals['closed']} "
       f"errors={totals['errors']}",
       totals["verified"] == lines and totals["running"] == conns and len(tids) == conns
       and totals["closed"] == conns)
