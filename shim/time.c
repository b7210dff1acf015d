/* Family time: sleeps park the greenlet on its hub's timer heap; sched_yield lets the
 * other ready greenlets run. Sleeps are never restarted after a signal handler, as in
 * the kernel, and report the time left. */
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

/* 0, or EINTR with *rem set to the time left. A cancellation point: a sleeper woken
 * early (nudged) acts on its cancellation, or sleeps on. */
static int sleep_until(int64_t deadline, struct timespec *rem)
{
    int r;
    do {
        shim_cancel_point();
        r = coop_sleep_until(deadline);
    } while (r == 0 && coop_now() < deadline);
    if (r == 0)
        return 0;
    if (rem != NULL)
        *rem = shim_remaining(deadline);
    return EINTR;
}

/* libc hands the sleeps' times to the kernel unread: bad ones go there too. */
EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
    struct timespec ts;
    if (shim_cooperative(FAM_time) == NULL || shim_read_timeout(req, &ts) != 0)
        return REAL(nanosleep)(req, rem);
    int err = sleep_until(shim_deadline_after(&ts), rem);
    if (err == 0)
        return 0;
    errno = err;
    return -1;
}

EXPORT int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    struct timespec ts;
    if (shim_cooperative(FAM_time) == NULL
        || (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME
            && clock != CLOCK_TAI)
        || shim_read_timeout(req, &ts) != 0)
        return REAL(clock_nanosleep)(clock, flags, req, rem);
    if (flags & TIMER_ABSTIME)
        return sleep_until(shim_deadline_at(clock, &ts), NULL);
    return sleep_until(shim_deadline_after(&ts), rem);
}

EXPORT unsigned sleep(unsigned seconds)
{
    if (shim_cooperative(FAM_time) == NULL)
        return REAL(sleep)(seconds);
    struct timespec req = { seconds, 0 }, rem;
    if (sleep_until(shim_deadline_after(&req), &rem) == 0)
        return 0;
    return (unsigned)rem.tv_sec + (rem.tv_nsec > 0);
}

EXPORT int usleep(useconds_t usec)
{
    if (shim_cooperative(FAM_time) == NULL)
        return REAL(usleep)(usec);
    struct timespec req = { usec / 1000000, (long)(usec % 1000000) * 1000 };
    int err = sleep_until(shim_deadline_after(&req), NULL);
    if (err == 0)
        return 0;
    errno = err;
    return -1;
}

EXPORT int sched_yield(void)
{
    if (shim_cooperative(FAM_time) == NULL)
        return REAL(sched_yield)();
    coop_yield();
    shim_async_cancel_point();
    return 0;
}
