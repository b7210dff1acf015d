/*
 * Family thread, mutexes, in glibc's own pthread_mutex_t and with its lock-word protocol
 * (0 free, 1 locked, 2 locked with waiters), so PTHREAD_MUTEX_INITIALIZER and its
 * recursive and errorcheck variants keep working and an uncontended lock is one atomic
 * instruction. A contended lock parks in the core's parking lot, which wakes greenlets
 * and real threads alike. A process-shared one waits in the kernel's futex, as glibc's
 * does, through a pool thread (shared.c), so that other processes' glibc and coop wake
 * each other; glibc names a thread's owner by its tid, which the greenlets of a hub share,
 * so coop names a greenlet by an id no tid can equal. Robust and priority mutexes go to
 * glibc.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

#define KIND_TYPE_MASK 3         /* normal, recursive, errorcheck, adaptive */
#define KIND_ELISION_MASK 0x300  /* glibc's lock elision hints, harmless to ignore */
#define KIND_PSHARED 0x80        /* glibc's PTHREAD_MUTEX_PSHARED_BIT */
#define KIND_PRIO_INHERIT 0x20   /* glibc's PTHREAD_MUTEX_PRIO_INHERIT_NP */

static bool coop_owned(const pthread_mutex_t *m)
{
    return shim_patched[FAM_thread]
           && (m->__data.__kind & ~(KIND_TYPE_MASK | KIND_ELISION_MASK | KIND_PSHARED)) == 0;
}

static bool shared(const pthread_mutex_t *m) { return m->__data.__kind & KIND_PSHARED; }

/* Computed once per thread-local area: every greenlet has its own (core/tls.c), and a
 * thread's original context keeps the id its thread had, whichever came first. */
static __thread int owner_id;

static __attribute__((noinline)) int first_owner_id(void)
{
    struct coop_greenlet *g = coop_self();
    owner_id = g != NULL ? (int)(coop_greenlet_id(g) & 0x3fffffff) | 0x40000000 : gettid();
    return owner_id;
}

int shim_owner_id(void) { return __builtin_expect(owner_id != 0, 1) ? owner_id : first_owner_id(); }

static _Atomic uint32_t *word(pthread_mutex_t *m) { return (_Atomic uint32_t *)&m->__data.__lock; }

/* The lock word part: 0, or ETIMEDOUT. While the process has one thread, nobody else can
 * touch a private mutex's word: plain stores, as glibc's own single-thread path does (glibc clears
 * __libc_single_threaded before it starts a second thread, coop's hubs included). */
static int acquire(pthread_mutex_t *m, int64_t deadline)
{
    if (__libc_single_threaded && !shared(m) && atomic_load_explicit(word(m), memory_order_relaxed) == 0) {
        atomic_store_explicit(word(m), 1, memory_order_relaxed);
        return 0;
    }
    uint32_t expected = 0;
    if (atomic_compare_exchange_strong_explicit(word(m), &expected, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    while (atomic_exchange_explicit(word(m), 2, memory_order_acquire) != 0) {
        int r = shared(m) ? shim_shared_futex_wait(word(m), 2, deadline)
                          : shim_park_while(word(m), 2, deadline, ~0u, "mutex");
        if (r == ETIMEDOUT)
            return ETIMEDOUT;
        shim_async_cancel_point();
    }
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
            return deadline == 0 ? EBUSY : EDEADLK;
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
    m->__data.__nusers++;      /* glibc's pthread_mutex_destroy says EBUSY while not 0 */
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
 * has one thread a plain store (never for a process-shared one: other processes may hold
 * it). */
static inline bool take_free(pthread_mutex_t *m)
{
    if (__libc_single_threaded && !shared(m)) {
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
    m->__data.__nusers++;
    return 0;
}

int shim_mutex_lock(pthread_mutex_t *m) { return mutex_lock(m); }

static __attribute__((noinline)) int wake_a_waiter(pthread_mutex_t *m)
{
    if (shared(m))
        shim_shared_futex_wake(word(m), 1);
    else
        coop_unpark(word(m), 1, ~0u);
    return 0;
}

/* Lets go of a mutex the caller holds, and wakes a waiter if there are any. */
static inline int release(pthread_mutex_t *m)
{
    m->__data.__owner = 0;
    m->__data.__nusers--;
    if (__libc_single_threaded && !shared(m)) {
        atomic_store_explicit(word(m), 0, memory_order_relaxed);
        return 0;
    }
    if (atomic_exchange_explicit(word(m), 0, memory_order_release) != 2)
        return 0;
    return wake_a_waiter(m);
}

/* glibc takes the unlock of a priority-inheritance mutex only from the thread its word
 * names, and the kernel, once another waits for it, only from the task it records: a
 * greenlet that moved to another OS thread meanwhile cannot unlock it (core/tls.c moves
 * the owner of a robust one nobody waits for). Said once: the program may hang on it. */
static __attribute__((noinline)) int glibc_unlock(pthread_mutex_t *m)
{
    int err = REAL(pthread_mutex_unlock)(m);
    static atomic_bool warned;
    if (err == EPERM && (m->__data.__kind & KIND_PRIO_INHERIT) && (atomic_load(word(m)) & FUTEX_TID_MASK) != 0
        && !atomic_exchange(&warned, true))
        coop_warn("pthread_mutex_unlock: EPERM for a locked priority-inheritance mutex: if this thread "
                  "locked it, it moved to another OS thread since, which glibc and the kernel do not "
                  "allow (run with cooprun --no-thread); said once");
    return err;
}

static inline int mutex_unlock(pthread_mutex_t *m)
{
    if (!coop_owned(m))
        return glibc_unlock(m);
    if (owner_checked(m)) {
        if (m->__data.__owner != shim_owner_id())
            return EPERM;
        if (--m->__data.__count > 0)
            return 0;
    }
    return release(m);
}

int shim_mutex_unlock(pthread_mutex_t *m) { return mutex_unlock(m); }

/* The exported names: the common case (a free normal or adaptive coop mutex, its owner id
 * known, no preemption wanted) inline and without a stack frame, as glibc's; anything else
 * in a second call. */
static __attribute__((noinline)) int lock_at_preempt_point(pthread_mutex_t *m)
{
    coop_preempt_point();
    return mutex_lock(m);
}

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    int self = owner_id;
    if (__builtin_expect(coop_preempt_wanted == 0 && self != 0 && coop_owned(m) && !owner_checked(m)
                         && take_free(m), 1)) {
        m->__data.__owner = self;
        m->__data.__nusers++;
        return 0;
    }
    return lock_at_preempt_point(m);
}

static __attribute__((noinline)) int unlock_at_preempt_point(pthread_mutex_t *m)
{
    int r = mutex_unlock(m);
    coop_preempt_point();      /* after: the lock is free for whoever runs next */
    return r;
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (__builtin_expect(coop_preempt_wanted == 0 && coop_owned(m) && !owner_checked(m), 1))
        return release(m);
    return unlock_at_preempt_point(m);
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    coop_preempt_point();
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
