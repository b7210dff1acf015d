/*
 * Deadlines of waiting greenlets, in a binary heap per hub. The hub's poll waits no longer
 * than the earliest (hub.c), to the nanosecond: libuv's timers count whole milliseconds of
 * a coarse clock, and a program's usleep(100) must not last a millisecond. Greenlets carry
 * no libuv handle of their own, so a record needs no asynchronous close before its memory
 * is reused.
 *
 * A greenlet's deadline goes into the heap of the hub it waits on; it may be woken, and
 * take its deadline out, on another hub, and a hub that adopts one that is away moves the
 * away hub's deadlines into its own heap (sched.c). So each heap has a lock: g->timer_hub,
 * deadline and heap_index are written under the lock of the heap that holds g. A timed-out
 * greenlet is woken with the generation of the wait its deadline belongs to, read under
 * the lock: its wait cannot end, nor a new one start, while its deadline is still in a
 * heap, because it takes the deadline out (coop_suspend) before it returns from the wait.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static void place(struct coop_hub *h, int i, struct coop_greenlet *g)
{
    h->heap[i] = g;
    g->heap_index = i;
}

static void sift_up(struct coop_hub *h, int i)
{
    struct coop_greenlet *g = h->heap[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (h->heap[parent]->deadline <= g->deadline)
            break;
        place(h, i, h->heap[parent]);
        i = parent;
    }
    place(h, i, g);
}

static void sift_down(struct coop_hub *h, int i)
{
    struct coop_greenlet *g = h->heap[i];
    for (;;) {
        int child = 2 * i + 1;
        if (child >= h->heap_len)
            break;
        if (child + 1 < h->heap_len && h->heap[child + 1]->deadline < h->heap[child]->deadline)
            child++;
        if (g->deadline <= h->heap[child]->deadline)
            break;
        place(h, i, h->heap[child]);
        i = child;
    }
    place(h, i, g);
}

static void add_locked(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline)
{
    if (h->heap_len == h->heap_cap) {
        int cap = h->heap_cap ? h->heap_cap * 2 : 64;
        struct coop_greenlet **heap = realloc(h->heap, (size_t)cap * sizeof *heap);
        if (heap == NULL)
            coop_panic("out of memory");
        h->heap = heap;
        h->heap_cap = cap;
    }
    g->deadline = deadline;
    __atomic_store_n(&g->timer_hub, h, __ATOMIC_RELAXED);
    place(h, h->heap_len++, g);
    sift_up(h, g->heap_index);
}

static void remove_locked(struct coop_hub *h, struct coop_greenlet *g)
{
    int i = g->heap_index;
    g->heap_index = -1;
    __atomic_store_n(&g->timer_hub, NULL, __ATOMIC_RELAXED);
    struct coop_greenlet *last = h->heap[--h->heap_len];
    if (i < h->heap_len) {
        place(h, i, last);
        sift_up(h, i);
        sift_down(h, last->heap_index);
    }
}

void coop_timer_add(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline)
{
    coop_lock(&h->timer_lock);
    add_locked(h, g, deadline);
    coop_unlock(&h->timer_lock);
}

/* g's heap may change under us (an adopter moving it): lock, then check it is still there. */
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
    int64_t next = h->heap_len > 0 ? h->heap[0]->deadline : COOP_NO_DEADLINE;
    coop_unlock(&h->timer_lock);
    return next;
}

#define EXPIRED_BATCH 64

void coop_timer_run(struct coop_hub *h)
{
    if (__atomic_load_n(&h->heap_len, __ATOMIC_RELAXED) == 0)
        return;
    int64_t now = coop_now();
    for (;;) {
        struct { struct coop_greenlet *g; uint64_t gen; } expired[EXPIRED_BATCH];
        int n = 0;
        coop_lock(&h->timer_lock);
        while (n < EXPIRED_BATCH && h->heap_len > 0 && h->heap[0]->deadline <= now) {
            struct coop_greenlet *g = h->heap[0];
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
            return;
    }
}

void coop_timer_move(struct coop_hub *from, struct coop_hub *to)
{
    if (from == to || __atomic_load_n(&from->heap_len, __ATOMIC_RELAXED) == 0)
        return;
    struct coop_hub *first = from->index < to->index ? from : to;
    struct coop_hub *second = first == from ? to : from;
    coop_lock(&first->timer_lock);
    coop_lock(&second->timer_lock);
    while (from->heap_len > 0) {
        struct coop_greenlet *g = from->heap[from->heap_len - 1];
        int64_t deadline = g->deadline;
        remove_locked(from, g);
        add_locked(to, g, deadline);
    }
    coop_unlock(&second->timer_lock);
    coop_unlock(&first->timer_lock);
}
