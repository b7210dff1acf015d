/*
 * Family thread, mutexes, in glibc's own pthread_mutex_t and with its lock-word protocol
 * (0 free, 1 locked, 2 locked with waiters), so PTHREAD_MUTEX_INITIALIZER and its
 * recursive and errorcheck variants keep working and an uncontended lock is one atomic
 * instruction. A contended lock parks in the core's parking lot, which wakes greenlets
 * and real threads alike. Robust, process-shared and priority mutexes go to glibc.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

#define KIND_TYPE_MASK 3         /* normal, recursive, errorcheck, adaptive */
#define KIND_ELISION_MASK 0x300  /* glibc's lock elision hints, harmless to ignore */

static bool coop_owned(const pthread_mutex_t *m)
{
    return shim_patched[FAM_thread] && (m->__data.__kind & ~(KIND_TYPE_MASK | KIND_ELISION_MASK)) == 0;
}

/* Computed once per thread-local area: every greenlet has its own (core/tls.c), and a
 * thread's original context keeps the id its thread had, whichever came first. */
int shim_owner_id(void)
{
    static __thread int id;
    if (__builtin_expect(id == 0, 0)) {
        struct coop_greenlet *g = coop_self();
        id = g != NULL ? (int)(coop_greenlet_id(g) & 0x3fffffff) | 0x40000000 : gettid();
    }
    return id;
}

static _Atomic uint32_t *word(pthread_mutex_t *m) { return (_Atomic uint32_t *)&m->__data.__lock; }

/* The lock word part: 0, or ETIMEDOUT. While the process has one thread, nobody else can
 * touch the word: plain stores, as glibc's own single-thread path does (glibc clears
 * __libc_single_threaded before it starts a second thread, coop's hubs included). */
static int acquire(pthread_mutex_t *m, int64_t deadline)
{
    if (__libc_single_threaded && atomic_load_explicit(word(m), memory_order_relaxed) == 0) {
        atomic_store_explicit(word(m), 1, memory_order_relaxed);
        return 0;
    }
    uint32_t expected = 0;
    if (atomic_compare_exchange_strong_explicit(word(m), &expected, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    while (atomic_exchange_explicit(word(m), 2, memory_order_acquire) != 0)
        if (shim_park_while(word(m), 2, deadline, ~0u, "mutex") == ETIMEDOUT)
            return ETIMEDOUT;
    return 0;
}

/* Type checks, then the lock word; deadline 0 means try. */
static int lock(pthread_mutex_t *m, int64_t deadline)
{
    int type = m->__data.__kind & KIND_TYPE_MASK;
    int self = shim_owner_id();
    if (m->__data.__owner == self) {
        if (type == PTHREAD_MUTEX_RECURSIVE) {
            if (m->__data.__count == ~0u)
                return EAGAIN;
            m->__data.__count++;
            return 0;
        }
        if (type == PTHREAD_MUTEX_ERRORCHECK)
            return EDEADLK;
    }
    if (deadline == 0) {
        uint32_t expected = 0;
        if (!atomic_compare_exchange_strong(word(m), &expected, 1))
            return EBUSY;
    } else if (acquire(m, deadline) != 0) {
        return ETIMEDOUT;
    }
    m->__data.__owner = self;
    m->__data.__count = 1;
    return 0;
}

/* Recursive and error-checking mutexes check their owner; normal and adaptive ones only
 * record it, as glibc's do. */
static bool owner_checked(const pthread_mutex_t *m)
{
    int type = m->__data.__kind & KIND_TYPE_MASK;
    return type == PTHREAD_MUTEX_RECURSIVE || type == PTHREAD_MUTEX_ERRORCHECK;
}

/* The uncontended lock of a normal mutex, without a call: one CAS, or while the process
 * has one thread a plain store. */
static inline bool take_free(pthread_mutex_t *m)
{
    if (__libc_single_threaded) {
        if (atomic_load_explicit(word(m), memory_order_relaxed) != 0)
            return false;
        atomic_store_explicit(word(m), 1, memory_order_relaxed);
        return true;
    }
    uint32_t expected = 0;
    return atomic_compare_exchange_strong_explicit(word(m), &expected, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

static inline int mutex_lock(pthread_mutex_t *m)
{
    if (!coop_owned(m))
        return REAL(pthread_mutex_lock)(m);
    if (owner_checked(m) || !take_free(m))
        return lock(m, COOP_NO_DEADLINE);
    m->__data.__owner = shim_owner_id();
    return 0;
}

int shim_mutex_lock(pthread_mutex_t *m) { return mutex_lock(m); }

static inline int mutex_unlock(pthread_mutex_t *m)
{
    if (!coop_owned(m))
        return REAL(pthread_mutex_unlock)(m);
    if (owner_checked(m)) {
        if (m->__data.__owner != shim_owner_id())
            return EPERM;
        if (--m->__data.__count > 0)
            return 0;
    }
    m->__data.__owner = 0;
    if (__libc_single_threaded) {
        atomic_store_explicit(word(m), 0, memory_order_relaxed);
        return 0;
    }
    if (atomic_exchange_explicit(word(m), 0, memory_order_release) == 2)
        coop_unpark(word(m), 1, ~0u);
    return 0;
}

int shim_mutex_unlock(pthread_mutex_t *m) { return mutex_unlock(m); }

/* The exported names get the fast paths inline: no second call. */
EXPORT int pthread_mutex_lock(pthread_mutex_t *m) { return mutex_lock(m); }
EXPORT int pthread_mutex_unlock(pthread_mutex_t *m) { return mutex_unlock(m); }

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    return coop_owned(m) ? lock(m, 0) : REAL(pthread_mutex_trylock)(m);
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clock, const struct timespec *abstime)
{
    if (!coop_owned(m))
        return REAL(pthread_mutex_clocklock)(m, clock, abstime);
    int64_t deadline;
    int err = shim_abs_deadline(clock, abstime, &deadline);
    return err != 0 ? err : lock(m, deadline);
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    if (!coop_owned(m))
        return REAL(pthread_mutex_timedlock)(m, abstime);
    return pthread_mutex_clocklock(m, CLOCK_REALTIME, abstime);
}
