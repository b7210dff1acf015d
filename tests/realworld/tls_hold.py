#!/usr/bin/env python3
"""Holds TLS connections open through a TLS-terminating proxy, for the realworld tests.

    tls_hold.py PORT CONNECTIONS PATH [TIMEOUT_S]

Opens CONNECTIONS connections to 127.0.0.1:PORT with TLS (the proxy's certificate is not
checked), sends one HTTP/1.1 keep-alive GET of PATH on each and reads its response, then
prints "held N" (N: the connections that got a 200) and waits until the server has closed
every connection (end of file, or a reset). Prints "closed N" and exits 0 once all are
closed; exits 1 when TIMEOUT_S (default 30) runs out first.
"""
import selectors
import socket
import ssl
import sys
import time

port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE


def response(conn):
    """Reads one response with a Content-Length body; returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return int(lines[0].split()[1])


held = []
for _ in range(count):
    conn = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout))
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    if response(conn) == 200:
        held.append(conn)
print("held", len(held), flush=True)

selector = selectors.DefaultSelector()
for conn in held:
    conn.setblocking(False)
    selector.register(conn, selectors.EVENT_READ)
open_ones, deadline = len(held), time.monotonic() + timeout
while open_ones and time.monotonic() < deadline:
    for key, _ in selector.select(1.0):
        try:
            if key.fileobj.recv(65536):
                continue
        except ssl.SSLWantReadError:
            continue
        except OSError:
            pass
        selector.unregister(key.fileobj)
        open_ones -= 1
print("closed", len(held) - open_ones)
sys.exit(0 if open_ones == 0 else 1)
