/*
 * Family thread, mutexes, in glibc's own pthread_mutex_t and with its lock-word protocol
 * (0 free, 1 locked, 2 locked with waiters), so PTHREAD_MUTEX_INITIALIZER and its
 * recursive and errorcheck variants keep working and an uncontended lock is one atomic
 * instruction. A contended lock parks in the core's parking lot, which wakes greenlets
 * and real threads alike. A process-shared one waits in the kernel's futex, as glibc's
 * does, through a pool thread (shared.c), so that other processes' glibc and coop wake
 * each other; glibc names a thread's owner by its tid, which the greenlets of a hub share,
 * so coop names a greenlet by an id no tid can equal. Robust and priority mutexes go to
 * glibc, past a wait for the other greenlets of the caller's OS thread (see held below).
 */
#include <limits.h>
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
#define KIND_ROBUST 0x10         /* glibc's PTHREAD_MUTEX_ROBUST_NORMAL_NP */
#define KIND_PRIO_INHERIT 0x20   /* glibc's PTHREAD_MUTEX_PRIO_INHERIT_NP */
#define KIND_PRIO_PROTECT 0x40   /* glibc's PTHREAD_MUTEX_PRIO_PROTECT_NP */
#define HELD_MAX 8

static bool coop_owned(const pthread_mutex_t *m)
{
    return shim_patched[FAM_thread]
           && (m->__data.__kind & ~(KIND_TYPE_MASK | KIND_ELISION_MASK | KIND_PSHARED)) == 0;
}

static bool shared(const pthread_mutex_t *m) { return m->__data.__kind & KIND_PSHARED; }

/* Computed once per thread-local area: every greenlet has its own (core/tls.c), and a
 * thread's original context keeps the id its thread had, whichever came first. The main
 * greenlet keeps the initial thread's area and its tid, the pid, whether or not a library's
 * constructor locked something as that thread before coop's constructor ran. The runtime
 * may run as no greenlet on an area not its OS thread's (an unwind on a greenlet's, whose
 * libunwind locks its cache: core/unwind.h; a hub's own): the OS thread's tid then, not
 * kept, or a greenlet would keep it (on hub 0's thread, main's id: pshared
 * recursive_after_preemption). A fork's child takes the id of its one thread, the pid: it
 * holds nothing its parent held, as natively. */
static __thread int owner_id;

#define GREENLET_ID_BIT 0x40000000      /* above every tid (they stay below 2^22) */

static __attribute__((noinline)) int first_owner_id(void)
{
    struct coop_greenlet *g = coop_self();
    if (g == NULL && coop_os_thread_local(&owner_id) != (void *)&owner_id)
        return coop_tls_own_tid();
    owner_id = g == NULL ? gettid()
               : coop_greenlet_is_main(g) ? getpid()
                                          : (int)(coop_greenlet_id(g) & (GREENLET_ID_BIT - 1)) | GREENLET_ID_BIT;
    return owner_id;
}

int shim_owner_id(void) { return __builtin_expect(owner_id != 0, 1) ? owner_id : first_owner_id(); }

/* Recursive and error-checking mutexes check their owner; normal and adaptive ones only
 * record it, as glibc's do. */
static bool owner_checked(const pthread_mutex_t *m)
{
    int type = m->__data.__kind & KIND_TYPE_MASK;
    return type == PTHREAD_MUTEX_RECURSIVE || type == PTHREAD_MUTEX_ERRORCHECK;
}

/* Owner ids are unique within a process only: greenlet numbers repeat in other processes,
 * and a fork's child keeps its parent's. So a process-shared mutex that checks its owner
 * also keeps the holder's process, in the robust-list link that glibc uses for robust
 * mutexes only (zeroed by pthread_mutex_init; a plain glibc process leaves it, and names
 * its owners by tid, which no coop id equals). The holder clears it before letting go: a
 * process whose ids repeat ours must never read our pid beside its own id. */
static _Atomic pid_t this_process;     /* 0 until first needed, and in a fork's child */

static void *locking_process(void)
{
    if (shim_vfork_child)       /* its memory is the parent's */
        return (void *)(uintptr_t)getpid();
    pid_t pid = atomic_load_explicit(&this_process, memory_order_relaxed);
    if (pid == 0) {
        pid = getpid();
        atomic_store_explicit(&this_process, pid, memory_order_relaxed);
    }
    return (void *)(uintptr_t)pid;
}

static bool checked_across_processes(const pthread_mutex_t *m) { return shared(m) && owner_checked(m); }

/* Whether self, the caller's owner id, holds m. The holder's process is written after the
 * id and cleared before it (mutex_unlock), by the holder only. None written: glibc locked
 * it (before coop's constructor ran), naming its owner by tid, and a tid is unique. */
static bool held_by(const pthread_mutex_t *m, int self)
{
    if (m->__data.__owner != self)
        return false;
    void *holder = m->__data.__list.__prev;
    return !checked_across_processes(m) || holder == locking_process()
           || (holder == NULL && !(self & GREENLET_ID_BIT));
}

/* The parent's holders and writers are not the child's; runs on the forking greenlet. */
static void fork_child(void)
{
    atomic_store_explicit(&this_process, 0, memory_order_relaxed);
    owner_id = getpid();        /* the child's one thread, whose tid that is */
    shim_shared_fork_child();
}

void shim_mutex_init(void) { pthread_atfork(NULL, NULL, fork_child); }

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
    if (held_by(m, self)) {
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
    if (checked_across_processes(m))
        m->__data.__list.__prev = locking_process();
    m->__data.__count = 1;
    m->__data.__nusers++;      /* glibc's pthread_mutex_destroy says EBUSY while not 0 */
    return 0;
}

/* --- the mutexes glibc keeps: robust and priority ones --- */

/* glibc names the owner of these by tid, which the greenlets of an OS thread share, and
 * would take one held by another greenlet of the caller's OS thread for the caller's: a
 * recursive one locked by both, an error-checking one EDEADLK, a normal priority-inheritance
 * one a wait for ever. So each greenlet keeps those it holds (in its thread-locals, its
 * own), and a lock that finds one naming its OS thread that it does not hold parks until
 * the lock word changes; glibc_unlock, and the end of a greenlet that leaves a robust one
 * owner-dead (core/tls.c), wake it. Past HELD_MAX at once, a greenlet is taken for the
 * owner of every one its OS thread holds, as glibc takes a thread. */
static __thread struct {
    pthread_mutex_t *mutex[HELD_MAX];
    unsigned n, overflow;
} held;

static bool owned_by_tid(const pthread_mutex_t *m)
{
    return shim_patched[FAM_thread] && (m->__data.__kind & (KIND_ROBUST | KIND_PRIO_INHERIT | KIND_PRIO_PROTECT));
}

static bool recorded(const pthread_mutex_t *m)
{
    for (unsigned i = 0; i < held.n; i++)
        if (held.mutex[i] == m)
            return true;
    return false;
}

static bool holds(const pthread_mutex_t *m) { return recorded(m) || held.overflow > 0; }

static void remember(pthread_mutex_t *m)
{
    if (held.n < HELD_MAX)
        held.mutex[held.n++] = m;
    else
        held.overflow++;
}

static void forget(pthread_mutex_t *m)
{
    for (unsigned i = 0; i < held.n; i++)
        if (held.mutex[i] == m) {
            held.mutex[i] = held.mutex[--held.n];
            return;
        }
    if (held.overflow > 0)
        held.overflow--;
}

/* The owner as glibc reads it, the lock word seen: the tid in the word, or for a
 * priority-protected one __owner. */
static pid_t owner_of(const pthread_mutex_t *m, uint32_t seen)
{
    return m->__data.__kind & KIND_PRIO_PROTECT ? __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED)
                                                : (pid_t)(seen & FUTEX_TID_MASK);
}

/* Whether another greenlet of the caller's OS thread holds m, its lock word seen. */
static bool sibling_holds(const pthread_mutex_t *m, uint32_t seen)
{
    pid_t owner = owner_of(m, seen);
    return owner != 0 && !holds(m) && owner == coop_tls_own_tid();
}

/* 0 once no other greenlet of the caller's OS thread holds m; else EBUSY for a try,
 * ETIMEDOUT past abstime, or EINVAL for an abstime that is none. */
static int wait_for_siblings(pthread_mutex_t *m, bool try, clockid_t clock, const struct timespec *abstime)
{
    int64_t deadline = COOP_NO_DEADLINE;
    for (;;) {
        uint32_t seen = atomic_load(word(m));
        if (!sibling_holds(m, seen))
            return 0;
        if (try)
            return EBUSY;
        if (abstime != NULL && deadline == COOP_NO_DEADLINE) {
            int err = shim_abs_deadline(clock, abstime, &deadline);
            if (err != 0)
                return err;
        }
        if (shim_park_while(word(m), seen, deadline, ~0u, "mutex") == ETIMEDOUT)
            return ETIMEDOUT;
        shim_async_cancel_point();
    }
}

/* glibc checks the owner at the unlock, and at a recursive or error-checking one's relock,
 * against the tid of the OS thread it was locked on: one the caller holds moves to its OS
 * thread's first (a robust one moved with it already, core/tls.c). A priority-inheritance
 * one only while nobody waits: the kernel then records its owner task, which stays. False
 * for one the caller holds that still names another OS thread. */
static bool claim(pthread_mutex_t *m)
{
    if (!recorded(m))
        return true;
    pid_t self = coop_tls_own_tid();
    if (m->__data.__kind & KIND_PRIO_PROTECT) {
        if (m->__data.__owner != 0)
            m->__data.__owner = self;
        return true;
    }
    uint32_t seen = atomic_load(word(m));
    if (seen != 0 && seen == (seen & FUTEX_TID_MASK) && seen != (uint32_t)self
        && atomic_compare_exchange_strong(word(m), &seen, (uint32_t)self)) {
        m->__data.__owner = self;
        return true;
    }
    return owner_of(m, seen) == self;
}

/* glibc's lock, trylock (try) or clocklock (abstime), after the wait for siblings. */
static __attribute__((noinline)) int glibc_lock(pthread_mutex_t *m, bool try, clockid_t clock,
                                                const struct timespec *abstime)
{
    bool by_tid = owned_by_tid(m);
    int err = by_tid ? wait_for_siblings(m, try, clock, abstime) : 0;
    if (err != 0)
        return err;
    if (by_tid && !claim(m)) {
        /* The caller's, which claim could not move (a thread waits in the kernel): glibc would
         * wait for the caller itself. */
        int type = m->__data.__kind & KIND_TYPE_MASK;
        if (type == PTHREAD_MUTEX_ERRORCHECK)
            return EDEADLK;
        if (type == PTHREAD_MUTEX_RECURSIVE) {
            if (m->__data.__count == ~0u)
                return EAGAIN;
            m->__data.__count++;
            return 0;
        }
    }
    err = try ? REAL(pthread_mutex_trylock)(m)
          : abstime != NULL ? REAL(pthread_mutex_clocklock)(m, clock, abstime)
                            : REAL(pthread_mutex_lock)(m);
    bool taken = err == 0 || err == EOWNERDEAD;
    bool relocked = (m->__data.__kind & KIND_TYPE_MASK) == PTHREAD_MUTEX_RECURSIVE && m->__data.__count > 1;
    if (by_tid && taken && !relocked)
        remember(m);
    return err;
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
        return glibc_lock(m, false, 0, NULL);
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

/* The kernel takes the unlock of a priority-inheritance mutex that another waits for only
 * from the task it records: a greenlet that moved to another OS thread meanwhile cannot
 * unlock it (claim moves only one nobody waits for). Said once: the program may hang on it. */
static __attribute__((noinline)) int glibc_unlock(pthread_mutex_t *m)
{
    bool by_tid = owned_by_tid(m);
    /* glibc checks the owner of all but a normal priority-protected one, by tid alone. */
    bool checked = !(m->__data.__kind & KIND_PRIO_PROTECT) || owner_checked(m);
    if (by_tid && checked && sibling_holds(m, atomic_load(word(m))))
        return EPERM;
    bool last = (m->__data.__kind & KIND_TYPE_MASK) != PTHREAD_MUTEX_RECURSIVE || m->__data.__count <= 1;
    if (by_tid)
        claim(m);
    int err = REAL(pthread_mutex_unlock)(m);
    if (err == 0 && last && by_tid) {
        forget(m);
        coop_unpark(word(m), INT_MAX, ~0u);
    }
    static atomic_bool warned;
    if (err == EPERM && (m->__data.__kind & KIND_PRIO_INHERIT) && (atomic_load(word(m)) & FUTEX_TID_MASK) != 0
        && !atomic_exchange(&warned, true))
        coop_warn("pthread_mutex_unlock: EPERM for a locked priority-inheritance mutex: if this thread "
                  "locked it, it moved to another OS thread since while another thread waited for it, "
                  "which the kernel does not allow (run with cooprun --no-thread); said once");
    return err;
}

static inline int mutex_unlock(pthread_mutex_t *m)
{
    if (!coop_owned(m))
        return glibc_unlock(m);
    if (owner_checked(m)) {
        if (!held_by(m, shim_owner_id()))
            return EPERM;
        if (--m->__data.__count > 0)
            return 0;
        if (shared(m))
            m->__data.__list.__prev = NULL;     /* before the lock is free: see held_by */
    }
    return release(m);
}

/* Out of line: the exported unlock's fast path keeps no stack frame. */
__attribute__((noinline)) int shim_mutex_unlock(pthread_mutex_t *m) { return mutex_unlock(m); }

/* The exported names: the common case (a free normal or adaptive coop mutex, its owner id
 * known, no preemption asked for) inline and without a stack frame, as glibc's; anything
 * else in a second call. A preemption asked for is taken at a lock, before it, never at an
 * unlock: the code right after an unlock often finishes what the lock guarded (Guile
 * publishes its VM stack's new pointer there), a window a thread is rarely stopped in
 * natively. Taken at the unlock, the preemption asked for while the holder computed in
 * libc put every other thread in it, and Guile's collector read the stale pointer and
 * zeroed live memory. */
static __attribute__((noinline)) int lock_at_preempt_point(pthread_mutex_t *m)
{
    coop_preempt_point();
    return mutex_lock(m);
}

/* A coop mutex whose owner nobody checks (normal or adaptive): the kind compared once, and
 * conditions joined with &, so that the fast paths below branch twice, not once for each. */
static inline bool unchecked_coop_mutex(const pthread_mutex_t *m)
{
    unsigned kind = (unsigned)m->__data.__kind & ~(unsigned)(KIND_ELISION_MASK | KIND_PSHARED);
    return shim_patched[FAM_thread] & ((kind == PTHREAD_MUTEX_NORMAL) | (kind == PTHREAD_MUTEX_ADAPTIVE_NP));
}

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    int self = owner_id;
    if (__builtin_expect((self != 0) & (coop_preempt_wanted == 0) & unchecked_coop_mutex(m) && take_free(m), 1)) {
        m->__data.__owner = self;
        m->__data.__nusers++;
        return 0;
    }
    return lock_at_preempt_point(m);
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (__builtin_expect(unchecked_coop_mutex(m), 1))
        return release(m);
    return shim_mutex_unlock(m);
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    coop_preempt_point();
    return coop_owned(m) ? lock(m, 0) : glibc_lock(m, true, 0, NULL);
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clock, const struct timespec *abstime)
{
    if (!coop_owned(m))
        return glibc_lock(m, false, clock, abstime);
    int64_t deadline;
    int err = shim_abs_deadline(clock, abstime, &deadline);
    return err != 0 ? err : lock(m, deadline);
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    return pthread_mutex_clocklock(m, CLOCK_REALTIME, abstime);
}
