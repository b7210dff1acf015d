/*
 * What the core keeps per greenlet for the shim's thread calls: nudges (each wait ends as a
 * spurious wakeup and cleans up), glibc's cancellation word in each greenlet's own control
 * block (held off while the runtime unwinds the greenlet's stack), records that say gone
 * after the join, numbers, and CPU time charged at switches.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "../../core/unwind.h"
#include "unit.h"

static bool never(const void *ctx)
{
    (void)ctx;
    return true;
}

/* Nudges g once it is in a wait of that kind: a nudge before the wait is lost. */
static void nudge_in(struct coop_greenlet *g, enum coop_wait_kind kind)
{
    unit_wait_in(g, kind);
    coop_nudge(g);
}

static int parked_result = -1;

static void *park_once(void *addr)
{
    parked_result = coop_park(addr, never, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    return NULL;
}

START_TEST(test_nudge_ends_a_park)
{
    static int word;
    struct coop_greenlet *g = unit_spawn(park_once, &word);
    nudge_in(g, WAIT_PARK);
    unit_join(g);
    ck_assert_int_eq(parked_result, 0);
    ck_assert_int_eq(coop_unpark(&word, 1, ~0u), 0);   /* it left the queue */
}
END_TEST

static int64_t slept_until;

static void *sleep_long(void *arg)
{
    (void)arg;
    int r = coop_sleep_until(coop_now() + MS(5000));
    slept_until = r == 0 ? coop_now() : -1;
    return NULL;
}

START_TEST(test_nudge_ends_a_sleep)
{
    int64_t start = coop_now();
    struct coop_greenlet *g = unit_spawn(sleep_long, NULL);
    nudge_in(g, WAIT_SLEEP);
    unit_join(g);
    ck_assert(slept_until >= start && slept_until < start + MS(5000));
}
END_TEST

struct joiner { struct coop_greenlet *target; int err; };

static void *join_target(void *arg)
{
    struct joiner *j = arg;
    j->err = coop_join(j->target, NULL, COOP_NO_DEADLINE);
    return NULL;
}

/* A nudge that the joiner's cancellation will not act on (none asked, or one already
 * unwinding) leaves it waiting, its claim held; one it acts on ends the join with EINTR and
 * leaves the target joinable. */
START_TEST(test_nudged_joiner_leaves_target_joinable)
{
    static int word;
    struct coop_greenlet *target = unit_spawn(park_once, &word);
    unit_wait_parked(target);       /* on another hub it could park after the unpark below */
    struct joiner j = { target, -1 };
    struct coop_greenlet *joiner = unit_spawn(join_target, &j);
    nudge_in(joiner, WAIT_JOIN);
    ck_assert_int_eq(coop_join(target, NULL, coop_now() + MS(1)), EINVAL);   /* claimed still */
    unit_wait_in(joiner, WAIT_JOIN);
    atomic_fetch_or(coop_greenlet_cancel_state(joiner), COOP_CANCELED);
    coop_nudge(joiner);
    unit_join(joiner);
    ck_assert_int_eq(j.err, EINTR);
    coop_unpark(&word, 1, ~0u);
    ck_assert_int_eq(coop_join(target, NULL, COOP_NO_DEADLINE), 0);
}
END_TEST

static int cancel_word_seen = -1;

static void *disable_cancel(void *arg)
{
    (void)arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    cancel_word_seen = atomic_load(coop_greenlet_cancel_state(coop_self()));
    return NULL;
}

START_TEST(test_cancel_state_is_the_greenlets)
{
    int main_before = atomic_load(coop_greenlet_cancel_state(coop_self()));
    unit_join(unit_spawn(disable_cancel, NULL));
    ck_assert_int_eq(cancel_word_seen & COOP_CANCEL_DISABLED, COOP_CANCEL_DISABLED);
    ck_assert_int_eq(atomic_load(coop_greenlet_cancel_state(coop_self())), main_before);
}
END_TEST

static int word_after_window[2] = { -1, -1 };

/* A pending cancellation, enabled (arg NULL) or not: a cancellation point inside an unwind
 * window (libunwind's read of its pipe), even after a nested window has ended, must not act
 * on it; the window leaves the word as it found it. Without a cancellation buffer here,
 * acting would crash the test. */
static void *cancel_pending_in_window(void *arg)
{
    _Atomic int *word = coop_greenlet_cancel_state(coop_self());
    if (arg != NULL)
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    atomic_fetch_or(word, COOP_CANCELED);
    struct coop_unwind_window window = coop_unwind_begin();
    struct coop_unwind_window nested = coop_unwind_begin();      /* a signal's, in the window */
    coop_unwind_end(nested);
    pthread_testcancel();
    coop_unwind_end(window);
    word_after_window[arg != NULL] = atomic_load(word);
    atomic_fetch_and(word, ~COOP_CANCELED);
    return NULL;
}

static int park_after_window = -1;

/* A cancellation sent during the window: its sender saw cancellation disabled and woke
 * nothing, so the greenlet's next wait must end at once, to look at it. */
static void *cancel_sent_in_window(void *arg)
{
    _Atomic int *word = coop_greenlet_cancel_state(coop_self());
    struct coop_unwind_window window = coop_unwind_begin();
    atomic_fetch_or(word, COOP_CANCELED);       /* as another thread's pthread_cancel */
    coop_unwind_end(window);
    park_after_window = coop_park(arg, never, NULL, ~0u, coop_now() + MS(20000), "unit");
    atomic_fetch_and(word, ~COOP_CANCELED);
    return NULL;
}

static int reason_after_leaving = -1;

/* The same, when the window ends after the greenlet's wait has looked for a nudge, while it
 * switches away (a sample's window; as coop_suspend, but the window comes after its look):
 * the wait must still end, nudged, not at its deadline. */
static void *cancel_sent_while_leaving(void *arg)
{
    (void)arg;
    struct coop_greenlet *g = coop_self();
    struct coop_hub *h = coop_thread.hub;
    coop_prepare_wait(g, WAIT_SLEEP, NULL);
    struct coop_unwind_window window = coop_unwind_begin();
    atomic_fetch_or(coop_greenlet_cancel_state(g), COOP_CANCELED);
    coop_unwind_end(window);
    coop_timer_add(h, g, coop_now() + MS(20000));
    coop_switch_away(h);
    coop_timer_remove(g);
    reason_after_leaving = g->wake_reason;
    atomic_fetch_and(coop_greenlet_cancel_state(g), ~COOP_CANCELED);
    atomic_store(&g->nudged, false);
    return NULL;
}

START_TEST(test_unwind_window_holds_cancellation_off)
{
    static int word;
    unit_join(unit_spawn(cancel_sent_in_window, &word));
    ck_assert_int_eq(park_after_window, 0);     /* nudged, not ETIMEDOUT */
    unit_join(unit_spawn(cancel_sent_while_leaving, NULL));
    ck_assert_int_eq(reason_after_leaving, COOP_NUDGED);
    unit_join(unit_spawn(cancel_pending_in_window, NULL));
    unit_join(unit_spawn(cancel_pending_in_window, &word_after_window));
    ck_assert_int_eq(word_after_window[0] & (COOP_CANCELED | COOP_CANCEL_DISABLED), COOP_CANCELED);
    ck_assert_int_eq(word_after_window[1] & (COOP_CANCELED | COOP_CANCEL_DISABLED),
                     COOP_CANCELED | COOP_CANCEL_DISABLED);
}
END_TEST

static void *return_arg(void *arg) { return arg; }

START_TEST(test_records_say_gone_after_join)
{
    static char supplied[64 * 1024] __attribute__((aligned(64)));
    struct coop_spawn_attr attrs[] = {
        { .guard_size = 4096 },
        { .stack_size = 64 * 1024, .guard_size = 4096 },
        { .stack = supplied, .stack_size = sizeof supplied },
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        struct coop_greenlet *g = unit_spawn_attr(return_arg, NULL, attrs[i]);
        ck_assert(!coop_greenlet_gone(g));
        unit_join(g);
        ck_assert(!coop_is_greenlet(g));
        ck_assert(coop_greenlet_gone(g));
    }
    int not_a_record = 0;
    ck_assert(!coop_greenlet_gone(&not_a_record));
}
END_TEST

static volatile int numbers_done;
static _Atomic int numbers_taken;

static void *number_self(void *arg)
{
    *(int *)arg = coop_greenlet_number(coop_self());
    atomic_fetch_add(&numbers_taken, 1);
    unit_yield_until(&numbers_done);      /* alive while the test looks */
    return NULL;
}

START_TEST(test_numbers_name_live_greenlets)
{
    int a = 0, b = 0;
    numbers_done = 0;
    atomic_store(&numbers_taken, 0);
    struct coop_greenlet *ga = unit_spawn(number_self, &a), *gb = unit_spawn(number_self, &b);
    while (atomic_load(&numbers_taken) < 2)
        coop_yield();
    ck_assert(a > 0 && b > 0 && a != b);
    ck_assert_ptr_eq(coop_greenlet_numbered(a), ga);
    ck_assert_ptr_eq(coop_greenlet_numbered(b), gb);
    numbers_done = 1;
    while (!coop_greenlet_finished(ga))
        coop_yield();
    ck_assert_int_eq(coop_greenlet_number(ga), -1);    /* ended, not joined yet: named no more */
    ck_assert_ptr_null(coop_greenlet_numbered(a));
    unit_join(ga);
    unit_join(gb);
    ck_assert_ptr_null(coop_greenlet_numbered(a));
    ck_assert_ptr_null(coop_greenlet_numbered(0));
}
END_TEST

static volatile int computed;

static void *compute(void *arg)
{
    /* Its own time, not its OS thread's: it may be preempted meanwhile. */
    int64_t until = coop_greenlet_cpu_ns(coop_self()) + MS(20);
    volatile uint64_t x = 0;
    while (coop_greenlet_cpu_ns(coop_self()) < until)
        x += 1;
    computed = 1;
    coop_unpark((const void *)&computed, 1, ~0u);
    return arg;
}

static bool not_computed(const void *unused)
{
    (void)unused;
    return !computed;
}

/* Parked, not yielding: with a hub to itself, a yielder would compute all along. */
static void *wait_for_computed(void *arg)
{
    while (!computed)
        coop_park((const void *)&computed, not_computed, NULL, ~0u, COOP_NO_DEADLINE, "unit");
    return arg;
}

START_TEST(test_cpu_time_charged_to_who_computes)
{
    computed = 0;
    coop_greenlet_cpu_ns(coop_self());      /* charging starts */
    struct coop_greenlet *busy = unit_spawn(compute, NULL), *idle = unit_spawn(wait_for_computed, NULL);
    unit_yield_until(&computed);     /* busy may be preempted before it is done */
    int64_t busy_ns = coop_greenlet_cpu_ns(busy), idle_ns = coop_greenlet_cpu_ns(idle);
    unit_join(busy);
    unit_join(idle);
    ck_assert(busy_ns >= MS(20));
    ck_assert(idle_ns < busy_ns);
}
END_TEST

Suite *threadstate_suite(void)
{
    Suite *s = suite_create("threadstate");
    TCase *tc = unit_tcase("threadstate");
    tcase_add_test(tc, test_nudge_ends_a_park);
    tcase_add_test(tc, test_nudge_ends_a_sleep);
    tcase_add_test(tc, test_nudged_joiner_leaves_target_joinable);
    tcase_add_test(tc, test_cancel_state_is_the_greenlets);
    tcase_add_test(tc, test_unwind_window_holds_cancellation_off);
    tcase_add_test(tc, test_records_say_gone_after_join);
    tcase_add_test(tc, test_numbers_name_live_greenlets);
    tcase_add_test(tc, test_cpu_time_charged_to_who_computes);
    suite_add_tcase(s, tc);
    return s;
}
