/*
 * Deadlines: coop_sleep_until and the hub's deadline heap (timer.c), including removals
 * from the middle of the heap when waits end early, and interruption by signal handlers
 * (coop_interrupt).
 *
 * Nothing here assumes how fast the machine is: a sleep may not end before its deadline,
 * but how late it ends is the machine's business (make bench measures it). A greenlet that
 * first runs after its deadline (a loaded machine) returns at once; the order checks skip
 * it. A wait that must be ended by an event has no deadline, or one far away: if the event
 * were lost, Check's time-out would say so.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdatomic.h>

#include "unit.h"

START_TEST(test_sleep_duration)
{
    static const int ms[] = { 1, 20, 50 };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        int64_t t0 = coop_now();
        ck_assert_int_eq(coop_sleep_until(t0 + MS(ms[i])), 0);
        int64_t slept = coop_now() - t0;
        ck_assert_msg(slept >= MS(ms[i]), "asked %d ms, slept %lld us", ms[i], (long long)(slept / 1000));
    }
    /* Deadlines already past (or now) return at once. */
    int64_t t0 = coop_now();
    ck_assert_int_eq(coop_sleep_until(t0), 0);
    ck_assert_int_eq(coop_sleep_until(t0 - MS(1000)), 0);
    ck_assert_int_eq(coop_sleep_until(0), 0);
}
END_TEST

/* The monitor starts with the first greenlet made; until then coop_stamp reads the clock. */
static void *nothing(void *arg) { return arg; }

static void start_the_monitor(void)
{
    unit_join(unit_spawn(nothing, NULL));
    ck_assert_int_eq(coop_monitor_threads(), 1);
}

/* A hub whose thread is blocked in a call coop cannot make cooperative polls no more; its
 * stamp (coop_stamp, what a dump shows as "for N s") still moves, by the monitor's ticks.
 * The greenlet never yields, so only those can end the loop; without them it hangs. */
START_TEST(test_stamp_moves_while_the_hub_is_blocked)
{
    start_the_monitor();
    int64_t polled = coop_stamp();
    struct timespec ms1 = { 0, MS(1) };
    do
        nanosleep(&ms1, NULL);              /* really blocks this thread */
    while (coop_stamp() <= polled);
}
END_TEST

struct sleeper { int64_t deadline, woke; int result; int index; bool waited; };
static int wake_order[512];
static _Atomic int wake_len;     /* sleepers on different hubs may wake at once */

static void *sleeper_body(void *arg)
{
    struct sleeper *s = arg;
    s->waited = coop_now() < s->deadline;      /* false if it first ran too late (load) */
    s->result = coop_sleep_until(s->deadline);
    s->woke = coop_now();
    wake_order[atomic_fetch_add(&wake_len, 1)] = s->index;
    return NULL;
}

START_TEST(test_sleepers_wake_in_deadline_order)
{
    static const int ms[] = { 30, 10, 50, 20, 40, 60 };
    enum { N = sizeof ms / sizeof ms[0] };
    struct sleeper s[N];
    struct coop_greenlet *g[N];
    wake_len = 0;
    /* On one hub the greenlets first run when this one joins: the deadlines are set just
     * before. With several, another hub may run them at once: the deadlines are set first. */
    bool one_hub = unit_one_hub();
    uint64_t handoffs = unit_handoffs();
    int64_t base = coop_now() + MS(20);
    for (int i = 0; i < N; i++) {
        s[i] = (struct sleeper){ .index = i, .deadline = one_hub ? 0 : base + MS(ms[i]) };
        g[i] = unit_spawn(sleeper_body, &s[i]);
    }
    base = coop_now() + MS(20);
    for (int i = 0; i < N && one_hub; i++)
        s[i].deadline = base + MS(ms[i]);
    for (int i = 0; i < N; i++)
        unit_join(g[i]);
    ck_assert_int_eq(wake_len, N);
    int64_t last = 0;
    for (int i = 0; i < N; i++) {
        struct sleeper *w = &s[wake_order[i]];
        ck_assert_int_eq(w->result, 0);
        ck_assert(w->woke >= w->deadline);
        /* One heap fires in deadline order; heaps of several hubs each fire their own. */
        if (w->waited && one_hub && unit_handoffs() == handoffs) {
            ck_assert_msg(last <= w->deadline, "wake %d out of deadline order", i);
            last = w->deadline;
        }
    }
}
END_TEST

static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

START_TEST(test_many_sleepers_heap_order)
{
    enum { N = 300 };
    static struct sleeper s[N];
    static struct coop_greenlet *g[N];
    wake_len = 0;
    uint64_t handoffs = unit_handoffs();
    int64_t base = coop_now() + MS(20);
    for (int i = 0; i < N; i++) {
        /* 0..100 ms, with many equal deadlines (whole milliseconds) */
        s[i] = (struct sleeper){ .deadline = base + MS(rng() % 100), .index = i };
        g[i] = unit_spawn(sleeper_body, &s[i]);
    }
    for (int i = 0; i < N; i++)
        unit_join(g[i]);
    ck_assert_int_eq(wake_len, N);
    /* Those that really waited (under heavy load a greenlet may first run after its
     * deadline and return at once, in spawn order) woke in deadline order. */
    int64_t last = 0;
    for (int i = 0; i < N; i++) {
        struct sleeper *w = &s[wake_order[i]];
        ck_assert(w->woke >= w->deadline);
        if (!w->waited)
            continue;
        /* One heap fires in deadline order; heaps of several hubs each fire their own. */
        ck_assert_msg(last <= w->deadline || !unit_one_hub() || unit_handoffs() != handoffs,
                      "wake %d out of deadline order", i);
        last = w->deadline;
    }
}
END_TEST

struct parked { int addr; int64_t deadline, woke; int result, index; bool waited; };

static void *timed_park_body(void *arg)
{
    struct parked *p = arg;
    p->waited = coop_now() < p->deadline;
    p->result = coop_park(&p->addr, NULL, NULL, ~0u, p->deadline, "unit");
    p->woke = coop_now();
    if (p->result == ETIMEDOUT)
        wake_order[atomic_fetch_add(&wake_len, 1)] = p->index;
    return NULL;
}

START_TEST(test_early_wakes_leave_heap_consistent)
{
    enum { N = 100 };
    static struct parked p[N];
    static struct coop_greenlet *g[N];
    static int unparked[N];
    memset(unparked, 0, sizeof unparked);
    wake_len = 0;
    uint64_t handoffs = unit_handoffs();
    int64_t base = coop_now();
    for (int i = 0; i < N; i++) {
        p[i] = (struct parked){ .deadline = base + MS(100 + rng() % 100), .index = i };
        g[i] = unit_spawn(timed_park_body, &p[i]);
    }
    coop_yield();                        /* every greenlet runs to its park first */
    /* End every third wait early: each leaves the heap from wherever it sits. (On a machine
     * slow enough, some have timed out by now: they are no longer parked.) */
    for (int i = 0; i < N; i += 3)
        unparked[i] = coop_unpark(&p[i].addr, 1, ~0u);
    for (int i = 0; i < N; i++)
        unit_join(g[i]);
    int timed_out = 0;
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0 && unparked[i] == 1) {
            ck_assert_int_eq(p[i].result, 0);
        } else {
            ck_assert_int_eq(unparked[i], 0);
            ck_assert_int_eq(p[i].result, ETIMEDOUT);
            ck_assert(p[i].woke >= p[i].deadline);
            timed_out++;
        }
    }
    ck_assert_int_eq(wake_len, timed_out);
    int64_t last = 0;
    for (int i = 0; i < wake_len; i++) {
        struct parked *w = &p[wake_order[i]];
        /* One heap fires in deadline order; heaps of several hubs each fire their own. */
        if (w->waited && unit_one_hub() && unit_handoffs() == handoffs) {
            ck_assert_msg(last <= w->deadline, "timeout %d out of deadline order", i);
            last = w->deadline;
        }
    }
}
END_TEST

/* A late deadline armed first, then an earlier one: the timer must be re-armed. */
START_TEST(test_earlier_deadline_rearms)
{
    /* Not re-armed, the hub would wait an hour for the late one: Check's time-out says so. */
    struct sleeper late = { .deadline = coop_now() + MS(3600 * 1000LL), .index = 0 };
    struct coop_greenlet *g = unit_spawn(sleeper_body, &late);
    unit_wait_in(g, WAIT_SLEEP);              /* g now sleeps for an hour */
    int64_t t0 = coop_now();
    ck_assert_int_eq(coop_sleep_until(t0 + MS(20)), 0);
    ck_assert(coop_now() - t0 >= MS(20));
    coop_interrupt(g, false);
    unit_join(g);
    ck_assert_int_eq(late.result, EINTR);
}
END_TEST

static void *long_sleeper(void *arg)
{
    struct sleeper *s = arg;
    s->result = coop_sleep_until(s->deadline);
    s->woke = coop_now();
    return NULL;
}

START_TEST(test_interrupt_sleep)
{
    for (int restartable = 0; restartable < 2; restartable++) {
        struct sleeper s = { .deadline = coop_now() + MS(5000) };
        struct coop_greenlet *g = unit_spawn(long_sleeper, &s);
        unit_wait_in(g, WAIT_SLEEP);
        int64_t t0 = coop_now();
        coop_interrupt(g, restartable);
        unit_join(g);
        ck_assert_int_eq(s.result, restartable ? COOP_RESTART : EINTR);  /* not the 5 s timeout */
        ck_assert(s.woke >= t0);
    }
}
END_TEST

static void on_usr1(int sig)
{
    (void)sig;
    coop_interrupt(NULL, false);     /* NULL: the main greenlet, as the kernel prefers */
}

static int64_t raised_at;

static void *raise_once_main_sleeps(void *main_g)
{
    unit_wait_in(main_g, WAIT_SLEEP);
    raised_at = coop_now();
    raise(SIGUSR1);
    return NULL;
}

START_TEST(test_interrupt_main_from_handler)
{
    struct sigaction sa = { .sa_handler = on_usr1 }, old;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    struct coop_greenlet *g = unit_spawn(raise_once_main_sleeps, coop_self());
    int r = coop_sleep_until(coop_now() + MS(5000));
    int64_t woke = coop_now();
    unit_join(g);
    sigaction(SIGUSR1, &old, NULL);
    ck_assert_int_eq(r, EINTR);              /* not the 5 s timeout */
    ck_assert(woke >= raised_at);            /* by the signal */
}
END_TEST

/* --- the heap itself, on hubs and records of the test's own (nothing runs on them) --- */

enum { HEAP_RECORDS = 2000 };

/* Records in heaps of two hubs, checked against a plain model: random adds, removals from
 * anywhere, moves of a whole heap and pops of the earliest; deadlines often equal. */
START_TEST(test_heap_against_a_model)
{
    struct coop_hub *hubs = calloc(2, sizeof *hubs);
    struct coop_greenlet *recs = calloc(HEAP_RECORDS, sizeof *recs);
    int64_t model[HEAP_RECORDS];
    int where[HEAP_RECORDS];                 /* the hub holding it, or -1 */
    int len[2] = { 0, 0 };
    ck_assert(hubs != NULL && recs != NULL);
    hubs[0].index = 0;
    hubs[1].index = 1;
    for (int i = 0; i < HEAP_RECORDS; i++)
        where[i] = -1;
    for (int step = 0; step < 200000; step++) {
        int i = (int)(rng() % HEAP_RECORDS), op = (int)(rng() % 100);
        if (op < 50 && where[i] < 0) {
            int hub = (int)(rng() % 2);
            /* Many equal deadlines; a unique one for each pop below. */
            model[i] = (int64_t)(rng() % 64) * HEAP_RECORDS + i;
            coop_timer_add(&hubs[hub], &recs[i], model[i]);
            where[i] = hub;
            len[hub]++;
        } else if (op < 90 && where[i] >= 0) {
            coop_timer_remove(&recs[i]);
            len[where[i]]--;
            where[i] = -1;
        } else if (op < 91) {
            int from = (int)(rng() % 2);
            coop_timer_move(&hubs[from], &hubs[1 - from]);
            for (int k = 0; k < HEAP_RECORDS; k++)
                if (where[k] == from)
                    where[k] = 1 - from;
            len[1 - from] += len[from];
            len[from] = 0;
        } else if (op < 100) {
            int hub = (int)(rng() % 2), first = -1;
            for (int k = 0; k < HEAP_RECORDS; k++)
                if (where[k] == hub && (first < 0 || model[k] < model[first]))
                    first = k;
            ck_assert_int_eq(coop_timer_next(&hubs[hub]), first < 0 ? COOP_NO_DEADLINE : model[first]);
            if (first >= 0) {
                coop_timer_remove(&recs[first]);
                where[first] = -1;
                len[hub]--;
            }
        }
        ck_assert_int_eq(hubs[0].heap_len, len[0]);
        ck_assert_int_eq(hubs[1].heap_len, len[1]);
    }
    /* Emptied earliest first, each heap gives its deadlines in order. */
    for (int hub = 0; hub < 2; hub++) {
        int64_t last = INT64_MIN;
        while (len[hub] > 0) {
            int64_t next = coop_timer_next(&hubs[hub]);
            ck_assert(next >= last);
            int k = (int)(next % HEAP_RECORDS);
            ck_assert_int_eq(where[k], hub);
            coop_timer_remove(&recs[k]);
            where[k] = -1;
            len[hub]--;
            last = next;
        }
        ck_assert_int_eq(coop_timer_next(&hubs[hub]), COOP_NO_DEADLINE);
        ck_assert_int_eq(hubs[hub].heap_len, 0);
    }
    free(recs);
    free(hubs);
}
END_TEST

/* Out of memory, a wait still gets its deadline (a preempted greenlet's requeue, a sleep):
 * the runtime aborted when a heap had to grow under ulimit -v (test_faults_threads). In a
 * child: its address space is capped where it stands and malloc is used up first. */
static void add_deadlines_without_memory(void *unused)
{
    (void)unused;
    enum { N = 20000 };
    struct coop_hub *h = calloc(1, sizeof *h);
    struct coop_greenlet *recs = calloc(N, sizeof *recs);
    long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (h == NULL || recs == NULL || statm == NULL || fscanf(statm, "%ld", &pages) != 1)
        _exit(2);
    fclose(statm);
    struct rlimit as = { .rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE), .rlim_max = RLIM_INFINITY };
    if (setrlimit(RLIMIT_AS, &as) != 0)
        _exit(2);
    static const size_t sizes[] = { 1 << 20, 1 << 16, 1 << 12, 256, 16 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        while (malloc(sizes[i]) != NULL)
            ;
    if (malloc(16) != NULL)
        _exit(2);                            /* memory is not used up: no test */
    for (int i = 0; i < N; i++)
        coop_timer_add(h, &recs[i], (int64_t)(rng() % 1000) * N + i);
    int64_t last = INT64_MIN;
    for (int i = 0; i < N; i++) {
        int64_t next = coop_timer_next(h);
        if (next < last)
            _exit(3);
        coop_timer_remove(&recs[next % N]);
        last = next;
    }
    _exit(h->heap_len == 0 && coop_timer_next(h) == COOP_NO_DEADLINE ? 0 : 3);
}

/* A waiter takes its deadline out (coop_timer_remove) while an adopter moves the heap that
 * holds it to another hub (coop_timer_move), on two OS threads: the remove must not take a
 * record that is between the two heaps for one that is in none, or the move puts it back
 * after the wait has ended and the next add links it twice (seen under MariaDB: a
 * corrupt heap in the next remove). Every record added is gone from both heaps at the end. */
#ifdef __SANITIZE_ADDRESS__
/* ASan makes a round ~7x slower: 20000 outlasted the hang guard on a VM with slow futex calls. */
enum { MOVED_RECORDS = 64, MOVE_ROUNDS = 4000 };
#else
enum { MOVED_RECORDS = 64, MOVE_ROUNDS = 20000 };
#endif
static struct coop_hub *move_hubs;
static atomic_bool moves_stop;

static void *keep_moving(void *unused)
{
    while (!atomic_load(&moves_stop)) {
        coop_timer_move(&move_hubs[0], &move_hubs[1]);
        coop_timer_move(&move_hubs[1], &move_hubs[0]);
    }
    return unused;
}

START_TEST(test_remove_during_a_move)
{
    move_hubs = calloc(2, sizeof *move_hubs);
    struct coop_greenlet *recs = calloc(MOVED_RECORDS, sizeof *recs);
    ck_assert(move_hubs != NULL && recs != NULL);
    move_hubs[1].index = 1;
    atomic_store(&moves_stop, false);
    pthread_t mover;
    ck_assert_int_eq(pthread_create(&mover, NULL, keep_moving, NULL), 0);
    int left = 0;
    for (int round = 0; round < MOVE_ROUNDS && left == 0; round++) {
        for (int i = 0; i < MOVED_RECORDS; i++)
            coop_timer_add(&move_hubs[(round + i) % 2], &recs[i], round);
        for (int i = 0; i < MOVED_RECORDS; i++)
            coop_timer_remove(&recs[i]);
        atomic_thread_fence(memory_order_seq_cst);
        for (int i = 0; i < MOVED_RECORDS; i++)
            left += __atomic_load_n(&recs[i].timer_hub, __ATOMIC_ACQUIRE) != NULL;
    }
    atomic_store(&moves_stop, true);
    pthread_join(mover, NULL);
    for (int i = 0; i < MOVED_RECORDS; i++)
        left += recs[i].timer_hub != NULL;
    ck_assert_msg(left == 0 && move_hubs[0].heap_len == 0 && move_hubs[1].heap_len == 0,
                  "records still in a heap after their removal: %d (heap lengths %d and %d)", left,
                  move_hubs[0].heap_len, move_hubs[1].heap_len);
    free(recs);
    free(move_hubs);
}
END_TEST

START_TEST(test_deadlines_need_no_memory)
{
#ifdef __SANITIZE_ADDRESS__
    return;           /* ASan's malloc aborts rather than return NULL, and maps its shadow */
#endif
    int status = unit_run_child(add_deadlines_without_memory, NULL, UNIT_CHILD_GUARD_MS, NULL, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %s %d",
                  WIFSIGNALED(status) ? "killed by signal" : "exit status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
END_TEST

Suite *timer_suite(void)
{
    Suite *s = suite_create("timer");
    TCase *tc = unit_tcase("deadlines");
    tcase_add_test(tc, test_sleep_duration);
    tcase_add_test(tc, test_stamp_moves_while_the_hub_is_blocked);
    tcase_add_test(tc, test_sleepers_wake_in_deadline_order);
    tcase_add_test(tc, test_many_sleepers_heap_order);
    tcase_add_test(tc, test_early_wakes_leave_heap_consistent);
    tcase_add_test(tc, test_earlier_deadline_rearms);
    tcase_add_test(tc, test_interrupt_sleep);
    tcase_add_test(tc, test_interrupt_main_from_handler);
    tcase_add_test(tc, test_heap_against_a_model);
    tcase_add_test(tc, test_deadlines_need_no_memory);
    tcase_add_test(tc, test_remove_during_a_move);
    suite_add_tcase(s, tc);
    return s;
}
