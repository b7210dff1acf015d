/*
 * Family thread, objects shared with other processes: process-shared mutexes, condition
 * variables, read-write locks and semaphores, named ones included. Another process ends a
 * wait on one through the kernel's futex, which a greenlet cannot sleep in without stopping
 * its hub: a thread of the pool sleeps there instead while the greenlet parks. A mutex's
 * word waits as any futex(2) a program makes (futex.c); semaphores, condition variables and
 * read-write locks keep glibc's own protocol, run on a pool thread for at most SLICE at a
 * time, so that waiters never keep the pool from other work (a name lookup of the holder,
 * say) for long: the greenlet then looks again, and acts on a cancellation. Mutexes name
 * their owner, and coop's ids for greenlets (mutex.c) never equal another process's tids.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#define SLICE_NS (50 * 1000000LL)

struct sliced_wait {
    int (*wait)(void *ctx, int64_t until);
    void *ctx;
    int64_t until;
    int result;
};

static void run_wait(void *arg)
{
    struct sliced_wait *w = arg;
    w->result = w->wait(w->ctx, w->until);
}

/* wait(ctx, until) on a pool thread, until the deadline or the end of a slice (both on
 * CLOCK_MONOTONIC, in ns), while the calling greenlet parks; its result. */
static int wait_on_pool(int (*wait)(void *ctx, int64_t until), void *ctx, int64_t deadline)
{
    int64_t slice_end = coop_now() + SLICE_NS;
    struct sliced_wait w = { wait, ctx, deadline < slice_end ? deadline : slice_end, 0 };
    coop_offload(run_wait, &w);
    return w.result;
}

static struct timespec instant(int64_t ns) { return (struct timespec){ ns / 1000000000, ns % 1000000000 }; }

/* A mutex's word: futex(2) through coop's own syscall() (futex.c), whose wait on a word
 * another process can reach is the kernel's, made on the pool while the greenlet parks. */
int shim_shared_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline)
{
    struct timespec at = instant(deadline);
    syscall(SYS_futex, word, FUTEX_WAIT_BITSET, val, deadline == COOP_NO_DEADLINE ? NULL : &at, NULL,
            FUTEX_BITSET_MATCH_ANY);
    return coop_now() >= deadline ? ETIMEDOUT : 0;
}

void shim_shared_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

static int sem_wait_until(void *s, int64_t until)
{
    struct timespec at = instant(until);
    return REAL(sem_clockwait)(s, CLOCK_MONOTONIC, &at) == 0 ? 0 : errno;
}

int shim_shared_sem_take(sem_t *s, int64_t deadline)
{
    int caller_errno = errno;       /* what a take leaves there, not the tries' EAGAIN */
    for (;;) {
        shim_cancel_point();
        if (REAL(sem_trywait)(s) == 0)
            break;
        if (errno != EAGAIN)
            return -1;
        if (coop_now() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        int err = wait_on_pool(sem_wait_until, s, deadline);
        if (err == 0)
            break;
        if (err != ETIMEDOUT && err != EINTR) {
            errno = err;
            return -1;
        }
    }
    errno = caller_errno;
    return 0;
}

/* --- condition variables: a pool thread waits in glibc's protocol, registered as a waiter
 * while the greenlet still holds the mutex, so that no signal sent under it is lost --- */

struct cond_wait {
    pthread_cond_t *cond;
    pthread_mutex_t own;           /* the pool thread's: glibc lets it go once registered */
    int64_t until;
    _Atomic bool holding, returned;
};

static void cond_wait_on_pool(void *arg)
{
    struct cond_wait *w = arg;
    struct timespec at = instant(w->until);
    REAL(pthread_mutex_lock)(&w->own);
    atomic_store(&w->holding, true);
    REAL(pthread_cond_clockwait)(w->cond, &w->own, CLOCK_MONOTONIC, &at);
    atomic_store(&w->returned, true);
    REAL(pthread_mutex_unlock)(&w->own);
}

static bool registered(struct cond_wait *w)
{
    return atomic_load(&w->returned)
           || (atomic_load(&w->holding) && atomic_load((_Atomic int *)&w->own.__data.__lock) == 0);
}

int shim_shared_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline)
{
    int64_t slice_end = coop_now() + SLICE_NS;
    struct cond_wait w = { .cond = c, .until = deadline < slice_end ? deadline : slice_end };
    pthread_mutex_init(&w.own, NULL);
    struct coop_offload *call = coop_offload_start(cond_wait_on_pool, &w);
    for (int64_t nap = 20000; call != NULL && !registered(&w); nap = nap < 1000000 ? nap * 2 : nap)
        coop_sleep_until(coop_now() + nap);
    int err = shim_mutex_unlock(m);
    coop_offload_finish(call);
    if (err != 0)
        return err;
    int relocked = shim_mutex_lock(m);     /* a robust one's EOWNERDEAD comes first, as in glibc */
    return relocked != 0 ? relocked : coop_now() >= deadline ? ETIMEDOUT : 0;
}

/* --- read-write locks: glibc's protocol; a pool thread takes the lock for the greenlet.
 * glibc names the writer by the tid of the thread that unlocks, which the greenlets of a
 * hub share: which greenlet writes is kept here, for EDEADLK. --- */

#define WRITERS_KEPT 64
static pthread_mutex_t writers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { pthread_rwlock_t *lock; struct coop_greenlet *g; } writers[WRITERS_KEPT];

/* The entry saying that g writes l; with g NULL and l NULL, a free one. */
static int writer_entry(pthread_rwlock_t *l, struct coop_greenlet *g)
{
    for (int i = 0; i < WRITERS_KEPT; i++)
        if (writers[i].lock == l && writers[i].g == g)
            return i;
    return -1;
}

/* In a fork's child: another thread may have held the lock at the fork, and the writers
 * named are the parent's threads, the forking one included, which in the child is another
 * thread (that holds nothing). */
void shim_shared_fork_child(void)
{
    writers_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    memset(writers, 0, sizeof writers);
}

static bool writes(pthread_rwlock_t *l, struct coop_greenlet *g)
{
    shim_mutex_lock(&writers_lock);
    bool found = writer_entry(l, g) >= 0;
    shim_mutex_unlock(&writers_lock);
    return found;
}

/* Records (g) or forgets (NULL) that `was` writes l. Beyond WRITERS_KEPT nothing is kept,
 * and only EDEADLK goes undetected. */
static void set_writer(pthread_rwlock_t *l, struct coop_greenlet *was, struct coop_greenlet *g)
{
    shim_mutex_lock(&writers_lock);
    int i = was ? writer_entry(l, was) : writer_entry(NULL, NULL);
    if (i >= 0) {
        writers[i].lock = g ? l : NULL;
        writers[i].g = g;
    }
    shim_mutex_unlock(&writers_lock);
}

struct rwlock_wait { pthread_rwlock_t *lock; bool write; };

static int rwlock_wait_until(void *ctx, int64_t until)
{
    struct rwlock_wait *w = ctx;
    struct timespec at = instant(until);
    return w->write ? REAL(pthread_rwlock_clockwrlock)(w->lock, CLOCK_MONOTONIC, &at)
                    : REAL(pthread_rwlock_clockrdlock)(w->lock, CLOCK_MONOTONIC, &at);
}

int shim_shared_rwlock_lock(pthread_rwlock_t *l, bool write, int64_t deadline)
{
    struct coop_greenlet *self = coop_self();
    if (deadline != 0 && writes(l, self))
        return EDEADLK;
    struct rwlock_wait w = { l, write };
    int err;
    while ((err = write ? REAL(pthread_rwlock_trywrlock)(l) : REAL(pthread_rwlock_tryrdlock)(l)) == EBUSY
           && deadline != 0) {
        if (coop_now() >= deadline)
            return ETIMEDOUT;
        err = wait_on_pool(rwlock_wait_until, &w, deadline);
        if (err != ETIMEDOUT) {
            if (err == 0 && write)   /* taken by the pool thread: the unlock will be ours */
                l->__data.__cur_writer = (int)gettid();
            break;
        }
    }
    if (err == 0 && write)
        set_writer(l, NULL, self);
    return err;
}

int shim_shared_rwlock_unlock(pthread_rwlock_t *l)
{
    set_writer(l, coop_self(), NULL);
    return REAL(pthread_rwlock_unlock)(l);
}
