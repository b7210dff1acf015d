/*
 * echo_threads [-p PORT] [-b BACKLOG] [-z MS]: the plainest TCP echo server there is, one
 * thread per connection doing blocking read() and write() until the client closes (-z adds
 * a thread that sleeps in a raw system call, see common.h).
 *
 * It listens on 127.0.0.1 (port 0 picks a free one) and prints "listening on PORT". SIGTERM or
 * SIGINT ends it with status 0. There is no limit on connections: when descriptors or threads
 * run out it pauses and tries again, as a long-running server would.
 *
 * ECHO_HOG_MS=N (the preemption benchmark, tests/bench/run.sh): one more thread computes
 * without a blocking call for N ms at a time, with a 1 ms nap between, as a request that
 * computes for a while does.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>

enum {
    /* Small stacks let 10,000 native threads fit; the buffer below is the biggest user. */
    THREAD_STACK_SIZE = 64 * 1024,
    BUFFER_SIZE = 16 * 1024,
    /* How long to back off when accept() or pthread_create() runs out of resources. */
    RETRY_MS = 10,
};

/* Writes all of buf: a socket may take only part of it, or be interrupted by a signal. */
static bool write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* One connection's thread: echoes until EOF or an error (a reset client), then closes. */
static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[BUFFER_SIZE];

    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || !write_all(fd, buf, (size_t)n))
            break;
    }
    close(fd);
    return NULL;
}

static void *compute_in_bursts(void *burst_ms)
{
    volatile uint64_t sum = 0;
    for (;;) {
        uint64_t end = now_ns() + (uint64_t)(intptr_t)burst_ms * 1000000u;
        while (now_ns() < end)
            for (int i = 0; i < 1000; i++)
                sum += (uint64_t)i;
        sleep_ms(1);
    }
    return NULL;
}

static void start_hog(void)
{
    const char *ms = getenv("ECHO_HOG_MS");
    pthread_t hog;
    if (ms != NULL && pthread_create(&hog, NULL, compute_in_bursts,
                                     (void *)(intptr_t)parse_long(ms, 1, 3600000, "ECHO_HOG_MS")) != 0)
        die("pthread_create: the hog");
}

static int accept_retrying(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);

        if (fd >= 0)
            return fd;
        if (accept_error_is_transient(errno))
            sleep_ms(RETRY_MS);
        else if (errno != EINTR && errno != ECONNABORTED)
            die_errno("accept");
    }
}

/* -z MS: a thread that sleeps in a raw system call, again and again: coop cannot make it
 * cooperative, so it blocks whichever OS thread runs it (the handoff benchmark). Between
 * two sleeps it yields, as a thread that does anything else between its blocking calls. */
static void *raw_sleeper(void *ms_arg)
{
    long ms = (long)(intptr_t)ms_arg;
    struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
    for (;;) {
        syscall(SYS_nanosleep, &ts, NULL);
        sched_yield();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_options options = parse_server_options(argc, argv);
    pthread_attr_t attr;
    int listener;
    int err;

    exit_zero_on_term();
    /* A client that resets its connection must cost one thread an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    raise_limit(RLIMIT_NOFILE);
    listener = listen_loopback(&options, 0);
    start_hog();

    if ((err = pthread_attr_init(&attr)) != 0 ||
        (err = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE)) != 0 ||
        (err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED)) != 0)
        die("pthread_attr: %s", strerror(err));
    pthread_t sleeper;
    if (options.raw_sleep_ms > 0 && pthread_create(&sleeper, &attr, raw_sleeper, (void *)(intptr_t)options.raw_sleep_ms) != 0)
        die("pthread_create failed");

    for (;;) {
        int fd = accept_retrying(listener);
        pthread_t thread;

        /* Out of threads or memory: this client is refused, the next one may fare better. */
        if (pthread_create(&thread, &attr, serve, (void *)(intptr_t)fd) != 0) {
            close(fd);
            sleep_ms(RETRY_MS);
        }
    }
}
