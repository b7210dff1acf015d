/*
 * Family io, io_uring through liburing: the calls that wait for completions. A ring's fd
 * is pollable (readable while completions wait in its queue), so a greenlet that would
 * wait submits what is pending, takes a completion if one is there, and otherwise parks
 * until the ring's fd is readable, then looks again; its hub runs the others. liburing's
 * own waits are inline functions over the exported __io_uring_get_cqe (io_uring_wait_cqe,
 * io_uring_wait_cqe_nr), and exported functions (io_uring_submit_and_wait,
 * io_uring_wait_cqes, io_uring_wait_cqe_timeout), each interposed here. Calls with a
 * signal mask, and rings polled by the kernel for completions (IORING_SETUP_IOPOLL,
 * which never report them on the fd), go to liburing unchanged. Built against the
 * installed liburing.h (liburing-dev), which gives the ring's layout; without it the
 * wrappers only pass the calls on.
 */
#include <time.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

#if __has_include(<liburing.h>)
#include <liburing.h>

static bool cooperative(struct io_uring *ring, const sigset_t *sigmask)
{
    return sigmask == NULL && !(ring->flags & IORING_SETUP_IOPOLL) && shim_cooperative(FAM_io) != NULL;
}

/* Parks until wait_nr completions are in the ring (or the deadline), then takes the first:
 * 0, -ETIME at the deadline, or liburing's own error. */
static int wait_completions(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                            int64_t deadline)
{
    for (;;) {
        if (io_uring_cq_ready(ring) >= wait_nr) {
            int r = REAL(__io_uring_get_cqe)(ring, cqe_ptr, 0, 0, NULL);
            if (r != -EAGAIN)
                return r;
        }
        int err = coop_wait_fd(ring->ring_fd, COOP_READ, deadline);
        if (err == ETIMEDOUT)
            return -ETIME;
        if (err != 0 && err != EINTR && err != COOP_RESTART)
            return REAL(__io_uring_get_cqe)(ring, cqe_ptr, 0, wait_nr, NULL);   /* cannot wait here */
    }
}

EXPORT int __io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned submit,
                              unsigned wait_nr, sigset_t *sigmask)
{
    if (wait_nr == 0 || !cooperative(ring, sigmask))
        return REAL(__io_uring_get_cqe)(ring, cqe_ptr, submit, wait_nr, sigmask);
    /* Submits, and takes a completion already there, without waiting. */
    int r = REAL(__io_uring_get_cqe)(ring, cqe_ptr, submit, 0, NULL);
    if ((r == 0 && wait_nr <= 1) || (r != 0 && r != -EAGAIN))
        return r;
    return wait_completions(ring, cqe_ptr, wait_nr, COOP_NO_DEADLINE);
}

/* Never waits: here so that the waits below can submit first. */
EXPORT int io_uring_submit(struct io_uring *ring) { return REAL(io_uring_submit)(ring); }

EXPORT int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
    if (wait_nr == 0 || !cooperative(ring, NULL))
        return REAL(io_uring_submit_and_wait)(ring, wait_nr);
    int submitted = REAL(io_uring_submit)(ring);
    if (submitted < 0)
        return submitted;
    struct io_uring_cqe *cqe;
    int r = wait_completions(ring, &cqe, wait_nr, COOP_NO_DEADLINE);
    return r < 0 && r != -ETIME ? r : submitted;
}

static int wait_with_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                             struct __kernel_timespec *ts)
{
    int submitted = REAL(io_uring_submit)(ring);
    if (submitted < 0)
        return submitted;
    int64_t deadline = COOP_NO_DEADLINE;
    if (ts != NULL) {
        struct timespec rel = { (time_t)ts->tv_sec, (long)ts->tv_nsec };
        deadline = shim_deadline_after(&rel);
    }
    return wait_completions(ring, cqe_ptr, wait_nr ? wait_nr : 1, deadline);
}

EXPORT int io_uring_wait_cqes(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                              struct __kernel_timespec *ts, sigset_t *sigmask)
{
    if (!cooperative(ring, sigmask))
        return REAL(io_uring_wait_cqes)(ring, cqe_ptr, wait_nr, ts, sigmask);
    return wait_with_timeout(ring, cqe_ptr, wait_nr, ts);
}

EXPORT int io_uring_wait_cqe_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                                     struct __kernel_timespec *ts)
{
    if (!cooperative(ring, NULL))
        return REAL(io_uring_wait_cqe_timeout)(ring, cqe_ptr, ts);
    return wait_with_timeout(ring, cqe_ptr, 1, ts);
}

#else  /* no liburing.h: the calls go on unchanged */

EXPORT int __io_uring_get_cqe(void *ring, void **cqe_ptr, unsigned submit, unsigned wait_nr, sigset_t *sigmask)
{
    return ((int (*)(void *, void **, unsigned, unsigned, sigset_t *))shim_resolve(SHIM_FN___io_uring_get_cqe))(
        ring, cqe_ptr, submit, wait_nr, sigmask);
}

EXPORT int io_uring_submit(void *ring)
{
    return ((int (*)(void *))shim_resolve(SHIM_FN_io_uring_submit))(ring);
}

EXPORT int io_uring_submit_and_wait(void *ring, unsigned wait_nr)
{
    return ((int (*)(void *, unsigned))shim_resolve(SHIM_FN_io_uring_submit_and_wait))(ring, wait_nr);
}

EXPORT int io_uring_wait_cqes(void *ring, void **cqe_ptr, unsigned wait_nr, void *ts, sigset_t *sigmask)
{
    return ((int (*)(void *, void **, unsigned, void *, sigset_t *))shim_resolve(SHIM_FN_io_uring_wait_cqes))(
        ring, cqe_ptr, wait_nr, ts, sigmask);
}

EXPORT int io_uring_wait_cqe_timeout(void *ring, void **cqe_ptr, void *ts)
{
    return ((int (*)(void *, void **, void *))shim_resolve(SHIM_FN_io_uring_wait_cqe_timeout))(ring, cqe_ptr, ts);
}
#endif
