/*
 * The parking lot: every sync object waits here, keyed by its address, whether the waiter
 * is a greenlet (it switches away) or a real OS thread (it sleeps on a futex word of its
 * own). This is what lets one mutex be shared by greenlets, libuv's workers and threads
 * created while thread patching is off, and what futex(2) emulation is built on.
 *
 * Across OS threads: a bucket's lock covers its queue and the still_wait check, so a
 * wake cannot fall between the check and the queueing. An unparker wakes the greenlets it
 * dequeues before it lets go of the bucket: a parker that gives up (a timeout, a signal)
 * takes the bucket's lock to leave, so once it finds it was dequeued, the unparker is done
 * with it, and it may return and free its frame, or end. The unparker never dereferences
 * the address it unparks: joins (greenlet.c) and the threadpool (offload.c) park on
 * records that the woken side may free at once. (test_sched: park stress)
 *
 * A queue is first come, first served, with one refinement: a greenlet whose wait ended
 * without an unpark (a time-out, a signal, a nudge) and that parks on the same address
 * again at once keeps its place in line, its ticket. Natively a waiter that times out
 * re-queues behind the others too, but time-outs come one at a time, each when its own
 * deadline passes, with the lock holder running in between. On a hub that a greenlet
 * keeps busy they come in a batch, at its next preemption, in deadline order: CPython's
 * GIL waiters time out, ask the holder to drop the GIL, and wait again in the same order
 * every round, so the one behind (the main thread) never got it. "At once": resumed at
 * most LINE_KEPT_RESUMES times in between (a condition variable's wait takes its mutex
 * back, which may park; a preemption), counted in switches rather than time, which a
 * loaded machine stretches; a greenlet that got what it waited for without parking (the
 * GIL found free), computed and waits again later queues anew. It goes at most
 * LINE_SKIP_MAX places ahead, so that re-queueing stays cheap behind thousands of
 * waiters. Tickets count per bucket, under its lock; a greenlet's kept place is its own to
 * read and write.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <linux/futex.h>

#include "internal.h"

#define BUCKETS 1024
#define WAKE_BATCH 64
#define LINE_KEPT_RESUMES 2
#define LINE_SKIP_MAX 64

struct parker {
    struct parker *next, *prev;
    const void *addr;
    uint32_t bitset;
    bool queued;
    struct coop_greenlet *g;           /* NULL for an OS thread */
    uint64_t gen;
    uint64_t ticket;                   /* its place in line: the queue is in ticket order */
    _Atomic uint32_t thread_woken;     /* the OS thread's futex word */
};

struct bucket {
    coop_lock_t lock;
    struct parker *head, *tail;
    uint64_t next_ticket;
} __attribute__((aligned(64)));

static struct bucket buckets[BUCKETS];

static struct bucket *bucket_of(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    return &buckets[(a >> 3 ^ a >> 13) % BUCKETS];
}

static void dequeue(struct bucket *b, struct parker *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        b->head = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    else
        b->tail = p->prev;
    p->queued = false;
}

/* A new parker's ticket: the next one, or the place a greenlet kept (see the top). */
static uint64_t take_ticket(struct bucket *b, struct coop_greenlet *g, const void *addr)
{
    if (g != NULL && g->kept_place.addr == addr && g->resumes - g->kept_place.resumes <= LINE_KEPT_RESUMES)
        return g->kept_place.ticket;
    return b->next_ticket++;
}

/* Queues p in ticket order: at the tail, unless it kept an earlier place. */
static void enqueue(struct bucket *b, struct parker *p)
{
    struct parker *before = b->tail;
    for (int skipped = 0; before != NULL && before->ticket > p->ticket && skipped < LINE_SKIP_MAX; skipped++)
        before = before->prev;
    p->prev = before;
    p->next = before != NULL ? before->next : b->head;
    if (p->next != NULL)
        p->next->prev = p;
    else
        b->tail = p;
    if (before != NULL)
        before->next = p;
    else
        b->head = p;
    p->queued = true;
}

/* After g's wait on addr: the place it keeps for its next one (see the top). */
static void keep_place(struct coop_greenlet *g, const void *addr, uint64_t ticket, bool unparked)
{
    struct coop_kept_place *k = &g->kept_place;
    if (!unparked)
        *k = (struct coop_kept_place){ .addr = addr, .ticket = ticket, .resumes = g->resumes };
    else if (k->addr == addr)
        k->addr = NULL;
}

/* Sleeps an OS thread until woken or the deadline; 0 or ETIMEDOUT or EINTR. */
static int thread_sleep(struct parker *p, int64_t deadline)
{
    while (atomic_load(&p->thread_woken) == 0) {
        struct timespec ts, *tsp = NULL;
        if (deadline != COOP_NO_DEADLINE) {
            int64_t left = deadline - coop_now();
            if (left <= 0)
                return ETIMEDOUT;
            ts = (struct timespec){ left / 1000000000, left % 1000000000 };
            tsp = &ts;
        }
        long r = coop_futex(&p->thread_woken, FUTEX_WAIT, 0, tsp);
        if (r == -EINTR)
            return EINTR;
    }
    return 0;
}

/* After a wait that did not end with an unpark: takes p off the queue, or says that an
 * unparker took it off as we gave up (its wakeup is ours). An OS thread must then wait for
 * the unparker's last touch of the parker before the frame goes. */
static bool unqueue(struct bucket *b, struct parker *p)
{
    coop_lock(&b->lock);
    bool still_queued = p->queued;
    if (still_queued)
        dequeue(b, p);
    coop_unlock(&b->lock);
    if (!still_queued && p->g == NULL)
        while (atomic_load(&p->thread_woken) == 0)
            coop_futex(&p->thread_woken, FUTEX_WAIT, 0, NULL);
    return still_queued;
}

int coop_park_as(const void *addr, bool (*still_wait)(const void *ctx), const void *ctx,
                 uint32_t bitset, int64_t deadline, enum coop_wait_kind kind, const char *what)
{
    struct bucket *b = bucket_of(addr);
    struct parker p = { .addr = addr, .bitset = bitset, .g = coop_self() };
    coop_lock(&b->lock);
    if (still_wait != NULL && !still_wait(ctx)) {
        coop_unlock(&b->lock);
        return EAGAIN;
    }
    if (p.g != NULL) {
        p.gen = coop_prepare_wait(p.g, kind, addr);
        p.g->waiting.what = what;
    }
    p.ticket = take_ticket(b, p.g, addr);
    enqueue(b, &p);
    coop_unlock(&b->lock);

    int reason = p.g != NULL ? coop_suspend(deadline) : thread_sleep(&p, deadline);
    if (reason != 0 && !unqueue(b, &p))
        reason = 0;
    if (p.g != NULL)
        keep_place(p.g, addr, p.ticket, reason == 0);
    if (kind != WAIT_OFFLOAD)      /* offload.c delivers once the work has ended */
        coop_after_wait(p.g);
    return reason;
}

/* A nudge (coop_nudge) is a spurious wakeup to coop_park's callers. */
int coop_park(const void *addr, bool (*still_wait)(const void *ctx), const void *ctx,
              uint32_t bitset, int64_t deadline, const char *what)
{
    int reason = coop_park_as(addr, still_wait, ctx, bitset, deadline, WAIT_PARK, what);
    return reason == COOP_NUDGED ? 0 : reason;
}

int coop_unpark(const void *addr, int n, uint32_t bitset)
{
    struct bucket *b = bucket_of(addr);
    int woken = 0;
    for (;;) {
        struct parker *threads[WAKE_BATCH];
        int count = 0, thread_count = 0;
        coop_lock(&b->lock);
        struct parker *p = b->head;
        while (p != NULL && woken + count < n && count < WAKE_BATCH) {
            struct parker *next = p->next;
            if (p->addr == addr && (p->bitset & bitset)) {
                dequeue(b, p);
                if (p->g != NULL)
                    coop_wake(p->g, p->gen, 0);     /* p may be gone once woken */
                else
                    threads[thread_count++] = p;
                count++;
            }
            p = next;
        }
        bool more = p != NULL && count == WAKE_BATCH;
        coop_unlock(&b->lock);
        /* A thread waits for thread_woken before its frame goes. */
        for (int i = 0; i < thread_count; i++) {
            atomic_store(&threads[i]->thread_woken, 1);
            coop_futex(&threads[i]->thread_woken, FUTEX_WAKE, 1, NULL);
        }
        woken += count;
        if (!more || woken >= n)
            return woken;
    }
}

/* Whoever was parked in the parent is not in the child. */
void coop_park_fork_child(void)
{
    for (int i = 0; i < BUCKETS; i++)      /* tickets go on: the forking greenlet may keep one */
        buckets[i] = (struct bucket){ .lock = { 0 }, .next_ticket = buckets[i].next_ticket };
}
