"""What memcache_client.py, redis_client.py, digest_client.py and line_client.py share: their
command line (PORT CONNS KEYS [TIMEOUT_S]), values derived from the key, a buffered
connection, the threads (one connection each, started together behind a barrier; connection c
owns the keys c, c + CONNS... below KEYS) and the tally of what they did and what went wrong."""
import socket
import sys
import threading

port, conns, keys = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
_lock = threading.Lock()
totals = {"sets": 0, "gets": 0, "verified": 0, "errors": 0}
problems = []


def value(k, max_size):
    """1 to max_size bytes, derived from the key number k."""
    size = 1 + (k * 7919) % max_size
    unit = f"<{k}:{size}>".encode()
    return (unit * (size // len(unit) + 1))[:size]


def problem(text):
    with _lock:
        totals["errors"] += 1
        if len(problems) < 10:
            problems.append(text)


def add(key, n=1):
    with _lock:
        totals[key] += n


class Conn:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def line(self, end=b"\r\n"):
        """The next line, without its end (CRLF, or the end given)."""
        while end not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(end, 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def run(session):
    """Runs session(conn, my_keys) on every connection at once; failures become problems."""
    barrier = threading.Barrier(conns)

    def client(c):
        try:
            conn = Conn()
        except OSError as e:
            problem(f"conn {c}: connect: {e}")
            conn = None
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError:
            pass
        if conn is None:
            return
        try:
            session(conn, list(range(c, keys, conns)))
            conn.sock.close()
        except Exception as e:
            problem(f"conn {c}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def finish(summary, ok):
    """Prints the summary line and the problems; exits 0 when ok and nothing went wrong."""
    print(summary)
    for p in problems:
        print("error:", p)
    sys.exit(0 if ok and totals["errors"] == 0 else 1)
