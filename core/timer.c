/*
 * Deadlines of waiting greenlets, in a heap per hub. The hub's poll waits no longer
 * than the earliest (hub.c), to the nanosecond: libuv's timers count whole milliseconds of
 * a coarse clock, and a program's usleep(100) must not last a millisecond. Greenlets carry
 * no libuv handle of their own, so a record needs no asynchronous close before its memory
 * is reused.
 *
 * The heap is a pairing heap linked through the greenlets' own records: adding a deadline
 * allocates nothing, so a wait cannot fail for want of memory. (A growing array could: out
 * of address space under ulimit -v, a preempted greenlet's requeue found no memory and the
 * runtime aborted.) Adding is O(1), taking out O(log n) amortized.
 *
 * A greenlet's deadline goes into the heap of the hub it waits on; it may be woken, and
 * take its deadline out, on another hub, and a hub that adopts one that is away moves the
 * away hub's deadlines into its own heap (sched.c). So each heap has a lock: g->timer_hub,
 * deadline and the heap_ links are written under the lock of the heap that holds g. A
 * timed-out greenlet is woken with the generation of the wait its deadline belongs to, read
 * under the lock: its wait cannot end, nor a new one start, while its deadline is still in
 * a heap, because it takes the deadline out (coop_suspend) before it returns from the wait.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

/* Two roots (no parent, no sibling) become one: the later one the first child of the other. */
static struct coop_greenlet *meld(struct coop_greenlet *a, struct coop_greenlet *b)
{
    if (a == NULL)
        return b;
    if (b == NULL)
        return a;
    if (b->deadline < a->deadline) {
        struct coop_greenlet *t = a;
        a = b;
        b = t;
    }
    b->heap_prev = a;
    b->heap_next = a->heap_child;
    if (a->heap_child != NULL)
        a->heap_child->heap_prev = b;
    a->heap_child = b;
    return a;
}

/* The siblings from first on become one root: melded in pairs left to right, then the
 * pairs right to left (the two passes that give the amortized bound), without recursion. */
static struct coop_greenlet *merge_pairs(struct coop_greenlet *first)
{
    struct coop_greenlet *pairs = NULL;       /* the melded pairs, last first, by heap_next */
    while (first != NULL) {
        struct coop_greenlet *a = first, *b = a->heap_next;
        first = b != NULL ? b->heap_next : NULL;
        a->heap_prev = a->heap_next = NULL;
        if (b != NULL)
            b->heap_prev = b->heap_next = NULL;
        a = meld(a, b);
        a->heap_next = pairs;
        pairs = a;
    }
    struct coop_greenlet *root = NULL;
    while (pairs != NULL) {
        struct coop_greenlet *a = pairs;
        pairs = a->heap_next;
        a->heap_next = NULL;
        root = meld(root, a);
    }
    return root;
}

static void add_locked(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline)
{
    g->deadline = deadline;
    g->heap_child = g->heap_next = g->heap_prev = NULL;
    __atomic_store_n(&g->timer_hub, h, __ATOMIC_RELAXED);
    h->heap = meld(h->heap, g);
    h->heap_len++;
}

/* g out of h's heap; g->timer_hub is the caller's to set. */
static void unlink_locked(struct coop_hub *h, struct coop_greenlet *g)
{
    if (g == h->heap) {
        h->heap = merge_pairs(g->heap_child);
    } else {
        /* Out of its parent's list of children, then its own children back in. */
        if (g->heap_prev->heap_child == g)
            g->heap_prev->heap_child = g->heap_next;
        else
            g->heap_prev->heap_next = g->heap_next;
        if (g->heap_next != NULL)
            g->heap_next->heap_prev = g->heap_prev;
        h->heap = meld(h->heap, merge_pairs(g->heap_child));
    }
    g->heap_child = g->heap_next = g->heap_prev = NULL;
    h->heap_len--;
}

static void remove_locked(struct coop_hub *h, struct coop_greenlet *g)
{
    unlink_locked(h, g);
    __atomic_store_n(&g->timer_hub, NULL, __ATOMIC_RELAXED);
}

void coop_timer_add(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline)
{
    coop_lock(&h->timer_lock);
    add_locked(h, g, deadline);
    coop_unlock(&h->timer_lock);
}

/* g's heap may change under us (an adopter moving it): lock, then check it is still there.
 * NULL, read without a lock, means in no heap: a move takes g from one heap to the other
 * without ever storing NULL, or g would return from its wait and be put back afterwards
 * (then linked twice by its next wait). */
void coop_timer_remove(struct coop_greenlet *g)
{
    for (;;) {
        struct coop_hub *h = __atomic_load_n(&g->timer_hub, __ATOMIC_ACQUIRE);
        if (h == NULL)
            return;
        coop_lock(&h->timer_lock);
        bool here = g->timer_hub == h;
        if (here)
            remove_locked(h, g);
        coop_unlock(&h->timer_lock);
        if (here)
            return;
    }
}

int64_t coop_timer_next(struct coop_hub *h)
{
    coop_lock(&h->timer_lock);
    int64_t next = h->heap != NULL ? h->heap->deadline : COOP_NO_DEADLINE;
    coop_unlock(&h->timer_lock);
    return next;
}

#define EXPIRED_BATCH 64

void coop_timer_run(struct coop_hub *h)
{
    if (__atomic_load_n(&h->heap_len, __ATOMIC_RELAXED) == 0)
        return;
    int64_t now = coop_now();
    h->running_timers = true;        /* the first one woken runs next (sched.c) */
    for (;;) {
        struct { struct coop_greenlet *g; uint64_t gen; } expired[EXPIRED_BATCH];
        int n = 0;
        coop_lock(&h->timer_lock);
        while (n < EXPIRED_BATCH && h->heap != NULL && h->heap->deadline <= now) {
            struct coop_greenlet *g = h->heap;
            remove_locked(h, g);
            expired[n].g = g;
            /* The wait it was added for: g cannot start another before this one ends. */
            expired[n].gen = g->wait_gen;
            n++;
        }
        coop_unlock(&h->timer_lock);
        /* Woken outside the lock: the wake may take the locks of run queues. */
        for (int i = 0; i < n; i++)
            coop_wake(expired[i].g, expired[i].gen, ETIMEDOUT);
        if (n < EXPIRED_BATCH)
            break;
    }
    h->running_timers = false;
}

void coop_timer_move(struct coop_hub *from, struct coop_hub *to)
{
    if (from == to || __atomic_load_n(&from->heap_len, __ATOMIC_RELAXED) == 0)
        return;
    struct coop_hub *first = from->index < to->index ? from : to;
    struct coop_hub *second = first == from ? to : from;
    coop_lock(&first->timer_lock);
    coop_lock(&second->timer_lock);
    while (from->heap != NULL) {
        struct coop_greenlet *g = from->heap;
        int64_t deadline = g->deadline;
        unlink_locked(from, g);     /* timer_hub never NULL meanwhile: see coop_timer_remove */
        add_locked(to, g, deadline);
    }
    coop_unlock(&second->timer_lock);
    coop_unlock(&first->timer_lock);
}
