/*
 * System calls made by the runtime itself. They go straight to the kernel: the libc
 * functions of the same names may be coop's own wrappers, which must never be re-entered
 * from inside the runtime.
 */
#ifndef COOP_SYS_H
#define COOP_SYS_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

static inline long coop_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define coop_sys(n, a, b, c) coop_sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* futex(2) on a private word; returns 0 or -errno. */
static inline long coop_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    return coop_sys6(SYS_futex, (long)word, op | 128 /* FUTEX_PRIVATE_FLAG */, val, (long)ts, 0, 0);
}

/* Blocks every signal on the calling OS thread, for a runtime thread to inherit, but glibc's
 * own two (32, cancellation; 33, setxid): setuid() in a threaded process signals every thread
 * glibc knows with 33 and waits until each has answered, and a runtime thread is one. The
 * kernel's sigset is 8 bytes; sigset_t is larger, and only its first word is used. */
static inline void coop_block_all_signals(sigset_t *old)
{
    uint64_t all = ~(uint64_t)0 & ~(1ULL << (32 - 1)) & ~(1ULL << (33 - 1));
    coop_sys6(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, (long)&all, (long)old, 8, 0, 0);
}

static inline void coop_restore_signals(const sigset_t *old)
{
    coop_sys6(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, (long)old, 0, 8, 0, 0);
}

/* Queues info again, for the process pid (tid 0) or its thread tid, from the thread
 * caller_tid: the kernel lets only the thread the pid names claim a code of its own or of
 * kill's (si_code >= 0, SI_TKILL), so another thread's copy says SI_QUEUE. 0 or -errno. */
static inline long coop_queue_again(pid_t pid, pid_t tid, pid_t caller_tid, const siginfo_t *info)
{
    siginfo_t again = *info;
    if ((again.si_code >= 0 || again.si_code == SI_TKILL) && caller_tid != pid)
        again.si_code = SI_QUEUE;
    return tid != 0 ? coop_sys6(SYS_rt_tgsigqueueinfo, pid, tid, again.si_signo, (long)&again, 0, 0)
                    : coop_sys(SYS_rt_sigqueueinfo, pid, again.si_signo, (long)&again);
}

/* A small lock for runtime structures shared between OS threads. Held only briefly. */
typedef struct { _Atomic uint32_t state; } coop_lock_t;   /* 0 free, 1 held, 2 contended */

static inline void coop_lock(coop_lock_t *l)
{
    uint32_t c = 0;
    if (atomic_compare_exchange_strong_explicit(&l->state, &c, 1, memory_order_acquire, memory_order_relaxed))
        return;
    if (c != 2)
        c = atomic_exchange_explicit(&l->state, 2, memory_order_acquire);
    while (c != 0) {
        coop_futex(&l->state, 0 /* FUTEX_WAIT */, 2, NULL);
        c = atomic_exchange_explicit(&l->state, 2, memory_order_acquire);
    }
}

static inline void coop_unlock(coop_lock_t *l)
{
    if (atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2)
        coop_futex(&l->state, 1 /* FUTEX_WAKE */, 1, NULL);
}

#endif
