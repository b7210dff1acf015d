/*
 * semantics: checks that blocking calls keep the kernel's semantics, one line per check:
 *
 *   ok NAME            the program saw what Linux does
 *   FAIL NAME: why     it did not
 *   skip NAME: why     the check cannot run here (stdin is a terminal)
 *
 * and exits 1 when any check failed. Run natively, it documents Linux; run under coop, the
 * output must be the same. Each check uses its own fresh descriptors, and helper threads play
 * the other side (a late writer, a signal sender) where a check needs one.
 *
 * Give it stdin from a pipe that is written late, and stdout to a pipe: it reads stdin to EOF
 * (a blocking read on an inherited description) and checks at the end that the O_NONBLOCK
 * state of fds 0 and 1 is what it was at the start. The test also checks that from outside,
 * since a description shared with other processes is where a wrong flag does harm.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/un.h>

enum {
    TIMEOUT_MS = 100,  /* of SO_RCVTIMEO, SO_SNDTIMEO, poll, select, epoll_wait */
    SLACK_MS = 10,     /* a 100 ms timeout may end at 90 ms: coarse timers round */
    DELAY_MS = 50,     /* how long a helper thread waits before it acts */
    GIVE_UP_MS = 60000, /* a hang guard: a wait that should have ended long before */
    SLEEP_NS = 20500000, /* 20.5 ms: a sleep rounded to whole milliseconds ends early */
    LARGE_WRITE_SIZE = 4 << 20,
    SLOW_READ_MIN = 4 * 1024,
    SLOW_READ_MAX = 64 * 1024,
    INTERRUPTIONS = 3,
    ERRNO_SET_BEFORE = EDOM, /* what errno holds before a call that must leave it so */
};

/* ---- Reporting (checks.h), with skips ---- */

static void report(const char *name, bool passed)
{
    if (skipped)
        printf("skip %s: %s\n", name, why);
    else if (passed)
        printf("ok %s\n", name);
    else
        printf("FAIL %s: %s\n", name, why);
    failures += !passed;
    skipped = false;
}

/* True when the call just made returned -1 with errno err. */
static bool expect_errno(long r, int err, const char *call)
{
    if (r == -1 && errno == err)
        return true;
    if (r == -1)
        return failf("%s failed with %s, expected %s", call, errname(errno), errname(err));
    return failf("%s returned %ld, expected -1 with %s", call, r, errname(err));
}

static bool expect_ok(int r, const char *call)
{
    return r == 0 || failf("%s failed with %s", call, errname(errno));
}

static double ms_since(uint64_t start_ns)
{
    return (double)(now_ns() - start_ns) / 1e6;
}

static bool took_between(double ms, double min_ms, double max_ms, const char *what)
{
    if (ms >= min_ms && ms <= max_ms)
        return true;
    return failf("%s took %.1f ms, expected %.0f to %.0f ms", what, ms, min_ms, max_ms);
}

/* A call with a TIMEOUT_MS socket timeout must end with EAGAIN when the timeout expires. */
static bool expect_timeout(long r, uint64_t start_ns, const char *call)
{
    int err = errno;
    double ms = ms_since(start_ns);

    errno = err;
    return expect_errno(r, EAGAIN, call) &&
           took_between(ms, TIMEOUT_MS - SLACK_MS, GIVE_UP_MS, call);
}

/* ---- Setting up: failures here are not the semantics under test, so they are fatal. ---- */

static pthread_t start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t thread;
    int err = pthread_create(&thread, NULL, fn, arg);

    if (err != 0)
        die("pthread_create: %s", strerror(err));
    return thread;
}

static void join_thread(pthread_t thread)
{
    int err = pthread_join(thread, NULL);

    if (err != 0)
        die("pthread_join: %s", strerror(err));
}

/* A TCP socket on 127.0.0.1 bound to a free port, which is stored in addr. */
static int bound_loopback_socket(struct sockaddr_in *addr)
{
    socklen_t len = sizeof *addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    *addr = (struct sockaddr_in){ .sin_family = AF_INET };
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        die_errno("socket");
    if (bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0)
        die_errno("bind");
    if (getsockname(fd, (struct sockaddr *)addr, &len) != 0)
        die_errno("getsockname");
    return fd;
}

/* Both ends of a connected TCP connection on loopback: sv[0] connected, sv[1] accepted. */
static void make_tcp_pair(int sv[2])
{
    struct sockaddr_in addr;
    int listener = bound_loopback_socket(&addr);

    if (listen(listener, 1) != 0)
        die_errno("listen");
    sv[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (sv[0] < 0)
        die_errno("socket");
    if (connect(sv[0], (struct sockaddr *)&addr, sizeof addr) != 0)
        die_errno("connect");
    sv[1] = accept(listener, NULL, NULL);
    if (sv[1] < 0)
        die_errno("accept");
    close(listener);
}

/* Closes fd so that the peer gets a RST instead of a FIN: linger on, with a zero timeout. */
static void reset_connection(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
        die_errno("setsockopt SO_LINGER");
    close(fd);
}

static void set_socket_timeout(int fd, int option)
{
    struct timeval tv = { .tv_sec = 0, .tv_usec = TIMEOUT_MS * 1000 };

    if (setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv) != 0)
        die_errno("setsockopt");
}

/* Fills fd's way to its peer until even one more byte would block. */
static void fill_socket(int fd)
{
    static const char chunk[4096];
    size_t size = sizeof chunk;

    while (size > 0) {
        if (send(fd, chunk, size, MSG_DONTWAIT) >= 0)
            continue;
        if (errno != EAGAIN)
            die_errno("send");
        size /= 2;
    }
}

/* ---- Helper threads ---- */

/* Thread body: after DELAY_MS, writes one byte to the descriptor it is given. */
static void *write_byte_later(void *fd)
{
    sleep_ms(DELAY_MS);
    if (write((int)(intptr_t)fd, "x", 1) != 1)
        die_errno("write");
    return NULL;
}

/* Thread body: after DELAY_MS, closes the descriptor it is given. */
static void *close_later(void *fd)
{
    sleep_ms(DELAY_MS);
    close((int)(intptr_t)fd);
    return NULL;
}

/* Thread body: after DELAY_MS, writes one byte to the descriptor it is given, and after
 * DELAY_MS more another. */
static void *write_two_bytes_later(void *fd)
{
    write_byte_later(fd);
    return write_byte_later(fd);
}

/* Thread body: after DELAY_MS, accepts one connection on the listener it is given. */
static void *accept_later(void *fd)
{
    sleep_ms(DELAY_MS);
    int c = accept((int)(intptr_t)fd, NULL, NULL);
    if (c < 0)
        die_errno("accept");
    close(c);
    return NULL;
}

/* A read() of one byte made by another thread, and how it ended. */
struct blocked_read {
    int fd;
    ssize_t result;
    int err;
    atomic_bool done;
};

static void *read_one_byte(void *arg)
{
    struct blocked_read *b = arg;
    char c;

    b->result = read(b->fd, &c, 1);
    b->err = errno;
    atomic_store(&b->done, true);
    return NULL;
}

static bool wait_until_done(atomic_bool *done, unsigned ms)
{
    for (unsigned waited = 0; !atomic_load(done) && waited < ms; waited += 10)
        sleep_ms(10);
    return atomic_load(done);
}

/* ---- Blocking and non-blocking descriptors ---- */

/* The test writes stdin late, so this read blocks on a description other processes share. */
static bool check_stdin_read(void)
{
    char buf[4096];
    ssize_t n;

    if (isatty(0))
        return skip("stdin is a terminal");
    while ((n = read(0, buf, sizeof buf)) > 0)
        ;
    return n == 0 || failf("read of stdin failed with %s", errname(errno));
}

static bool expect_nonblock_flag(int fd, bool set)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0)
        return failf("F_GETFL failed with %s", errname(errno));
    if (((flags & O_NONBLOCK) != 0) != set)
        return failf("F_GETFL %s O_NONBLOCK", set ? "lacks" : "shows");
    return true;
}

/* A blocking read waits for the byte that another thread writes after DELAY_MS. */
static bool expect_read_blocks(int rfd, int wfd)
{
    uint64_t start = now_ns();
    pthread_t writer = start_thread(write_byte_later, (void *)(intptr_t)wfd);
    char c;
    ssize_t n = read(rfd, &c, 1);
    int err = errno;
    double ms = ms_since(start);

    join_thread(writer);
    if (n != 1)
        return failf("read returned %zd (%s), expected the byte written later", n,
                     n < 0 ? errname(err) : "end of file");
    return took_between(ms, DELAY_MS - SLACK_MS, GIVE_UP_MS, "the blocking read");
}

/* A socket the program never made non-blocking blocks, and F_GETFL never shows O_NONBLOCK. */
static bool check_blocking_socket(void)
{
    int sv[2];
    bool ok;

    make_socketpair(sv, 0);
    ok = expect_nonblock_flag(sv[0], false) && expect_read_blocks(sv[0], sv[1]) &&
         expect_nonblock_flag(sv[0], false);
    close_pair(sv);
    return ok;
}

static bool check_sock_nonblock(void)
{
    int sv[2];
    char c;
    bool ok;

    make_socketpair(sv, SOCK_NONBLOCK);
    ok = expect_nonblock_flag(sv[0], true) && expect_errno(read(sv[0], &c, 1), EAGAIN, "read");
    close_pair(sv);
    return ok;
}

typedef int set_nonblock_fn(int fd, bool on);

static int set_nonblock_fcntl(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

static int set_nonblock_ioctl(int fd, bool on)
{
    int value = on;

    return ioctl(fd, FIONBIO, &value);
}

/* Made non-blocking, a socket says EAGAIN; made blocking again, it blocks again. */
static bool check_nonblock_toggle(set_nonblock_fn *set_nonblock)
{
    int sv[2];
    char c;
    bool ok;

    make_socketpair(sv, 0);
    ok = expect_ok(set_nonblock(sv[0], true), "setting O_NONBLOCK") &&
         expect_nonblock_flag(sv[0], true) &&
         expect_errno(read(sv[0], &c, 1), EAGAIN, "read") &&
         expect_ok(set_nonblock(sv[0], false), "clearing O_NONBLOCK") &&
         expect_nonblock_flag(sv[0], false) && expect_read_blocks(sv[0], sv[1]);
    close_pair(sv);
    return ok;
}

/* ---- Socket timeouts and errors ---- */

static bool check_so_rcvtimeo(void)
{
    int sv[2];
    char c;
    uint64_t start;
    bool ok;

    make_socketpair(sv, 0);
    set_socket_timeout(sv[0], SO_RCVTIMEO);
    start = now_ns();
    ok = expect_timeout(read(sv[0], &c, 1), start, "read");
    close_pair(sv);
    return ok;
}

static bool check_so_sndtimeo(void)
{
    static const char buf[4096];
    int sv[2];
    uint64_t start;
    bool ok;

    make_socketpair(sv, 0);
    fill_socket(sv[0]);
    set_socket_timeout(sv[0], SO_SNDTIMEO);
    start = now_ns();
    ok = expect_timeout(write(sv[0], buf, sizeof buf), start, "write");
    close_pair(sv);
    return ok;
}

/* A port that is bound but not listening answers a connect with RST. */
static bool check_connect_refused(void)
{
    struct sockaddr_in addr;
    int bound = bound_loopback_socket(&addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    if (fd < 0)
        die_errno("socket");
    ok = expect_errno(connect(fd, (struct sockaddr *)&addr, sizeof addr), ECONNREFUSED, "connect");
    close(fd);
    close(bound);
    return ok;
}

/* The read is made before the RST arrives, so it blocks until then. */
static bool check_reset_read(void)
{
    int sv[2];
    char c;
    bool ok;

    make_tcp_pair(sv);
    reset_connection(sv[1]);
    ok = expect_errno(read(sv[0], &c, 1), ECONNRESET, "read");
    close(sv[0]);
    return ok;
}

/*
 * With SIGPIPE ignored, writing to a reset connection fails instead of killing the process:
 * first with the pending ECONNRESET or with EPIPE (kernels differ), then with EPIPE.
 */
static bool check_reset_write(void)
{
    struct pollfd pfd = { .events = POLLIN };
    void (*old_handler)(int) = signal(SIGPIPE, SIG_IGN);
    int sv[2];
    bool ok;

    make_tcp_pair(sv);
    reset_connection(sv[1]);
    pfd.fd = sv[0];
    if (poll(&pfd, 1, GIVE_UP_MS) == 1) {
        long r = write(sv[0], "x", 1);

        ok = (r == -1 && errno == ECONNRESET) || expect_errno(r, EPIPE, "the first write");
        ok = ok && expect_errno(write(sv[0], "x", 1), EPIPE, "the second write");
    } else {
        ok = failf("poll saw no RST arrive in %d ms", GIVE_UP_MS);
    }
    close(sv[0]);
    signal(SIGPIPE, old_handler);
    return ok;
}

/*
 * Another thread is blocked in read() when its descriptor is closed and the peer then shuts
 * down. Linux leaves the read waiting on the file until the peer's EOF (it returns 0); a
 * runtime may instead end it with EBADF at the close. Either way it must return.
 */
static bool check_close_wakes_reader(void)
{
    /* Static: a reader that never returns must not be left writing into a dead stack frame. */
    static struct blocked_read b;
    pthread_t reader;
    int sv[2];

    make_socketpair(sv, 0);
    b.fd = sv[0];
    reader = start_thread(read_one_byte, &b);
    sleep_ms(TIMEOUT_MS);
    close(sv[0]);
    shutdown(sv[1], SHUT_WR);
    if (!wait_until_done(&b.done, GIVE_UP_MS)) {
        pthread_detach(reader);
        return failf("read still blocked %d ms after the close", GIVE_UP_MS);
    }
    join_thread(reader);
    close(sv[1]);
    if (b.result == 0 || (b.result == -1 && b.err == EBADF))
        return true;
    return failf("read returned %zd (%s), expected 0 or -1 with EBADF", b.result,
                 b.result < 0 ? errname(b.err) : "data");
}

/* ---- poll, ppoll, select, pselect, epoll_wait ---- */

enum { MAX_WAIT_FDS = 3 };

/* Waits until some of fds are readable; sets ready[i] for each one that is. */
typedef int wait_fn(const int *fds, int n, int timeout_ms, bool *ready);

struct waiter {
    const char *name;
    wait_fn *wait;
    bool refuses_regular_files;
};

static struct timespec timespec_of_ms(int ms)
{
    return (struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
}

static void make_pollfds(struct pollfd *pfds, const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        pfds[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
}

static void read_pollfds(const struct pollfd *pfds, int n, bool *ready)
{
    for (int i = 0; i < n; i++)
        ready[i] = (pfds[i].revents & POLLIN) != 0;
}

static int wait_poll(const int *fds, int n, int timeout_ms, bool *ready)
{
    struct pollfd pfds[MAX_WAIT_FDS];
    int r;

    make_pollfds(pfds, fds, n);
    r = poll(pfds, (nfds_t)n, timeout_ms);
    read_pollfds(pfds, n, ready);
    return r;
}

static int wait_ppoll(const int *fds, int n, int timeout_ms, bool *ready)
{
    struct pollfd pfds[MAX_WAIT_FDS];
    struct timespec timeout = timespec_of_ms(timeout_ms);
    int r;

    make_pollfds(pfds, fds, n);
    r = ppoll(pfds, (nfds_t)n, &timeout, NULL);
    read_pollfds(pfds, n, ready);
    return r;
}

/* Puts fds in set; returns the nfds argument of select. */
static int make_fd_set(fd_set *set, const int *fds, int n)
{
    int max = -1;

    FD_ZERO(set);
    for (int i = 0; i < n; i++) {
        FD_SET(fds[i], set);
        max = fds[i] > max ? fds[i] : max;
    }
    return max + 1;
}

static void read_fd_set(const fd_set *set, const int *fds, int n, bool *ready)
{
    for (int i = 0; i < n; i++)
        ready[i] = FD_ISSET(fds[i], set);
}

static int wait_select(const int *fds, int n, int timeout_ms, bool *ready)
{
    struct timeval timeout = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 };
    fd_set set;
    int nfds = make_fd_set(&set, fds, n);
    int r = select(nfds, &set, NULL, NULL, &timeout);

    if (r >= 0)
        read_fd_set(&set, fds, n, ready);
    return r;
}

static int wait_pselect(const int *fds, int n, int timeout_ms, bool *ready)
{
    struct timespec timeout = timespec_of_ms(timeout_ms);
    fd_set set;
    int nfds = make_fd_set(&set, fds, n);
    int r = pselect(nfds, &set, NULL, NULL, &timeout, NULL);

    if (r >= 0)
        read_fd_set(&set, fds, n, ready);
    return r;
}

static int wait_epoll(const int *fds, int n, int timeout_ms, bool *ready)
{
    struct epoll_event events[MAX_WAIT_FDS];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int r = 0;
    int err;

    if (ep < 0)
        die_errno("epoll_create1");
    for (int i = 0; i < n && r == 0; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

        r = epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    if (r == 0)
        r = epoll_wait(ep, events, n, timeout_ms);
    for (int i = 0; i < r; i++)
        ready[events[i].data.u32] = true;
    err = errno;
    close(ep);
    errno = err;
    return r;
}

static const struct waiter waiters[] = {
    { "poll", wait_poll, false },
    { "ppoll", wait_ppoll, false },
    { "select", wait_select, false },
    { "pselect", wait_pselect, false },
    { "epoll", wait_epoll, true },
};

/* What each wait is tried on: a pipe and a socket, read ends first. */
struct pipe_and_socket {
    int pipe[2];
    int sock[2];
};

static void open_pipe_and_socket(struct pipe_and_socket *ps)
{
    make_pipe(ps->pipe);
    make_socketpair(ps->sock, 0);
}

static void close_pipe_and_socket(const struct pipe_and_socket *ps)
{
    close_pair(ps->pipe);
    close_pair(ps->sock);
}

/* Nothing to read on the pipe or the socket: the wait ends by its timeout and returns 0. */
static bool wait_times_out(const struct waiter *w)
{
    struct pipe_and_socket ps;
    bool ready[2] = { false, false };
    uint64_t start;
    int r;
    bool ok;

    open_pipe_and_socket(&ps);
    start = now_ns();
    r = w->wait((int[]){ ps.pipe[0], ps.sock[0] }, 2, TIMEOUT_MS, ready);
    if (r == 0)
        ok = took_between(ms_since(start), TIMEOUT_MS - SLACK_MS, GIVE_UP_MS, w->name);
    else
        ok = failf("%s returned %d (%s), expected 0", w->name, r,
                   r < 0 ? errname(errno) : "something ready");
    close_pipe_and_socket(&ps);
    return ok;
}

/* The pipe, written by another thread after DELAY_MS, wakes the wait: it alone is ready. */
static bool wait_wakes_up(const struct waiter *w)
{
    struct pipe_and_socket ps;
    bool ready[2] = { false, false };
    uint64_t start;
    pthread_t writer;
    double ms;
    int r;
    bool ok;

    open_pipe_and_socket(&ps);
    start = now_ns();
    writer = start_thread(write_byte_later, (void *)(intptr_t)ps.pipe[1]);
    r = w->wait((int[]){ ps.pipe[0], ps.sock[0] }, 2, GIVE_UP_MS, ready);
    ms = ms_since(start);
    join_thread(writer);
    if (r == 1 && ready[0] && !ready[1])
        ok = took_between(ms, DELAY_MS - SLACK_MS, GIVE_UP_MS, w->name);
    else
        ok = failf("%s returned %d with the pipe %s and the socket %s, expected the pipe alone",
                   w->name, r, ready[0] ? "ready" : "not ready", ready[1] ? "ready" : "not ready");
    close_pipe_and_socket(&ps);
    return ok;
}

/* A regular file is always ready for poll and select; epoll refuses one with EPERM. */
static bool wait_regular_file(const struct waiter *w)
{
    struct pipe_and_socket ps;
    bool ready[3] = { false, false, false };
    FILE *file = tmpfile();
    int r;
    bool ok;

    if (file == NULL)
        die_errno("tmpfile");
    open_pipe_and_socket(&ps);
    r = w->wait((int[]){ ps.pipe[0], ps.sock[0], fileno(file) }, 3, TIMEOUT_MS, ready);
    if (w->refuses_regular_files)
        ok = expect_errno(r, EPERM, w->name);
    else if (r == 1 && ready[2] && !ready[0] && !ready[1])
        ok = true;
    else
        ok = failf("%s returned %d (%s), expected the file alone ready", w->name, r,
                   r < 0 ? errname(errno) : ready[2] ? "with the file ready" : "without the file");
    close_pipe_and_socket(&ps);
    fclose(file);
    return ok;
}

static const struct wait_scenario {
    const char *name;
    bool (*run)(const struct waiter *w);
} wait_scenarios[] = {
    { "timeout", wait_times_out },
    { "wakeup", wait_wakes_up },
    { "regular_file", wait_regular_file },
};

/* ---- A large blocking write ---- */

static unsigned char large_byte(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 11);
}

struct slow_reader {
    int fd;
    size_t received;
    bool intact;
};

/*
 * Reads in bites of varying size with pauses, so the writer has to wait for room again and
 * again. (A length that is not a constant also makes a _FORTIFY_SOURCE build call
 * __read_chk instead of read.)
 */
static void *read_slowly(void *arg)
{
    static unsigned char buf[SLOW_READ_MAX];
    struct slow_reader *r = arg;
    size_t bite = SLOW_READ_MIN;
    ssize_t n;

    while ((n = read(r->fd, buf, bite)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            r->intact &= buf[i] == large_byte(r->received + (size_t)i);
        r->received += (size_t)n;
        bite = bite < SLOW_READ_MAX ? bite * 2 : SLOW_READ_MIN;
        sleep_ms(1);
    }
    return NULL;
}

/* One write of LARGE_WRITE_SIZE bytes on a socket that another thread reads slowly; what
 * it returned, errno after it (set to ERRNO_SET_BEFORE just before), and what the reader got. */
static ssize_t write_large_to_slow_reader(struct slow_reader *reader, int *err)
{
    unsigned char *buf = malloc(LARGE_WRITE_SIZE);
    int sv[2];

    if (buf == NULL)
        die("out of memory");
    for (size_t i = 0; i < LARGE_WRITE_SIZE; i++)
        buf[i] = large_byte(i);
    make_socketpair(sv, 0);
    *reader = (struct slow_reader){ .fd = sv[1], .intact = true };
    pthread_t thread = start_thread(read_slowly, reader);
    errno = ERRNO_SET_BEFORE;
    ssize_t n = write(sv[0], buf, LARGE_WRITE_SIZE);
    *err = errno;
    close(sv[0]);
    join_thread(thread);
    close(sv[1]);
    free(buf);
    return n;
}

/* A blocking write on a socket returns only when all of it has gone, in order. */
static bool check_large_write(void)
{
    struct slow_reader reader;
    int err;
    ssize_t n = write_large_to_slow_reader(&reader, &err);

    if (n != LARGE_WRITE_SIZE)
        return failf("write returned %zd, expected %d", n, LARGE_WRITE_SIZE);
    if (reader.received != LARGE_WRITE_SIZE || !reader.intact)
        return failf("the reader got %zu bytes, %s", reader.received,
                     reader.intact ? "all intact" : "some wrong");
    return true;
}

/* ---- errno ---- */

/* A call that succeeds leaves errno as the caller set it, however long it waited: a loop
 * that reads to EOF and then tests errno sees what it set. */
static bool errno_kept(const char *call, ssize_t r, int err)
{
    if (r < 0)
        return failf("%s failed with %s", call, errname(err));
    return err == ERRNO_SET_BEFORE || failf("%s returned %zd and set errno to %s", call, r, errname(err));
}

/* A Unix stream connect waits for room in its listener's backlog (0: one pending connection
 * fills it): with SO_SNDTIMEO it gives up with EAGAIN; without, it connects once another
 * thread has accepted the one before, and, as any call that succeeds, leaves errno alone. */
static bool check_unix_connect_waits_for_room(void)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "semantics-%d", (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1));
    int listener = socket(AF_UNIX, SOCK_STREAM, 0), first = socket(AF_UNIX, SOCK_STREAM, 0),
        timed = socket(AF_UNIX, SOCK_STREAM, 0), waiting = socket(AF_UNIX, SOCK_STREAM, 0);
    struct timeval timeout = { 0, TIMEOUT_MS * 1000 };
    if (listener < 0 || first < 0 || timed < 0 || waiting < 0 || bind(listener, (struct sockaddr *)&addr, len) != 0
        || listen(listener, 0) != 0 || connect(first, (struct sockaddr *)&addr, len) != 0
        || setsockopt(timed, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0)
        die_errno("a Unix listener and its first connection");
    bool ok = expect_errno(connect(timed, (struct sockaddr *)&addr, len), EAGAIN, "a connect with SO_SNDTIMEO");
    pthread_t helper = start_thread(accept_later, (void *)(intptr_t)listener);
    errno = ERRNO_SET_BEFORE;
    int r = connect(waiting, (struct sockaddr *)&addr, len);
    ok = errno_kept("connect", r, errno) && ok;
    join_thread(helper);
    close(first);
    close(timed);
    close(waiting);
    close(listener);
    return ok;
}

/* One byte written later by another thread, read with read and recv; two, one after the
 * other, with recv's MSG_WAITALL; end of file, when another thread closes the write end; a
 * write that waits for room again and again. */
static bool check_errno_kept(void)
{
    int p[2], sv[2];
    char c, two[2];
    ssize_t n;
    bool ok;

    if (pipe(p) != 0)
        die_errno("pipe");
    make_socketpair(sv, 0);
    pthread_t helper = start_thread(write_byte_later, (void *)(intptr_t)p[1]);
    errno = ERRNO_SET_BEFORE;
    n = read(p[0], &c, 1);
    ok = errno_kept("read of a pipe", n, errno);
    join_thread(helper);
    helper = start_thread(write_byte_later, (void *)(intptr_t)sv[1]);
    errno = ERRNO_SET_BEFORE;
    n = recv(sv[0], &c, 1, 0);
    ok = errno_kept("recv", n, errno) && ok;
    join_thread(helper);
    helper = start_thread(write_two_bytes_later, (void *)(intptr_t)sv[1]);
    errno = ERRNO_SET_BEFORE;
    n = recv(sv[0], two, sizeof two, MSG_WAITALL);
    ok = errno_kept("recv with MSG_WAITALL", n, errno) && ok;
    join_thread(helper);
    helper = start_thread(close_later, (void *)(intptr_t)p[1]);
    errno = ERRNO_SET_BEFORE;
    n = read(p[0], &c, 1);
    ok = errno_kept("read at end of file", n, errno) && ok;
    join_thread(helper);
    close(p[0]);
    close_pair(sv);

    struct slow_reader reader;
    int err;
    n = write_large_to_slow_reader(&reader, &err);
    return errno_kept("a large write", n, err) && ok;
}

/* ---- Sleeps: each must last at least what was asked ---- */

typedef int sleep_fn(void); /* 0 on success */

static int do_sched_yield(void)
{
    return sched_yield();
}

static int do_usleep(void)
{
    return usleep(SLEEP_NS / 1000);
}

static int do_nanosleep(void)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = SLEEP_NS };

    return nanosleep(&ts, NULL);
}

static int do_clock_nanosleep(void)
{
    struct timespec ts = { .tv_sec = 0, .tv_nsec = SLEEP_NS };

    return clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
}

static int do_clock_nanosleep_abs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += SLEEP_NS;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static const struct sleeper {
    const char *name;
    sleep_fn *sleep;
    uint64_t min_ns;
} sleepers[] = {
    { "sched_yield", do_sched_yield, 0 },
    { "usleep", do_usleep, SLEEP_NS },
    { "nanosleep", do_nanosleep, SLEEP_NS },
    { "clock_nanosleep", do_clock_nanosleep, SLEEP_NS },
    { "clock_nanosleep_abstime", do_clock_nanosleep_abs, SLEEP_NS },
};

static bool check_sleep(const struct sleeper *s)
{
    uint64_t start = now_ns();
    int r = s->sleep();
    uint64_t elapsed = now_ns() - start;

    if (r != 0)
        return failf("%s returned %d", s->name, r);
    if (elapsed < s->min_ns)
        return failf("%s lasted %llu ns, less than the %llu asked", s->name,
                     (unsigned long long)elapsed, (unsigned long long)s->min_ns);
    return took_between((double)elapsed / 1e6, 0, GIVE_UP_MS, s->name);
}

/* ---- Signals: EINTR and SA_RESTART ---- */

static volatile sig_atomic_t signals_caught;

static void count_signal(int sig)
{
    (void)sig;
    signals_caught++;
}

/*
 * Another thread blocks in read(); SIGUSR1, handled with sa_flags, is sent to it every
 * DELAY_MS until the read returns (with SA_RESTART, which must keep it waiting, at most
 * INTERRUPTIONS times: the first may come before the read starts), then one byte is written
 * for it. Without SA_RESTART the signals go on until one has ended the read: however late
 * the reader gets to its read, a signal comes while it waits.
 */
static void interrupt_blocked_read(int sa_flags, struct blocked_read *b)
{
    struct sigaction sa = { .sa_handler = count_signal, .sa_flags = sa_flags }, old;
    pthread_t reader;
    int sv[2];

    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, &old) != 0)
        die_errno("sigaction");
    signals_caught = 0;
    make_socketpair(sv, 0);
    b->fd = sv[0];
    reader = start_thread(read_one_byte, b);
    for (int i = 0; (i < INTERRUPTIONS || !(sa_flags & SA_RESTART)) && !atomic_load(&b->done); i++) {
        sleep_ms(DELAY_MS);
        pthread_kill(reader, SIGUSR1);
    }
    if (write(sv[1], "x", 1) != 1)
        die_errno("write");
    join_thread(reader);
    close_pair(sv);
    sigaction(SIGUSR1, &old, NULL);
}

static bool check_eintr(void)
{
    struct blocked_read b = { .done = false };

    interrupt_blocked_read(0, &b);
    if (signals_caught == 0)
        return failf("the handler never ran");
    if (b.result == -1 && b.err == EINTR)
        return true;
    return failf("read returned %zd (%s), expected -1 with EINTR", b.result,
                 b.result < 0 ? errname(b.err) : "data");
}

static bool check_sa_restart(void)
{
    struct blocked_read b = { .done = false };

    interrupt_blocked_read(SA_RESTART, &b);
    if (signals_caught == 0)
        return failf("the handler never ran");
    if (b.result == 1)
        return true;
    return failf("read returned %zd (%s), expected the byte written after the signals",
                 b.result, b.result < 0 ? errname(b.err) : "end of file");
}

/* ---- Inherited standard descriptors ---- */

static int stdio_flags_at_start[2];

static bool check_stdio_flags_kept(void)
{
    for (int fd = 0; fd < 2; fd++) {
        int flags = fcntl(fd, F_GETFL);

        if (flags != stdio_flags_at_start[fd])
            return failf("F_GETFL of fd %d was %#o at the start and is %#o now", fd,
                         (unsigned)stdio_flags_at_start[fd], (unsigned)flags);
    }
    return true;
}

int main(void)
{
    char name[64];

    stdio_flags_at_start[0] = fcntl(0, F_GETFL);
    stdio_flags_at_start[1] = fcntl(1, F_GETFL);
    /* One line at a time, in order, even into a pipe and even if a check crashes. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    report("stdin_read", check_stdin_read());
    report("blocking_socket", check_blocking_socket());
    report("sock_nonblock", check_sock_nonblock());
    report("fcntl_nonblock", check_nonblock_toggle(set_nonblock_fcntl));
    report("fionbio_nonblock", check_nonblock_toggle(set_nonblock_ioctl));
    report("so_rcvtimeo", check_so_rcvtimeo());
    report("so_sndtimeo", check_so_sndtimeo());
    report("connect_refused", check_connect_refused());
    report("reset_read", check_reset_read());
    report("reset_write", check_reset_write());
    report("close_wakes_reader", check_close_wakes_reader());
    for (size_t w = 0; w < sizeof waiters / sizeof *waiters; w++) {
        for (size_t s = 0; s < sizeof wait_scenarios / sizeof *wait_scenarios; s++) {
            snprintf(name, sizeof name, "%s_%s", waiters[w].name, wait_scenarios[s].name);
            report(name, wait_scenarios[s].run(&waiters[w]));
        }
    }
    report("large_write", check_large_write());
    report("errno_kept", check_errno_kept());
    report("unix_connect_waits_for_room", check_unix_connect_waits_for_room());
    for (size_t i = 0; i < sizeof sleepers / sizeof *sleepers; i++)
        report(sleepers[i].name, check_sleep(&sleepers[i]));
    report("eintr", check_eintr());
    report("sa_restart", check_sa_restart());
    report("stdio_flags_kept", check_stdio_flags_kept());
    return failures > 0 ? 1 : 0;
}
