/*
 * Hubs: one per OS thread that runs program code, each with a libuv loop. A greenlet that
 * must wait switches straight to the next ready greenlet; only when none is ready, or
 * after COOP_POLL_EVERY direct switches, does it switch to the hub's own greenlet, which
 * polls once and hands the processor to whoever the poll made ready.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "internal.h"
#include "sanitizer.h"

__thread struct coop_thread_state coop_thread;

struct coop_hub *coop_hubs;
coop_lock_t coop_hubs_lock;

struct coop_settings coop_settings;
static bool initialized;

int64_t coop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void coop_mark_runtime_thread(void) { coop_thread.runtime = true; }

/* The shim's signal delivery (coop_set_signal_hooks). */
static void (*signal_deliver_hook)(struct coop_greenlet *g);
static void (*signal_pass_hook)(void);

/* Moves greenlets woken by other OS threads, and pending interrupts, into the ready queue. */
static void on_async(uv_async_t *a)
{
    struct coop_hub *h = a->data;
    coop_lock(&h->remote_lock);
    struct coop_greenlet *g = h->remote_head;
    h->remote_head = h->remote_tail = NULL;
    coop_unlock(&h->remote_lock);
    while (g != NULL) {
        struct coop_greenlet *next = g->next_ready;
        coop_ready(h, g);
        g = next;
    }
    if (atomic_exchange(&h->dump_requested, false))
        coop_dump_hub(h);
    if (atomic_exchange(&h->signal_pass, false) && signal_pass_hook != NULL)
        signal_pass_hook();
    if (atomic_exchange(&h->interrupts, 0)) {
        for (struct coop_greenlet *w = h->all; w != NULL; w = w->all_next)
            if (w->interrupt_pending) {
                coop_wake(w, w->interrupt_gen, w->interrupt_pending);
                w->interrupt_pending = 0;
            }
    }
}

static struct coop_greenlet *pop_ready(struct coop_hub *h)
{
    struct coop_greenlet *g = h->ready_head;
    if (g != NULL) {
        h->ready_head = g->next_ready;
        if (h->ready_head == NULL)
            h->ready_tail = NULL;
        h->ready_len--;
    }
    return g;
}

#define LIBUV_TAG UINT64_MAX
#define EVENTS_PER_POLL 256

/* Waits up to timeout_ns (-1: no limit) for events of the hub's epoll set. epoll_wait counts
 * whole milliseconds; epoll_pwait2 (Linux 5.11) keeps a sleep of 100 us from lasting 1 ms. */
static long wait_events(struct coop_hub *h, struct epoll_event *events, int64_t timeout_ns)
{
    static atomic_bool no_pwait2;
    bool whole_ms = timeout_ns % 1000000 == 0;
    if (timeout_ns > 0 && !whole_ms && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
        long n = coop_sys6(SYS_epoll_pwait2, h->epfd, (long)events, EVENTS_PER_POLL, (long)&ts, 0, 0);
        if (n != -ENOSYS)
            return n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    long ms = timeout_ns < 0 ? -1 : (timeout_ns + 999999) / 1000000;
    return coop_sys6(SYS_epoll_wait, h->epfd, (long)events, EVENTS_PER_POLL, ms, 0, 0);
}

/* The limit of a blocking poll: libuv's next timer, or the next greenlet's deadline. */
static int64_t poll_timeout(struct coop_hub *h)
{
    uv_update_time(&h->loop);
    int ms = uv_backend_timeout(&h->loop);
    int64_t timeout_ns = ms < 0 ? -1 : ms * INT64_C(1000000);
    int64_t deadline = coop_timer_next(h);
    if (deadline != COOP_NO_DEADLINE) {
        int64_t left = deadline - coop_now();
        left = left < 0 ? 0 : left;
        if (timeout_ns < 0 || left < timeout_ns)
            timeout_ns = left;
    }
    return timeout_ns;
}

/*
 * One look at the hub's epoll set, which holds the waited fds and libuv's own backend fd.
 * It blocks only when no greenlet is ready, until libuv's next timer or the next greenlet's
 * deadline; then it wakes the greenlets whose deadline passed, and runs libuv when its
 * backend has events or its timers are due.
 */
static void hub_poll(struct coop_hub *h, bool block)
{
    struct epoll_event events[EVENTS_PER_POLL];
    int64_t timeout_ns = 0;
    h->polls++;
    if (block) {
        timeout_ns = poll_timeout(h);
        if (timeout_ns < 0)
            coop_check_deadlock(h);
    }
    long n = wait_events(h, events, timeout_ns);
    bool run_libuv = n < 0;
    for (long i = 0; i < n; i++) {
        if (events[i].data.u64 == LIBUV_TAG)
            run_libuv = true;
        else
            coop_fd_ready(h, (int)events[i].data.u64, events[i].events);
    }
    coop_timer_run(h);
    uv_update_time(&h->loop);
    if (run_libuv || uv_backend_timeout(&h->loop) == 0)
        uv_run(&h->loop, UV_RUN_NOWAIT);
}

static void (*hold_release)(struct coop_greenlet *g, bool finished);
static void (*hold_retake)(struct coop_greenlet *g);

void coop_set_hold_hooks(void (*release)(struct coop_greenlet *g, bool finished),
                         void (*retake)(struct coop_greenlet *g))
{
    hold_release = release;
    hold_retake = retake;
}

/* errno is saved per greenlet: a thread's own context and its hub share the OS thread's
 * (every other greenlet has an errno of its own in its TLS area). */
static void switch_to(struct coop_hub *h, struct coop_greenlet *next)
{
    struct coop_greenlet *self = h->current;
    if (self->held != NULL)
        hold_release(self, self->state == G_FINISHED);
    next->state = G_RUNNING;
    h->current = next;
    /* Only this thread writes the counter (the monitor reads it): no locked instruction. */
    atomic_store_explicit(&h->switches, atomic_load_explicit(&h->switches, memory_order_relaxed) + 1,
                          memory_order_relaxed);

    if (coop_settings.stats)
        coop_stats_switch(self, next);
    if (coop_trace_enabled())
        coop_trace_switch(h, self, next);
    self->saved_errno = errno;
    coop_cpu_charge(h, self);
    /* The hub runs on its OS thread's control block, which is also the thread's main
     * greenlet's: that greenlet's cancellation must not be acted on in the hub's libc calls. */
    if (self->is_hub)
        coop_tls_cancel_release(self->tp, h->cancel_held);
    if (next->is_hub)
        h->cancel_held = coop_tls_cancel_hold(next->tp);
    void *fake_stack = NULL;
    coop_san_leave(self, next, &fake_stack);
    h->switched_from = self;
    coop_tls_enter(self, next);  /* may move the thread pointer: no TLS access after it */

    coop_context_switch(&self->ctx, &next->ctx);
    coop_san_arrive(fake_stack, h->switched_from);
    coop_arrive(self);
    errno = self->saved_errno;
    if (self->held != NULL)
        hold_retake(self);
}

static void hub_loop(struct coop_hub *h)
{
    for (;;) {
        coop_reap(h);
        hub_poll(h, h->ready_head == NULL);
        h->round_left = h->ready_len > COOP_ROUND_MIN ? h->ready_len : COOP_ROUND_MIN;
        struct coop_greenlet *next = pop_ready(h);
        if (next != NULL)
            switch_to(h, next);
    }
}

/* Entry of the hub's greenlet; program greenlets start in greenlet.c. */
void coop_hub_main(struct coop_hub *h) __attribute__((noreturn));
void coop_hub_main(struct coop_hub *h)
{
    hub_loop(h);
    abort();
}

/* The hub's own epoll set, with libuv's backend fd in it. */
static void hub_open_epoll(struct coop_hub *h)
{
    h->epfd = (int)coop_sys(SYS_epoll_create1, EPOLL_CLOEXEC, 0, 0);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LIBUV_TAG };
    if (h->epfd < 0
        || coop_sys6(SYS_epoll_ctl, h->epfd, EPOLL_CTL_ADD, uv_backend_fd(&h->loop), (long)&ev, 0, 0) < 0)
        coop_panic("cannot create a hub's epoll set");
}

static struct coop_hub *hub_create(void)
{
    struct coop_hub *h = calloc(1, sizeof *h);
    if (h == NULL || uv_loop_init(&h->loop) != 0)
        coop_panic("cannot create a hub: out of memory or file descriptors");
    uv_async_init(&h->loop, &h->async, on_async);
    h->async.data = h;
    hub_open_epoll(h);
    h->os_thread = coop_settings.os_thread_self();
    h->tid = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    coop_lock(&coop_hubs_lock);
    h->next_hub = coop_hubs;
    coop_hubs = h;
    coop_unlock(&coop_hubs_lock);
    coop_diag_hub_init(h);
    coop_thread.hub = h;
    coop_tls_hub_init(h);
    h->main_g = coop_greenlet_adopt(h, false);
    h->hub_g = coop_greenlet_adopt(h, true);
    h->current = h->main_g;
    coop_arrive(h->main_g);

    return h;
}

void coop_init(const struct coop_settings *settings)
{
    coop_settings = *settings;
    coop_context_init(settings->switch_ucontext ? COOP_SWITCH_UCONTEXT : COOP_SWITCH_FAST);
    coop_stack_configure(settings->stack_size);
    coop_sanitizer_init();
    coop_tls_init(settings->tls_mode);
    int existing = coop_os_threads();
    if (existing > 1)    /* like gevent's "patched too late" */
        coop_warn("%d threads existed before coop started: they stay OS threads", existing - 1);
    hub_create();
    coop_live_greenlets = 1;       /* the main thread's own context */
    initialized = true;

    coop_overflow_handler_install();
    /* A child keeps only the forking greenlet, whichever fork made it (daemon, forkpty...). */
    pthread_atfork(NULL, NULL, coop_fork_child);

    if (settings->stats)
        coop_stats_init();
    coop_preempt_init(settings->preempt_ms);
    coop_monitor_start(settings->max_blocking_ms, settings->preempt_ms);
    coop_trace_start();
}

/* A thread gets a hub when it first creates a greenlet; until then, whatever it calls
 * blocks as it would without coop. */
struct coop_hub *coop_hub_current(void)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL && initialized && !coop_thread.runtime)
        h = hub_create();
    return h;
}

__thread struct coop_greenlet *coop_running;

void coop_ready(struct coop_hub *h, struct coop_greenlet *g)
{
    g->state = G_READY;
    g->next_ready = NULL;
    if (h->ready_tail != NULL)
        h->ready_tail->next_ready = g;
    else
        h->ready_head = g;
    h->ready_tail = g;
    h->ready_len++;
}

uint64_t coop_prepare_wait(struct coop_greenlet *g, enum coop_wait_kind kind, const void *obj)
{
    uint64_t gen = ++g->wait_gen;
    g->wake_reason = 0;
    g->state = G_WAITING;
    g->waiting = (struct coop_wait_info){ .kind = kind, .obj = obj };
    g->busy_polls = 0;

    g->since = coop_coarse_now();
    atomic_store_explicit(&g->wait_word, gen << 1 | 1, memory_order_release);
    return gen;
}

void coop_cancel_wait(struct coop_greenlet *g)
{
    atomic_store_explicit(&g->wait_word, g->wait_gen << 1, memory_order_release);
    g->state = G_RUNNING;
}

bool coop_wake(struct coop_greenlet *g, uint64_t gen, int reason)
{
    uint64_t waiting = gen << 1 | 1;
    if (!atomic_compare_exchange_strong(&g->wait_word, &waiting, gen << 1))
        return false;
    g->wake_reason = reason;
    g->since = coop_coarse_now();
    if (coop_trace_enabled())
        coop_trace_wake(g, reason);
    struct coop_hub *h = g->hub;
    if (coop_thread.hub == h) {
        coop_ready(h, g);
        return true;
    }
    coop_lock(&h->remote_lock);
    g->next_ready = NULL;
    if (h->remote_tail != NULL)
        h->remote_tail->next_ready = g;
    else
        h->remote_head = g;
    h->remote_tail = g;
    coop_unlock(&h->remote_lock);
    coop_hub_kick(h);
    return true;
}

/* The caller may be a greenlet whose cancellation is pending: glibc would act on it in the
 * write that uv_async_send makes, in the middle of the runtime's work. */
void coop_hub_kick(struct coop_hub *h)
{
    bool held = coop_tls_cancel_hold(0);
    uv_async_send(&h->async);
    coop_tls_cancel_release(0, held);
}

void coop_nudge(struct coop_greenlet *g)
{
    uint64_t word = atomic_load(&g->wait_word);
    if (word & 1)
        coop_wake(g, word >> 1, COOP_NUDGED);
}

/* Leaves the current greenlet (already queued as ready, waiting or finished). */
void coop_switch_away(struct coop_hub *h)
{
    struct coop_greenlet *self = h->current, *next = NULL;
    if (h->round_left > 0 && (next = pop_ready(h)) != NULL)
        h->round_left--;
    if (next == NULL)
        next = h->hub_g;
    if (next == self)
        self->state = G_RUNNING;
    else
        switch_to(h, next);
}

int coop_suspend(int64_t deadline)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    /* A signal handed to it before it parked ends the wait at once, as the kernel does
     * when a signal is pending as a system call starts to sleep. */
    if (g->waiting.kind != WAIT_OFFLOAD && atomic_load_explicit(&g->signals_due, memory_order_acquire)) {
        coop_cancel_wait(g);
        return g->signal_reason;
    }
    if (deadline != COOP_NO_DEADLINE)
        coop_timer_add(h, g, deadline);
    coop_switch_away(h);
    if (g->heap_index >= 0)
        coop_timer_remove(h, g);
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
 * first, then coop_ready puts it at the back. Either way, signals queued for the greenlet
 * meanwhile are delivered as it resumes, as at the end of every wait.
 */
void coop_requeue_current(bool behind_poll)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    if (behind_poll) {
        coop_prepare_wait(g, WAIT_PREEMPTED, NULL);
        coop_suspend(coop_now());
    } else {
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

void coop_set_signal_hooks(void (*deliver)(struct coop_greenlet *g), void (*pass)(void))
{
    signal_deliver_hook = deliver;
    signal_pass_hook = pass;
}

void coop_run_signal_hook(struct coop_greenlet *g)
{
    atomic_store_explicit(&g->signals_due, false, memory_order_relaxed);
    if (signal_deliver_hook != NULL)
        signal_deliver_hook(g);
}

void coop_signal_greenlet(struct coop_greenlet *g, bool restartable)
{
    if (!restartable || !atomic_load_explicit(&g->signals_due, memory_order_relaxed))
        g->signal_reason = restartable ? COOP_RESTART : EINTR;
    atomic_store_explicit(&g->signals_due, true, memory_order_release);
    coop_interrupt(g, restartable);
}

void coop_request_signal_pass(void)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL)
        h = coop_hubs;
    atomic_store(&h->signal_pass, true);
    coop_hub_kick(h);
}

void coop_each_greenlet(void (*fn)(struct coop_greenlet *g, void *arg), void *arg)
{
    struct coop_hub *h = coop_thread.hub;
    for (struct coop_greenlet *g = h != NULL ? h->all : NULL; g != NULL; g = g->all_next)
        if (!g->is_hub && g->state != G_FINISHED)
            fn(g, arg);
}

bool coop_on_hub_thread(void) { return coop_thread.hub != NULL && !coop_thread.runtime; }

void coop_interrupt(struct coop_greenlet *g, bool restartable)
{
    struct coop_hub *h = g != NULL ? g->hub : coop_thread.hub;
    if (h == NULL)
        return;
    if (g == NULL)
        g = h->main_g;
    /* As in the kernel, a signal interrupts only a wait under way when it arrives. */
    if (g->state != G_WAITING)
        return;
    g->interrupt_gen = g->wait_gen;
    g->interrupt_pending = restartable ? COOP_RESTART : EINTR;

    atomic_store(&h->interrupts, 1);
    coop_hub_kick(h);
}

/*
 * After fork() the child has only the thread that forked, and coop keeps only the
 * greenlet that forked, as POSIX keeps only the calling thread. The epoll set is shared
 * with the parent, so the child makes its own, and libuv re-creates its loop's.
 */
void coop_fork_child(void)
{
    struct coop_hub *h = coop_thread.hub;
    if (h == NULL)
        return;
    struct coop_greenlet *self = h->current;
    coop_park_fork_child();
    coop_offload_fork_child();
    /* The child's only thread: a lock some other thread (the monitor) held stays free. */
    coop_hubs_lock = (coop_lock_t){ 0 };
    coop_monitor_fork_child();
    coop_preempt_fork_child(h);

    coop_greenlet_fork_child(h, self);
    h->tid = (pid_t)coop_sys(SYS_gettid, 0, 0, 0);
    self->cpu_ns = 0;          /* the child's clock starts afresh */
    h->cpu_mark = 0;
    coop_tls_fork_child(h, self);
    h->ready_head = h->ready_tail = NULL;
    h->ready_len = 0;
    h->remote_head = h->remote_tail = NULL;
    h->remote_lock = (coop_lock_t){ 0 };
    h->heap_len = 0;
    for (int fd = 0; fd < h->watches_len; fd++) {
        free(h->watches[fd]);
        h->watches[fd] = NULL;
    }
    coop_sys(SYS_close, h->epfd, 0, 0);
    if (uv_loop_fork(&h->loop) != 0)
        coop_panic("cannot renew the event loop after fork");
    hub_open_epoll(h);
}
