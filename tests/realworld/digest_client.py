#!/usr/bin/env python3
"""A client of the digest servers (digest_server.rb, DigestServer.java) for the realworld tests.

    digest_client.py PORT CONNS REQUESTS [TIMEOUT_S]

The protocol, one request after another on a connection: the client sends a line with a
length N and then N bytes; the server answers with a line holding the SHA-256 of those bytes
in hex and then the N bytes themselves (lines end with CRLF). The client closes the
connection after its last request; the server's thread for it then ends.

CONNS threads, one connection each, start together behind a barrier, so a
thread-per-connection server has CONNS threads at once; connection c sends the requests c,
c + CONNS... below REQUESTS, request k carrying 1 B to 192 KiB derived from k (kv_load's
value). Each answer's digest line and echoed bytes are checked exactly. Prints one line
"conns=N requests=N digests_ok=N echoes_ok=N bytes=N errors=N" and up to 10 lines
"error: ...", and exits 0 only when every answer was right.
"""
import hashlib

from kv_load import Conn, add, conns, finish, keys, problem, run, totals, value

MAX_SIZE = 192 * 1024
totals.update(requests=0, digests_ok=0, echoes_ok=0, bytes=0)


def session(conn: Conn, mine):
    for k in mine:
        body = value(k, MAX_SIZE)
        conn.sock.sendall(b"%d\r\n" % len(body) + body)
        digest = conn.line().decode(errors="replace")
        echo = conn.exactly(len(body))
        add("requests")
        add("bytes", len(body))
        if digest == hashlib.sha256(body).hexdigest():
            add("digests_ok")
        else:
            problem(f"request {k}: digest {digest[:80]!r} for {len(body)} bytes")
        if echo == body:
            add("echoes_ok")
        else:
            problem(f"request {k}: the {len(body)} bytes came back changed")


run(session)
counts = " ".join(f"{name}={totals[name]}" for name in ("requests", "digests_ok", "echoes_ok", "bytes", "errors"))
finish(f"conns={conns} {counts}", totals["echoes_ok"] == keys)
