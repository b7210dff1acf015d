/*
 * The scheduler: greenlets over N hubs (M:N), work stealing, and handoff.
 *
 * Design
 * ------
 * A hub is an OS thread that runs greenlets (hub.c has its loop). There are COOP_HUBS
 * regular hubs, by default one per CPU the process may use: hub 0 is the main thread, the
 * others are threads of the runtime's own, started with the real pthread_create when the
 * program creates its first thread (a program that never does keeps one OS thread and
 * runs as without coop). A greenlet is not tied to a hub: each has TLS of its own (tls.c;
 * the main greenlet keeps the initial thread's, and hub 0 takes another), so any hub may
 * run any greenlet. The main greenlet is the exception while the monitor preempts and
 * hands off hubs: its control block keeps the initial thread's tid, which hub 0's greenlets
 * have too, and glibc's recursive locks know their owner by tid, so hub 0 runs it
 * (coop_sched_pop). Any hub may while hub 0 is handed off, and always without preemption or
 * handoff: were it held to hub 0's thread, a greenlet stuck there in a raw futex wait that
 * the main greenlet was to end would never end (Go's runtime does exactly that). So is a
 * greenlet that holds the loader's lock (a constructor that sleeps), by the hub whose tid it
 * took that lock under (loader.c). Threads that are no hub (there before coop loaded, or
 * created past it) stay plain OS threads; the greenlets they create go to the global queue.
 *
 * Each hub has a run queue (struct coop_runq): a ring its owner pushes at the tail and pops
 * at the head without a lock (a push is two plain stores; a pop one CAS), and that any
 * other hub may steal from, taking half with one CAS on the head, as Go's runtime does
 * (runqput, runqget, runqgrab in proc.go). The owner switches from greenlet to greenlet
 * in FIFO order, but for one slot before the ring, `next` (Go's runnext): a greenlet whose
 * deadline passed (a sleep, a timed wait) goes there and runs before the ring, as the
 * kernel lets a thread whose sleep ended preempt one that computes; otherwise it waited
 * behind every computing greenlet already queued. Any other greenlet woken by a hub goes
 * onto that hub's queue (the waker is awake, and a producer and its consumer end up
 * sharing a CPU cache); a
 * greenlet woken by a thread that is no hub (libuv's pool, a real thread, the monitor)
 * goes to its last hub's inbox, a locked list that hub moves into its queue at its next
 * iteration. Greenlets that overflow a ring, or that no hub may take right now, go to the
 * global queue, which every hub takes a batch from when its own queue is empty (and every
 * 61 iterations otherwise, so the global queue never starves).
 *
 * A hub with nothing to run steals half the queue of another hub (the first one found
 * with work, starting at a random one), and only then sleeps in its epoll set. When
 * another hub has greenlets to steal, it first looks at its own fd set without waiting,
 * as Go's findrunnable polls the network before it steals: a thief that took the other
 * hub's batch while its own connections had requests waiting moved greenlets, caches and
 * fd homes for nothing (echo at 100 connections on two CPUs: half as many greenlets
 * stolen). Sleeping is announced in the hub's state (HUB_SLEEPING) and counted; a hub
 * that makes work available (a spawn, a wake onto its queue, a push to the global queue)
 * wakes one sleeping hub through its eventfd, and only when none is already waking up
 * (HUB_NOTIFIED hubs play Go's "spinning" Ms): no system call while every hub is running.
 * So work spreads only when a hub is idle, and a greenlet otherwise stays on the hub
 * whose cache holds its stack and data.
 *
 * Wakes by fd events are the exception: a hub's poll wakes the waiters of its own fds,
 * whose greenlets are its share of the connections (an fd stays in the set of the hub
 * where it was first waited for, fdwait.c), and each other hub is woken by the events of
 * its own share. Waking a sleeping hub costs a system call here and a context switch there
 * (on a VM an interprocessor interrupt too), tens of microseconds, for a thief that
 * takes half of a batch of requests of a few microseconds each: measured on two CPUs
 * with echo at 100 connections, it made a second hub slower than one. So a poll wakes a
 * helper only when it leaves FD_BATCH_HELPER ready greenlets or more queued (Go wakes one
 * for any). The price: work that arrives in smaller batches stays on its hub while another
 * sleeps, unless one greenlet computes for 2 ms with others queued (the monitor then wakes
 * a sleeping hub to steal them) or the other hub's own events wake it.
 *
 * Where waits live: an fd is registered in one hub's fd set (an epoll set of fds only),
 * its home: where it was first waited for, or moved to. The hub that polls it wakes its
 * waiters onto its own queue, so a greenlet that was stolen goes back to its connection's
 * hub at its next event; waits on another hub twice in a row, or while the home is away
 * (blocked, retired), take the fd along (fdwait.c, which keeps the waiters of every fd in
 * one table, so a close reaches them whichever hub they are on). A wait's deadline sits
 * in the timer heap of the hub it waits on (timer.c, locked, since other hubs may run it,
 * see below). A hub sleeps in its fd set, which also holds an eventfd that wakes it; one
 * that adopted others sleeps in a set of its own, which holds its fd set and theirs.
 *
 * Handoff. A greenlet may block its OS thread in a call coop cannot make cooperative (a
 * raw system call, a futex inside glibc, a slow disk). The blocking monitor (monitor.c)
 * sees a hub whose switch counter stands still while its thread sleeps in the kernel
 * (state S or D) and hands the hub's work off: the hub is marked away (AWAY_BLOCKED) and
 * another hub adopts it: it adds the blocked hub's fd set to its own set (one epoll_ctl:
 * the blocked hub's fd events then wake it), moves the blocked hub's timers into its own
 * heap, and takes its run queue and inbox. The adopter is a sleeping hub if there is
 * one, else a spare: an extra hub on an OS thread of its own, started (or woken from
 * retirement) only while fewer than COOP_HUBS hubs are active, at most COOP_MAX_SPARES
 * of them (default COOP_SPARE_SLOTS; a retired spare keeps its OS thread, asleep, for next
 * time), as Java compensates a pinned carrier thread up to a bound; else a busy hub, at its
 * next iteration. When the call returns, the greenlet just goes on: its hub is its OS thread
 * and was never taken from it; the monitor sees the counter move and marks the hub back,
 * and the adopter lets go of its fd set. A greenlet that computes where preemption is
 * refused (preempt.c) holds its hub's thread as well, and its hub is handed off the same
 * way (AWAY_UNPREEMPTIBLE, monitor.c) while others wait for that hub, or while work for any
 * hub (coop_sched_work_for_any) stays untaken: the busy hubs that were to take it may be
 * held as well, and a spare starts only once fewer are active. A spare that is idle while
 * more than COOP_HUBS hubs are active retires: it is adopted in turn (its fd set, timers
 * and queue), and sleeps on a futex until it is needed again. A hub may poll its own fd set
 * at the same time as its adopter: epoll, the fd table and the timer heaps are all safe
 * for that.
 *
 * Invariants (who may touch what)
 * -------------------------------
 *  - A run queue's tail and the slots beyond its head are written by its owner only;
 *    head moves only by CAS (owner's pop, thieves' grab). A thief copies slots before
 *    its CAS and discards them if the CAS fails. (test_sched: steal stress)
 *  - The `next` slot is set by its owner's timer run only (a greenlet it displaces goes to
 *    the ring), and emptied by exchange, by the owner's pop or by whoever takes the whole
 *    queue (an adopter, a retiring spare); thieves leave it, so there is no ABA on it.
 *    (test_sched: kept-place stress, whose consumers time out every 20 us; handoff tests)
 *  - A greenlet is in at most one queue, inbox or global list at a time, and only while it
 *    is ready: it gets there by its own yield, by its spawn, or by the one waker that wins
 *    its wait_word (hub.c). Whoever takes it from there is the only one that may resume it,
 *    or move it on (coop_sched_pop sends the main greenlet to hub 0's inbox, and one that
 *    holds the loader's lock to its tid's hub's).
 *  - A greenlet queued while it is still switching away from its previous hub (woken by
 *    another thread right after it prepared its wait) is not resumed until that switch has
 *    finished: on_cpu is cleared, with release, by the context its hub switched to, and a
 *    hub waits for it before resuming. (test_sched: wake/steal stress)
 *  - A greenlet that gives up a wait it prepared (coop_cancel_wait: a signal was already
 *    due) may find that a waker won its wait_word first: it is queued, so it leaves as if
 *    it had parked and comes back from the queue, never running on beside the entry.
 *    Until it has left, its state is not G_RUNNING, and neither signal handlers nor
 *    preemption treat it as running. (test_sched: cancel after a wake on another hub)
 *  - Inboxes: any thread pushes under the inbox lock and reads the owner's state inside
 *    the lock; the owner, going to sleep, publishes HUB_SLEEPING before it looks at its
 *    inbox under the same lock. Either the pusher sees HUB_SLEEPING and writes the wake
 *    fd, or the owner sees the greenlet: no wake is lost. A pusher that sees the hub away
 *    writes the wake fd as well: the adopter, which took the inbox once, polls that fd in
 *    its nested set, reads the wake and takes the inbox again (coop_sched_wake_seen); a hub
 *    that comes back reads it itself. The global queue works the same way with the
 *    sleeping count.
 *  - The wake fd sits in the hub's fd set, level-triggered, so that a hub that adopts
 *    nothing sleeps in one epoll_wait on its fd set. Only the owner reads its wakes while
 *    it is usable or in its poll: an adopter still nesting the set skips them. An adopter
 *    reads those of a hub stuck elsewhere (else its own sleep would end at once, for as
 *    long as the hub is stuck), then takes that hub's inbox, and writes a wake back if the
 *    hub is in its poll by then (coop_sched_wake_seen). (test_sched: wake stress, for hubs
 *    asleep on their fd sets; wake taken by an adopter)
 *  - A push onto one's own queue wakes a sleeping hub without that guarantee (no fence on
 *    the hot path): if the wake is missed, the pushing hub runs the greenlet itself, and
 *    the monitor wakes a sleeping hub for a hub that stands still with work queued.
 *  - A hub's away flag is set by the monitor (or, AWAY_RETIRED, by the spare itself) and
 *    cleared by the monitor (or by the spare, once woken: a retired spare is always one
 *    that is handed off, see retire). adopter is written three ways: by exchange, by the
 *    hub that answers a hand-off, from whichever hub held it before (that one's
 *    maintenance then lets go); by CAS from x, by that hub, for the hubs x held that are
 *    still away (they come along); and by its adopter's CAS to NULL as it lets go, and back
 *    from NULL if x went away again meanwhile. A hub adopts from its own loop (it may still
 *    be marked away there, until the monitor's next look).
 *    (test_sched: handoff when every hub blocks, with the main greenlet as the rescuer)
 *
 * Preemption (preempt.c) switches away inside a signal handler on the hub's own thread: the
 * preempted greenlet waits for a deadline of now in that hub's timer heap
 * (coop_requeue_current), and the hub's next poll makes it ready, behind what the poll woke.
 * The handler switches only when the interrupted code is the program's (preempt.c refuses
 * in the runtime's own), so no queue or heap operation of the hub is ever cut in half.
 * A greenlet preempted on one hub may be stolen and resumed on another; its signal frame
 * goes with its stack, and sigreturn there gives that thread the mask the frame holds.
 *
 * Signals (shim/signal.c): the shim's hooks run on whichever hub takes the flag that a
 * handler set (coop_request_signal_pass), and walk every greenlet, not one hub's.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/prctl.h>

#include "internal.h"

struct coop_hub *coop_hub_table[COOP_MAX_HUBS];
_Atomic int coop_hub_count;
struct coop_greenlet *coop_main_greenlet;

static int regular_hubs = 1;
static coop_lock_t start_lock;
static _Atomic bool started;

static struct {
    coop_lock_t lock;
    struct coop_greenlet *head, *tail;
    _Atomic unsigned len;
} global;

static _Atomic int sleeping;          /* hubs in HUB_SLEEPING */
static _Atomic int notified;          /* hubs woken by a waker and not yet running */
static _Atomic int adoptions_pending; /* away hubs nobody adopted yet */
static _Atomic bool interrupts_pending, dump_pending, signal_pass_pending;
static _Atomic uint64_t spares_started;
static _Atomic uint64_t handoffs_total;

/* Iterations between two looks at the global queue while a hub has work of its own. */
#define GLOBAL_CHECK_EVERY 61

int coop_sched_regular_hubs(void) { return regular_hubs; }

struct coop_hub *coop_hub_at(int i) { return coop_hub_table[i]; }

int coop_hub_total(void) { return atomic_load_explicit(&coop_hub_count, memory_order_acquire); }

struct coop_hub *coop_hub_next(const struct coop_hub *h)
{
    return h->index + 1 < coop_hub_total() ? coop_hub_table[h->index + 1] : NULL;
}

/* --- run queues --- */

/* The ring alone: what a thief may take. */
static uint32_t runq_ring_len(struct coop_hub *h)
{
    uint32_t head = atomic_load_explicit(&h->runq.head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&h->runq.tail, memory_order_acquire);
    return tail - head;
}

static uint32_t runq_len(struct coop_hub *h)
{
    return runq_ring_len(h) + (atomic_load_explicit(&h->runq.next, memory_order_relaxed) != NULL);
}

/* The slot before the ring: any thread that may take it does so by exchange. */
static struct coop_greenlet *runq_take_next(struct coop_hub *h)
{
    if (atomic_load_explicit(&h->runq.next, memory_order_relaxed) == NULL)
        return NULL;
    return atomic_exchange_explicit(&h->runq.next, NULL, memory_order_acquire);
}

/* Takes up to max greenlets from the head of v's queue into out (half of what it holds when
 * called by a thief, all of it when taking_all): any thread. */
static uint32_t runq_grab(struct coop_hub *v, struct coop_greenlet **out, uint32_t max, bool taking_all)
{
    for (;;) {
        uint32_t head = atomic_load_explicit(&v->runq.head, memory_order_acquire);
        uint32_t tail = atomic_load_explicit(&v->runq.tail, memory_order_acquire);
        uint32_t n = tail - head;
        if (!taking_all)
            n -= n / 2;
        if (n == 0)
            return 0;
        if (n > COOP_RUNQ_SIZE)
            continue;                   /* head and tail read at different times */
        if (n > max)
            n = max;
        for (uint32_t i = 0; i < n; i++)
            out[i] = atomic_load_explicit(&v->runq.slot[(head + i) % COOP_RUNQ_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&v->runq.head, &head, head + n, memory_order_release,
                                                  memory_order_relaxed))
            return n;
    }
}

static void global_push_list(struct coop_greenlet *first, struct coop_greenlet *last, unsigned n);

/* The owner's push; when the ring is full, half of it and g go to the global queue. */
static void runq_push(struct coop_hub *h, struct coop_greenlet *g)
{
    for (;;) {
        uint32_t tail = atomic_load_explicit(&h->runq.tail, memory_order_relaxed);
        uint32_t head = atomic_load_explicit(&h->runq.head, memory_order_acquire);
        if (tail - head < COOP_RUNQ_SIZE) {
            atomic_store_explicit(&h->runq.slot[tail % COOP_RUNQ_SIZE], g, memory_order_relaxed);
            atomic_store_explicit(&h->runq.tail, tail + 1, memory_order_release);
            return;
        }
        struct coop_greenlet *batch[COOP_RUNQ_SIZE / 2];
        uint32_t n = runq_grab(h, batch, COOP_RUNQ_SIZE / 2, false);
        if (n == 0)
            continue;                   /* thieves emptied it meanwhile */
        for (uint32_t i = 0; i + 1 < n; i++)
            batch[i]->next_ready = batch[i + 1];
        batch[n - 1]->next_ready = g;
        g->next_ready = NULL;
        global_push_list(batch[0], g, n + 1);
        return;
    }
}

/* The owner's, from its timer run; the slot is empty then, as the loop pops it before it
 * polls again, but a greenlet it held would go to the ring's tail. */
static void runq_push_next(struct coop_hub *h, struct coop_greenlet *g)
{
    struct coop_greenlet *displaced = atomic_exchange_explicit(&h->runq.next, g, memory_order_release);
    if (displaced != NULL)
        runq_push(h, displaced);
}

static struct coop_greenlet *runq_pop(struct coop_hub *h)
{
    struct coop_greenlet *next = runq_take_next(h);
    if (next != NULL)
        return next;
    for (;;) {
        uint32_t head = atomic_load_explicit(&h->runq.head, memory_order_acquire);
        uint32_t tail = atomic_load_explicit(&h->runq.tail, memory_order_relaxed);
        if (head == tail)
            return NULL;
        struct coop_greenlet *g = atomic_load_explicit(&h->runq.slot[head % COOP_RUNQ_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&h->runq.head, &head, head + 1, memory_order_release,
                                                  memory_order_relaxed))
            return g;
    }
}

/* --- sleeping and waking hubs --- */

static void write_wake(struct coop_hub *t)
{
    uint64_t one = 1;
    coop_sys(SYS_write, t->wake_fd, &one, sizeof one);
}

/* Wakes t if it sleeps (any thread, async-signal-safe). Whether this call woke it. */
static bool notify(struct coop_hub *t)
{
    int expected = HUB_SLEEPING;
    if (!atomic_compare_exchange_strong(&t->state, &expected, HUB_NOTIFIED))
        return false;
    atomic_fetch_sub(&sleeping, 1);
    atomic_fetch_add(&notified, 1);
    write_wake(t);
    return true;
}

static bool usable(const struct coop_hub *h)
{
    return atomic_load_explicit(&h->away, memory_order_relaxed) == AWAY_NONE;
}

/* Wakes one sleeping hub, starting after `after` so the same one is not always chosen. */
static bool notify_one(int after)
{
    int n = coop_hub_total();
    for (int i = 1; i <= n; i++) {
        struct coop_hub *t = coop_hub_table[(after + i) % n];
        if (usable(t) && atomic_load_explicit(&t->state, memory_order_relaxed) == HUB_SLEEPING && notify(t))
            return true;
    }
    return false;
}

/* New work that any hub may take: wake a sleeping hub, unless one is already waking. */
static void wake_a_helper(int after)
{
    if (atomic_load_explicit(&sleeping, memory_order_relaxed) == 0
        || atomic_load_explicit(&notified, memory_order_relaxed) > 0)
        return;
    notify_one(after);
}

/* For a flag set by a signal handler: a sleeping hub, if any, comes to look at it (running
 * hubs look at their next iteration). */
void coop_sched_notify_any(void) { notify_one(0); }

/* --- inboxes and the global queue --- */

static void inbox_push(struct coop_hub *t, struct coop_greenlet *g)
{
    g->next_ready = NULL;
    coop_lock(&t->inbox_lock);
    if (t->inbox_tail != NULL)
        t->inbox_tail->next_ready = g;
    else
        t->inbox_head = g;
    t->inbox_tail = g;
    atomic_store_explicit(&t->inbox_nonempty, true, memory_order_relaxed);
    int state = atomic_load_explicit(&t->state, memory_order_relaxed);   /* see the invariants */
    bool away = !usable(t);
    coop_unlock(&t->inbox_lock);
    if (state == HUB_SLEEPING)
        notify(t);
    else if (away)
        write_wake(t);
}

/* Takes the greenlets of x's inbox, in order: by x, or by its adopter. */
static struct coop_greenlet *inbox_take(struct coop_hub *x)
{
    if (!atomic_load_explicit(&x->inbox_nonempty, memory_order_relaxed))
        return NULL;
    coop_lock(&x->inbox_lock);
    struct coop_greenlet *taken = x->inbox_head;
    x->inbox_head = x->inbox_tail = NULL;
    atomic_store_explicit(&x->inbox_nonempty, false, memory_order_relaxed);
    coop_unlock(&x->inbox_lock);
    return taken;
}

static void global_push_list(struct coop_greenlet *first, struct coop_greenlet *last, unsigned n)
{
    coop_lock(&global.lock);
    if (global.tail != NULL)
        global.tail->next_ready = first;
    else
        global.head = first;
    global.tail = last;
    atomic_fetch_add_explicit(&global.len, n, memory_order_relaxed);
    coop_unlock(&global.lock);
    wake_a_helper(0);
}

static void take_in_list(struct coop_hub *h, struct coop_greenlet *list)
{
    while (list != NULL) {
        struct coop_greenlet *next = list->next_ready;
        runq_push(h, list);
        list = next;
    }
}

static bool in_its_poll(const struct coop_hub *x)
{
    int state = atomic_load(&x->state);
    return state == HUB_SLEEPING || state == HUB_NOTIFIED;
}

/* The wake fd is level-triggered in x's fd set, which x's adopter polls too: see the
 * invariants at the top. x reads its own wakes, and so it does whenever it is usable or in
 * its poll (it may sleep there still marked away, until the monitor's next look); the
 * adopter lets go of x's set at its next maintenance. An adopter takes the wake of a hub
 * stuck elsewhere (in a system call, or retired), then its inbox, whose pushes came
 * before their wakes; and gives a wake back if x went to sleep meanwhile, since the one
 * it took may have been written for that sleep. */
void coop_sched_wake_seen(struct coop_hub *h, struct coop_hub *x)
{
    static const uint64_t one = 1;
    uint64_t count;
    if (x != h && (usable(x) || in_its_poll(x)))
        return;
    coop_sys(SYS_read, x->wake_fd, (long)&count, sizeof count);
    if (x == h)
        return;
    take_in_list(h, inbox_take(x));
    if (in_its_poll(x))
        coop_sys(SYS_write, x->wake_fd, (long)&one, sizeof one);
}

/* A batch of the global queue: a fair share, at most half a ring. */
static bool global_take(struct coop_hub *h)
{
    if (atomic_load_explicit(&global.len, memory_order_relaxed) == 0)
        return false;
    coop_lock(&global.lock);
    unsigned len = atomic_load_explicit(&global.len, memory_order_relaxed);
    unsigned n = len / (unsigned)coop_hub_total() + 1;
    if (n > len)
        n = len;
    if (n > COOP_RUNQ_SIZE / 2)
        n = COOP_RUNQ_SIZE / 2;
    struct coop_greenlet *first = global.head, *last = NULL;
    for (unsigned i = 0; i < n; i++) {
        last = global.head;
        global.head = last->next_ready;
    }
    if (global.head == NULL)
        global.tail = NULL;
    if (last != NULL)
        last->next_ready = NULL;
    atomic_fetch_sub_explicit(&global.len, n, memory_order_relaxed);
    coop_unlock(&global.lock);
    take_in_list(h, n > 0 ? first : NULL);
    return n > 0;
}

/* --- making greenlets ready --- */

void coop_ready(struct coop_hub *h, struct coop_greenlet *g)
{
    coop_gstate_set(g, G_READY);
    runq_push(h, g);
}

void coop_ready_new(struct coop_hub *h, struct coop_greenlet *g)
{
    coop_gstate_set(g, G_READY);
    if (h == NULL) {
        g->next_ready = NULL;
        global_push_list(g, g, 1);
        return;
    }
    runq_push(h, g);
    wake_a_helper(h->index);
}

/* After a waker won g's wait_word: where g runs next. */
void coop_sched_woken(struct coop_greenlet *g)
{
    struct coop_hub *here = coop_thread.hub;
    coop_gstate_set(g, G_READY);
    if (here != NULL) {
        coop_prefetch_resume(g);
        /* Woken by its deadline, it runs next, as a thread whose sleep ended preempts one
         * that computes; a preempted greenlet's deadline of now is a requeue (hub.c). Only
         * the first of a timer run: the others follow in deadline order. No helper: this
         * hub runs it as soon as its poll ends, and thieves leave the slot. */
        if (here->running_timers && g->waiting.kind != WAIT_PREEMPTED) {
            here->running_timers = false;
            runq_push_next(here, g);
            return;
        }
        runq_push(here, g);
        if (!here->dispatching)
            wake_a_helper(here->index);
        return;
    }
    struct coop_hub *last = g->hub;
    if (last != NULL && usable(last)) {
        inbox_push(last, g);
        return;
    }
    g->next_ready = NULL;
    global_push_list(g, g, 1);
}

/* The hub that must run g instead of h, or NULL. glibc takes the tid in a control block for
 * the owner of its recursive locks, and two OS threads with one tid were let into the
 * loader's lock at once (dl_iterate_phdr, under Guile's collector and coop's unwinding):
 * its count lost an update, and it stayed held for ever. So a greenlet whose control block
 * names the OS thread 0 wherever it runs (the main greenlet: see the top) is run by hub 0,
 * and one that holds the loader's lock, which keeps its tid meanwhile (loader.c), by the
 * hub of that tid, while that hub can run it. Only while the monitor frees held hubs: a
 * greenlet that holds the home hub waiting for this one is then preempted, or that hub is
 * handed off and this one may run elsewhere; otherwise it may always, as the rescuer of a
 * greenlet stuck there. */
/* What g holds of the loader's locks, once it has left its previous hub: a waker or a thief
 * may queue it before that hub's switch away from it has counted (switch_to would wait for
 * on_cpu anyway, moments later). */
static int loader_held_after_leaving(const struct coop_greenlet *g)
{
    while (atomic_load_explicit(&g->on_cpu, memory_order_acquire))
        __builtin_ia32_pause();
    return g->loader_held;
}

static struct coop_hub *tid_home(struct coop_greenlet *g, struct coop_hub *h)
{
    struct coop_hub *home = NULL;
    if (coop_tls_names_thread0(g)) {
        home = coop_hub_table[0];
    } else if (g != h->current && loader_held_after_leaving(g) > 0) {
        for (int i = 0, n = coop_hub_total(); i < n && home == NULL; i++)
            if (__atomic_load_n(&coop_hub_table[i]->tid, __ATOMIC_RELAXED) == g->tid_written)
                home = coop_hub_table[i];
    }
    return home != NULL && home != h && usable(home) && coop_monitor_frees_held_hubs() ? home : NULL;
}

/* The next greenlet to run on h. One that must run on another hub (stolen, or woken onto
 * this one) goes there, behind that hub's queue. */
struct coop_greenlet *coop_sched_pop(struct coop_hub *h)
{
    struct coop_greenlet *g;
    struct coop_hub *home;
    while ((g = runq_pop(h)) != NULL && (home = tid_home(g, h)) != NULL)
        inbox_push(home, g);
    return g;
}

/* The owner moves its inbox into its queue (cheap when empty: one relaxed load). */
void coop_sched_take_inbox(struct coop_hub *h) { take_in_list(h, inbox_take(h)); }

bool coop_sched_has_work(struct coop_hub *h) { return runq_len(h) > 0; }

unsigned coop_sched_ready_count(struct coop_hub *h) { return runq_len(h); }

/* A poll's wakes of fd waiters wake no helper each (see the top); once the hub runs again
 * (while it is still marked sleeping or notified, it would count itself), a queue of
 * FD_BATCH_HELPER greenlets or more gets one. Only the hub's own thread reads and writes
 * `dispatching`. */
#define FD_BATCH_HELPER 16

void coop_sched_dispatch_begin(struct coop_hub *h) { h->dispatching = true; }

void coop_sched_dispatch_end(struct coop_hub *h) { h->dispatching = false; }

void coop_sched_share_batch(struct coop_hub *h)
{
    if (runq_len(h) >= FD_BATCH_HELPER)
        wake_a_helper(h->index);
}

/* --- stealing --- */

static uint32_t next_random(struct coop_hub *h)
{
    /* xorshift: a different starting victim each time, without a shared counter. */
    uint32_t x = (uint32_t)h->passes * 2654435761u + (uint32_t)h->index + 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

static bool steal_from(struct coop_hub *h, struct coop_hub *v)
{
    struct coop_greenlet *batch[COOP_RUNQ_SIZE / 2];
    uint32_t n = runq_grab(v, batch, COOP_RUNQ_SIZE / 2, false);
    for (uint32_t i = 0; i < n; i++)
        runq_push(h, batch[i]);
    if (n > 0) {
        h->steals++;
        h->stolen += n;
    }
    return n > 0;
}

/* Whether another hub has greenlets a thief may take (its next slot is its own). */
bool coop_sched_others_have_work(struct coop_hub *h)
{
    int n = coop_hub_total();
    for (int i = 0; i < n; i++)
        if (coop_hub_table[i] != h && runq_ring_len(coop_hub_table[i]) > 0)
            return true;
    return false;
}

static void adopted_maintain(struct coop_hub *h);

bool coop_sched_find_work(struct coop_hub *h)
{
    if (global_take(h))
        return true;
    int n = coop_hub_total();
    uint32_t start = next_random(h);
    for (int i = 0; i < n; i++) {
        struct coop_hub *v = coop_hub_table[(start + (uint32_t)i) % (uint32_t)n];
        if (v != h && runq_len(v) > 0 && steal_from(h, v)) {
            wake_a_helper(h->index);    /* there may be more: let another idle hub look */
            return true;
        }
    }
    adopted_maintain(h);
    return coop_sched_has_work(h);
}

/* --- going to sleep --- */

/* Flags that any hub takes at its next iteration (coop_sched_service). */
static bool service_pending(void)
{
    return atomic_load(&adoptions_pending) > 0 || atomic_load(&interrupts_pending) || atomic_load(&dump_pending)
           || atomic_load(&signal_pass_pending);
}

bool coop_sched_work_for_any(void)
{
    return atomic_load_explicit(&global.len, memory_order_relaxed) > 0 || service_pending();
}

static bool work_in_sight(struct coop_hub *h)
{
    coop_lock(&h->inbox_lock);
    bool inbox = h->inbox_head != NULL;
    coop_unlock(&h->inbox_lock);
    if (inbox)
        return true;
    coop_lock(&global.lock);
    bool queued = global.head != NULL;
    coop_unlock(&global.lock);
    if (queued || service_pending())
        return true;
    return coop_sched_others_have_work(h);
}

/* For deadlock detection: every other hub asleep, nothing queued anywhere. */
bool coop_sched_all_idle(struct coop_hub *h)
{
    if (atomic_load(&global.len) > 0 || atomic_load(&adoptions_pending) > 0 || atomic_load(&interrupts_pending)
        || atomic_load(&signal_pass_pending))
        return false;
    int n = coop_hub_total();
    for (int i = 0; i < n; i++) {
        struct coop_hub *x = coop_hub_table[i];
        int state = atomic_load(&x->state);
        if (runq_len(x) > 0 || atomic_load(&x->inbox_nonempty)
            || (x != h && state != HUB_SLEEPING && state != HUB_RETIRED))
            return false;
    }
    return true;
}

bool coop_sched_sleep_begin(struct coop_hub *h)
{
    atomic_store(&h->state, HUB_SLEEPING);
    atomic_fetch_add(&sleeping, 1);
    if (!work_in_sight(h))
        return true;
    coop_sched_sleep_end(h);
    return false;
}

void coop_sched_sleep_end(struct coop_hub *h)
{
    int was = atomic_exchange(&h->state, HUB_RUNNING);
    if (was == HUB_NOTIFIED)
        atomic_fetch_sub(&notified, 1);
    else if (was == HUB_SLEEPING)
        atomic_fetch_sub(&sleeping, 1);
}

/* --- adoption: the work of hubs that are away --- */

static bool adopts(const struct coop_hub *h, int i) { return h->adopted[i / 64] >> (i % 64) & 1; }

/* Moves what an away hub holds: deadlines, ready greenlets, its inbox. */
static uint32_t take_over(struct coop_hub *h, struct coop_hub *x)
{
    coop_timer_move(x, h);
    struct coop_greenlet *batch[COOP_RUNQ_SIZE], *next = runq_take_next(x);
    uint32_t n = runq_grab(x, batch, COOP_RUNQ_SIZE, true);
    if (next != NULL)
        runq_push(h, next);
    for (uint32_t i = 0; i < n; i++)
        runq_push(h, batch[i]);
    n += next != NULL;
    take_in_list(h, inbox_take(x));
    return n;
}

static void nest(struct coop_hub *h, struct coop_hub *x)
{
    if (adopts(h, x->index))
        return;
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = COOP_TAG_ADOPT + (uint64_t)x->index };
    coop_sys6(SYS_epoll_ctl, h->epfd, EPOLL_CTL_ADD, x->fdset, (long)&ev, 0, 0);
    h->adopted[x->index / 64] |= 1ull << (x->index % 64);
}

static void unnest(struct coop_hub *h, struct coop_hub *x)
{
    struct epoll_event unused;
    coop_sys6(SYS_epoll_ctl, h->epfd, EPOLL_CTL_DEL, x->fdset, (long)&unused, 0, 0);
    h->adopted[x->index / 64] &= ~(1ull << (x->index % 64));
}

/*
 * The hub that answers a hand-off takes x, whoever adopted it before: h itself, from an
 * earlier time away it has not let go of yet; an adopter that is away itself and polls
 * nothing; or one still usable, which has not let go since x came back, and whose
 * maintenance unnests x at its next iteration. That iteration may not come soon: the
 * adopter may be running a greenlet that cannot be preempted, and so may the adopter of
 * its own last time away (three hubs and two spares held by four computing greenlets with
 * signal stacks of their own, main queued on hub 0: a hub that left x to such an adopter
 * used up the hand-off, and main could wait for ever; found by reading). The hubs x itself
 * had adopted, if they are still away, come along.
 */
static void adopt(struct coop_hub *h, struct coop_hub *x)
{
    if (!atomic_exchange(&x->adoption_wanted, false))
        return;
    atomic_fetch_sub(&adoptions_pending, 1);
    struct coop_hub *before = atomic_exchange(&x->adopter, h);
    if (before != NULL && before != h)
        notify(before);      /* asleep in a set that nests x's: it lets go (adopted_maintain) */
    nest(h, x);
    const char *why = coop_sched_away_reason(x);
    uint32_t n = take_over(h, x);
    coop_info("hub %d adopts hub %d's fds, timers and %u ready greenlets (%s)", h->index, x->index, n,
              why != NULL ? why : "back already");
    int total = coop_hub_total();
    for (int i = 0; i < total; i++) {
        struct coop_hub *y = coop_hub_table[i], *was = x;
        if (y != h && (x->adopted[i / 64] >> (i % 64) & 1) && !usable(y)
            && atomic_compare_exchange_strong(&y->adopter, &was, h)) {
            nest(h, y);
            take_over(h, y);
        }
    }
    /* x may have come back meanwhile: the next maintenance lets it go again. */
}

/* Events of the fd sets of the hubs h adopted. */
void coop_sched_drain_adopted(struct coop_hub *h)
{
    for (size_t w = 0; w < sizeof h->adopted / sizeof h->adopted[0]; w++)
        for (uint64_t bits = h->adopted[w]; bits != 0; bits &= bits - 1)
            coop_drain_fdset(h, coop_hub_table[w * 64 + (size_t)__builtin_ctzll(bits)]);
}

bool coop_sched_adopts_any(const struct coop_hub *h)
{
    for (size_t i = 0; i < sizeof h->adopted / sizeof h->adopted[0]; i++)
        if (h->adopted[i] != 0)
            return true;
    return false;
}

/* Lets go of hubs that are back, or that another hub took over; takes what was queued
 * toward those still away. */
static void adopted_maintain(struct coop_hub *h)
{
    int n = coop_hub_total();
    for (int i = 0; i < n; i++) {
        if (!adopts(h, i))
            continue;
        struct coop_hub *x = coop_hub_table[i], *mine = h;
        if (atomic_load(&x->adopter) != h) {
            unnest(h, x);
        } else if (usable(x)) {
            unnest(h, x);
            atomic_compare_exchange_strong(&x->adopter, &mine, NULL);
            /* x may have gone away again since usable(): taken back meanwhile, until the
             * hub that answers that hand-off takes it (by exchange, from us too). */
            struct coop_hub *none = NULL;
            if (atomic_load(&x->away) != AWAY_NONE && atomic_compare_exchange_strong(&x->adopter, &none, h)) {
                nest(h, x);
                take_over(h, x);
            }
        } else {
            take_over(h, x);    /* what it got since: it may have run a little, and gone again */
        }
    }
}

static void adopt_pending(struct coop_hub *h)
{
    int n = coop_hub_total();
    for (int i = 0; i < n && atomic_load(&adoptions_pending) > 0; i++) {
        struct coop_hub *x = coop_hub_table[i];
        if (x != h && atomic_load_explicit(&x->adoption_wanted, memory_order_relaxed))
            adopt(h, x);
    }
}

static int active_hubs(void)
{
    int n = coop_hub_total(), active = 0;
    for (int i = 0; i < n; i++)
        active += usable(coop_hub_table[i]);
    return active;
}

static void start_spare(void);

/* The monitor's decision: x is held by its greenlet, in a system call or where it cannot be
 * preempted (or x is a retiring spare). */
bool coop_sched_hand_off(struct coop_hub *x, enum coop_hub_away why)
{
    int expected = AWAY_NONE;
    if (!atomic_compare_exchange_strong(&x->away, &expected, why))
        return false;
    bool held_by_greenlet = why != AWAY_RETIRED;
    if (held_by_greenlet) {
        atomic_fetch_add(&x->handoffs, 1);
        atomic_fetch_add(&handoffs_total, 1);
    }
    atomic_fetch_add(&adoptions_pending, 1);
    atomic_store(&x->adoption_wanted, true);
    /* Someone must come: a sleeping hub; else a spare while fewer than COOP_HUBS hubs are
     * active; else the busy hubs, at their next iteration. */
    if (!notify_one(x->index) && held_by_greenlet && active_hubs() < regular_hubs)
        start_spare();
    return true;
}

void coop_sched_returned(struct coop_hub *x)
{
    int expected = atomic_load(&x->away);
    if (expected == AWAY_NONE || expected == AWAY_RETIRED
        || !atomic_compare_exchange_strong(&x->away, &expected, AWAY_NONE))
        return;
    if (atomic_exchange(&x->adoption_wanted, false))
        atomic_fetch_sub(&adoptions_pending, 1);
}

bool coop_sched_is_away(const struct coop_hub *h) { return !usable(h); }

const char *coop_sched_away_reason(const struct coop_hub *h)
{
    switch (atomic_load(&h->away)) {
    case AWAY_BLOCKED: return "blocked in a system call";
    case AWAY_UNPREEMPTIBLE: return "held by a greenlet that cannot be preempted";
    case AWAY_RETIRED: return "a retired spare";
    default: return NULL;
    }
}

bool coop_sched_inbox_waits(const struct coop_hub *h)
{
    return atomic_load_explicit(&h->inbox_nonempty, memory_order_relaxed)
           && atomic_load_explicit(&sleeping, memory_order_relaxed) > 0;
}

bool coop_sched_queued_on(struct coop_hub *h)
{
    return runq_len(h) > 0 || atomic_load_explicit(&h->inbox_nonempty, memory_order_relaxed);
}

/* The monitor's backstop for a missed wake: h stands still on the CPU with work queued. */
void coop_sched_nudge(struct coop_hub *h)
{
    if (runq_len(h) > 0)
        wake_a_helper(h->index);
}

/* --- spares --- */

static void retire(struct coop_hub *h);
static _Atomic bool retire_requested[COOP_MAX_HUBS];

static struct coop_hub *start_hub(int index, bool spare);
static bool start_thread(struct coop_hub *h);

/* Every hub and spare is held, stuck in the kernel or by a greenlet that computes where it
 * cannot be preempted, and no spare may start: the greenlets that would end those calls (a
 * futex wake, a write to a pipe) or loops may be among the ones waiting, as Go's runtime's
 * idle threads are. Said once: it may last. */
static void say_all_stuck(void)
{
    static _Atomic bool said;
    if (!atomic_exchange(&said, true))
        coop_warn("every hub and all %d spare threads are held, in system calls coop cannot make cooperative "
                  "or by greenlets that cannot be preempted: ready greenlets wait until one is free (more "
                  "spares: COOP_MAX_SPARES)", coop_hub_total() - regular_hubs);
}

static void start_spare(void)
{
    int n = coop_hub_total();
    for (int i = regular_hubs; i < n; i++) {
        struct coop_hub *s = coop_hub_table[i];
        int expected = HUB_RETIRED;
        if (atomic_load(&s->away) == AWAY_RETIRED
            && atomic_compare_exchange_strong(&s->state, &expected, HUB_RUNNING)) {
            coop_futex((_Atomic uint32_t *)&s->state, FUTEX_WAKE, 1, NULL);     /* it comes back: retire() */
            return;
        }
    }
    coop_lock(&start_lock);
    struct coop_hub *last = coop_hub_table[n - 1], *s = NULL;
    bool unchanged = coop_hub_total() == n;
    if (unchanged && last->spare && last->no_thread)
        s = start_thread(last) ? last : NULL;      /* its slot and fds again, no new ones */
    else if (unchanged && n < COOP_MAX_HUBS && n - regular_hubs < coop_settings.max_spares)
        s = start_hub(n, true);
    if (s != NULL) {
        atomic_fetch_add(&spares_started, 1);
        coop_info("spare hub %d started", s->index);
    }
    coop_unlock(&start_lock);
    if (s == NULL && active_hubs() == 0)
        say_all_stuck();
}

/* Called by the monitor at each tick: an idle spare retires while more than COOP_HUBS hubs
 * are active. */
void coop_sched_balance_spares(void)
{
    int n = coop_hub_total();
    if (n <= regular_hubs || active_hubs() <= regular_hubs)
        return;
    for (int i = regular_hubs; i < n; i++) {
        struct coop_hub *s = coop_hub_table[i];
        if (usable(s) && atomic_load(&s->state) == HUB_SLEEPING) {
            atomic_store(&retire_requested[i], true);
            notify(s);
            return;
        }
    }
}

/*
 * A spare gives its work away and sleeps until start_spare wakes it. Its away flag is
 * AWAY_RETIRED from its hand-off until it is back, and only it sets and clears it then:
 * so a retired spare is always one that others adopt (its deadlines and fds), and one that
 * start_spare may wake. (Cleared by the waker, the flag could be clear while the spare,
 * already running on, retired again without a hand-off: its deadlines stayed with nobody.)
 */
static void retire(struct coop_hub *h)
{
    if (coop_sched_adopts_any(h) || coop_sched_has_work(h) || active_hubs() <= regular_hubs
        || !coop_sched_hand_off(h, AWAY_RETIRED))
        return;
    struct coop_greenlet *batch[COOP_RUNQ_SIZE], *next = runq_take_next(h);
    uint32_t n = runq_grab(h, batch, COOP_RUNQ_SIZE, true);
    if (next != NULL) {
        next->next_ready = NULL;
        global_push_list(next, next, 1);
    }
    for (uint32_t i = 0; i < n; i++) {
        batch[i]->next_ready = NULL;
        global_push_list(batch[i], batch[i], 1);
    }
    coop_info("spare hub %d retires", h->index);
    atomic_store(&h->state, HUB_RETIRED);
    while (atomic_load(&h->state) == HUB_RETIRED)
        coop_futex((_Atomic uint32_t *)&h->state, FUTEX_WAIT, HUB_RETIRED, NULL);
    if (atomic_exchange(&h->adoption_wanted, false))
        atomic_fetch_sub(&adoptions_pending, 1);
    atomic_store(&h->away, AWAY_NONE);
    coop_info("spare hub %d back at work", h->index);
}

/* --- each iteration of a hub's loop --- */

static void deliver_interrupts(void);

void coop_sched_service(struct coop_hub *h)
{
    coop_sched_take_inbox(h);
    if (atomic_load_explicit(&global.len, memory_order_relaxed) > 0
        && (!coop_sched_has_work(h) || h->passes % GLOBAL_CHECK_EVERY == 0))
        global_take(h);
    if (atomic_load_explicit(&adoptions_pending, memory_order_relaxed) > 0)
        adopt_pending(h);
    if (coop_sched_adopts_any(h))
        adopted_maintain(h);
    if (atomic_load_explicit(&interrupts_pending, memory_order_relaxed) && atomic_exchange(&interrupts_pending, false))
        deliver_interrupts();
    if (atomic_load_explicit(&dump_pending, memory_order_relaxed) && atomic_exchange(&dump_pending, false))
        coop_dump_all();
    if (atomic_load_explicit(&signal_pass_pending, memory_order_relaxed) && atomic_exchange(&signal_pass_pending, false))
        coop_run_signal_pass();
    if (h->spare && atomic_load_explicit(&retire_requested[h->index], memory_order_relaxed)
        && atomic_exchange(&retire_requested[h->index], false))
        retire(h);
}

/* --- interrupts and dumps: flags set by signal handlers --- */

static void deliver_interrupts(void)
{
    coop_all_lock();
    for (struct coop_greenlet *g = coop_all_first(); g != NULL; g = g->all_next) {
        uint64_t interrupt = atomic_exchange(&g->interrupt, 0);
        if (interrupt != 0)
            coop_wake(g, interrupt >> 2, interrupt & INTERRUPT_RESTART ? COOP_RESTART : EINTR);
    }
    coop_all_unlock();
}

void coop_sched_interrupt_posted(void)
{
    atomic_store(&interrupts_pending, true);
    coop_sched_notify_any();
}

void coop_request_dump(void)
{
    atomic_store(&dump_pending, true);
    coop_sched_notify_any();
}

void coop_request_signal_pass(void)
{
    atomic_store(&signal_pass_pending, true);
    coop_sched_notify_any();
}

/* --- starting hubs --- */

/* A regular hub's thread keeps the mask it was started with (a hub's: the program's) and
 * takes the runtime's own signals (preemption's, the samplers'); a spare, started by the
 * monitor, which blocks every signal, takes them all. The shim brings either in line with
 * the greenlets' masks (shim/signal.c: a stale mask only changes which thread a signal
 * lands on). It is named after its hub, not after whoever started it. Signals open only
 * once it is a hub: before, the shim's trampoline would take it for a thread of the
 * program's and run the handler there (a signal pending while every thread blocked it ran
 * on a spare as it started, not in the thread that unblocked it: signal_window). */
static void *carrier_main(void *arg)
{
    struct coop_hub *h = arg;
    coop_mark_runtime_thread();
    char name[16];
    snprintf(name, sizeof name, "coop-hub %d", h->index);
    coop_sys(SYS_prctl, PR_SET_NAME, (long)name, 0);
    coop_hub_attach(h, false);
    uint64_t taken = h->spare ? ~(uint64_t)0 : coop_runtime_signals();
    coop_sys6(SYS_rt_sigprocmask, 1 /* SIG_UNBLOCK */, (long)&taken, 0, 8, 0, 0);
    coop_hub_run(h);
    return NULL;
}

/* Under start_lock; err 0: a thread started. Each cause is said once until a thread starts
 * again: a program at its limit of fds or threads would hear it at every handoff. */
static void say_cannot_start(const char *what, int err, int hubs)
{
    static int said;
    if (err != 0 && err != said)
        coop_warn("cannot %s (%s): %d hubs", what, strerror(err), hubs);
    said = err;
}

/* Called under start_lock. */
static struct coop_hub *start_hub(int index, bool spare)
{
    struct coop_hub *h = coop_hub_create(index, spare);
    if (h == NULL) {
        say_cannot_start("create a hub", errno, index);
        return NULL;
    }
    coop_hub_table[index] = h;
    atomic_store_explicit(&coop_hub_count, index + 1, memory_order_release);
    return start_thread(h) ? h : NULL;
}

/* Called under start_lock. A hub whose thread cannot start stays in the table (others may
 * hold its address), away: never chosen, never counted; start_spare tries it again. */
static bool start_thread(struct coop_hub *h)
{
    atomic_store(&h->away, AWAY_NONE);
    /* A hub's thread takes no signal the program did not let through where it was started. */
    int err = coop_start_runtime_thread(carrier_main, h);
    h->no_thread = err != 0;
    say_cannot_start("start a hub's thread", err, h->index);
    if (err != 0)
        atomic_store(&h->away, AWAY_RETIRED);
    return err == 0;
}

/* The CPUs the process may run on at start (the kernel's answer, not the shim's, which
 * reports a greenlet's own): COOP_HUBS=auto (0) makes a hub per CPU, and every hub's thread
 * runs on all of them. */
static cpu_set_t process_cpus;
static bool process_cpus_known;

void coop_sched_init(int hubs, struct coop_hub *first)
{
    CPU_ZERO(&process_cpus);
    process_cpus_known = coop_sys(SYS_sched_getaffinity, 0, sizeof process_cpus, &process_cpus) > 0;
    if (hubs <= 0)
        hubs = process_cpus_known ? CPU_COUNT(&process_cpus) : 1;
    regular_hubs = hubs < 1 ? 1 : hubs > COOP_MAX_REGULAR_HUBS ? COOP_MAX_REGULAR_HUBS : hubs;
    coop_hub_table[0] = first;
    atomic_store(&coop_hub_count, 1);
}

bool coop_sched_started(void) { return atomic_load_explicit(&started, memory_order_acquire); }

bool coop_process_cpus(cpu_set_t *out)
{
    if (process_cpus_known)
        *out = process_cpus;
    return process_cpus_known;
}

bool coop_is_hub_thread_id(pid_t tid)
{
    for (struct coop_hub *h = coop_hub_at(0); h != NULL; h = coop_hub_next(h))
        if (__atomic_load_n(&h->tid, __ATOMIC_RELAXED) == tid)
            return true;
    return false;
}

/* The program creates its first thread: the other hubs and the monitor start. */
void coop_sched_start(void)
{
    if (coop_sched_started())
        return;
    coop_lock(&start_lock);
    if (!atomic_load(&started)) {
        /* While it was the only OS thread, the shim let a set the program gave itself pin it
         * for real (it ran alone, where it asked); the hubs, its own thread included,
         * run on every CPU, the greenlet keeping its set for the shim to report. */
        if (process_cpus_known)
            coop_sys(SYS_sched_setaffinity, coop_hub_at(0)->tid, sizeof process_cpus, &process_cpus);
        coop_tls_set_multithreaded();
        for (int i = coop_hub_total(); i < regular_hubs; i++)
            if (start_hub(i, false) == NULL)
                break;
        coop_monitor_start();
        atomic_store_explicit(&started, true, memory_order_release);
    }
    coop_unlock(&start_lock);
}

int coop_sched_threads(void)
{
    int n = coop_hub_total() - 1;            /* hub 0 is the program's main thread */
    return n < 0 ? 0 : n;
}

void coop_sched_stats(struct coop_sched_stats *s)
{
    *s = (struct coop_sched_stats){ .hubs = coop_hub_total(), .regular = regular_hubs };
    s->spares_started = atomic_load(&spares_started);
    s->handoffs = atomic_load(&handoffs_total);
    for (int i = 0; i < s->hubs; i++) {
        struct coop_hub *h = coop_hub_table[i];
        s->steals += h->steals;
        s->stolen += h->stolen;
        if (i >= regular_hubs && usable(h))
            s->spares_running++;
    }
}

/* In a forked child only h's thread exists: h becomes the one hub, and the others start
 * again when the child creates a thread. Their sets and wake fds are the parent's: closed. */
void coop_sched_fork_child(struct coop_hub *h)
{
    int n = coop_hub_total();
    for (int i = 0; i < n; i++) {
        struct coop_hub *x = coop_hub_table[i];
        if (x != h)
            coop_hub_close_fds(x);
        coop_hub_table[i] = NULL;
        retire_requested[i] = false;
    }
    h->index = 0;
    h->spare = false;
    coop_hub_table[0] = h;
    atomic_store(&coop_hub_count, 1);
    memset(&h->runq, 0, sizeof h->runq);
    h->inbox_lock = (coop_lock_t){ 0 };
    h->inbox_head = h->inbox_tail = NULL;
    atomic_store(&h->inbox_nonempty, false);
    atomic_store(&h->state, HUB_RUNNING);
    atomic_store(&h->away, AWAY_NONE);
    atomic_store(&h->adoption_wanted, false);
    atomic_store(&h->adopter, NULL);
    memset(h->adopted, 0, sizeof h->adopted);
    global.lock = (coop_lock_t){ 0 };
    global.head = global.tail = NULL;
    atomic_store(&global.len, 0);
    start_lock = (coop_lock_t){ 0 };
    atomic_store(&started, false);
    atomic_store(&sleeping, 0);
    atomic_store(&notified, 0);
    atomic_store(&adoptions_pending, 0);
    atomic_store(&interrupts_pending, false);
    atomic_store(&dump_pending, false);
    atomic_store(&signal_pass_pending, false);
}
