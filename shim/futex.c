/*
 * Family thread, futexes. Every sync object of the shim waits the futex way, "park while
 * this word still holds the value I saw", in the core's parking lot; and programs that
 * call futex(2) themselves through syscall() (libstdc++'s atomic wait, Rust's Mutex,
 * Condvar and Once) get the same, unless the futex may be shared with another process:
 * then the wait is the kernel's, made on the threadpool.
 * With one greenlet, futex(2) is the kernel's; every other system call number passes
 * through.
 */
#include <fcntl.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <time.h>
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

static long real_futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts, uint32_t val3)
{
    return REAL(syscall)(SYS_futex, addr, op, val, ts, NULL, val3);
}

/* --- shared futexes: the kernel's own wait, on the threadpool --- */

/*
 * Whether another process could wake a futex at addr. Not when its page is private
 * anonymous memory (heap, stack, .bss): the kernel keys such a futex by this process's
 * address space even without FUTEX_PRIVATE_FLAG, so the parking lot is exact for it, and
 * libstdc++'s std::future, whose futexes are not private, keeps parking there. Shared
 * mappings and file pages are shareable. /proc/self/pagemap says which (bit 61, "file
 * page or shared anonymous", of a present page: bit 63); it is opened for each question,
 * since a program may close any fd. When in doubt, shareable.
 */
static bool shareable(const void *addr)
{
    int fd = REAL(openat)(AT_FDCWD, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
    uint64_t entry = 0;
    off_t at = (off_t)((uintptr_t)addr / (uintptr_t)sysconf(_SC_PAGESIZE) * sizeof entry);
    bool known = fd >= 0 && REAL(pread)(fd, &entry, sizeof entry, at) == sizeof entry;
    if (fd >= 0)
        REAL(close)(fd);
    return !known || !(entry >> 63 & 1) || (entry >> 61 & 1);
}

/*
 * A futex other processes can reach gets their wakes in the kernel only: a pool thread
 * waits there while the caller is parked. It waits for two words at once
 * (futex_waitv, Linux 5.16+): the program's, and a private one that a signal handler's
 * interruption sets and wakes, so that the caller's wait can end with EINTR as in the
 * kernel. futex_waitv knows no bitset: a FUTEX_WAIT_BITSET may return 0 for a wake of
 * another bitset, a spurious wakeup that futex callers allow for.
 */
struct shared_wait {
    uint32_t *addr;
    uint32_t val;
    uint32_t bitset;
    const struct timespec *deadline;   /* absolute, on clock; NULL: none */
    clockid_t clock;
    _Atomic uint32_t cancelled;
    long ret;
    int err;
};

static void shared_wait_run(void *p)
{
    struct shared_wait *w = p;
    struct futex_waitv words[2] = {
        { .val = w->val, .uaddr = (uintptr_t)w->addr, .flags = FUTEX_32 },
        { .val = 0, .uaddr = (uintptr_t)&w->cancelled, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG },
    };
    w->ret = REAL(syscall)(SYS_futex_waitv, words, 2, 0, w->deadline, w->clock);
    if (w->ret < 0 && errno == ENOSYS)      /* before Linux 5.16: a wait no signal ends */
        w->ret = real_futex(w->addr, FUTEX_WAIT_BITSET | (w->clock == CLOCK_REALTIME ? FUTEX_CLOCK_REALTIME : 0),
                            w->val, w->deadline, w->bitset);
    w->err = errno;
}

static void shared_wait_cancel(void *p)
{
    struct shared_wait *w = p;
    atomic_store(&w->cancelled, 1);
    real_futex((uint32_t *)&w->cancelled, FUTEX_WAKE_PRIVATE, 1, NULL, 0);
}

/* 0 when woken, else the errno of the wait or EINTR / COOP_RESTART. */
static int shared_wait(uint32_t *addr, uint32_t val, const struct timespec *deadline, clockid_t clock,
                       uint32_t bitset)
{
    struct shared_wait w = { addr, val, bitset, deadline, clock, 0, 0, 0 };
    int interrupted = coop_offload_interruptible(shared_wait_run, shared_wait_cancel, &w);
    if (w.ret == 0)
        return 0;       /* the program's word was woken: that wake is the caller's */
    if (interrupted != 0)
        return interrupted;
    return w.ret < 0 ? w.err : EINTR;
}

/* --- waits --- */

/* Relative timeouts this long (30,000 years) are waits without one. */
#define FOREVER_S (1LL << 40)

/* The lot's key for a futex: its address when private, the next byte when not (futex
 * words are aligned: no other waiter parks there). The kernel keeps the two kinds apart
 * even on one word: a shared wake never wakes a private waiter, nor the other way round. */
static const void *lot_key(const uint32_t *addr, int op)
{
    return (const char *)addr + !(op & FUTEX_PRIVATE_FLAG);
}

/* FUTEX_WAIT's timeout is relative; FUTEX_WAIT_BITSET's is absolute, monotonic unless
 * FUTEX_CLOCK_REALTIME. Futexes no other process can reach park in the lot. */
static int wait_once(uint32_t *addr, int op, uint32_t val, const struct timespec *ts, uint32_t bitset)
{
    clockid_t clock = op & FUTEX_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC;
    struct timespec abs;
    if (ts != NULL && (op & FUTEX_CMD_MASK) == FUTEX_WAIT) {
        clock = CLOCK_MONOTONIC;
        clock_gettime(clock, &abs);
        abs.tv_sec += ts->tv_sec + (abs.tv_nsec + ts->tv_nsec) / 1000000000;
        abs.tv_nsec = (abs.tv_nsec + ts->tv_nsec) % 1000000000;
        ts = ts->tv_sec < FOREVER_S ? &abs : NULL;
    }
    if (!(op & FUTEX_PRIVATE_FLAG) && shareable(addr))
        return shared_wait(addr, val, ts, clock, bitset);
    int64_t deadline = ts != NULL ? shim_deadline_at(clock, ts) : COOP_NO_DEADLINE;
    struct word_wait w = { (_Atomic uint32_t *)addr, val };
    return coop_park(lot_key(addr, op), unchanged, &w, bitset, deadline, "futex");
}

/*
 * The kernel checks the call first: the timeout as it reads it, then everything else
 * with a wait that cannot last (a zero timeout, relative or absolute), which also
 * answers when the word has changed or a wake came at once. Only then does coop read
 * the word, or wait.
 */
static long futex_wait(uint32_t *addr, int op, uint32_t val, const struct timespec *user_ts, uint32_t bitset)
{
    struct timespec ts, zero = { 0, 0 };
    if (user_ts != NULL) {
        int err = shim_read_timeout(user_ts, &ts);
        if (err != 0)
            return fail(err);
    }
    int caller_errno = errno;           /* a wake leaves it so, not a probe's ETIMEDOUT */
    for (;;) {
        long r = real_futex(addr, op, val, &zero, bitset);
        if (r < 0 && errno != ETIMEDOUT)
            return r;
        int err = r == 0 ? 0 : wait_once(addr, op, val, user_ts != NULL ? &ts : NULL, bitset);
        if (err == COOP_RESTART && user_ts == NULL)
            continue;                   /* the kernel restarts an untimed wait only */
        if (err == COOP_RESTART)
            err = EINTR;
        if (err != 0)
            return fail(err);
        errno = caller_errno;
        return 0;
    }
}

/* Wakes parked greenlets and threads first, then, for what is left of n, waiters the
 * kernel holds (threads that are not greenlets; other processes, on a shared futex). The
 * kernel wakes one waiter even when asked for none, and its errors (a bad address, a
 * zero bitset) are the call's: the lot holds waiters only where the kernel accepted. */
static long futex_wake(uint32_t *addr, int op, int n, uint32_t bitset)
{
    int want = n > 0 ? n : 1;
    int woken = bitset != 0 ? coop_unpark(lot_key(addr, op), want, bitset) : 0;
    if (woken == want)
        return woken;
    long more = real_futex(addr, op, (uint32_t)(want - woken), NULL, bitset);
    if (more < 0)
        return woken > 0 ? woken : more;
    return woken + more;
}

/* Six arguments whatever the number, as glibc's syscall() takes six registers: the sixth
 * comes from the caller's stack, from a slot the caller may not have written (fewer
 * arguments) and that ASan may count as its frame's redzone. Not checked: a false report. */
EXPORT __attribute__((no_sanitize("address"))) long syscall(long number, ...)
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
        if (shim_cooperative(FAM_thread) == NULL)
            break;       /* alone, or no greenlet: the kernel's own wait is exact */
        return futex_wait(addr, op, (uint32_t)a[2], (const struct timespec *)a[3],
                          (op & FUTEX_CMD_MASK) == FUTEX_WAIT ? FUTEX_BITSET_MATCH_ANY : (uint32_t)a[5]);
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET:
        return futex_wake(addr, op, (int)a[2],
                          (op & FUTEX_CMD_MASK) == FUTEX_WAKE ? FUTEX_BITSET_MATCH_ANY : (uint32_t)a[5]);
    }
    return REAL(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
