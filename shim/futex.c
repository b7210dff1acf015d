/*
 * Family thread, futexes. Every sync object of the shim waits the futex way, "park while
 * this word still holds the value I saw", in the core's parking lot; and programs that
 * call futex(2) themselves through syscall() (libstdc++'s atomic wait, Rust's Mutex,
 * Condvar and Once) get the same. Every other system call number passes through.
 */
#include <linux/futex.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

struct word_wait { _Atomic uint32_t *word; uint32_t seen; };

static bool unchanged(const void *ctx)
{
    const struct word_wait *w = ctx;
    return atomic_load(w->word) == w->seen;
}

int shim_park_while(_Atomic uint32_t *word, uint32_t seen, int64_t deadline, uint32_t bitset,
                    const char *what)
{
    struct word_wait w = { word, seen };
    return coop_park(word, unchanged, &w, bitset, deadline, what);
}

static long fail(int err)
{
    errno = err;
    return -1;
}

/* FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute, monotonic unless
 * FUTEX_CLOCK_REALTIME. */
static long futex_wait(uint32_t *addr, int op, uint32_t val, const struct timespec *ts, uint32_t bitset)
{
    int64_t deadline = COOP_NO_DEADLINE;
    if (ts != NULL) {
        if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000 || ts->tv_sec < 0)
            return fail(EINVAL);
        if ((op & FUTEX_CMD_MASK) == FUTEX_WAIT)
            deadline = shim_deadline_after(ts);
        else
            deadline = shim_deadline_at(op & FUTEX_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC, ts);
    }
    if (bitset == 0)
        return fail(EINVAL);
    for (;;) {
        switch (shim_park_while((_Atomic uint32_t *)addr, val, deadline, bitset, "futex")) {
        case 0: return 0;
        case EAGAIN: return fail(EAGAIN);
        case ETIMEDOUT: return fail(ETIMEDOUT);
        case COOP_RESTART:              /* the kernel restarts an untimed wait only */
            if (ts == NULL)
                continue;
            return fail(EINTR);
        default: return fail(EINTR);
        }
    }
}

/* Wakes parked greenlets and threads first, then, for what is left of n, waiters the
 * kernel holds (threads of other processes on a shared futex). */
static long futex_wake(uint32_t *addr, int op, int n, uint32_t bitset)
{
    if (bitset == 0)
        return fail(EINVAL);
    int woken = n > 0 ? coop_unpark(addr, n, bitset) : 0;
    if (woken < n) {
        long more = REAL(syscall)(SYS_futex, addr, op, n - woken, NULL, NULL, bitset);
        if (more > 0)
            woken += (int)more;
    }
    return woken;
}

EXPORT long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number != SYS_futex || !shim_patched[FAM_thread])
        return REAL(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
    uint32_t *addr = (uint32_t *)a[0];
    int op = (int)a[1];
    switch (op & FUTEX_CMD_MASK) {
    case FUTEX_WAIT:
    case FUTEX_WAIT_BITSET:
        if (coop_self() == NULL)
            break;       /* threads that are not greenlets sleep in the kernel */
        return futex_wait(addr, op, (uint32_t)a[2], (const struct timespec *)a[3],
                          (op & FUTEX_CMD_MASK) == FUTEX_WAIT ? ~0u : (uint32_t)a[5]);
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET:
        return futex_wake(addr, op, (int)a[2], (op & FUTEX_CMD_MASK) == FUTEX_WAKE ? ~0u : (uint32_t)a[5]);
    }
    return REAL(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
