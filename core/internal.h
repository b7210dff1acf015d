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
 * Ready greenlets of a hub switch to each other directly. The hub polls when none is
 * ready, and otherwise once a round: after as many switches (direct, or from the hub's
 * loop) as greenlets were ready when the round began (at least COOP_ROUND_MIN), so I/O
 * and timers are never starved.
 */
#define COOP_ROUND_MIN 64
/* Hubs the scheduler can hold: regular ones (COOP_HUBS) and spares (sched.c). */
#define COOP_MAX_HUBS (COOP_MAX_REGULAR_HUBS + COOP_SPARE_SLOTS)
/* A hub's run queue (sched.c): a power of two. */
#define COOP_RUNQ_SIZE 512

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

/* wait_word: (generation << 2) | WAIT_DUMPING | WAIT_WAITING. */
#define INTERRUPT_EINTR 1u      /* coop_greenlet.interrupt's low bits */
#define INTERRUPT_RESTART 2u
#define WAIT_WAITING 1u
#define WAIT_DUMPING 2u
/* ending (greenlet.c): off its stack; detached; a joiner waits for it. */
#define END_FINISHED ((uintptr_t)1)
#define END_DETACHED ((uintptr_t)2)
#define END_JOINING ((uintptr_t)4)

/*
 * A greenlet. Who may touch what, now that greenlets move between OS threads:
 *  - the OS thread running it (the one whose hub has it as current) owns every plain
 *    field; a greenlet is handed from one OS thread to another only through a run queue
 *    or an inbox (sched.c), whose release/acquire pairs publish those fields;
 *  - wait_word, on_cpu and ending are atomics shared with wakers, thieves,
 *    joiners and dumps on other threads (the protocols are in hub.c and greenlet.c);
 *  - state is written by its runner and by the one waker that wins wait_word, read by
 *    dumps and deadlock detection (relaxed: for reports only);
 *  - deadline and the heap_ links belong to the timer heap of timer_hub, under its lock.
 */
struct coop_greenlet {
    uint64_t magic;                  /* first, so a pthread_t can be told apart */
    /* What a wake and the resume after it touch is in two lines (records are line-aligned,
     * hubs' own aside): magic's, and the first after ctx. A greenlet that waited long, or
     * last ran on another CPU, then costs two misses there instead of one per field. */
    /* Waiting: a late wake cannot end a later wait (the generation), and a dump holds
     * the wake back while it reads the stack (WAIT_DUMPING). wake_reason is written by
     * whoever wins the generation. */
    _Atomic uint64_t wait_word;
    uint64_t wait_gen;
    int wake_reason;
    enum coop_gstate state;
    struct coop_hub *hub;            /* the hub running it, or the last one that did */
    uintptr_t tp;                    /* its thread pointer: its own area's, or its OS thread's */
    pid_t tid_written;               /* the tid last written into its control block */
    uint32_t resumes;                /* switches to it, written by the hub that resumes it */
    /* True from the moment a hub decides to resume it until the context it switched
     * away to has started: a hub that pops it meanwhile waits before resuming it. */
    _Atomic bool on_cpu;
    bool is_hub;
    bool own_tls;                    /* the area at tp is its own (tls.c) */
    bool keeps_tid;                  /* its area is glibc's record of an OS thread (tls.c) */
    bool own_sigaltstack;            /* its code set up a signal stack of its own (preempt.c) */

    ucontext_t ctx;
    uint64_t id;
    int saved_errno;
    /* The loader's locks (loader.c): their recursions under its tid when it last arrived,
     * and those it took and still holds; both written by the OS thread running it, read by
     * the hub that pops it next once on_cpu is clear (released after the last write). */
    int loader_depth_at_arrival, loader_held;
    bool is_main;
    _Atomic bool signals_due;        /* set by anyone (handlers too); cleared by its greenlet */
    void *held;                      /* the shim's record of libc locks it holds, or NULL */
    int64_t since;                   /* when it entered its state (coop_stamp) */
    struct coop_wait_info waiting;
    /* A signal's interrupt for a wait, for the next coop_sched_service: the wait's
     * generation << 2 | INTERRUPT_EINTR or INTERRUPT_RESTART; 0 for none. Signallers raise
     * it (a later wait replaces an earlier one, see coop_interrupt); that pass takes it. */
    _Atomic uint64_t interrupt;

    struct coop_hub *timer_hub;      /* whose timer heap holds it, or NULL */
    int64_t deadline;
    /* Its place in that heap (timer.c): first child, next sibling, and the parent (for a
     * first child) or previous sibling; NULL for the root. */
    struct coop_greenlet *heap_child, *heap_next, *heap_prev;
    unsigned busy_polls;             /* multiplexer calls in a row that found work */
    bool said_unpreemptible;         /* the monitor's: warned that it kept its hub (monitor.c) */
    struct coop_kept_place {         /* its place in a parking lot queue (park.c) */
        const void *addr;            /* NULL: none kept */
        uint64_t ticket;
        uint32_t resumes;            /* its resumes when that wait ended */
    } kept_place;

    uint64_t switched_in;            /* with COOP_STATS: when it last started running */
    int64_t cpu_ns;                  /* CPU time charged to it (cpu.c) */
    int number;                      /* its number (cpu.c), 0 for none yet, -1 once it ended */
    struct coop_sched sched;         /* the shim's */

    struct coop_greenlet *next_ready;   /* in an inbox, the global queue or a dead list */
    struct coop_greenlet *all_prev, *all_next;   /* coop_all_greenlets, under its lock */

    void *(*fn)(void *);
    void *arg, *result;
    _Atomic uintptr_t ending;        /* END_FINISHED | END_DETACHED | END_JOINING */
    void *slot;                      /* the shim's */
    void *signals;                   /* the shim's per-greenlet signal state */
    _Atomic bool nudged;             /* set by coop_nudge; taken by its greenlet's next wait */
    int signal_reason;               /* EINTR, or COOP_RESTART when every handler restarts */

    struct coop_stack stack;
    stack_t sigaltstack;             /* that signal stack, while own_sigaltstack */
    uint16_t taken_stacks[2];        /* hubs' kept signal stacks its handlers parked on, its
                                        own since (preempt.c): index + 1 in the record, 0 none */
    bool waits_on_signal_stack;      /* it left its thread from its own signal stack (a handler
                                        of its waits there): written by its switches, read by
                                        the hub that resumes it after on_cpu (preempt.c) */
    bool stored;                     /* from the store of records, not on its stack */
    void *san_bottom;                /* AddressSanitizer builds: a thread's original stack */
    size_t san_size;

    char name[16];                   /* given by the program: what dumps, traces and profiles show */
    char inherited_name[16];         /* its creator's when it was made: its name until it is given one */
    bool named;
};
_Static_assert(offsetof(struct coop_greenlet, own_sigaltstack) < 64, "what a wake and a resume touch: magic's line");
_Static_assert(offsetof(struct coop_greenlet, saved_errno) / 64
               == (offsetof(struct coop_greenlet, waiting.kind) + sizeof(enum coop_wait_kind) - 1) / 64,
               "what a wake and a resume touch: the line after ctx");

/* A hub's run queue: the owner pushes at tail and pops at head; thieves take from head. */
struct coop_runq {
    _Atomic uint32_t head;           /* advanced with a CAS by whoever consumes */
    char pad1[60];
    _Atomic uint32_t tail;           /* written by the owner only */
    /* A greenlet its deadline woke, run before the ring (Go's runnext): set and taken by
     * the owner, taken by whoever takes the whole queue (an adopter), never by thieves. */
    struct coop_greenlet *_Atomic next;
    char pad2[48];                   /* the slots start at 128, as before the slot */
    struct coop_greenlet *_Atomic slot[COOP_RUNQ_SIZE];
};

/* A hub's preemption state (core/preempt.c), shared by the monitor thread and the hub's own
 * thread: see the invariants at the top of preempt.c. */
struct coop_preempt_hub {
    _Atomic uint64_t asked_at;       /* monitor: the switch count it saw when it signalled */
    _Atomic bool signal_on_its_way;  /* monitor sets, the hub's handler clears */
    _Atomic int refusal;             /* hub thread: why the last attempt did not preempt */
    _Atomic uintptr_t refusal_at;    /* the instruction that made it unsafe, or 0 */
    _Atomic uint64_t refused_at;     /* published last: the switch count of that attempt */
    _Atomic bool interrupts_held;    /* hub thread: its mask keeps coop's interrupting signals
                                        out, for a greenlet with a signal stack of its own */
};

/* A hub's thread's alternate signal stack (preempt.c), its own thread's state: the one it
 * keeps (diag.c's, or one the thread had), and the one it has now, a greenlet's while lent. */
struct coop_signal_stacks {
    stack_t kept;
    int kept_index;                  /* in preempt.c's record of kept stacks, or -1 */
    void *installed;                 /* ss_sp of the one the kernel has (NULL: none) */
    bool lend_after_switch;          /* the last switch left a handler parked on the installed
                                        stack, or went to one parked on its own: every signal
                                        blocked until arrive lends the arriving one's */
    uint64_t mask_after;             /* the mask the thread takes then */
};

enum coop_hub_state { HUB_RUNNING, HUB_SLEEPING, HUB_NOTIFIED, HUB_RETIRED };
/* Why a hub does not run its loop: its OS thread is stuck in a greenlet's system call, or
 * runs a greenlet that computes where it cannot be preempted, or it is a spare that is not
 * needed. Another hub then adopts what it held. */
enum coop_hub_away { AWAY_NONE, AWAY_BLOCKED, AWAY_UNPREEMPTIBLE, AWAY_RETIRED };

/*
 * A hub: an OS thread that runs greenlets, with its run queue, epoll sets and timers. Fields above `shared` belong to the hub's own OS thread; the rest say who else
 * touches them.
 */
struct coop_hub {
    int index;                       /* in coop_hub_table */
    bool spare;
    bool no_thread;                  /* its thread could not start (sched.c, under start_lock) */
    int epfd;                        /* the hub's own: its fd set and the fd sets it adopted */
    struct coop_greenlet *current, *hub_g;
    struct coop_greenlet *switched_from;   /* for the arriving side of a switch */
    _Atomic bool switching;          /* from switch_to's start until the next context arrives */
    uintptr_t os_thread;             /* the OS thread running the hub: its real pthread_t */
    pid_t tid;                       /* and its kernel thread id */
    uintptr_t os_tp;                 /* the OS thread's thread pointer */
    uint64_t polls;
    uint64_t passes;                 /* through its loop, each from its own greenlet */
    uint64_t masks_seen;             /* hub_mask_changes when it last took the mask (hub.c) */
    struct coop_signal_stacks signal_stacks;
    unsigned round_left;             /* switches (direct, or the loop's) left before the next poll */
    bool dispatching;                /* in hub_poll, waking the waiters of fd events (sched.c) */
    bool running_timers;             /* in coop_timer_run, waking the waiters whose deadline passed */
    struct coop_greenlet *dead;      /* finished detached greenlets, to free */
    uint64_t adopted[COOP_MAX_HUBS / 64];  /* hubs whose sets this one polls (sched.c) */
    uint64_t steals, stolen;         /* for the statistics */
    int64_t longest_run;             /* with COOP_STATS */
    uint64_t longest_id;
    char longest_name[16];
    int64_t cpu_mark;                /* the OS thread's CPU clock at the last charge, or 0 */
    struct coop_trace_hub *trace;    /* trace.c's buffers (COOP_TRACE, COOP_PROFILE), or NULL */
    /* hub_g's record on a thread of the runtime's: made with the hub, so that thread has
     * nothing to allocate (out of memory there it could only abort). */
    struct coop_greenlet hub_record;

    /* shared: */
    int fdset;                       /* the fds its greenlets wait on (fdwait.c) and wake_fd; adopters poll it */
    int wake_fd;                     /* an eventfd in fdset: written to wake it while it sleeps */
    _Atomic uint64_t switches;       /* read by the blocking monitor */
    _Atomic int state;               /* enum coop_hub_state: see sched.c */
    _Atomic int away;                /* enum coop_hub_away: set by the monitor */
    _Atomic bool adoption_wanted;
    struct coop_hub *_Atomic adopter;
    struct coop_runq runq;           /* see sched.c */
    coop_lock_t inbox_lock;          /* greenlets handed to this hub by other threads */
    struct coop_greenlet *inbox_head, *inbox_tail;
    _Atomic bool inbox_nonempty;
    coop_lock_t timer_lock;          /* the heap: any hub may run another's overdue timers */
    struct coop_greenlet *heap;      /* its root, the earliest deadline (timer.c), or NULL */
    int heap_len;
    _Atomic uint64_t handoffs;       /* times the monitor gave away its work */
    _Atomic int64_t stamp;           /* coop_stamp: set by its polls and the monitor's ticks */
    struct coop_preempt_hub preempt; /* the monitor and the hub's thread: see preempt.c */
};

/* The runtime's own per-OS-thread state (kept whole when greenlets get TLS of their own:
 * tls.c seeds a copy into each greenlet's area, and a greenlet's copy names the hub it
 * runs on, rewritten whenever it arrives on one). */
struct coop_thread_state {
    struct coop_hub *hub;
    bool runtime;                    /* coop's or libuv's thread: never gets a hub */
};
extern __thread struct coop_thread_state coop_thread;

extern struct coop_settings coop_settings;

/* Every greenlet, on starting to run, records itself and its hub (the thread pointer is
 * its own by then); hubs record NULL. */
static inline void coop_arrive(struct coop_greenlet *g)
{
    coop_running = g->is_hub ? NULL : g;
    coop_thread.hub = g->hub;
}

static inline void coop_gstate_set(struct coop_greenlet *g, enum coop_gstate s)
{
    __atomic_store_n(&g->state, s, __ATOMIC_RELAXED);
}
static inline enum coop_gstate coop_gstate_get(const struct coop_greenlet *g)
{
    return __atomic_load_n(&g->state, __ATOMIC_RELAXED);
}

/* Tags of a hub's sets: its own set holds its fd set and those it adopted; its fd set holds
 * fds, tagged with their number, and its wake fd. */
#define COOP_TAG_WAKE UINT64_MAX
#define COOP_TAG_FDS (UINT64_MAX - 2)
#define COOP_TAG_ADOPT (UINT64_MAX - 3 - COOP_MAX_HUBS)    /* + the adopted hub's index */

/* hub.c */
/* When a greenlet entered its state, for dumps: the calling hub's stamp, else the coarse clock. */
int64_t coop_stamp(void);
/* A detached OS thread of the runtime's (the real pthread_create): 0 or an error number. */
int coop_start_runtime_thread(void *(*fn)(void *), void *arg);
struct coop_hub *coop_hub_current(void);
struct coop_hub *coop_hub_create(int index, bool spare);
/* Closes a hub's sets and wake fd, the runtime's fds (coop_fd_is_runtime) no more. */
void coop_hub_close_fds(struct coop_hub *h);
void coop_hub_attach(struct coop_hub *h, bool main_thread);
void coop_hub_run(struct coop_hub *h) __attribute__((noreturn));
uint64_t coop_prepare_wait(struct coop_greenlet *g, enum coop_wait_kind kind, const void *obj);
bool coop_wake(struct coop_greenlet *g, uint64_t gen, int reason);
/* Wakes whatever wait g is in, if any. */
bool coop_wake_waiting(struct coop_greenlet *g, int reason);
/* Ends the caller's prepared wait that will not happen after all: true; false when a waker
 * got there first (g has been through its run queue, g->wake_reason says why). */
bool coop_cancel_wait(struct coop_greenlet *g);
/* Parks the current greenlet (prepared with coop_prepare_wait) until woken. */
int coop_suspend(int64_t deadline);
void coop_switch_away(struct coop_hub *h);
/* Requeues the running greenlet behind every ready one; behind_poll: also behind those the
 * hub's next poll makes ready (a preempted greenlet). coop_yield and preemption use it. */
void coop_requeue_current(bool behind_poll);

/* The end of every wait and yield, once the wait is undone: signals queued for the greenlet
 * are delivered there, on its own stack (their handlers may longjmp out). */
void coop_run_signal_hook(struct coop_greenlet *g);
/* A pass over the greenlets for process-pending signals (coop_request_signal_pass), run by
 * a hub in normal context. */
void coop_run_signal_pass(void);
static inline void coop_after_wait(struct coop_greenlet *g)
{
    if (g != NULL && atomic_load_explicit(&g->signals_due, memory_order_acquire))
        coop_run_signal_hook(g);
}

/* sched.c: run queues, stealing, handoff (see its top comment) */
extern struct coop_greenlet *coop_main_greenlet;
struct coop_hub *coop_hub_at(int i);
/* The hub after h in the table, or NULL: for (h = coop_hub_at(0); h; h = coop_hub_next(h)). */
struct coop_hub *coop_hub_next(const struct coop_hub *h);
int coop_hub_total(void);            /* hubs started, spares included */
int coop_sched_regular_hubs(void);
void coop_sched_init(int hubs, struct coop_hub *first);
void coop_sched_start(void);
/* Makes g ready on h, the caller's own hub (yield; a preempted greenlet). */
void coop_ready(struct coop_hub *h, struct coop_greenlet *g);
/* A new greenlet, on h (the caller's hub, or NULL for a thread that is none). */
void coop_ready_new(struct coop_hub *h, struct coop_greenlet *g);
/* After a waker won g's wait. */
void coop_sched_woken(struct coop_greenlet *g);
/* Starts loading what a switch to g reads (hub.c): a wake onto the waker's own queue. */
void coop_prefetch_resume(const struct coop_greenlet *g);
struct coop_greenlet *coop_sched_pop(struct coop_hub *h);
void coop_sched_take_inbox(struct coop_hub *h);
bool coop_sched_has_work(struct coop_hub *h);
unsigned coop_sched_ready_count(struct coop_hub *h);
void coop_sched_service(struct coop_hub *h);
bool coop_sched_others_have_work(struct coop_hub *h);
bool coop_sched_find_work(struct coop_hub *h);
bool coop_sched_sleep_begin(struct coop_hub *h);
bool coop_sched_all_idle(struct coop_hub *h);
void coop_sched_sleep_end(struct coop_hub *h);
bool coop_sched_hand_off(struct coop_hub *x, enum coop_hub_away why);
/* Why h is away ("blocked in a system call"), or NULL. */
const char *coop_sched_away_reason(const struct coop_hub *h);
void coop_sched_returned(struct coop_hub *x);
bool coop_sched_is_away(const struct coop_hub *h);
/* Greenlets wait in h's inbox, which only h takes (greenlets woken by threads that are no
 * hub), while another hub sleeps: the monitor then preempts h's greenlet without waiting
 * for the end of its slice. */
bool coop_sched_inbox_waits(const struct coop_hub *h);
/* Greenlets wait in h's queue or inbox (the monitor's look from another thread). */
bool coop_sched_queued_on(struct coop_hub *h);
/* Work waits that any hub takes at its next iteration: greenlets in the global queue, a hub
 * to adopt, an interrupt, a dump or a signal pass that a handler asked for. */
bool coop_sched_work_for_any(void);
void coop_sched_drain_adopted(struct coop_hub *h);
/* Whether h polls another hub's fd set (one that is away, or that came back and h has not
 * let go of yet): it then sleeps in its own set. */
bool coop_sched_adopts_any(const struct coop_hub *h);
/* h's poll of x's fd set found x's wake fd readable. */
void coop_sched_wake_seen(struct coop_hub *h, struct coop_hub *x);
void coop_sched_dispatch_begin(struct coop_hub *h);
void coop_sched_dispatch_end(struct coop_hub *h);
void coop_sched_share_batch(struct coop_hub *h);
void coop_sched_nudge(struct coop_hub *h);
void coop_sched_balance_spares(void);
void coop_sched_interrupt_posted(void);
void coop_sched_notify_any(void);
int coop_sched_threads(void);        /* hub threads of the runtime's own */
void coop_sched_fork_child(struct coop_hub *h);
struct coop_sched_stats {
    int hubs, regular, spares_running;
    uint64_t spares_started, handoffs, steals, stolen;
};
void coop_sched_stats(struct coop_sched_stats *s);

/* fdwait.c, and hub.c's reading of fd sets */
/* Wakes the waiters of each event's fd (data.u64), wherever they wait, onto the caller's hub. */
struct epoll_event;
void coop_fd_events_ready(const struct epoll_event *events, long n);
/* Dispatches the events of x's fd set (waking their waiters onto h's queue, h the caller's hub). */
void coop_drain_fdset(struct coop_hub *h, struct coop_hub *x);
/* From another thread: events wait in h's fd set for its next poll. */
bool coop_hub_events_wait(const struct coop_hub *h);
void coop_fdwait_fork_child(void);

/* timer.c: each hub's heap, under its timer_lock */
void coop_timer_add(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline);
/* Takes g out of whichever heap holds it, if any. */
void coop_timer_remove(struct coop_greenlet *g);
/* The earliest deadline, or COOP_NO_DEADLINE. */
int64_t coop_timer_next(struct coop_hub *h);
/* Wakes the greenlets whose deadline has passed, with ETIMEDOUT. */
void coop_timer_run(struct coop_hub *h);
/* Moves every deadline of from's heap into to's (adoption). */
void coop_timer_move(struct coop_hub *from, struct coop_hub *to);

/* tls.c */
void coop_tls_init(enum coop_tls_mode mode);
void coop_tls_hub_init(struct coop_hub *h);
/* From now on more than one OS thread runs program code: glibc must take its locks. */
void coop_tls_set_multithreaded(void);
/* The thread pointer of an area whose control block ends at or below top, and the lowest
 * byte of that area: the stack proper ends there. */
uintptr_t coop_tls_place(char *top);
char *coop_tls_area_bottom(uintptr_t tp);
/* Room a TLS area takes at the top of a stack, alignment included. */
size_t coop_tls_area_space(void);
/* Fills the area at g->tp, when placed (a created greenlet, hub 0's greenlet); the main
 * greenlet and a runtime thread's hub get the OS thread's. 0, or -1 out of memory. */
int coop_tls_greenlet_init(struct coop_greenlet *g);
/* On a greenlet's first run, on its own TLS. */
void coop_tls_start(struct coop_greenlet *g);
void coop_tls_greenlet_free(struct coop_greenlet *g);
/* At g's end, on g: the robust mutexes it still holds say that their owner died; or, when
 * the process exits with g, the kernel marks them after the atexit handlers. */
void coop_tls_robust_exit(struct coop_greenlet *g, bool process_exits);
/* Moves the thread pointer, if it changes, and keeps the tid of to's control block (unless
 * to holds the loader's lock: loader.c) and the hub in its coop_thread equal to h's: no
 * thread-local access between this and the context switch. */
void coop_tls_enter(struct coop_greenlet *from, struct coop_greenlet *to, struct coop_hub *h);
/* Starts loading the lines of g's area that a switch to it and its first steps touch. */
void coop_tls_prefetch(const struct coop_greenlet *g);
void coop_tls_fork_child(struct coop_hub *h, struct coop_greenlet *self);

/* loader.c: ld.so's locks, which know their owner by tid */
void coop_loader_init(void);
/* On g, as it arrives on a hub and as it leaves it: counts what it took of the loader's locks
 * meanwhile into g->loader_held. */
void coop_loader_arrive(struct coop_greenlet *g);
void coop_loader_leave(struct coop_greenlet *g);

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
void coop_cpu_fork_child(struct coop_greenlet *self);
/* The tid in g's control block, as glibc sees it. */
pid_t coop_tls_tid(const struct coop_greenlet *g);
/* Whether g's control block keeps the OS thread 0's tid wherever g runs: the main
 * greenlet's (the initial thread's record), a forked child's forker's. Inline: every pop
 * of another hub asks (coop_sched_pop). */
static inline bool coop_tls_names_thread0(const struct coop_greenlet *g)
{
    return !g->is_hub && (!g->own_tls || g->keeps_tid);
}

/* diag.c */
int64_t coop_coarse_now(void);
/* Prints every hub and every greenlet. */
void coop_dump_all(void);
/* Called when the hub would block with nothing that could ever wake it. */
void coop_check_deadlock(struct coop_hub *h);
void coop_stats_switch(struct coop_hub *h, struct coop_greenlet *from, struct coop_greenlet *to);
void coop_diag_hub_init(struct coop_hub *h);
void coop_print_stack(ucontext_t *ctx, bool signal_frame);
/* libunwind takes locks and reads ELF files on first use: signal handlers that unwind
 * (the monitor's, the profiler's, preemption's) call this first, outside any handler. */
void coop_unwind_warm_up(void);
/* The monitor: g has held its hub a while; signals may be due to it (hub.c). */
void coop_signal_kick_again(struct coop_greenlet *g);
/* Found at start (coop_init): see coop_in_runtime in coop.h. */
void coop_runtime_code_init(void);
/* The range coop_in_runtime answers for. */
void coop_runtime_code(uintptr_t *lo, uintptr_t *hi);
int coop_os_threads(void);           /* of the process, or -1 */

void coop_stats_init(void);
void coop_stats_spawned(long alive);

/* monitor.c, offload.c: the runtime's own threads */
void coop_monitor_init(int max_blocking_ms, int preempt_ms, int handoff_ms);
/* The program's first thread: the monitor starts (once; again in a forked child). */
void coop_monitor_start(void);
int coop_monitor_threads(void);
/* Whether the monitor runs and frees every hub its greenlet holds, computing (preemption,
 * else a handoff) or blocked (a handoff): COOP_PREEMPT_MS and COOP_HANDOFF_MS both on. */
bool coop_monitor_frees_held_hubs(void);
bool coop_read_task_file(pid_t tid, const char *name, char *buf, size_t size);
void coop_monitor_fork_child(void);
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
 * the hub's thread, unless a preemption signal is still on its way there or every greenlet
 * blocks SIGURG. */
void coop_preempt_ask(struct coop_hub *h, uint64_t switches);
/* Why the greenlet holding h since switch count `switches` was not preempted, as a
 * sentence for the blocking monitor's report; false when it knows of no reason. */
bool coop_preempt_why_not(struct coop_hub *h, uint64_t switches, char *why, size_t size);
/* Whether that greenlet is known not to be preemptible: an attempt was refused, or none can
 * be made. Only atomics: no /proc, no loader lock (what the reasons' text needs). */
bool coop_preempt_refused(struct coop_hub *h, uint64_t switches);
void coop_preempt_fork_child(struct coop_hub *h);
/* A switch to next is about to happen on h's thread: next finds its own signal stack there,
 * if it set one up, and none of coop's interrupting signals; else the thread's kept one
 * (preempt.c). */
void coop_preempt_lend_signal_stack(struct coop_hub *h, const struct coop_greenlet *next);
/* The signal stack installed on h's thread while self runs there, as coop lent it: self's
 * own or the kept one; NULL for one coop did not lend. */
static inline const stack_t *coop_preempt_installed_stack(const struct coop_hub *h, const struct coop_greenlet *self)
{
    const struct coop_signal_stacks *s = &h->signal_stacks;
    const stack_t *lent = self->own_sigaltstack && s->installed == self->sigaltstack.ss_sp ? &self->sigaltstack
                                                                                            : &s->kept;
    return s->installed != NULL && s->installed == lent->ss_sp ? lent : NULL;
}
/* Whether self, leaving h's thread, runs on the signal stack installed there: a handler of
 * its parks (coop_preempt_lend_on_arrival, instead of coop_preempt_switching_to). */
static inline bool coop_preempt_on_installed_stack(const struct coop_hub *h, const struct coop_greenlet *self)
{
    const stack_t *on = coop_preempt_installed_stack(h, self);
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    return on != NULL && sp - (uintptr_t)on->ss_sp < on->ss_size;
}
/* A switch from self, on the installed signal stack (from_installed), or to next, waiting on
 * one: every signal blocked on h's thread until next, there, lends its stack (arrive). */
void coop_preempt_lend_on_arrival(struct coop_hub *h, struct coop_greenlet *self, struct coop_greenlet *next,
                                  bool from_installed);
/* self, leaving h's thread, has taken kept stacks: they are free again once it runs on none. */
void coop_preempt_give_back_stacks(const struct coop_hub *h, struct coop_greenlet *self);
/* In the context switched to, after such a switch (arrive). */
void coop_preempt_lend_after_switch(struct coop_hub *h, const struct coop_greenlet *self);
/* At a greenlet's release: the kept stacks it took, if any. */
void coop_preempt_drop_taken_stacks(struct coop_greenlet *g);
static inline void coop_preempt_switching_to(struct coop_hub *h, const struct coop_greenlet *next)
{
    if (next->own_sigaltstack || h->signal_stacks.installed != h->signal_stacks.kept.ss_sp
        || atomic_load_explicit(&h->preempt.interrupts_held, memory_order_relaxed))
        coop_preempt_lend_signal_stack(h, next);
}
/* With COOP_SWITCH=ucontext, where swapcontext sets the mask saved in next's context when it
 * last left (stale by then): that mask becomes the hub's, as the shim sets it (what every
 * greenlet blocks) with coop's interrupting signals held as the thread now holds them for next;
 * where the shim keeps no masks, the thread's own. */
void coop_preempt_saved_mask_for(const struct coop_hub *h, struct coop_greenlet *next);
/* At a hub thread's start: the signal stack it keeps is the one it has (ours: coop mapped it,
 * and may keep it for another hub once it is free). */
void coop_preempt_keep_signal_stack(struct coop_hub *h, bool ours);
#define COOP_SIGNAL_STACK_SIZE (64 * 1024)
/* A signal stack of that size, mapped (a system call: a handler may be running), or NULL. */
void *coop_map_signal_stack(void);
void coop_preempt_print_stats(void);

/* trace.c: a hub's trace pointer is published under it (see trace.c) */
extern coop_lock_t coop_trace_lock;

/* park.c */
/* coop_park, with the kind of wait dumps and deadlock detection see; a nudge ends it with
 * COOP_NUDGED. */
int coop_park_as(const void *addr, bool (*still_wait)(const void *ctx), const void *ctx,
                 uint32_t bitset, int64_t deadline, enum coop_wait_kind kind, const char *what);
void coop_park_fork_child(void);

/* greenlet.c */
enum coop_adopt_kind { COOP_ADOPT_MAIN, COOP_ADOPT_HUB_STACK, COOP_ADOPT_HUB_HERE };
void coop_greenlet_fork_child(struct coop_hub *h, struct coop_greenlet *self);
struct coop_greenlet *coop_greenlet_adopt(struct coop_hub *h, enum coop_adopt_kind kind);
void coop_greenlet_run(struct coop_greenlet *g) __attribute__((noreturn));
/* The context a hub switched to has started: prev is off the CPU (and done, if finished). */
void coop_greenlet_left(struct coop_hub *h, struct coop_greenlet *prev);
void coop_reap(struct coop_hub *h);
/* The list of every greenlet: walk it between lock and unlock. */
void coop_all_lock(void);
void coop_all_unlock(void);
struct coop_greenlet *coop_all_first(void);

#endif
