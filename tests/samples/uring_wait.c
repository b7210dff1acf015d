/*
 * uring_wait: a thread reads a pipe through io_uring and waits for the completion
 * (io_uring_wait_cqe, then io_uring_submit_and_wait, then io_uring_wait_cqe_timeout),
 * while a worker thread does TICKS rounds of work and only then writes the byte the read
 * waits for. The program ends only if the waiting thread leaves the worker running:
 * natively each is an OS thread; under coop, on one hub, only if the wait is cooperative
 * (or handed off). Exit status 77 where io_uring is not available.
 */
#define _GNU_SOURCE
#include "common.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>

#define TICKS 20

static int pipefd[2];
static _Atomic int waiting, done;

static void *worker(void *unused)
{
    (void)unused;
    while (!atomic_load(&waiting))
        sleep_ms(1);
    int rounds = 0;
    for (; rounds < TICKS && !atomic_load(&done); rounds++)
        sleep_ms(1);
    if (write(pipefd[1], "x", 1) != 1)
        die_errno("write");
    return (void *)(intptr_t)rounds;
}

/* One read of a byte through the ring, waited for in one of three ways. */
static bool wait_one(struct io_uring *ring, int how)
{
    char c;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_read(sqe, pipefd[0], &c, 1, 0);
    pthread_t w;
    atomic_store(&waiting, 0);
    atomic_store(&done, 0);
    pthread_create(&w, NULL, worker, NULL);
    struct io_uring_cqe *cqe = NULL;
    int r;
    if (how == 0) {
        io_uring_submit(ring);
        atomic_store(&waiting, 1);
        r = io_uring_wait_cqe(ring, &cqe);
    } else if (how == 1) {
        atomic_store(&waiting, 1);
        r = io_uring_submit_and_wait(ring, 1) == 1 ? io_uring_peek_cqe(ring, &cqe) : -1;
    } else {
        struct __kernel_timespec ts = { .tv_sec = 10 };
        io_uring_submit(ring);
        atomic_store(&waiting, 1);
        r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
    }
    atomic_store(&done, 1);
    void *rounds;
    pthread_join(w, &rounds);
    bool ok = r == 0 && cqe != NULL && cqe->res == 1 && c == 'x' && (intptr_t)rounds == TICKS;
    if (cqe != NULL)
        io_uring_cqe_seen(ring, cqe);
    static const char *const names[] = { "io_uring_wait_cqe", "io_uring_submit_and_wait",
                                         "io_uring_wait_cqe_timeout" };
    printf("%s: the read completed after the writer wrote; the worker did %s rounds meanwhile\n",
           names[how], (intptr_t)rounds == TICKS ? "all its" : "not all its");
    return ok;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct io_uring ring;
    int err = io_uring_queue_init(8, &ring, 0);
    if (err < 0) {
        fprintf(stderr, "uring_wait: io_uring not available: %s\n", strerror(-err));
        return 77;
    }
    if (pipe(pipefd) != 0)
        die_errno("pipe");
    bool ok = true;
    for (int how = 0; how < 3; how++)
        ok &= wait_one(&ring, how);
    io_uring_queue_exit(&ring);
    return ok ? 0 : 1;
}
