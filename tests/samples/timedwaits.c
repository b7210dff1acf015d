/*
 * timedwaits: every timed wait of the pthread and semaphore surface ends as POSIX and glibc
 * say, one line per check:
 *
 *   ok NAME: what was seen       as glibc's threads do it
 *   FAIL NAME: why               not
 *   time: NAME MS                how long the wait took (tests ignore these lines)
 *
 * and exits 1 when any check failed. A wait that times out must return the timeout error
 * (ETIMEDOUT, or -1 with errno ETIMEDOUT for semaphores) no earlier than its deadline on the
 * clock it was given (GIVE_UP_MS is only a guard against a hang). While it waits, a ticker
 * thread must tick: a wait that stopped the whole process (as a real futex wait would on a
 * runtime that runs every thread on one OS thread) fails with "the other threads stood
 * still". One tick is asked for, not a rate: the ticker's next deadline always comes before
 * the wait's, so even a process stalled past both deadlines runs the ticker first under a
 * runtime that wakes sleepers in deadline order, and threads of its own get a whole
 * TIMEOUT_MS to be scheduled once.
 *
 * The objects are held by helper threads that block on a pipe (not on a pthread object), so
 * that the holders depend only on blocking I/O. Invalid deadlines (tv_nsec = 2e9) and clocks
 * give EINVAL where POSIX or glibc's documentation say so, and waits that can succeed at once
 * or are woken in time succeed.
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

enum {
    TIMEOUT_MS = 100,
    GIVE_UP_MS = 60000,    /* a hang guard: a wait that should have ended long before */
    WAKE_AFTER_MS = 30,    /* a helper wakes a waiter after this */
    TICK_MS = 5,           /* the ticker's period */
    MIN_TICKS = 1,         /* ticks that must happen during one TIMEOUT_MS wait */
};

/* ---- Clocks and deadlines ---- */

static struct timespec clock_now(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return ts;
}

static struct timespec plus_ms(struct timespec ts, long ms)
{
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static double ms_between(struct timespec a, struct timespec b)
{
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

static const struct timespec invalid_deadline = { .tv_sec = 0, .tv_nsec = 2000000000 };
static const struct timespec past_deadline = { .tv_sec = 1, .tv_nsec = 0 };

/* ---- The ticker: proof that other threads run while one waits ---- */

static atomic_long ticks;
static atomic_bool stop_ticking;

static void *ticker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_ticking)) {
        sleep_ms(TICK_MS);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

/*
 * One timed wait: begin() notes the time on the wait's clock and the ticks, and returns the
 * deadline TIMEOUT_MS later; timed_out() then checks the result, the time waited and the
 * ticks, and prints the time: line.
 */
struct wait {
    const char *name;
    clockid_t clock;
    struct timespec start;
    long ticks;
};

static struct timespec begin(struct wait *w, const char *name, clockid_t clock)
{
    w->name = name;
    w->clock = clock;
    w->ticks = atomic_load(&ticks);
    w->start = clock_now(clock);
    return plus_ms(w->start, TIMEOUT_MS);
}

static bool timed_out(const struct wait *w, int got, int expected)
{
    double ms = ms_between(w->start, clock_now(w->clock));
    long ticked = atomic_load(&ticks) - w->ticks;

    printf("time: %s %.1f ms, %ld ticks\n", w->name, ms, ticked);
    if (got != expected)
        return failf("returned %s, expected %s (after %.1f ms)", errname(got), errname(expected),
                     ms);
    if (ms < TIMEOUT_MS)
        return failf("timed out after %.1f ms, before its %d ms deadline", ms, TIMEOUT_MS);
    if (ms > GIVE_UP_MS)
        return failf("timed out after %.1f ms, long after its %d ms deadline", ms, TIMEOUT_MS);
    if (ticked < MIN_TICKS)
        return failf("the other threads stood still during the wait (%ld ticks of %d ms in "
                     "%.1f ms)", ticked, TICK_MS, ms);
    return true;
}

/* The errno-style result of a semaphore call, as an error number (0 on success). */
static int sem_result(int r)
{
    return r == 0 ? 0 : errno;
}

static void check(const char *name, bool passed, const char *result)
{
    report_result(name, passed, result);
}

/* ---- Helper threads: hold an object until told by a pipe to let it go ---- */

enum hold { HOLD_MUTEX, HOLD_READ, HOLD_WRITE, HOLD_NOTHING };

struct holder {
    enum hold what;
    pthread_mutex_t *mutex;
    pthread_rwlock_t *rwlock;
    int held[2];    /* the holder writes a byte once it holds the object */
    int release[2]; /* and lets it go when it reads one */
    pthread_t thread;
};

static void read_byte(int fd)
{
    char c;
    ssize_t r;

    while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
        ;
    if (r != 1)
        die("read of a pipe: %s", r < 0 ? strerror(errno) : "end of file");
}

static void write_byte(int fd)
{
    if (write(fd, "x", 1) != 1)
        die_errno("write of a pipe");
}

static void *holder_main(void *arg)
{
    struct holder *h = arg;

    switch (h->what) {
    case HOLD_MUTEX: pthread_mutex_lock(h->mutex); break;
    case HOLD_READ: pthread_rwlock_rdlock(h->rwlock); break;
    case HOLD_WRITE: pthread_rwlock_wrlock(h->rwlock); break;
    case HOLD_NOTHING: break;
    }
    write_byte(h->held[1]);
    read_byte(h->release[0]);
    switch (h->what) {
    case HOLD_MUTEX: pthread_mutex_unlock(h->mutex); break;
    case HOLD_READ:
    case HOLD_WRITE: pthread_rwlock_unlock(h->rwlock); break;
    case HOLD_NOTHING: break;
    }
    return (void *)(intptr_t)42;
}

/* Starts a holder and returns once it holds the object. */
static void hold(struct holder *h, enum hold what, pthread_mutex_t *m, pthread_rwlock_t *rw)
{
    int err;

    h->what = what;
    h->mutex = m;
    h->rwlock = rw;
    if (pipe(h->held) != 0 || pipe(h->release) != 0)
        die_errno("pipe");
    if ((err = pthread_create(&h->thread, NULL, holder_main, h)) != 0)
        die("pthread_create: %s", strerror(err));
    read_byte(h->held[0]);
}

/* Tells the holder to let go (it does not wait for it to end). */
static void let_go(struct holder *h)
{
    write_byte(h->release[1]);
}

static void finish(struct holder *h)
{
    int err = pthread_join(h->thread, NULL);

    if (err != 0)
        die("pthread_join: %s", strerror(err));
    close(h->held[0]);
    close(h->held[1]);
    close(h->release[0]);
    close(h->release[1]);
}

/* Lets go after WAKE_AFTER_MS, from a thread of its own. */
static void *let_go_later_main(void *arg)
{
    sleep_ms(WAKE_AFTER_MS);
    let_go(arg);
    return NULL;
}

static pthread_t let_go_later(struct holder *h)
{
    pthread_t t;

    if (pthread_create(&t, NULL, let_go_later_main, h) != 0)
        die("pthread_create");
    return t;
}

/* ---- Condition variables ---- */

static void check_cond(void)
{
    pthread_mutexattr_t mattr;
    pthread_condattr_t cattr;
    pthread_mutex_t m;
    pthread_cond_t realtime_cond, monotonic_cond;
    struct timespec deadline;
    struct wait w;
    clockid_t clock;
    int err, unlock;

    /* errorcheck: after the wait, unlock must succeed, so the wait took the mutex back */
    pthread_mutexattr_init(&mattr);
    pthread_mutexattr_settype(&mattr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&m, &mattr);
    pthread_mutexattr_destroy(&mattr);
    pthread_cond_init(&realtime_cond, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_condattr_getclock(&cattr, &clock);
    pthread_cond_init(&monotonic_cond, &cattr);
    pthread_condattr_destroy(&cattr);
    check("condattr_clock", clock == CLOCK_MONOTONIC || failf("clock %d", (int)clock),
          "CLOCK_MONOTONIC");

    pthread_mutex_lock(&m);
    deadline = begin(&w, "cond_timedwait_realtime", CLOCK_REALTIME);
    err = pthread_cond_timedwait(&realtime_cond, &m, &deadline);
    unlock = pthread_mutex_unlock(&m);
    check(w.name, timed_out(&w, err, ETIMEDOUT) &&
          (unlock == 0 || failf("the mutex was not held after the wait: unlock gave %s",
                                errname(unlock))),
          "ETIMEDOUT, mutex held again");

    pthread_mutex_lock(&m);
    deadline = begin(&w, "cond_timedwait_monotonic_attr", CLOCK_MONOTONIC);
    err = pthread_cond_timedwait(&monotonic_cond, &m, &deadline);
    unlock = pthread_mutex_unlock(&m);
    check(w.name, timed_out(&w, err, ETIMEDOUT) &&
          (unlock == 0 || failf("mutex not held after the wait: unlock gave %s", errname(unlock))),
          "ETIMEDOUT, mutex held again");

    pthread_mutex_lock(&m);
    deadline = begin(&w, "cond_clockwait_monotonic", CLOCK_MONOTONIC);
    err = pthread_cond_clockwait(&realtime_cond, &m, CLOCK_MONOTONIC, &deadline);
    pthread_mutex_unlock(&m);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT");

    pthread_mutex_lock(&m);
    deadline = begin(&w, "cond_clockwait_realtime", CLOCK_REALTIME);
    err = pthread_cond_clockwait(&monotonic_cond, &m, CLOCK_REALTIME, &deadline);
    pthread_mutex_unlock(&m);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT");

    pthread_mutex_lock(&m);
    err = pthread_cond_timedwait(&realtime_cond, &m, &past_deadline);
    unlock = pthread_mutex_unlock(&m);
    check("cond_timedwait_past", (err == ETIMEDOUT && unlock == 0) ||
          failf("gave %s, unlock %s", errname(err), errname(unlock)), "ETIMEDOUT at once");

    pthread_mutex_lock(&m);
    err = pthread_cond_timedwait(&realtime_cond, &m, &invalid_deadline);
    unlock = pthread_mutex_unlock(&m);
    check("cond_timedwait_invalid", (err == EINVAL && unlock == 0) ||
          failf("gave %s, unlock %s, expected EINVAL", errname(err), errname(unlock)),
          "EINVAL for tv_nsec 2e9");

    pthread_mutex_lock(&m);
    deadline = plus_ms(clock_now(CLOCK_MONOTONIC), TIMEOUT_MS);
    err = pthread_cond_clockwait(&realtime_cond, &m, CLOCK_PROCESS_CPUTIME_ID, &deadline);
    pthread_mutex_unlock(&m);
    check("cond_clockwait_bad_clock", err == EINVAL || failf("gave %s, expected EINVAL",
                                                             errname(err)),
          "EINVAL for CLOCK_PROCESS_CPUTIME_ID");

    pthread_cond_destroy(&realtime_cond);
    pthread_cond_destroy(&monotonic_cond);
    pthread_mutex_destroy(&m);
}

/* A timed wait that is signalled in time returns 0 early. */
static pthread_mutex_t signal_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t signal_cond = PTHREAD_COND_INITIALIZER;
static bool signalled;

static void *signal_later(void *arg)
{
    (void)arg;
    sleep_ms(WAKE_AFTER_MS);
    pthread_mutex_lock(&signal_lock);
    signalled = true;
    pthread_cond_signal(&signal_cond);
    pthread_mutex_unlock(&signal_lock);
    return NULL;
}

static void check_cond_signalled(void)
{
    struct timespec start = clock_now(CLOCK_REALTIME);
    struct timespec deadline = plus_ms(start, GIVE_UP_MS);
    pthread_t t;
    int err = 0;
    double ms;

    if (pthread_create(&t, NULL, signal_later, NULL) != 0)
        die("pthread_create");
    pthread_mutex_lock(&signal_lock);
    while (!signalled && err == 0)
        err = pthread_cond_timedwait(&signal_cond, &signal_lock, &deadline);
    pthread_mutex_unlock(&signal_lock);
    ms = ms_between(start, clock_now(CLOCK_REALTIME));
    pthread_join(t, NULL);
    printf("time: cond_timedwait_signalled %.1f ms\n", ms);
    check("cond_timedwait_signalled",
          (err == 0 && signalled) || failf("gave %s after %.1f ms", errname(err), ms),
          "0 when signalled before the deadline");
}

/* ---- Mutexes ---- */

static void check_mutex(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    struct timespec deadline;
    struct holder h;
    struct wait w;
    pthread_t t;
    int err;

    hold(&h, HOLD_MUTEX, &m, NULL);

    deadline = begin(&w, "mutex_timedlock", CLOCK_REALTIME);
    err = pthread_mutex_timedlock(&m, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT on a held mutex");

    deadline = begin(&w, "mutex_clocklock_monotonic", CLOCK_MONOTONIC);
    err = pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT on a held mutex");

    deadline = begin(&w, "mutex_clocklock_realtime", CLOCK_REALTIME);
    err = pthread_mutex_clocklock(&m, CLOCK_REALTIME, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT on a held mutex");

    err = pthread_mutex_timedlock(&m, &invalid_deadline);
    check("mutex_timedlock_invalid", err == EINVAL || failf("gave %s, expected EINVAL",
                                                            errname(err)),
          "EINVAL for tv_nsec 2e9 on a held mutex");

    deadline = plus_ms(clock_now(CLOCK_MONOTONIC), TIMEOUT_MS);
    err = pthread_mutex_clocklock(&m, CLOCK_PROCESS_CPUTIME_ID, &deadline);
    check("mutex_clocklock_bad_clock", err == EINVAL || failf("gave %s, expected EINVAL",
                                                              errname(err)),
          "EINVAL for CLOCK_PROCESS_CPUTIME_ID");

    err = pthread_mutex_trylock(&m);
    check("mutex_trylock_held", err == EBUSY || failf("gave %s, expected EBUSY", errname(err)),
          "EBUSY");

    /* let go while a timed lock waits: it gets the mutex before its deadline */
    t = let_go_later(&h);
    deadline = plus_ms(clock_now(CLOCK_REALTIME), GIVE_UP_MS);
    err = pthread_mutex_timedlock(&m, &deadline);
    check("mutex_timedlock_released", err == 0 || failf("gave %s", errname(err)),
          "0 once the holder lets go");
    if (err == 0)
        pthread_mutex_unlock(&m);
    pthread_join(t, NULL);
    finish(&h);

    /* a free mutex is taken even past the deadline: "under no circumstance shall the
       function fail with a timeout if the mutex can be locked immediately" */
    err = pthread_mutex_timedlock(&m, &past_deadline);
    check("mutex_timedlock_free_past", err == 0 || failf("gave %s, expected 0", errname(err)),
          "0 on a free mutex with a past deadline");
    if (err == 0)
        pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);
}

/* ---- Read-write locks ---- */

static void check_rwlock(void)
{
    pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
    struct timespec deadline;
    struct holder h;
    struct wait w;
    pthread_t t;
    int err;

    hold(&h, HOLD_WRITE, NULL, &rw);

    deadline = begin(&w, "rwlock_timedrdlock", CLOCK_REALTIME);
    err = pthread_rwlock_timedrdlock(&rw, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while write-locked");

    deadline = begin(&w, "rwlock_timedwrlock", CLOCK_REALTIME);
    err = pthread_rwlock_timedwrlock(&rw, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while write-locked");

    deadline = begin(&w, "rwlock_clockrdlock_monotonic", CLOCK_MONOTONIC);
    err = pthread_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while write-locked");

    deadline = begin(&w, "rwlock_clockwrlock_monotonic", CLOCK_MONOTONIC);
    err = pthread_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while write-locked");

    deadline = begin(&w, "rwlock_clockrdlock_realtime", CLOCK_REALTIME);
    err = pthread_rwlock_clockrdlock(&rw, CLOCK_REALTIME, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while write-locked");

    deadline = begin(&w, "rwlock_clockwrlock_realtime", CLOCK_REALTIME);
    err = pthread_rwlock_clockwrlock(&rw, CLOCK_REALTIME, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while write-locked");

    err = pthread_rwlock_timedrdlock(&rw, &invalid_deadline);
    check("rwlock_timedrdlock_invalid", err == EINVAL || failf("gave %s, expected EINVAL",
                                                               errname(err)),
          "EINVAL for tv_nsec 2e9 while write-locked");
    err = pthread_rwlock_timedwrlock(&rw, &invalid_deadline);
    check("rwlock_timedwrlock_invalid", err == EINVAL || failf("gave %s, expected EINVAL",
                                                               errname(err)),
          "EINVAL for tv_nsec 2e9 while write-locked");

    deadline = plus_ms(clock_now(CLOCK_MONOTONIC), TIMEOUT_MS);
    err = pthread_rwlock_clockrdlock(&rw, CLOCK_PROCESS_CPUTIME_ID, &deadline);
    check("rwlock_clockrdlock_bad_clock", err == EINVAL || failf("gave %s, expected EINVAL",
                                                                 errname(err)),
          "EINVAL for CLOCK_PROCESS_CPUTIME_ID");

    err = pthread_rwlock_tryrdlock(&rw);
    int err2 = pthread_rwlock_trywrlock(&rw);
    check("rwlock_trylocks_write_held", (err == EBUSY && err2 == EBUSY) ||
          failf("tryrdlock gave %s, trywrlock %s, expected EBUSY twice", errname(err),
                errname(err2)),
          "EBUSY twice");

    /* let go while a timed write lock waits: it gets the lock before its deadline */
    t = let_go_later(&h);
    deadline = plus_ms(clock_now(CLOCK_REALTIME), GIVE_UP_MS);
    err = pthread_rwlock_timedwrlock(&rw, &deadline);
    check("rwlock_timedwrlock_released", err == 0 || failf("gave %s", errname(err)),
          "0 once the writer lets go");
    if (err == 0)
        pthread_rwlock_unlock(&rw);
    pthread_join(t, NULL);
    finish(&h);

    /* read-locked by another thread: readers get in, writers time out */
    hold(&h, HOLD_READ, NULL, &rw);
    deadline = begin(&w, "rwlock_timedwrlock_read_held", CLOCK_REALTIME);
    err = pthread_rwlock_timedwrlock(&rw, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT while read-locked");
    deadline = plus_ms(clock_now(CLOCK_REALTIME), TIMEOUT_MS);
    err = pthread_rwlock_timedrdlock(&rw, &deadline);
    check("rwlock_timedrdlock_read_held", err == 0 || failf("gave %s, expected 0", errname(err)),
          "0 while read-locked");
    if (err == 0)
        pthread_rwlock_unlock(&rw);
    let_go(&h);
    finish(&h);
    pthread_rwlock_destroy(&rw);
}

/* ---- Semaphores ---- */

static sem_t posted_later;

static void *post_later(void *arg)
{
    (void)arg;
    sleep_ms(WAKE_AFTER_MS);
    sem_post(&posted_later);
    return NULL;
}

static void check_semaphores(void)
{
    struct timespec deadline, start;
    struct wait w;
    sem_t s;
    pthread_t t;
    int err;
    double ms;

    if (sem_init(&s, 0, 0) != 0 || sem_init(&posted_later, 0, 0) != 0)
        die_errno("sem_init");

    deadline = begin(&w, "sem_timedwait", CLOCK_REALTIME);
    err = sem_result(sem_timedwait(&s, &deadline));
    check(w.name, timed_out(&w, err, ETIMEDOUT), "-1 with errno ETIMEDOUT");

    deadline = begin(&w, "sem_clockwait_monotonic", CLOCK_MONOTONIC);
    err = sem_result(sem_clockwait(&s, CLOCK_MONOTONIC, &deadline));
    check(w.name, timed_out(&w, err, ETIMEDOUT), "-1 with errno ETIMEDOUT");

    deadline = begin(&w, "sem_clockwait_realtime", CLOCK_REALTIME);
    err = sem_result(sem_clockwait(&s, CLOCK_REALTIME, &deadline));
    check(w.name, timed_out(&w, err, ETIMEDOUT), "-1 with errno ETIMEDOUT");

    err = sem_result(sem_timedwait(&s, &invalid_deadline));
    check("sem_timedwait_invalid", err == EINVAL || failf("gave %s, expected EINVAL",
                                                          errname(err)),
          "-1 with errno EINVAL for tv_nsec 2e9");

    deadline = plus_ms(clock_now(CLOCK_MONOTONIC), TIMEOUT_MS);
    err = sem_result(sem_clockwait(&s, CLOCK_PROCESS_CPUTIME_ID, &deadline));
    check("sem_clockwait_bad_clock", err == EINVAL || failf("gave %s, expected EINVAL",
                                                            errname(err)),
          "-1 with errno EINVAL for CLOCK_PROCESS_CPUTIME_ID");

    err = sem_result(sem_timedwait(&s, &past_deadline));
    check("sem_timedwait_past", err == ETIMEDOUT || failf("gave %s, expected ETIMEDOUT",
                                                          errname(err)),
          "-1 with errno ETIMEDOUT at once");

    sem_post(&s);
    err = sem_result(sem_timedwait(&s, &past_deadline));
    check("sem_timedwait_available_past", err == 0 || failf("gave %s, expected 0", errname(err)),
          "0 when the semaphore can be taken, even past the deadline");

    start = clock_now(CLOCK_REALTIME);
    deadline = plus_ms(start, GIVE_UP_MS);
    if (pthread_create(&t, NULL, post_later, NULL) != 0)
        die("pthread_create");
    err = sem_result(sem_timedwait(&posted_later, &deadline));
    ms = ms_between(start, clock_now(CLOCK_REALTIME));
    pthread_join(t, NULL);
    printf("time: sem_timedwait_posted %.1f ms\n", ms);
    check("sem_timedwait_posted", err == 0 || failf("gave %s after %.1f ms", errname(err), ms),
          "0 when posted before the deadline");

    sem_destroy(&s);
    sem_destroy(&posted_later);
}

/* ---- Joins ---- */

static void check_joins(void)
{
    struct timespec deadline;
    struct holder h;
    struct wait w;
    void *value = NULL;
    int err;

    hold(&h, HOLD_NOTHING, NULL, NULL); /* a running thread, blocked in read() */

    err = pthread_tryjoin_np(h.thread, NULL);
    check("tryjoin_running", err == EBUSY || failf("gave %s, expected EBUSY", errname(err)),
          "EBUSY");

    deadline = begin(&w, "timedjoin_running", CLOCK_REALTIME);
    err = pthread_timedjoin_np(h.thread, NULL, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT");

    deadline = begin(&w, "clockjoin_monotonic_running", CLOCK_MONOTONIC);
    err = pthread_clockjoin_np(h.thread, NULL, CLOCK_MONOTONIC, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT");

    deadline = begin(&w, "clockjoin_realtime_running", CLOCK_REALTIME);
    err = pthread_clockjoin_np(h.thread, NULL, CLOCK_REALTIME, &deadline);
    check(w.name, timed_out(&w, err, ETIMEDOUT), "ETIMEDOUT");

    /* No timedjoin with tv_nsec 2e9 here: glibc 2.36 retries its futex wait on the EINVAL
       and spins for ever (pthread_join_common ignores every error but ETIMEDOUT). */

    deadline = plus_ms(clock_now(CLOCK_MONOTONIC), TIMEOUT_MS);
    err = pthread_clockjoin_np(h.thread, NULL, CLOCK_PROCESS_CPUTIME_ID, &deadline);
    check("clockjoin_bad_clock", err == EINVAL || failf("gave %s, expected EINVAL",
                                                        errname(err)),
          "EINVAL for CLOCK_PROCESS_CPUTIME_ID");

    /* the thread ends while a timed join waits: the join gets its value */
    let_go(&h);
    deadline = plus_ms(clock_now(CLOCK_REALTIME), GIVE_UP_MS);
    err = pthread_timedjoin_np(h.thread, &value, &deadline);
    check("timedjoin_ending", (err == 0 && value == (void *)42) ||
          failf("gave %s and %p", errname(err), value), "0 with the thread's value");
    if (err != 0)
        pthread_join(h.thread, NULL);
    close(h.held[0]);
    close(h.held[1]);
    close(h.release[0]);
    close(h.release[1]);
}

int main(void)
{
    pthread_t ticker_thread;

    if (pthread_create(&ticker_thread, NULL, ticker, NULL) != 0)
        die("pthread_create");
    check_cond();
    check_cond_signalled();
    check_mutex();
    check_rwlock();
    check_semaphores();
    check_joins();
    atomic_store(&stop_ticking, true);
    pthread_join(ticker_thread, NULL);
    printf("%s\n", failures == 0 ? "timedwaits: all checks passed" : "timedwaits: checks failed");
    return failures == 0 ? 0 : 1;
}
