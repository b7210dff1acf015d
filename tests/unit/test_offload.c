/*
 * coop_offload (offload.c): blocking work on libuv's threadpool while the calling greenlet
 * waits and the others run. Proofs by construction: a job that waits until the hub's ticker
 * has ticked, or until all jobs have started, could not end if the hub were blocked or the
 * jobs ran one at a time (Check's time-out would say so).
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

struct job {
    int ms;
    _Atomic int *arrived;      /* counted up when the job starts, if set */
    _Atomic int *gate;         /* after ms, the job waits until *gate reaches gate_at */
    int gate_at;
    pid_t tid;
    bool had_greenlet;
    _Atomic int done;
};

static void blocking_job(void *arg)
{
    struct job *j = arg;
    j->tid = gettid();
    j->had_greenlet = coop_self() != NULL;
    if (j->arrived != NULL)
        atomic_fetch_add(j->arrived, 1);
    struct timespec ts = { 0, j->ms * 1000000L }, tick = { 0, 1000000L };
    nanosleep(&ts, NULL);                /* really blocks this thread */
    while (j->gate != NULL && atomic_load(j->gate) < j->gate_at)
        nanosleep(&tick, NULL);
    atomic_store(&j->done, 1);
}

static volatile int ticking;
static _Atomic int ticks;

static void *ticker(void *unused)
{
    (void)unused;
    while (ticking) {
        coop_sleep_until(coop_now() + MS(1));
        ticks++;
    }
    return NULL;
}

START_TEST(test_offload_runs_elsewhere_while_others_run)
{
    ticking = 1;
    ticks = 0;
    struct coop_greenlet *t = unit_spawn(ticker, NULL);
    /* The job ends only once the ticker, on the hub, has ticked 3 times. */
    struct job j = { .ms = 60, .gate = &ticks, .gate_at = 3 };
    int64_t t0 = coop_now();
    coop_offload(blocking_job, &j);
    int64_t took = coop_now() - t0;
    ticking = 0;
    unit_join(t);
    ck_assert_int_eq(atomic_load(&j.done), 1);     /* returns only once fn has returned */
    ck_assert_int_ne(j.tid, gettid());
    ck_assert(!j.had_greenlet);                     /* pool threads are runtime threads */
    ck_assert(took >= MS(60));
}
END_TEST

static void *offloader(void *arg)
{
    coop_offload(blocking_job, arg);
    return NULL;
}

START_TEST(test_offload_in_parallel)
{
    enum { N = 4 };
    struct job j[N];
    struct coop_greenlet *g[N];
    static _Atomic int started;
    started = 0;
    /* Each job waits until all N have started: run one at a time, none would end. */
    for (int i = 0; i < N; i++) {
        j[i] = (struct job){ .ms = 10, .arrived = &started, .gate = &started, .gate_at = N };
        g[i] = unit_spawn(offloader, &j[i]);
    }
    for (int i = 0; i < N; i++)
        unit_join(g[i]);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(atomic_load(&j[i].done), 1);
}
END_TEST

/* The pool's first submission starts its threads, and libuv waits until each runs: a
 * thread of its own makes it while the caller parks. Here libuv's threads, created through
 * the pointer shim/real.c fills, are held until the test has seen the caller park in its
 * offload wait; started on the caller's hub thread, the pool would never let it park. */
extern void *coop_real_pthread_create;
static void *real_pthread_create;
static _Atomic bool pool_released;

struct held_thread {
    void *(*fn)(void *);
    void *arg;
};

static void *run_once_released(void *p)
{
    struct held_thread held = *(struct held_thread *)p;
    free(p);
    struct timespec tick = { 0, 100000 };
    while (!atomic_load(&pool_released))
        nanosleep(&tick, NULL);
    return held.fn(held.arg);
}

static int create_held_thread(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    struct held_thread *held = malloc(sizeof *held);
    ck_assert_ptr_nonnull(held);
    *held = (struct held_thread){ fn, arg };
    int (*create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) = real_pthread_create;
    return create(t, attr, run_once_released, held);
}

/* Spawns fn, whose first offload starts the pool, and returns once it is parked while
 * the pool's threads are held; false if the pool had started already (CK_FORK=no). */
static bool spawn_while_the_pool_starts(void *(*fn)(void *), void *arg, struct coop_greenlet **g)
{
    if (coop_offload_threads() != 0)
        return false;
    real_pthread_create = coop_real_pthread_create;
    coop_real_pthread_create = (void *)create_held_thread;
    *g = unit_spawn(fn, arg);
    unit_wait_in(*g, WAIT_OFFLOAD);
    return true;
}

static void release_the_pool(void)
{
    coop_real_pthread_create = real_pthread_create;
    atomic_store(&pool_released, true);
}

START_TEST(test_offload_pool_starts_while_the_caller_parks)
{
    struct job j = { .ms = 1 };
    struct coop_greenlet *g;
    if (!spawn_while_the_pool_starts(offloader, &j, &g))
        return;
    release_the_pool();
    unit_join(g);
    ck_assert_int_eq(atomic_load(&j.done), 1);
    ck_assert_int_gt(coop_offload_threads(), 0);
}
END_TEST

static int no_thread(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    (void)t, (void)attr, (void)fn, (void)arg;
    return EAGAIN;
}

/* Where no starter thread can be made, the caller starts the pool itself, as before. */
START_TEST(test_offload_pool_starts_in_the_caller_without_a_thread)
{
    if (coop_offload_threads() != 0)
        return;                  /* CK_FORK=no: an earlier test started the pool */
    coop_settings.os_thread_create = no_thread;
    struct job j = { .ms = 1 };
    coop_offload(blocking_job, &j);
    coop_settings.os_thread_create = pthread_create;
    ck_assert_int_eq(atomic_load(&j.done), 1);
    ck_assert_int_ne(j.tid, gettid());               /* on the pool all the same */
    ck_assert_int_gt(coop_offload_threads(), 0);
}
END_TEST

static struct job interrupted_job;
static int done_when_returned = -1;

static void *offload_then_report(void *unused)
{
    (void)unused;
    coop_offload(blocking_job, &interrupted_job);
    done_when_returned = atomic_load(&interrupted_job.done);
    return NULL;
}

START_TEST(test_offload_wait_survives_interrupt)
{
    interrupted_job = (struct job){ .ms = 50 };
    struct coop_greenlet *g = unit_spawn(offload_then_report, NULL);
    coop_sleep_until(coop_now() + MS(10));
    coop_interrupt(g, false);
    unit_join(g);
    ck_assert_int_eq(done_when_returned, 1);
}
END_TEST

/* A job that blocks in the kernel until cancelled: a futex wait on its word. */
struct cancellable {
    _Atomic uint32_t started, cancelled;
    int cancels, result;
};

static void wait_for_cancel(void *arg)
{
    struct cancellable *c = arg;
    atomic_store(&c->started, 1);
    while (atomic_load(&c->cancelled) == 0)
        syscall(SYS_futex, &c->cancelled, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void cancel_wait(void *arg)
{
    struct cancellable *c = arg;
    c->cancels++;
    atomic_store(&c->cancelled, 1);
    syscall(SYS_futex, &c->cancelled, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *offload_cancellable(void *arg)
{
    struct cancellable *c = arg;
    c->result = coop_offload_interruptible(wait_for_cancel, cancel_wait, c);
    return NULL;
}

START_TEST(test_offload_interrupt_cancels_the_work)
{
    struct cancellable c = { 0 };
    struct coop_greenlet *g = unit_spawn(offload_cancellable, &c);
    while (atomic_load(&c.started) == 0)       /* the work is under way on the pool */
        coop_sleep_until(coop_now() + MS(1));
    /* g may be between its waits for the pool's start and for the work, where (as in the
     * kernel) a signal interrupts nothing: again until one lands in a wait. */
    while (atomic_load(&c.cancelled) == 0) {
        coop_interrupt(g, true);
        coop_sleep_until(coop_now() + MS(1));
    }
    unit_join(g);
    ck_assert_int_eq(c.cancels, 1);
    ck_assert_int_eq(c.result, COOP_RESTART);    /* the handler's kind of interruption */
}
END_TEST

/* A handler that interrupts the wait while the pool starts (the work not even queued)
 * still cancels the work: the wait for the start keeps the interruption for the rest. */
START_TEST(test_offload_interrupt_while_the_pool_starts)
{
    struct cancellable c = { 0 };
    struct coop_greenlet *g;
    if (!spawn_while_the_pool_starts(offload_cancellable, &c, &g))
        return;
    coop_interrupt(g, true);
    release_the_pool();
    unit_join(g);
    ck_assert_int_eq(c.cancels, 1);
    ck_assert_int_eq(c.result, COOP_RESTART);
}
END_TEST

static void *runtime_thread_offloads(void *arg)
{
    coop_mark_runtime_thread();
    coop_offload(blocking_job, arg);
    return (void *)(intptr_t)gettid();
}

START_TEST(test_offload_inline_without_greenlet)
{
    struct job j = { .ms = 1 };
    pthread_t t;
    void *tid = NULL;
    ck_assert_int_eq(pthread_create(&t, NULL, runtime_thread_offloads, &j), 0);
    ck_assert_int_eq(pthread_join(t, &tid), 0);
    ck_assert_int_eq(atomic_load(&j.done), 1);
    ck_assert_int_eq(j.tid, (pid_t)(intptr_t)tid);    /* ran on the caller's thread */
}
END_TEST

Suite *offload_suite(void)
{
    Suite *s = suite_create("offload");
    TCase *tc = unit_tcase("offload");
    tcase_add_test(tc, test_offload_runs_elsewhere_while_others_run);
    tcase_add_test(tc, test_offload_in_parallel);
    tcase_add_test(tc, test_offload_pool_starts_while_the_caller_parks);
    tcase_add_test(tc, test_offload_pool_starts_in_the_caller_without_a_thread);
    tcase_add_test(tc, test_offload_wait_survives_interrupt);
    tcase_add_test(tc, test_offload_interrupt_cancels_the_work);
    tcase_add_test(tc, test_offload_interrupt_while_the_pool_starts);
    tcase_add_test(tc, test_offload_inline_without_greenlet);
    suite_add_tcase(s, tc);
    return s;
}
