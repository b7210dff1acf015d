/* Structures shared by the core's files; the shim never sees them. */
#ifndef COOP_INTERNAL_H
#define COOP_INTERNAL_H

#include <stdatomic.h>
#include <ucontext.h>
#include <uv.h>

#include "context.h"
#include "coop.h"
#include "stack.h"
#include "sys.h"
#include "trace.h"

#define COOP_GREENLET_MAGIC 0x636f6f70676c6574ULL   /* "coopglet" */
#define COOP_GREENLET_GONE 0x636f6f70676f6e65ULL    /* "coopgone": released */
/*
 * Ready greenlets switch to each other directly. The hub polls the loop when none is
 * ready, and otherwise once a round: after as many direct switches as greenlets were
 * ready when the round began (at least COOP_ROUND_MIN), so I/O and timers are never
 * starved. Polling more often would not help: libuv's epoll is level-triggered, and it
 * would report again the fds of greenlets that are ready but have not run yet.
 */
#define COOP_ROUND_MIN 64

enum coop_gstate { G_READY, G_RUNNING, G_WAITING, G_FINISHED };

/* Wake reason of coop_nudge: each wait cleans up as for a timeout, then reports a spurious
 * wakeup to its caller. */
#define COOP_NUDGED 1001

/* What a waiting greenlet waits for, for dumps and deadlock detection. */
enum coop_wait_kind { WAIT_FD, WAIT_SLEEP, WAIT_PARK, WAIT_JOIN, WAIT_OFFLOAD, WAIT_PREEMPTED };
struct coop_wait_info {
    enum coop_wait_kind kind;
    const char *what;                /* WAIT_PARK: "mutex", "cond"... */
    const void *obj;                 /* the object parked on, or the greenlet joined */
    int fd, nfds, events;            /* WAIT_FD: the first fd of nfds */
};

struct coop_greenlet {
    uint64_t magic;                  /* first, so a pthread_t can be told apart */
    ucontext_t ctx;
    struct coop_hub *hub;
    uint64_t id;
    enum coop_gstate state;
    int saved_errno;
    bool is_hub, is_main, detached;

    /* Waiting: wait_word is (generation << 1) | waiting, so a late wake cannot end a
     * later wait. wake_reason is written by whoever wins the generation. */
    _Atomic uint64_t wait_word;
    uint64_t wait_gen;
    int wake_reason;
    int interrupt_pending;           /* 0, EINTR or COOP_RESTART */
    uint64_t interrupt_gen;          /* of the wait the signal arrived in */

    int64_t deadline;
    int heap_index;                  /* in the hub's timer heap, or -1 */
    struct coop_wait_info waiting;
    int64_t since;                   /* when it entered its state (coarse clock) */
    unsigned busy_polls;             /* multiplexer calls in a row that found work */

    uint64_t switched_in;            /* with COOP_STATS: when it last started running */
    int64_t cpu_ns;                  /* CPU time charged to it (cpu.c) */
    int number;                      /* its number (cpu.c), or 0 */
    struct coop_sched sched;         /* the shim's */

    struct coop_greenlet *next_ready;
    struct coop_greenlet *all_prev, *all_next;

    void *(*fn)(void *);
    void *arg, *result;
    struct coop_greenlet *joiner;
    void *slot;                      /* the shim's */
    void *held;                      /* the shim's record of libc locks it holds, or NULL */
    void *signals;                   /* the shim's per-greenlet signal state */
    _Atomic bool signals_due;        /* set by anyone (handlers too); cleared by its greenlet */
    int signal_reason;               /* EINTR, or COOP_RESTART when every handler restarts */
    uintptr_t tp;                    /* its thread pointer: its own area's, or its OS thread's */
    bool own_tls;                    /* the area at tp is its own (tls.c) */

    struct coop_stack stack;
    bool stored;                     /* from the store of records, not on its stack */
    void *san_bottom;                /* AddressSanitizer builds: a thread's original stack */
    size_t san_size;

    char name[16];
};

struct coop_watch;

/* A hub's preemption state (core/preempt.c), shared by the monitor thread and the hub's own
 * thread: see the invariants at the top of preempt.c. */
struct coop_preempt_hub {
    _Atomic uint64_t asked_at;       /* monitor: the switch count it saw when it signalled */
    _Atomic bool signal_on_its_way;  /* monitor sets, the hub's handler clears */
    _Atomic int refusal;             /* hub thread: why the last attempt did not preempt */
    _Atomic uintptr_t refusal_at;    /* the instruction that made it unsafe, or 0 */
    _Atomic uint64_t refused_at;     /* published last: the switch count of that attempt */
};

struct coop_hub {
    uv_loop_t loop;
    int epfd;                        /* the hub's epoll set: libuv's backend and waited fds */
    uv_async_t async;
    struct coop_greenlet *current, *hub_g, *main_g;
    struct coop_greenlet *switched_from;   /* for AddressSanitizer's bookkeeping */

    uintptr_t os_thread;             /* the OS thread running the hub: its real pthread_t */
    pid_t tid;                       /* and its kernel thread id */
    struct coop_hub *next_hub;       /* in the list of all hubs */
    _Atomic bool dump_requested;
    _Atomic uint64_t switches;       /* read by the blocking monitor */
    uint64_t polls;

    struct coop_greenlet *ready_head, *ready_tail;
    unsigned ready_len;
    unsigned round_left;             /* direct switches left before the next poll */

    coop_lock_t remote_lock;         /* wakes from other OS threads */
    struct coop_greenlet *remote_head, *remote_tail;
    _Atomic int interrupts;          /* set by signal handlers */
    _Atomic bool signal_pass;        /* the shim asked for a pass over its greenlets */

    struct coop_greenlet **heap;     /* greenlets waiting with a deadline */
    int heap_len, heap_cap;

    struct coop_watch **watches;     /* by fd */
    int watches_len;

    uintptr_t os_tp;                 /* the OS thread's thread pointer */
    bool cancel_held;                /* the hub holds off its main greenlet's cancellation */
    int64_t cpu_mark;                /* the OS thread's CPU clock at the last charge, or 0 */

    struct coop_greenlet *all;       /* every greenlet of this hub, for dumps */
    struct coop_greenlet *dead;      /* finished and released, stacks to free */
    _Atomic(struct coop_greenlet *) joined_elsewhere;  /* the same, joined by another thread */
    struct coop_preempt_hub preempt;
    struct coop_trace_hub *trace;    /* trace.c's buffers (COOP_TRACE, COOP_PROFILE), or NULL */
};

/* The runtime's own per-OS-thread state (kept whole when greenlets get TLS of their own). */
struct coop_thread_state {
    struct coop_hub *hub;
    bool runtime;                    /* coop's or libuv's thread: never gets a hub */
};
extern __thread struct coop_thread_state coop_thread;

extern struct coop_settings coop_settings;

/* Every greenlet, on starting to run, records itself (the thread pointer is its own by
 * then); hubs record NULL. */
static inline void coop_arrive(struct coop_greenlet *g) { coop_running = g->is_hub ? NULL : g; }

/* hub.c */

struct coop_hub *coop_hub_current(void);
void coop_ready(struct coop_hub *h, struct coop_greenlet *g);
uint64_t coop_prepare_wait(struct coop_greenlet *g, enum coop_wait_kind kind, const void *obj);
bool coop_wake(struct coop_greenlet *g, uint64_t gen, int reason);
/* Wakes h's loop from any thread or signal handler (uv_async_send). */
void coop_hub_kick(struct coop_hub *h);
/* Ends a prepared wait that will not happen after all. */
void coop_cancel_wait(struct coop_greenlet *g);
/* Parks the current greenlet (prepared with coop_prepare_wait) until woken. */
int coop_suspend(int64_t deadline);
void coop_switch_away(struct coop_hub *h);
/* Requeues the running greenlet behind every ready one; behind_poll: also behind those the
 * hub's next poll makes ready (a preempted greenlet). coop_yield and preemption use it. */
void coop_requeue_current(bool behind_poll);

/* The end of every wait and yield, once the wait is undone: signals queued for the greenlet
 * are delivered there, on its own stack (their handlers may longjmp out). */
void coop_run_signal_hook(struct coop_greenlet *g);
static inline void coop_after_wait(struct coop_greenlet *g)
{
    if (g != NULL && atomic_load_explicit(&g->signals_due, memory_order_acquire))
        coop_run_signal_hook(g);
}

/* fdwait.c: dispatches one event of the hub's epoll set */
void coop_fd_ready(struct coop_hub *h, int fd, uint32_t events);

/* timer.c */
void coop_timer_add(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline);
void coop_timer_remove(struct coop_hub *h, struct coop_greenlet *g);
/* The earliest deadline, or COOP_NO_DEADLINE. */
int64_t coop_timer_next(const struct coop_hub *h);
/* Wakes the greenlets whose deadline has passed, with ETIMEDOUT. */
void coop_timer_run(struct coop_hub *h);

/* tls.c */
void coop_tls_init(enum coop_tls_mode mode);
void coop_tls_hub_init(struct coop_hub *h);
/* The thread pointer of an area whose control block ends at or below top, and the lowest
 * byte of that area: the stack proper ends there. */
uintptr_t coop_tls_place(char *top);
char *coop_tls_area_bottom(uintptr_t tp);
/* Fills the area at g->tp (placed) for a created greenlet; a thread's own context and
 * hubs get the OS thread's. 0, or -1 out of memory. */
int coop_tls_greenlet_init(struct coop_greenlet *g);
/* On a greenlet's first run, on its own TLS. */
void coop_tls_start(struct coop_greenlet *g);
void coop_tls_greenlet_free(struct coop_greenlet *g);
/* Moves the thread pointer, if it changes: no thread-local access between this and the
 * context switch. */
void coop_tls_enter(struct coop_greenlet *from, struct coop_greenlet *to);
void coop_tls_fork_child(struct coop_hub *h, struct coop_greenlet *self);
/* Holds off a pending cancellation of the thread whose pointer is tp (0: the caller's) while
 * the runtime makes libc calls that glibc treats as cancellation points (the write that
 * wakes a hub); held says whether it had to, for the release. */
bool coop_tls_cancel_hold(uintptr_t tp);
void coop_tls_cancel_release(uintptr_t tp, bool held);

/* cpu.c: charges the OS thread's CPU time since the last charge to the running greenlet,
 * once a program has asked for a greenlet's CPU time (a load per switch until then). */
extern _Atomic bool coop_cpu_charging;
void coop_cpu_charge_now(struct coop_hub *h, struct coop_greenlet *running);
static inline void coop_cpu_charge(struct coop_hub *h, struct coop_greenlet *running)
{
    if (atomic_load_explicit(&coop_cpu_charging, memory_order_relaxed))
        coop_cpu_charge_now(h, running);
}
void coop_greenlet_unnumber(struct coop_greenlet *g);

/* diag.c */
int64_t coop_coarse_now(void);
void coop_dump_hub(struct coop_hub *h);
/* Called when the hub would block with nothing that could ever wake it. */
void coop_check_deadlock(struct coop_hub *h);
void coop_stats_switch(struct coop_greenlet *from, struct coop_greenlet *to);
void coop_diag_hub_init(struct coop_hub *h);
void coop_print_stack(ucontext_t *ctx, bool signal_frame);
/* libunwind takes locks and reads ELF files on first use: signal handlers that unwind
 * (the monitor's, the profiler's, preemption's) call this first, outside any handler. */
void coop_unwind_warm_up(void);
bool coop_in_runtime(uintptr_t ip);
int coop_os_threads(void);           /* of the process, or -1 */

void coop_stats_init(void);
void coop_stats_spawned(long alive);

/* monitor.c, offload.c: the runtime's own threads */
void coop_monitor_start(int max_blocking_ms, int preempt_ms);
/* A greenlet was created: preemption needs the monitor from the second one on. */
void coop_monitor_greenlet_created(void);
void coop_monitor_fork_child(void);
int coop_monitor_threads(void);
int coop_offload_threads(void);
void coop_offload_fork_child(void);

/* preempt.c: time-slice preemption */
/* The signal frame (with AVX-512 state), the handler, libunwind and the switch measured
 * under 8 KiB (tests/unit/test_preempt.c); a stack with less room left is not preempted. */
#define COOP_PREEMPT_STACK_ROOM (24 * 1024)
void coop_preempt_init(int preempt_ms);
/* Before the monitor first starts (the second greenlet): the guarded modules, libunwind's
 * warm-up and the handler. Once per process. */
void coop_preempt_prepare(void);
/* Attempts refused so far (the rule said no), for tests. */
uint64_t coop_preempt_refusals(void);
/* The monitor saw h's greenlet hold it for a whole slice (switch count `switches`): signals
 * the hub's thread, unless a preemption signal is still on its way there. */
void coop_preempt_ask(struct coop_hub *h, uint64_t switches);
/* Why the greenlet holding h since switch count `switches` was not preempted, as a
 * sentence for the blocking monitor's report; false when it knows of no reason. */
bool coop_preempt_why_not(struct coop_hub *h, uint64_t switches, char *why, size_t size);
void coop_preempt_fork_child(struct coop_hub *h);
void coop_preempt_print_stats(void);

/* hub.c: the list of hubs */
extern struct coop_hub *coop_hubs;
extern coop_lock_t coop_hubs_lock;

/* park.c */
void coop_park_fork_child(void);

/* greenlet.c */
void coop_greenlet_fork_child(struct coop_hub *h, struct coop_greenlet *self);
struct coop_greenlet *coop_greenlet_adopt(struct coop_hub *h, bool is_hub);
void coop_reap(struct coop_hub *h);

#endif
