#!/usr/bin/python3
"""echo_gevent.py [-p PORT]: a gevent StreamServer echo server, one greenlet per connection.

The Python peer of tests/samples/echo_threads.c in the benchmarks (tests/bench/run.sh runs it
with Debian's /usr/bin/python3 and python3-gevent). It listens on 127.0.0.1 (port 0 picks a
free one), prints "listening on PORT", and echoes what each connection sends, reading at most
16 KiB at a time, until the client closes. SIGTERM or SIGINT end it with status 0.
"""
import argparse
import resource
import signal
import sys

import gevent
from gevent.server import StreamServer

BUFFER_SIZE = 16 * 1024


def serve(sock, _address):
    buf = bytearray(BUFFER_SIZE)
    view = memoryview(buf)
    recv_into, sendall = sock.recv_into, sock.sendall
    try:
        while True:
            n = recv_into(buf)
            if not n:
                break
            sendall(view[:n])
    except OSError:
        pass  # a reset client costs its greenlet, not the server
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser(description="gevent echo server")
    parser.add_argument("-p", "--port", type=int, default=0)
    parser.add_argument("-b", "--backlog", type=int, default=4096)
    args = parser.parse_args()

    # Many connections need many descriptors: the soft limit goes up to the hard one.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    server = StreamServer(("127.0.0.1", args.port), serve, backlog=args.backlog)
    server.start()
    print("listening on %d" % server.server_port, flush=True)
    gevent.signal_handler(signal.SIGTERM, lambda: sys.exit(0))
    gevent.signal_handler(signal.SIGINT, lambda: sys.exit(0))
    try:
        server.serve_forever()
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
