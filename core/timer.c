/*
 * Deadlines of waiting greenlets, in a binary heap per hub. One libuv timer per hub is
 * armed for the earliest; greenlets carry no libuv handle of their own, so a record needs
 * no asynchronous close before its memory is reused.
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

/* libuv timers count whole milliseconds of a coarse clock: round up, and let
 * coop_timer_expire re-arm when it fires a little early. */
static void arm(struct coop_hub *h)
{
    if (h->heap_len == 0) {
        h->armed_deadline = COOP_NO_DEADLINE;
        uv_timer_stop(&h->timer);
        return;
    }
    int64_t deadline = h->heap[0]->deadline;
    if (deadline == h->armed_deadline)
        return;
    h->armed_deadline = deadline;
    int64_t wait_ns = deadline - coop_now();
    uint64_t ms = wait_ns <= 0 ? 0 : (uint64_t)((wait_ns + 999999) / 1000000);
    uv_update_time(&h->loop);
    uv_timer_start(&h->timer, coop_timer_expire, ms, 0);
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
    if (deadline < h->armed_deadline)
        arm(h);
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
    /* A later deadline armed on the timer costs one early wakeup at most; re-arm lazily. */
}

void coop_timer_expire(uv_timer_t *t)
{
    struct coop_hub *h = t->data;
    int64_t now = coop_now();
    while (h->heap_len > 0 && h->heap[0]->deadline <= now) {
        struct coop_greenlet *g = h->heap[0];
        coop_timer_remove(h, g);
        coop_wake(g, g->wait_gen, ETIMEDOUT);
    }
    h->armed_deadline = COOP_NO_DEADLINE;
    arm(h);
}
