#!/usr/bin/env python3
"""A threaded HTTP client for the realworld tests.

    http_client.py PORT DIR CLIENTS ROUNDS [TIMEOUT_S] [STAGGER_MS]

CLIENTS threads each open one connection to http://127.0.0.1:PORT/ (thread i STAGGER_MS * i
milliseconds after the first, default 5: a server with a listen backlog of 5, as Python's
http.server has, would otherwise overflow its accept queue and leave clients in the kernel's
1, 3, 7 s retransmission backoff) and send ROUNDS GET requests on it (HTTP/1.1 keep-alive;
http.client reconnects by itself when the server closes), for the files of DIR in turn,
checking each body's SHA-256 against the file of the same name in DIR. After its first
response each client waits for all the others (a barrier): then every connection has been
accepted and is open at the same time, so a thread-per-connection server has CLIENTS threads.

With HTTP_CLIENT_ORIGIN set (http://HOST:PORT), the requests name their files by absolute URI
under that origin, as a client asks a forward proxy listening on PORT. With HTTP_CLIENT_TLS=1
the connections speak TLS (the server's certificate is not checked).

Prints one line "requests=N ok=N bad=N errors=N bytes=N", then up to 10 lines "error: ..." for
what went wrong, and exits 0 only when every request returned the right body.
"""
import hashlib
import http.client
import os
import ssl
import sys
import threading
import time

port, root, clients, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
stagger = float(sys.argv[6]) / 1000 if len(sys.argv) > 6 else 0.005
origin = os.environ.get("HTTP_CLIENT_ORIGIN", "")
tls = None
if os.environ.get("HTTP_CLIENT_TLS") == "1":
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
names = sorted(os.listdir(root))
digests = {}
for name in names:
    with open(os.path.join(root, name), "rb") as f:
        digests[name] = hashlib.sha256(f.read()).hexdigest()

lock = threading.Lock()
totals = {"requests": 0, "ok": 0, "bad": 0, "errors": 0, "bytes": 0}
problems = []
barrier = threading.Barrier(clients)


def count(key, size=0, problem=None):
    with lock:
        totals["requests"] += 1
        totals[key] += 1
        totals["bytes"] += size
        if problem and len(problems) < 10:
            problems.append(problem)


def client(i, start):
    time.sleep(max(0.0, start + i * stagger - time.monotonic()))
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    try:
        conn.connect()
    except Exception as e:
        with lock:
            if len(problems) < 10:
                problems.append(f"connect: {type(e).__name__}: {e}")
    for r in range(rounds):
        if r == 1:  # every client has been served once: all are connected and accepted
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                pass
        name = names[(i + r) % len(names)]
        try:
            conn.request("GET", origin + "/" + name)
            resp = conn.getresponse()
            body = resp.read()
        except Exception as e:  # reported and counted: the test fails on any
            conn.close()
            count("errors", problem=f"{name}: {type(e).__name__}: {e}")
            continue
        if resp.status == 200 and hashlib.sha256(body).hexdigest() == digests[name]:
            count("ok", len(body))
        else:
            count("bad", len(body), f"{name}: status {resp.status}, {len(body)} bytes, wrong checksum")
    conn.close()


start = time.monotonic()
threads = [threading.Thread(target=client, args=(i, start)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(" ".join(f"{k}={v}" for k, v in totals.items()))
for p in problems:
    print("error:", p)
sys.exit(0 if totals["ok"] == clients * rounds else 1)
