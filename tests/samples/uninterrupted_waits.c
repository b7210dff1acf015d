/*
 * uninterrupted_waits [ROUNDS]: poll, select and epoll_wait with short timeouts on a pipe
 * nobody writes, ROUNDS times each (default 1000), then ROUNDS * POLLS calls of each with a
 * zero timeout in a row (a loop that polls), beside two threads that compute for 3 ms at a
 * time between sched_yield calls. No signal is sent: every call must end with 0, never with
 * EINTR. Prints "waits N polls P eintr E other O"; status 1 if E or O is not 0.
 *
 * Under coop with a short time slice (COOP_PREEMPT_MS=1) on a busy machine, the monitor's
 * preemption signal can land in a zero-timeout call, the program's own or the one coop makes
 * first in a wait: none of these calls is restarted after a handler, so coop must make it
 * again rather than hand the program an EINTR it would never get natively
 * (tests/integration/test_uninterrupted_waits.sh).
 */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/select.h>

enum { COMPUTE_NS = 3000000, WAIT_US = 100, POLLS = 30 };

static volatile int done;

static void *compute(void *unused)
{
    (void)unused;
    while (!done) {
        uint64_t end = now_ns() + COMPUTE_NS;
        while (now_ns() < end)
            ;
        sched_yield();
    }
    return NULL;
}

/* One call of each kind on fd, which never becomes ready, with a short timeout or none: its
 * result, or -1 with errno. */
static int wait_with(int kind, int fd, int ep, bool zero)
{
    if (kind == 0) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        return poll(&p, 1, zero ? 0 : WAIT_US / 1000 + 1);
    }
    if (kind == 1) {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        struct timeval tv = { 0, zero ? 0 : WAIT_US };
        return select(fd + 1, &rd, NULL, NULL, &tv);
    }
    struct epoll_event ev;
    return epoll_wait(ep, &ev, 1, zero ? 0 : WAIT_US / 1000 + 1);
}

static long eintr, other;

static void count(int r)
{
    if (r < 0 && errno == EINTR)
        eintr++;
    else if (r != 0)
        other++;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    int never[2];
    if (pipe(never) != 0)
        die_errno("pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = never[0] };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, never[0], &ev) != 0)
        die_errno("epoll");

    pthread_t computers[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&computers[i], NULL, compute, NULL) != 0)
            die("pthread_create failed");
    long waits = 0, polls = 0;
    for (int i = 0; i < rounds; i++)
        for (int kind = 0; kind < 3; kind++, waits++)
            count(wait_with(kind, never[0], ep, false));
    for (int kind = 0; kind < 3; kind++)      /* long enough to be preempted many times */
        for (int i = 0; i < rounds * POLLS; i++, polls++)
            count(wait_with(kind, never[0], ep, true));
    done = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(computers[i], NULL);
    printf("waits %ld polls %ld eintr %ld other %ld\n", waits, polls, eintr, other);
    return eintr == 0 && other == 0 ? 0 : 1;
}
