/*
 * Helpers shared by the sample programs (tests/samples) and the benchmarks (tests/bench).
 *
 * Every program is built from its one .c file alone, so everything here is static inline.
 * Include this file first, after defining _GNU_SOURCE. It compiles as C++ too (idle_tls.cc):
 * no designated initializers of C's only kind. Nothing here knows about coop: these
 * are the ordinary habits of an ordinary Linux program.
 */
#ifndef COOP_SAMPLES_COMMON_H
#define COOP_SAMPLES_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Prints "PROGRAM: message" on stderr and exits with status 2 (1 means "a check failed"). */
__attribute__((noreturn, format(printf, 1, 2))) static inline void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

__attribute__((noreturn)) static inline void die_errno(const char *what)
{
    die("%s: %s", what, strerror(errno));
}

/* Monotonic time in nanoseconds: immune to clock changes, good for intervals. */
static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Parses a decimal integer in [min, max] or dies naming the argument. */
static inline long parse_long(const char *s, long min, long max, const char *what)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        die("%s: '%s' is not a number from %ld to %ld", what, s, min, max);
    return v;
}

/* Descriptor pairs for checks; failing to make one is not what a check tests, so it is fatal. */
static inline void make_socketpair(int sv[2], int type_flags)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | type_flags, 0, sv) != 0)
        die_errno("socketpair");
}

static inline void make_pipe(int p[2])
{
    if (pipe(p) != 0)
        die_errno("pipe");
}

static inline void close_pair(const int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* Raises a soft limit to the hard one: many connections need many descriptors (the soft
 * RLIMIT_NOFILE is often 1024), and many threads count against RLIMIT_NPROC. */
static inline void raise_limit(int resource)
{
    struct rlimit rl;

    if (getrlimit(resource, &rl) != 0)
        die_errno("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(resource, &rl) != 0)
        die_errno("setrlimit");
}

/* A server is stopped by SIGTERM or SIGINT; that is a normal end, so the status is 0. */
static inline void exit_zero_handler(int sig)
{
    (void)sig;
    _exit(0);
}

static inline void exit_zero_on_term(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_zero_handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        die_errno("sigaction");
}

/* Command line of the echo servers: [-p PORT] [-b BACKLOG] [-t THREADS] [-z MS].
 * -t: echo_epoll's event loops, each on its own thread and SO_REUSEPORT listener;
 * -z: echo_threads' extra thread that sleeps MS ms at a time in a raw nanosleep system call
 * (a call no preloaded library can make cooperative), for the handoff benchmark. */
struct server_options {
    int port;    /* 0: an ephemeral port, printed once listening */
    int backlog;
    int threads;
    int raw_sleep_ms;
};

#define SERVER_USAGE "usage: %s [-p PORT] [-b BACKLOG] [-t THREADS] [-z MS]"

static inline struct server_options parse_server_options(int argc, char **argv)
{
    struct server_options o = { .port = 0, .backlog = SOMAXCONN, .threads = 1, .raw_sleep_ms = 0 };
    int c;

    while ((c = getopt(argc, argv, "p:b:t:z:")) != -1) {
        switch (c) {
        case 'p': o.port = (int)parse_long(optarg, 0, 65535, "-p"); break;
        case 'b': o.backlog = (int)parse_long(optarg, 1, INT_MAX, "-b"); break;
        case 't': o.threads = (int)parse_long(optarg, 1, 1024, "-t"); break;
        case 'z': o.raw_sleep_ms = (int)parse_long(optarg, 1, 60000, "-z"); break;
        default: die(SERVER_USAGE, program_invocation_short_name);
        }
    }
    if (optind != argc)
        die(SERVER_USAGE, program_invocation_short_name);
    return o;
}

/* A listening socket on 127.0.0.1, port o->port (0: an ephemeral one); with several event
 * loops (-t) each has its own, all on one port (SO_REUSEPORT). */
static inline int listen_loopback_quiet(const struct server_options *o, int type_flags)
{
    struct sockaddr_in addr;
    int one = 1;
    int fd;

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
    if (fd < 0)
        die_errno("socket");
    /* A restarted server must not wait for the old one's TIME_WAIT connections. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die_errno("setsockopt SO_REUSEADDR");
    if (o->threads > 1 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        die_errno("setsockopt SO_REUSEPORT");
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        die_errno("bind");
    if (listen(fd, o->backlog) != 0)
        die_errno("listen");
    return fd;
}

static inline int bound_port(int fd)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        die_errno("getsockname");
    return ntohs(addr.sin_port);
}

/*
 * Listens on 127.0.0.1 and prints "listening on PORT" (flushed at once: the tests wait for
 * that line to learn an ephemeral port). type_flags go to socket(), e.g. SOCK_NONBLOCK.
 */
static inline int listen_loopback(const struct server_options *o, int type_flags)
{
    int fd = listen_loopback_quiet(o, type_flags);
    printf("listening on %d\n", bound_port(fd));
    fflush(stdout);
    return fd;
}

/* Errors of accept() that say "out of resources for now": wait a little and try again. */
static inline bool accept_error_is_transient(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static inline int compare_tids(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

    return (x > y) - (x < y);
}

/* How many distinct thread ids tids[0..n) holds (it sorts them): taken by gettid() in
 * threads that were all alive at once, on how many OS threads they ran. */
static inline long distinct_tids(pid_t *tids, long n)
{
    long distinct = 0;

    qsort(tids, (size_t)n, sizeof *tids, compare_tids);
    for (long i = 0; i < n; i++)
        distinct += i == 0 || tids[i] != tids[i - 1];
    return distinct;
}

/* Resident set size in KiB, from /proc/self/statm (its second field, in pages). */
static inline long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident;

    if (f == NULL)
        die_errno("/proc/self/statm");
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("/proc/self/statm: unexpected contents");
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

#endif
