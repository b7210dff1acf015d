/*
 * Deadlines of waiting greenlets, in a binary heap per hub. The hub's poll waits no longer
 * than the earliest (hub.c), to the nanosecond: libuv's timers count whole milliseconds of
 * a coarse clock, and a program's usleep(100) must not last a millisecond. Greenlets carry
 * no libuv handle of their own, so a record needs no asynchronous close before its memory
 * is reused.
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

void coop_timer_add(struct coop_hub *h, struct coop_greenlet *g, int64_t deadline)
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
    place(h, h->heap_len++, g);
    sift_up(h, g->heap_index);
}

void coop_timer_remove(struct coop_hub *h, struct coop_greenlet *g)
{
    int i = g->heap_index;
    g->heap_index = -1;
    struct coop_greenlet *last = h->heap[--h->heap_len];
    if (i < h->heap_len) {
        place(h, i, last);
        sift_up(h, i);
        sift_down(h, last->heap_index);
    }
}

int64_t coop_timer_next(const struct coop_hub *h)
{
    return h->heap_len > 0 ? h->heap[0]->deadline : COOP_NO_DEADLINE;
}

void coop_timer_run(struct coop_hub *h)
{
    if (h->heap_len == 0)
        return;
    int64_t now = coop_now();
    while (h->heap_len > 0 && h->heap[0]->deadline <= now) {
        struct coop_greenlet *g = h->heap[0];
        coop_timer_remove(h, g);
        coop_wake(g, g->wait_gen, ETIMEDOUT);
    }
}
