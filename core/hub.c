/*
 * Hubs: OS threads that run greenlets, each with its epoll sets. A greenlet
 * that must wait switches straight to the next ready greenlet of its hub; only when none is
 * ready, or after a round of switches, does it switch to the hub's own greenlet, which
 * polls once the round is over or nothing is ready, takes the work sched.c finds for it,
 * and hands the processor on. What runs where, stealing and handoff are sched.c's; this
 * file is the loop, the poll, the switch and the wait/wake protocol.
 *
 * Waiting and waking, across OS threads: a greenlet announces a wait by writing its
 * wait_word ((generation << 2) | WAIT_WAITING) before it registers anywhere a waker can
 * find it; a waker ends the wait by CAS from exactly that value, so of several wakers
 * (an fd event, a timer, an unpark, a signal) one wins, and a wake aimed at an old wait
 * fails. The winner, and only it, makes the greenlet ready (sched.c). A dump holds wakes
 * back while it reads a waiting greenlet's stack (WAIT_DUMPING): wakers spin until it is
 * done.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

#include "internal.h"
#include "sanitizer.h"

__thread struct coop_thread_state coop_thread;
__thread struct coop_greenlet *coop_running;

struct coop_settings coop_settings;
static bool initialized;
static bool threads_before_start;

int64_t coop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A clock read at every wait, wake and spawn cost more than a percent of an echo at 1,000
 * connections (the clock's page is one more TLB entry among many greenlets'), for a time
 * only dumps show. A hub's stamp is set at each of its polls, and at each tick of the
 * monitor, which goes on while the hub's thread runs a long round, is blocked in a system
 * call or retired: it is late by a tick at most (1 ms while hubs run, 20 ms while all
 * sleep, when the next poll sets it anyway), or by as long as the monitor waits for a CPU.
 * Without the monitor, the clock it is. */
int64_t coop_stamp(void)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL || coop_monitor_threads() == 0)
        return coop_coarse_now();
    return atomic_load_explicit(&h->stamp, memory_order_relaxed);
}

static void set_stamp(struct coop_hub *h)
{
    atomic_store_explicit(&h->stamp, coop_coarse_now(), memory_order_relaxed);
}

void coop_mark_runtime_thread(void) { coop_thread.runtime = true; }

int coop_start_runtime_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = coop_settings.os_thread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return err;
}

/* The shim's signal delivery (coop_set_signal_hooks). */
static void (*signal_deliver_hook)(struct coop_greenlet *g);
static int (*signal_due_hook)(struct coop_greenlet *g);
static void (*signal_pass_hook)(void);
static void (*signal_kick_again_hook)(struct coop_greenlet *g);

/*
 * The real signal mask of hubs' threads is the shim's (the signals every greenlet blocks),
 * set by the thread that changes it; the others take it before they next switch to a
 * greenlet, so that a greenlet never runs on an OS thread that blocks a signal it accepts:
 * a signal the shim sends to that thread to interrupt it (a kick) gets there. Anyone bumps
 * hub_mask_changes; each hub's masks_seen is its own.
 */
static void (*hub_mask_apply)(void);
#define MASK_UNKNOWN UINT64_MAX          /* masks_seen of a new hub, or during a handler */
static _Atomic uint64_t hub_mask_changes;

void coop_set_hub_mask_hook(void (*apply)(void)) { hub_mask_apply = apply; }

void coop_hub_masks_changed(void) { atomic_fetch_add(&hub_mask_changes, 1); }

uint64_t coop_hub_mask_stale(void)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL)
        return MASK_UNKNOWN;
    uint64_t seen = h->masks_seen;
    h->masks_seen = MASK_UNKNOWN;
    return seen;
}

void coop_hub_mask_seen_again(uint64_t seen)
{
    if (coop_thread.hub != NULL)
        coop_thread.hub->masks_seen = seen;
}

static void take_hub_mask(struct coop_hub *h)
{
    uint64_t changes = atomic_load_explicit(&hub_mask_changes, memory_order_acquire);
    if (changes != h->masks_seen && hub_mask_apply != NULL) {
        h->masks_seen = changes;
        hub_mask_apply();
    }
}

#define EVENTS_PER_POLL 256
/* A poll leaves this many places of the run queue free, for what the timer run and the
 * inbox add after it: an overflow sends half the ring to the global queue, whose greenlets
 * other hubs run away from their fds' home (fdwait.c). */
#define EVENTS_HEADROOM 64
/* But takes this many events at least: a queue full of greenlets that only yield would
 * otherwise never let an fd event in. */
#define EVENTS_MIN 32

/* Waits up to timeout_ns (-1: no limit) for events of an epoll set. epoll_wait counts
 * whole milliseconds; epoll_pwait2 (Linux 5.11) keeps a sleep of 100 us from lasting 1 ms. */
static long wait_events(int epfd, struct epoll_event *events, int max, int64_t timeout_ns)
{
    static atomic_bool no_pwait2;
    bool whole_ms = timeout_ns % 1000000 == 0;
    if (timeout_ns > 0 && !whole_ms && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
        long n = coop_sys6(SYS_epoll_pwait2, epfd, (long)events, max, (long)&ts, 0, 0);
        if (n != -ENOSYS)
            return n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    long ms = timeout_ns < 0 ? -1 : (timeout_ns + 999999) / 1000000;
    return coop_sys6(SYS_epoll_wait, epfd, (long)events, max, ms, 0, 0);
}

/* The limit of a blocking poll: the next greenlet's deadline, or none (-1). */
static int64_t poll_timeout(struct coop_hub *h)
{
    int64_t deadline = coop_timer_next(h);
    if (deadline == COOP_NO_DEADLINE)
        return -1;
    int64_t left = deadline - coop_now();
    return left < 0 ? 0 : left;
}

/* One look at x's fd set (h's own or one h adopted), waiting up to timeout_ns: its fds'
 * events wake their waiters onto h's queue; x's wake fd is the scheduler's (sched.c). As
 * many events as h's queue has room for: the rest stay in the set, which the next poll
 * takes (it is level-triggered in h's own set too). Whether more may wait that would fit. */
static bool poll_fdset(struct coop_hub *h, struct coop_hub *x, int64_t timeout_ns)
{
    struct epoll_event events[EVENTS_PER_POLL];
    int room = COOP_RUNQ_SIZE - EVENTS_HEADROOM - (int)coop_sched_ready_count(h);
    int max = room < EVENTS_MIN ? EVENTS_MIN : room < EVENTS_PER_POLL ? room : EVENTS_PER_POLL;
    long n = wait_events(x->fdset, events, max, timeout_ns), fds = n;
    if (timeout_ns != 0)
        set_stamp(h);
    for (long i = 0; i < n; i++)
        if (events[i].data.u64 == COOP_TAG_WAKE) {
            events[i] = events[--fds];
            coop_sched_wake_seen(h, x);
            break;
        }
    coop_fd_events_ready(events, fds);
    return n == max && n < room;
}

/* Another thread's look (poll takes no event from an epoll set): events wait in h's fd set,
 * its fds' or its wake fd's, for h's next poll. */
bool coop_hub_events_wait(const struct coop_hub *h)
{
    struct pollfd set = { .fd = h->fdset, .events = POLLIN };
    return coop_sys(SYS_poll, &set, 1, 0) > 0;
}

/* Dispatches x's fd set's events to h's queue, without waiting, while its queue has room. */
void coop_drain_fdset(struct coop_hub *h, struct coop_hub *x)
{
    while (poll_fdset(h, x, 0))
        ;
}

/*
 * One look for events. A hub with greenlets ready looks at its fd sets only, without
 * waiting (their events, and deadlines passed). A hub that waits, until the next
 * greenlet's deadline, blocks in its fd set, which holds its wake fd; or, when it adopted
 * others, in its own set, which holds its fd set and theirs.
 */
static void hub_poll(struct coop_hub *h, int64_t timeout_ns)
{
    h->polls++;
    coop_sched_dispatch_begin(h);
    if (timeout_ns == 0) {
        set_stamp(h);
        coop_drain_fdset(h, h);
        coop_sched_drain_adopted(h);
    } else if (!coop_sched_adopts_any(h)) {
        if (poll_fdset(h, h, timeout_ns))
            coop_drain_fdset(h, h);
    } else {
        struct epoll_event events[16];
        long n = wait_events(h->epfd, events, 16, timeout_ns);
        set_stamp(h);
        for (long i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == COOP_TAG_FDS)
                coop_drain_fdset(h, h);
            else if (tag >= COOP_TAG_ADOPT && tag < COOP_TAG_ADOPT + COOP_MAX_HUBS)
                coop_sched_drain_adopted(h);
        }
    }
    coop_sched_dispatch_end(h);
    coop_timer_run(h);
}

/* Nothing to run and nothing to steal: sleep until an event, a deadline or a wake. False
 * when work came in sight first (no poll). */
static bool hub_idle(struct coop_hub *h)
{
    if (!coop_sched_sleep_begin(h))
        return false;
    int64_t timeout_ns = poll_timeout(h);
    if (timeout_ns < 0)
        coop_check_deadlock(h);
    hub_poll(h, timeout_ns);
    coop_sched_sleep_end(h);
    return true;
}

static void (*hold_release)(struct coop_greenlet *g, bool finished);
static void (*hold_retake)(struct coop_greenlet *g);

void coop_set_hold_hooks(void (*release)(struct coop_greenlet *g, bool finished),
                         void (*retake)(struct coop_greenlet *g))
{
    hold_release = release;
    hold_retake = retake;
}

/* What a context does first when it runs again (or for the first time): it learns its hub
 * from its own record (the resuming hub wrote it), and lets go of the one it replaced.
 * A nudge that an unwind window left in prev's flag after its wait had looked at it (a
 * sample during the switch; coop_unwind_end cannot wake from a signal handler) wakes that
 * wait here, before prev is let go (a waker may queue it while it is still on this CPU). */
static inline void arrive(struct coop_greenlet *self, void *fake_stack)
{
    struct coop_hub *h = self->hub;
    struct coop_greenlet *prev = h->switched_from;
    coop_san_arrive(fake_stack, prev);
    if (__builtin_expect(h->signal_stacks.lend_after_switch, 0))
        coop_preempt_lend_after_switch(h, self);
    coop_arrive(self);
    if (!self->is_hub)
        coop_loader_arrive(self);
    if (atomic_load_explicit(&prev->nudged, memory_order_relaxed))
        coop_wake_waiting(prev, COOP_NUDGED);
    coop_greenlet_left(h, prev);
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&h->switching, false, memory_order_relaxed);
}

/* Every context has an errno of its own, in its TLS area; it is kept across the switch,
 * since the runtime's calls here and on return run on that area too. */
static void switch_to(struct coop_hub *h, struct coop_greenlet *next)
{
    struct coop_greenlet *self = h->current;
    if (self->held != NULL)
        hold_release(self, self->state == G_FINISHED);
    atomic_store_explicit(&h->switching, true, memory_order_relaxed);   /* read by this thread's handlers */
    atomic_signal_fence(memory_order_seq_cst);
    /* Woken by another thread before it had left its previous hub: wait for that. */
    while (atomic_load_explicit(&next->on_cpu, memory_order_acquire))
        __builtin_ia32_pause();
    atomic_store_explicit(&next->on_cpu, true, memory_order_relaxed);
    coop_gstate_set(next, G_RUNNING);
    next->resumes++;
    next->hub = h;
    h->current = next;
    /* Only this thread writes the counter (the monitor reads it): no locked instruction. */
    atomic_store_explicit(&h->switches, atomic_load_explicit(&h->switches, memory_order_relaxed) + 1,
                          memory_order_relaxed);

    if (coop_settings.stats)
        coop_stats_switch(h, self, next);
    if (coop_trace_enabled())
        coop_trace_switch(h, self, next);
    self->saved_errno = errno;
    if (!self->is_hub)
        coop_loader_leave(self);
    coop_cpu_charge(h, self);
    take_hub_mask(h);
    if (__builtin_expect(self->taken_stacks[0] != 0, 0))
        coop_preempt_give_back_stacks(h, self);
    bool from_signal_stack = coop_preempt_on_installed_stack(h, self);
    bool onto_signal_stack = next->waits_on_signal_stack;
    self->waits_on_signal_stack = from_signal_stack && self->own_sigaltstack;
    if (!from_signal_stack && !onto_signal_stack)
        coop_preempt_switching_to(h, next);
    if (coop_switch_kind == COOP_SWITCH_UCONTEXT)
        coop_preempt_saved_mask_for(h, next);
    if (from_signal_stack || onto_signal_stack)
        coop_preempt_lend_on_arrival(h, self, next, from_signal_stack);
    void *fake_stack = NULL;
    coop_san_leave(self, next, &fake_stack);
    h->switched_from = self;
    coop_tls_enter(self, next, h);  /* may move the thread pointer: no TLS access after it */

    coop_context_switch(&self->ctx, &next->ctx);
    arrive(self, fake_stack);
    errno = self->saved_errno;
    if (self->held != NULL)
        hold_retake(self);
}

/* The hub's own greenlet also runs mid-round: a greenlet that finished, or waited when
 * nothing else was ready, comes here, and what is ready by then (the joiner its end woke,
 * its inbox, a steal) runs as a direct switch would, counted against the round. Only a
 * poll starts a round, so work that keeps coming in through here never starves the fds. */
static void __attribute__((noreturn)) hub_loop(struct coop_hub *h)
{
    for (;;) {
        h->passes++;
        coop_reap(h);
        coop_sched_service(h);
        bool polled = false;
        if (!coop_sched_has_work(h)) {
            if (coop_sched_others_have_work(h)) {
                hub_poll(h, 0);         /* its own events before stealing (sched.c) */
                polled = true;
            }
            if (!coop_sched_has_work(h) && !coop_sched_find_work(h))
                polled |= hub_idle(h);
        }
        if (!polled && coop_sched_has_work(h)) {
            if (h->round_left > 0) {
                h->round_left--;
            } else {
                hub_poll(h, 0);
                polled = true;
            }
        }
        coop_sched_share_batch(h);
        /* A round is as long as the work ready when it began; thieves may have taken most. */
        unsigned ready = coop_sched_ready_count(h), round = ready > COOP_ROUND_MIN ? ready : COOP_ROUND_MIN;
        if (polled || h->round_left > round)
            h->round_left = round;
        struct coop_greenlet *next = coop_sched_pop(h);
        if (next != NULL)
            switch_to(h, next);
    }
}

/* The first run of a created context: a program greenlet, or hub 0's own greenlet. */
void coop_greenlet_main(struct coop_greenlet *self)
{
    arrive(self, NULL);
    coop_tls_start(self);
    if (self->is_hub)
        hub_loop(self->hub);
    coop_greenlet_run(self);
}

/* A hub's thread from the runtime runs the loop on its own stack. */
void coop_hub_run(struct coop_hub *h)
{
    hub_loop(h);
}

/*
 * The runtime's own fds, the hubs' sets and wake fds and libunwind's pipe (which it opens
 * on first use, in an unwind window, and reads and writes to check addresses), were never
 * the program's: its close, close_range and closefrom leave them open (shim/io.c), as a
 * daemon's close_range(3, ~0) at start-up would otherwise close a hub's sets, and a later
 * fd of the program take their numbers (varnishd's listening socket became a forked
 * child's new epoll set). They live high, in the last quarter of the fd limit, where a
 * program that names an fd (a shell's `exec 3>file`, a dup2 onto a number it chose) does
 * not look. A bit per fd below RUNTIME_FDS_TRACKED; set by whoever makes one, cleared by
 * whoever closes it.
 */
#define RUNTIME_FDS_TRACKED 65536
static _Atomic uint64_t runtime_fds[RUNTIME_FDS_TRACKED / 64];

/* Moves a new fd of the runtime's up (where it can: the limit may be low) and marks it. */
static long runtime_fd(long fd)
{
    struct rlimit limit;
    if (fd >= 0 && coop_sys(SYS_getrlimit, RLIMIT_NOFILE, (long)&limit, 0) == 0) {
        rlim_t floor = limit.rlim_cur - limit.rlim_cur / 4;
        if (floor > RUNTIME_FDS_TRACKED - 1024)
            floor = RUNTIME_FDS_TRACKED - 1024;
        long high = (long)floor > fd ? coop_sys(SYS_fcntl, fd, F_DUPFD_CLOEXEC, (long)floor) : -1;
        if (high >= 0) {
            coop_sys(SYS_close, fd, 0, 0);
            fd = high;
        }
    }
    if (fd >= 0 && fd < RUNTIME_FDS_TRACKED)
        atomic_fetch_or(&runtime_fds[fd / 64], 1ull << (fd % 64));
    return fd;
}

int coop_runtime_fd_take(int fd) { return (int)runtime_fd(fd); }

int coop_runtime_fd_close(int fd)
{
    if (fd < 0)
        return 0;
    if (fd < RUNTIME_FDS_TRACKED)
        atomic_fetch_and(&runtime_fds[fd / 64], ~(1ull << (fd % 64)));
    return (int)coop_sys(SYS_close, fd, 0, 0);
}

bool coop_fd_is_runtime(int fd)
{
    return fd >= 0 && fd < RUNTIME_FDS_TRACKED
           && (atomic_load_explicit(&runtime_fds[fd / 64], memory_order_relaxed) >> (fd % 64) & 1);
}

int coop_runtime_fd_next(unsigned from)
{
    for (unsigned w = from / 64; w < RUNTIME_FDS_TRACKED / 64; w++) {
        uint64_t bits = atomic_load_explicit(&runtime_fds[w], memory_order_relaxed);
        if (w == from / 64)
            bits &= ~0ull << (from % 64);
        if (bits != 0)
            return (int)(w * 64 + (unsigned)__builtin_ctzll(bits));
    }
    return -1;
}

void coop_hub_close_fds(struct coop_hub *h)
{
    coop_runtime_fd_close(h->epfd);
    coop_runtime_fd_close(h->fdset);
    coop_runtime_fd_close(h->wake_fd);
}

/* The hub's sets: its fd set, with the wake fd (level-triggered: sched.c reads it), nested
 * in its own set. 0, or an errno value (none left open). */
static int hub_open_epoll(struct coop_hub *h)
{
    h->epfd = (int)runtime_fd(coop_sys(SYS_epoll_create1, EPOLL_CLOEXEC, 0, 0));
    h->fdset = (int)runtime_fd(coop_sys(SYS_epoll_create1, EPOLL_CLOEXEC, 0, 0));
    h->wake_fd = (int)runtime_fd(coop_sys(SYS_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC, 0));
    struct epoll_event wake = { .events = EPOLLIN, .data.u64 = COOP_TAG_WAKE };
    struct epoll_event fds = { .events = EPOLLIN, .data.u64 = COOP_TAG_FDS };
    long err = h->epfd < 0 ? h->epfd : h->fdset < 0 ? h->fdset : h->wake_fd < 0 ? h->wake_fd : 0;
    if (err == 0)
        err = coop_sys6(SYS_epoll_ctl, h->fdset, EPOLL_CTL_ADD, h->wake_fd, (long)&wake, 0, 0);
    if (err == 0)
        err = coop_sys6(SYS_epoll_ctl, h->epfd, EPOLL_CTL_ADD, h->fdset, (long)&fds, 0, 0);
    if (err != 0)
        coop_hub_close_fds(h);
    return (int)-err;
}

/* A hub's record and sets, made by the thread that starts it; NULL with errno set when
 * memory or fds run out. Hubs and spares are started while the program runs (sched.c), maybe
 * out of either: the caller does without, as the program's own calls fail, never aborts. */
struct coop_hub *coop_hub_create(int index, bool spare)
{
    struct coop_hub *h = calloc(1, sizeof *h);
    if (h == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    h->index = index;
    h->masks_seen = MASK_UNKNOWN;
    h->spare = spare;
    set_stamp(h);
    int err = hub_open_epoll(h);
    if (err != 0) {
        free(h);
        errno = err;
        return NULL;
    }
    return h;
}

/* On the hub's own thread: its identity, and its own greenlet (the main thread's hub also
 * gets the thread's original context as its main greenlet). */
void coop_hub_attach(struct coop_hub *h, bool main_thread)
{
    h->os_thread = coop_settings.os_thread_self();
    coop_tls_hub_init(h);   /* before the hub is known: its signal handlers run on this record */
    coop_thread.hub = h;    /* before the tid: a preemption signal sent to it must find its hub */
    h->tid = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    coop_diag_hub_init(h);
    if (main_thread) {
        struct coop_greenlet *main_g = coop_greenlet_adopt(h, COOP_ADOPT_MAIN);
        h->hub_g = coop_greenlet_adopt(h, COOP_ADOPT_HUB_STACK);
        h->current = main_g;
        coop_main_greenlet = main_g;
        coop_arrive(main_g);
    } else {
        h->hub_g = coop_greenlet_adopt(h, COOP_ADOPT_HUB_HERE);
        h->current = h->hub_g;
        coop_arrive(h->hub_g);
    }
}

void coop_init(const struct coop_settings *settings)
{
    coop_settings = *settings;
    coop_runtime_code_init();
    coop_context_init(settings->switch_ucontext ? COOP_SWITCH_UCONTEXT : COOP_SWITCH_FAST);
    coop_stack_configure(settings->stack_size);
    coop_sanitizer_init();
    coop_tls_init(settings->tls_mode);
    coop_loader_init();
    int existing = coop_os_threads();
    threads_before_start = existing > 1;
    if (existing > 1)    /* like gevent's "patched too late" */
        coop_warn("%d threads existed before coop started: they stay OS threads", existing - 1);
    struct coop_hub *h = coop_hub_create(0, false);
    if (h == NULL)
        coop_panic("cannot create the first hub: %s", strerror(errno));
    coop_sched_init(settings->hubs, h);
    coop_hub_attach(h, true);
    coop_live_greenlets = 1;       /* the main thread's own context */
    initialized = true;

    coop_overflow_handler_install();
    /* A child keeps only the forking greenlet, whichever fork made it (daemon, forkpty...). */
    pthread_atfork(NULL, NULL, coop_fork_child);

    if (settings->stats)
        coop_stats_init();
    coop_preempt_init(settings->preempt_ms);
    coop_monitor_init(settings->max_blocking_ms, settings->preempt_ms, settings->handoff_ms);
    coop_trace_start();
}

/* The hub of the calling OS thread: NULL on threads that are no hub (they block as they
 * would without coop). */
struct coop_hub *coop_hub_current(void) { return initialized ? coop_thread.hub : NULL; }

uint64_t coop_prepare_wait(struct coop_greenlet *g, enum coop_wait_kind kind, const void *obj)
{
    uint64_t gen = ++g->wait_gen;
    g->wake_reason = 0;
    coop_gstate_set(g, G_WAITING);
    g->waiting = (struct coop_wait_info){ .kind = kind, .obj = obj };
    g->busy_polls = 0;

    g->since = coop_stamp();
    atomic_store_explicit(&g->wait_word, gen << 2 | WAIT_WAITING, memory_order_release);
    return gen;
}

/*
 * A waker on another thread may win the word between coop_prepare_wait and this call: g
 * is then in a run queue already, and running on beside that entry would let a hub resume
 * it a second time later (at whatever context it saved last: after it finished, "a
 * finished greenlet was resumed"). So the loser of that race leaves, and comes back from
 * the queue, as if it had parked.
 */
bool coop_cancel_wait(struct coop_greenlet *g)
{
    /* A dump may hold the word: it is ours again once the dump lets go. */
    uint64_t word = atomic_load_explicit(&g->wait_word, memory_order_relaxed);
    for (;;) {
        if (word & WAIT_DUMPING) {
            __builtin_ia32_pause();
            word = atomic_load_explicit(&g->wait_word, memory_order_relaxed);
            continue;
        }
        if (!(word & WAIT_WAITING)) {
            coop_switch_away(coop_thread.hub);
            return false;
        }
        if (atomic_compare_exchange_weak(&g->wait_word, &word, g->wait_gen << 2))
            break;
    }
    coop_gstate_set(g, G_RUNNING);
    return true;
}

/* A poll wakes a batch of greenlets, and its hub then switches to each in turn: every switch
 * would wait for the lines of the greenlet's context, stack and TLS area that it reads, each
 * a cache miss once connections are many (the wake's own writes bring in its record's).
 * Loaded at the wake, they are there by its turn. */
void coop_prefetch_resume(const struct coop_greenlet *g)
{
    coop_context_prefetch(&g->ctx);
    coop_tls_prefetch(g);
}

bool coop_wake(struct coop_greenlet *g, uint64_t gen, int reason)
{
    uint64_t waiting = gen << 2 | WAIT_WAITING;
    for (;;) {
        uint64_t word = waiting;
        if (atomic_compare_exchange_strong(&g->wait_word, &word, gen << 2))
            break;
        if (word != (waiting | WAIT_DUMPING))
            return false;
        __builtin_ia32_pause();            /* a dump is reading its stack */
    }
    g->wake_reason = reason;
    g->since = coop_stamp();
    if (coop_trace_enabled())
        coop_trace_wake(g, reason);
    coop_sched_woken(g);
    return true;
}

bool coop_wake_waiting(struct coop_greenlet *g, int reason)
{
    uint64_t word = atomic_load(&g->wait_word);
    return (word & WAIT_WAITING) && coop_wake(g, word >> 2, reason);
}

/* A nudge that finds g between the look at its state and its wait would be lost: it is
 * also left in g->nudged, which g's wait looks at once published (coop_suspend; the same
 * pairing of fences as signals_due's). A wait it did wake takes it as well: one spurious
 * wakeup more, which every waiter tolerates. */
void coop_nudge(struct coop_greenlet *g)
{
    atomic_store(&g->nudged, true);
    atomic_thread_fence(memory_order_seq_cst);
    coop_wake_waiting(g, COOP_NUDGED);
}

/* Leaves the current greenlet (already queued as ready, waiting or finished). Greenlets
 * handed to this hub by other threads (its inbox) join its queue first. */
void coop_switch_away(struct coop_hub *h)
{
    struct coop_greenlet *self = h->current, *next = NULL;
    coop_sched_take_inbox(h);
    if (h->round_left > 0 && (next = coop_sched_pop(h)) != NULL)
        h->round_left--;
    if (next == NULL)
        next = h->hub_g;
    if (next == self)
        coop_gstate_set(self, G_RUNNING);
    else
        switch_to(h, next);
}

/*
 * signals_due may outlive its signals: the shim delivers them outside waits too (a mask
 * change), and a signal queued meanwhile may have been ignored or blocked since. A wait
 * about to sleep ends for them only when its greenlet still takes one, or it would fail
 * with EINTR though no handler runs; and how it ends (EINTR, or a restart when every
 * handler due has SA_RESTART) is read off the signals queued, not off signal_reason, which
 * may be a delivered signal's. The flag is cleared before the shim looks: a signaller
 * queues, then sets the flag, then interrupts the wait (already published), so a signal
 * the look misses still ends the wait, and the flag stays set for it. 0 when none is due.
 */
static int signals_still_due(struct coop_greenlet *g)
{
    if (signal_due_hook == NULL)
        return g->signal_reason;
    atomic_store_explicit(&g->signals_due, false, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    int reason = signal_due_hook(g);
    if (reason != 0)
        atomic_store_explicit(&g->signals_due, true, memory_order_relaxed);
    return reason;
}

int coop_suspend(int64_t deadline)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    /* A signal handed to it before it parked ends the wait at once, as the kernel does
     * when a signal is pending as a system call starts to sleep. The fence pairs with
     * coop_signal_greenlet's: the waiter stored its wait_word, then loads signals_due; the
     * signaller stores signals_due, then loads wait_word (coop_interrupt); without a full
     * fence on both sides each load may pass its own store and both miss. */
    atomic_thread_fence(memory_order_seq_cst);
    if (g->waiting.kind != WAIT_OFFLOAD && atomic_load_explicit(&g->signals_due, memory_order_acquire)) {
        int reason = signals_still_due(g);
        if (reason != 0)
            return coop_cancel_wait(g) ? reason : g->wake_reason;
    }
    if (atomic_load_explicit(&g->nudged, memory_order_relaxed) && atomic_exchange(&g->nudged, false))
        return coop_cancel_wait(g) ? COOP_NUDGED : g->wake_reason;
    bool timed = deadline != COOP_NO_DEADLINE;
    if (timed)
        coop_timer_add(h, g, deadline);
    coop_switch_away(h);         /* g may come back on another hub */
    if (timed)
        coop_timer_remove(g);
    return g->wake_reason;
}

/* An event loop that always finds work ready never waits, so never lets the others run
 * (memcached's libevent workers under load): every so many such polls, it yields once. */
#define FAIR_SHARE_POLLS 32

void coop_fair_share(void)
{
    struct coop_greenlet *g = coop_running;
    if (g != NULL && ++g->busy_polls >= FAIR_SHARE_POLLS) {
        g->busy_polls = 0;
        coop_yield();
    }
}

/*
 * A yield goes behind the greenlets that are ready now. A preempted greenlet goes behind
 * those the hub's next poll makes ready too, or it would come first again: it held the hub
 * for a whole slice, so greenlets whose fds became ready meanwhile are not in the queue
 * yet. It waits for a deadline of now, which the poll's timer run meets: the poll happens
 * first (at once: it ends the round), then coop_ready puts it at the back. Either way,
 * signals queued for the greenlet meanwhile are delivered as it resumes, as at the end of
 * every wait.
 */
void coop_requeue_current(bool behind_poll)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    if (behind_poll) {
        /* The poll comes next, not after the round: a deadline passed would otherwise stand
         * in the heap while the next greenlet runs, and end its slice early (monitor.c). */
        h->round_left = 0;
        coop_prepare_wait(g, WAIT_PREEMPTED, NULL);
        coop_suspend(coop_now());
    } else {
        coop_sched_take_inbox(h);          /* woken before this yield: they go first */
        coop_ready(h, g);
        coop_switch_away(h);
    }
    coop_after_wait(g);
}

void coop_yield(void)
{
    struct coop_hub *h = coop_thread.hub;

    if (h == NULL || h->current->is_hub)
        return;
    coop_requeue_current(false);
}

int coop_sleep_until(int64_t deadline)
{
    struct coop_greenlet *g = coop_self();
    int reason = 0;
    while (coop_now() < deadline) {
        coop_prepare_wait(g, WAIT_SLEEP, NULL);
        reason = coop_suspend(deadline);
        if (reason == EINTR || reason == COOP_RESTART || reason == COOP_NUDGED)
            break;
        reason = 0;
    }
    coop_after_wait(g);
    return reason == COOP_NUDGED ? 0 : reason;
}

void coop_set_signal_hooks(void (*deliver)(struct coop_greenlet *g), int (*due)(struct coop_greenlet *g),
                           void (*pass)(void), void (*kick_again)(struct coop_greenlet *g))
{
    signal_deliver_hook = deliver;
    signal_due_hook = due;
    signal_pass_hook = pass;
    signal_kick_again_hook = kick_again;
}

void coop_signal_kick_again(struct coop_greenlet *g)
{
    if (signal_kick_again_hook == NULL || !atomic_load(&g->signals_due))
        return;
    coop_all_lock();     /* g's signal state is taken for freeing only under it */
    signal_kick_again_hook(g);
    coop_all_unlock();
}

void coop_run_signal_hook(struct coop_greenlet *g)
{
    atomic_store_explicit(&g->signals_due, false, memory_order_relaxed);
    if (signal_deliver_hook != NULL)
        signal_deliver_hook(g);
}

void coop_run_signal_pass(void)
{
    if (signal_pass_hook != NULL)
        signal_pass_hook();
}

void coop_signal_greenlet(struct coop_greenlet *g, bool restartable)
{
    if (!restartable || !atomic_load_explicit(&g->signals_due, memory_order_relaxed))
        g->signal_reason = restartable ? COOP_RESTART : EINTR;
    atomic_store_explicit(&g->signals_due, true, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);      /* see coop_suspend */
    coop_interrupt(g, restartable);
}

/* Every greenlet of the process, under the list's lock: fn must take no lock of the
 * runtime's. */
void coop_each_greenlet(void (*fn)(struct coop_greenlet *g, void *arg), void *arg)
{
    coop_all_lock();
    for (struct coop_greenlet *g = coop_all_first(); g != NULL; g = g->all_next)
        if (!g->is_hub && coop_gstate_get(g) != G_FINISHED)
            fn(g, arg);
    coop_all_unlock();
}

bool coop_on_hub_thread(void) { return coop_thread.hub != NULL; }

bool coop_threads_predate_start(void) { return threads_before_start; }

struct coop_greenlet *coop_interrupted_greenlet(void)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = coop_running;
    if (h == NULL || g == NULL)
        return g;
    /* From coop_prepare_wait until it has left, its state is never G_RUNNING: waiting,
     * then ready once a waker won its wait (queued, it is about to leave). */
    if (atomic_load_explicit(&h->switching, memory_order_relaxed) || h->current != g
        || coop_gstate_get(g) != G_RUNNING)
        return NULL;
    return g;
}

pid_t coop_running_elsewhere(const struct coop_greenlet *g)
{
    struct coop_hub *h = __atomic_load_n(&g->hub, __ATOMIC_RELAXED);
    if (h == NULL || h == coop_thread.hub || atomic_load_explicit(&h->switching, memory_order_relaxed)
        || __atomic_load_n(&h->current, __ATOMIC_RELAXED) != g || coop_gstate_get(g) != G_RUNNING)
        return 0;
    return h->tid;
}

/* From a signal handler: only atomics and a write to a hub's wake fd. */
void coop_interrupt(struct coop_greenlet *g, bool restartable)
{
    if (g == NULL)
        g = coop_main_greenlet;
    if (g == NULL)
        return;
    /* As in the kernel, a signal interrupts only a wait under way when it arrives. */
    uint64_t word = atomic_load(&g->wait_word);
    if (!(word & WAIT_WAITING))
        return;
    /* Signallers race: one that read an earlier wait must not replace a later wait's
     * interrupt, or that wait would sleep on; for one wait, EINTR beats a restart. */
    uint64_t gen = word >> 2, mine = gen << 2 | (restartable ? INTERRUPT_RESTART : INTERRUPT_EINTR);
    uint64_t seen = atomic_load(&g->interrupt);
    while ((seen >> 2 < gen || (seen >> 2 == gen && !restartable && (seen & INTERRUPT_RESTART)))
           && !atomic_compare_exchange_weak(&g->interrupt, &seen, mine))
        ;
    coop_sched_interrupt_posted();
}

/*
 * After fork() the child has only the thread that forked, and coop keeps only the
 * greenlet that forked, on that thread's hub, as POSIX keeps only the calling thread. The
 * epoll sets are shared with the parent, so the child makes its own, and libuv re-creates
 * its loop's. Other hubs start again when the child creates a thread.
 */
void coop_fork_child(void)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL)
        return;
    struct coop_greenlet *self = h->current;
    coop_park_fork_child();
    coop_offload_fork_child();
    coop_fdwait_fork_child();
    coop_monitor_fork_child();
    coop_preempt_fork_child(h);
    coop_stack_fork_child();
    coop_cpu_fork_child(self);

    coop_sched_fork_child(h);
    coop_greenlet_fork_child(h, self);
    h->tid = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    coop_sys(SYS_prctl, PR_SET_NAME, (long)coop_greenlet_name(self), 0);   /* the forking thread's, natively */
    self->cpu_ns = 0;          /* the child's clock starts afresh */
    h->cpu_mark = 0;
    coop_tls_fork_child(h, self);
    h->timer_lock = (coop_lock_t){ 0 };
    h->heap = NULL;
    h->heap_len = 0;
    h->dead = NULL;
    coop_hub_close_fds(h);
    if (hub_open_epoll(h) != 0)
        coop_panic("cannot create a hub's epoll sets");
}
