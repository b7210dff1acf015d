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
static void *(*start_hook)(void *(*fn)(void *), void *arg);

void coop_set_exit_hook(void (*hook)(struct coop_greenlet *g)) { exit_hook = hook; }
void coop_set_start_hook(void *(*start)(void *(*fn)(void *), void *arg)) { start_hook = start; }

static void link_all(struct coop_hub *h, struct coop_greenlet *g)
{
    g->all_next = h->all;
    if (h->all != NULL)
        h->all->all_prev = g;
    h->all = g;
}

static void unlink_all(struct coop_hub *h, struct coop_greenlet *g)
{
    if (g->all_prev != NULL)
        g->all_prev->all_next = g->all_next;
    else
        h->all = g->all_next;
    if (g->all_next != NULL)
        g->all_next->all_prev = g->all_prev;
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
    coop_context_make(&g->ctx, base, (size_t)(end - base));
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
    if (g == NULL && (g = malloc(sizeof *g)) == NULL)
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
    g->heap_index = -1;
    g->state = G_RUNNING;
    link_all(h, g);
}

struct coop_greenlet *coop_greenlet_adopt(struct coop_hub *h, bool is_hub)
{
    struct coop_greenlet *g;
    if (is_hub) {
        struct coop_stack stack;
        if (coop_stack_alloc(&stack, HUB_STACK_SIZE, 4096) != 0)
            coop_panic("cannot map a hub stack");
        g = record_on_stack(&stack);
        make_context(g, stack.base, (char *)g, false);
        g->is_hub = true;
        strcpy(g->name, "hub");
    } else {
        g = record_from_store(&(struct coop_stack){ .foreign = true });
        if (g == NULL)
            coop_panic("out of memory");
        g->is_main = true;
    }

    init_record(h, g);
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

static void release(struct coop_hub *h, struct coop_greenlet *g)
{
    unlink_all(h, g);
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
    if (h == NULL)
        return ENOSYS;
    coop_reap(h);
    char *top;
    if ((g = new_record(attr, &top)) == NULL)
        return EAGAIN;
    int err = make_context(g, g->stack.base, top, true);
    if (err != 0) {
        release_record(g);
        return err;
    }
    init_record(h, g);
    if (coop_tls_greenlet_init(g) != 0) {
        release(h, g);
        return EAGAIN;
    }
    g->fn = fn;
    g->arg = arg;
    g->detached = attr->detached;
    g->since = coop_coarse_now();

    long alive = atomic_fetch_add(&coop_live_greenlets, 1) + 1;
    if (coop_settings.stats)
        coop_stats_spawned(alive);
    coop_monitor_greenlet_created();
    if (coop_trace_enabled())
        coop_trace_spawn(g, h->current);
    coop_ready(h, g);
    *out = g;
    return 0;
}

void coop_greenlet_main(void)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    coop_san_arrive(NULL, h->switched_from);
    coop_arrive(g);

    if (g->is_hub) {
        void coop_hub_main(struct coop_hub *h) __attribute__((noreturn));
        coop_hub_main(h);
    }
    coop_tls_start(g);
    coop_after_wait(g);
    errno = 0;
    coop_exit(start_hook != NULL ? start_hook(g->fn, g->arg) : g->fn(g->arg));
}

/* A greenlet joined from another OS thread may still be on its way off its stack on its own
 * hub's thread: that hub frees it, at its next reap. */
static void release_elsewhere(struct coop_greenlet *g)
{
    struct coop_hub *h = g->hub;
    g->next_ready = atomic_load(&h->joined_elsewhere);
    while (!atomic_compare_exchange_weak(&h->joined_elsewhere, &g->next_ready, g))
        ;
    coop_hub_kick(h);
}

void coop_reap(struct coop_hub *h)
{
    if (atomic_load_explicit(&h->joined_elsewhere, memory_order_relaxed) != NULL) {
        struct coop_greenlet *g = atomic_exchange(&h->joined_elsewhere, NULL);
        while (g != NULL) {
            struct coop_greenlet *next = g->next_ready;
            release(h, g);
            g = next;
        }
    }
    while (h->dead != NULL) {
        struct coop_greenlet *g = h->dead;
        h->dead = g->next_ready;
        release(h, g);
    }
}

void coop_exit(void *result)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    if (exit_hook != NULL)
        exit_hook(g);
    coop_greenlet_unnumber(g);
    g->result = result;
    g->state = G_FINISHED;
    if (atomic_fetch_sub(&coop_live_greenlets, 1) == 1)
        exit(0);
    if (g->joiner != NULL)
        coop_wake(g->joiner, g->joiner->wait_gen, 0);
    if (g->detached && !g->is_main) {
        g->next_ready = h->dead;
        h->dead = g;
    }
    coop_switch_away(h);
    coop_panic("a finished greenlet was resumed");
}

/* A thread that is no greenlet (coop's own, or one that existed before coop loaded)
 * joining a greenlet: it cannot park, so it naps. */
static int join_from_thread(struct coop_greenlet *g, int64_t deadline)
{
    while (g->state != G_FINISHED) {
        if (deadline == 0)
            return EBUSY;
        if (coop_now() >= deadline)
            return ETIMEDOUT;
        struct timespec nap = { 0, 1000000 };
        coop_sys(SYS_nanosleep, &nap, NULL, 0);
    }
    return 0;
}

int coop_join(struct coop_greenlet *g, void **result, int64_t deadline)
{
    struct coop_greenlet *self = coop_self();
    if (g == self)
        return EDEADLK;
    if (g->detached || (g->joiner != NULL && g->joiner != self))
        return EINVAL;
    int err = self == NULL ? join_from_thread(g, deadline) : 0;
    if (err != 0)
        return err;
    while (g->state != G_FINISHED) {
        if (deadline == 0)
            return EBUSY;
        g->joiner = self;
        coop_prepare_wait(self, WAIT_JOIN, g);
        int reason = coop_suspend(deadline);
        coop_after_wait(self);
        if ((reason == ETIMEDOUT || reason == COOP_NUDGED) && g->state != G_FINISHED) {
            g->joiner = NULL;      /* a joiner cancelled meanwhile leaves g joinable */
            return reason == COOP_NUDGED ? EINTR : ETIMEDOUT;
        }
    }
    if (result != NULL)
        *result = g->result;
    if (g->is_main)
        return 0;
    if (coop_thread.hub == g->hub)
        release(g->hub, g);
    else
        release_elsewhere(g);
    return 0;
}

int coop_detach(struct coop_greenlet *g)
{
    if (g->detached)
        return EINVAL;
    g->detached = true;
    if (g->state == G_FINISHED && !g->is_main) {
        g->next_ready = g->hub->dead;
        g->hub->dead = g;
    }
    return 0;
}

void **coop_greenlet_slot(struct coop_greenlet *g) { return &g->slot; }
void **coop_greenlet_held(struct coop_greenlet *g) { return &g->held; }
void **coop_greenlet_signals(struct coop_greenlet *g) { return &g->signals; }
uint64_t coop_greenlet_id(const struct coop_greenlet *g) { return g->id; }
bool coop_greenlet_is_main(const struct coop_greenlet *g) { return g->is_main; }
bool coop_greenlet_finished(const struct coop_greenlet *g) { return g->state == G_FINISHED; }
bool coop_greenlet_detached(const struct coop_greenlet *g) { return g->detached; }
uintptr_t coop_greenlet_os_thread(const struct coop_greenlet *g) { return g->hub->os_thread; }
const char *coop_greenlet_name(const struct coop_greenlet *g) { return g->name; }

void coop_greenlet_set_name(struct coop_greenlet *g, const char *name)
{
    strncpy(g->name, name, sizeof g->name - 1);
    g->name[sizeof g->name - 1] = '\0';
    if (coop_trace_enabled())
        coop_trace_name(g);
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
 * are copies the child never runs), self becomes the main greenlet, and its end ends
 * the process. */
void coop_greenlet_fork_child(struct coop_hub *h, struct coop_greenlet *self)
{
    h->all = NULL;
    h->dead = NULL;
    self->all_prev = self->all_next = NULL;
    link_all(h, self);
    h->hub_g->all_prev = h->hub_g->all_next = NULL;
    link_all(h, h->hub_g);
    h->main_g = self;
    atomic_store(&coop_live_greenlets, 1);
}
