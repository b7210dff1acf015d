/*
 * Family thread, the other sync objects: pthread_once, unnamed semaphores, barriers and
 * spinlocks, each in glibc's own layout (so static initializers and glibc's init, destroy
 * and getvalue functions keep working) and each waiting in the parking lot.
 * Process-shared semaphores, named ones included, keep glibc's protocol, with a pool thread
 * waiting for the greenlet (shared.c); process-shared barriers go to glibc.
 */
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

/* --- pthread_once: 0 not run, 1 running, 2 done (glibc's values) --- */

EXPORT int pthread_once(pthread_once_t *once, void (*init)(void))
{
    _Atomic uint32_t *state = (_Atomic uint32_t *)once;
    for (;;) {
        uint32_t s = atomic_load_explicit(state, memory_order_acquire);
        if (s == 2)
            return 0;
        uint32_t idle = 0;
        if (s == 0 && atomic_compare_exchange_strong(state, &idle, 1)) {
            init();
            atomic_store_explicit(state, 2, memory_order_release);
            coop_unpark(state, INT32_MAX, ~0u);
            return 0;
        }
        shim_park_while(state, 1, COOP_NO_DEADLINE, ~0u, "once");
    }
}

/* --- semaphores: glibc keeps the value in the low 32 bits of the first word, and after
 * it a sharing flag that is 0 for a private semaphore (FUTEX_PRIVATE_FLAG when shared) --- */

static _Atomic uint32_t *sem_value(sem_t *s) { return (_Atomic uint32_t *)s; }
static bool sem_ours(sem_t *s) { return ((int *)s)[2] == 0 && shim_thread_objects_ours(); }

/* 0, or -1 with errno EAGAIN (try), ETIMEDOUT or EINTR. */

static int sem_take(sem_t *s, int64_t deadline)
{
    for (;;) {
        if (deadline != 0)       /* the waits are cancellation points, even when not waiting */
            shim_cancel_point();
        uint32_t v = atomic_load(sem_value(s));
        if (v > 0) {
            if (atomic_compare_exchange_weak(sem_value(s), &v, v - 1))
                return 0;
            continue;
        }
        /* The kernel restarts an untimed futex wait after a SA_RESTART handler, so glibc's
         * sem_wait does not fail with EINTR then, whatever the manual says; a timed one
         * (sem_timedwait) it does not restart. */
        int r = deadline == 0 ? EAGAIN : shim_park_while(sem_value(s), 0, deadline, ~0u, "semaphore");
        if ((r == EAGAIN && deadline != 0) || (r == COOP_RESTART && deadline == COOP_NO_DEADLINE))
            continue;
        if (r == COOP_RESTART)
            r = EINTR;

        if (r != 0) {
            errno = r;
            return -1;
        }
    }
}

/* A process-shared semaphore is coop's to wait for only when a greenlet would wait. */
static bool coop_waits(sem_t *s) { return sem_ours(s) || shim_cooperative(FAM_thread) != NULL; }

static int wait_for(sem_t *s, int64_t deadline)
{
    return sem_ours(s) ? sem_take(s, deadline) : shim_shared_sem_take(s, deadline);
}

EXPORT int sem_wait(sem_t *s)
{
    return coop_waits(s) ? wait_for(s, COOP_NO_DEADLINE) : REAL(sem_wait)(s);
}

EXPORT int sem_trywait(sem_t *s)
{
    coop_preempt_point();
    return sem_ours(s) ? sem_take(s, 0) : REAL(sem_trywait)(s);
}

EXPORT int sem_clockwait(sem_t *s, clockid_t clock, const struct timespec *abstime)
{
    if (!coop_waits(s))
        return REAL(sem_clockwait)(s, clock, abstime);
    int64_t deadline;
    int err = shim_abs_deadline(clock, abstime, &deadline);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return wait_for(s, deadline);
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime)
{
    return coop_waits(s) ? sem_clockwait(s, CLOCK_REALTIME, abstime) : REAL(sem_timedwait)(s, abstime);
}

EXPORT int sem_post(sem_t *s)
{
    if (!sem_ours(s))
        return REAL(sem_post)(s);
    uint32_t v = atomic_load(sem_value(s));
    do {
        if (v == SEM_VALUE_MAX) {
            errno = EOVERFLOW;
            return -1;
        }
    } while (!atomic_compare_exchange_weak(sem_value(s), &v, v + 1));
    coop_unpark(sem_value(s), 1, ~0u);
    return 0;
}

/* --- barriers: glibc's struct pthread_barrier { in, current_round, count, shared, out } --- */

struct barrier { _Atomic uint32_t in, round; uint32_t count; int shared; };

EXPORT int pthread_barrier_wait(pthread_barrier_t *barrier)
{
    struct barrier *b = (struct barrier *)barrier;
    if (b->shared || !shim_thread_objects_ours())
        return REAL(pthread_barrier_wait)(barrier);
    uint32_t round = atomic_load(&b->round);
    if (atomic_fetch_add(&b->in, 1) + 1 == b->count) {
        atomic_store(&b->in, 0);
        atomic_fetch_add(&b->round, 1);
        coop_unpark(&b->round, INT32_MAX, ~0u);
        return PTHREAD_BARRIER_SERIAL_THREAD;
    }
    while (atomic_load(&b->round) == round)
        shim_park_while(&b->round, round, COOP_NO_DEADLINE, ~0u, "barrier");
    return 0;
}

/* --- spinlocks: a contended one lets the other greenlets run, one of which holds it.
 * On x86-64 glibc's spinlock is free when positive (init and unlock store 1) and taken at
 * 0 or below (its lock decrements). --- */

EXPORT int pthread_spin_lock(pthread_spinlock_t *lock)
{
    coop_preempt_point();
    _Atomic int *l = (_Atomic int *)lock;
    for (;;) {
        int free = 1;
        if (atomic_compare_exchange_weak_explicit(l, &free, 0, memory_order_acquire, memory_order_relaxed))
            return 0;
        if (shim_cooperative(FAM_thread) != NULL)
            coop_yield();
        else
            __builtin_ia32_pause();
    }
}
