/*
 * Family thread, objects shared with other processes: process-shared mutexes and
 * semaphores, named ones included. Another process ends a wait on one through the kernel's
 * futex, which a greenlet cannot sleep in without stopping its hub: a thread of the pool
 * sleeps there instead (coop_offload) while the greenlet parks. It sleeps for at most SLICE
 * at a time, so that waiters never keep the pool from other work (a name lookup of the
 * holder, say) for long; the greenlet then looks again, and acts on a cancellation.
 * Semaphores, which have no owner, keep glibc's own protocol on both sides; mutexes name
 * their owner, and coop's ids for greenlets (mutex.c) never equal another process's tids.
 */
#include <linux/futex.h>
#include <semaphore.h>
#include <sys/syscall.h>

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

struct word_wait { _Atomic uint32_t *word; uint32_t val; };

static int futex_wait_until(void *ctx, int64_t until)
{
    struct word_wait *w = ctx;
    struct timespec at = instant(until);
    REAL(syscall)(SYS_futex, w->word, FUTEX_WAIT_BITSET, w->val, until == COOP_NO_DEADLINE ? NULL : &at,
                  NULL, FUTEX_BITSET_MATCH_ANY);
    return 0;
}

int shim_shared_futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t deadline)
{
    struct word_wait w = { word, val };
    if (shim_cooperative(FAM_thread) != NULL)
        wait_on_pool(futex_wait_until, &w, deadline);
    else
        futex_wait_until(&w, deadline);
    return coop_now() >= deadline ? ETIMEDOUT : 0;
}

void shim_shared_futex_wake(_Atomic uint32_t *word, int n)
{
    REAL(syscall)(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

static int sem_wait_until(void *s, int64_t until)
{
    struct timespec at = instant(until);
    return REAL(sem_clockwait)(s, CLOCK_MONOTONIC, &at) == 0 ? 0 : errno;
}

int shim_shared_sem_take(sem_t *s, int64_t deadline)
{
    for (;;) {
        shim_cancel_point();
        if (REAL(sem_trywait)(s) == 0)
            return 0;
        if (errno != EAGAIN)
            return -1;
        if (coop_now() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        int err = wait_on_pool(sem_wait_until, s, deadline);
        if (err == 0)
            return 0;
        if (err != ETIMEDOUT && err != EINTR) {
            errno = err;
            return -1;
        }
    }
}
