/*
 * Family signal: signals per greenlet, as per thread.
 *
 * The kernel knows OS threads only; the greenlets of a hub share one, with one signal mask
 * and one pending set. So coop keeps, as GNU Pth did, each greenlet's mask and its
 * thread-directed pending signals in user space, and steers every signal to a greenlet:
 *
 *   - Masks. pthread_sigmask and sigprocmask change the calling greenlet's mask only. The
 *     hubs' threads' real masks block exactly the signals that every greenlet blocks (per
 *     signal, a count of the greenlets blocking it, against the count of greenlets; other
 *     hubs' threads follow at their next switch, see update_real_mask), so a
 *     process-directed signal that nobody accepts
 *     stays pending in the kernel, as it would natively, until a greenlet unblocks it (the
 *     kernel then delivers it at once, to that greenlet) or takes it with sigwait. The
 *     runtime's own signals are never blocked there but for SIGURG, which is the program's
 *     too: blocked by every greenlet, it stays pending in the kernel, where a signalfd reads
 *     it (PostgreSQL's latches), and the hubs go unpreempted meanwhile. coop's and libuv's
 *     threads block all.
 *   - Delivery. A handler the program installs runs behind coop's trampoline. When the
 *     kernel delivers a signal, the trampoline picks its greenlet: a greenlet waiting for
 *     it in sigwait, else the running greenlet if it accepts it (the handler runs at once,
 *     as natively), else the main greenlet, else any that accepts it (a pass over the
 *     greenlets, in normal context on the hub). A signal for a greenlet that is not
 *     running is queued to it and interrupts its wait (EINTR, or a restart under
 *     SA_RESTART); its handler runs on that greenlet, on its own stack, when the wait has
 *     been undone (core: coop_after_wait), so the handler may longjmp out. One that is
 *     running on another OS thread, maybe in a system call coop left to the kernel, is
 *     kicked: that thread is sent the signal again, marked, and its trampoline runs the
 *     queued one there, which ends the call as natively (see kick).
 *   - Thread-directed signals. pthread_kill, pthread_sigqueue and raise to a greenlet never
 *     reach the kernel unless the default action must happen (the process ends or stops):
 *     the signal is queued to its target, pending while the target blocks it.
 *   - Waits. sigwait and its kin take a queued signal, a process-pending one, or one pending
 *     in the kernel (a real sigtimedwait that never waits); otherwise they wait on a
 *     signalfd for the set, or to be handed a signal. sigsuspend, pause, ppoll, pselect and
 *     epoll_pwait set the greenlet's mask for the wait and end when a handler ran on it.
 *     The trampoline never runs a handler on a greenlet in such a wait, or in sigwait
 *     (`in_wait`): it queues the signal, which ends the park, and the handler runs at its
 *     end. Run at once, between the wait's look at the count and its park, it would end
 *     nothing: the greenlet would sleep on with its handler run (signal_window); in
 *     sigwait, it would run in coop's code (a lock held, an fd not yet recorded) and could
 *     jump out of it.
 *   - A process-directed signal queued to a greenlet is only lent to it: the process's
 *     again should that greenlet come to block it or end first (see "Lent signals").
 *
 * SIGURG is coop's preemption signal too (core/preempt.c), and one of the runtime's signals:
 * the trampoline hands the monitor's to coop, the program's to its handler; while the
 * program leaves SIGURG at SIG_DFL or SIG_IGN, coop's own handler stays installed.
 *
 * Who touches what: a greenlet's mask is written by that greenlet only (handlers running on
 * it restore what they change); its two queues (directed, lent) are pushed by anyone (other
 * greenlets, handlers, other OS threads; lending to it takes process_owner but for its own
 * trampoline: see "Lent signals"; so does sending to it from another greenlet, as its exit
 * frees the state only after it took that lock: send_to) and taken by that greenlet only,
 * or as it ends. Its sigwaits under way (`waiting`: records in their frames) are written by
 * that greenlet only: one ends as its call returns, in a jump out of a handler that leaves
 * it (leave_waits), or as an exception or cancellation unwinds its frame (a cleanup:
 * end_wait).
 * Queue entries come from a fixed pool with a lock-free free list, since handlers cannot
 * allocate; a signal moved between queues keeps its entry. A taker takes a queue's list
 * whole and gives back what it leaves under what was pushed meanwhile (put_back): signals
 * keep the order they were sent in. A new one finds none past the shared entries or
 * RLIMIT_SIGPENDING, where the kernel's queue would be full, and does as there (enqueue): a
 * standard signal or kill's is kept without its siginfo; sigqueue, pthread_sigqueue,
 * pthread_kill and raise of another real-time one fail with EAGAIN; one the kernel delivered
 * already is kept without its siginfo too (its sender got 0), and coop says so once. The
 * RESERVED entries beyond are for the standard signals whose siginfo the kernel always keeps
 * (entry_take). A forked child starts with every entry free and its queues empty, as nothing
 * is pending in it natively (fork_child).
 * The counts behind the real masks are atomics changed by greenlets on any hub; `wanted` is
 * written by whoever changed them last (update_real_mask) and read by every hub's trampoline
 * and, through the core's hook, by every hub as it switches. A kick's trampoline runs on
 * the greenlet it interrupted: it takes from that greenlet's queues as the greenlet would.
 *
 * The process's queue is pushed by anyone too, but taken from by many: every greenlet that
 * delivers, waits or asks what is pending, and the pass that hands its signals out. Taking
 * briefly empties a queue (dequeue puts back what it leaves), so they take turns under
 * process_owner, a spin lock held by a greenlet in normal context, and each holder reads
 * its own queue under it too: a signal the pass moves from the process to a greenlet is in
 * one of the two whenever anyone else looks. A handler never runs while its greenlet holds
 * the lock (it could take it again): the trampoline queues the signal to the greenlet
 * instead, and the holder delivers it once it lets go. (thread_signals: process_pending)
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <ucontext.h>
#include <unistd.h>

#include "../core/sys.h"
#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

#define BIT(sig) (1ULL << ((sig) - 1))
/* glibc keeps these two for itself (cancellation, setxid) and never lets a program block them. */
#define UNBLOCKABLE (BIT(SIGKILL) | BIT(SIGSTOP) | BIT(32) | BIT(33))
#define STANDARD (BIT(SIGRTMIN) - 1)       /* signals that do not queue */
#define SHARED 448                    /* queue entries any signal may take */
#define RESERVED 64                   /* and more that only those RLIMIT_SIGPENDING exempts may */
#define POOL (SHARED + RESERVED)
#define STRING(x) #x
#define STRING_OF(x) STRING(x)
#define NO_ENTRY 0

struct entry { siginfo_t info; uint32_t next; };

/* Signals queued, pushed by anyone and taken by one owner at a time (see below). */
struct sigqueue {
    _Atomic uint64_t pending;        /* standard signals queued, one instance each */
    _Atomic uint64_t orphans;        /* queued without an entry: standard ones, and real-time
                                        ones sent with SI_USER (kill), as the kernel keeps them */
    _Atomic uint32_t head;           /* entries queued, newest first (index + 1) */
};

/* A sigwait under way, in wait_signal's frame: its greenlet's innermost one, or one that a
 * handler run in it interrupted with another. */
struct sigwait {
    uint64_t set;
    int notifier;                    /* its signalfd, or -1 */
    struct sigwait *outer;           /* the sigwait interrupted, or NULL */
};

/* One greenlet's signals. */
struct sigstate {
    _Atomic uint64_t blocked;        /* its mask; written by its greenlet */
    struct sigqueue directed;        /* sent to it (pthread_kill, raise, a tgkill at its thread) */
    struct sigqueue lent;            /* the process's, queued for it to take: "Lent signals" */
    _Atomic uint64_t awaited;        /* the set of its (innermost) sigwait under way */
    struct sigwait *_Atomic waiting; /* that sigwait's record */
    _Atomic unsigned handled;        /* handlers run on it so far */
    _Atomic bool deferred;           /* a handler waits for it to let go of process_owner */
    _Atomic bool in_wait;            /* in a wait that a handler ends, or sigwait: see shim_signal_wait */
    _Atomic bool kick_refused;       /* set by kick, leave_kick; taken by kick_again */
};

static struct entry pool[POOL];
static _Atomic uint64_t free_list;   /* (tag << 32) | (index + 1): the tag defeats ABA */
static _Atomic uint32_t entries_used;   /* taken from the pool: held by queued signals */
static _Atomic uint32_t entries_allowed;   /* entry_limit's last reading; 0 before the first */
static struct sigqueue process;      /* those no greenlet could take yet */
static void *_Atomic process_owner;    /* the holder's thread pointer: see process_lock */

/* What the program installed, as sigaction reports it back, and the flags coop added to
 * the kernel's action (which it keeps after SA_RESETHAND). */
static struct sigaction installed[NSIG];
static bool trampolined[NSIG];
static int added_flags[NSIG];

/* Greenlets with a state, and per signal how many of them block it: the hubs' real masks
 * block the signals all of them block (`wanted`). Changed by greenlets on any hub, in
 * normal context; every change bumps mask_changes, so that a computation that raced with
 * another is made again (see update_real_mask). */
static struct coop_greenlet *main_greenlet;   /* the kernel's first choice for a process signal */
static _Atomic int live;
static _Atomic int blocking[65];
static _Atomic uint64_t mask_changes;
static _Atomic uint64_t ever_blocked;   /* by some greenlet: no other signal is blocked by all */
static _Atomic uint64_t wanted;
static uint64_t runtime_signals;

int shim_dump_signal;

static uint64_t bits_of(const sigset_t *set) { return *(const uint64_t *)set; }

static void set_of(uint64_t bits, sigset_t *set)
{
    sigemptyset(set);
    *(uint64_t *)set = bits;
}

static bool emulated(void) { return shim_patched[FAM_signal]; }

static struct sigstate *state_of(struct coop_greenlet *g)
{
    return g != NULL ? __atomic_load_n(coop_greenlet_signals(g), __ATOMIC_ACQUIRE) : NULL;
}

/* --- the entry pool --- */

/* How many entries queued signals that RLIMIT_SIGPENDING counts may hold, `used` being held
 * already: the shared ones, or fewer under that limit, the kernel's bound on them natively.
 * The kernel reads it each time, so a setrlimit counts at once; a system call per signal in
 * the trampoline costs too much, so coop reads it again only when it would refuse one (a
 * limit raised lets it in) and when no entry is held (a limit lowered counts from the next
 * burst on). */
static uint32_t entry_limit(uint32_t used)
{
    uint32_t allowed = atomic_load_explicit(&entries_allowed, memory_order_relaxed);
    if (used != 0 && (used < allowed || allowed == SHARED))
        return allowed;
    struct rlimit limit;
    if (coop_sys6(SYS_prlimit64, 0, RLIMIT_SIGPENDING, 0, (long)&limit, 0, 0) != 0 || limit.rlim_cur > SHARED)
        allowed = SHARED;
    else
        allowed = (uint32_t)limit.rlim_cur;
    atomic_store_explicit(&entries_allowed, allowed, memory_order_relaxed);
    return allowed;
}

static uint32_t pop_free(void)
{
    uint64_t head = atomic_load(&free_list);
    for (;;) {
        uint32_t i = (uint32_t)head;
        if (i == NO_ENTRY)
            return NO_ENTRY;
        uint64_t next = (head & ~0xffffffffULL) + (1ULL << 32) + pool[i - 1].next;
        if (atomic_compare_exchange_weak(&free_list, &head, next))
            return i;
    }
}

static void push_free(uint32_t i)
{
    uint64_t head = atomic_load(&free_list);
    do
        pool[i - 1].next = (uint32_t)head;
    while (!atomic_compare_exchange_weak(&free_list, &head, (head & ~0xffffffffULL) + (1ULL << 32) + i));
}

static void entry_give(uint32_t i)
{
    push_free(i);
    atomic_fetch_sub(&entries_used, 1);
}

/* Every entry free: at start, and in a forked child, where the signals that held them are
 * gone. */
static void free_all(void)
{
    atomic_store(&free_list, NO_ENTRY);
    atomic_store(&entries_used, 0);
    for (uint32_t i = 1; i <= POOL; i++)
        push_free(i);
}

/* An entry for a new signal, NO_ENTRY past the limit (async-signal-safe). The kernel exempts a
 * standard signal from the kernel or kill from RLIMIT_SIGPENDING and always keeps its siginfo
 * (a SIGCHLD's names the child): those may take the RESERVED entries too, which others
 * cannot use up. Counted first, as the kernel counts, so that takers racing for the last one
 * cannot both have it. */
static uint32_t entry_take(const siginfo_t *info)
{
    bool exempt = (BIT(info->si_signo) & STANDARD) && info->si_code >= 0;
    uint32_t i = NO_ENTRY, used = atomic_fetch_add(&entries_used, 1);
    if (used < (exempt ? POOL : entry_limit(used)))
        i = pop_free();
    if (i == NO_ENTRY)
        atomic_fetch_sub(&entries_used, 1);
    return i;
}

/* --- queues: pushed by anyone, taken by the owner --- */

static void push(struct sigqueue *q, uint32_t i)
{
    uint32_t head = atomic_load(&q->head);
    do
        pool[i - 1].next = head;
    while (!atomic_compare_exchange_weak(&q->head, &head, i));
}

/* The kernel queued a real-time signal (a sender got 0) and coop has no entry for it: nobody
 * to tell but the user, once a process (async-signal-safe: a fixed line, one write). */
static void warn_lost_siginfo(void)
{
    static atomic_bool warned;
    static const char line[] = "coop: a real-time signal the kernel delivered lost its siginfo (one handler runs for "
                               "the instances that come while it is pending): coop's queue of pending signals is "
                               "full (" STRING_OF(SHARED) " entries, or RLIMIT_SIGPENDING if lower); said once\n";
    if (coop_log_level >= COOP_LOG_WARN && !atomic_exchange(&warned, true))
        coop_write_stderr(line, sizeof line - 1);
}

/* Queues a signal (async-signal-safe). A standard signal already pending merges. Past the
 * entries' limit, as in the kernel when a user's queue is full: a standard signal, or a
 * real-time one sent with SI_USER, is still recorded (its siginfo made up on delivery);
 * another real-time one is not (false), unless the kernel `delivered` it already: its sender
 * got 0, so it is recorded as kill's is, and coop says so. */
static bool enqueue(struct sigqueue *q, const siginfo_t *info, bool delivered)
{
    int sig = info->si_signo;
    if ((BIT(sig) & STANDARD) && (atomic_fetch_or(&q->pending, BIT(sig)) & BIT(sig)))
        return true;
    uint32_t i = entry_take(info);
    if (i == NO_ENTRY) {
        if (!(BIT(sig) & STANDARD) && info->si_code != SI_USER) {
            if (!delivered)
                return false;
            warn_lost_siginfo();
        }
        atomic_fetch_or(&q->orphans, BIT(sig));
        return true;
    }
    pool[i - 1].info = *info;
    push(q, i);
    return true;
}

/* Gives back a list taken whole from q (newest first): pushers may have queued newer
 * signals meanwhile, so it goes under them, at the tail, to keep the order they were sent
 * in. Only the owner takes lists and pushers only write the head, so the tail is still. */
static void put_back(struct sigqueue *q, uint32_t list)
{
    uint32_t head = NO_ENTRY;
    if (list == NO_ENTRY || atomic_compare_exchange_strong(&q->head, &head, list))
        return;
    uint32_t last = head;
    while (pool[last - 1].next != NO_ENTRY)
        last = pool[last - 1].next;
    pool[last - 1].next = list;
}

/* Unlinks the oldest queued signal in `wanted`: its number, and its entry or NO_ENTRY for
 * one queued without; 0 if none. */
static int unqueue(struct sigqueue *q, uint64_t wanted, uint32_t *entry)
{
    uint32_t list = atomic_exchange(&q->head, NO_ENTRY), found = NO_ENTRY, before = NO_ENTRY;
    for (uint32_t i = list, prev = NO_ENTRY; i != NO_ENTRY; prev = i, i = pool[i - 1].next)
        if (BIT(pool[i - 1].info.si_signo) & wanted) {   /* newest first: the last match is the oldest */
            found = i;
            before = prev;
        }
    if (found != NO_ENTRY) {
        if (before != NO_ENTRY)
            pool[before - 1].next = pool[found - 1].next;
        else
            list = pool[found - 1].next;
    }
    put_back(q, list);
    int sig;
    *entry = found;
    if (found != NO_ENTRY) {
        sig = pool[found - 1].info.si_signo;
    } else {
        /* Not `pending` alone: its bit is set before the entry is pushed. */
        uint64_t orphans = atomic_load(&q->orphans) & wanted;
        if (orphans == 0 || !(atomic_fetch_and(&q->orphans, ~(orphans & -orphans)) & (orphans & -orphans)))
            return 0;
        sig = __builtin_ctzll(orphans) + 1;
    }
    if (BIT(sig) & STANDARD)
        atomic_fetch_and(&q->pending, ~BIT(sig));
    return sig;
}

/* Takes the oldest queued signal in `wanted`; 0 if none. */
static int dequeue(struct sigqueue *q, uint64_t wanted, siginfo_t *info)
{
    uint32_t i;
    int sig = unqueue(q, wanted, &i);
    if (sig != 0 && i != NO_ENTRY) {
        *info = pool[i - 1].info;
        entry_give(i);
    } else if (sig != 0) {
        *info = (siginfo_t){ .si_signo = sig, .si_code = SI_USER };     /* as the kernel makes it up */
    }
    return sig;
}

static void clear(struct sigqueue *q)
{
    atomic_store(&q->pending, 0);
    atomic_store(&q->orphans, 0);
    atomic_store(&q->head, NO_ENTRY);
}

static uint64_t queued_bits(struct sigqueue *q)
{
    uint64_t bits = atomic_load(&q->pending) | atomic_load(&q->orphans);
    uint32_t list = atomic_exchange(&q->head, NO_ENTRY);
    for (uint32_t i = list; i != NO_ENTRY; i = pool[i - 1].next)
        bits |= BIT(pool[i - 1].info.si_signo);
    put_back(q, list);
    return bits;
}

/* Moves the oldest signal of `bits` queued in from to the back of to, with its entry: a move
 * never needs one (the pool may have none left); 0 if none was queued. */
static int move_one(struct sigqueue *from, struct sigqueue *to, uint64_t bits)
{
    uint32_t i;
    int sig = unqueue(from, bits, &i);
    if (sig == 0)
        return 0;
    if ((BIT(sig) & STANDARD) && (atomic_fetch_or(&to->pending, BIT(sig)) & BIT(sig))) {
        if (i != NO_ENTRY)
            entry_give(i);      /* merged */
    } else if (i == NO_ENTRY) {
        atomic_fetch_or(&to->orphans, BIT(sig));
    } else {
        push(to, i);
    }
    return sig;
}

/* Moves the signals of `bits` queued in from to the back of to. */
static bool move_queued(struct sigqueue *from, struct sigqueue *to, uint64_t bits)
{
    bool any = false;
    while (bits != 0 && move_one(from, to, bits) != 0)
        any = true;
    return any;
}

/* --- the process's queue: taken from under process_owner --- */

/* The owner is named by its thread pointer, which differs between any two contexts that
 * may run at once (greenlets, hubs), and which the trampoline can compare with its own. */
static void process_lock(void)
{
    void *self = __builtin_thread_pointer(), *none = NULL;
    while (!atomic_compare_exchange_weak_explicit(&process_owner, &none, self, memory_order_acquire,
                                                  memory_order_relaxed)) {
        none = NULL;
        __builtin_ia32_pause();
    }
}

/* Once, for the trampoline: false if anyone holds it, the greenlet it interrupted included. */
static bool process_trylock(void)
{
    void *none = NULL;
    return atomic_compare_exchange_strong_explicit(&process_owner, &none, __builtin_thread_pointer(),
                                                   memory_order_acquire, memory_order_relaxed);
}

static void process_unlock(void) { atomic_store_explicit(&process_owner, NULL, memory_order_release); }

/* Whether the caller's context holds process_owner: a handler run for a fault can interrupt
 * its holder, and must not wait for it. */
static bool process_lock_mine(void) { return atomic_load(&process_owner) == __builtin_thread_pointer(); }

static void deliver(struct coop_greenlet *g);

/* The signals whose handlers waited for the caller (s's greenlet) to let go: now. */
static void deliver_deferred(struct sigstate *s)
{
    if (atomic_exchange(&s->deferred, false))
        deliver(coop_self());
}

/* The oldest signal of `wanted` queued for s's greenlet, else for the process; 0 if none. */
static int take_queued(struct sigstate *s, uint64_t wanted, siginfo_t *info)
{
    process_lock();
    int sig = dequeue(&s->directed, wanted, info);
    if (sig == 0)
        sig = dequeue(&s->lent, wanted, info);
    if (sig == 0)
        sig = dequeue(&process, wanted, info);
    process_unlock();
    return sig;
}

/* The signals queued for s's greenlet (the caller's, under process_owner). */
static uint64_t queued_for(struct sigstate *s) { return queued_bits(&s->directed) | queued_bits(&s->lent); }

/* --- masks --- */

static void apply_real_mask(uint64_t bits)
{
    sigset_t set;
    set_of(bits, &set);
    REAL(pthread_sigmask)(SIG_SETMASK, &set, NULL);
}

/* The real mask of the calling hub's thread: what every greenlet blocks, and what the thread
 * holds for its greenlet with a signal stack of its own (core/preempt.c). */
static uint64_t hub_mask(void) { return atomic_load(&wanted) | coop_preempt_held_signals(); }

static void apply_wanted(void) { apply_real_mask(hub_mask()); }

/* Where update_real_mask puts the mask it computes, besides `wanted`. */
enum real_mask_here {
    HERE_IF_CHANGED,     /* on the calling thread, if `wanted` changed */
    HERE_TOO,            /* on the calling thread even if unchanged: see below */
    HERE_BY_KERNEL,      /* not here: a kernel signal frame does (see below) */
};

/*
 * Brings `wanted` in line with the counts, and the calling OS thread's real mask with it;
 * the kernel delivers, there, what this unblocks. No system call when nothing changes.
 * Other hubs' threads take `wanted` before they next switch to a greenlet (core: see
 * coop_hub_masks_changed), or when a signal lands on one of them (the trampoline hands it
 * through the signal frame's mask, but for what that thread blocked beyond it, which stays
 * until its next switch: see beyond_hubs). Meanwhile a stale mask only changes which thread takes
 * a signal; the trampoline routes it to the right greenlet either way (and coop's own
 * SIGURG handler, while the program leaves SIGURG at SIG_DFL or SIG_IGN, hands one that
 * every greenlet blocks back to the process: core/preempt.c). But the thread that runs a
 * greenlet never blocks what that greenlet accepts, so a kick reaches it: HERE_TOO, when
 * the caller's greenlet has just unblocked signals, sets the calling thread's mask even if
 * `wanted` is unchanged (another thread may have changed it first, and applied it only
 * there; native pthread_sigmask makes that system call too). A handler behind a kernel
 * frame leaves the thread's mask to the kernel (HERE_BY_KERNEL): its delivery blocked
 * already what the handler's mask adds (but for a sigaction that changed the mask since:
 * the thread takes it at the sigreturn, or at its next switch), and its sigreturn sets the
 * mask at its end. Unblocked sooner, a signal pending since the handler began would run
 * nested in that frame, and a chain of them (a fast timer's ticks) would fill the stack;
 * and a system call per signal more than natively lets a fast timer take all of the
 * thread's time.
 */
static void update_real_mask(enum real_mask_here here)
{
    uint64_t seen;
    do {
        seen = atomic_load(&mask_changes);
        uint64_t bits = 0;
        int all = atomic_load(&live);
        uint64_t candidates = all > 0 ? atomic_load(&ever_blocked) : ~0ULL;
        for (; candidates != 0; candidates &= candidates - 1) {
            int sig = __builtin_ctzll(candidates) + 1;
            if (atomic_load_explicit(&blocking[sig], memory_order_relaxed) == all)
                bits |= BIT(sig);
        }
        bits &= ~(runtime_signals & ~BIT(COOP_PREEMPT_SIGNAL)) & ~UNBLOCKABLE;
        bool changed = atomic_exchange(&wanted, bits) != bits;
        if ((changed && here == HERE_IF_CHANGED) || here == HERE_TOO)
            apply_real_mask(bits | coop_preempt_held_signals());
        if (changed)
            coop_hub_masks_changed();
    } while (atomic_load(&mask_changes) != seen);
}

/* Counts the signals of `bits` as blocked by one more (+1) or one fewer (-1) greenlet. */
static void count(uint64_t bits, int delta)
{
    if (delta > 0)
        atomic_fetch_or(&ever_blocked, bits);
    for (; bits != 0; bits &= bits - 1)
        atomic_fetch_add_explicit(&blocking[__builtin_ctzll(bits) + 1], delta, memory_order_relaxed);
    atomic_fetch_add(&mask_changes, 1);
}

static void count_live(int delta)
{
    atomic_fetch_add(&live, delta);
    atomic_fetch_add(&mask_changes, 1);
}

/* Handlers running behind the kernel's signal frames on this greenlet (its TLS). One that
 * jumps out skips the frame's sigreturn, and with it the OS thread's mask the trampoline
 * set there: the jump puts that back (see mask_put_back). */
static __thread unsigned kernel_frames;
/* The program's handlers running on this greenlet (its TLS), innermost first: records in
 * call_handler's frames, gone as the handler returns, as an exception or cancellation unwinds
 * its frame (a cleanup), or as a jump leaves it (leave_handlers). */
struct running_handler { struct running_handler *outer; };
static __thread struct running_handler *running_handlers;

static void handler_over(struct running_handler *h) { running_handlers = h->outer; }

/* Calls of sigaltstack that set a stack, on this greenlet: one in a handler stays, as coop's
 * record says (run_from_kernel), where natively the handler's sigreturn puts the old back. */
static __thread unsigned signal_stacks_set;

/* Makes `blocked` the mask of s, its greenlet's; by_kernel: a handler's own mask, going on
 * or off behind a kernel frame (run_from_kernel), which sets the thread's. */
static void change_blocked(struct sigstate *s, uint64_t blocked, bool by_kernel)
{
    blocked &= ~UNBLOCKABLE;
    uint64_t old = atomic_exchange(&s->blocked, blocked);
    if (old == blocked)
        return;
    count(blocked & ~old, +1);
    count(old & ~blocked, -1);
    if (by_kernel)
        update_real_mask(HERE_BY_KERNEL);
    else
        update_real_mask((old & ~blocked) != 0 && kernel_frames == 0 ? HERE_TOO : HERE_IF_CHANGED);
}

static void set_blocked(struct sigstate *s, uint64_t blocked) { change_blocked(s, blocked, false); }

static struct sigstate *new_state(uint64_t blocked)
{
    struct sigstate *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    blocked &= ~UNBLOCKABLE;
    atomic_store(&s->blocked, blocked);
    count_live(+1);
    count(blocked, +1);
    if (atomic_load(&wanted) != 0)      /* the newcomer may accept what all others block */
        update_real_mask(HERE_IF_CHANGED);
    return s;
}

/* The calling greenlet's state, made on first use for a thread's own context. */
static struct sigstate *my_state(struct coop_greenlet *g)
{
    struct sigstate *s = state_of(g);
    if (s == NULL && g != NULL) {
        sigset_t real;
        REAL(pthread_sigmask)(SIG_BLOCK, NULL, &real);
        s = new_state(bits_of(&real));
        __atomic_store_n(coop_greenlet_signals(g), s, __ATOMIC_RELEASE);
    }
    return s;
}

/* --- running handlers --- */

static bool fault(int sig, const siginfo_t *info)
{
    return (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP
            || sig == SIGSYS) && info->si_code > 0;
}

/* SA_RESETHAND: the default action from now on, in the kernel too (a signal coop handed
 * over itself never reached it), with the flags and mask the program gave, as natively. */
static void reset_handler(int sig, const struct sigaction *a)
{
    struct sigaction dfl = *a;
    dfl.sa_handler = SIG_DFL;
    installed[sig] = dfl;
    trampolined[sig] = false;
    added_flags[sig] = 0;
    REAL(sigaction)(sig, &dfl, NULL);
}

/* Blocks what sig's handler blocks while it runs, as the kernel does on delivery (by_kernel:
 * the kernel did, for the thread); the mask before. */
static uint64_t handler_mask_on(struct sigstate *s, const struct sigaction *a, int sig, bool by_kernel)
{
    uint64_t before = s != NULL ? atomic_load(&s->blocked) : 0;
    if (s != NULL)      /* counted: a handler may jump out and keep it */
        change_blocked(s, before | bits_of(&a->sa_mask) | ((a->sa_flags & SA_NODEFER) ? 0 : BIT(sig)),
                       by_kernel);
    return before;
}

/* Runs the program's handler a (installed[sig] when it was taken: SA_RESETHAND changes that)
 * as the kernel would, its mask on since handler_mask_on, then puts `before` back. Returns
 * what its end unblocked. */
static uint64_t call_handler(struct sigstate *s, const struct sigaction *a, int sig, siginfo_t *info, void *context,
                             uint64_t before)
{
    /* The wait under way ends with this handler: others may nest in it, as natively; after
     * it, until the wait has put its mask back, they queue again (a longjmp out leaves it
     * cleared). */
    bool in_wait = s != NULL && atomic_exchange(&s->in_wait, false);
    struct running_handler running __attribute__((cleanup(handler_over))) = { running_handlers };
    running_handlers = &running;
    if (a->sa_flags & SA_RESETHAND)
        reset_handler(sig, a);
    if (a->sa_flags & SA_SIGINFO)
        a->sa_sigaction(sig, info, context);
    else
        a->sa_handler(sig);
    if (s == NULL)
        return 0;
    uint64_t end = atomic_load(&s->blocked);    /* the handler may have blocked more itself */
    change_blocked(s, before, kernel_frames > 0);
    atomic_fetch_add(&s->handled, 1);
    atomic_store(&s->in_wait, in_wait);
    return end & ~before;
}

static void kick_here(struct sigstate *s, uint64_t unblocked);

/* A kernel frame's `beyond`: what the interrupted context blocked beyond the hubs' mask
 * (coop's own signals aside), read as the trampoline starts. Natively the frame's sigreturn
 * puts it back: the kernel's mask for a handler it had just entered (a second signal came
 * before the first handler's first instruction) or for one still running outside the frame.
 * The frame's mask keeps it: set to the hubs' alone, a signal of that outer handler's would
 * run nested in it, and a storm of them (another process's kill in a loop, coop's kicks
 * between) filled a signal stack until the kernel put the next frame at its top. Bits that
 * are only a stale hub mask's are kept too: the hub takes its mask again at its next switch. */
static uint64_t beyond_hubs(const ucontext_t *uc) { return bits_of(&uc->uc_sigmask) & ~hub_mask() & ~runtime_signals; }

static void run_from_kernel(struct sigstate *s, int sig, siginfo_t *info, void *context, uint64_t beyond)
{
    /* On a hub's thread the handler runs under the kernel's mask for it, and may park: the
     * greenlets run here meanwhile take the hubs' mask again, and so does the thread that
     * the frame's sigreturn ends on. */
    bool hub_thread = emulated() && !shim_vfork_child && coop_on_hub_thread();
    struct coop_greenlet *self = hub_thread ? coop_self() : NULL;
    uint32_t resumes = self != NULL ? coop_greenlet_resumes(self) : 0;
    unsigned stacks_set = signal_stacks_set;
    uint64_t masks_seen = hub_thread ? coop_hub_mask_stale() : 0;
    kernel_frames++;
    const struct sigaction a = installed[sig];
    uint64_t unblocked = call_handler(s, &a, sig, info, context, handler_mask_on(s, &a, sig, true));
    if (kernel_frames > 0)      /* 0 after a jump out of a nested one */
        kernel_frames--;
    if (hub_thread) {     /* the thread's now: the handler may have parked, and resumed elsewhere */
        ucontext_t *uc = context;
        set_of(hub_mask() | beyond, &uc->uc_sigmask);
        /* sigaltstack only after a park or the handler's own sigaltstack: a system call per
         * signal would let a signal that comes every few microseconds (a POSIX timer) take
         * all of the thread's time, where natively it leaves some. */
        bool parked = self != NULL && coop_greenlet_resumes(self) != resumes;
        if (parked || signal_stacks_set != stacks_set)
            coop_sys(SYS_sigaltstack, NULL, &uc->uc_stack, 0);
        if (beyond != 0)
            coop_hub_mask_stale();      /* this thread's, after a park too: not the hubs' mask */
        else if (!parked)
            coop_hub_mask_seen_again(masks_seen);
        kick_here(s, unblocked);
    }
}

/* Default actions that do nothing: the rest end or stop the process. */
static bool ignored_by_default(int sig)
{
    return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
}

/* A signal whose action is the default, to end or stop the process: the kernel does it. */
static void act_by_default(int sig)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    REAL(pthread_sigmask)(SIG_UNBLOCK, &one, NULL);
    REAL(raise)(sig);
    apply_real_mask(hub_mask());      /* a stopped process goes on here, after SIGCONT */
}

/* What happens to a signal once its greenlet takes it. */
static void act(struct sigstate *s, siginfo_t *info)
{
    int sig = info->si_signo;
    if (trampolined[sig]) {
        /* The mask goes on before libc's getcontext: a kick landing there would run the
         * next instance first (take_kick runs them outside coop's code). */
        const struct sigaction a = installed[sig];
        volatile uint64_t before = handler_mask_on(s, &a, sig, false);     /* kept across getcontext */
        ucontext_t context;
        if (a.sa_flags & SA_SIGINFO)      /* only such a handler sees it; it costs a system call */
            getcontext(&context);
        call_handler(s, &a, sig, info, &context, before);
        return;
    }
    struct sigaction current;
    REAL(sigaction)(sig, NULL, &current);
    if (current.sa_handler == SIG_DFL && !ignored_by_default(sig))
        act_by_default(sig);
}

/* Delivers g's deliverable signals, and process-pending ones it accepts (on g). */
static void deliver(struct coop_greenlet *g)
{
    struct sigstate *s = state_of(g);
    if (s == NULL)
        return;
    siginfo_t info;
    for (;;) {
        /* A signal its sigwait waits for is that wait's, blocked or not, as in Linux. */
        uint64_t open = ~atomic_load(&s->blocked) & ~atomic_load(&s->awaited);
        bool taken = take_queued(s, open, &info) != 0;
        if (!taken && !atomic_exchange(&s->deferred, false))
            break;
        if (taken)
            act(s, &info);
    }
}

/* The signals s's greenlet takes now: those it accepts, and those its sigwait waits for. */
static uint64_t taken_bits(struct sigstate *s) { return ~atomic_load(&s->blocked) | atomic_load(&s->awaited); }

/* Whether taking sig runs nothing (its action is to ignore it). */
static bool ignored_now(int sig)
{
    if (trampolined[sig])
        return false;
    struct sigaction current;
    REAL(sigaction)(sig, NULL, &current);
    return current.sa_handler == SIG_IGN || (current.sa_handler == SIG_DFL && ignored_by_default(sig));
}

/* How a wait of g, the caller, ends for the signals queued that it takes now: 0 (none, or
 * only ignored ones), EINTR (a handler without SA_RESTART), else COOP_RESTART (handlers
 * with SA_RESTART, a sigwait's signals, default actions: the call goes on afterwards). */
static int due(struct coop_greenlet *g)
{
    struct sigstate *s = state_of(g);
    if (s == NULL)
        return 0;
    process_lock();     /* process-directed signals are not g's until pass() gives them */
    uint64_t queued = queued_for(s);
    process_unlock();
    uint64_t awaited = atomic_load(&s->awaited);
    int reason = atomic_load(&s->deferred) ? COOP_RESTART : 0;
    for (uint64_t bits = queued & taken_bits(s); bits != 0; bits &= bits - 1) {
        int sig = __builtin_ctzll(bits) + 1;
        if (awaited & BIT(sig))
            reason = COOP_RESTART;
        else if (trampolined[sig] && !(installed[sig].sa_flags & SA_RESTART))
            return EINTR;
        else if (!ignored_now(sig))
            reason = COOP_RESTART;
    }
    return reason;
}

static bool takes(struct sigstate *s, int sig) { return s != NULL && (taken_bits(s) & BIT(sig)); }

/* What marks a kick (see kick): its sival_ptr. */
static const char kick_mark;

static bool is_kick(const siginfo_t *info)
{
    return info->si_code == SI_QUEUE && info->si_value.sival_ptr == &kick_mark;
}

/* Whether a kick can be sent for sig: not if nothing would run there, nor for a one-shot
 * handler, which the kernel would reset for a kick that runs none. */
static bool kickable(int sig)
{
    return trampolined[sig] && !(installed[sig].sa_flags & SA_RESETHAND)
           && sig != COOP_PREEMPT_SIGNAL;      /* it would merge with the monitor's */
}

static void send_kick(pid_t tid, int sig)
{
    siginfo_t info = { .si_signo = sig, .si_code = SI_QUEUE, .si_pid = getpid(), .si_uid = getuid() };
    info.si_value.sival_ptr = (void *)&kick_mark;
    coop_sys6(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, (long)&info, 0, 0);
}

/* g, just queued sig that it accepts, may be running on another OS thread: in its own code,
 * or in a system call coop left to the kernel (a lone greenlet's, a raw one), where no wait
 * of coop's can be ended. The kernel must interrupt that thread, as it would natively: it
 * is sent sig itself, so that the call ends with EINTR or restarts as sig's handler says,
 * marked as a kick so that its trampoline takes what is queued instead (take_kick). */
static void kick(struct coop_greenlet *g, struct sigstate *s, int sig)
{
    /* A sigwait's signal ends a wait of coop's. */
    if (!kickable(sig) || (atomic_load(&s->blocked) & BIT(sig)))
        return;
    /* Taken as refused: g may be waiting, or seen a moment early (no fence), or the kick
     * may land while no greenlet runs there (a switch, an unwind of coop's), where it runs
     * nothing. The monitor looks again (kick_again kicks only for what is still queued). */
    atomic_store(&s->kick_refused, true);
    pid_t tid = coop_running_elsewhere(g);
    if (tid != 0)
        send_kick(tid, sig);
}

/* After a handler behind a kernel frame on s's greenlet: what its end unblocked and is queued
 * (sent while the handler's mask blocked it) would wait for the greenlet's next wait, where
 * natively the kernel delivers it at the frame's sigreturn. A kick to this thread does that:
 * blocked here until the sigreturn, so that it lands on the interrupted code, not in coop's. */
static void kick_here(struct sigstate *s, uint64_t unblocked)
{
    if (unblocked == 0)
        return;
    if (process_lock_mine()) {
        atomic_store(&s->deferred, true);      /* delivered as it lets go */
        return;
    }
    process_lock();
    uint64_t open = unblocked & ~atomic_load(&s->blocked);
    uint64_t own = queued_for(s) & open, theirs = queued_bits(&process) & open;
    process_unlock();
    /* Should the kick go astray (this greenlet moved before its sigreturn), the signals are
     * still due to it, for its next wait or the monitor, and the pass lends the process's. */
    if (own != 0)
        coop_signal_greenlet(coop_self(), true);
    if (theirs != 0)
        coop_request_signal_pass();
    uint64_t kicks = 0;
    for (uint64_t bits = own | theirs; bits != 0; bits &= bits - 1)
        if (kickable(__builtin_ctzll(bits) + 1))
            kicks |= BIT(__builtin_ctzll(bits) + 1);
    if (kicks == 0)
        return;
    sigset_t until_sigreturn;
    set_of(kicks, &until_sigreturn);
    REAL(pthread_sigmask)(SIG_BLOCK, &until_sigreturn, NULL);
    pid_t here = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    for (; kicks != 0; kicks &= kicks - 1)
        send_kick(here, __builtin_ctzll(kicks) + 1);
}

/* The monitor, for g that has held its hub a while with signals due: a kick that came while
 * g was still in coop's code, or while no greenlet ran there (a switch, an unwind), ran
 * nothing (take_kick), and g may have gone on into a call that only a signal ends, or into
 * a loop of its own that never waits (a lone greenlet is not preempted). Kicks again for
 * what g takes now. */
static void kick_again(struct coop_greenlet *g)
{
    struct sigstate *s = state_of(g);
    if (s == NULL || !atomic_exchange(&s->kick_refused, false))
        return;
    process_lock();
    uint64_t queued = queued_for(s);
    process_unlock();
    for (queued &= ~atomic_load(&s->blocked); queued != 0; queued &= queued - 1)
        kick(g, s, __builtin_ctzll(queued) + 1);
}

/* Ends g's wait for sig, just queued to it, if g takes it (async-signal-safe). */
static void wake_if_taken(struct coop_greenlet *g, struct sigstate *s, int sig)
{
    if (!takes(s, sig))
        return;
    coop_signal_greenlet(g, installed[sig].sa_flags & SA_RESTART);
    kick(g, s, sig);
}

/* Queues a signal in q, one of g's queues, and ends g's wait if g takes it
 * (async-signal-safe): false if the queue was full (see enqueue). */
static bool queue_in(struct coop_greenlet *g, struct sigstate *s, struct sigqueue *q, const siginfo_t *info,
                     bool delivered)
{
    if (!enqueue(q, info, delivered))
        return false;
    wake_if_taken(g, s, info->si_signo);
    return true;
}

static bool queue_to(struct coop_greenlet *g, struct sigstate *s, const siginfo_t *info)
{
    return queue_in(g, s, &s->directed, info, false);
}

/* Under process_owner, which orders it with settle and with g's exit: lends a
 * process-directed signal to g if g takes it (see settle); whether it did. `delivered`: the
 * kernel delivered it already (see enqueue). */
static bool lend_locked(struct coop_greenlet *g, const siginfo_t *info, bool delivered)
{
    struct sigstate *s = state_of(g);
    return takes(s, info->si_signo) && queue_in(g, s, &s->lent, info, delivered);
}

static bool lend_if_taken(struct coop_greenlet *g, const siginfo_t *info)
{
    process_lock();
    bool lent = lend_locked(g, info, false);
    process_unlock();
    return lent;
}

/* Hands a signal to g in normal context: delivered now when g is the caller, else when g
 * next ends a wait; false if the queue was full. */
static bool hand_to(struct coop_greenlet *g, struct sigstate *s, const siginfo_t *info)
{
    if (g != coop_self())
        return queue_to(g, s, info);
    if (!enqueue(&s->directed, info, false))
        return false;
    deliver(g);
    return true;
}

/* --- choosing a greenlet for a signal the kernel delivered --- */

/* Under process_owner: g takes the process-pending signals it accepts or awaits. */
static void give_locked(struct coop_greenlet *g, struct sigstate *s)
{
    uint64_t given = queued_bits(&process) & taken_bits(s);
    for (; given != 0; given &= given - 1) {
        int sig = move_one(&process, &s->lent, given & -given);
        if (sig != 0)
            wake_if_taken(g, s, sig);
    }
}

/* During the walk of pass(), under the greenlet list's lock, so that g's state cannot be
 * taken and freed meanwhile (shim_signal_thread_exit). */
static void give_process_signals(struct coop_greenlet *g, void *unused)
{
    (void)unused;
    struct sigstate *s = state_of(g);
    if (s == NULL)
        return;
    process_lock();
    give_locked(g, s);
    process_unlock();
}

static bool process_queued(void)
{
    process_lock();
    bool any = queued_bits(&process) != 0;
    process_unlock();
    return any;
}

static void give_main_process_signals(struct coop_greenlet *g, void *unused)
{
    if (g == main_greenlet)
        give_process_signals(g, unused);
}

/* In normal context on a hub: process-pending signals go to greenlets that take them, the
 * main greenlet first (see route). */
static void pass(void)
{
    if (process_queued()) {
        coop_each_greenlet(give_main_process_signals, NULL);
        coop_each_greenlet(give_process_signals, NULL);
    }
}

/*
 * Lent signals. A process-directed signal stays the process's, natively, until a thread
 * takes it. coop queues one to the greenlet that is to take it, in that greenlet's `lent`
 * queue: if the greenlet comes to block it before it takes it (a wait's mask took it, and
 * the wait ended otherwise: an fd ready, a time-out; a mask changed; a sigwait that took
 * another), or ends first, it goes back to the process's queue, pending for any thread (a
 * sigwait elsewhere), and the pass hands it on. Thread-directed ones (the `directed` queue)
 * stay with their greenlet, or die with it.
 *
 * Lending and taking back are ordered by process_owner: whoever lends reads the greenlet's
 * mask under it (pass(), kill, the trampoline with one try), and the greenlet, after it
 * changed its mask, takes back under it: a signal lent for the old mask is taken back, or
 * lent under the new one. The greenlet's own interrupted trampoline, which cannot take the
 * lock, lends only what its running greenlet takes now. (thread_signals:
 * ready_wait_leaves_it_pending, directed_and_lent, sigwait_leaves_the_other)
 */

/* Under process_owner: the lent signals s's greenlet (the caller, or one ending) no longer
 * takes go back to the process; true if any did. */
static bool return_lent(struct sigstate *s)
{
    return move_queued(&s->lent, &process, queued_bits(&s->lent) & ~taken_bits(s));
}

static void give_back(struct sigstate *s)
{
    if (process_lock_mine())
        return;     /* the holder's own settle takes them back */
    process_lock();
    bool returned = return_lent(s);
    process_unlock();
    if (returned)
        coop_request_signal_pass();
}

/* After self's mask or sigwait set changed: what it no longer takes goes back, what it takes
 * runs (POSIX: a pending signal a mask change unblocks is delivered before it returns). */
static void settle(struct coop_greenlet *self, struct sigstate *s)
{
    give_back(s);
    deliver(self);
}

/* In a wait that a handler ends; not once cancellation unwinds out of it (glibc marks the
 * thread exiting first): its cleanup handlers take signals as after the wait. */
static bool in_wait(struct coop_greenlet *g, struct sigstate *s)
{
    return atomic_load(&s->in_wait) && !(atomic_load(coop_greenlet_cancel_state(g)) & COOP_CANCEL_EXITING);
}

/* Whether the kernel sent sig to the thread it interrupted rather than to the process: a raw
 * tgkill at this OS thread (abort(), the program's own) means the running greenlet, and so
 * do the kernel's own SIGPIPE and SIGXFSZ for the call that failed (SI_USER from this
 * process, as a raw kill of the program's own of those two is, which goes there too). */
static bool thread_directed(const siginfo_t *info)
{
    return (info->si_code == SI_TKILL
            || (info->si_code == SI_USER && (info->si_signo == SIGPIPE || info->si_signo == SIGXFSZ)))
           && info->si_pid == getpid();     /* a system call: last */
}

/* Whether a process signal lent to the main greenlet reaches it soon: it waits (its wait
 * ends), or a kick can interrupt it where it runs (kick). */
static bool main_takes_soon(int sig)
{
    return kickable(sig) || coop_running_elsewhere(main_greenlet) == 0;
}

/* Where a signal the kernel delivered to a hub's greenlet goes: run now on self, the
 * greenlet it interrupted, or queued to a greenlet or the process (without its siginfo if the
 * queue is full: see enqueue). A process-directed one goes to the main greenlet first if
 * that takes it, as the kernel gives it to the thread the pid names first: the OS thread
 * it landed on may be running any greenlet, and a server whose main thread waits in
 * accept or poll for connections counts on SIGTERM ending that wait (tinyproxy). An earlier
 * instance still in the process's queue goes first (real-time signals keep their order):
 * this one queues behind it for the pass, which offers them to main first too; so it does
 * when the lock is busy (its holder may be self). */
static void route(struct coop_greenlet *self, struct sigstate *mine, int sig, siginfo_t *info, void *context,
                  uint64_t beyond)
{
    bool directed = mine != NULL && thread_directed(info);
    if (!directed) {
        bool behind = true, lent = false;
        if (process_trylock()) {
            behind = queued_bits(&process) & BIT(sig);
            lent = !behind && main_greenlet != self && main_takes_soon(sig) && lend_locked(main_greenlet, info, true);
            process_unlock();
        }
        if (lent)
            return;
        if (behind)
            goto pending;
    }
    if (mine != NULL) {
        struct sigqueue *q = directed ? &mine->directed : &mine->lent;
        if (atomic_load(&mine->awaited) & BIT(sig)) {
            queue_in(self, mine, q, info, true);      /* its sigwait, about to park, takes it */
            return;
        }
        if (!(atomic_load(&mine->blocked) & BIT(sig))) {
            if (process_lock_mine()) {      /* see process_lock */
                atomic_store(&mine->deferred, true);
                queue_in(self, mine, q, info, true);      /* a wait it is about to make ends */
            } else if (in_wait(self, mine)) {
                queue_in(self, mine, q, info, true);      /* ends its wait, parked or about to park */
            } else {
                run_from_kernel(mine, sig, info, context, beyond);
            }
            return;
        }
        if (directed) {
            enqueue(q, info, true);                   /* pending for it */
            return;
        }
    }
pending:
    enqueue(&process, info, true);
    coop_request_signal_pass();
}

/* A kick that runs nothing now: sig stays due to self, for its next wait and the monitor's
 * next kick (kick_again), and the pass lends self the process's instance. */
static void leave_kick(struct coop_greenlet *self, struct sigstate *mine, int sig)
{
    atomic_store(&mine->kick_refused, true);
    coop_signal_greenlet(self, installed[sig].sa_flags & SA_RESTART);
    coop_request_signal_pass();
}

/* A kick (see kick) on the greenlet it interrupted: runs a queued sig as route would run
 * one the kernel delivered here. Nothing if sig is no longer that greenlet's to run now (it
 * moved, blocked it, or its wait will take it), nor in coop's own code, which may hold a
 * lock of the runtime's that a handler jumping out would never let go: the signal stays
 * queued for the greenlet's next wait, which it ends, or for the monitor's next kick
 * should the greenlet sleep in the kernel first (kick_again). */
static void take_kick(struct coop_greenlet *self, struct sigstate *mine, int sig, void *context, uint64_t beyond)
{
    if (mine == NULL || (atomic_load(&mine->blocked) & BIT(sig)) || (atomic_load(&mine->awaited) & BIT(sig))
        || in_wait(self, mine))
        return;
    if (coop_in_runtime((uintptr_t)((ucontext_t *)context)->uc_mcontext.gregs[REG_RIP])) {
        leave_kick(self, mine, sig);
        return;
    }
    if (process_lock_mine()) {
        atomic_store(&mine->deferred, true);      /* delivered as it lets go */
        return;
    }
    siginfo_t info;
    int taken = 0;
    process_lock();     /* held by another OS thread: briefly, in normal context */
    bool own = queued_for(mine) & BIT(sig);
    bool both = own && (queued_bits(&process) & BIT(sig));    /* which came first is the pass's to say */
    if (!both && (taken = dequeue(&mine->directed, BIT(sig), &info)) == 0
        && (taken = dequeue(&mine->lent, BIT(sig), &info)) == 0)
        taken = dequeue(&process, BIT(sig), &info);
    process_unlock();
    if (both)
        leave_kick(self, mine, sig);
    if (taken != 0)
        run_from_kernel(mine, sig, &info, context, beyond);
}

/* The mask the trampoline leaves on a hub's thread: the hubs' (see update_real_mask), but
 * for sig while a handler of the program's runs on the greenlet it interrupted: the thread
 * let sig in, and the handler may have unblocked it there with a raw system call, which coop
 * does not see. Go's runtime dies of a fatal signal so: it unblocks it and raises it at its
 * own thread (its handler again, which coop queues, the handler's mask blocking it; or
 * another instance that was pending meanwhile), then sets SIG_DFL and raises it once more
 * without unblocking it again; blocked here, that last one would stay pending. The hub takes
 * its mask again before its next switch. (Out of handlers, a signal that every greenlet
 * blocks lands only on a thread whose mask is stale: blocked here, further instances stay
 * pending in the kernel, for a signalfd.) */
static uint64_t mask_after_delivery(int sig)
{
    uint64_t mask = hub_mask();
    uint64_t left_open = running_handlers != NULL ? mask & BIT(sig) & ~coop_preempt_held_signals() : 0;
    if (left_open != 0)
        coop_hub_mask_stale();
    return mask & ~left_open;
}

static void trampoline(int sig, siginfo_t *info, void *context)
{
    if (sig == SIGSEGV && coop_stack_overflowed(info, context)) {
        REAL(sigaction)(SIGSEGV, &(struct sigaction){ .sa_handler = SIG_DFL }, NULL);
        return;     /* the fault repeats with the default action: death by SIGSEGV */
    }
    if (shim_vfork_child) {     /* coop's state is the parent's: the handler only */
        run_from_kernel(NULL, sig, info, context, 0);
        return;
    }
    if (!is_kick(info) && sig == COOP_PREEMPT_SIGNAL && coop_preempt_on_signal(info, context))
        return;     /* the monitor's, not the program's (core/preempt.c) */
    struct coop_greenlet *self = coop_interrupted_greenlet();
    struct sigstate *mine = state_of(self);
    uint64_t beyond = 0;
    if (emulated() && coop_on_hub_thread()) {    /* this thread's mask from now on: see update_real_mask */
        beyond = beyond_hubs(context);
        set_of(mask_after_delivery(sig) | beyond, &((ucontext_t *)context)->uc_sigmask);
    }
    if (is_kick(info)) {
        take_kick(self, mine, sig, context, beyond);
        return;
    }
    if (fault(sig, info) && mine != NULL && (atomic_load(&mine->blocked) & BIT(sig))) {
        REAL(sigaction)(sig, &(struct sigaction){ .sa_handler = SIG_DFL }, NULL);
        return;     /* as the kernel does with a fault its thread blocks: it repeats, and kills */
    }
    if (fault(sig, info) || (mine == NULL && !coop_on_hub_thread())) {
        run_from_kernel(mine, sig, info, context, beyond);     /* a fault's, or a real thread's: here */
        return;
    }
    if (!emulated()) {     /* COOP_PATCH=-signal: the OS thread's; its main greenlet's wait ends */
        run_from_kernel(NULL, sig, info, context, 0);
        coop_interrupt(NULL, installed[sig].sa_flags & SA_RESTART);
        return;
    }
    route(self, mine, sig, info, context, beyond);
}

/* --- installing handlers --- */

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (!shim_patched[FAM_signal] || sig <= 0 || sig >= NSIG)
        return REAL(sigaction)(sig, act, old);
    if (shim_vfork_child) {    /* the tables are the parent's: read them, change nothing */
        int r = REAL(sigaction)(sig, act, old);
        if (r == 0 && old != NULL && trampolined[sig])
            *old = installed[sig];
        return r;
    }
    struct sigaction previous = installed[sig];
    bool was_trampolined = trampolined[sig];
    int was_added = added_flags[sig];
    int r;
    if (act != NULL && act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN) {
        struct sigaction mine = *act;
        mine.sa_sigaction = trampoline;
        mine.sa_flags |= SA_SIGINFO | (sig == SIGSEGV ? SA_ONSTACK : 0);
        installed[sig] = *act;     /* before the kernel can call the trampoline */
        coop_note_signal_handler();

        r = REAL(sigaction)(sig, &mine, old);
        trampolined[sig] = r == 0;
        if (r == 0)
            added_flags[sig] = mine.sa_flags & ~act->sa_flags;
    } else if (act != NULL && sig == COOP_PREEMPT_SIGNAL && coop_preempt_claim_signal()) {
        installed[sig] = *act;      /* ignored, as coop's handler ignores all but its own */
        trampolined[sig] = false;
        added_flags[sig] = 0;
        r = old != NULL ? REAL(sigaction)(sig, NULL, old) : 0;
    } else {
        r = REAL(sigaction)(sig, act, old);
        if (r == 0 && act != NULL) {
            trampolined[sig] = false;
            added_flags[sig] = 0;
            if (sig == COOP_PREEMPT_SIGNAL)
                installed[sig] = *act;  /* what sigaction reports once coop's handler stands in */
        }
    }
    if (r != 0) {
        installed[sig] = previous;
        return r;
    }
    if (old != NULL && (coop_is_overflow_handler((void *)old->sa_sigaction)
                        || coop_trace_is_handler((void *)old->sa_handler)
                        || coop_is_preempt_handler((void *)old->sa_sigaction))) {
        *old = previous;     /* the program never set one (the default action, all zeros), or its SIG_DFL or SIG_IGN */
    } else if (old != NULL) {
        /* The kernel's action (flags, mask, glibc's restorer) with the program's handler. */
        if (was_trampolined)
            old->sa_sigaction = previous.sa_sigaction;
        old->sa_flags &= ~was_added;
    }
    return 0;
}

/* glibc's signal() has BSD semantics: the handler stays, and calls restart. */
EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    struct sigaction act = { .sa_handler = handler, .sa_flags = SA_RESTART }, old;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig);
    if (sigaction(sig, &act, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
}

EXPORT sighandler_t bsd_signal(int sig, sighandler_t handler) { return signal(sig, handler); }

/* --- masks --- */

/* The calling greenlet, when its signals are coop's to keep. */
/* The calling greenlet when its signals are coop's to keep; in a vfork child, whose
 * greenlet is its parent's, the kernel's. */
static struct coop_greenlet *emulating(void) { return emulated() && !shim_vfork_child ? coop_self() : NULL; }

bool shim_signal_per_greenlet(void) { return emulating() != NULL; }

static int change_mask(struct coop_greenlet *g, int how, const sigset_t *set, sigset_t *old)
{
    struct sigstate *s = my_state(g);
    if (s == NULL)
        return ENOMEM;
    uint64_t current = atomic_load(&s->blocked), next = current;
    if (set != NULL) {
        uint64_t bits = bits_of(set);
        if (how == SIG_BLOCK)
            next = current | bits;
        else if (how == SIG_UNBLOCK)
            next = current & ~bits;
        else if (how == SIG_SETMASK)
            next = bits;
        else
            return EINVAL;
    }
    if (old != NULL)
        set_of(current, old);
    if (next != current) {
        set_blocked(s, next);
        settle(g, s);
    }
    return 0;
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    struct coop_greenlet *g = emulating();
    return g != NULL ? change_mask(g, how, set, old) : REAL(pthread_sigmask)(how, set, old);
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    struct coop_greenlet *g = emulating();
    if (g == NULL)
        return REAL(sigprocmask)(how, set, old);
    int err = change_mask(g, how, set, old);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

/* The kernel checks and takes the stack for the calling thread; coop makes it the calling
 * greenlet's, which every thread that runs it will have (core/preempt.c). */
EXPORT int sigaltstack(const stack_t *ss, stack_t *old)
{
    struct coop_greenlet *g = ss != NULL ? emulating() : NULL;
    if (g == NULL)
        return REAL(sigaltstack)(ss, old);
    int err = coop_preempt_set_signal_stack(ss, old);
    if (err == 0)
        signal_stacks_set++;      /* before a handler below, which may jump out */
    /* A kick that came while the change blocked every signal landed as coop let them in, in
     * its own code, and ran nothing (a signal the kernel sent this thread ran there): what
     * it was for runs here, as the call returns, where the kernel would have run it. */
    deliver(g);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

EXPORT int sigpending(sigset_t *set)
{
    struct coop_greenlet *g = emulating();
    struct sigstate *s = my_state(g);
    if (s == NULL)
        return REAL(sigpending)(set);
    sigset_t kernel;
    if (REAL(sigpending)(&kernel) != 0)
        return -1;
    process_lock();
    uint64_t bits = bits_of(&kernel) | queued_for(s) | queued_bits(&process);
    process_unlock();
    deliver_deferred(s);
    set_of(bits & atomic_load(&s->blocked), set);
    return 0;
}

/*
 * The waits that a handler ends: sigsuspend, pause, ppoll, pselect and epoll_pwait. The
 * caller's mask is the wait's meanwhile, and the wait ends when the count of handlers run
 * on the greenlet has moved. It looks before it parks: a handler that the trampoline ran in
 * between, on the greenlet still running, would leave it asleep (a SIGTERM from another
 * process as sigsuspend went to sleep: signal_window). So for the whole wait the greenlet
 * is in_wait, and the trampoline queues its signals instead: queued, a signal ends the
 * wait, parked or not yet, and its handler runs at the wait's end. in_wait is written by
 * its greenlet (and cleared by a handler run on it while that runs), read by the
 * trampoline when it interrupts that greenlet on its own OS thread.
 */

/* Signals pending already that the wait's mask takes end the wait as it parks, not at once:
 * natively a ppoll whose fd is ready returns it, and the mask put back leaves them pending.
 * The process's are lent. */
static void open_for_wait(struct coop_greenlet *self, struct sigstate *s)
{
    process_lock();
    bool due_now = queued_for(s) & taken_bits(s);
    give_locked(self, s);
    process_unlock();
    if (due_now)
        coop_signal_greenlet(self, false);
}

int shim_signal_wait(const sigset_t *mask, int (*wait)(void *call, unsigned handled), void *call)
{
    struct coop_greenlet *self = emulating();
    struct sigstate *s = my_state(self);
    if (s == NULL)
        return wait(call, 0);
    atomic_store(&s->in_wait, true);
    unsigned handled = atomic_load(&s->handled);
    uint64_t saved = atomic_load(&s->blocked);
    if (mask != NULL)
        set_blocked(s, bits_of(mask));
    open_for_wait(self, s);
    int r = wait(call, handled);
    int error = errno;          /* the wait's: the kernel sets it after the handler ran */
    set_blocked(s, saved);      /* before in_wait goes: a signal the wait's mask let in but */
    atomic_store(&s->in_wait, false);     /* this one blocks must not run */
    settle(self, s);            /* what the wait queued: runs here, or stays pending */
    errno = error;
    return r;
}

bool shim_signal_kernel_wait_begin(void)
{
    struct sigstate *s = state_of(coop_self());
    if (s == NULL || !atomic_exchange(&s->in_wait, false))
        return false;
    deliver(coop_self());       /* what the wait queued so far */
    return true;
}

void shim_signal_kernel_wait_end(bool in_wait)
{
    struct sigstate *s = state_of(coop_self());
    if (in_wait && s != NULL)
        atomic_store(&s->in_wait, true);
}

unsigned shim_signal_handled(void)
{
    struct sigstate *s = state_of(coop_self());
    return s != NULL ? atomic_load(&s->handled) : 0;
}

bool shim_signal_handled_since(unsigned handled)
{
    struct sigstate *s = state_of(coop_self());
    return s != NULL && atomic_load(&s->handled) != handled;
}

/* --- jumps out of handlers --- */

/*
 * sigsetjmp saves the mask and siglongjmp puts it back, each with a system call glibc makes
 * itself: the one reads the OS thread's mask, not the greenlet's, and the other would set
 * the hub's OS thread's and leave the greenlet's as it was (a handler's, when the jump
 * leaves one). So coop's __sigsetjmp (the assembly below: glibc's must save its caller's
 * registers) first writes the greenlet's mask into words of the saved set that neither the
 * kernel (8 bytes) nor glibc (its shadow-stack pointer, after 2 words) fills, with a mark
 * that names the buffer; the jumps set the greenlet's mask from there, then jump with a
 * copy that saved none. A buffer without the mark (glibc's setjmp function calls its own
 * __sigsetjmp) has the OS thread's.
 */
enum { JMP_MASK = 8, JMP_MARK = 9 };        /* words of __saved_mask.__val */
#define JMP_MARK_BITS 0x636f6f706d61736bULL  /* "coopmask" */

static __attribute__((used)) void *shim_sigsetjmp_prepare(struct __jmp_buf_tag *env, int savemask)
{
    if (savemask) {     /* else env may be shorter (pthread_cleanup_push's): glibc writes no mask */
        struct sigstate *s = my_state(emulating());
        env->__saved_mask.__val[JMP_MASK] = s != NULL ? atomic_load(&s->blocked) : 0;
        env->__saved_mask.__val[JMP_MARK] = s != NULL ? JMP_MARK_BITS ^ (uintptr_t)env : 0;
    }
    return REAL(__sigsetjmp);
}

/* The stack as it came, so that glibc's saves the caller's frame. */
__asm__(".text\n"
        ".globl __sigsetjmp\n"
        ".type __sigsetjmp, @function\n"
        "__sigsetjmp:\n"
        "\t.cfi_startproc\n"
        "\tendbr64\n"
        "\tpush %rdi\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tpush %rsi\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tsub $8, %rsp\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tcall shim_sigsetjmp_prepare\n"
        "\tadd $8, %rsp\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpop %rsi\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpop %rdi\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tjmp *%rax\n"
        "\t.cfi_endproc\n"
        ".size __sigsetjmp, .-__sigsetjmp\n");

extern void __longjmp_chk(struct __jmp_buf_tag env[1], int val) __attribute__((noreturn));

/* The hub's OS thread's mask back if the jump leaves a handler the kernel called, g's saved
 * one if it saved one; returns the buffer to jump with, a copy that saved no mask then
 * (glibc's would set the hub's OS thread's). */
static struct __jmp_buf_tag *mask_put_back(struct coop_greenlet *g, struct __jmp_buf_tag *env,
                                           struct __jmp_buf_tag *copy)
{
    if (kernel_frames != 0) {
        kernel_frames = 0;
        apply_real_mask(hub_mask());
    }
    if (!env->__mask_was_saved)
        return env;
    sigset_t mask;
    bool marked = env->__saved_mask.__val[JMP_MARK] == (JMP_MARK_BITS ^ (uintptr_t)env);
    set_of(marked ? env->__saved_mask.__val[JMP_MASK] : bits_of(&env->__saved_mask), &mask);
    change_mask(g, SIG_SETMASK, &mask, NULL);
    *copy = *env;
    copy->__mask_was_saved = 0;
    return copy;
}

static bool on_own_stack(struct coop_greenlet *g, uintptr_t p);
static void leave_handlers(struct coop_greenlet *g, uintptr_t there);
static void leave_waits(struct coop_greenlet *g, uintptr_t there);

/* What a jump does before glibc's: the masks back, then the end of the handlers and sigwaits
 * it leaves, settled under the mask it lands with. */
static struct __jmp_buf_tag *before_jump(struct __jmp_buf_tag *env, struct __jmp_buf_tag *copy)
{
    struct coop_greenlet *g = emulating();
    if (g == NULL)
        return env;
    struct __jmp_buf_tag *jump = mask_put_back(g, env, copy);
    leave_handlers(g, shim_jmp_sp(env));
    leave_waits(g, shim_jmp_sp(env));
    return jump;
}

EXPORT void siglongjmp(sigjmp_buf env, int val)
{
    struct __jmp_buf_tag copy;
    REAL(siglongjmp)(before_jump(env, &copy), val);
}

EXPORT void longjmp(jmp_buf env, int val)
{
    struct __jmp_buf_tag copy;
    REAL(longjmp)(before_jump(env, &copy), val);
}

EXPORT void _longjmp(jmp_buf env, int val)
{
    struct __jmp_buf_tag copy;
    REAL(_longjmp)(before_jump(env, &copy), val);
}

/* glibc's check lets a jump go down the stack only from the OS thread's alternate stack; a
 * greenlet that parked on one (a handler's sigwait) may go on on another hub's thread, whose
 * alternate stack is another: from off its own stack, the jump goes unchecked. */
EXPORT void __longjmp_chk(struct __jmp_buf_tag env[1], int val)
{
    struct __jmp_buf_tag copy;
    struct coop_greenlet *g = emulating();
    if (g != NULL && !on_own_stack(g, (uintptr_t)__builtin_frame_address(0)))
        REAL(longjmp)(before_jump(env, &copy), val);
    else
        REAL(__longjmp_chk)(before_jump(env, &copy), val);
}

/* A handler's setcontext jumps too: out of the sigwaits below the stack pointer it loads.
 * The mask in the context is the OS thread's that getcontext read, not the greenlet's:
 * the greenlet keeps its own, and the hub's OS thread keeps coop's (glibc's would set it). */
EXPORT int setcontext(const ucontext_t *context)
{
    struct coop_greenlet *g = emulating();
    if (g == NULL)
        return REAL(setcontext)(context);
    kernel_frames = 0;
    leave_handlers(g, (uintptr_t)context->uc_mcontext.gregs[REG_RSP]);
    leave_waits(g, (uintptr_t)context->uc_mcontext.gregs[REG_RSP]);
    ucontext_t copy = *context;     /* its fpregs still point into the original */
    set_of(hub_mask(), &copy.uc_sigmask);
    return REAL(setcontext)(&copy);
}

/* --- thread-directed signals --- */

static siginfo_t directed_info(int sig, int code)
{
    return (siginfo_t){ .si_signo = sig, .si_code = code, .si_pid = getpid(), .si_uid = getuid() };
}

/* send_to for g's state s, read by the caller. */
static int send_to_state(struct coop_greenlet *g, struct sigstate *s, const siginfo_t *info)
{
    int sig = info->si_signo;
    /* Another greenlet without a state is exiting or has exited: its signals die with it,
     * as the kernel drops a signal to a thread that has exited (sent to its hub's thread
     * instead, it would go to another greenlet). Every greenlet gets one as it is made;
     * the caller itself lacks one only when it could not be allocated. */
    if (s == NULL)
        return g == coop_self() ? REAL(pthread_kill)((pthread_t)coop_greenlet_os_thread(g), sig) : 0;
    bool blocked = atomic_load(&s->blocked) & BIT(sig);
    if (!trampolined[sig] && !blocked) {       /* ignored, or the default action */
        struct sigaction current;
        REAL(sigaction)(sig, NULL, &current);
        if (current.sa_handler == SIG_IGN || ignored_by_default(sig))
            return 0;
        if (sig != SIGKILL && sig != SIGSTOP)
            return REAL(pthread_kill)((pthread_t)coop_greenlet_os_thread(g), sig) == 0 ? 0 : EINVAL;
    }
    if (sig == SIGKILL || sig == SIGSTOP)
        return REAL(pthread_kill)((pthread_t)coop_greenlet_os_thread(g), sig);
    return hand_to(g, s, info) ? 0 : EAGAIN;     /* the kernel's answer when the queue is full */
}

/* Sends a signal to greenlet g as the kernel would send one to a thread: 0 or an errno.
 * Another greenlet may be ending on another hub meanwhile: its state is freed after its
 * exit took process_owner (shim_signal_thread_exit), so the sender holds that while it
 * reads and queues to another's state (its holder already, when it is a fault's handler
 * that interrupted the holder). The caller's own state stays; delivering to it takes the
 * lock itself. */
static int send_to(struct coop_greenlet *g, const siginfo_t *info)
{
    int sig = info->si_signo;
    if (sig < 0 || sig >= NSIG)
        return EINVAL;
    if (sig == 0)
        return 0;
    if (g == coop_self())
        return send_to_state(g, my_state(g), info);
    bool lock = !process_lock_mine();
    if (lock)
        process_lock();
    int err = send_to_state(g, state_of(g), info);
    if (lock)
        process_unlock();
    return err;
}

/* COOP_PATCH=-signal, one mask per OS thread: a signal sent to greenlet g goes to its OS
 * thread, where the kernel runs the handler on whichever greenlet is there, and g's wait
 * ends as a thread's would: with EINTR, or going on where the handler has SA_RESTART. Called
 * once the signal is sent (err, the sender's result), so that a handler run on the sender's
 * own thread has run by then. A signal that runs no handler ends no wait (ignored, or a
 * default action: the process ends, or stops and then goes on with the call), and neither
 * does one the caller sends itself: it is not waiting, and its handler has run. */
static int end_wait_of_target(struct coop_greenlet *g, int sig, int err)
{
    struct sigaction current;
    if (err == 0 && sig != 0 && g != coop_self() && REAL(sigaction)(sig, NULL, &current) == 0
        && current.sa_handler != SIG_IGN && current.sa_handler != SIG_DFL)
        coop_signal_greenlet(g, current.sa_flags & SA_RESTART);
    return err;
}

/* A greenlet that is gone takes no signal: 0, as glibc's for a thread that has exited. */
EXPORT int pthread_kill(pthread_t t, int sig)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL)
        return shim_greenlet_gone(t) ? 0 : REAL(pthread_kill)(t, sig);
    if (!emulated())
        return end_wait_of_target(g, sig, REAL(pthread_kill)((pthread_t)coop_greenlet_os_thread(g), sig));
    siginfo_t info = directed_info(sig, SI_TKILL);
    return send_to(g, &info);
}

EXPORT int pthread_sigqueue(pthread_t t, int sig, const union sigval value)
{
    struct coop_greenlet *g = shim_greenlet_of(t);
    if (g == NULL && shim_greenlet_gone(t))
        return 0;
    if (g == NULL)
        return REAL(pthread_sigqueue)(t, sig, value);
    if (!emulated()) {
        pthread_t os_thread = (pthread_t)coop_greenlet_os_thread(g);
        return end_wait_of_target(g, sig, REAL(pthread_sigqueue)(os_thread, sig, value));
    }
    siginfo_t info = directed_info(sig, SI_QUEUE);
    info.si_value = value;
    return send_to(g, &info);
}

EXPORT int raise(int sig)
{
    struct coop_greenlet *g = emulating();
    if (g == NULL)
        return REAL(raise)(sig);
    siginfo_t info = directed_info(sig, SI_TKILL);
    return shim_syscall_result(send_to(g, &info));
}

/*
 * Process-directed signals the program sends itself. Through the kernel, a signal that
 * every greenlet blocks may land on a hub's thread whose real mask is stale (see
 * update_real_mask) and spend a moment in its trampoline, out of sight of a greenlet that
 * unblocks it meanwhile (it must take it before its pthread_sigmask returns). Sent here, it
 * never leaves sight: it goes to the main greenlet if that takes it (the kernel tries the
 * thread the pid names first), else to the caller, else to any greenlet that takes it,
 * else it waits in the process's queue. Left to the kernel: other processes and groups, signal
 * 0, signals without a handler of the program's, and processes with OS threads coop does
 * not run (one of them might take it).
 */
static bool sent_within(pid_t pid, int sig)
{
    return pid == getpid() && sig > 0 && sig < NSIG && trampolined[sig] && emulating() != NULL
           && shim_patched[FAM_thread] && !coop_threads_predate_start();
}

/* Async-signal-safe, as kill is: a handler may send one. Lending and hand_to's delivery to
 * the caller take process_owner, whose holder only a fault's handler interrupts: that one's
 * signal waits in the process's queue for the pass, which a hub runs. 0, or EAGAIN as the
 * kernel's when the queue is full (never for kill's: see enqueue). */
static int send_within(const siginfo_t *info)
{
    struct coop_greenlet *self = emulating();
    struct sigstate *mine = state_of(self);
    bool holder = process_lock_mine();
    if (!holder && main_greenlet != self && lend_if_taken(main_greenlet, info))
        return 0;
    if (!holder && takes(mine, info->si_signo))
        return hand_to(self, mine, info) ? 0 : EAGAIN;
    if (!enqueue(&process, info, false))
        return EAGAIN;
    coop_request_signal_pass();
    return 0;
}

EXPORT int kill(pid_t pid, int sig)
{
    if (!sent_within(pid, sig))
        return REAL(kill)(pid, sig);
    siginfo_t info = { .si_signo = sig, .si_code = SI_USER, .si_pid = pid, .si_uid = getuid() };
    return shim_syscall_result(send_within(&info));
}

EXPORT int sigqueue(pid_t pid, int sig, const union sigval value)
{
    if (!sent_within(pid, sig))
        return REAL(sigqueue)(pid, sig, value);
    siginfo_t info = { .si_signo = sig, .si_code = SI_QUEUE, .si_pid = pid, .si_uid = getuid(), .si_value = value };
    return shim_syscall_result(send_within(&info));
}

/* --- a greenlet's life --- */

void shim_signal_thread_created(struct coop_greenlet *g, const sigset_t *mask)
{
    struct sigstate *creator = my_state(emulating());
    if (creator == NULL)
        return;
    uint64_t blocked = mask != NULL ? bits_of(mask) : atomic_load(&creator->blocked);
    __atomic_store_n(coop_greenlet_signals(g), new_state(blocked), __ATOMIC_RELEASE);
}

void shim_signal_thread_exit(struct coop_greenlet *g)
{
    struct sigstate *s = coop_greenlet_take_signals(g);    /* pass() may be reading it */
    if (s == NULL)
        return;
    process_lock();
    bool returned = move_queued(&s->lent, &process, ~0ULL);     /* see "Lent signals" */
    process_unlock();
    if (returned)
        coop_request_signal_pass();
    siginfo_t info;
    while (dequeue(&s->directed, ~0ULL, &info) != 0)
        ;   /* a thread's own pending signals die with it */
    uint64_t blocked = atomic_load(&s->blocked);
    count_live(-1);
    count(blocked, -1);
    update_real_mask(HERE_IF_CHANGED);
    free(s);
}

/* In a forked child only the forking greenlet lives on: the counts are its alone. Nothing is
 * pending in a child (POSIX; the kernel's sets are empty): the queues are emptied, and every
 * entry is free, those of greenlets gone with the rest. */
static void fork_child(void)
{
    free_all();
    clear(&process);
    atomic_store(&process_owner, NULL);     /* its holder may have been another thread */
    struct sigstate *s = state_of(coop_self());
    if (s == NULL)
        return;
    clear(&s->directed);
    clear(&s->lent);
    for (int sig = 0; sig < 65; sig++)
        atomic_store(&blocking[sig], 0);
    atomic_store(&live, 1);
    count(atomic_load(&s->blocked), +1);
    main_greenlet = coop_self();
    update_real_mask(HERE_TOO);     /* the parent's thread may have had a stale one */
}

/* --- exec --- */

/*
 * An exec keeps the calling OS thread's signal mask and its pending signals, its own and the
 * process's, for the new program. coop keeps the caller's in user space, so its thread takes
 * them for the call, in three steps around what else the call hands on (shim/proc.c):
 *   - exec_begin: what the caller accepts of its queued signals runs (natively it would
 *     have run before the exec); then every signal is blocked on the thread, so that no
 *     handler runs and the greenlet stays on it until the call; the process's queued
 *     signals that the caller blocks are lent to it (the thread is about to be the process's
 *     only one), and each signal then queued for it that it blocks is queued again in the
 *     kernel at this thread: a copy, but of a standard signal already pending there. The
 *     process's too, since another thread (a spare hub's, a stale one) might take a copy
 *     queued for the process: the new program takes them as its thread's own, before any
 *     the kernel holds for the process, where natively the process's come after;
 *   - exec_mask(true), last before the call: the thread takes the caller's mask, under which
 *     the copies stay pending into the new program; exec_mask(false), first after a failed
 *     call: every signal blocked again;
 *   - exec_end, after a failed call: the copies are taken back out of the kernel, the thread's
 *     mask comes back, and the lent signals go back to the process (settle).
 * The originals stay queued throughout. A copy queued from a thread other than the process's
 * first says SI_QUEUE where the original said SI_USER or SI_TKILL (coop_queue_again). Not
 * carried over: signals lent to other greenlets, which the kernel would have kept pending
 * for the process had no thread taken them yet. And a real-time signal already pending in
 * the kernel at this thread (a raw tgkill at a hub's thread id, which every greenlet blocks)
 * may be taken back in place of a copy of the same number, should the exec fail: that
 * copy then stays, beside its original, and the other is lost. The caller's mask lets
 * handlers run during the call (glibc's execvp tries each directory of PATH); should one of
 * them wait, and the greenlet go on on another thread, the rest of the call runs there
 * without the copies, which stay pending on the thread it left, as the caller's mask does
 * (the scheduling state is put back by the thread's id). A handler run for a fault in coop's
 * own code, holding process_owner, hands nothing over.
 */

/* A list of entries in the other order (the caller's alone: taken whole from its queue). */
static uint32_t reversed(uint32_t list)
{
    uint32_t out = NO_ENTRY;
    for (uint32_t i = list, next; i != NO_ENTRY; i = next) {
        next = pool[i - 1].next;
        pool[i - 1].next = out;
        out = i;
    }
    return out;
}

/* Queues a copy of info in the kernel at the calling thread (tid), counted in h; none of a
 * standard signal already pending there. */
static void copy_one(const siginfo_t *info, pid_t pid, pid_t tid, struct shim_signal_handover *h)
{
    int sig = info->si_signo;
    uint64_t kernel_pending = 0;
    if (BIT(sig) & STANDARD)
        coop_sys(SYS_rt_sigpending, &kernel_pending, 8, 0);
    if (!(kernel_pending & BIT(sig)) && coop_queue_again(pid, tid, tid, info) == 0)
        h->copies[sig]++;
}

/* Copies each signal of `bits` queued in q, oldest first (q's owner, under process_owner);
 * those queued without an entry with the siginfo dequeue would make up. */
static void copy_queued(struct sigqueue *q, uint64_t bits, struct shim_signal_handover *h)
{
    pid_t pid = getpid(), tid = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    uint32_t oldest_first = reversed(atomic_exchange(&q->head, NO_ENTRY));
    for (uint32_t i = oldest_first; i != NO_ENTRY; i = pool[i - 1].next)
        if (BIT(pool[i - 1].info.si_signo) & bits)
            copy_one(&pool[i - 1].info, pid, tid, h);
    put_back(q, reversed(oldest_first));
    for (uint64_t orphans = atomic_load(&q->orphans) & bits; orphans != 0; orphans &= orphans - 1) {
        siginfo_t made_up = { .si_signo = __builtin_ctzll(orphans) + 1, .si_code = SI_USER };
        copy_one(&made_up, pid, tid, h);
    }
}

void shim_signal_exec_begin(struct shim_signal_handover *h)
{
    h->handed = false;
    struct coop_greenlet *self = emulating();
    struct sigstate *s = my_state(self);
    if (s == NULL || process_lock_mine())
        return;
    deliver(self);
    coop_block_all_signals(&h->thread_mask);
    h->thread = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    memset(h->copies, 0, sizeof h->copies);
    h->blocked = atomic_load(&s->blocked);
    process_lock();
    move_queued(&process, &s->lent, h->blocked);
    copy_queued(&s->directed, h->blocked, h);
    copy_queued(&s->lent, h->blocked, h);
    process_unlock();
    h->handed = true;
}

void shim_signal_exec_mask(struct shim_signal_handover *h, bool callers)
{
    if (!h->handed)
        return;
    if (callers)
        apply_real_mask(h->blocked);
    else
        coop_block_all_signals(NULL);
}

void shim_signal_exec_end(struct shim_signal_handover *h)
{
    if (!h->handed)
        return;
    struct timespec none = { 0, 0 };
    bool same_thread = coop_sys(SYS_gettid, 0, 0, 0) == h->thread;
    for (int sig = 1; sig < NSIG && same_thread; sig++)
        for (; h->copies[sig] > 0; h->copies[sig]--)
            while (coop_sys6(SYS_rt_sigtimedwait, (long)&(uint64_t){ BIT(sig) }, 0, (long)&none, 8, 0, 0) == -EINTR)
                ;      /* glibc's two signals stay open: setxid's may come */
    if (same_thread)
        coop_restore_signals(&h->thread_mask);
    else
        apply_wanted();
    struct coop_greenlet *self = coop_self();
    settle(self, state_of(self));
}

/* The run-info dump: the handler only asks the hubs; each prints its own greenlets. */
static void dump_handler(int sig)
{
    (void)sig;
    coop_request_dump();
}

void shim_signal_init(void)
{
    free_all();
    if (shim_dump_signal != 0) {
        struct sigaction sa = { .sa_handler = dump_handler, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        REAL(sigaction)(shim_dump_signal, &sa, NULL);
        coop_add_runtime_signal(shim_dump_signal);
        coop_add_interrupting_signal(shim_dump_signal);
    }
    runtime_signals = coop_runtime_signals();
    if (!emulated())
        return;
    sigset_t real;
    REAL(pthread_sigmask)(SIG_BLOCK, NULL, &real);
    atomic_store(&wanted, bits_of(&real));
    coop_preempt_watch_mask(&wanted);
    main_greenlet = coop_self();
    my_state(main_greenlet);
    update_real_mask(HERE_IF_CHANGED);
    coop_set_signal_hooks(deliver, due, pass, kick_again);
    coop_set_hub_mask_hook(apply_wanted);
    pthread_atfork(NULL, NULL, fork_child);
}

/*
 * Waiting for signals. sigwait and its kin take a signal queued for the caller or for the
 * process, or one pending in the kernel (a real sigtimedwait that never waits); otherwise
 * the caller waits on a signalfd for the set (never read), or until a signal is handed to it.
 */
/* A signalfd that becomes readable when a signal of set is pending, or -1. */
static int signal_notifier(const sigset_t *set)
{
    int fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd >= 0)
        shim_fd_created(fd, FD_POLLABLE, true);
    return fd;
}

static void notifier_close(int fd)
{
    if (fd < 0)
        return;
    int saved = errno;
    shim_fd_closed(fd);
    REAL(close)(fd);
    errno = saved;
}

/* The kernel's sigtimedwait until deadline (0: no wait), passing over kicks: one left pending
 * on this OS thread (its mask blocked sig when it came) is no signal of the program's. */
static int kernel_take(const sigset_t *set, siginfo_t *info, int64_t deadline)
{
    siginfo_t scratch;
    siginfo_t *out = info != NULL ? info : &scratch;
    for (;;) {
        struct timespec left = shim_remaining(deadline);
        int sig = REAL(sigtimedwait)(set, out, deadline == COOP_NO_DEADLINE ? NULL : &left);
        if (sig <= 0 || !is_kick(out))
            return sig;
    }
}

static int take_signal(struct sigstate *s, const sigset_t *set, siginfo_t *info)
{
    int sig = take_queued(s, bits_of(set), info);
    deliver_deferred(s);
    if (sig == 0)
        sig = kernel_take(set, info, 0);
    return sig;
}

/* The end of w, s's innermost sigwait, on every way out of its frame (a return, a jump out
 * of a handler run in it, the unwinding of cancellation or of an exception): the sigwait it
 * interrupted waits again, w's notifier closes, and the lent signals w's set took go back.
 * Nothing runs here: an unwinding greenlet takes no signal; a return or a jump delivers
 * after. */
static void end_wait(struct sigstate *s, struct sigwait *w)
{
    atomic_store(&s->waiting, w->outer);
    atomic_store(&s->awaited, w->outer != NULL ? w->outer->set : 0);
    atomic_store(&s->in_wait, false);   /* an outer sigwait is in a handler: never in_wait */
    notifier_close(w->notifier);
    give_back(s);
}

/* A record's cleanup (signal.c is built with -fexceptions for it to run as frames unwind). */
static void wait_over(struct sigwait *w) { end_wait(state_of(coop_self()), w); }

/* Whether p lies on g's own stack, not on an alternate signal stack its handlers ran on.
 * A thread's original context has no bounds here: off the OS thread's alternate stack. */
static bool on_own_stack(struct coop_greenlet *g, uintptr_t p)
{
    void *base;
    size_t size;
    coop_greenlet_stack(g, &base, &size);
    if (base != NULL)
        return p - (uintptr_t)base < size;
    stack_t alt;
    return REAL(sigaltstack)(NULL, &alt) != 0 || (alt.ss_flags & SS_DISABLE) || p - (uintptr_t)alt.ss_sp >= alt.ss_size;
}

/* Whether a jump landing on stack pointer `there` leaves the record at `frame` (a sigwait's,
 * a running handler's), in a frame that encloses the jumper's. Stacks order by age, not by
 * address (an alternate stack may lie above or below): a handler on an alternate stack runs
 * above every frame on the greenlet's own stack, so a jump from there to its own stack
 * leaves every record on the alternate one, and a jump to the alternate stack none on its
 * own. On one stack, it leaves the frames below where it lands. */
static bool leaves(struct coop_greenlet *g, uintptr_t frame, uintptr_t there)
{
    bool own = on_own_stack(g, frame);
    return own == on_own_stack(g, there) ? frame < there : !own;
}

/* Drops the records of the handlers that a jump landing on stack pointer `there` (0: not
 * known) leaves: they no longer run. */
static void leave_handlers(struct coop_greenlet *g, uintptr_t there)
{
    while (running_handlers != NULL && there != 0 && leaves(g, (uintptr_t)running_handlers, there))
        running_handlers = running_handlers->outer;
}

/* A jump out of a handler, landing on stack pointer `there` (0: not known), ends the
 * sigwaits it leaves, as a thread that jumps out of sigwait no longer waits; then what they
 * took runs if the mask it lands with lets it. */
static void leave_waits(struct coop_greenlet *g, uintptr_t there)
{
    struct sigstate *s = state_of(g);
    if (s == NULL || there == 0)
        return;
    bool left = false;
    for (struct sigwait *w; (w = atomic_load(&s->waiting)) != NULL && leaves(g, (uintptr_t)w, there); left = true)
        end_wait(s, w);
    if (left)
        deliver(g);
}

/* The kernel's sigtimedwait until deadline, where coop cannot wait: handlers run at once
 * meanwhile, as in the kernel's waits (see shim_signal_kernel_wait_begin), and end it with
 * EINTR. */
static int kernel_sigtimedwait(const sigset_t *set, siginfo_t *info, int64_t deadline)
{
    bool in_wait = shim_signal_kernel_wait_begin();
    int sig = kernel_take(set, info, deadline);
    shim_signal_kernel_wait_end(in_wait);
    return sig;
}

/* Takes a signal of set for w, s's innermost sigwait, waiting until deadline; restart:
 * whether a handler that ran meanwhile lets the wait go on (sigwait) or ends it with EINTR
 * (sigwaitinfo, sigtimedwait: never restarted). */
static int take_or_wait(struct sigstate *s, struct sigwait *w, const sigset_t *set, siginfo_t *info,
                        int64_t deadline, bool restart)
{
    for (;;) {
        shim_cancel_point();    /* as glibc's: a pending cancellation wins over a signal */
        int sig = take_signal(s, set, info);
        if (sig > 0 || errno != EAGAIN)
            return sig;
        if (coop_now() >= deadline) {
            errno = EAGAIN;
            return -1;
        }
        unsigned handled = atomic_load(&s->handled);
        /* The park's outcome, or why there is no notifier (out of fds). */
        int r = w->notifier >= 0 || (w->notifier = signal_notifier(set)) >= 0
                    ? coop_wait_fd(w->notifier, COOP_READ, deadline) : errno;
        if (r == EBADF) {            /* the program closed it under the wait: another one */
            w->notifier = -1;
        } else if (r != 0 && r != ETIMEDOUT && r != EINTR && r != COOP_RESTART) {
            sig = kernel_sigtimedwait(set, info, deadline);     /* cannot wait */
            if (sig > 0 || errno != EINTR || !restart)      /* sigwait goes on: glibc's calls again */
                return sig;
        } else if (!restart && atomic_load(&s->handled) != handled
                   && (sig = take_signal(s, set, info)) <= 0) {
            errno = EINTR;
            return -1;
        }
        if (sig > 0)
            return sig;
    }
}

/* sigtimedwait until deadline (see take_or_wait), under a record that ends on every way out.
 * The wait is in_wait, as the waits a handler ends are: a handler for a signal outside its
 * set runs at a park's end, on the greenlet's stack, never in coop's code in between. */
static int wait_signal(struct coop_greenlet *g, const sigset_t *set, siginfo_t *info, int64_t deadline,
                       bool restart)
{
    struct sigstate *s = my_state(g);
    siginfo_t scratch;
    int sig, error, caller_errno = errno;
    {
        struct sigwait w __attribute__((cleanup(wait_over))) = {
            .set = bits_of(set), .notifier = -1, .outer = atomic_load(&s->waiting),
        };
        atomic_store(&s->waiting, &w);
        atomic_store(&s->awaited, w.set);
        atomic_store(&s->in_wait, true);
        sig = take_or_wait(s, &w, set, info != NULL ? info : &scratch, deadline, restart);
        error = errno;
    }
    deliver(g);     /* what the wait queued, and the others its set took, if open now */
    errno = sig > 0 ? caller_errno : error;     /* a signal taken leaves it as it was */
    return sig;
}

/* A sigset the program passed, read as the kernel reads one (its 8 bytes): false (EFAULT)
 * where the kernel would fail. libc hands these to the kernel unread. */
static bool read_set(const sigset_t *user, sigset_t *set)
{
    sigemptyset(set);
    return shim_copy_in(set, user, _NSIG / 8);
}

/* libc hands sigtimedwait's timeout to the kernel unread too: a bad one goes there. */
/* COOP_PATCH=-signal: the kernel's wait on a hub's thread, made again when the monitor's
 * preemption signal ended it (the kernel restarts no sigtimedwait), for what is left of
 * the timeout. */
static int sigtimedwait_unpreempted(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)
{
    struct timespec ts;
    int err = timeout != NULL ? shim_read_timeout(timeout, &ts) : 0;
    if (err != 0)
        return shim_syscall_result(err);
    int64_t deadline = shim_deadline_after(timeout != NULL ? &ts : NULL);
    int saved_errno = errno;
    for (;;) {
        unsigned taken = coop_preempt_signals_taken;
        ts = shim_remaining(deadline);
        int r = REAL(sigtimedwait)(set, info, timeout != NULL ? &ts : NULL);
        if (r >= 0 || errno != EINTR || coop_preempt_signals_taken == taken)
            return r;
        errno = saved_errno;
    }
}

EXPORT int sigtimedwait(const sigset_t *user_set, siginfo_t *info, const struct timespec *timeout)
{
    struct coop_greenlet *g = emulating();
    sigset_t set;
    struct timespec ts;
    if (g == NULL && !emulated() && coop_self() != NULL)
        return sigtimedwait_unpreempted(user_set, info, timeout);
    if (g == NULL || !read_set(user_set, &set) || (timeout != NULL && shim_read_timeout(timeout, &ts) != 0))
        return REAL(sigtimedwait)(user_set, info, timeout);
    return wait_signal(g, &set, info, shim_deadline_after(timeout != NULL ? &ts : NULL), false);
}

EXPORT int sigwaitinfo(const sigset_t *user_set, siginfo_t *info)
{
    struct coop_greenlet *g = emulating();
    sigset_t set;
    if (g == NULL && !emulated() && coop_self() != NULL)
        return sigtimedwait_unpreempted(user_set, info, NULL);
    if (g == NULL || !read_set(user_set, &set))
        return REAL(sigwaitinfo)(user_set, info);
    return wait_signal(g, &set, info, COOP_NO_DEADLINE, false);
}

/* glibc's sigwait never fails with EINTR, and returns an error number. */
EXPORT int sigwait(const sigset_t *user_set, int *sig)
{
    struct coop_greenlet *g = emulating();
    sigset_t set;
    if (g == NULL || !read_set(user_set, &set))
        return REAL(sigwait)(user_set, sig);
    int r = wait_signal(g, &set, NULL, COOP_NO_DEADLINE, true);
    if (r < 0)
        return errno;
    *sig = r;
    return 0;
}

/* Waits until a handler has run on the caller since `handled`; a cancellation point, as
 * pause and sigsuspend are. */
static int wait_for_handler(void *unused, unsigned handled)
{
    (void)unused;
    while (!shim_signal_handled_since(handled)) {
        shim_cancel_point();
        coop_sleep_until(COOP_NO_DEADLINE);
    }
    errno = EINTR;
    return -1;
}

EXPORT int sigsuspend(const sigset_t *user_mask)
{
    sigset_t mask;
    if (emulating() == NULL || !read_set(user_mask, &mask))
        return REAL(sigsuspend)(user_mask);
    return shim_signal_wait(&mask, wait_for_handler, NULL);
}

EXPORT int pause(void)
{
    if (emulating() == NULL)
        return REAL(pause)();
    return shim_signal_wait(NULL, wait_for_handler, NULL);
}

/* X/Open's sigpause takes one signal out of the mask; the BSD one (the plain symbol,
 * for old programs) replaces the first 32 signals' mask. */
EXPORT int __xpg_sigpause(int sig)
{
    sigset_t set;
    if (pthread_sigmask(SIG_BLOCK, NULL, &set) != 0 || sigdelset(&set, sig) != 0)
        return -1;
    return sigsuspend(&set);
}

/* <signal.h> renames sigpause to __xpg_sigpause: this one takes its name by hand. */
int bsd_sigpause(int mask) __asm__("sigpause");
EXPORT int bsd_sigpause(int mask)
{
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig < NSIG && sig <= (int)sizeof mask * 8; sig++)
        if (mask & (1u << (sig - 1)))
            sigaddset(&set, sig);
    return sigsuspend(&set);
}
