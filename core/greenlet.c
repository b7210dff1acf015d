/*
 * Greenlet lifecycle. The top of a greenlet's stack holds its record, then its TLS area and
 * thread control block (tls.c), then the stack proper, as glibc lays out a thread's stack
 * with struct pthread and the static TLS at the top: an idle greenlet costs the pages its
 * record, its control block and its innermost frames touch.
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
/* Program greenlets alive in the process, the main thread's original context included. */
_Atomic long coop_live_greenlets;
static void (*exit_hook)(struct coop_greenlet *g);

/* Every greenlet of the process, for dumps, interrupts and deadlock detection; linked and
 * unlinked under all_lock (never taken while a run queue, inbox or fd lock is held). */
static coop_lock_t all_lock;
static struct coop_greenlet *all_greenlets;

void coop_all_lock(void) { coop_lock(&all_lock); }
void coop_all_unlock(void) { coop_unlock(&all_lock); }
struct coop_greenlet *coop_all_first(void) { return all_greenlets; }

void coop_set_exit_hook(void (*hook)(struct coop_greenlet *g)) { exit_hook = hook; }

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
static int make_context(struct coop_greenlet *g, char *base, char *top, bool own_tls)
{
    char *end = top;
    if (own_tls) {
        g->tp = coop_tls_place(top);
        end = coop_tls_area_bottom(g->tp);
    }
    if (end < base + MIN_STACK_LEFT)
        return EINVAL;
    coop_context_make(&g->ctx, base, (size_t)(end - base), g);
    return 0;
}

/* Places a record at the top of a fresh stack. */
static struct coop_greenlet *record_on_stack(struct coop_stack *stack)
{
    struct coop_greenlet *g = (struct coop_greenlet *)(stack->base + stack->size - RECORD_SPACE);
    coop_san_fresh_stack(stack->base, stack->size);
    memset(g, 0, sizeof *g);
    g->stack = *stack;
    return g;
}

static void init_record(struct coop_hub *h, struct coop_greenlet *g)
{
    g->magic = COOP_GREENLET_MAGIC;
    g->hub = h;
    g->id = atomic_fetch_add(&next_id, 1);
    g->heap_index = -1;
    g->state = G_RUNNING;
}

/* The contexts a hub starts with: the main thread's own (its main greenlet), the hub's
 * greenlet on a stack of its own (hub 0, which shares its thread with the main greenlet),
 * or the hub's greenlet as the calling thread's own context (the runtime's hub threads). */
struct coop_greenlet *coop_greenlet_adopt(struct coop_hub *h, enum coop_adopt_kind kind)
{
    struct coop_greenlet *g;
    if (kind == COOP_ADOPT_HUB_STACK) {
        struct coop_stack stack;
        if (coop_stack_alloc(&stack, HUB_STACK_SIZE, 4096) != 0)
            coop_panic("cannot map a hub stack");
        g = record_on_stack(&stack);
        make_context(g, stack.base, (char *)g, false);
    } else {
        g = calloc(1, sizeof *g);
        if (g == NULL)
            coop_panic("out of memory");
        g->heap_struct = true;
        g->stack.foreign = true;
        atomic_store(&g->on_cpu, true);      /* it is the running context */
    }
    g->is_hub = kind != COOP_ADOPT_MAIN;
    g->is_main = kind == COOP_ADOPT_MAIN;
    if (g->is_hub)
        strcpy(g->name, "hub");
    /* A context on the OS thread's own control block runs on that thread only. */
    g->pinned = h;
    init_record(h, g);
    link_all(g);
    if (coop_tls_greenlet_init(g) != 0)
        coop_panic("out of memory");
    return g;
}

static void release(struct coop_greenlet *g)
{
    unlink_all(g);
    coop_tls_greenlet_free(g);
    g->magic = 0;
    if (g->heap_struct) {
        struct coop_stack stack = g->stack;
        free(g);
        coop_stack_free(&stack);
    } else {
        struct coop_stack stack = g->stack;   /* the record lives on it */
        coop_stack_free(&stack);
    }
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
    if (attr->stack != NULL) {
        g = calloc(1, sizeof *g);
        if (g == NULL)
            return EAGAIN;
        g->heap_struct = true;
        g->stack = (struct coop_stack){ .base = attr->stack, .size = attr->stack_size, .foreign = true };
        top = (char *)attr->stack + attr->stack_size;
    } else {
        size_t size = attr->stack_size ? attr->stack_size + RECORD_SPACE : coop_stack_default_size();
        struct coop_stack stack;
        if (coop_stack_alloc(&stack, size, attr->guard_size) != 0)
            return EAGAIN;
        g = record_on_stack(&stack);
        top = (char *)g;
    }
    int err = make_context(g, g->stack.base, top, true);
    if (err != 0) {
        if (g->heap_struct)
            free(g);
        else
            coop_stack_free(&g->stack);
        return err;
    }
    init_record(h != NULL ? h : coop_hub_at(0), g);
    if (coop_tls_greenlet_init(g) != 0) {
        g->magic = 0;
        if (g->heap_struct)
            free(g);
        else
            coop_stack_free(&g->stack);
        return EAGAIN;
    }
    link_all(g);
    g->fn = fn;
    g->arg = arg;
    if (attr->detached)
        atomic_store(&g->ending, END_DETACHED);
    g->since = coop_coarse_now();

    long alive = atomic_fetch_add(&coop_live_greenlets, 1) + 1;
    if (coop_settings.stats)
        coop_stats_spawned(alive);
    *out = g;
    coop_ready_new(h, g);
    return 0;
}

/* The first run of a created greenlet, on its own TLS. */
void coop_greenlet_run(struct coop_greenlet *g)
{
    coop_tls_start(g);
    errno = 0;
    coop_exit(g->fn(g->arg));
}

void coop_reap(struct coop_hub *h)
{
    while (h->dead != NULL) {
        struct coop_greenlet *g = h->dead;
        h->dead = g->next_ready;
        release(g);
    }
}

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
    bool is_main = g->is_main;
    uintptr_t ending = atomic_fetch_or(&g->ending, END_FINISHED);
    if ((ending & END_DETACHED) && !is_main) {
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
    g->result = result;
    if (atomic_fetch_sub(&coop_live_greenlets, 1) == 1)
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

/* Waits, as g's one joiner, until g is off its stack: 0, ETIMEDOUT, EBUSY (deadline 0),
 * EINVAL. Greenlets park; other threads sleep in the parking lot's futex. */
static int join_wait(struct coop_greenlet *g, int64_t deadline)
{
    uintptr_t ending = atomic_load(&g->ending);
    do {
        if (ending & END_FINISHED)
            return 0;
        if (ending & (END_DETACHED | END_JOINING))
            return EINVAL;
        if (deadline == 0)
            return EBUSY;
    } while (!atomic_compare_exchange_weak(&g->ending, &ending, ending | END_JOINING));
    while (running_still(g)) {
        int r = coop_park_as(g, running_still, g, ~0u, deadline, WAIT_JOIN, NULL);
        if (r == ETIMEDOUT && running_still(g)) {
            atomic_fetch_and(&g->ending, ~END_JOINING);
            return ETIMEDOUT;
        }
    }
    return 0;
}

int coop_join(struct coop_greenlet *g, void **result, int64_t deadline)
{
    if (g == coop_self())
        return EDEADLK;
    int err = join_wait(g, deadline);
    if (err != 0)
        return err;
    if (result != NULL)
        *result = g->result;
    if (!g->is_main)
        release(g);
    return 0;
}

int coop_detach(struct coop_greenlet *g)
{
    uintptr_t ending = atomic_fetch_or(&g->ending, END_DETACHED);
    if (ending & END_DETACHED)
        return EINVAL;
    if ((ending & END_FINISHED) && !g->is_main)
        release(g);
    return 0;
}

void **coop_greenlet_slot(struct coop_greenlet *g) { return &g->slot; }
void **coop_greenlet_held(struct coop_greenlet *g) { return &g->held; }
uint64_t coop_greenlet_id(const struct coop_greenlet *g) { return g->id; }
bool coop_greenlet_is_main(const struct coop_greenlet *g) { return g->is_main; }
uintptr_t coop_greenlet_os_thread(const struct coop_greenlet *g) { return g->hub->os_thread; }
const char *coop_greenlet_name(const struct coop_greenlet *g) { return g->name; }

void coop_greenlet_set_name(struct coop_greenlet *g, const char *name)
{
    strncpy(g->name, name, sizeof g->name - 1);
    g->name[sizeof g->name - 1] = '\0';
}

void coop_greenlet_stack(const struct coop_greenlet *g, void **base, size_t *size)
{
    *base = g->stack.base;
    *size = g->stack.size;
}

bool coop_is_greenlet(const void *p)
{
    return p != NULL && *(const uint64_t *)p == COOP_GREENLET_MAGIC;
}

/* In a forked child only self lives on: the others' records are forgotten (their stacks
 * are copies the child never runs), self becomes the main greenlet, pinned to the hub when
 * it runs on the thread's own control block, and its end ends the process. */
void coop_greenlet_fork_child(struct coop_hub *h, struct coop_greenlet *self)
{
    all_lock = (coop_lock_t){ 0 };
    all_greenlets = NULL;
    link_all(self);
    link_all(h->hub_g);
    h->dead = NULL;
    self->pinned = self->own_tls ? NULL : h;
    atomic_store(&self->ending, 0);
    coop_main_greenlet = self;
    atomic_store(&coop_live_greenlets, 1);
}
