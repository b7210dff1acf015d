/*
 * signal_waits [-r]: SIGUSR1 arrives over and over while threads wait. A handler counts the
 * signals; with -r it is installed with SA_RESTART. For about two seconds:
 *
 *   socket reader  read() on a TCP connection; a writer sends 2,000,000 bytes in pieces
 *   pipe reader    read() on a pipe; a writer sends 200,000 bytes in pieces
 *   acceptor       the main thread: accept() on a listener; a connector connects 50 times,
 *                  each connection sends its number
 *   sleeper        nanosleep() of 100 ms, 20 times, resumed with the time left after EINTR
 *   cond waiter    pthread_cond_wait() for 100 values a producer hands over one by one
 *   sem waiter     sem_wait() for 100 posts
 *   timed waiter   sem_timedwait() (a deadline 60 s away) for 100 posts on another semaphore
 *
 * while a signaller sends SIGUSR1 to each waiting thread in turn with pthread_kill every
 * millisecond and to the whole process every 5 ms. Every call that fails with EINTR is
 * counted and tried again. The helper threads (writers, connector, producers) retry on EINTR.
 *
 * Prints on stdout, for each wait, whether its data all came through and whether EINTR was
 * seen ("none" or "some"), the same lines natively and under coop (counts go to stderr).
 * Checks what POSIX requires: with SA_RESTART, read and accept are restarted (no EINTR);
 * pthread_cond_wait never fails with EINTR; nanosleep always may, and a sleep resumed with
 * the time left lasts at least what was asked. (Linux restarts sem_wait after an SA_RESTART
 * handler, as a futex wait without a timeout, but not sem_timedwait: the output shows it.) Exit status 0 when every check passed.
 *
 * "signal_waits: ready for SIGUSR1" on stderr says that the handler is in place, for a test
 * that sends signals of its own.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>

enum {
    SOCKET_BYTES = 2000000,
    SOCKET_PIECE = 10000,
    PIPE_BYTES = 200000,
    PIPE_PIECE = 1000,
    PIECE_EVERY_MS = 10,
    CONNECTIONS = 50,
    CONNECT_EVERY_MS = 40,
    SLEEPS = 20,
    SLEEP_MS = 100,
    VALUES = 100,
    VALUE_EVERY_MS = 20,
    KILL_EVERY_US = 1000,
    PROCESS_KILL_EVERY = 5, /* one kill() of the process per this many pthread_kill() */
};

static _Atomic long handled;
static _Atomic bool waiters_done;
static _Atomic int waiters_ended;   /* waiters that returned (and are not joined yet) */
static _Atomic int failures;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "signal_waits: check failed: " __VA_ARGS__);                 \
            fputc('\n', stderr);                                                         \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

static void on_usr1(int sig)
{
    (void)sig;
    handled++;
}

static unsigned char byte_at(size_t i) { return (unsigned char)(i % 251 + i / 251 % 5); }

/* --- helpers that must not care about signals --- */

static void write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die_errno("write");
        buf += n;
        len -= (size_t)n;
    }
}

/* Sends total bytes of the pattern in pieces, one every PIECE_EVERY_MS. */
struct stream { int fd; size_t total, piece; };

static void *stream_writer(void *arg)
{
    struct stream *s = arg;
    unsigned char *buf = malloc(s->piece);

    if (buf == NULL)
        die_errno("malloc");
    for (size_t off = 0; off < s->total; off += s->piece) {
        size_t n = s->total - off < s->piece ? s->total - off : s->piece;
        for (size_t i = 0; i < n; i++)
            buf[i] = byte_at(off + i);
        write_all(s->fd, buf, n);
        sleep_ms(PIECE_EVERY_MS);
    }
    free(buf);
    close(s->fd);
    return NULL;
}

/* A blocking connect that a signal may interrupt: the connection then goes on by itself. */
static int connect_retrying(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        die_errno("socket");
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0)
        return fd;
    if (errno != EINTR)
        die_errno("connect");
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int err = 0;
        socklen_t len = sizeof err;
        int n = poll(&p, 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die_errno("poll");
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            die_errno("getsockopt");
        if (err != 0)
            die("connect: %s", strerror(err));
        return fd;
    }
}

static struct sockaddr_in listener_addr;

static void *connector(void *arg)
{
    (void)arg;
    for (uint32_t i = 0; i < CONNECTIONS; i++) {
        int fd = connect_retrying(&listener_addr);
        write_all(fd, (const unsigned char *)&i, sizeof i);
        close(fd);
        sleep_ms(CONNECT_EVERY_MS);
    }
    return NULL;
}

/* --- the waiters --- */

struct reader {
    const char *name;
    int fd;
    size_t expected, received;
    long eintr;
    bool in_order;
};

static void *reader(void *arg)
{
    struct reader *r = arg;
    unsigned char buf[16384];

    r->in_order = true;
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            r->eintr++;
            continue;
        }
        if (n < 0)
            die_errno("read");
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != byte_at(r->received + (size_t)i))
                r->in_order = false;
        r->received += (size_t)n;
    }
    close(r->fd);
    return NULL;
}

static long sleeper_eintr, sleeps_short;

static void *sleeper(void *arg)
{
    (void)arg;
    for (int i = 0; i < SLEEPS; i++) {
        struct timespec ts = { .tv_sec = 0, .tv_nsec = SLEEP_MS * 1000000L };
        uint64_t t0 = now_ns();
        while (nanosleep(&ts, &ts) != 0) {
            if (errno != EINTR)
                die_errno("nanosleep");
            sleeper_eintr++;
        }
        if (now_ns() - t0 < SLEEP_MS * 1000000ull)
            sleeps_short++;
    }
    return NULL;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int value, value_taken;   /* value: last handed over; value_taken: last received */
static long cond_errors, cond_wrong;

static void *producer(void *arg)
{
    (void)arg;
    for (int i = 1; i <= VALUES; i++) {
        pthread_mutex_lock(&lock);
        while (value_taken != value)   /* the previous one first */
            pthread_cond_wait(&cond, &lock);
        value = i;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        sleep_ms(VALUE_EVERY_MS);
    }
    return NULL;
}

static void *cond_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (value_taken < VALUES) {
        while (value == value_taken) {
            int err = pthread_cond_wait(&cond, &lock);
            if (err != 0)
                cond_errors++;
        }
        if (value != value_taken + 1)
            cond_wrong++;
        value_taken = value;
        pthread_cond_broadcast(&cond);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static sem_t sem, timed_sem;
static long sem_eintr, sem_taken, timed_eintr, timed_taken, timed_out;

static void *sem_poster(void *arg)
{
    (void)arg;
    for (int i = 0; i < VALUES; i++) {
        sleep_ms(VALUE_EVERY_MS);
        sem_post(&sem);
        sem_post(&timed_sem);
    }
    return NULL;
}

static void *timed_waiter(void *arg)
{
    struct timespec deadline;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    while (timed_taken < VALUES) {
        if (sem_timedwait(&timed_sem, &deadline) == 0)
            timed_taken++;
        else if (errno == EINTR)
            timed_eintr++;
        else if (errno == ETIMEDOUT && timed_out++ == 0)
            fprintf(stderr, "signal_waits: sem_timedwait timed out\n");
        else if (errno != ETIMEDOUT)
            die_errno("sem_timedwait");
        if (timed_out)
            break;
    }
    return NULL;
}

static void *sem_waiter(void *arg)
{
    (void)arg;
    while (sem_taken < VALUES) {
        if (sem_wait(&sem) == 0)
            sem_taken++;
        else if (errno == EINTR)
            sem_eintr++;
        else
            die_errno("sem_wait");
    }
    return NULL;
}

/* --- the signaller --- */

static pthread_t targets[8];
static int ntargets;
static long kills;

static void *signaller(void *arg)
{
    (void)arg;
    for (long i = 0; !waiters_done; i++) {
        if (i % PROCESS_KILL_EVERY == 0)
            kill(getpid(), SIGUSR1);
        else
            pthread_kill(targets[i % ntargets], SIGUSR1);
        kills++;
        struct timespec ts = { .tv_nsec = KILL_EVERY_US * 1000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return NULL;
}

static const char *some(long n) { return n ? "some" : "none"; }

/* A waiter: counted when it returns. Its ID stays valid until it is joined, so the
 * signaller may go on aiming at it meanwhile (pthread_kill of an ended thread is allowed). */
struct waiter { void *(*fn)(void *); void *arg; };

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    void *result = w->fn(w->arg);

    waiters_ended++;
    return result;
}

static pthread_t start(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int err = pthread_create(&t, NULL, fn, arg);

    if (err != 0)
        die("pthread_create: %s", strerror(err));
    return t;
}

int main(int argc, char **argv)
{
    bool restart = argc == 2 && strcmp(argv[1], "-r") == 0;
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = restart ? SA_RESTART : 0 };
    socklen_t len = sizeof listener_addr;
    int pipefd[2], one = 1;

    if (argc > 2 || (argc == 2 && !restart))
        die("usage: signal_waits [-r]");
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        die_errno("sigaction");
    fprintf(stderr, "signal_waits: ready for SIGUSR1\n");   /* from now on it may come */
    signal(SIGPIPE, SIG_IGN);
    if (sem_init(&sem, 0, 0) != 0 || sem_init(&timed_sem, 0, 0) != 0)
        die_errno("sem_init");

    /* The listener, and a connection for the socket reader. */
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    listener_addr.sin_family = AF_INET;
    listener_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener < 0 || bind(listener, (struct sockaddr *)&listener_addr, sizeof listener_addr) != 0 ||
        listen(listener, 64) != 0)
        die_errno("listener");
    if (getsockname(listener, (struct sockaddr *)&listener_addr, &len) != 0)
        die_errno("getsockname");
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&listener_addr, sizeof listener_addr) != 0)
        die_errno("connect");
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int server_side = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (server_side < 0)
        die_errno("accept");
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        die_errno("pipe");

    struct reader sock_r = { .name = "socket read", .fd = server_side, .expected = SOCKET_BYTES };
    struct reader pipe_r = { .name = "pipe read", .fd = pipefd[0], .expected = PIPE_BYTES };
    struct stream sock_w = { .fd = client, .total = SOCKET_BYTES, .piece = SOCKET_PIECE };
    struct stream pipe_w = { .fd = pipefd[1], .total = PIPE_BYTES, .piece = PIPE_PIECE };
    pthread_t waiters[6], helpers[5], sig;

    static struct waiter w[6];
    w[0] = (struct waiter){ reader, &sock_r };
    w[1] = (struct waiter){ reader, &pipe_r };
    w[2] = (struct waiter){ sleeper, NULL };
    w[3] = (struct waiter){ cond_waiter, NULL };
    w[4] = (struct waiter){ sem_waiter, NULL };
    w[5] = (struct waiter){ timed_waiter, NULL };
    for (int i = 0; i < 6; i++)
        waiters[i] = start(waiter_main, &w[i]);
    targets[0] = pthread_self();   /* the acceptor */
    for (int i = 0; i < 6; i++)
        targets[1 + i] = waiters[i];
    ntargets = 7;
    sig = start(signaller, NULL);
    helpers[0] = start(stream_writer, &sock_w);
    helpers[1] = start(stream_writer, &pipe_w);
    helpers[2] = start(connector, NULL);
    helpers[3] = start(producer, NULL);
    helpers[4] = start(sem_poster, NULL);

    /* The acceptor. */
    long accept_eintr = 0, accepted = 0, numbers_ok = 0, read_eintr = 0;
    uint64_t t0 = now_ns();
    while (accepted < CONNECTIONS) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR) {
            accept_eintr++;
            continue;
        }
        if (fd < 0)
            die_errno("accept");
        uint32_t number;
        size_t got = 0;
        while (got < sizeof number) {
            ssize_t n = read(fd, (char *)&number + got, sizeof number - got);
            if (n < 0 && errno == EINTR) {
                read_eintr++;
                continue;
            }
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got == sizeof number && number == (uint32_t)accepted)
            numbers_ok++;
        accepted++;
        close(fd);
    }

    /* The signaller stops before the waiters are joined: a joined thread's ID is gone. It
     * goes on (its kill() of the process reaches some thread) until more than 100 signals
     * have been handled, however few a loaded machine let it send meanwhile. */
    while (waiters_ended < 6 || handled <= 100)
        sleep_ms(1);
    waiters_done = true;
    pthread_join(sig, NULL);
    for (int i = 0; i < 6; i++)
        pthread_join(waiters[i], NULL);
    for (int i = 0; i < 5; i++)
        pthread_join(helpers[i], NULL);
    double seconds = (double)(now_ns() - t0) / 1e9;

    fprintf(stderr, "signal_waits: %s: %.2f s, %ld signals sent, %ld handled; EINTR: socket read %ld, "
            "pipe read %ld, accept %ld, read of an accepted connection %ld, nanosleep %ld, sem_wait %ld, "
            "sem_timedwait %ld; cond_wait errors %ld\n", restart ? "SA_RESTART" : "no SA_RESTART", seconds,
            kills, (long)handled, sock_r.eintr, pipe_r.eintr, accept_eintr, read_eintr, sleeper_eintr,
            sem_eintr, timed_eintr, cond_errors);

    printf("handler %s SA_RESTART\n", restart ? "with" : "without");
    printf("handler ran: %s\n", handled > 0 ? "yes" : "no");
    CHECK(handled > 100, "only %ld signals handled", (long)handled);
    struct reader *readers[] = { &sock_r, &pipe_r };
    for (int i = 0; i < 2; i++) {
        struct reader *r = readers[i];
        bool whole = r->received == r->expected && r->in_order;
        printf("%s: %s; EINTR: %s\n", r->name, whole ? "every byte, in order" : "data lost or out of order",
               some(r->eintr));
        CHECK(whole, "%s: %zu bytes of %zu, %s", r->name, r->received, r->expected,
              r->in_order ? "in order" : "out of order");
        if (restart)
            CHECK(r->eintr == 0, "%s: EINTR %ld times despite SA_RESTART", r->name, r->eintr);
    }
    printf("accept: %s; EINTR: %s\n", numbers_ok == CONNECTIONS ? "every connection, in order" : "connections lost",
           some(accept_eintr));
    CHECK(numbers_ok == CONNECTIONS, "accept: %ld of %d connections with their number", numbers_ok, CONNECTIONS);
    if (restart)
        CHECK(accept_eintr == 0 && read_eintr == 0, "accept: EINTR %ld times, read %ld, despite SA_RESTART",
              accept_eintr, read_eintr);
    printf("nanosleep: %s; EINTR: %s\n", sleeps_short == 0 ? "every sleep lasted what was asked" : "sleeps cut short",
           some(sleeper_eintr));
    CHECK(sleeps_short == 0, "nanosleep: %ld sleeps of %d ms ended early", sleeps_short, SLEEP_MS);
    printf("cond_wait: %s; errors: %s\n", cond_wrong == 0 && value_taken == VALUES ? "every value" : "values lost",
           some(cond_errors));
    CHECK(cond_wrong == 0 && value_taken == VALUES, "cond_wait: %d values, %ld out of turn", value_taken, cond_wrong);
    CHECK(cond_errors == 0, "pthread_cond_wait failed %ld times (EINTR is not allowed)", cond_errors);
    printf("sem_wait: %s; EINTR: %s\n", sem_taken == VALUES ? "every post" : "posts lost", some(sem_eintr));
    CHECK(sem_taken == VALUES, "sem_wait: %ld posts of %d", sem_taken, VALUES);
    printf("sem_timedwait: %s; EINTR: %s\n", timed_taken == VALUES ? "every post" : "posts lost", some(timed_eintr));
    CHECK(timed_taken == VALUES, "sem_timedwait: %ld posts of %d", timed_taken, VALUES);
    return failures ? 1 : 0;
}
