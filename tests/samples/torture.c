/*
 * torture: the pthread surface under load, one line per check:
 *
 *   ok NAME: what was seen       the program saw what glibc's threads do
 *   FAIL NAME: why               it did not
 *   time: NAME MS                a duration (tests ignore these lines when comparing)
 *
 * and exits 1 when any check failed (2 when it could not run at all). Most checks run 200
 * threads over one synchronisation object: a mutex (switching away inside the critical
 * section), a recursive mutex (nested and trylock), strict turn-taking on a condition
 * variable, an rwlock whose readers must see consistent pairs, a barrier over several
 * generations, pthread_once, keys with destructors, join values and detached threads,
 * producers and consumers over unnamed semaphores, a spinlock, an errorcheck mutex's errors,
 * pthread_self/pthread_equal, names, pthread_getattr_np, compiler TLS (__thread) and
 * __libc_single_threaded, and 500 threads that sleep at the same time. Every line but the
 * time: and os_threads: lines is the same natively and under coop; the os_threads: line
 * says on how many OS threads (distinct gettid) the sleepers ran, all alive at once.
 * With arguments, it runs only the checks they name (torture rwlock once).
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <sys/wait.h>

enum {
    NT = 200,                  /* threads of most checks */
    STACK_SIZE = 256 * 1024,   /* their stacks (printf and friends fit) */
    SMALL_STACK = 64 * 1024,   /* the sleepers' stacks */
    MUTEX_ROUNDS = 500,
    RECURSIVE_ROUNDS = 100,
    TURN_ROUNDS = 3,
    RW_WRITERS = 20,
    RW_ROUNDS = 50,
    BARRIER_GENERATIONS = 5,
    PRODUCERS = 8,
    CONSUMERS = 8,
    ITEMS_EACH = 2500,         /* per producer and per consumer */
    RING = 16,
    SPIN_THREADS = 8,
    SPIN_ROUNDS = 20000,
    DETACHED = 20,
    SLEEPERS = 500,
    SLEEP_MS = 200,            /* each sleep of the sleepers' rendezvous */
};

/* ---- Reporting ---- */

/* Threads record their first failure here (under a lock of its own); the check reports it. */
static pthread_mutex_t thread_failure_lock = PTHREAD_MUTEX_INITIALIZER;
static char thread_failure[256];

__attribute__((format(printf, 1, 2))) static void thread_fail(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&thread_failure_lock);
    if (thread_failure[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(thread_failure, sizeof thread_failure, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&thread_failure_lock);
}

/* True when no thread failed since the last call; otherwise fills why[]. */
static bool threads_passed(void)
{
    bool passed = thread_failure[0] == '\0';

    if (!passed)
        failf("%s", thread_failure);
    thread_failure[0] = '\0';
    return passed;
}

/* ---- Starting and joining many threads ---- */

static pthread_t tids[SLEEPERS > NT ? SLEEPERS : NT];

/* Starts n threads of fn, thread i getting i as its argument, with stacks of stack bytes
 * (0: the default attributes, a NULL attr). */
static void spawn(int n, void *(*fn)(void *), size_t stack)
{
    pthread_attr_t attr;
    int err;

    if ((err = pthread_attr_init(&attr)) != 0 ||
        (stack != 0 && (err = pthread_attr_setstacksize(&attr, stack)) != 0))
        die("pthread_attr: %s", strerror(err));
    for (int i = 0; i < n; i++)
        if ((err = pthread_create(&tids[i], stack != 0 ? &attr : NULL, fn,
                                  (void *)(intptr_t)i)) != 0)
            die("pthread_create of thread %d: %s", i + 1, strerror(err));
    pthread_attr_destroy(&attr);
}

/* Joins the n threads of spawn(); their return values go to rets (when not NULL). */
static void join_all(int n, void **rets)
{
    int err;

    for (int i = 0; i < n; i++)
        if ((err = pthread_join(tids[i], rets != NULL ? &rets[i] : NULL)) != 0)
            die("pthread_join of thread %d: %s", i + 1, strerror(err));
}

/* ---- mutex: a read-modify-write that switches away in the middle ---- */

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static void *mutex_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    int err;

    for (int i = 0; i < MUTEX_ROUNDS; i++) {
        if ((i + id) % 4 == 0) {
            /* trylock must never block: spin politely until the lock is free */
            while ((err = pthread_mutex_trylock(&counter_lock)) == EBUSY)
                sched_yield();
            if (err != 0) {
                thread_fail("pthread_mutex_trylock: %s", errname(err));
                return NULL;
            }
        } else {
            pthread_mutex_lock(&counter_lock);
        }
        long seen = counter;
        if (i % 50 == 0)
            sched_yield(); /* another thread runs while this one holds the lock */
        counter = seen + 1;
        pthread_mutex_unlock(&counter_lock);
    }
    return NULL;
}

static void check_mutex(void)
{
    char result[64];

    spawn(NT, mutex_worker, STACK_SIZE);
    join_all(NT, NULL);
    bool passed = threads_passed() &&
                  (counter == (long)NT * MUTEX_ROUNDS ||
                   failf("counter is %ld, expected %ld", counter, (long)NT * MUTEX_ROUNDS));
    snprintf(result, sizeof result, "%d threads counted to %ld", NT, counter);
    report_result("mutex", passed, result);
}

/* ---- recursive mutex: nested locking, trylock by the owner ---- */

static pthread_mutex_t recursive_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static long recursive_counter;
static int recursive_depth; /* threads inside the critical section: never above 1 */

static void *recursive_worker(void *arg)
{
    int err;

    (void)arg;
    for (int i = 0; i < RECURSIVE_ROUNDS; i++) {
        pthread_mutex_lock(&recursive_lock);
        pthread_mutex_lock(&recursive_lock);
        if ((err = pthread_mutex_trylock(&recursive_lock)) != 0)
            thread_fail("trylock by the owner of a recursive mutex: %s", errname(err));
        if (recursive_depth++ != 0)
            thread_fail("two threads inside a recursive mutex");
        long seen = recursive_counter;
        sched_yield();
        recursive_counter = seen + 1;
        recursive_depth--;
        if (err == 0)
            pthread_mutex_unlock(&recursive_lock);
        pthread_mutex_unlock(&recursive_lock);
        if (i % 10 == 0)
            sched_yield(); /* still held once: nobody else may enter */
        pthread_mutex_unlock(&recursive_lock);
    }
    return NULL;
}

static void check_recursive(void)
{
    char result[64];

    spawn(NT, recursive_worker, STACK_SIZE);
    join_all(NT, NULL);
    bool passed = threads_passed() &&
                  (recursive_counter == (long)NT * RECURSIVE_ROUNDS ||
                   failf("counter is %ld, expected %ld", recursive_counter,
                         (long)NT * RECURSIVE_ROUNDS));
    snprintf(result, sizeof result, "%d threads counted to %ld", NT, recursive_counter);
    report_result("recursive_mutex", passed, result);
}

/* ---- condition variable: thread i goes when turn == i (mod NT), several rounds ---- */

static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond = PTHREAD_COND_INITIALIZER;
static int turn;
static int order[NT * TURN_ROUNDS];

static void *turn_worker(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int round = 0; round < TURN_ROUNDS; round++) {
        pthread_mutex_lock(&turn_lock);
        while (turn != round * NT + id)
            pthread_cond_wait(&turn_cond, &turn_lock);
        order[turn++] = id;
        pthread_cond_broadcast(&turn_cond);
        pthread_mutex_unlock(&turn_lock);
    }
    return NULL;
}

static void check_turns(void)
{
    char result[64];
    bool passed;

    spawn(NT, turn_worker, STACK_SIZE);
    join_all(NT, NULL);
    passed = threads_passed() && (turn == NT * TURN_ROUNDS ||
                                  failf("%d turns taken, expected %d", turn, NT * TURN_ROUNDS));
    for (int k = 0; passed && k < NT * TURN_ROUNDS; k++)
        if (order[k] != k % NT)
            passed = failf("turn %d went to thread %d, expected %d", k, order[k], k % NT);
    snprintf(result, sizeof result, "%d turns in order", turn);
    report_result("cond_turns", passed, result);
}

/* ---- rwlock: writers update a pair, readers must always see it equal ---- */

static pthread_rwlock_t pair_lock = PTHREAD_RWLOCK_INITIALIZER;
static long pair_a, pair_b;
static atomic_long reads, torn_reads;

static void *rw_worker(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int i = 0; i < RW_ROUNDS; i++) {
        if (id < RW_WRITERS) {
            pthread_rwlock_wrlock(&pair_lock);
            pair_a++;
            sched_yield(); /* readers must not get in now */
            pair_b++;
            pthread_rwlock_unlock(&pair_lock);
        } else {
            pthread_rwlock_rdlock(&pair_lock);
            long a = pair_a;
            sched_yield(); /* other readers may, writers may not */
            long b = pair_b;
            pthread_rwlock_unlock(&pair_lock);
            atomic_fetch_add(&reads, 1);
            if (a != b)
                atomic_fetch_add(&torn_reads, 1);
        }
        sched_yield();
    }
    return NULL;
}

static void *rw_try_while_read_locked(void *arg)
{
    int err;

    (void)arg;
    if ((err = pthread_rwlock_trywrlock(&pair_lock)) != EBUSY)
        thread_fail("trywrlock while read-locked gave %s, expected EBUSY", errname(err));
    if ((err = pthread_rwlock_tryrdlock(&pair_lock)) != 0)
        thread_fail("tryrdlock while read-locked gave %s, expected 0", errname(err));
    else
        pthread_rwlock_unlock(&pair_lock);
    return NULL;
}

static void check_rwlock(void)
{
    char result[96];
    pthread_t t;
    bool passed;

    spawn(NT, rw_worker, STACK_SIZE);
    join_all(NT, NULL);
    passed = threads_passed();
    if (passed && (pair_a != RW_WRITERS * RW_ROUNDS || pair_b != pair_a))
        passed = failf("pair is (%ld, %ld), expected %d twice", pair_a, pair_b,
                       RW_WRITERS * RW_ROUNDS);
    if (passed && atomic_load(&torn_reads) != 0)
        passed = failf("%ld of %ld reads saw a torn pair", atomic_load(&torn_reads),
                       atomic_load(&reads));
    if (passed && atomic_load(&reads) != (long)(NT - RW_WRITERS) * RW_ROUNDS)
        passed = failf("%ld reads, expected %ld", atomic_load(&reads),
                       (long)(NT - RW_WRITERS) * RW_ROUNDS);

    /* trywrlock fails and tryrdlock succeeds while another thread holds a read lock */
    pthread_rwlock_rdlock(&pair_lock);
    if (pthread_create(&t, NULL, rw_try_while_read_locked, NULL) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
    pthread_rwlock_unlock(&pair_lock);
    passed = threads_passed() && passed;

    snprintf(result, sizeof result, "%ld consistent reads, %ld writes, trylocks right",
             atomic_load(&reads), pair_a);
    report_result("rwlock", passed, result);
}

/* ---- barrier: every thread arrives before any leaves, one serial thread per generation ---- */

static pthread_barrier_t barrier;
static atomic_int arrived[BARRIER_GENERATIONS];
static atomic_int serial_threads[BARRIER_GENERATIONS];

static void *barrier_worker(void *arg)
{
    (void)arg;
    for (int g = 0; g < BARRIER_GENERATIONS; g++) {
        atomic_fetch_add(&arrived[g], 1);
        int r = pthread_barrier_wait(&barrier);
        if (r == PTHREAD_BARRIER_SERIAL_THREAD)
            atomic_fetch_add(&serial_threads[g], 1);
        else if (r != 0)
            thread_fail("pthread_barrier_wait: %s", errname(r));
        int n = atomic_load(&arrived[g]);
        if (n != NT)
            thread_fail("generation %d: left the barrier when %d of %d had arrived", g, n, NT);
    }
    return NULL;
}

static void check_barrier(void)
{
    char result[64];
    bool passed;
    int err;

    if ((err = pthread_barrier_init(&barrier, NULL, NT)) != 0)
        die("pthread_barrier_init: %s", strerror(err));
    spawn(NT, barrier_worker, STACK_SIZE);
    join_all(NT, NULL);
    pthread_barrier_destroy(&barrier);
    passed = threads_passed();
    for (int g = 0; passed && g < BARRIER_GENERATIONS; g++)
        if (atomic_load(&serial_threads[g]) != 1)
            passed = failf("generation %d had %d serial threads", g,
                           atomic_load(&serial_threads[g]));
    snprintf(result, sizeof result, "%d generations of %d, one serial thread each",
             BARRIER_GENERATIONS, NT);
    report_result("barrier", passed, result);
}

/* ---- pthread_once: the routine runs once, and takes its time ---- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_int once_runs;
static atomic_int once_done;

static void once_routine(void)
{
    atomic_fetch_add(&once_runs, 1);
    sleep_ms(20); /* every other thread must wait for the end of this, not run past it */
    atomic_store(&once_done, 1);
}

static void *once_worker(void *arg)
{
    int err;

    (void)arg;
    if ((err = pthread_once(&once, once_routine)) != 0)
        thread_fail("pthread_once: %s", errname(err));
    if (!atomic_load(&once_done))
        thread_fail("pthread_once returned before the routine ended");
    return NULL;
}

static void check_once(void)
{
    char result[64];

    spawn(NT, once_worker, STACK_SIZE);
    join_all(NT, NULL);
    bool passed = threads_passed() &&
                  (atomic_load(&once_runs) == 1 ||
                   failf("the routine ran %d times", atomic_load(&once_runs)));
    snprintf(result, sizeof result, "%d threads, the routine ran %d time", NT,
             atomic_load(&once_runs));
    report_result("once", passed, result);
}

/* ---- keys: per-thread values and destructors ---- */

static pthread_key_t value_key, null_key, cleared_key, again_key;
static atomic_int value_destructors, null_destructors, cleared_destructors, again_destructors;
static atomic_long value_sum;

static void value_destructor(void *p)
{
    atomic_fetch_add(&value_destructors, 1);
    atomic_fetch_add(&value_sum, *(int *)p);
    free(p);
}

static void null_destructor(void *p)
{
    (void)p;
    atomic_fetch_add(&null_destructors, 1);
}

static void cleared_destructor(void *p)
{
    (void)p;
    atomic_fetch_add(&cleared_destructors, 1);
}

/* Sets its value again once: POSIX then calls it a second time (up to
 * PTHREAD_DESTRUCTOR_ITERATIONS rounds). */
static void again_destructor(void *p)
{
    atomic_fetch_add(&again_destructors, 1);
    if ((intptr_t)p == 1)
        pthread_setspecific(again_key, (void *)2);
}

static void *key_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    int *mine = malloc(sizeof *mine);

    if (mine == NULL)
        die("out of memory");
    *mine = id;
    if (pthread_getspecific(value_key) != NULL)
        thread_fail("thread %d: a new thread's key value is not NULL", id);
    pthread_setspecific(value_key, mine);
    pthread_setspecific(cleared_key, mine);
    pthread_setspecific(again_key, (void *)1);
    for (int i = 0; i < 3; i++) {
        sched_yield();
        sleep_ms(1);
        int *seen = pthread_getspecific(value_key);
        if (seen != mine || *seen != id)
            thread_fail("thread %d: its key value changed to %p (%d)", id, (void *)seen,
                        seen != NULL ? *seen : -1);
    }
    pthread_setspecific(cleared_key, NULL); /* no destructor for a NULL value */
    return NULL;
}

static void check_keys(void)
{
    char result[128];
    const long expected_sum = (long)NT * (NT - 1) / 2;
    int main_value = -1;
    bool passed;

    if (pthread_key_create(&value_key, value_destructor) != 0 ||
        pthread_key_create(&null_key, null_destructor) != 0 ||
        pthread_key_create(&cleared_key, cleared_destructor) != 0 ||
        pthread_key_create(&again_key, again_destructor) != 0)
        die("pthread_key_create");
    pthread_setspecific(value_key, &main_value); /* the main thread's own, never destroyed */
    spawn(NT, key_worker, STACK_SIZE);
    join_all(NT, NULL);
    passed = threads_passed();
    if (passed && pthread_getspecific(value_key) != &main_value)
        passed = failf("the main thread's key value changed");
    /* every destructor has run once pthread_join has returned */
    if (passed && (atomic_load(&value_destructors) != NT || atomic_load(&value_sum) != expected_sum))
        passed = failf("%d destructor calls with sum %ld, expected %d with sum %ld",
                       atomic_load(&value_destructors), atomic_load(&value_sum), NT, expected_sum);
    if (passed && (atomic_load(&null_destructors) != 0 || atomic_load(&cleared_destructors) != 0))
        passed = failf("destructors called for NULL values (%d, %d)",
                       atomic_load(&null_destructors), atomic_load(&cleared_destructors));
    if (passed && atomic_load(&again_destructors) != 2 * NT)
        passed = failf("a destructor that sets its value again ran %d times, expected %d",
                       atomic_load(&again_destructors), 2 * NT);
    if (pthread_key_delete(value_key) != 0 || pthread_key_delete(null_key) != 0 ||
        pthread_key_delete(cleared_key) != 0 || pthread_key_delete(again_key) != 0)
        passed = failf("pthread_key_delete failed");
    snprintf(result, sizeof result,
             "%d distinct values, %d destructor calls, none for NULL, %d for a value set again",
             NT, atomic_load(&value_destructors), atomic_load(&again_destructors));
    report_result("keys", passed, result);
}

/* ---- join values, pthread_exit, detached threads ---- */

__attribute__((noreturn)) static void exit_from_deep_inside(int id)
{
    pthread_exit((void *)(intptr_t)(id * 3 + 1));
}

static void *join_worker(void *arg)
{
    int id = (int)(intptr_t)arg;

    if (id % 3 == 0)
        sleep_ms(1);
    if (id % 2 == 1)
        exit_from_deep_inside(id);
    return (void *)(intptr_t)(id * 3 + 1);
}

static sem_t detached_done;

static void *detached_worker(void *arg)
{
    (void)arg;
    sleep_ms(5);
    sem_post(&detached_done);
    return NULL;
}

static void check_join(void)
{
    static void *rets[NT];
    char result[96];
    pthread_attr_t attr;
    pthread_t t;
    long sum = 0, expected = 0;
    bool passed;
    int state;

    spawn(NT, join_worker, 0); /* default attributes */
    join_all(NT, rets);
    for (int i = 0; i < NT; i++) {
        sum += (intptr_t)rets[i];
        expected += i * 3 + 1;
    }
    passed = sum == expected || failf("join values sum to %ld, expected %ld", sum, expected);

    /* detached by attribute and by pthread_detach, half each; they post when done */
    if (sem_init(&detached_done, 0, 0) != 0)
        die_errno("sem_init");
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_getdetachstate(&attr, &state);
    if (passed && state != PTHREAD_CREATE_DETACHED)
        passed = failf("pthread_attr_getdetachstate gave %d", state);
    for (int i = 0; i < DETACHED; i++) {
        if (pthread_create(&t, i % 2 ? &attr : NULL, detached_worker, NULL) != 0)
            die("pthread_create");
        if (i % 2 == 0 && pthread_detach(t) != 0)
            passed = failf("pthread_detach failed");
    }
    pthread_attr_destroy(&attr);
    for (int i = 0; i < DETACHED; i++)
        while (sem_wait(&detached_done) != 0)
            if (errno != EINTR)
                die_errno("sem_wait");
    sem_destroy(&detached_done);
    snprintf(result, sizeof result, "%d values summing to %ld, %d detached threads done", NT,
             sum, DETACHED);
    report_result("join", passed, result);
}

/* ---- semaphores: producers and consumers over a ring of 16 ---- */

static sem_t slots_free, slots_full;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static int ring[RING];
static unsigned ring_head, ring_tail;

static void sem_wait_checked(sem_t *s)
{
    while (sem_wait(s) != 0)
        if (errno != EINTR) {
            thread_fail("sem_wait: %s", errname(errno));
            return;
        }
}

static void *producer(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int k = 0; k < ITEMS_EACH; k++) {
        sem_wait_checked(&slots_free);
        pthread_mutex_lock(&ring_lock);
        ring[ring_tail++ % RING] = id * ITEMS_EACH + k + 1;
        pthread_mutex_unlock(&ring_lock);
        sem_post(&slots_full);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    long sum = 0;

    (void)arg;
    for (int k = 0; k < ITEMS_EACH; k++) {
        sem_wait_checked(&slots_full);
        pthread_mutex_lock(&ring_lock);
        sum += ring[ring_head++ % RING];
        pthread_mutex_unlock(&ring_lock);
        sem_post(&slots_free);
    }
    return (void *)(intptr_t)sum;
}

static void *producer_or_consumer(void *arg)
{
    int id = (int)(intptr_t)arg;

    return id < PRODUCERS ? producer(arg) : consumer(arg);
}

static void check_semaphores(void)
{
    static void *rets[PRODUCERS + CONSUMERS];
    const long items = (long)PRODUCERS * ITEMS_EACH;
    const long expected = items * (items + 1) / 2;
    char result[96];
    long sum = 0;
    int free_value, full_value;
    bool passed;

    if (sem_init(&slots_free, 0, RING) != 0 || sem_init(&slots_full, 0, 0) != 0)
        die_errno("sem_init");
    errno = 0;
    passed = (sem_trywait(&slots_full) == -1 && errno == EAGAIN) ||
             failf("sem_trywait of an empty semaphore: errno %s, expected EAGAIN", errname(errno));
    spawn(PRODUCERS + CONSUMERS, producer_or_consumer, STACK_SIZE);
    join_all(PRODUCERS + CONSUMERS, rets);
    passed = threads_passed() && passed;
    for (int i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++)
        sum += (intptr_t)rets[i];
    if (passed && (ring_head != items || sum != expected))
        passed = failf("%u items summing to %ld, expected %ld summing to %ld", ring_head, sum,
                       items, expected);
    sem_getvalue(&slots_free, &free_value);
    sem_getvalue(&slots_full, &full_value);
    if (passed && (free_value != RING || full_value != 0))
        passed = failf("semaphores end at %d free, %d full", free_value, full_value);
    sem_destroy(&slots_free);
    sem_destroy(&slots_full);
    snprintf(result, sizeof result, "%ld items summing to %ld, sem_trywait EAGAIN", items, sum);
    report_result("semaphores", passed, result);
}

/* ---- spinlock: short critical sections, no switch inside ---- */

static pthread_spinlock_t spin;
static long spin_counter;

static void *spin_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        pthread_spin_lock(&spin);
        spin_counter++;
        pthread_spin_unlock(&spin);
        if (i % 1000 == 0)
            sched_yield();
    }
    return NULL;
}

static void *spin_try_while_held(void *arg)
{
    int err;

    (void)arg;
    if ((err = pthread_spin_trylock(&spin)) != EBUSY)
        thread_fail("pthread_spin_trylock of a held spinlock gave %s, expected EBUSY",
                    errname(err));
    return NULL;
}

static void check_spinlock(void)
{
    char result[64];
    pthread_t t;

    if (pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE) != 0)
        die("pthread_spin_init");
    spawn(SPIN_THREADS, spin_worker, STACK_SIZE);
    join_all(SPIN_THREADS, NULL);
    pthread_spin_lock(&spin);
    if (pthread_create(&t, NULL, spin_try_while_held, NULL) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
    pthread_spin_unlock(&spin);
    pthread_spin_destroy(&spin);
    bool passed = threads_passed() &&
                  (spin_counter == (long)SPIN_THREADS * SPIN_ROUNDS ||
                   failf("counter is %ld, expected %ld", spin_counter,
                         (long)SPIN_THREADS * SPIN_ROUNDS));
    snprintf(result, sizeof result, "%d threads counted to %ld", SPIN_THREADS, spin_counter);
    report_result("spinlock", passed, result);
}

/* ---- errorcheck mutex: the errors POSIX promises ---- */

static pthread_mutex_t errorcheck;
static int foreign_unlock, foreign_trylock, foreign_recursive_unlock;

static void *foreign_thread(void *arg)
{
    (void)arg;
    foreign_unlock = pthread_mutex_unlock(&errorcheck);
    foreign_trylock = pthread_mutex_trylock(&errorcheck);
    foreign_recursive_unlock = pthread_mutex_unlock(&recursive_lock);
    return NULL;
}

static void check_errorcheck(void)
{
    pthread_mutexattr_t attr;
    pthread_t t;
    char result[160];
    int first, relock, unlock, unlock_again, type;
    bool passed = true;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutexattr_gettype(&attr, &type);
    if (type != PTHREAD_MUTEX_ERRORCHECK)
        passed = failf("pthread_mutexattr_gettype gave %d", type);
    pthread_mutex_init(&errorcheck, &attr);
    pthread_mutexattr_destroy(&attr);

    first = pthread_mutex_lock(&errorcheck);
    relock = pthread_mutex_lock(&errorcheck);
    pthread_mutex_lock(&recursive_lock);
    if (pthread_create(&t, NULL, foreign_thread, NULL) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
    pthread_mutex_unlock(&recursive_lock);
    unlock = pthread_mutex_unlock(&errorcheck);
    unlock_again = pthread_mutex_unlock(&errorcheck);
    pthread_mutex_destroy(&errorcheck);

    if (passed && (first != 0 || relock != EDEADLK))
        passed = failf("lock gave %s, relock %s, expected 0 and EDEADLK", errname(first),
                       errname(relock));
    if (passed && (foreign_unlock != EPERM || foreign_trylock != EBUSY))
        passed = failf("another thread's unlock gave %s, trylock %s, expected EPERM and EBUSY",
                       errname(foreign_unlock), errname(foreign_trylock));
    if (passed && foreign_recursive_unlock != EPERM)
        passed = failf("another thread's unlock of a recursive mutex gave %s, expected EPERM",
                       errname(foreign_recursive_unlock));
    if (passed && (unlock != 0 || unlock_again != EPERM))
        passed = failf("unlock gave %s, unlock again %s, expected 0 and EPERM", errname(unlock),
                       errname(unlock_again));
    snprintf(result, sizeof result,
             "relock %s, foreign unlock %s, foreign trylock %s, foreign recursive unlock %s, "
             "second unlock %s",
             errname(relock), errname(foreign_unlock), errname(foreign_trylock),
             errname(foreign_recursive_unlock), errname(unlock_again));
    report_result("errorcheck_mutex", passed, result);
}

/* ---- pthread_self, pthread_equal, names, pthread_getattr_np ---- */

static pthread_barrier_t all_alive; /* pthread_t values are reused once a thread is gone */
static pthread_barrier_t named;
static pthread_t selves[NT];

/* Whether the stack that pthread_getattr_np reports for thread t holds address p; fills why. */
static bool stack_holds(pthread_t t, const void *p)
{
    pthread_attr_t attr;
    void *addr;
    size_t size;
    int err;

    if ((err = pthread_getattr_np(t, &attr)) != 0)
        return failf("pthread_getattr_np: %s", errname(err));
    err = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    if (err != 0)
        return failf("pthread_attr_getstack: %s", errname(err));
    if ((const char *)p < (char *)addr || (const char *)p >= (char *)addr + size)
        return failf("a local variable at %p is outside the stack [%p, %p)", p, addr,
                     (void *)((char *)addr + size));
    if (size < 16 * 1024)
        return failf("a stack of %zu bytes", size);
    return true;
}

static char creator_name[16];

static void *identity_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    char name[16], expected[16], too_small[15];     /* glibc: ERANGE below 16 bytes, whatever the name */
    char long_name[32];
    int err, local = id;

    selves[id] = pthread_self();
    /* A new thread has its creator's name; prctl names the calling thread (and cuts the name
     * at 15 bytes), as pthread_setname_np does. */
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 || strcmp(name, creator_name) != 0)
        thread_fail("thread %d: named '%s' at its start, expected its creator's '%s'", id, name, creator_name);
    snprintf(long_name, sizeof long_name, "prctl-%d-and-then-some", id);
    if (prctl(PR_SET_NAME, long_name) != 0)
        thread_fail("prctl(PR_SET_NAME): %s", strerror(errno));
    sched_yield();
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 || strncmp(name, long_name, 15) != 0
        || name[15] != '\0')
        thread_fail("thread %d: named '%s' by prctl, expected '%.15s'", id, name, long_name);
    if (!pthread_equal(pthread_self(), pthread_self()))
        thread_fail("pthread_equal(self, self) is false");

    snprintf(expected, sizeof expected, "torture-%d", id);
    if ((err = pthread_setname_np(pthread_self(), expected)) != 0)
        thread_fail("pthread_setname_np: %s", errname(err));
    sched_yield();
    if ((err = pthread_getname_np(pthread_self(), name, sizeof name)) != 0)
        thread_fail("pthread_getname_np: %s", errname(err));
    else if (strcmp(name, expected) != 0)
        thread_fail("thread %d: name '%s', expected '%s'", id, name, expected);
    if (prctl(PR_GET_NAME, name) != 0 || strcmp(name, expected) != 0)
        thread_fail("thread %d: prctl(PR_GET_NAME) reads '%s', expected '%s'", id, name, expected);
    if ((err = pthread_getname_np(pthread_self(), too_small, sizeof too_small)) != ERANGE)
        thread_fail("pthread_getname_np into 15 bytes gave %s, expected ERANGE", errname(err));
    if ((err = pthread_setname_np(pthread_self(), "a name of more than 15 bytes")) != ERANGE)
        thread_fail("pthread_setname_np of a long name gave %s, expected ERANGE", errname(err));

    if (!stack_holds(pthread_self(), &local))
        thread_fail("thread %d: %s", id, why);

    pthread_barrier_wait(&all_alive);
    /* the main thread renames the first thread now */
    pthread_barrier_wait(&named);
    if (id == 0) {
        pthread_getname_np(pthread_self(), name, sizeof name);
        if (strcmp(name, "renamed") != 0)
            thread_fail("a name set by another thread reads '%s', expected 'renamed'", name);
    }
    return NULL;
}

/* The process's name: /proc/self/comm, the name of its first thread; false if unreadable. */
static bool process_name(char name[16])
{
    FILE *f = fopen("/proc/self/comm", "r");
    bool read = f != NULL && fgets(name, 16, f) != NULL;
    if (f != NULL)
        fclose(f);
    if (read)
        name[strcspn(name, "\n")] = '\0';
    return read;
}

/* A forked child's name is its forker's; the exit status says whether it was. */
static void *fork_named(void *arg)
{
    char name[16];
    int status = -1;
    prctl(PR_SET_NAME, (const char *)arg);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0)
        _exit(process_name(name) && strcmp(name, arg) == 0 ? 0 : 1);
    if (child > 0)
        waitpid(child, &status, 0);
    return (void *)(intptr_t)status;
}

/* The main thread's name is the process's; a thread's own is not. */
static bool process_names_follow(void)
{
    char named_main[16], after_thread[16];
    pthread_t t;
    void *status;

    prctl(PR_SET_NAME, "torture-main");
    if (!process_name(named_main))
        die("/proc/self/comm");
    if (pthread_create(&t, NULL, fork_named, "torture-forker") != 0 || pthread_join(t, &status) != 0)
        die("pthread_create");
    bool read = process_name(after_thread);
    prctl(PR_SET_NAME, creator_name);
    if (!read)
        die("/proc/self/comm");
    if (strcmp(named_main, "torture-main") != 0)
        return failf("the process is named '%s' after the main thread named itself 'torture-main'", named_main);
    if (strcmp(after_thread, "torture-main") != 0)
        return failf("the process is named '%s' after a thread named itself", after_thread);
    if ((intptr_t)status != 0)
        return failf("a child forked by thread 'torture-forker' has another name (status %ld)", (long)(intptr_t)status);
    return true;
}

static void check_identity(void)
{
    char result[160], name[16];
    int local = 0, distinct = 0, err;
    bool passed;

    if (pthread_barrier_init(&all_alive, NULL, NT + 1) != 0 ||
        pthread_barrier_init(&named, NULL, NT + 1) != 0)
        die("pthread_barrier_init");
    if (prctl(PR_GET_NAME, creator_name) != 0)
        die("prctl(PR_GET_NAME)");
    spawn(NT, identity_worker, STACK_SIZE);
    pthread_barrier_wait(&all_alive);
    passed = (err = pthread_setname_np(tids[0], "renamed")) == 0 ||
             failf("pthread_setname_np of another thread: %s", errname(err));
    if (passed && ((err = pthread_getname_np(tids[0], name, sizeof name)) != 0 ||
                   strcmp(name, "renamed") != 0))
        passed = failf("pthread_getname_np of another thread: %s '%s'", errname(err), name);
    pthread_barrier_wait(&named);
    join_all(NT, NULL);
    pthread_barrier_destroy(&all_alive);
    pthread_barrier_destroy(&named);
    passed = threads_passed() && passed;

    for (int i = 0; passed && i < NT; i++) {
        if (!pthread_equal(selves[i], tids[i]))
            passed = failf("thread %d: pthread_self differs from what pthread_create gave", i);
        if (pthread_equal(selves[i], pthread_self()))
            passed = failf("thread %d: pthread_self equals the main thread's", i);
        for (int j = 0; passed && j < i; j++)
            if (pthread_equal(selves[i], selves[j]))
                passed = failf("threads %d and %d have equal pthread_self", i, j);
        distinct += passed;
    }
    if (passed && !stack_holds(pthread_self(), &local))
        passed = failf("main thread: %s", why);
    if (passed && (prctl(PR_GET_NAME, name) != 0 || strcmp(name, creator_name) != 0))
        passed = failf("main thread: named '%s' after its threads named themselves, expected '%s'", name,
                       creator_name);
    passed = passed && process_names_follow();
    snprintf(result, sizeof result,
             "%d distinct pthread_self, names inherited and round trip (pthread, prctl; the main "
             "thread's is the process's), ERANGE, stacks hold their locals", distinct);
    report_result("identity", passed, result);
}

/* ---- compiler TLS: per thread values at per thread addresses ---- */

static __thread int tls_value;
static __thread char tls_array[256];
static int *tls_addresses[NT];
static pthread_barrier_t tls_alive;

static void *tls_worker(void *arg)
{
    int id = (int)(intptr_t)arg;

    if (tls_value != 0 || tls_array[0] != 0)
        thread_fail("thread %d: its TLS did not start zeroed", id);
    tls_value = id;
    memset(tls_array, id & 0x7f, sizeof tls_array);
    tls_addresses[id] = &tls_value;
    pthread_barrier_wait(&tls_alive); /* every thread has set its values: none changed them */
    sched_yield();
    if (tls_value != id || tls_array[0] != (id & 0x7f) || tls_array[255] != (id & 0x7f))
        thread_fail("thread %d: its TLS now holds %d", id, tls_value);
    if (&tls_value != tls_addresses[id])
        thread_fail("thread %d: its TLS variable moved", id);
    /* a pointer to another thread's variable reads that thread's value (libraries hand such
       pointers around: Rust's channels identify threads by them) */
    int other = (id + 1) % NT;
    if (*tls_addresses[other] != other)
        thread_fail("thread %d: thread %d's TLS variable, read through its address, holds %d", id,
                    other, *tls_addresses[other]);
    pthread_barrier_wait(&tls_alive); /* no thread ends while another may read its TLS */
    return NULL;
}

static void check_tls(void)
{
    char result[128];
    bool passed;

    tls_value = -1;
    if (pthread_barrier_init(&tls_alive, NULL, NT) != 0)
        die("pthread_barrier_init");
    spawn(NT, tls_worker, STACK_SIZE);
    join_all(NT, NULL);
    pthread_barrier_destroy(&tls_alive);
    passed = threads_passed();
    for (int i = 0; passed && i < NT; i++)
        for (int j = 0; passed && j < i; j++)
            if (tls_addresses[i] == tls_addresses[j])
                passed = failf("threads %d and %d have their TLS variable at the same address", i, j);
    if (passed && tls_value != -1)
        passed = failf("the main thread's TLS variable changed to %d", tls_value);
    /* glibc clears it at the first pthread_create; libstdc++ skips synchronisation while it is
       set (std::stop_callback, shared_ptr) */
    if (passed && __libc_single_threaded)
        passed = failf("__libc_single_threaded is still set after %d threads", NT);
    snprintf(result, sizeof result,
             "%d threads kept their values at distinct addresses, readable by others", NT);
    report_result("thread_local", passed, result);
}

/* ---- 500 threads sleep at the same time ---- */

/*
 * Each sleeper counts itself in, then sleeps SLEEP_MS at a time until all have: were the
 * sleeps not overlapping (a sleep that held up the process, threads run one after another),
 * the last could never count in and the check would never end. Nothing is timed: the
 * rendezvous is the proof, the test's time-out only a guard against a hang.
 */
static atomic_int sleepers_in;
static pid_t sleeper_tids[SLEEPERS];

static void *sleeper(void *arg)
{
    sleeper_tids[(intptr_t)arg] = gettid();
    atomic_fetch_add(&sleepers_in, 1);
    do
        sleep_ms(SLEEP_MS);
    while (atomic_load(&sleepers_in) < SLEEPERS);
    return NULL;
}

static void check_sleepers(void)
{
    char result[64];
    uint64_t start = now_ns(), elapsed_ms;

    spawn(SLEEPERS, sleeper, SMALL_STACK);
    join_all(SLEEPERS, NULL);
    elapsed_ms = (now_ns() - start) / 1000000;
    printf("time: sleepers %llu ms\n", (unsigned long long)elapsed_ms);
    printf("os_threads: %d of %d sleepers\n", (int)distinct_tids(sleeper_tids, SLEEPERS), SLEEPERS);
    bool passed = elapsed_ms >= SLEEP_MS ||
                  failf("%d threads slept %d ms in %llu ms", SLEEPERS, SLEEP_MS,
                        (unsigned long long)elapsed_ms);
    snprintf(result, sizeof result, "%d threads slept, all at the same time", SLEEPERS);
    report_result("sleepers", passed, result);
}

static const struct {
    const char *name;
    void (*run)(void);
} checks[] = {
    { "mutex", check_mutex },         { "recursive_mutex", check_recursive },
    { "cond_turns", check_turns },    { "rwlock", check_rwlock },
    { "barrier", check_barrier },     { "once", check_once },
    { "keys", check_keys },           { "join", check_join },
    { "semaphores", check_semaphores }, { "spinlock", check_spinlock },
    { "errorcheck_mutex", check_errorcheck }, { "identity", check_identity },
    { "thread_local", check_tls },    { "sleepers", check_sleepers },
};

/* Whether check i runs: every check without arguments, else those the arguments name. */
static bool selected(int argc, char **argv, size_t i)
{
    for (int a = 1; a < argc; a++)
        if (strcmp(argv[a], checks[i].name) == 0)
            return true;
    return argc == 1;
}

int main(int argc, char **argv)
{
    uint64_t start = now_ns();

    for (int a = 1; a < argc; a++) {
        size_t i = 0;
        while (i < sizeof checks / sizeof checks[0] && strcmp(argv[a], checks[i].name) != 0)
            i++;
        if (i == sizeof checks / sizeof checks[0])
            die("no check named '%s'", argv[a]);
    }
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (selected(argc, argv, i))
            checks[i].run();
    printf("time: total %llu ms\n", (unsigned long long)((now_ns() - start) / 1000000));
    printf("%s\n", failures == 0 ? "torture: all checks passed" : "torture: checks failed");
    return failures == 0 ? 0 : 1;
}
