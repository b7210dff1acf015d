/*
 * Family thread, read-write locks in glibc's pthread_rwlock_t: the first word counts
 * readers and has a writer bit, the second counts waiting writers, __cur_writer names the
 * writer (for EDEADLK) and __flags says whether writers go first (glibc's kinds). Waiters
 * park on the first word; an unlock wakes them all to compete again. A process-shared lock
 * keeps glibc's protocol, a pool thread taking it for a greenlet that would wait (shared.c).
 */
#include <pthread.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

#define WRITER 0x80000000u

static _Atomic uint32_t *state(pthread_rwlock_t *l) { return (_Atomic uint32_t *)&l->__data.__readers; }
static _Atomic uint32_t *writers_waiting(pthread_rwlock_t *l) { return (_Atomic uint32_t *)&l->__data.__writers; }

static bool ours(const pthread_rwlock_t *l) { return l->__data.__shared == 0 && shim_thread_objects_ours(); }
static bool shared_for_greenlet(const pthread_rwlock_t *l) { return !ours(l) && shim_cooperative(FAM_thread) != NULL; }

static bool readers_wait_for_writers(pthread_rwlock_t *l)
{
    return l->__data.__flags != PTHREAD_RWLOCK_PREFER_READER_NP && atomic_load(writers_waiting(l)) > 0;
}

/* deadline 0 means try. */
static int rdlock(pthread_rwlock_t *l, int64_t deadline)
{
    if (l->__data.__cur_writer == shim_owner_id() && (atomic_load(state(l)) & WRITER))
        return EDEADLK;
    for (;;) {
        uint32_t s = atomic_load(state(l));
        if (!(s & WRITER) && !readers_wait_for_writers(l)) {
            if (atomic_compare_exchange_weak(state(l), &s, s + 1))
                return 0;
            continue;
        }
        if (deadline == 0)
            return EBUSY;
        if (shim_park_while(state(l), s, deadline, ~0u, "rwlock") == ETIMEDOUT)
            return ETIMEDOUT;
    }
}

static int wrlock(pthread_rwlock_t *l, int64_t deadline)
{
    int self = shim_owner_id();
    if (l->__data.__cur_writer == self && (atomic_load(state(l)) & WRITER))
        return EDEADLK;
    int err = 0;
    atomic_fetch_add(writers_waiting(l), 1);
    for (;;) {
        uint32_t s = 0;
        if (atomic_compare_exchange_weak(state(l), &s, WRITER))
            break;
        if (s == 0)
            continue;
        if (deadline == 0) {
            err = EBUSY;
            break;
        }
        if (shim_park_while(state(l), s, deadline, ~0u, "rwlock") == ETIMEDOUT) {
            err = ETIMEDOUT;
            break;
        }
    }
    /* Readers held back for this writer may go now if it gave up. */
    if (atomic_fetch_sub(writers_waiting(l), 1) == 1 && err != 0)
        coop_unpark(state(l), INT32_MAX, ~0u);
    if (err == 0)
        l->__data.__cur_writer = self;
    return err;
}

static int shared_rdlock(pthread_rwlock_t *l, int64_t deadline) { return shim_shared_rwlock_lock(l, false, deadline); }
static int shared_wrlock(pthread_rwlock_t *l, int64_t deadline) { return shim_shared_rwlock_lock(l, true, deadline); }

/* coop's lock for its own rwlocks, the shared one for a process-shared lock a greenlet would
 * wait for; NULL: glibc's. */
static int (*reader(const pthread_rwlock_t *l))(pthread_rwlock_t *, int64_t)
{
    return ours(l) ? rdlock : shared_for_greenlet(l) ? shared_rdlock : NULL;
}

static int (*writer(const pthread_rwlock_t *l))(pthread_rwlock_t *, int64_t)
{
    return ours(l) ? wrlock : shared_for_greenlet(l) ? shared_wrlock : NULL;
}

static int timed(int (*lock)(pthread_rwlock_t *, int64_t), pthread_rwlock_t *l, clockid_t clock,
                 const struct timespec *abstime)
{
    int64_t deadline;
    int err = shim_abs_deadline(clock, abstime, &deadline);
    return err != 0 ? err : lock(l, deadline);
}

EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    return reader(l) ? reader(l)(l, COOP_NO_DEADLINE) : REAL(pthread_rwlock_rdlock)(l);
}

EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    coop_preempt_point();
    return reader(l) ? reader(l)(l, 0) : REAL(pthread_rwlock_tryrdlock)(l);
}

EXPORT int pthread_rwlock_clockrdlock(pthread_rwlock_t *l, clockid_t clock, const struct timespec *abstime)
{
    return reader(l) ? timed(reader(l), l, clock, abstime) : REAL(pthread_rwlock_clockrdlock)(l, clock, abstime);
}

EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *l, const struct timespec *abstime)
{
    return reader(l) ? timed(reader(l), l, CLOCK_REALTIME, abstime) : REAL(pthread_rwlock_timedrdlock)(l, abstime);
}

EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    return writer(l) ? writer(l)(l, COOP_NO_DEADLINE) : REAL(pthread_rwlock_wrlock)(l);
}

EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    coop_preempt_point();
    return writer(l) ? writer(l)(l, 0) : REAL(pthread_rwlock_trywrlock)(l);
}

EXPORT int pthread_rwlock_clockwrlock(pthread_rwlock_t *l, clockid_t clock, const struct timespec *abstime)
{
    return writer(l) ? timed(writer(l), l, clock, abstime) : REAL(pthread_rwlock_clockwrlock)(l, clock, abstime);
}

EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *l, const struct timespec *abstime)
{
    return writer(l) ? timed(writer(l), l, CLOCK_REALTIME, abstime) : REAL(pthread_rwlock_timedwrlock)(l, abstime);
}

EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    if (!ours(l))
        return shim_patched[FAM_thread] && coop_self() != NULL ? shim_shared_rwlock_unlock(l)
                                                              : REAL(pthread_rwlock_unlock)(l);
    uint32_t s = atomic_load(state(l));
    if (s & WRITER) {
        l->__data.__cur_writer = 0;
        atomic_store(state(l), 0);
    } else if (s == 0) {
        return EPERM;
    } else if (atomic_fetch_sub(state(l), 1) != 1) {
        return 0;      /* other readers remain: nobody can enter yet */
    }
    coop_unpark(state(l), INT32_MAX, ~0u);
    return 0;
}
