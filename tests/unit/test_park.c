/*
 * The parking lot (park.c): greenlets and real OS threads parked on addresses, woken by
 * greenlets and by real threads. In this binary pthread_create is glibc's: a real thread,
 * marked as a runtime thread or not, is no greenlet and parks on its futex word.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "unit.h"

struct parker {
    const void *addr;
    _Atomic int *word;         /* still_wait: *word == 0 */
    uint32_t bitset;
    int64_t deadline;
    volatile int parked;
    int result;
    int64_t woke;
};

static bool word_is_zero(const void *ctx)
{
    return atomic_load((_Atomic int *)ctx) == 0;
}

static void *parker_body(void *arg)
{
    struct parker *p = arg;
    p->parked = 1;
    p->result = coop_park(p->addr, p->word ? word_is_zero : NULL, (const void *)p->word,
                          p->bitset ? p->bitset : ~0u, p->deadline ? p->deadline : COOP_NO_DEADLINE, "unit");
    p->woke = coop_now();
    return NULL;
}

START_TEST(test_park_unpark_greenlets)
{
    _Atomic int word = 0;
    struct parker p = { .addr = &word, .word = &word };
    struct coop_greenlet *g = unit_spawn(parker_body, &p);
    unit_wait_parked(g);
    coop_sleep_until(coop_now() + MS(5));
    ck_assert_int_eq(p.woke, 0);               /* still parked */
    atomic_store(&word, 1);
    ck_assert_int_eq(coop_unpark(&word, 1, ~0u), 1);
    unit_join(g);
    ck_assert_int_eq(p.result, 0);
    /* Nobody left there. */
    ck_assert_int_eq(coop_unpark(&word, INT_MAX, ~0u), 0);
}
END_TEST

START_TEST(test_park_still_wait_false)
{
    _Atomic int word = 1;
    ck_assert_int_eq(coop_park(&word, word_is_zero, (const void *)&word, ~0u, COOP_NO_DEADLINE, "unit"), EAGAIN);
    ck_assert_int_eq(coop_unpark(&word, INT_MAX, ~0u), 0);   /* it did not stay queued */
}
END_TEST

START_TEST(test_park_timeout)
{
    int addr;
    int64_t t0 = coop_now();
    ck_assert_int_eq(coop_park(&addr, NULL, NULL, ~0u, t0 + MS(30), "unit"), ETIMEDOUT);
    ck_assert(coop_now() - t0 >= MS(30));
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, ~0u), 0);   /* dequeued on timeout */
    /* A deadline already past. */
    ck_assert_int_eq(coop_park(&addr, NULL, NULL, ~0u, coop_now() - 1, "unit"), ETIMEDOUT);
}
END_TEST

START_TEST(test_unpark_count_and_order)
{
    enum { N = 5 };
    int addr;
    struct parker p[N];
    struct coop_greenlet *g[N];
    for (int i = 0; i < N; i++) {
        p[i] = (struct parker){ .addr = &addr };
        g[i] = unit_spawn(parker_body, &p[i]);
        unit_wait_parked(g[i]);            /* parked in this order */
    }
    ck_assert_int_eq(coop_unpark(&addr, 0, ~0u), 0);
    ck_assert_int_eq(coop_unpark(&addr, 2, ~0u), 2);
    /* FIFO: the first two parked are the ones woken. */
    unit_join(g[0]);
    unit_join(g[1]);
    ck_assert(p[2].woke == 0 && p[3].woke == 0 && p[4].woke == 0);
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, ~0u), 3);
    for (int i = 0; i < N; i++) {
        if (i >= 2)                  /* the first two were joined above */
            unit_join(g[i]);
        ck_assert_int_eq(p[i].result, 0);
    }
}
END_TEST

START_TEST(test_unpark_many_batches)
{
    enum { N = 200 };          /* more than one wake batch */
    static struct parker p[N];
    static struct coop_greenlet *g[N];
    int addr, other;
    for (int i = 0; i < N; i++) {
        p[i] = (struct parker){ .addr = (i % 4 == 3) ? (const void *)&other : (const void *)&addr };
        g[i] = unit_spawn(parker_body, &p[i]);
    }
    for (int i = 0; i < N; i++)
        unit_wait_parked(g[i]);
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, ~0u), 150);
    ck_assert_int_eq(coop_unpark(&other, INT_MAX, ~0u), 50);
    for (int i = 0; i < N; i++)
        unit_join(g[i]);
}
END_TEST

START_TEST(test_bitset_filter)
{
    int addr;
    struct parker a = { .addr = &addr, .bitset = 0x1 };
    struct parker b = { .addr = &addr, .bitset = 0x2 };
    struct parker c = { .addr = &addr, .bitset = 0x3 };
    struct coop_greenlet *ga = unit_spawn(parker_body, &a);
    struct coop_greenlet *gb = unit_spawn(parker_body, &b);
    struct coop_greenlet *gc = unit_spawn(parker_body, &c);
    unit_wait_parked(ga);
    unit_wait_parked(gb);
    unit_wait_parked(gc);
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, 0x4), 0);
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, 0x2), 2);     /* b and c */
    unit_join(gb);
    unit_join(gc);
    ck_assert(a.woke == 0);
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, 0x1), 1);
    unit_join(ga);
}
END_TEST

/* Same hash bucket, different address: an unpark of one never wakes the other. */
static unsigned bucket_like_park_c(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    return (unsigned)((a >> 3 ^ a >> 13) % 1024);
}

START_TEST(test_addresses_sharing_a_bucket)
{
    static char area[1 << 20] __attribute__((aligned(8)));
    const void *x = &area[0], *y = NULL;
    for (size_t off = 8; off < sizeof area; off += 8)
        if (bucket_like_park_c(&area[off]) == bucket_like_park_c(x)) {
            y = &area[off];
            break;
        }
    ck_assert_ptr_nonnull(y);
    struct parker px = { .addr = x }, py = { .addr = y };
    struct coop_greenlet *gx = unit_spawn(parker_body, &px);
    struct coop_greenlet *gy = unit_spawn(parker_body, &py);
    unit_wait_parked(gx);
    unit_wait_parked(gy);
    ck_assert_int_eq(coop_unpark(y, INT_MAX, ~0u), 1);
    unit_join(gy);
    ck_assert(px.woke == 0);
    ck_assert_int_eq(coop_unpark(x, INT_MAX, ~0u), 1);
    unit_join(gx);
}
END_TEST

/* ---------------------------------------------------------------- real threads */

struct thread_waker { const void *addr; _Atomic int *word; int delay_ms, woken; };

static void *thread_unparks(void *arg)
{
    struct thread_waker *w = arg;
    struct timespec ts = { 0, w->delay_ms * 1000000L };
    nanosleep(&ts, NULL);
    if (w->word)
        atomic_store(w->word, 1);
    w->woken = coop_unpark(w->addr, 1, ~0u);
    return NULL;
}

START_TEST(test_real_thread_unparks_greenlet)
{
    _Atomic int word = 0;
    struct parker p = { .addr = &word, .word = &word };       /* no deadline: only the wake ends it */
    struct coop_greenlet *g = unit_spawn(parker_body, &p);
    unit_yield_until(&p.parked);
    struct thread_waker w = { .addr = &word, .word = &word, .delay_ms = 20 };
    pthread_t t;
    int64_t t0 = coop_now();
    ck_assert_int_eq(pthread_create(&t, NULL, thread_unparks, &w), 0);
    unit_join(g);            /* the hub sleeps in epoll until the thread's wake arrives */
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(w.woken, 1);
    ck_assert_int_eq(p.result, 0);
    ck_assert(p.woke - t0 >= MS(20));         /* the thread waits 20 ms before it wakes */
    /* The main greenlet parked directly, woken from the thread. */
    atomic_store(&word, 0);
    w = (struct thread_waker){ .addr = &word, .word = &word, .delay_ms = 10 };
    ck_assert_int_eq(pthread_create(&t, NULL, thread_unparks, &w), 0);
    ck_assert_int_eq(coop_park(&word, word_is_zero, (const void *)&word, ~0u, COOP_NO_DEADLINE, "unit"), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(w.woken, 1);
}
END_TEST

struct thread_parker {
    bool runtime;
    const void *addr;
    _Atomic int *word;
    int64_t deadline;
    bool was_greenlet;
    int result;
    int64_t woke;
};

static void *thread_parks(void *arg)
{
    struct thread_parker *p = arg;
    if (p->runtime)
        coop_mark_runtime_thread();
    p->was_greenlet = coop_self() != NULL;

    p->result = coop_park(p->addr, p->word ? word_is_zero : NULL, (const void *)p->word, ~0u,
                          p->deadline ? p->deadline : COOP_NO_DEADLINE, "unit");
    p->woke = coop_now();
    return NULL;
}

/* Unparks until one parker was taken (the thread may not have parked yet). */
static int unpark_when_parked(const void *addr)
{
    int64_t give_up = coop_now() + MS(60000);     /* a hang guard */
    int n;
    while ((n = coop_unpark(addr, 1, ~0u)) == 0 && coop_now() < give_up)
        coop_sleep_until(coop_now() + MS(1));
    return n;
}

/* _i 0: a runtime thread; _i 1: an unmarked thread: both sleep on their futex word. */
START_TEST(test_greenlet_unparks_real_thread)
{
    /* No still_wait: unpark_when_parked retries until the thread is in the queue. */
    int addr;
    struct thread_parker p = { .runtime = _i == 0, .addr = &addr };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, thread_parks, &p), 0);
    coop_sleep_until(coop_now() + MS(10));
    ck_assert_int_eq(p.woke, 0);
    ck_assert_int_eq(unpark_when_parked(&addr), 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(p.result, 0);
    ck_assert(!p.was_greenlet);
}
END_TEST

START_TEST(test_real_thread_park_timeout_and_eagain)
{
    int addr;
    struct thread_parker p = { .runtime = _i == 0, .addr = &addr, .deadline = coop_now() + MS(30) };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, thread_parks, &p), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(p.result, ETIMEDOUT);
    ck_assert(p.woke >= p.deadline);
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, ~0u), 0);

    _Atomic int word = 1;
    p = (struct thread_parker){ .runtime = _i == 0, .addr = &word, .word = &word };
    ck_assert_int_eq(pthread_create(&t, NULL, thread_parks, &p), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(p.result, EAGAIN);
}
END_TEST

/* Many runtime threads and greenlets parking and unparking one another on a counter: no
 * wakeup is lost (still_wait is checked under the lot's lock). The parks have no deadline:
 * a lost wakeup hangs the ring, and Check's time-out says so. */
enum { PP_THREADS = 3, PP_GREENLETS = 3, PP_ROUNDS = 300 };
static _Atomic int pp_turn;

struct pp_arg { int me, rounds_done; bool thread; };

static bool not_my_turn(const void *ctx)
{
    return atomic_load(&pp_turn) % (PP_THREADS + PP_GREENLETS) != *(const int *)ctx;
}

static void pp_loop(struct pp_arg *a)
{
    for (int r = 0; r < PP_ROUNDS; r++) {
        while (not_my_turn(&a->me))
            coop_park(&pp_turn, not_my_turn, &a->me, ~0u, COOP_NO_DEADLINE, "unit");
        atomic_fetch_add(&pp_turn, 1);
        coop_unpark(&pp_turn, INT_MAX, ~0u);
        a->rounds_done++;
    }
}

static void *pp_thread(void *arg)
{
    coop_mark_runtime_thread();
    pp_loop(arg);
    return NULL;
}

static void *pp_greenlet(void *arg)
{
    pp_loop(arg);
    return NULL;
}

START_TEST(test_mixed_token_ring)
{
    atomic_store(&pp_turn, 0);
    struct pp_arg a[PP_THREADS + PP_GREENLETS];
    pthread_t t[PP_THREADS];
    struct coop_greenlet *g[PP_GREENLETS];
    for (int i = 0; i < PP_THREADS + PP_GREENLETS; i++)
        a[i] = (struct pp_arg){ .me = i, .thread = i < PP_THREADS };
    for (int i = 0; i < PP_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, pp_thread, &a[i]), 0);
    for (int i = 0; i < PP_GREENLETS; i++)
        g[i] = unit_spawn(pp_greenlet, &a[PP_THREADS + i]);
    for (int i = 0; i < PP_GREENLETS; i++)
        unit_join(g[i]);
    for (int i = 0; i < PP_THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < PP_THREADS + PP_GREENLETS; i++)
        ck_assert_int_eq(a[i].rounds_done, PP_ROUNDS);
    ck_assert_int_eq(atomic_load(&pp_turn), PP_ROUNDS * (PP_THREADS + PP_GREENLETS));
}
END_TEST

/* A waits on addr until its deadline, parks other_parks times elsewhere (each ended by an
 * unpark), and waits on addr again; B waits on addr from the middle of A's first wait. */
struct line_keeper {
    const void *addr, *other;
    int other_parks;
    _Atomic int parks;         /* parks begun: 1 on addr, then other_parks elsewhere, then addr */
    int first, second;
};

static void *line_keeper_body(void *arg)
{
    struct line_keeper *k = arg;
    atomic_store(&k->parks, 1);
    k->first = coop_park(k->addr, NULL, NULL, ~0u, coop_now() + MS(20), "unit");
    for (int i = 0; i < k->other_parks; i++) {
        atomic_fetch_add(&k->parks, 1);
        coop_park(k->other, NULL, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    }
    atomic_fetch_add(&k->parks, 1);
    k->second = coop_park(k->addr, NULL, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    return NULL;
}

static void wait_for_park(struct line_keeper *k, struct coop_greenlet *g, int park)
{
    while (atomic_load(&k->parks) != park)
        coop_sleep_until(coop_now() + MS(1));
    unit_wait_parked(g);
}

/* A greenlet whose wait timed out and that waits again at once keeps its place ahead of
 * those who came meanwhile (CPython's GIL waiters, park.c); one that parked elsewhere more
 * than twice in between does not. _i: that many parks elsewhere. */
START_TEST(test_timed_out_waiter_keeps_its_place)
{
    int addr, other;
    struct line_keeper a = { .addr = &addr, .other = &other, .other_parks = _i };
    struct parker b = { .addr = &addr };
    struct coop_greenlet *ga = unit_spawn(line_keeper_body, &a);
    wait_for_park(&a, ga, 1);
    struct coop_greenlet *gb = unit_spawn(parker_body, &b);
    unit_wait_parked(gb);                      /* behind A, before A's deadline */
    for (int i = 0; i < a.other_parks; i++) {
        wait_for_park(&a, ga, 2 + i);
        ck_assert_int_eq(coop_unpark(&other, 1, ~0u), 1);
    }
    wait_for_park(&a, ga, 2 + a.other_parks);
    ck_assert_int_eq(a.first, ETIMEDOUT);

    ck_assert_int_eq(coop_unpark(&addr, 1, ~0u), 1);
    while (coop_gstate_get(ga) == G_WAITING && coop_gstate_get(gb) == G_WAITING)
        coop_sleep_until(coop_now() + MS(1));
    bool keeps_place = _i <= 2;
    ck_assert_msg(coop_gstate_get(keeps_place ? gb : ga) == G_WAITING, "the unpark woke %s",
                  keeps_place ? "the waiter that came later" : "a waiter that had gone elsewhere");
    ck_assert_int_eq(coop_unpark(&addr, 1, ~0u), 1);
    unit_join(ga);
    unit_join(gb);
    ck_assert(a.second == 0 && b.result == 0);
}
END_TEST

START_TEST(test_interrupt_park)
{
    int addr;
    /* With a deadline (never reached): with none, the deadlock detector fires before the
     * interrupt is delivered (test_known_bugs.c). */
    struct parker p = { .addr = &addr, .deadline = coop_now() + MS(5000) };
    struct coop_greenlet *g = unit_spawn(parker_body, &p);
    unit_wait_parked(g);
    coop_interrupt(g, false);
    unit_join(g);
    ck_assert_int_eq(p.result, EINTR);        /* not the 5 s deadline's ETIMEDOUT */
    ck_assert_int_eq(coop_unpark(&addr, INT_MAX, ~0u), 0);   /* dequeued */
}
END_TEST

Suite *park_suite(void)
{
    Suite *s = suite_create("park");
    TCase *tc = unit_tcase("greenlets");
    tcase_add_test(tc, test_park_unpark_greenlets);
    tcase_add_test(tc, test_park_still_wait_false);
    tcase_add_test(tc, test_park_timeout);
    tcase_add_test(tc, test_unpark_count_and_order);
    tcase_add_test(tc, test_unpark_many_batches);
    tcase_add_test(tc, test_bitset_filter);
    tcase_add_test(tc, test_addresses_sharing_a_bucket);
    tcase_add_test(tc, test_interrupt_park);
    tcase_add_loop_test(tc, test_timed_out_waiter_keeps_its_place, 0, 4);
    suite_add_tcase(s, tc);

    TCase *th = unit_tcase("threads");
    tcase_add_test(th, test_real_thread_unparks_greenlet);
    tcase_add_loop_test(th, test_greenlet_unparks_real_thread, 0, 2);
    tcase_add_loop_test(th, test_real_thread_park_timeout_and_eagain, 0, 2);
    tcase_add_test(th, test_mixed_token_ring);
    suite_add_tcase(s, th);
    return s;
}
