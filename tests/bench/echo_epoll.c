/*
 * echo_epoll [-p PORT] [-b BACKLOG] [-t THREADS]: the hand-written reference that coop's
 * thread-per-connection servers are measured against. One thread, non-blocking sockets,
 * edge-triggered epoll: each socket is registered once, for reading and writing, and never
 * touched in epoll again. With -t, THREADS such loops, each with its own epoll set and its
 * own listener on the same port (SO_REUSEPORT: the kernel spreads the connections), the way
 * a server uses every CPU without sharing anything between its threads.
 *
 * Same command line and "listening on PORT" line as tests/samples/echo_threads.c.
 *
 * Edge-triggered means epoll reports a direction only when it turns ready again, so each
 * connection is driven until the call it needs next returns EAGAIN (see conn_echo).
 */
#define _GNU_SOURCE
#include "../samples/common.h"

#include <pthread.h>
#include <sys/epoll.h>

enum {
    BUFFER_SIZE = 16 * 1024,
    MAX_EVENTS = 256,
    /* How long to wait before accepting again after running out of descriptors. */
    RETRY_MS = 10,
};

/* A connection holds at most one buffer of unsent echo; it reads no more until that is sent. */
struct conn {
    int fd;
    size_t len;  /* bytes in buf */
    size_t sent; /* bytes of buf already written back */
    char buf[BUFFER_SIZE];
};

static __thread int epfd;    /* each loop's own */

/*
 * Echoes until the socket would block (true: epoll will report when it can go on) or the
 * connection is over (false). Pending output is written before reading more, which is the
 * back-pressure a blocking server gets for free.
 */
static bool conn_echo(struct conn *c)
{
    for (;;) {
        ssize_t n;

        if (c->sent < c->len) {
            n = write(c->fd, c->buf + c->sent, c->len - c->sent);
            if (n >= 0)
                c->sent += (size_t)n;
        } else {
            n = read(c->fd, c->buf, sizeof c->buf);
            if (n == 0)
                return false;
            if (n > 0) {
                c->len = (size_t)n;
                c->sent = 0;
            }
        }
        if (n < 0 && errno != EINTR)
            return errno == EAGAIN;
    }
}

/* Closing the descriptor also removes it from the epoll set (it is never duplicated). */
static void conn_close(struct conn *c)
{
    close(c->fd);
    free(c);
}

static void conn_open(int fd)
{
    struct conn *c = malloc(sizeof *c);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };

    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->len = c->sent = 0;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        die_errno("epoll_ctl");
    /* Data may have arrived before the registration: the first edge could be gone already. */
    if (!conn_echo(c))
        conn_close(c);
}

/*
 * Accepts every pending connection. Returns false when it had to stop early for lack of
 * descriptors: the listener's edge is then spent, so the caller must retry on a timer.
 */
static bool accept_all(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0)
            conn_open(fd);
        else if (errno == EAGAIN)
            return true;
        else if (accept_error_is_transient(errno))
            return false;
        else if (errno != EINTR && errno != ECONNABORTED)
            die_errno("accept");
    }
}

/* One event loop: its own epoll set, with its listener in it. */
static void *serve(void *listener_arg)
{
    int listener = (int)(intptr_t)listener_arg;
    /* The listener is told apart from connections by its NULL pointer. */
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
    struct epoll_event events[MAX_EVENTS];
    bool accepting_blocked = false;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die_errno("epoll_create1");
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) != 0)
        die_errno("epoll_ctl");

    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, accepting_blocked ? RETRY_MS : -1);

        if (n < 0 && errno != EINTR)
            die_errno("epoll_wait");
        if (accepting_blocked)
            accepting_blocked = !accept_all(listener);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;

            if (c == NULL)
                accepting_blocked = !accept_all(listener);
            else if (!conn_echo(c))
                conn_close(c);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_options options = parse_server_options(argc, argv);

    exit_zero_on_term();
    /* A reset client must cost one connection an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    raise_limit(RLIMIT_NOFILE);
    int first = listen_loopback_quiet(&options, SOCK_NONBLOCK);
    options.port = bound_port(first);
    for (int i = 1; i < options.threads; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(intptr_t)listen_loopback_quiet(&options, SOCK_NONBLOCK)) != 0)
            die("pthread_create failed");
    }
    printf("listening on %d\n", options.port);
    fflush(stdout);
    serve((void *)(intptr_t)first);
}
