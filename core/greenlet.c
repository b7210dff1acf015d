/*
 * Greenlet lifecycle. The top of a greenlet's stack holds its TLS area and thread control
 * block (tls.c), then the stack proper, as glibc lays out a thread's stack with struct
 * pthread and the static TLS at the top: an idle greenlet costs the pages its record, its
 * control block and its innermost frames touch. A stack from the pool (the default size)
 * holds the greenlet's record at its very top too, always at the same place. A stack of
 * another size the program asked for holds that much and no more (its TLS area counted in,
 * as glibc counts it), so that it overflows where a thread's would; its record, like that of
 * a stack the program supplies, comes from a store of records.
 *
 * A pthread_t is a record's address, and the program may keep one after the join: no record
 * memory is ever handed back, as glibc keeps a joined thread's descriptor for reuse, so a
 * stale pthread_t reads a record that says gone (or, reused, names a new greenlet, as
 * glibc's reused descriptors do).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "sanitizer.h"

#define HUB_STACK_SIZE (1024 * 1024)
#define RECORD_SPACE ((sizeof(struct coop_greenlet) + 63) & ~(size_t)63)
#define MIN_STACK_LEFT 2048          /* below the TLS area: at least a few frames */

static _Atomic uint64_t next_id = 1;
/* Each life of a record starts its wait generations at a base of its own: a waker that read
 * (g, gen) before g ended (a timer run on another hub) cannot end a wait of the greenlet that
 * reuses the record. 2^32 waits a life, 2^30 lives before the bases come round. */
static _Atomic uint64_t lives;
/* Program greenlets alive in the process, the main thread's original context included. */
_Atomic long coop_live_greenlets;
static void (*exit_hook)(struct coop_greenlet *g);
static void *(*start_hook)(void *(*fn)(void *), void *arg);

/* Every greenlet of the process, for dumps, interrupts and deadlock detection; linked and
 * unlinked under all_lock (never taken while a run queue, inbox or fd lock is held). */
static coop_lock_t all_lock;
static struct coop_greenlet *all_greenlets;

void coop_all_lock(void) { coop_lock(&all_lock); }
void coop_all_unlock(void) { coop_unlock(&all_lock); }
struct coop_greenlet *coop_all_first(void) { return all_greenlets; }

void coop_set_exit_hook(void (*hook)(struct coop_greenlet *g)) { exit_hook = hook; }
void coop_set_start_hook(void *(*start)(void *(*fn)(void *), void *arg)) { start_hook = start; }

static void link_all(struct coop_greenlet *g)
{
    coop_lock(&all_lock);
    g->all_prev = NULL;
    g->all_next = all_greenlets;
    if (all_greenlets != NULL)
        all_greenlets->all_prev = g;
    all_greenlets = g;
    coop_unlock(&all_lock);
}

static void unlink_all(struct coop_greenlet *g)
{
    coop_lock(&all_lock);
    if (g->all_prev != NULL)
        g->all_prev->all_next = g->all_next;
    else
        all_greenlets = g->all_next;
    if (g->all_next != NULL)
        g->all_next->all_prev = g->all_prev;
    coop_unlock(&all_lock);
}

/* Places the TLS area below top and readies g's context on what is left of the stack;
 * EINVAL when too little is left, as glibc refuses a stack smaller than its TLS needs. */
static int make_context(struct coop_greenlet *g, char *base, char *top)
{
    g->tp = coop_tls_place(top);
    char *end = coop_tls_area_bottom(g->tp);
    if (end < base + MIN_STACK_LEFT)
        return EINVAL;
    coop_context_make(&g->ctx, base, (size_t)(end - base), g);
    return 0;
}

static void fresh_record(struct coop_greenlet *g, const struct coop_stack *stack)
{
    memset(g, 0, sizeof *g);
    g->stack = *stack;
}

/* Places a record at the top of a fresh stack. */
static struct coop_greenlet *record_on_stack(struct coop_stack *stack)
{
    struct coop_greenlet *g = (struct coop_greenlet *)(stack->base + stack->size - RECORD_SPACE);
    coop_san_fresh_stack(stack->base, stack->size);
    fresh_record(g, stack);
    return g;
}

/* The store: released records kept for the next greenlets. */
static coop_lock_t store_lock;
static struct coop_greenlet *store_free;

static struct coop_greenlet *record_from_store(const struct coop_stack *stack)
{
    coop_lock(&store_lock);
    struct coop_greenlet *g = store_free;
    if (g != NULL)
        store_free = g->next_ready;
    coop_unlock(&store_lock);
    if (g == NULL && (g = aligned_alloc(64, RECORD_SPACE)) == NULL)    /* line-aligned, as on a stack */
        return NULL;
    fresh_record(g, stack);
    g->stored = true;
    return g;
}

static void record_to_store(struct coop_greenlet *g)
{
    g->magic = COOP_GREENLET_GONE;
    coop_lock(&store_lock);
    g->next_ready = store_free;
    store_free = g;
    coop_unlock(&store_lock);
}

static void init_record(struct coop_hub *h, struct coop_greenlet *g)
{
    g->magic = COOP_GREENLET_MAGIC;
    g->hub = h;
    g->id = atomic_fetch_add(&next_id, 1);
    g->wait_gen = (atomic_fetch_add_explicit(&lives, 1, memory_order_relaxed) & ((1ULL << 30) - 1)) << 32;
    g->state = G_RUNNING;
}

/* The contexts a hub starts with: the main thread's own (its main greenlet), the hub's
 * greenlet on a stack and TLS area of its own (hub 0, whose thread also runs the main
 * greenlet), or the hub's greenlet as the calling thread's own context (the runtime's hub
 * threads). */
struct coop_greenlet *coop_greenlet_adopt(struct coop_hub *h, enum coop_adopt_kind kind)
{
    struct coop_greenlet *g;
    if (kind == COOP_ADOPT_HUB_STACK) {
        struct coop_stack stack;
        /* Its TLS area on top, however large the program's static TLS. */
        size_t size = (HUB_STACK_SIZE + coop_tls_area_space() + 4095) & ~(size_t)4095;
        if (coop_stack_alloc(&stack, size, 4096) != 0)
            coop_panic("cannot map a hub stack");
        g = record_on_stack(&stack);
        if (make_context(g, stack.base, (char *)g) != 0)
            coop_panic("a hub stack of %zu bytes leaves too little room", size);
    } else {
        /* Never released, and not from the store: a spare hub started meanwhile must not
         * take a record a join has just marked gone (the program may still look at it). */
        g = kind == COOP_ADOPT_HUB_HERE ? &h->hub_record : aligned_alloc(64, RECORD_SPACE);
        if (g == NULL)
            coop_panic("out of memory");
        fresh_record(g, &(struct coop_stack){ .foreign = true });
        atomic_store(&g->on_cpu, true);      /* it is the running context */
    }
    g->is_hub = kind != COOP_ADOPT_MAIN;
    g->is_main = kind == COOP_ADOPT_MAIN;
    if (g->is_hub)
        strcpy(g->name, "hub");
    init_record(h, g);
    link_all(g);
    if (coop_tls_greenlet_init(g) != 0)
        coop_panic("out of memory");
    return g;
}

/* The record says gone from now on, wherever it lives. */
static void release_record(struct coop_greenlet *g)
{
    struct coop_stack stack = g->stack;
    if (g->stored)
        record_to_store(g);
    else
        g->magic = COOP_GREENLET_GONE;     /* the pool's stacks stay mapped */
    coop_stack_free(&stack);
}

static void release(struct coop_greenlet *g)
{
    unlink_all(g);
    coop_preempt_drop_taken_stacks(g);
    coop_tls_greenlet_free(g);
    release_record(g);
}

/* A greenlet's stack and record: the pool's for the default size, or the size asked for. A
 * pool stack's record is always at its top, whatever size was asked for. */
static struct coop_greenlet *new_record(const struct coop_spawn_attr *attr, char **top)
{
    struct coop_stack stack;
    struct coop_greenlet *g;
    if (attr->stack != NULL) {
        stack = (struct coop_stack){ .base = attr->stack, .size = attr->stack_size, .foreign = true };
        g = record_from_store(&stack);
        *top = stack.base + stack.size;
        return g;
    }
    size_t size = attr->stack_size ? attr->stack_size : coop_stack_default_size();
    if (coop_stack_alloc(&stack, size, attr->guard_size) != 0)
        return NULL;
    if (stack.pooled) {
        g = record_on_stack(&stack);
        *top = (char *)g;
        return g;
    }
    coop_san_fresh_stack(stack.base, stack.size);
    if ((g = record_from_store(&stack)) == NULL)
        coop_stack_free(&stack);
    *top = stack.base + size;
    return g;
}

int coop_spawn(struct coop_greenlet **out, void *(*fn)(void *), void *arg,
               const struct coop_spawn_attr *attr)
{
    struct coop_hub *h = coop_hub_current();
    struct coop_greenlet *g;
    /* Runtime threads make real threads; a thread that is no hub hands its greenlets to
     * the hubs. */
    if (coop_thread.runtime || coop_hub_total() == 0 || coop_hub_at(0) == NULL)
        return ENOSYS;
    coop_sched_start();
    if (h != NULL)
        coop_reap(h);
    char *top;
    if ((g = new_record(attr, &top)) == NULL)
        return EAGAIN;
    int err = make_context(g, g->stack.base, top);
    if (err != 0) {
        release_record(g);
        return err;
    }
    init_record(h != NULL ? h : coop_hub_at(0), g);
    if (coop_tls_greenlet_init(g) != 0) {
        release_record(g);
        return EAGAIN;
    }
    link_all(g);
    g->fn = fn;
    g->arg = arg;
    if (attr->detached)
        atomic_store(&g->ending, END_DETACHED);
    g->since = coop_stamp();

    long alive = atomic_fetch_add(&coop_live_greenlets, 1) + 1;
    if (coop_settings.stats)
        coop_stats_spawned(alive);
    if (coop_trace_enabled())
        coop_trace_spawn(g, h != NULL ? h->current : NULL);
    *out = g;
    if (attr->prepare != NULL)
        attr->prepare(g, attr->prepare_arg);
    coop_ready_new(h, g);
    return 0;
}

/* The first run of a created greenlet, on its own TLS. */
void coop_greenlet_run(struct coop_greenlet *g)
{
    coop_after_wait(g);
    errno = 0;
    coop_exit(start_hook != NULL ? start_hook(g->fn, g->arg) : g->fn(g->arg));
}

void coop_reap(struct coop_hub *h)
{
    while (h->dead != NULL) {
        struct coop_greenlet *g = h->dead;
        h->dead = g->next_ready;
        release(g);
    }
}

/* The main greenlet's record is glibc's of the initial thread, and a forked child's forker's
 * is glibc's of the child's thread: neither is freed when it ends. */
static bool released_at_end(const struct coop_greenlet *g) { return !g->is_main && !g->keeps_tid; }

/*
 * A finished greenlet's record goes when both have happened: it is off its stack, and it
 * is detached or joined. `ending` holds END_FINISHED, END_DETACHED and END_JOINING (a
 * joiner has claimed it) in one word, so each side learns what the other did from the one
 * atomic operation that publishes its own part. Off its stack is known by the context its
 * hub switched to next (coop_greenlet_left), which sets END_FINISHED and then unparks the
 * joiner by the record's address without touching the record again: a joiner may free it
 * at once. The joiner parks while END_FINISHED is not set, checked under the parking lot's
 * lock. (test_sched: join stress)
 */
static void finished(struct coop_hub *h, struct coop_greenlet *g)
{
    bool released = released_at_end(g);
    uintptr_t ending = atomic_fetch_or(&g->ending, END_FINISHED);
    if ((ending & END_DETACHED) && released) {
        g->next_ready = h->dead;       /* nobody else may free it now */
        h->dead = g;
    } else if (ending & END_JOINING) {
        coop_unpark(g, INT_MAX, ~0u);
    }
}

void coop_greenlet_left(struct coop_hub *h, struct coop_greenlet *prev)
{
    bool done = prev->state == G_FINISHED;
    atomic_store_explicit(&prev->on_cpu, false, memory_order_release);
    if (done)
        finished(h, prev);
}

void coop_exit(void *result)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    if (exit_hook != NULL)
        exit_hook(g);
    /* A forked child's forker's record is glibc's only one of the child's OS thread 0,
     * which goes on as a hub: glibc's setuid broadcast skips a record marked exiting. */
    if (g->keeps_tid)
        atomic_fetch_and(coop_greenlet_cancel_state(g), ~COOP_CANCEL_EXITING);
    coop_greenlet_unnumber(g);
    g->result = result;
    bool last = atomic_fetch_sub(&coop_live_greenlets, 1) == 1;
    coop_tls_robust_exit(g, last);
    if (last)
        exit(0);
    h = coop_thread.hub;          /* the hook may have waited, and come back on another hub */
    coop_gstate_set(g, G_FINISHED);
    coop_switch_away(h);
    coop_panic("a finished greenlet was resumed");
}

static bool running_still(const void *g)
{
    return !(atomic_load(&((const struct coop_greenlet *)g)->ending) & END_FINISHED);
}

/* Whether the calling greenlet's cancellation acts at its next cancellation point. */
static bool cancellation_acts(void)
{
    struct coop_greenlet *self = coop_self();
    int mask = COOP_CANCEL_DISABLED | COOP_CANCELED | COOP_CANCEL_EXITING;
    return self != NULL && (atomic_load(coop_greenlet_cancel_state(self)) & mask) == COOP_CANCELED;
}

/* Waits, as g's one joiner, until g is off its stack: 0, ETIMEDOUT, EBUSY (deadline 0,
 * before anything else, as glibc's try-join), EINVAL or EDEADLK (in glibc's order: a
 * detached greenlet is refused before oneself, oneself before one another joiner claimed).
 * The claim comes first, finished or not: a finished greenlet that detached itself waits
 * on its hub's dead list, and one claimed by a detach or another join is theirs to free.
 * The claim is kept through a nudge that the joiner's cancellation will not act on (one
 * left from a cancellation already unwinding, whose cleanup handler joins), as glibc keeps
 * joinid through a spurious wake: let go, a detach or the end and reap of g could come
 * before the claim was made again. Greenlets park; other threads sleep in the parking
 * lot's futex. */
static int join_wait(struct coop_greenlet *g, int64_t deadline)
{
    uintptr_t ending = atomic_load(&g->ending);
    do {
        if (!(ending & END_FINISHED) && deadline == 0)
            return EBUSY;
        if (ending & END_DETACHED)
            return EINVAL;
        if (g == coop_self())
            return EDEADLK;
        if (ending & END_JOINING)
            return EINVAL;
    } while (!atomic_compare_exchange_weak(&g->ending, &ending, ending | END_JOINING));
    while (running_still(g)) {
        int r = coop_park_as(g, running_still, g, ~0u, deadline, WAIT_JOIN, NULL);
        if (r == COOP_NUDGED && !cancellation_acts())
            continue;
        /* A joiner that gives up, or that its cancellation ends, leaves g joinable. */
        if ((r == ETIMEDOUT || r == COOP_NUDGED) && running_still(g)) {
            atomic_fetch_and(&g->ending, ~END_JOINING);
            return r == COOP_NUDGED ? EINTR : ETIMEDOUT;
        }
    }
    return 0;
}

int coop_join(struct coop_greenlet *g, void **result, int64_t deadline)
{
    int err = join_wait(g, deadline);
    if (err != 0)
        return err;
    if (result != NULL)
        *result = g->result;
    if (released_at_end(g))
        release(g);
    return 0;
}

/* A detach while a joiner waits does nothing, as glibc's: the joiner takes the result and
 * the record (stunnel's threads detach themselves as they end, while its main thread may
 * already be joining them at shutdown; marked detached, the record went with no wake). */
int coop_detach(struct coop_greenlet *g)
{
    uintptr_t ending = atomic_load(&g->ending);
    do {
        if (ending & END_DETACHED)
            return EINVAL;
        if (ending & END_JOINING)
            return 0;
    } while (!atomic_compare_exchange_weak(&g->ending, &ending, ending | END_DETACHED));
    if ((ending & END_FINISHED) && released_at_end(g))
        release(g);
    return 0;
}

void **coop_greenlet_slot(struct coop_greenlet *g) { return &g->slot; }
void **coop_greenlet_held(struct coop_greenlet *g) { return &g->held; }
void **coop_greenlet_signals(struct coop_greenlet *g) { return &g->signals; }
uint32_t coop_greenlet_resumes(const struct coop_greenlet *g) { return g->resumes; }

void *coop_greenlet_take_signals(struct coop_greenlet *g)
{
    coop_lock(&all_lock);
    void *signals = __atomic_exchange_n(&g->signals, NULL, __ATOMIC_ACQ_REL);   /* read by senders: state_of */
    coop_unlock(&all_lock);
    return signals;
}
uint64_t coop_greenlet_id(const struct coop_greenlet *g) { return g->id; }
bool coop_greenlet_is_main(const struct coop_greenlet *g) { return g->is_main; }
bool coop_greenlet_leads_process(const struct coop_greenlet *g) { return g == coop_main_greenlet; }
struct coop_greenlet *coop_process_leader(void) { return coop_main_greenlet; }
bool coop_greenlet_finished(const struct coop_greenlet *g) { return g->state == G_FINISHED; }
bool coop_greenlet_detached(const struct coop_greenlet *g) { return atomic_load(&g->ending) & END_DETACHED; }
uintptr_t coop_greenlet_os_thread(const struct coop_greenlet *g) { return g->hub->os_thread; }

/* glibc's pthread_t is the address of its struct pthread, at the thread pointer. */
uintptr_t coop_greenlet_thread_record(const struct coop_greenlet *g) { return g->tp; }
const char *coop_greenlet_name(const struct coop_greenlet *g) { return g->named ? g->name : g->inherited_name; }

void coop_greenlet_set_name(struct coop_greenlet *g, const char *name)
{
    strncpy(g->name, name, sizeof g->name - 1);
    g->name[sizeof g->name - 1] = '\0';
    g->named = true;
    if (coop_trace_enabled())
        coop_trace_name(g);
}

void coop_greenlet_inherit_name(struct coop_greenlet *g, const char *name)
{
    strncpy(g->inherited_name, name, sizeof g->inherited_name - 1);
    g->inherited_name[sizeof g->inherited_name - 1] = '\0';
}

size_t coop_greenlet_guard_size(const struct coop_greenlet *g) { return g->stack.guard; }
struct coop_sched *coop_greenlet_sched(struct coop_greenlet *g) { return &g->sched; }

void coop_greenlet_stack(const struct coop_greenlet *g, void **base, size_t *size)
{
    *base = g->stack.base;
    *size = g->stack.size;
}

bool coop_is_greenlet(const void *p)
{
    return p != NULL && *(const uint64_t *)p == COOP_GREENLET_MAGIC;
}

bool coop_greenlet_gone(const void *p)
{
    if (p == NULL)
        return false;
    uint64_t magic = *(const uint64_t *)p;
    /* A stack the pool gave back to the kernel reads as zeros. */
    return magic == COOP_GREENLET_GONE || (magic != COOP_GREENLET_MAGIC && coop_stack_in_pool(p));
}

/* In a forked child only self lives on: the others' records are forgotten (their stacks
 * are copies the child never runs), self becomes the main greenlet, and its end ends the
 * process. */
void coop_greenlet_fork_child(struct coop_hub *h, struct coop_greenlet *self)
{
    /* Locks another hub's thread may have held at the fork: it is not in the child. */
    all_lock = (coop_lock_t){ 0 };
    store_lock = (coop_lock_t){ 0 };
    all_greenlets = NULL;
    link_all(self);
    link_all(h->hub_g);
    h->dead = NULL;
    atomic_store(&self->ending, 0);
    coop_main_greenlet = self;
    atomic_store(&coop_live_greenlets, 1);
}
