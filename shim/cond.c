/*
 * Family thread, condition variables: a sequence number in the first word of glibc's
 * pthread_cond_t (zero in PTHREAD_COND_INITIALIZER). A waiter reads it, releases the
 * mutex and parks only while it is unchanged; signal and broadcast bump it, then unpark
 * one or all. glibc's flag bits in __wrefs (bit 0 process-shared, bit 1 CLOCK_MONOTONIC,
 * set by pthread_cond_init) are read as glibc writes them. A process-shared one keeps
 * glibc's protocol, with a pool thread waiting for the greenlet (shared.c).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

static _Atomic uint32_t *seq(pthread_cond_t *c) { return (_Atomic uint32_t *)&c->__data.__wseq; }

static bool coop_owned(const pthread_cond_t *c)
{
    return !(c->__data.__wrefs & 1) && shim_thread_objects_ours();
}

/* A process-shared one is coop's to wait on only when a greenlet would wait. */
static bool coop_waits(const pthread_cond_t *c) { return coop_owned(c) || shim_cooperative(FAM_thread) != NULL; }

static clockid_t clock_of(const pthread_cond_t *c)
{
    return c->__data.__wrefs & 2 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

/* A cancellation point, acted on with the mutex held, as POSIX asks: before the wait, or
 * after a wakeup (a cancelled waiter is woken) once the mutex is taken back. */
static int wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline)
{
    shim_cancel_point();
    if (!coop_owned(c)) {
        int err = shim_shared_cond_wait(c, m, deadline);
        shim_cancel_point();
        return err;
    }
    uint32_t seen = atomic_load(seq(c));
    int err = shim_mutex_unlock(m);
    if (err != 0)
        return err;
    int r = shim_park_while(seq(c), seen, deadline, ~0u, "cond");
    int relocked = shim_mutex_lock(m);     /* a robust one's EOWNERDEAD comes first, as in glibc */
    shim_cancel_point();
    return relocked != 0 ? relocked : r == ETIMEDOUT ? ETIMEDOUT : 0;
}

EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    return coop_waits(c) ? wait(c, m, COOP_NO_DEADLINE) : REAL(pthread_cond_wait)(c, m);
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clock,
                                  const struct timespec *abstime)
{
    if (!coop_waits(c))
        return REAL(pthread_cond_clockwait)(c, m, clock, abstime);
    int64_t deadline;
    int err = shim_abs_deadline(clock, abstime, &deadline);
    return err != 0 ? err : wait(c, m, deadline);
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abstime)
{
    if (!coop_waits(c))
        return REAL(pthread_cond_timedwait)(c, m, abstime);
    return pthread_cond_clockwait(c, m, clock_of(c), abstime);
}

static int wake(pthread_cond_t *c, int n)
{
    atomic_fetch_add(seq(c), 1);
    coop_unpark(seq(c), n, ~0u);
    return 0;
}

EXPORT int pthread_cond_signal(pthread_cond_t *c)
{
    return coop_owned(c) ? wake(c, 1) : REAL(pthread_cond_signal)(c);
}

EXPORT int pthread_cond_broadcast(pthread_cond_t *c)
{
    return coop_owned(c) ? wake(c, INT32_MAX) : REAL(pthread_cond_broadcast)(c);
}
