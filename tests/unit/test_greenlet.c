/*
 * Greenlet lifecycle: spawn, join (plain, try, timed), detach, exit, yield, identity, names,
 * stacks chosen by the spawner, the exit hook, the per-greenlet TLS copy, and greenlets
 * created by other OS threads (in this binary pthread_create is glibc's: such a thread
 * stays a plain thread, and the hubs run what it creates, unless it is marked as a runtime
 * thread, which creates none).
 */
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "unit.h"

static bool never(const void *ctx)
{
    (void)ctx;
    return true;
}

/* Parks until unpark(addr): a greenlet that stays unfinished as long as a test wants. */
static void *park_body(void *addr)
{
    int r = coop_park(addr, never, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    return (void *)(intptr_t)(r == 0 ? 1000 : r);
}

static void *return_arg(void *arg) { return arg; }

/* Whether g's record was released: its page unmapped, or (pooled stacks stay mapped) its
 * magic cleared. Only meaningful while nothing is spawned that could reuse the stack. */
static bool released(struct coop_greenlet *g)
{
    void *page = (void *)((uintptr_t)g & ~(uintptr_t)4095);
    if (msync(page, 4096, MS_ASYNC) != 0 && errno == ENOMEM)
        return true;
    return !coop_is_greenlet(g);
}

static __attribute__((noinline)) int exit_deep(int depth, void *result)
{
    if (depth < 0)
        return 0;         /* not reached; lets the compiler see a way out */
    if (depth == 0)
        coop_exit(result);
    return exit_deep(depth - 1, result) + 1;
}

static void *exit_body(void *arg)
{
    exit_deep(10, arg);
    return NULL;   /* not reached */
}

START_TEST(test_spawn_join_results)
{
    struct coop_greenlet *g[5];
    for (intptr_t i = 0; i < 5; i++)
        g[i] = unit_spawn(i % 2 ? exit_body : return_arg, (void *)(i * 111 + 7));
    for (intptr_t i = 4; i >= 0; i--)
        ck_assert_ptr_eq(unit_join(g[i]), (void *)(i * 111 + 7));
    /* A NULL result pointer is allowed. */
    ck_assert_int_eq(coop_join(unit_spawn(return_arg, NULL), NULL, COOP_NO_DEADLINE), 0);
}
END_TEST

static int order[32], order_len;

static void *late_body(void *arg)
{
    order[order_len++] = (int)(intptr_t)arg;
    return NULL;
}

static void *order_body(void *arg)
{
    int i = (int)(intptr_t)arg;
    order[order_len++] = i;
    if (i == 0) {
        /* Spawned now, it runs after the greenlets that were ready before it. */
        struct coop_greenlet *late = unit_spawn(late_body, (void *)(intptr_t)100);
        coop_join(late, NULL, COOP_NO_DEADLINE);
    }
    return NULL;
}

START_TEST(test_fifo_first_runs)
{
    if (!unit_one_hub())
        return;            /* one hub's queue order; with several, hubs run greenlets at once */
    order_len = 0;
    uint64_t handoffs = unit_handoffs();
    struct coop_greenlet *g[8];
    for (intptr_t i = 0; i < 8; i++)
        g[i] = unit_spawn(order_body, (void *)i);
    bool none_ran = order_len == 0;           /* nothing runs before the spawner waits */
    for (int i = 0; i < 8; i++)
        unit_join(g[i]);
    if (unit_handoffs() != handoffs)
        return;            /* a spare ran them beside this one (unit.h) */
    ck_assert(none_ran);
    ck_assert_int_eq(order_len, 9);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert_int_eq(order[8], 100);
}
END_TEST

static char il_log[64];
static int il_len;

static void *interleave_body(void *arg)
{
    for (int i = 0; i < 5; i++) {
        il_log[il_len++] = (char)(intptr_t)arg;
        coop_yield();
    }
    return NULL;
}

START_TEST(test_yield_interleaves)
{
    il_len = 0;
    uint64_t handoffs = unit_handoffs();
    struct coop_greenlet *g[3];
    for (int i = 0; i < 3 && unit_one_hub(); i++)    /* one hub's queue order */
        g[i] = unit_spawn(interleave_body, (void *)(intptr_t)('A' + i));
    for (int i = 0; i < 3 && unit_one_hub(); i++)
        unit_join(g[i]);
    il_log[il_len] = '\0';
    if (unit_one_hub() && unit_handoffs() == handoffs)
        ck_assert_str_eq(il_log, "ABCABCABCABCABC");
    /* yield with nothing else ready comes straight back (or Check's time-out says not) */
    for (int i = 0; i < 1000; i++)
        coop_yield();
}
END_TEST

static volatile int detached_may_finish, detached_ran;
static volatile int detached_self_join, detached_self_try_join;

/* Lives until the test has looked at it: a detached greenlet that finished may be gone.
 * Joining itself, it is refused as glibc refuses a detached thread: EINVAL (detached comes
 * before oneself), and EBUSY to a try-join. */
static void *detached_body(void *arg)
{
    unit_yield_until(&detached_may_finish);
    detached_self_join = coop_join(coop_self(), NULL, COOP_NO_DEADLINE);
    detached_self_try_join = coop_join(coop_self(), NULL, 0);
    detached_ran = (int)(intptr_t)arg;
    return NULL;
}

START_TEST(test_detach)
{
    detached_ran = detached_may_finish = 0;
    struct coop_greenlet *d = unit_spawn_attr(detached_body, (void *)1,
                                              (struct coop_spawn_attr){ .guard_size = 4096, .detached = true });
    ck_assert_int_eq(coop_join(d, NULL, COOP_NO_DEADLINE), EINVAL);
    ck_assert_int_eq(coop_detach(d), EINVAL);
    detached_may_finish = 1;
    unit_yield_until(&detached_ran);
    ck_assert_int_eq(detached_ran, 1);
    ck_assert_int_eq(detached_self_join, EINVAL);
    ck_assert_int_eq(detached_self_try_join, EBUSY);
    /* Once finished it is released by the hub. */
    for (int i = 0; i < 5000 && !released(d); i++)
        coop_sleep_until(coop_now() + MS(1));     /* the hub runs and reaps */
    ck_assert(released(d));

    /* Detached while running. */
    detached_ran = detached_may_finish = 0;
    struct coop_greenlet *g = unit_spawn(detached_body, (void *)2);
    ck_assert_int_eq(coop_detach(g), 0);
    ck_assert_int_eq(coop_detach(g), EINVAL);
    ck_assert_int_eq(coop_join(g, NULL, 0), EBUSY);     /* glibc's try-join asks only that */
    detached_may_finish = 1;
    unit_yield_until(&detached_ran);

    /* Detached once finished: released by the hub. */
    struct coop_greenlet *f = unit_spawn(return_arg, NULL);
    coop_sleep_until(coop_now() + MS(1));
    ck_assert(coop_is_greenlet(f));
    ck_assert_int_eq(coop_detach(f), 0);
    for (int i = 0; i < 5000 && !released(f); i++)
        coop_sleep_until(coop_now() + MS(1));     /* the hub runs and reaps */
    ck_assert(released(f));
    for (int i = 0; i < 5000 && !coop_alone(); i++)
        coop_sleep_until(coop_now() + MS(1));     /* g, detached, leaves after it ran */
}
END_TEST

START_TEST(test_join_finished)
{
    struct coop_greenlet *g = unit_spawn(return_arg, (void *)77);
    void *r = NULL;
    int err;
    /* Try-join of a finished one: busy until it is off its stack, which another hub, or a
     * busy machine, may make later than any sleep here. */
    while ((err = coop_join(g, &r, 0)) == EBUSY)
        coop_sleep_until(coop_now() + MS(1));
    ck_assert_int_eq(err, 0);
    ck_assert_ptr_eq(r, (void *)77);

    g = unit_spawn(return_arg, (void *)78);
    coop_sleep_until(coop_now() + MS(1));
    ck_assert_ptr_eq(unit_join(g), (void *)78);
}
END_TEST

START_TEST(test_tryjoin_busy_and_timed_join)
{
    static int addr;
    struct coop_greenlet *g = unit_spawn(park_body, &addr);
    ck_assert_int_eq(coop_join(g, NULL, 0), EBUSY);
    coop_yield();
    ck_assert_int_eq(coop_join(g, NULL, 0), EBUSY);

    int64_t t0 = coop_now();
    ck_assert_int_eq(coop_join(g, NULL, t0 + MS(30)), ETIMEDOUT);
    int64_t waited = coop_now() - t0;
    ck_assert_msg(waited >= MS(30), "timed join waited %lld ns", (long long)waited);

    /* A deadline already past: ETIMEDOUT (or EBUSY), at once. */
    int r = coop_join(g, NULL, coop_now() - MS(1));
    ck_assert(r == ETIMEDOUT || r == EBUSY);

    /* After the timeouts it can still be joined, by anyone. */
    unit_wait_parked(g);
    ck_assert_int_eq(coop_unpark(&addr, 1, ~0u), 1);
    ck_assert_ptr_eq(unit_join(g), (void *)1000);
}
END_TEST

static struct coop_greenlet *target;
static int self_join, second_join, self_detach;
static void *second_result;

static int detaching;

static void *detach_self(void *unused)
{
    (void)unused;
    detaching = 1;
    self_detach = coop_detach(coop_self());
    return NULL;
}

static void *park_then_detach_self(void *addr)
{
    park_body(addr);
    self_detach = coop_detach(coop_self());
    return (void *)55;
}

/* glibc's answers to a thread that joins itself: EDEADLK, and EBUSY to a try-join (it looks
 * at the thread's end first). */
static int self_try_join;

static void *self_joiner(void *unused)
{
    (void)unused;
    self_join = coop_join(coop_self(), NULL, COOP_NO_DEADLINE);
    self_try_join = coop_join(coop_self(), NULL, 0);
    return NULL;
}

static void *second_joiner(void *unused)
{
    (void)unused;
    second_join = coop_join(target, &second_result, COOP_NO_DEADLINE);
    return NULL;
}

START_TEST(test_join_errors)
{
    static int addr;
    self_join = second_join = -1;
    unit_join(unit_spawn(self_joiner, NULL));
    ck_assert_int_eq(self_join, EDEADLK);
    ck_assert_int_eq(self_try_join, EBUSY);
    ck_assert_int_eq(coop_join(coop_self(), NULL, 0), EBUSY);

    /* Two joiners: the second is refused while the first waits. */
    target = unit_spawn(park_body, &addr);
    struct coop_greenlet *j1 = unit_spawn(second_joiner, NULL);
    unit_wait_parked(target);
    unit_wait_in(j1, WAIT_JOIN);
    ck_assert_int_eq(coop_join(target, NULL, MS(10) + coop_now()), EINVAL);
    ck_assert_int_eq(coop_unpark(&addr, 1, ~0u), 1);
    unit_join(j1);
    ck_assert_int_eq(second_join, 0);

    /* A greenlet that detaches itself while another joins it (glibc: the detach does
     * nothing): the join still ends, with its result. */
    self_detach = -1;
    target = unit_spawn(park_then_detach_self, &addr);
    unit_wait_parked(target);
    j1 = unit_spawn(second_joiner, NULL);
    unit_wait_in(j1, WAIT_JOIN);
    ck_assert_int_eq(coop_unpark(&addr, 1, ~0u), 1);
    unit_join(j1);
    ck_assert_int_eq(second_join, 0);
    ck_assert_ptr_eq(second_result, (void *)55);
    ck_assert_int_eq(self_detach, 0);

    /* One that detached itself and ended: a join is refused, and the record is freed once,
     * by its hub, which reaps at the top of its loop. Only on one hub can the join be made
     * sure to come before that: with switches left in the hub's round, the yield switches
     * straight to d, and d's end straight back here (on more hubs d may end elsewhere, and
     * so it may on a spare after a handoff: then d is not looked at again). */
    if (coop_sched_regular_hubs() == 1) {
        uint64_t handoffs = unit_handoffs();
        detaching = 0;
        struct coop_greenlet *d = unit_spawn(detach_self, NULL);
        coop_hub_current()->round_left = COOP_ROUND_MIN;
        coop_yield();
        if (unit_handoffs() != handoffs)
            return;
        ck_assert(detaching && coop_greenlet_finished(d) && !released(d));
        ck_assert_int_eq(self_detach, 0);
        ck_assert_int_eq(coop_join(d, NULL, 0), EINVAL);
        ck_assert_int_eq(coop_join(d, NULL, COOP_NO_DEADLINE), EINVAL);
    }
}
END_TEST

#define MANY 10000

static _Atomic int many_go;

static bool many_wait(const void *unused)
{
    (void)unused;
    return !atomic_load(&many_go);
}

static void *many_body(void *arg)
{
    coop_park(&many_go, many_wait, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    coop_yield();
    return (void *)((intptr_t)arg * 3);
}

START_TEST(test_ten_thousand)
{
    static struct coop_greenlet *g[MANY];
    atomic_store(&many_go, 0);
    for (intptr_t i = 0; i < MANY; i++)
        g[i] = unit_spawn(many_body, (void *)i);
    ck_assert(!coop_alone());
    atomic_store(&many_go, 1);
    coop_unpark(&many_go, INT_MAX, ~0u);
    long long sum = 0;
    uint64_t last_id = 0;
    for (int i = 0; i < MANY; i++) {
        ck_assert_uint_gt(coop_greenlet_id(g[i]), last_id);
        last_id = coop_greenlet_id(g[i]);
        sum += (intptr_t)unit_join(g[i]);
    }
    ck_assert_int_eq(sum, 3LL * MANY * (MANY - 1) / 2);
    ck_assert(coop_alone());
}
END_TEST

static char seen_name[32];

static void *name_body(void *unused)
{
    (void)unused;
    coop_greenlet_set_name(coop_self(), "worker-1");
    strcpy(seen_name, coop_greenlet_name(coop_self()));
    return NULL;
}

START_TEST(test_names)
{
    struct coop_greenlet *g = unit_spawn(return_arg, NULL);
    ck_assert_str_eq(coop_greenlet_name(g), "");
    coop_greenlet_inherit_name(g, "its-creators-name");
    ck_assert_str_eq(coop_greenlet_name(g), "its-creators-na");
    ck_assert_str_eq(g->name, "");             /* what dumps show: no name given */
    coop_greenlet_set_name(g, "short");
    ck_assert_str_eq(coop_greenlet_name(g), "short");
    coop_greenlet_set_name(g, "a-name-longer-than-fifteen");
    ck_assert_str_eq(coop_greenlet_name(g), "a-name-longer-t");     /* 15 bytes kept */
    coop_greenlet_set_name(g, "");
    ck_assert_str_eq(coop_greenlet_name(g), "");   /* a given name, even empty, wins */
    unit_join(g);

    unit_join(unit_spawn(name_body, NULL));
    ck_assert_str_eq(seen_name, "worker-1");

    struct coop_greenlet *me = coop_self();
    char saved[16];
    strcpy(saved, coop_greenlet_name(me));
    coop_greenlet_set_name(me, "main");
    ck_assert_str_eq(coop_greenlet_name(me), "main");
    coop_greenlet_set_name(me, saved);
}
END_TEST

struct ident_probe {
    struct coop_greenlet *self;
    uintptr_t os_thread;
    bool is_main;
    bool is_greenlet_self, is_greenlet_pthread;
    void *local_addr, *base;
    size_t size;
};

static _Atomic int ident_go;

static bool ident_wait(const void *unused)
{
    (void)unused;
    return !atomic_load(&ident_go);
}

static void *ident_body(void *arg)
{
    struct ident_probe *p = arg;
    coop_park(&ident_go, ident_wait, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    p->self = coop_self();
    p->os_thread = coop_greenlet_os_thread(p->self);
    p->is_main = coop_greenlet_is_main(p->self);
    p->is_greenlet_self = coop_is_greenlet(p->self);
    p->is_greenlet_pthread = coop_is_greenlet((void *)pthread_self());
    p->local_addr = &p;
    coop_greenlet_stack(p->self, &p->base, &p->size);
    return NULL;
}

static void *real_thread_pthread_self(void *unused)
{
    (void)unused;
    return (void *)pthread_self();
}

START_TEST(test_identity_main_and_spawned)
{
    /* The test body runs on the hub's main greenlet. */
    struct coop_greenlet *me = coop_self();
    ck_assert_ptr_nonnull(me);
    ck_assert(coop_is_greenlet(me));
    ck_assert(coop_greenlet_is_main(me));
    ck_assert_uint_eq(coop_greenlet_os_thread(me), (uintptr_t)pthread_self());
    ck_assert(coop_alone());

    struct ident_probe p = { 0 };
    uint64_t handoffs = unit_handoffs();
    atomic_store(&ident_go, 0);
    struct coop_greenlet *g = unit_spawn(ident_body, &p);
    ck_assert(!coop_alone());
    ck_assert(coop_is_greenlet(g));
    ck_assert_uint_ne(coop_greenlet_id(g), coop_greenlet_id(me));
    atomic_store(&ident_go, 1);
    coop_unpark(&ident_go, 1, ~0u);
    unit_join(g);
    ck_assert(coop_alone());
    ck_assert_ptr_eq(p.self, g);
    ck_assert(!p.is_main);
    if (unit_one_hub() && unit_handoffs() == handoffs)   /* else whichever hub's thread ran it */
        ck_assert_uint_eq(p.os_thread, (uintptr_t)pthread_self());
    ck_assert(p.is_greenlet_self);
    ck_assert(!p.is_greenlet_pthread);
    ck_assert((char *)p.local_addr >= (char *)p.base && (char *)p.local_addr < (char *)p.base + p.size);
    ck_assert_uint_ge(p.size, 200 * 1024);

    /* Real pthread_t values are no greenlets. */
    ck_assert(!coop_is_greenlet((void *)pthread_self()));
    pthread_t t;
    void *other = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, real_thread_pthread_self, NULL), 0);
    ck_assert_int_eq(pthread_join(t, &other), 0);
    ck_assert(!coop_is_greenlet(other));
    ck_assert(!coop_is_greenlet(NULL));
    uint64_t *zeros = calloc(4, sizeof *zeros);
    ck_assert(!coop_is_greenlet(zeros));
    free(zeros);
}
END_TEST

static void *big_frame_body(void *arg)
{
    size_t n = (size_t)(intptr_t)arg;
    volatile char *buf = __builtin_alloca(n);
    for (size_t i = 0; i < n; i += 4096)
        buf[i] = (char)i;
    return (void *)(intptr_t)buf[0];
}

START_TEST(test_spawn_stacks)
{
    atomic_store(&ident_go, 1);         /* ident_body runs straight through */
    /* A program-supplied stack: used as is, never freed by coop. */
    size_t size = 64 * 1024;
    char *mine = aligned_alloc(4096, size);
    struct ident_probe p = { 0 };
    unit_join(unit_spawn_attr(ident_body, &p, (struct coop_spawn_attr){ .stack = mine, .stack_size = size }));
    ck_assert((char *)p.local_addr >= mine && (char *)p.local_addr < mine + size);
    ck_assert_ptr_eq(p.base, mine);
    ck_assert_uint_eq(p.size, size);
    memset(mine, 0, size);    /* still ours */
    free(mine);

    /* A bigger stack than the default: 1 MiB usable, 900 KiB of it in one frame. */
    struct ident_probe q = { 0 };
    unit_join(unit_spawn_attr(ident_body, &q, (struct coop_spawn_attr){ .stack_size = 1 << 20, .guard_size = 4096 }));
    ck_assert_uint_ge(q.size, 1 << 20);
    struct coop_greenlet *big = unit_spawn_attr(big_frame_body, (void *)(intptr_t)(900 * 1024),
                                                (struct coop_spawn_attr){ .stack_size = 1 << 20, .guard_size = 4096 });
    unit_join(big);

    /* No memory for the stack: EAGAIN, and nothing is left behind. */
    struct coop_greenlet *none = NULL;
    struct coop_spawn_attr huge = { .stack_size = (size_t)1 << 50, .guard_size = 4096 };
    ck_assert_int_eq(coop_spawn(&none, return_arg, NULL, &huge), EAGAIN);
    ck_assert(coop_alone());
}
END_TEST

static struct coop_greenlet *hook_g;
static void *hook_local;
static int hook_calls, hook_result_seen_by_joiner;
static volatile int hook_target_done;

static void exit_hook(struct coop_greenlet *g)
{
    int local;
    hook_calls++;
    hook_g = g;
    hook_local = &local;
    /* slot set by the greenlet is still there */
    if (*coop_greenlet_slot(g) == (void *)0x5107)
        hook_result_seen_by_joiner = 1;
}

static void *slot_initial = (void *)1;

static void *slot_body(void *unused)
{
    (void)unused;
    slot_initial = *coop_greenlet_slot(coop_self());
    *coop_greenlet_slot(coop_self()) = (void *)0x5107;
    return NULL;
}

START_TEST(test_exit_hook_and_slot)
{
    hook_calls = 0;
    hook_result_seen_by_joiner = 0;
    atomic_store(&ident_go, 1);
    coop_set_exit_hook(exit_hook);
    struct ident_probe p = { 0 };
    struct coop_greenlet *g = unit_spawn(ident_body, &p);
    unit_join(g);
    ck_assert_int_eq(hook_calls, 1);      /* ran before the joiner woke */
    ck_assert_ptr_eq(hook_g, g);
    ck_assert((char *)hook_local >= (char *)p.base && (char *)hook_local < (char *)p.base + p.size);

    g = unit_spawn(slot_body, NULL);
    unit_join(g);
    ck_assert_int_eq(hook_calls, 2);
    ck_assert_int_eq(hook_result_seen_by_joiner, 1);
    ck_assert_ptr_null(slot_initial);
    coop_set_exit_hook(NULL);
    unit_join(unit_spawn(return_arg, NULL));
    ck_assert_int_eq(hook_calls, 2);
}
END_TEST

/* The executable's own thread-locals are per greenlet (core/tls.c). */
static __thread int tls_counter = 17;
static __thread char tls_zero[64];

struct tls_probe { int start, end; char zero_start; };

static void *tls_body(void *arg)
{
    struct tls_probe *p = arg;
    p->start = tls_counter;
    p->zero_start = tls_zero[10];
    for (int i = 0; i < 5; i++) {
        tls_counter += 100;
        tls_zero[10] = 'x';
        coop_yield();
    }
    p->end = tls_counter;
    return NULL;
}

START_TEST(test_program_tls_per_greenlet)
{
    tls_counter = 5;
    tls_zero[10] = 'm';
    struct tls_probe p[2] = { { 0 }, { 0 } };
    struct coop_greenlet *a = unit_spawn(tls_body, &p[0]);
    struct coop_greenlet *b = unit_spawn(tls_body, &p[1]);
    unit_join(a);
    unit_join(b);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(p[i].start, 17);     /* the initial value, not the spawner's */
        ck_assert_int_eq(p[i].zero_start, 0);
        ck_assert_int_eq(p[i].end, 17 + 500);
    }
    ck_assert_int_eq(tls_counter, 5);
    ck_assert_int_eq(tls_zero[10], 'm');
}
END_TEST

/* glibc's own thread-locals are per greenlet too, fresh as in a new thread: errno's
 * address, the locale set with uselocale, and malloc working from each. */
struct libc_tls_probe { int *errno_at; locale_t start_locale; bool own_locale_kept; };

static void *libc_tls_body(void *arg)
{
    struct libc_tls_probe *p = arg;
    p->errno_at = &errno;
    p->start_locale = uselocale((locale_t)0);
    locale_t mine = duplocale(LC_GLOBAL_LOCALE);
    uselocale(mine);
    void *blocks[16];
    for (int i = 0; i < 16; i++)
        blocks[i] = malloc(32 + 16 * (size_t)i);
    coop_yield();
    for (int i = 0; i < 16; i++)
        free(blocks[i]);
    p->own_locale_kept = uselocale((locale_t)0) == mine;
    uselocale(LC_GLOBAL_LOCALE);
    freelocale(mine);
    return NULL;
}

START_TEST(test_libc_tls_per_greenlet)
{
    locale_t main_locale = duplocale(LC_GLOBAL_LOCALE);
    uselocale(main_locale);
    for (int round = 0; round < 3; round++) {     /* later rounds reuse malloc state */
        struct libc_tls_probe p[2] = { { 0 }, { 0 } };
        struct coop_greenlet *a = unit_spawn(libc_tls_body, &p[0]);
        struct coop_greenlet *b = unit_spawn(libc_tls_body, &p[1]);
        unit_join(a);
        unit_join(b);
        for (int i = 0; i < 2; i++) {
            ck_assert_ptr_ne(p[i].errno_at, &errno);
            ck_assert_ptr_eq(p[i].start_locale, LC_GLOBAL_LOCALE);   /* not the spawner's */
            ck_assert(p[i].own_locale_kept);
        }
        ck_assert_ptr_ne(p[0].errno_at, p[1].errno_at);
    }
    ck_assert_ptr_eq(uselocale((locale_t)0), main_locale);
    uselocale(LC_GLOBAL_LOCALE);
    freelocale(main_locale);
}
END_TEST

struct thread_hub_probe {
    bool mark_runtime;
    struct coop_greenlet *self_before_spawn, *self_after_spawn;
    struct coop_hub *hub;
    uintptr_t thread, greenlet_os_thread;
    bool greenlet_is_main;
    int spawn_err, sum;
};

static void *small_work(void *arg)
{
    coop_sleep_until(coop_now() + MS(2));
    coop_yield();
    return (void *)((intptr_t)arg + 1);
}

static void *report_os_thread(void *arg)
{
    *(uintptr_t *)arg = coop_greenlet_os_thread(coop_self());
    return NULL;
}

/* A thread that is no hub creates greenlets: the hubs run them, it stays a plain thread
 * and joins them by sleeping in the parking lot. */
static void *thread_spawns(void *arg)
{
    struct thread_hub_probe *p = arg;
    p->thread = (uintptr_t)pthread_self();
    if (p->mark_runtime)
        coop_mark_runtime_thread();
    p->self_before_spawn = coop_self();
    struct coop_greenlet *g[4];
    struct coop_spawn_attr attr = { .guard_size = 4096 };
    p->spawn_err = coop_spawn(&g[0], small_work, NULL, &attr);
    if (p->spawn_err != 0)
        return NULL;
    p->self_after_spawn = coop_self();
    p->hub = coop_thread.hub;
    for (intptr_t i = 1; i < 4; i++)
        coop_spawn(&g[i], small_work, (void *)(i * 10), &attr);
    p->greenlet_is_main = coop_greenlet_is_main(g[0]);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        coop_join(g[i], &r, COOP_NO_DEADLINE);
        p->sum += (int)(intptr_t)r;
    }
    struct coop_greenlet *where;
    coop_spawn(&where, report_os_thread, &p->greenlet_os_thread, &attr);
    coop_join(where, NULL, COOP_NO_DEADLINE);
    return NULL;
}

static void *foreign_joiner(void *g)
{
    void *r = NULL;
    return coop_join(g, &r, COOP_NO_DEADLINE) == 0 ? r : NULL;
}

START_TEST(test_join_from_other_thread)
{
    /* A thread that is no greenlet joins one and gets its result; the greenlet, which may
     * still be leaving its stack when the joiner sees it finished, is freed by its hub. */
    struct coop_greenlet *g;
    struct coop_spawn_attr attr = { .guard_size = 4096 };
    ck_assert_int_eq(coop_spawn(&g, small_work, (void *)41, &attr), 0);
    pthread_t t;
    void *r;
    ck_assert_int_eq(pthread_create(&t, NULL, foreign_joiner, g), 0);
    while (pthread_tryjoin_np(t, &r) == EBUSY)
        coop_sleep_until(coop_now() + MS(1));
    ck_assert_ptr_eq(r, (void *)42);
    for (int i = 0; i < 5000 && !released(g); i++)
        coop_sleep_until(coop_now() + MS(1));
    ck_assert(released(g));
}
END_TEST

START_TEST(test_other_threads)
{
    struct thread_hub_probe p = { 0 };
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, thread_spawns, &p), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(p.spawn_err, 0);
    ck_assert_ptr_null(p.self_before_spawn);
    ck_assert_ptr_null(p.self_after_spawn);         /* still no greenlet */
    ck_assert_ptr_null(p.hub);                      /* and no hub */
    ck_assert(!p.greenlet_is_main);
    ck_assert_int_eq(p.sum, 1 + 11 + 21 + 31);
    ck_assert_uint_ne(p.greenlet_os_thread, p.thread);   /* a hub's thread ran it */
    ck_assert_uint_ne(p.greenlet_os_thread, 0);

    /* A runtime thread gets none: no greenlet, no spawning. */
    struct thread_hub_probe r = { .mark_runtime = true };
    ck_assert_int_eq(pthread_create(&t, NULL, thread_spawns, &r), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_ptr_null(r.hub);
    ck_assert_int_eq(r.spawn_err, ENOSYS);
}
END_TEST

Suite *greenlet_suite(void)
{
    Suite *s = suite_create("greenlet");
    TCase *tc = unit_tcase("lifecycle");
    tcase_add_test(tc, test_spawn_join_results);
    tcase_add_test(tc, test_fifo_first_runs);
    tcase_add_test(tc, test_yield_interleaves);
    tcase_add_test(tc, test_detach);
    tcase_add_test(tc, test_join_finished);
    tcase_add_test(tc, test_tryjoin_busy_and_timed_join);
    tcase_add_test(tc, test_join_errors);
    tcase_add_test(tc, test_ten_thousand);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_identity_main_and_spawned);
    tcase_add_test(tc, test_spawn_stacks);
    tcase_add_test(tc, test_exit_hook_and_slot);
    tcase_add_test(tc, test_program_tls_per_greenlet);
    tcase_add_test(tc, test_libc_tls_per_greenlet);
    tcase_add_test(tc, test_join_from_other_thread);
    tcase_add_test(tc, test_other_threads);
    suite_add_tcase(s, tc);
    return s;
}
