/*
 * The core's interface to the shim: greenlets, hubs and the ways a greenlet waits.
 * Nothing here knows libc names; the shim decides which calls come here.
 *
 * Every wait returns 0 when the awaited thing happened, or ETIMEDOUT, EINTR (a handled
 * signal interrupted the wait), or EBADF (the fd was closed under the waiter). Wakeups may
 * be spurious: callers re-check their condition.
 */
#ifndef COOP_H
#define COOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include "log.h"

#define COOP_NO_DEADLINE INT64_MAX
/* Wake reason of a wait interrupted by a handler installed with SA_RESTART: calls the
 * kernel restarts go on waiting, the others fail with EINTR. */
#define COOP_RESTART 1000
#define COOP_READ 1
#define COOP_WRITE 2

struct coop_greenlet;
struct coop_hub;

/* How a switch moves the thread pointer (core/tls.c). */
enum coop_tls_mode { COOP_TLS_AUTO, COOP_TLS_FSGSBASE, COOP_TLS_SYSCALL };

/* The most regular hubs COOP_HUBS may ask for, and spares COOP_MAX_SPARES may allow. */
#define COOP_MAX_REGULAR_HUBS 96
#define COOP_SPARE_SLOTS 32

/* The real libc functions the runtime needs whose names coop interposes. */
struct coop_settings {
    uintptr_t (*os_thread_self)(void);
    int (*os_thread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    int (*os_thread_join)(pthread_t, void **);
    int (*os_sigaction)(int, const struct sigaction *, struct sigaction *);
    size_t stack_size;
    bool switch_ucontext;
    enum coop_tls_mode tls_mode;
    bool stats;
    bool verbose;
    bool on_deadlock_exit;           /* COOP_ON_DEADLOCK=exit: exit 3 instead of waiting */
    int max_blocking_ms;             /* the blocking monitor, 0: off */
    int hubs;                        /* COOP_HUBS: OS threads running greenlets (0: one per CPU) */
    int preempt_ms;                  /* time slice of a greenlet while others wait, 0: off */
    int handoff_ms;                  /* a hub asleep in a system call this long (or held this long past a
                                      * slice by a greenlet that cannot be preempted) is handed off, 0: never */
    int max_spares;                  /* spare hubs' OS threads for handed-off work, at most (0: none) */
    const char *trace_file;          /* COOP_TRACE: the timeline's file (%p: the pid), or NULL */
    uint64_t trace_max;              /* COOP_TRACE_MAX: bytes kept, 0: no limit */
    const char *profile_file;        /* COOP_PROFILE: collapsed stacks, or NULL */
    int profile_hz;                  /* COOP_PROFILE_HZ */
};

/* Start-up: called once from the shim's constructor; the calling thread becomes a hub. */
void coop_init(const struct coop_settings *settings);

/* The calling program greenlet, or NULL in runtime code (hubs, coop's and libuv's threads)
 * or before start-up: callers then use the plain blocking call. Every greenlet writes
 * itself here when it starts running, so asking costs one load. */
extern __thread struct coop_greenlet *coop_running;
static inline struct coop_greenlet *coop_self(void) { return coop_running; }

/* Preemption the monitor asked for where switching was not safe (core/preempt.c) is taken
 * at the greenlet's next interposed call: every wrapper asks first, for one thread-local
 * load. Nonzero: a request is pending. */
extern __thread uint64_t coop_preempt_wanted;
void coop_preempt_at_call(void);
static inline void coop_preempt_point(void)
{
    if (__builtin_expect(coop_preempt_wanted != 0, 0))
        coop_preempt_at_call();
}
/* The preemption signal (core/preempt.c). SIGURG, as Go's: its default action is to ignore
 * it, so that one still pending when a greenlet calls execve cannot kill the new program. A
 * program's own handler for it stays; while the program leaves it at SIG_DFL or SIG_IGN,
 * coop's handler stands in. One of the runtime's signals while preemption is on. */
#define COOP_PREEMPT_SIGNAL SIGURG
/* Looks at a SIGURG: false when it is not the monitor's (the program's own, for its
 * handler); else preempts the running greenlet if that is safe. */
bool coop_preempt_on_signal(siginfo_t *info, void *context);
bool coop_is_preempt_handler(const void *handler);
/* How many of the monitor's signals the calling greenlet has taken: one that lands as a
 * thread enters a wait the kernel never restarts ends it with EINTR, which a caller that
 * sees the count change may take for coop's and wait again. */
extern __thread unsigned coop_preempt_signals_taken;
/* The program sets SIGURG to SIG_DFL or SIG_IGN: true when coop's handler stands in (it is
 * installed) instead. */
bool coop_preempt_claim_signal(void);
/* The signals the hubs' real masks block (the shim's, which keeps it, given only where it
 * keeps each greenlet's mask): while SIGURG is among them, every greenlet blocks it and the
 * monitor sends none. */
void coop_preempt_watch_mask(const _Atomic uint64_t *hubs_mask);
/* sigaltstack(ss, old) for the calling greenlet (0 or an errno), made with every signal
 * blocked, so that the caller runs what was queued to it meanwhile (the shim delivers): ss,
 * if the kernel takes it, is its own from now on, which every OS thread that runs it will
 * have (with SS_DISABLE: the thread's kept one again). While such a greenlet runs, its OS
 * thread blocks the signals with which coop interrupts code wherever it is (preemption, the
 * dump signal, the samples of the monitor and the profiler): the kernel would push their
 * frames at the stack pointer of the moment, which such a program may point elsewhere than
 * at a C stack (the BEAM's JIT runs Erlang code on its processes' own small stacks). Such a
 * greenlet is not preempted. */
int coop_preempt_set_signal_stack(const stack_t *ss, stack_t *old);
/* What the calling OS thread blocks for its greenlet, as above: part of its real mask
 * (async-signal-safe). */
uint64_t coop_preempt_held_signals(void);
/* One of coop's signals that interrupt a hub's thread wherever it is; at start-up. */
void coop_add_interrupting_signal(int sig);
/* Preemptions so far (by the signal, and at a call), for tracing and tests. */
uint64_t coop_preemptions(void);
/* Runs on the hub's thread each time a greenlet is preempted, just before it leaves:
 * at_call false inside the preemption signal's handler, where the interrupted code is in
 * none of the modules coop will not preempt (see preempt.c), true at an interposed call.
 * A tracer records an instant event here. */
void coop_set_preempt_hook(void (*hook)(struct coop_greenlet *g, bool at_call));

/* Whether a call returns into the sanitizer runtime (make test-asan), which must see the OS
 * thread's state rather than the greenlet's. */
#if defined(__SANITIZE_ADDRESS__)
bool coop_from_sanitizer(const void *return_address);
#else
static inline bool coop_from_sanitizer(const void *return_address) { (void)return_address; return false; }
#endif

/* The OS thread's instance of a thread-local variable of static TLS, given its address in
 * the caller's: a greenlet's own area holds another instance. */
void *coop_os_thread_local(void *addr);

/* Runs fn(arg) on the control block glibc knows the calling OS thread by (a hub's thread's
 * own; the initial thread's for hub 0), whatever greenlet runs there, and returns its
 * result; async-signal-safe. For glibc's handlers that act on their thread's record. */
long coop_tls_run_as_thread(long (*fn)(void *), void *arg);
/* Runs fn(arg) from a greenlet on its hub's own area, a control block no greenlet uses:
 * glibc then takes it for the caller's, and the initial thread's record for another
 * thread's. */
long coop_tls_run_on_hub_area(long (*fn)(void *), void *arg);
/* The tid the caller's control block holds, the one glibc names it by: its OS thread's,
 * which the greenlets running there share. */
pid_t coop_tls_own_tid(void);
/* Whether the runtime's threads run: the program created a thread (since it started, or since
 * the fork that made it). */
bool coop_sched_started(void);
/* The CPUs the process could use when coop started, on which every hub's thread runs (false:
 * the kernel did not say). */
bool coop_process_cpus(cpu_set_t *out);
/* Whether tid is the kernel's id of a hub's thread (what a greenlet's gettid() says). */
bool coop_is_hub_thread_id(pid_t tid);

/* Marks the calling OS thread as runtime-owned: it never gets a hub. */
void coop_mark_runtime_thread(void);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t coop_now(void);

/* --- greenlets --- */
struct coop_spawn_attr {
    size_t stack_size;       /* 0: the default */
    size_t guard_size;
    void *stack;             /* program-supplied stack, or NULL */
    bool detached;
    /* Called with the new greenlet before any hub can run it (another hub may run it at
     * once after), or NULL. */
    void (*prepare)(struct coop_greenlet *g, void *arg);
    void *prepare_arg;
};

/* Creates a greenlet on the caller's hub; it runs after the greenlets already ready.
 * Returns 0, EAGAIN (no memory or mappings left) or ENOSYS (a runtime thread: no hub). */
int coop_spawn(struct coop_greenlet **out, void *(*fn)(void *), void *arg,
               const struct coop_spawn_attr *attr);
/* Ends the calling greenlet with a result; the process exits when the last one ends. */
void coop_exit(void *result) __attribute__((noreturn));
/* 0, EBUSY (deadline 0, for try-join, and not finished), ETIMEDOUT, EINVAL, EDEADLK,
 * or EINTR when the joiner was nudged (coop_nudge) and its cancellation is to act. */
int coop_join(struct coop_greenlet *g, void **result, int64_t deadline);
int coop_detach(struct coop_greenlet *g);
void coop_yield(void);
/* After a poll, select or epoll_wait that found work without waiting: yields now and then. */
void coop_fair_share(void);

/* Runs when a greenlet ends, on its own stack, before joiners wake (key destructors...). */
void coop_set_exit_hook(void (*hook)(struct coop_greenlet *g));

/* Starts every created greenlet: start(fn, arg) calls fn(arg) and returns the greenlet's
 * result (the shim sets up glibc's cancellation buffer around it). */
void coop_set_start_hook(void *(*start)(void *(*fn)(void *), void *arg));

/* Per-greenlet data owned by the shim (thread-specific values, cancellation...). */
void **coop_greenlet_slot(struct coop_greenlet *g);

/* Locks of libc's own that a greenlet holds (stdio's FILE locks) belong, for glibc, to a
 * thread control block, which the greenlets of a hub share or each have one of: a greenlet
 * parked holding one would let the others in, or hang them in glibc's futex. While
 * *coop_greenlet_held(g) is not NULL, release(g, finished) runs whenever g leaves its OS
 * thread (finished: for good) and retake(g) whenever it comes back. */
void coop_set_hold_hooks(void (*release)(struct coop_greenlet *g, bool finished),
                         void (*retake)(struct coop_greenlet *g));
void **coop_greenlet_held(struct coop_greenlet *g);
uint64_t coop_greenlet_id(const struct coop_greenlet *g);
/* Whether g is a thread's original context rather than a created greenlet. */
bool coop_greenlet_is_main(const struct coop_greenlet *g);
/* Whether g is the process's main thread: the initial thread's, or a forked child's forker. */
bool coop_greenlet_leads_process(const struct coop_greenlet *g);
/* That greenlet. */
struct coop_greenlet *coop_process_leader(void);
bool coop_greenlet_finished(const struct coop_greenlet *g);
bool coop_greenlet_detached(const struct coop_greenlet *g);
/* The OS thread that runs g, as its real pthread_t. */
uintptr_t coop_greenlet_os_thread(const struct coop_greenlet *g);
void coop_greenlet_set_name(struct coop_greenlet *g, const char *name);
/* The name g has until coop_greenlet_set_name gives it one: a new thread's creator's, as
 * the kernel gives it. Dumps, traces and profiles show only a given name. */
void coop_greenlet_inherit_name(struct coop_greenlet *g, const char *name);
const char *coop_greenlet_name(const struct coop_greenlet *g);
/* g's stack; base NULL for a thread's original context, whose stack is the one glibc
 * describes for its own record of the thread (coop_greenlet_thread_record). */
void coop_greenlet_stack(const struct coop_greenlet *g, void **base, size_t *size);
/* The real pthread_t whose control block g runs on: for the main greenlet, the initial
 * thread's, wherever it runs. */
uintptr_t coop_greenlet_thread_record(const struct coop_greenlet *g);
/* Whether p is a live greenlet handle (pthread_t values are greenlet addresses). */
bool coop_is_greenlet(const void *p);
/* Whether p was a greenlet handle, since released (joined, or ended detached). */
bool coop_greenlet_gone(const void *p);
/* The guard size below g's stack. */
size_t coop_greenlet_guard_size(const struct coop_greenlet *g);

/* Scheduling policy, priority and CPU affinity the program gave a greenlet: kept for the
 * shim, which reports them; coop runs every greenlet alike. cpus is the shim's: NULL while
 * no set was given, then its allocation, freed and replaced by a marker when the greenlet
 * ends (shim/sched.c). */
struct coop_sched { int policy, priority; bool known; void *cpus; };
struct coop_sched *coop_greenlet_sched(struct coop_greenlet *g);
/* g's CPU time in ns (cpu.c): charged at every switch from the first call on. */
int64_t coop_greenlet_cpu_ns(struct coop_greenlet *g);
/* A small positive number that names g until it ends, and back (NULL for none). 0 when no
 * number can be had (out of memory), -1 once g has ended (it may not be joined yet). */
int coop_greenlet_number(struct coop_greenlet *g);
struct coop_greenlet *coop_greenlet_numbered(int n);

/* --- cancellation (tls.c): glibc's own per-thread state, in g's thread control block --- */
/* The bits of glibc's cancelhandling word (nptl/descr.h). */
#define COOP_CANCEL_DISABLED 0x01      /* PTHREAD_CANCEL_DISABLE */
#define COOP_CANCEL_ASYNC 0x02         /* PTHREAD_CANCEL_ASYNCHRONOUS */
#define COOP_CANCELING 0x04
#define COOP_CANCELED 0x08
#define COOP_CANCEL_EXITING 0x10
_Atomic int *coop_greenlet_cancel_state(const struct coop_greenlet *g);
/* The head of g's chain of cancellation buffers (glibc's cleanup_jmp_buf, which
 * pthread_cleanup_push extends) and glibc's pointer guard, which mangles saved jmp_buf
 * pointers. */
void **coop_greenlet_unwind_chain(const struct coop_greenlet *g);
uintptr_t coop_tls_pointer_guard(void);
/* Wakes g if it waits, as a spurious wakeup: it looks at its state again (cancellation). */
void coop_nudge(struct coop_greenlet *g);

/* --- waits --- */
struct coop_fd_event { int fd; int events; };   /* events: COOP_READ | COOP_WRITE */
/* Waits until one of the fds may be ready. Errors: ENOMEM, or the errno of an fd that
 * epoll cannot watch (EPERM for regular files): the caller then blocks for real. */
int coop_wait_fds(const struct coop_fd_event *set, int n, int64_t deadline);
int coop_wait_fd(int fd, int events, int64_t deadline);
/* 0 at the deadline or when nudged (coop_nudge) before it, or EINTR / COOP_RESTART when a
 * signal handler ran. */
int coop_sleep_until(int64_t deadline);
/* The fd is being closed or replaced: its waiters wake with EBADF, its watcher goes. */
void coop_fd_forget(int fd);
/* Whether fd is one of the runtime's own (a hub's epoll sets and wake fd, libunwind's pipe),
 * which the program never had and must not close; the first such fd from `from` on, or -1. */
bool coop_fd_is_runtime(int fd);
int coop_runtime_fd_next(unsigned from);
/* True while the runtime's own code calls interposed functions on this thread (libunwind, in
 * an unwind window): an fd made meanwhile is the runtime's, which coop_runtime_fd_take moves
 * out of the program's numbers (returning its new one) and marks, and one it closes is
 * closed (coop_runtime_fd_close: 0, or -errno). */
bool coop_runtime_calling(void);
int coop_runtime_fd_take(int fd);
int coop_runtime_fd_close(int fd);

/* Parks the caller (greenlet or OS thread) on addr while still_wait(ctx) holds, checked
 * under the lot's lock so no wakeup is lost. 0 when unparked, EAGAIN when still_wait was
 * false, ETIMEDOUT, EINTR. bitset filters unpark_bitset (~0u matches everything); what
 * names the kind of object ("mutex", "cond"...) for dumps. */
int coop_park(const void *addr, bool (*still_wait)(const void *ctx), const void *ctx,
              uint32_t bitset, int64_t deadline, const char *what);
/* Wakes up to n parkers of addr whose bitset meets bitset; returns how many. */
int coop_unpark(const void *addr, int n, uint32_t bitset);

/* Runs fn(arg) on libuv's threadpool while the calling greenlet waits (inline when the
 * caller is no greenlet). Every wait lasts until fn has returned. */
void coop_offload(void (*fn)(void *), void *arg);
/* The same, for work a signal handler should end: when one interrupts the wait, cancel(arg)
 * runs, which must make fn return soon; the wait still lasts until fn has returned.
 * 0, or EINTR / COOP_RESTART when a handler interrupted it. */
int coop_offload_interruptible(void (*fn)(void *), void (*cancel)(void *), void *arg);
/* The same in two steps: fn(arg) runs on the pool while the caller goes on, and
 * coop_offload_finish waits until it has returned. NULL when fn already ran, inline. */
struct coop_offload;
struct coop_offload *coop_offload_start(void (*fn)(void *), void *arg);
void coop_offload_finish(struct coop_offload *call);
void coop_offload_configure(unsigned threads);

/* In the child of a fork: only the calling greenlet remains, with a fresh loop. */
void coop_fork_child(void);

/* --- diagnostics --- */
/* Loads what stack reports need (libunwind), before a greenlet exists that could overflow
 * its stack: the overflow report runs in a signal handler, which cannot load a library. */
void coop_diag_prepare(void);
/* Asks every hub to print its greenlets (async-signal-safe). */
void coop_request_dump(void);
/* From a SIGSEGV handler: reports, and says whether, a greenlet ran into its guard page. */
bool coop_stack_overflowed(const siginfo_t *info, void *context);
/* coop's SIGSEGV handler, installed when the program has none; sigaction hides it. */
void coop_overflow_handler_install(void);
bool coop_is_overflow_handler(const void *handler);
/* With COOP_TRACE or COOP_PROFILE, coop flushes on SIGTERM and SIGINT when the program
 * leaves them at their default action; sigaction hides that handler too. */
bool coop_trace_is_handler(const void *handler);
/* The program installed a signal handler (deadlock detection then stands down). */
void coop_note_signal_handler(void);

/* Signals per greenlet (the shim's signal.c keeps the state; the core delivers it):
 * the state's pointer, and hooks: deliver runs on g, on its own stack, at the end of its
 * current or next wait or yield once g has been signalled; due(g), on g, says whether g
 * still has a signal to take (a wait about to sleep ends only then): 0 if not, else EINTR,
 * or COOP_RESTART when every handler due has SA_RESTART; kick_again(g), from the monitor,
 * for g that has held its hub a while (asleep in a system call or computing) while signals
 * are due to it (under the greenlet list's lock, as pass's walk). */
void **coop_greenlet_signals(struct coop_greenlet *g);
/* How many times g has been switched to: the same count before and after a stretch of g's
 * code means g never left its OS thread meanwhile (async-signal-safe, on g). */
uint32_t coop_greenlet_resumes(const struct coop_greenlet *g);
/* Takes the state's pointer from g (leaving NULL) while no walk of coop_each_greenlet is
 * under way: a walk may read the state of every greenlet it meets. */
void *coop_greenlet_take_signals(struct coop_greenlet *g);
void coop_set_signal_hooks(void (*deliver)(struct coop_greenlet *g), int (*due)(struct coop_greenlet *g),
                           void (*pass)(void), void (*kick_again)(struct coop_greenlet *g));
/* g has signals to take: its wait, if it is in one, ends with EINTR, or COOP_RESTART
 * when restartable; deliver(g) runs when it next ends a wait (async-signal-safe). */
void coop_signal_greenlet(struct coop_greenlet *g, bool restartable);
/* The kernel tid of the OS thread that runs g's own code now, in a system call coop left to
 * the kernel included, when that is not the caller's thread; else 0 (g waits, is queued, or
 * runs here). A hint: g may leave that thread at any moment (async-signal-safe). */
pid_t coop_running_elsewhere(const struct coop_greenlet *g);
/* apply sets the calling OS thread's real mask to the one hubs' threads should have; every
 * hub calls it before its next switch after coop_hub_masks_changed (hub.c). */
void coop_set_hub_mask_hook(void (*apply)(void));
void coop_hub_masks_changed(void);
/* The calling hub's thread has another mask for now (a handler's): it takes the hubs' one
 * again before its next switch (async-signal-safe). Returns what the hub had seen, for
 * coop_hub_mask_seen_again: the handler ended without a switch, and its sigreturn gives the
 * thread the hubs' mask (the shim's frame keeps no more). */
uint64_t coop_hub_mask_stale(void);
void coop_hub_mask_seen_again(uint64_t seen);
/* Whether ip is in coop's own code (libcoop.so): frames there are the runtime's, not the
 * program's (async-signal-safe). */
bool coop_in_runtime(uintptr_t ip);
/* Asks the calling thread's hub to run pass() soon, in normal context (async-signal-safe). */
void coop_request_signal_pass(void);
/* Calls fn for every program greenlet of the calling thread's hub; normal context only. */
void coop_each_greenlet(void (*fn)(struct coop_greenlet *g, void *arg), void *arg);
/* Whether the calling OS thread runs a hub (its program greenlets or its own loop). */
bool coop_on_hub_thread(void);
/* Whether the process had other OS threads when coop started (they stay OS threads). */
bool coop_threads_predate_start(void);
/* In a signal handler: the greenlet whose own code it interrupted, or NULL: on a hub, the
 * hub's own code, a switch under way, or a wait the greenlet has prepared or been woken
 * from before it left (a handler run there would run on a stack or TLS not yet the
 * greenlet's, or go unseen by the wait; a preemption would start a second wait). */
struct coop_greenlet *coop_interrupted_greenlet(void);
/* Signals the runtime itself uses (the blocking monitor's, the dump signal): never to be
 * blocked on a hub, and no sign that the program still waits for a signal. */
uint64_t coop_runtime_signals(void);
void coop_add_runtime_signal(int sig);

/* A signal handler ran: interrupt g's wait
 with EINTR, or COOP_RESTART when the handler
 * has SA_RESTART (async-signal-safe). g NULL picks the main greenlet of the calling
 * thread's hub, as the kernel prefers the main thread for a process-wide signal. */
void coop_interrupt(struct coop_greenlet *g, bool restartable);
/* Whether the caller is the process's only program greenlet: nothing else could run
 * while it waits, so a plain blocking call is the exact and cheapest way. */
extern _Atomic long coop_live_greenlets;
static inline bool coop_alone(void)
{
    return __atomic_load_n((long *)&coop_live_greenlets, __ATOMIC_RELAXED) <= 1;
}

#endif
