#!/usr/bin/env python3
"""`python3 -m http.server -p HTTP/1.1 -b 127.0.0.1 -d DIR PORT`, with a listen backlog of 128.

    http_server_backlog.py PORT DIR

The server of `python3 -m http.server` (ThreadingHTTPServer) listens with socketserver's
default backlog of 5. A client opening 50 connections at once overflows that accept queue, and
the kernel's SYN and data retransmission backoff then stalls some transfers for seconds, at
times for over a minute (measured with curl --parallel-max 50: 2.7 to 89 s, natively and under
coop alike; 0.5 s with this backlog). A test that times the client must not time that: this is
the same server with a backlog a client's burst fits in. Exits 0 on SIGINT or SIGTERM.
"""
import functools
import http.server
import signal
import sys


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128


port, root = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
http.server.SimpleHTTPRequestHandler.protocol_version = "HTTP/1.1"
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
with Server(("127.0.0.1", port), handler) as server:
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
