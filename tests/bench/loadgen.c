/*
 * loadgen: closed-loop load generator for the echo servers.
 *
 *   loadgen -p PORT -c CONNS -s SIZE (-d SECONDS | -n COUNT) [-m MAXSIZE] [-w SECONDS] [--verify]
 *
 * Opens CONNS connections to 127.0.0.1:PORT; each sends a message, waits for its whole echo,
 * and sends the next. -d runs for SECONDS and measures; -n has each connection make COUNT
 * round trips and close (SECONDS, default 60, is then a time limit). Message sizes are SIZE,
 * or with -m spread evenly from SIZE (first connection) to MAXSIZE (last). --verify compares
 * every echoed byte; each message has its own content, so an echo sent to the wrong
 * connection, or a stale one, is caught too.
 *
 * -w SECONDS (with -d) warms up first: the connections run for SECONDS, and on until every one
 * has had an echo (at most WARMUP_LIMIT_S), before the counters start. A server that accepts
 * thousands of connections, or starts a thread for each, is then measured at work, not while
 * it is still starting up; the line then also says how long that took (warmup_s) and how many
 * connections had no echo at all in the measured time (starved).
 *
 * Prints one line:
 *   conns=N size=S requests=R seconds=T rps=X p50_us=A p99_us=B p999_us=C errors=E verified=V bytes=B
 * [warmup_s=W starved=N]
 * (verified: echoes compared byte for byte; bytes: echoed bytes received) and exits 1 when
 * errors is not 0. Latency is from the start of sending a message to the end of its echo.
 *
 * One thread, non-blocking sockets, edge-triggered epoll: the client must not be the
 * bottleneck it measures, nor need coop to run.
 */
#define _GNU_SOURCE
#include "../samples/common.h"

#include <getopt.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

enum {
    MAX_EVENTS = 1024,
    /* Connections opened but not yet established: ramps up without a SYN flood. */
    MAX_CONNECTING = 128,
    CONNECT_TIMEOUT_MS = 30000,
    DEFAULT_COUNT_LIMIT_S = 60,
    /* A warm-up ends when every connection has had an echo, or after this long anyway. */
    WARMUP_LIMIT_S = 10,
    /* Messages start at pseudo-random offsets into one pattern: this many different ones. */
    PATTERN_OFFSETS = 64 * 1024,
    SCRATCH_SIZE = 256 * 1024,
    /* Errors beyond this many are counted but not described. */
    MAX_REPORTED_ERRORS = 10,
};

struct options {
    int port;
    long conns;
    size_t size, maxsize;
    double seconds;
    double warmup;  /* seconds of warm-up before a timed run, 0 for none */
    long count; /* round trips per connection, 0 for a timed run */
    bool verify;
};

enum conn_state { CONNECTING, CONNECTED, RUNNING, CLOSED };

struct conn {
    int fd;
    uint32_t id;
    enum conn_state state;
    size_t size;                    /* of each message of this connection */
    uint64_t seq;                   /* number of the message in flight */
    const unsigned char *message;   /* its content, inside the pattern */
    size_t sent, received;
    uint64_t started_ns;
    long remaining;                 /* round trips still to make in -n mode */
    uint64_t echoes;                /* round trips made since the counters were last reset */
};

/*
 * Log-linear latency histogram in nanoseconds: exact below 16, then 16 buckets per power of
 * two, so a value is known within 1/16 (6%).
 */
enum { SUB_BITS = 4, SUB_BUCKETS = 1 << SUB_BITS, BUCKETS = (64 - SUB_BITS + 1) * SUB_BUCKETS };

struct histogram {
    uint64_t counts[BUCKETS];
    uint64_t total;
};

static struct options opt;
static struct conn *conns;
static int epfd;
static unsigned char *pattern;   /* maxsize + PATTERN_OFFSETS pseudo-random bytes */
static unsigned char scratch[SCRATCH_SIZE];
static long active;              /* connections not CLOSED */
static uint64_t requests, verified, echoed_bytes, errors;
static long echoed_conns;        /* connections with an echo since the counters were reset */
static struct histogram latency;

static unsigned bucket_of(uint64_t v)
{
    unsigned e;

    if (v < SUB_BUCKETS)
        return (unsigned)v;
    e = 63 - (unsigned)__builtin_clzll(v); /* v's highest bit, at least SUB_BITS */
    return (e - SUB_BITS + 1) * SUB_BUCKETS + (unsigned)((v >> (e - SUB_BITS)) & (SUB_BUCKETS - 1));
}

/* The middle of bucket b, the best guess of the values counted there. */
static double bucket_middle(unsigned b)
{
    unsigned e;
    double width;

    if (b < SUB_BUCKETS)
        return b;
    e = b / SUB_BUCKETS + SUB_BITS - 1; /* inverse of bucket_of */
    width = (double)(1ull << (e - SUB_BITS));
    return (double)(SUB_BUCKETS + b % SUB_BUCKETS) * width + width / 2;
}

static void histogram_add(struct histogram *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    h->total++;
}

/* The value below which a fraction q of the samples lie (0 when there are none). */
static double histogram_quantile(const struct histogram *h, double q)
{
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999); /* rounded up */
    uint64_t seen = 0;

    if (rank == 0)
        rank = 1;
    for (unsigned b = 0; b < BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank)
            return bucket_middle(b);
    }
    return 0;
}

/* splitmix64: a cheap, well-mixed hash for pattern offsets and pattern bytes. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void make_pattern(void)
{
    size_t len = opt.maxsize + PATTERN_OFFSETS;

    pattern = malloc(len);
    if (pattern == NULL)
        die("out of memory for a %zu-byte pattern", len);
    for (size_t i = 0; i < len; i++)
        pattern[i] = (unsigned char)mix(i);
}

static void report_error(const struct conn *c, const char *what)
{
    if (errors++ < MAX_REPORTED_ERRORS)
        fprintf(stderr, "loadgen: connection %u, message %llu: %s\n", c->id,
                (unsigned long long)c->seq, what);
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    c->state = CLOSED;
    active--;
}

static void conn_fail(struct conn *c, const char *what)
{
    report_error(c, what);
    conn_close(c);
}

static void conn_fail_errno(struct conn *c, const char *call)
{
    char what[128];

    snprintf(what, sizeof what, "%s: %s", call, strerror(errno));
    conn_fail(c, what);
}

/* Starts the connection's next message: fresh content, nothing sent or received yet. */
static void message_begin(struct conn *c)
{
    c->seq++;
    c->message = pattern + mix((uint64_t)c->id << 32 | c->seq) % PATTERN_OFFSETS;
    c->sent = c->received = 0;
    c->started_ns = now_ns();
}

static void message_end(struct conn *c)
{
    histogram_add(&latency, now_ns() - c->started_ns);
    requests++;
    echoed_conns += c->echoes++ == 0;
    verified += opt.verify;
    if (opt.count > 0 && --c->remaining == 0)
        conn_close(c);
    else
        message_begin(c);
}

/* Sends what the socket takes; true when bytes moved (or a signal interrupted: try again). */
static bool conn_send(struct conn *c)
{
    ssize_t n;

    if (c->state != RUNNING || c->sent == c->size)
        return false;
    n = send(c->fd, c->message + c->sent, c->size - c->sent, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EINTR)
            return true;
        if (errno != EAGAIN)
            conn_fail_errno(c, "send");
        return false;
    }
    c->sent += (size_t)n;
    return true;
}

/* Receives what has arrived and checks it; true when bytes moved (or EINTR). */
static bool conn_receive(struct conn *c)
{
    ssize_t n;

    if (c->state != RUNNING)
        return false;
    n = read(c->fd, scratch, sizeof scratch);
    if (n < 0) {
        if (errno == EINTR)
            return true;
        if (errno != EAGAIN)
            conn_fail_errno(c, "read");
        return false;
    }
    if (n == 0) {
        conn_fail(c, "the server closed the connection");
        return false;
    }
    if ((size_t)n > c->size - c->received) {
        conn_fail(c, "the echo is longer than the message");
        return false;
    }
    if (opt.verify && memcmp(scratch, c->message + c->received, (size_t)n) != 0) {
        conn_fail(c, "the echo differs from the message");
        return false;
    }
    c->received += (size_t)n;
    echoed_bytes += (uint64_t)n;
    if (c->received == c->size)
        message_end(c);
    return true;
}

/*
 * Drives a connection until it would block both ways. With edge-triggered epoll nothing is
 * reported again before that, and a finished echo starts the next message here, at once.
 */
static void conn_progress(struct conn *c)
{
    while (conn_send(c) | conn_receive(c)) /* both, every round: not || */
        ;
}

static void conn_connect(struct conn *c, const struct sockaddr_in *addr)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c };
    int one = 1;

    c->state = CONNECTING;
    active++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die_errno("socket");
    /* Each message goes out whole at once, not held back waiting for the last ACK (Nagle). */
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die_errno("setsockopt TCP_NODELAY");
    if (connect(c->fd, (const struct sockaddr *)addr, sizeof *addr) != 0 && errno != EINPROGRESS) {
        conn_fail_errno(c, "connect");
        return;
    }
    /*
     * Registered once, for the connect and every message after it; after connect(), since a
     * socket that is not connecting yet polls as hung up. A connect that completed at once
     * is reported by the first epoll_wait all the same.
     */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die_errno("epoll_ctl");
}

/* The first event of a connecting socket says the connect is over; SO_ERROR says how. */
static void conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        errno = err;
        conn_fail_errno(c, "connect");
    } else {
        c->state = CONNECTED;
    }
}

static int wait_events(struct epoll_event *events, uint64_t deadline_ns)
{
    uint64_t now = now_ns();
    int timeout = now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout);

    if (n < 0 && errno != EINTR)
        die_errno("epoll_wait");
    return n < 0 ? 0 : n;
}

/* Opens every connection, at most MAX_CONNECTING at a time, before any message is sent. */
static void connect_all(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port) };
    struct epoll_event events[MAX_EVENTS];
    uint64_t deadline = now_ns() + CONNECT_TIMEOUT_MS * 1000000ull;
    long next = 0, connecting = 0;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (next < opt.conns || connecting > 0) {
        int n;

        for (; next < opt.conns && connecting < MAX_CONNECTING; next++) {
            conn_connect(&conns[next], &addr);
            connecting += conns[next].state == CONNECTING;
        }
        if (now_ns() >= deadline)
            break;
        n = wait_events(events, deadline);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;

            if (c->state == CONNECTING) {
                conn_connected(c);
                connecting--;
            }
        }
    }
    for (long i = 0; i < opt.conns; i++) {
        if (conns[i].state == CONNECTING)
            conn_fail(&conns[i], "connect timed out");
        else if (i >= next)
            report_error(&conns[i], "never opened: the others took too long to connect");
    }
}

/* Serves events until the deadline, or until every connection has had an echo if all_echoed. */
static void serve_until(uint64_t deadline, bool all_echoed)
{
    struct epoll_event events[MAX_EVENTS];

    while (active > 0 && now_ns() < deadline && !(all_echoed && echoed_conns >= active)) {
        int n = wait_events(events, deadline);

        for (int i = 0; i < n; i++)
            conn_progress(events[i].data.ptr);
    }
}

/* Forgets what was counted so far (messages in flight count when their echo ends). */
static void reset_counters(void)
{
    requests = verified = echoed_bytes = 0;
    memset(&latency, 0, sizeof latency);
    echoed_conns = 0;
    for (long i = 0; i < opt.conns; i++)
        conns[i].echoes = 0;
}

/*
 * Sends the first messages, warms up if asked, then serves events until the end; returns the
 * seconds it measured and sets *warmup_s to those of the warm-up.
 */
static double run(double *warmup_s)
{
    uint64_t start = now_ns();
    double limit_s = opt.seconds > 0 ? opt.seconds : DEFAULT_COUNT_LIMIT_S;

    for (long i = 0; i < opt.conns; i++) {
        if (conns[i].state == CONNECTED) {
            conns[i].state = RUNNING;
            message_begin(&conns[i]);
            conn_progress(&conns[i]);
        }
    }
    *warmup_s = 0;
    if (opt.warmup > 0) {
        serve_until(start + (uint64_t)(opt.warmup * 1e9), false);
        serve_until(start + WARMUP_LIMIT_S * 1000000000ull, true);
        reset_counters();
        *warmup_s = (double)(now_ns() - start) / 1e9;
        start = now_ns();
    }
    serve_until(start + (uint64_t)(limit_s * 1e9), false);
    return (double)(now_ns() - start) / 1e9;
}

/* In -n mode every round trip must be made: a connection still open at the end has failed. */
static void fail_unfinished(void)
{
    for (long i = 0; i < opt.conns; i++)
        if (conns[i].state == RUNNING)
            conn_fail(&conns[i], "time limit reached before all round trips were made");
}

static void usage(void)
{
    die("usage: loadgen -p PORT -c CONNS -s SIZE (-d SECONDS | -n COUNT) [-m MAXSIZE] [-w SECONDS] "
        "[--verify]");
}

static void parse_options(int argc, char **argv)
{
    static const struct option longopts[] = { { "verify", no_argument, NULL, 'v' }, { 0 } };
    char *end;
    int c;

    while ((c = getopt_long(argc, argv, "p:c:s:d:m:n:w:", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': opt.port = (int)parse_long(optarg, 1, 65535, "-p"); break;
        case 'c': opt.conns = parse_long(optarg, 1, 1000000, "-c"); break;
        case 's': opt.size = (size_t)parse_long(optarg, 1, 1L << 30, "-s"); break;
        case 'm': opt.maxsize = (size_t)parse_long(optarg, 1, 1L << 30, "-m"); break;
        case 'n': opt.count = parse_long(optarg, 1, LONG_MAX, "-n"); break;
        case 'v': opt.verify = true; break;
        case 'd':
            opt.seconds = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(opt.seconds > 0 && opt.seconds < 1e6))
                die("-d: '%s' is not a number of seconds", optarg);
            break;
        case 'w':
            opt.warmup = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(opt.warmup >= 0 && opt.warmup < 1e6))
                die("-w: '%s' is not a number of seconds", optarg);
            break;
        default: usage();
        }
    }
    if (optind != argc || opt.port == 0 || opt.conns == 0 || opt.size == 0 ||
        (opt.seconds == 0 && opt.count == 0))
        usage();
    if (opt.warmup > 0 && opt.count > 0)
        die("-w goes with -d, not with -n");
    if (opt.maxsize == 0)
        opt.maxsize = opt.size;
    if (opt.maxsize < opt.size)
        die("-m %zu is smaller than -s %zu", opt.maxsize, opt.size);
}

/* Connection i's message size: SIZE to MAXSIZE in even steps over the connections. */
static size_t size_of(long i)
{
    if (opt.conns == 1)
        return opt.size;
    return opt.size + (opt.maxsize - opt.size) * (size_t)i / (size_t)(opt.conns - 1);
}

static void make_conns(void)
{
    struct rlimit rl;

    raise_limit(RLIMIT_NOFILE);
    getrlimit(RLIMIT_NOFILE, &rl);
    /* A few descriptors go to stdio and epoll. */
    if ((rlim_t)opt.conns + 16 > rl.rlim_cur)
        die("%ld connections need more descriptors than the limit of %llu", opt.conns,
            (unsigned long long)rl.rlim_cur);
    conns = calloc((size_t)opt.conns, sizeof *conns);
    if (conns == NULL)
        die("out of memory for %ld connections", opt.conns);
    for (long i = 0; i < opt.conns; i++) {
        conns[i].id = (uint32_t)i;
        conns[i].size = size_of(i);
        conns[i].remaining = opt.count;
        conns[i].fd = -1;
        conns[i].state = CLOSED;
    }
}

int main(int argc, char **argv)
{
    double seconds, warmup_s;

    parse_options(argc, argv);
    make_conns();
    make_pattern();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die_errno("epoll_create1");

    connect_all();
    seconds = run(&warmup_s);
    if (opt.count > 0)
        fail_unfinished();

    printf("conns=%ld size=%zu requests=%llu seconds=%.3f rps=%.0f p50_us=%.1f p99_us=%.1f "
           "p999_us=%.1f errors=%llu verified=%llu bytes=%llu",
           opt.conns, opt.size, (unsigned long long)requests, seconds,
           seconds > 0 ? (double)requests / seconds : 0.0,
           histogram_quantile(&latency, 0.50) / 1e3, histogram_quantile(&latency, 0.99) / 1e3,
           histogram_quantile(&latency, 0.999) / 1e3, (unsigned long long)errors,
           (unsigned long long)verified, (unsigned long long)echoed_bytes);
    if (opt.warmup > 0)
        printf(" warmup_s=%.3f starved=%ld", warmup_s, active - echoed_conns);
    printf("\n");
    return errors == 0 ? 0 : 1;
}
