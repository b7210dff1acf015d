/*
 * pshared: mutexes and semaphores exactly as glibc's, and process-shared objects (mutexes,
 * condition variables, read-write locks, semaphores) among threads and processes, one line
 * per check:
 *
 *   ok NAME: what was seen       as glibc's threads do it
 *   FAIL NAME: why               not
 *
 * and exits 1 when any check failed. Within the process: an error-checking mutex's owner
 * gets EBUSY from trylock and EDEADLK from lock, and destroy says EBUSY while it is locked;
 * a robust mutex held across a wait unlocks, even when the wait ended on another OS thread;
 * a process-shared recursive mutex held by one thread is not another thread's (trylock
 * EBUSY, lock waits for the release), and so is a process-shared read-write lock's writer
 * (EDEADLK for itself, EBUSY and a wait for the others); a recursive mutex held by main is
 * not a thread's whose first mutex call comes after it was preempted (under coop its stack
 * was unwound meanwhile); process-shared locks held at a fork are not the child's (by main
 * or by a thread: trylock EBUSY, unlock EPERM, timed write lock ETIMEDOUT), nor is a
 * private error-checking one (unlock EPERM); threads hand a turn back and forth through a
 * process-shared condition variable. With a second process, started without any
 * preloaded library (plain glibc), sharing a mutex, a condition variable, a read-write lock
 * and semaphores in a memfd mapping or by name (sem_open): each side waits for the other,
 * and while this side waits its other threads go on running (a ticker thread counts).
 */
#define _GNU_SOURCE
#include "common.h"
#include "checks.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { CHILD_HOLDS_MS = 200, MIN_TICKS = 2 };

/* What both processes map. */
struct shared {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_rwlock_t rwlock;
    int turn;
    sem_t ready, done;
    char log[64];
};

static struct shared *shm;
static int shm_fd;
static char sem_name[64];

/* ---- the second process: argv[1] = "child", argv[2] = the memfd, argv[3] = the role ---- */

static void append(const char *who)
{
    if (shm->log[0] != '\0')
        strcat(shm->log, ",");
    strcat(shm->log, who);
}

static int child_main(int fd, const char *role)
{
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shm == MAP_FAILED)
        return 2;
    if (strcmp(role, "holds") == 0) {           /* holds the mutex while the parent waits */
        pthread_mutex_lock(&shm->mutex);
        sem_post(&shm->ready);
        sleep_ms(CHILD_HOLDS_MS);
        append("child");
        pthread_mutex_unlock(&shm->mutex);
    } else if (strcmp(role, "waits") == 0) {    /* waits in glibc for the parent's unlock */
        sem_post(&shm->ready);
        pthread_mutex_lock(&shm->mutex);
        append("child");
        pthread_mutex_unlock(&shm->mutex);
    } else if (strcmp(role, "signals") == 0) {  /* gives the turn through the condition variable */
        sleep_ms(CHILD_HOLDS_MS);
        pthread_mutex_lock(&shm->mutex);
        shm->turn = 1;
        pthread_cond_signal(&shm->cond);
        pthread_mutex_unlock(&shm->mutex);
    } else if (strcmp(role, "writes") == 0) {   /* holds the write lock while the parent waits */
        pthread_rwlock_wrlock(&shm->rwlock);
        sem_post(&shm->ready);
        sleep_ms(CHILD_HOLDS_MS);
        append("child");
        pthread_rwlock_unlock(&shm->rwlock);
    } else if (strcmp(role, "posts") == 0) {    /* posts the semaphores after a while */
        sleep_ms(CHILD_HOLDS_MS);
        sem_post(&shm->done);
        sem_t *named = sem_open(sem_name, 0);
        if (named == SEM_FAILED)
            return 3;
        sleep_ms(CHILD_HOLDS_MS);
        sem_post(named);
        sem_close(named);
    }
    return 0;
}

/* Starts this program again as a plain glibc process (no LD_PRELOAD) in ROLE. */
static pid_t spawn_child(const char *role)
{
    extern char **environ;
    char fd_arg[16], *argv[] = { "pshared", "child", fd_arg, (char *)role, sem_name, NULL };
    char *envp[256];
    int n = 0;
    pid_t pid;

    snprintf(fd_arg, sizeof fd_arg, "%d", shm_fd);
    for (char **e = environ; *e != NULL && n < 255; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
            envp[n++] = *e;
    envp[n] = NULL;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, envp) != 0)
        die("posix_spawn");
    return pid;
}

static bool child_succeeded(pid_t pid)
{
    int status;

    if (waitpid(pid, &status, 0) != pid)
        return failf("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return failf("the second process ended with status 0x%x", status);
    return true;
}

/* ---- a ticker: proof that the other threads run while one waits ---- */

static atomic_long ticks;
static atomic_bool stop_ticking;

static void *ticker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_ticking)) {
        sleep_ms(5);
        atomic_fetch_add(&ticks, 1);
    }
    return NULL;
}

static bool others_ran(long before)
{
    long n = atomic_load(&ticks) - before;

    return n >= MIN_TICKS || failf("the other threads stood still while it waited (%ld ticks)", n);
}

/* ---- within the process ---- */

static void check_errorcheck(void)
{
    pthread_mutexattr_t attr;
    pthread_mutex_t m;
    int trylock, relock, destroy_locked, destroy_free;
    char result[128];
    bool ok;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&m, &attr);
    pthread_mutex_lock(&m);
    trylock = pthread_mutex_trylock(&m);
    relock = pthread_mutex_lock(&m);
    destroy_locked = pthread_mutex_destroy(&m);
    pthread_mutex_unlock(&m);
    destroy_free = pthread_mutex_destroy(&m);
    snprintf(result, sizeof result, "trylock %s, lock %s, destroy %s while locked, %s after", errname(trylock),
             errname(relock), errname(destroy_locked), errname(destroy_free));
    ok = (trylock == EBUSY && relock == EDEADLK && destroy_locked == EBUSY && destroy_free == 0)
         || failf("%s; expected trylock EBUSY, lock EDEADLK, destroy EBUSY then 0", result);
    report_result("errorcheck_owner", ok, result);
}

/* Robust and priority-inheritance mutexes held across a wait by a thread resumed on another
 * OS thread than the one it locked them on: under coop, the thread it starts, when it starts
 * on that OS thread, waits there in a poll coop cannot make cooperative, so that the locker
 * resumes elsewhere (by handoff or by another hub). Its unlocks succeed (glibc names their
 * owner by its tid, which follows the greenlet), and the mutexes are free after: a robust
 * normal one, a robust recursive one locked twice (whose unlock checks the owner field too),
 * a robust priority-inheritance one and a plain priority-inheritance one, nobody waiting for
 * them. Natively no round moves; under coop the rounds that pinned the locker's OS thread
 * must have moved it, and some must have. The poll's time-out only turns a lost move into a
 * FAIL line instead of a hang. */
enum { ROBUST_TRIES = 200, ROBUST_PINNED_ROUNDS = 10, ROBUST_KINDS = 4, PIN_LIMIT_MS = 10000 };

struct pinner {
    pid_t locked_on;
    bool pinned;
    sem_t ready;
    int pipe[2];
};

static void *pin_lockers_thread(void *arg)
{
    struct pinner *p = arg;
    struct pollfd readable = { .fd = p->pipe[0], .events = POLLIN };

    p->pinned = gettid() == p->locked_on;
    sem_post(&p->ready);
    if (p->pinned)      /* not poll(): coop's would let its hub go on */
        syscall(SYS_poll, &readable, 1, PIN_LIMIT_MS);
    return NULL;
}

static int lock_robust_set(pthread_mutex_t *m)
{
    int err = pthread_mutex_lock(&m[0]);
    err = err != 0 ? err : pthread_mutex_lock(&m[1]);
    err = err != 0 ? err : pthread_mutex_lock(&m[1]);
    err = err != 0 ? err : pthread_mutex_lock(&m[2]);
    return err != 0 ? err : pthread_mutex_lock(&m[3]);
}

static int unlock_robust_set(pthread_mutex_t *m)
{
    int err = pthread_mutex_unlock(&m[3]);
    err = err != 0 ? err : pthread_mutex_unlock(&m[2]);
    err = err != 0 ? err : pthread_mutex_unlock(&m[1]);
    err = err != 0 ? err : pthread_mutex_unlock(&m[1]);
    return err != 0 ? err : pthread_mutex_unlock(&m[0]);
}

static void *hold_robust_across_moves(void *arg)
{
    pthread_mutex_t *m = arg;
    int (*coop_active)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "coop_active");
    bool under_coop = coop_active != NULL && coop_active();
    int pinned = 0, moved = 0, err = 0;
    pthread_t pinner_thread;

    for (int try = 0; try < ROBUST_TRIES && pinned < ROBUST_PINNED_ROUNDS && err == 0; try++) {
        struct pinner p;

        if (sem_init(&p.ready, 0, 0) != 0 || pipe(p.pipe) != 0)
            die_errno("sem_init or pipe");
        if ((err = lock_robust_set(m)) != 0)
            break;
        p.locked_on = gettid();
        if (pthread_create(&pinner_thread, NULL, pin_lockers_thread, &p) != 0)
            die("pthread_create");
        sem_wait(&p.ready);
        moved += p.pinned && gettid() != p.locked_on;
        pinned += p.pinned;
        err = unlock_robust_set(m);
        if (write(p.pipe[1], "x", 1) != 1)
            die_errno("write");
        pthread_join(pinner_thread, NULL);
        close(p.pipe[0]);
        close(p.pipe[1]);
        sem_destroy(&p.ready);
    }
    int trylock = 0;
    for (int i = 0; i < ROBUST_KINDS && trylock == 0 && err == 0; i++)
        if ((trylock = pthread_mutex_trylock(&m[i])) == 0)
            pthread_mutex_unlock(&m[i]);
    bool ok = (err == 0 && trylock == 0)
              || failf("%s said %s", err != 0 ? "a lock or unlock" : "a trylock after", errname(err | trylock));
    ok = ok && (!under_coop || (pinned > 0 && moved == pinned)
                || failf("under coop %d rounds pinned the locker's OS thread (of %d), %d moved it", pinned,
                         ROBUST_TRIES, moved));
    return (void *)(intptr_t)ok;
}

static void check_robust_moves(void)
{
    pthread_mutexattr_t attr;
    pthread_mutex_t m[ROBUST_KINDS];
    pthread_t locker;
    void *ok;

    for (int i = 0; i < ROBUST_KINDS; i++) {
        pthread_mutexattr_init(&attr);
        if (i < 3)
            pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        if (i == 1)
            pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        if (i >= 2)
            pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
        pthread_mutex_init(&m[i], &attr);
        pthread_mutexattr_destroy(&attr);
    }
    if (pthread_create(&locker, NULL, hold_robust_across_moves, m) != 0)     /* not the main thread: */
        die("pthread_create");        /* coop's keeps the initial thread's tid wherever it runs */
    pthread_join(locker, &ok);
    for (int i = 0; i < ROBUST_KINDS; i++)
        pthread_mutex_destroy(&m[i]);
    report_result("robust_held_across_moves", ok != NULL,
                  "every unlock 0 (robust normal, recursive, priority-inheritance; priority-inheritance), all free after");
}

/* A thread that ends holding a robust mutex: the next lock answers EOWNERDEAD, with the
 * mutex held; pthread_mutex_consistent makes it usable again. Once with nobody waiting (the
 * main thread locks after the join), once with a waiter, woken by the end: the holder ends
 * once the waiter is about to lock and its bit is in the lock word (a thread waiting in the
 * kernel), or WAITER_PARKS_MS after (under coop, one on the holder's OS thread parks
 * without it: see tid_owned_by_one_thread). The lock's time-out only turns a lost wake into
 * a FAIL line. */
enum { OWNER_WAIT_MS = 10000 };

struct robust_holder {
    pthread_mutex_t *m;
    sem_t locked, trying;
    bool wait_for_waiter;
};

enum { WAITER_PARKS_MS = 20 };

static void *hold_and_end(void *arg)
{
    struct robust_holder *h = arg;

    pthread_mutex_lock(h->m);
    sem_post(&h->locked);
    if (!h->wait_for_waiter)
        return NULL;    /* still holding it */
    sem_wait(&h->trying);
    uint64_t deadline = now_ns() + WAITER_PARKS_MS * 1000000ull;
    while (!(atomic_load((_Atomic int *)&h->m->__data.__lock) & FUTEX_WAITERS) && now_ns() < deadline)
        sched_yield();
    return NULL;        /* still holding it */
}

/* After the owner's end: the lock (timed only to turn a lost end into a FAIL line), then
 * pthread_mutex_consistent and the unlock. */
struct taken {
    pthread_mutex_t *m;
    sem_t *trying;
    int locked, consistent, unlock;
};

static int lock_within_limit(pthread_mutex_t *m)
{
    struct timespec limit;

    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += OWNER_WAIT_MS / 1000;
    return pthread_mutex_timedlock(m, &limit);
}

static void *take_after_owner(void *arg)
{
    struct taken *t = arg;

    sem_post(t->trying);
    t->locked = lock_within_limit(t->m);
    t->consistent = pthread_mutex_consistent(t->m);
    t->unlock = pthread_mutex_unlock(t->m);
    return NULL;
}

static bool owner_died_once(bool with_waiter, char *result, size_t size)
{
    pthread_mutexattr_t attr;
    pthread_mutex_t m;
    struct robust_holder h = { .m = &m, .wait_for_waiter = with_waiter };
    struct taken t = { .m = &m, .trying = &h.trying };
    pthread_t holder, waiter;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&m, &attr);
    sem_init(&h.locked, 0, 0);
    sem_init(&h.trying, 0, 0);
    if (pthread_create(&holder, NULL, hold_and_end, &h) != 0)
        die("pthread_create");
    sem_wait(&h.locked);
    if (with_waiter) {
        if (pthread_create(&waiter, NULL, take_after_owner, &t) != 0)
            die("pthread_create");
        pthread_join(waiter, NULL);
    } else {
        pthread_join(holder, NULL);
        take_after_owner(&t);
    }
    int relock = lock_within_limit(&m);
    pthread_mutex_unlock(&m);
    if (with_waiter)
        pthread_join(holder, NULL);
    pthread_mutex_destroy(&m);
    sem_destroy(&h.locked);
    sem_destroy(&h.trying);
    snprintf(result, size, "%slock %s, consistent %s, unlock %s, lock again %s", with_waiter ? "waiting " : "",
             errname(t.locked), errname(t.consistent), errname(t.unlock), errname(relock));
    return t.locked == EOWNERDEAD && t.consistent == 0 && t.unlock == 0 && relock == 0;
}

/* A condition variable's waiter whose mutex's owner ends holding it: the wait answers
 * EOWNERDEAD, with the mutex held, as glibc's relock does; with a private and with a
 * process-shared condition variable (coop waits for each its own way). */
struct ending_signaller {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool signalled;
};

static void *signal_and_end(void *arg)
{
    struct ending_signaller *s = arg;

    pthread_mutex_lock(&s->m);
    s->signalled = true;
    pthread_cond_signal(&s->c);
    return NULL;        /* still holding it */
}

static bool cond_owner_died(bool pshared, char *result, size_t size)
{
    pthread_mutexattr_t attr;
    pthread_condattr_t cattr;
    struct ending_signaller s;
    pthread_t signaller;
    int waited = 0;

    pthread_condattr_init(&cattr);
    pthread_condattr_setpshared(&cattr, pshared ? PTHREAD_PROCESS_SHARED : PTHREAD_PROCESS_PRIVATE);
    pthread_cond_init(&s.c, &cattr);
    s.signalled = false;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&s.m, &attr);
    pthread_mutex_lock(&s.m);
    if (pthread_create(&signaller, NULL, signal_and_end, &s) != 0)
        die("pthread_create");
    while (!s.signalled && waited == 0)
        waited = pthread_cond_wait(&s.c, &s.m);
    int consistent = pthread_mutex_consistent(&s.m);
    int unlock = pthread_mutex_unlock(&s.m);
    pthread_join(signaller, NULL);
    pthread_mutex_destroy(&s.m);
    pthread_cond_destroy(&s.c);
    snprintf(result, size, "%scond_wait %s, consistent %s, unlock %s", pshared ? "process-shared " : "",
             errname(waited), errname(consistent), errname(unlock));
    return waited == EOWNERDEAD && consistent == 0 && unlock == 0;
}

/* The condition waits relock without a limit: they run only once the plain ends are seen. */
static void check_robust_owner_died(void)
{
    char alone[128], waiting[128], cond[128] = "", pshared_cond[128] = "", result[600];
    bool ok = owner_died_once(false, alone, sizeof alone);

    ok = owner_died_once(true, waiting, sizeof waiting) && ok;
    ok = ok && cond_owner_died(false, cond, sizeof cond);
    ok = ok && cond_owner_died(true, pshared_cond, sizeof pshared_cond);
    snprintf(result, sizeof result, "%s; %s; %s; %s", alone, waiting, cond, pshared_cond);
    report_result("robust_owner_died", ok || failf("%s; expected EOWNERDEAD, then 0", result), result);
}

/* Robust and priority-inheritance mutexes, whose owner glibc names by tid, belong to one
 * thread: while a thread holds one across a sleep, another's trylock and unlock say EBUSY
 * and EPERM and its lock returns only after the release (under coop on one hub the other
 * runs on the holder's OS thread meanwhile, whose tid the holder's is), and the holder's own
 * relock says what its type says (a recursive one 0, an error-checking one EDEADLK). A
 * priority-inheritance one the other takes with trylock: a lock may wait in the kernel,
 * which then takes the unlock only from the locker's OS thread, and the holder may resume on
 * another (README). The limits only turn a lost wake into a FAIL line. */
enum { OWNED_KINDS = 6 };

struct owned {
    pthread_mutex_t m;
    bool pi;
    sem_t trying;
    atomic_bool holding;
    int trylock, unlock, lock;
    bool taken_while_held;
};

static int trylock_within_limit(pthread_mutex_t *m)
{
    uint64_t deadline = now_ns() + OWNER_WAIT_MS * 1000000ull;
    int err;

    while ((err = pthread_mutex_trylock(m)) == EBUSY && now_ns() < deadline)
        sched_yield();
    return err;
}

static void *take_owned(void *arg)
{
    struct owned *o = arg;

    if ((o->trylock = pthread_mutex_trylock(&o->m)) == 0)
        pthread_mutex_unlock(&o->m);
    o->unlock = pthread_mutex_unlock(&o->m);
    sem_post(&o->trying);
    o->lock = o->pi ? trylock_within_limit(&o->m) : lock_within_limit(&o->m);
    o->taken_while_held = atomic_load(&o->holding);
    if (o->lock == 0)
        pthread_mutex_unlock(&o->m);
    return NULL;
}

static void *hold_owned(void *arg)
{
    struct owned *o = arg;
    int type = o->m.__data.__kind & 3, relock = 0;
    pthread_t taker;

    pthread_mutex_lock(&o->m);
    if (type == PTHREAD_MUTEX_RECURSIVE && (relock = pthread_mutex_lock(&o->m)) == 0)
        pthread_mutex_unlock(&o->m);
    if (type == PTHREAD_MUTEX_ERRORCHECK)
        relock = pthread_mutex_lock(&o->m);
    atomic_store(&o->holding, true);
    if (pthread_create(&taker, NULL, take_owned, o) != 0)
        die("pthread_create");
    sem_wait(&o->trying);
    sleep_ms(20);       /* the other's lock waits meanwhile, or takes it wrongly */
    atomic_store(&o->holding, false);
    int unlock = pthread_mutex_unlock(&o->m);
    pthread_join(taker, NULL);
    return (void *)(intptr_t)(relock << 8 | unlock);
}

static bool owned_once(int kind, char *result, size_t size)
{
    static const int types[] = { PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_RECURSIVE, PTHREAD_MUTEX_ERRORCHECK };
    static const char *type_names[] = { "normal", "recursive", "errorcheck" };
    int type = types[kind % 3], expected_relock = type == PTHREAD_MUTEX_ERRORCHECK ? EDEADLK : 0;
    pthread_mutexattr_t attr;
    struct owned o = { .pi = kind >= 3, .trylock = -1, .unlock = -1, .lock = -1 };
    pthread_t holder;
    void *status;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, type);
    if (o.pi)
        pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    else
        pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&o.m, &attr);
    pthread_mutexattr_destroy(&attr);
    sem_init(&o.trying, 0, 0);
    if (pthread_create(&holder, NULL, hold_owned, &o) != 0)     /* not the main thread: coop's */
        die("pthread_create");     /* keeps the initial thread's tid wherever it runs */
    pthread_join(holder, &status);
    int relock = (int)(intptr_t)status >> 8, unlock = (int)(intptr_t)status & 0xff;
    pthread_mutex_destroy(&o.m);
    sem_destroy(&o.trying);
    snprintf(result, size, "%s %s: relock %s, other's trylock %s, unlock %s, lock %s%s; unlock %s",
             o.pi ? "priority-inheritance" : "robust", type_names[kind % 3], errname(relock), errname(o.trylock),
             errname(o.unlock), errname(o.lock), o.taken_while_held ? " while held" : "", errname(unlock));
    return relock == expected_relock && o.trylock == EBUSY && o.unlock == EPERM && o.lock == 0
           && !o.taken_while_held && unlock == 0;
}

static void check_owned_by_one_thread(void)
{
    char result[OWNED_KINDS][128], all[OWNED_KINDS * 130] = "";
    bool ok = true;

    for (int kind = 0; kind < OWNED_KINDS; kind++) {
        ok = owned_once(kind, result[kind], sizeof result[kind]) && ok;
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", kind > 0 ? "; " : "", result[kind]);
    }
    report_result("tid_owned_by_one_thread", ok || failf("%s", all),
                  "robust and priority-inheritance, each type: the other's trylock EBUSY, unlock EPERM, lock after the release");
}

/* Many threads take turns at one mutex, each turn a read, a yield and a write of a counter:
 * a robust normal one, a robust recursive one (locked twice) and a priority-inheritance one,
 * one after the other. No turn is lost (the counter ends at THREADS x TURNS) and no wait is
 * (the limits only turn one into a FAIL line). Under coop on one hub the threads share an
 * OS thread and wait for each other in coop's lot; on more they also wait in the kernel and
 * move while they hold the mutex. The priority-inheritance one is taken with trylock, as in
 * tid_owned_by_one_thread. */
enum { CONTENDED_THREADS = 8, CONTENDED_TURNS = 500 };

struct contended {
    pthread_mutex_t m;
    int (*take)(pthread_mutex_t *);
    bool twice;
    long count;
    atomic_int err;
};

static void *contend_in_turns(void *arg)
{
    struct contended *c = arg;

    for (int i = 0; i < CONTENDED_TURNS && atomic_load(&c->err) == 0; i++) {
        int e = c->take(&c->m);
        if (e == 0 && c->twice && (e = c->take(&c->m)) != 0)
            pthread_mutex_unlock(&c->m);
        if (e == 0) {
            long seen = c->count;
            sched_yield();
            c->count = seen + 1;
            if (c->twice)
                pthread_mutex_unlock(&c->m);
            e = pthread_mutex_unlock(&c->m);
        }
        if (e != 0)
            atomic_store(&c->err, e);
    }
    return NULL;
}

static bool contended_once(int kind, char *result, size_t size)
{
    static const char *names[] = { "robust", "robust recursive", "priority-inheritance" };
    struct contended c = { .take = kind == 2 ? trylock_within_limit : lock_within_limit, .twice = kind == 1 };
    pthread_mutexattr_t attr;
    pthread_t threads[CONTENDED_THREADS];

    pthread_mutexattr_init(&attr);
    if (kind < 2)
        pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (kind == 1)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    if (kind == 2)
        pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&c.m, &attr);
    pthread_mutexattr_destroy(&attr);
    for (int i = 0; i < CONTENDED_THREADS; i++)
        if (pthread_create(&threads[i], NULL, contend_in_turns, &c) != 0)
            die("pthread_create");
    for (int i = 0; i < CONTENDED_THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&c.m);
    snprintf(result, size, "%s %ld, %s", names[kind], c.count, errname(atomic_load(&c.err)));
    return atomic_load(&c.err) == 0 && c.count == CONTENDED_THREADS * CONTENDED_TURNS;
}

static void check_contended_turns(void)
{
    char result[3][64], all[256];
    bool ok = true;

    for (int kind = 0; kind < 3; kind++)
        ok = contended_once(kind, result[kind], sizeof result[kind]) && ok;
    snprintf(all, sizeof all, "turns of %d: %s; %s; %s", CONTENDED_THREADS * CONTENDED_TURNS, result[0], result[1],
             result[2]);
    report_result("tid_owned_contended", ok || failf("%s", all), all);
}

struct contender {
    pthread_mutex_t *m;
    sem_t tried;
    int trylock;
    atomic_bool locked;
};

static void *contend(void *arg)
{
    struct contender *c = arg;

    c->trylock = pthread_mutex_trylock(c->m);
    if (c->trylock == 0)
        pthread_mutex_unlock(c->m);
    sem_post(&c->tried);
    pthread_mutex_lock(c->m);
    atomic_store(&c->locked, true);
    pthread_mutex_unlock(c->m);
    return NULL;
}

static void check_pshared_recursive(void)
{
    pthread_mutexattr_t attr;
    pthread_mutex_t *m = &shm->mutex;
    struct contender c = { .m = m };
    pthread_t t;
    bool locked_early, ok;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(m, &attr);
    pthread_mutex_lock(m);
    pthread_mutex_lock(m);
    sem_init(&c.tried, 0, 0);
    pthread_create(&t, NULL, contend, &c);
    sem_wait(&c.tried);
    sleep_ms(50);                     /* lets it reach its lock, which must wait */
    locked_early = atomic_load(&c.locked);
    pthread_mutex_unlock(m);
    pthread_mutex_unlock(m);
    pthread_join(t, NULL);
    pthread_mutex_destroy(m);
    ok = (c.trylock == EBUSY || failf("another thread's trylock: %s", errname(c.trylock)))
         && (!locked_early || failf("another thread locked it while this one held it"))
         && (atomic_load(&c.locked) || failf("the other thread never got it"));
    report_result("pshared_recursive", ok, "another thread's trylock EBUSY, its lock waited for the release");
}

/* A thread whose first mutex call comes after it was preempted: under coop on one hub, main
 * runs again only once the spinner has been preempted, and coop's preemption unwinds the
 * spinner's stack first (libunwind takes its cache's lock, a mutex, meanwhile). Its trylock
 * of main's recursive mutex must still say EBUSY: the unwind must not have given it an owner
 * id of the OS thread's, which on the main thread is main's. Under coop on one hub this
 * needs preemption (or handoff): with both off the spinner never lets main run. */
struct spinner {
    pthread_mutex_t *m;
    atomic_bool spinning, main_ran;
    int trylock;
};

static void *spin_then_try(void *arg)
{
    struct spinner *s = arg;

    atomic_store(&s->spinning, true);
    while (!atomic_load(&s->main_ran))
        ;
    s->trylock = pthread_mutex_trylock(s->m);
    if (s->trylock == 0)
        pthread_mutex_unlock(s->m);
    return NULL;
}

static void check_recursive_after_preemption(void)
{
    pthread_mutexattr_t attr;
    pthread_mutex_t m;
    struct spinner s = { .m = &m };
    pthread_t t;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m, &attr);
    pthread_mutex_lock(&m);
    if (pthread_create(&t, NULL, spin_then_try, &s) != 0)
        die("pthread_create");
    while (!atomic_load(&s.spinning))
        sched_yield();
    atomic_store(&s.main_ran, true);
    pthread_join(t, NULL);
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);
    report_result("recursive_after_preemption", s.trylock == EBUSY || failf("the spinner's trylock: %s", errname(s.trylock)),
                  "a thread preempted before its first mutex call: its trylock of main's recursive mutex EBUSY");
}

/* A fork's child is another process, whose thread holds nothing its parent holds: under
 * coop the child keeps the forking greenlet and its owner id (main's child, the parent's
 * pid), which process-shared locks must tell apart by the process. */
struct held_at_fork {
    pthread_mutex_t recursive, errorcheck;
    pthread_rwlock_t rwlock;
};

/* And one of the process's own, as glibc: not the child's thread's either. */
static pthread_mutex_t private_errorcheck = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

struct forker {
    struct held_at_fork *held;
    int child_status;
};

/* The child's exit status: 0, or which call took the parent's lock for its own. */
enum { CHILD_TRYLOCKED = 1, CHILD_UNLOCKED, CHILD_DEADLOCKED, CHILD_UNLOCKED_PRIVATE, CHILD_NO_THREAD, CHILD_CODES };

static const char *const child_failures[CHILD_CODES] = {
    [CHILD_TRYLOCKED] = "its trylock of the recursive mutex did not say EBUSY",
    [CHILD_UNLOCKED] = "its unlock of the error-checking mutex did not say EPERM",
    [CHILD_DEADLOCKED] = "its timed write lock did not say ETIMEDOUT",
    [CHILD_UNLOCKED_PRIVATE] = "its unlock of a private error-checking mutex did not say EPERM",
    [CHILD_NO_THREAD] = "its pthread_create failed",
};

static void *wait_for_post(void *sem)
{
    sem_wait(sem);
    return NULL;
}

static int claims_of(struct held_at_fork *h)
{
    struct timespec soon;

    clock_gettime(CLOCK_REALTIME, &soon);
    soon.tv_nsec += 10 * 1000000;       /* held by the parent until the child has ended */
    if (soon.tv_nsec >= 1000000000) {
        soon.tv_sec++;
        soon.tv_nsec -= 1000000000;
    }
    if (pthread_mutex_trylock(&h->recursive) != EBUSY)
        return CHILD_TRYLOCKED;
    if (pthread_mutex_unlock(&h->errorcheck) != EPERM)
        return CHILD_UNLOCKED;
    if (pthread_rwlock_timedwrlock(&h->rwlock, &soon) != ETIMEDOUT)
        return CHILD_DEADLOCKED;
    if (pthread_mutex_unlock(&private_errorcheck) != EPERM)
        return CHILD_UNLOCKED_PRIVATE;
    return 0;
}

/* With a second thread waiting meanwhile: under coop, a lone thread's calls go to glibc. */
static int claim_in_child(struct held_at_fork *h)
{
    sem_t done;
    pthread_t companion;
    int code;

    sem_init(&done, 0, 0);
    if (pthread_create(&companion, NULL, wait_for_post, &done) != 0)
        return CHILD_NO_THREAD;
    code = claims_of(h);
    sem_post(&done);
    pthread_join(companion, NULL);
    return code;
}

/* Fresh locks each time: a child that took one for its own leaves it held. */
static void *fork_while_holding(void *arg)
{
    struct forker *f = arg;
    struct held_at_fork *h = f->held;
    pthread_mutexattr_t attr;
    pthread_rwlockattr_t rwattr;
    pid_t pid;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&h->recursive, &attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&h->errorcheck, &attr);
    pthread_rwlockattr_init(&rwattr);
    pthread_rwlockattr_setpshared(&rwattr, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&h->rwlock, &rwattr);
    pthread_mutex_lock(&h->recursive);
    pthread_mutex_lock(&h->errorcheck);
    pthread_rwlock_wrlock(&h->rwlock);
    pthread_mutex_lock(&private_errorcheck);
    pid = fork();
    if (pid == 0)
        _exit(claim_in_child(h));
    if (pid < 0 || waitpid(pid, &f->child_status, 0) != pid)
        die("fork");
    pthread_mutex_unlock(&private_errorcheck);
    pthread_rwlock_unlock(&h->rwlock);
    pthread_mutex_unlock(&h->errorcheck);
    pthread_mutex_unlock(&h->recursive);
    return NULL;
}

static bool forked_child_claims_nothing(const char *forker, int status)
{
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

    return code == 0
           || failf("the child of %s: %s", forker,
                    code > 0 && code < CHILD_CODES ? child_failures[code] : "it did not exit as it should");
}

static void check_forked_child_not_owner(void)
{
    struct held_at_fork *h = mmap(NULL, sizeof *h, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct forker by_main = { .held = h }, by_thread = { .held = h };
    pthread_t t;

    if (h == MAP_FAILED)
        die("mmap");
    fork_while_holding(&by_main);
    if (pthread_create(&t, NULL, fork_while_holding, &by_thread) != 0)
        die("pthread_create");
    pthread_join(t, NULL);
    munmap(h, sizeof *h);
    report_result("forked_child_not_owner",
                  forked_child_claims_nothing("main", by_main.child_status)
                      && forked_child_claims_nothing("a thread", by_thread.child_status),
                  "a child forked by main, then by a thread, holding process-shared locks: its trylock of a "
                  "recursive mutex EBUSY, unlock of an error-checking one EPERM, timed write lock ETIMEDOUT; "
                  "unlock of a private error-checking one EPERM");
}

/* ---- with a second process ---- */

static void init_shared_objects(void)
{
    pthread_mutexattr_t mattr;
    pthread_condattr_t cattr;
    pthread_rwlockattr_t rattr;

    pthread_mutexattr_init(&mattr);
    pthread_mutexattr_setpshared(&mattr, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&shm->mutex, &mattr);
    pthread_condattr_init(&cattr);
    pthread_condattr_setpshared(&cattr, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&shm->cond, &cattr);
    pthread_rwlockattr_init(&rattr);
    pthread_rwlockattr_setpshared(&rattr, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&shm->rwlock, &rattr);
    shm->turn = 0;
    sem_init(&shm->ready, 1, 0);
    sem_init(&shm->done, 1, 0);
    shm->log[0] = '\0';
}

static void *lock_and_append(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&shm->mutex);
    append("parent");
    pthread_mutex_unlock(&shm->mutex);
    return NULL;
}

static void *read_and_append(void *arg)
{
    (void)arg;
    pthread_rwlock_rdlock(&shm->rwlock);
    append("parent");
    pthread_rwlock_unlock(&shm->rwlock);
    return NULL;
}

/* The second process takes an object first (in role), then a thread here (take) waits. */
static void check_waits_for_process(const char *name, const char *role, void *(*take)(void *),
                                    const char *result)
{
    pid_t child;
    pthread_t t;
    long before;
    bool ok;

    init_shared_objects();
    child = spawn_child(role);
    sem_wait(&shm->ready);
    before = atomic_load(&ticks);
    pthread_create(&t, NULL, take, NULL);
    pthread_join(t, NULL);
    ok = child_succeeded(child) && others_ran(before)
         && (strcmp(shm->log, "child,parent") == 0 || failf("order \"%s\"", shm->log));
    report_result(name, ok, result);
}

static void check_process_waits(void)
{
    pid_t child;
    bool ok;

    init_shared_objects();
    pthread_mutex_lock(&shm->mutex);
    child = spawn_child("waits");
    sem_wait(&shm->ready);
    sleep_ms(50);
    append("parent");
    pthread_mutex_unlock(&shm->mutex);
    ok = child_succeeded(child) && (strcmp(shm->log, "parent,child") == 0 || failf("order \"%s\"", shm->log));
    report_result("pshared_mutex_wakes_process", ok, "the other process's lock ended at this unlock");
}

/* ---- condition variables and read-write locks ---- */

enum { ROUNDS = 20 };

/* Waits, with the mutex held, until the turn is `mine`. */
static void wait_turn(int mine)
{
    while (shm->turn != mine)
        pthread_cond_wait(&shm->cond, &shm->mutex);
}

static void give_turn(int to)
{
    shm->turn = to;
    pthread_cond_broadcast(&shm->cond);
}

static void *take_turns(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&shm->mutex);
    for (int i = 0; i < ROUNDS; i++) {
        wait_turn(1);
        give_turn(0);
    }
    pthread_mutex_unlock(&shm->mutex);
    return NULL;
}

static void check_cond_turns(void)
{
    pthread_t t;

    init_shared_objects();
    pthread_create(&t, NULL, take_turns, NULL);
    pthread_mutex_lock(&shm->mutex);
    for (int i = 0; i < ROUNDS; i++) {
        give_turn(1);
        wait_turn(0);
    }
    pthread_mutex_unlock(&shm->mutex);
    pthread_join(t, NULL);
    report_result("pshared_cond_turns", true, "20 turns handed back and forth");
}

struct reader {
    sem_t tried;
    int tryrd, trywr, rd;
};

static void *read_while_written(void *arg)
{
    struct reader *r = arg;

    r->tryrd = pthread_rwlock_tryrdlock(&shm->rwlock);
    r->trywr = pthread_rwlock_trywrlock(&shm->rwlock);
    sem_post(&r->tried);
    r->rd = pthread_rwlock_rdlock(&shm->rwlock);
    append("reader");
    pthread_rwlock_unlock(&shm->rwlock);
    return NULL;
}

static void check_rwlock_writer(void)
{
    struct reader r;
    pthread_t t;
    char result[160];

    init_shared_objects();
    pthread_rwlock_wrlock(&shm->rwlock);
    int again = pthread_rwlock_wrlock(&shm->rwlock), read = pthread_rwlock_rdlock(&shm->rwlock);
    sem_init(&r.tried, 0, 0);
    pthread_create(&t, NULL, read_while_written, &r);
    sem_wait(&r.tried);
    sleep_ms(50);                     /* lets it reach its rdlock, which must wait */
    append("writer");
    pthread_rwlock_unlock(&shm->rwlock);
    pthread_join(t, NULL);
    snprintf(result, sizeof result, "writer's wrlock %s, rdlock %s; another's tryrdlock %s, trywrlock %s, rdlock %s; %s",
             errname(again), errname(read), errname(r.tryrd), errname(r.trywr), errname(r.rd), shm->log);
    report_result("pshared_rwlock_writer",
                  (again == EDEADLK && read == EDEADLK && r.tryrd == EBUSY && r.trywr == EBUSY && r.rd == 0
                   && strcmp(shm->log, "writer,reader") == 0)
                      || failf("%s", result),
                  result);
}

static void check_process_cond(void)
{
    pid_t child;
    long before;
    bool ok;

    init_shared_objects();
    child = spawn_child("signals");
    before = atomic_load(&ticks);
    pthread_mutex_lock(&shm->mutex);
    wait_turn(1);
    pthread_mutex_unlock(&shm->mutex);
    ok = others_ran(before) && child_succeeded(child);
    report_result("pshared_cond_process", ok, "the other process's signal ended the wait");
}

static void check_process_semaphores(void)
{
    pid_t child;
    sem_t *named;
    long before;
    bool ok;

    init_shared_objects();
    named = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 0);
    if (named == SEM_FAILED)
        die_errno("sem_open");
    child = spawn_child("posts");
    before = atomic_load(&ticks);
    errno = EDOM;       /* a wait that ends with a post leaves errno as it was */
    ok = (sem_wait(&shm->done) == 0 || failf("sem_wait: %s", strerror(errno)))
         && (errno == EDOM || failf("sem_wait set errno to %s", strerror(errno))) && others_ran(before);
    before = atomic_load(&ticks);
    ok = ok && (sem_wait(named) == 0 || failf("sem_wait on the named semaphore: %s", strerror(errno)))
         && others_ran(before) && child_succeeded(child);
    sem_close(named);
    sem_unlink(sem_name);
    report_result("pshared_semaphores", ok, "posts of the other process ended both waits");
}

int main(int argc, char **argv)
{
    pthread_t ticker_thread;

    if (argc == 5 && strcmp(argv[1], "child") == 0) {
        snprintf(sem_name, sizeof sem_name, "%s", argv[4]);
        return child_main(atoi(argv[2]), argv[3]);
    }
    snprintf(sem_name, sizeof sem_name, "/coop-pshared-%d", getpid());
    shm_fd = memfd_create("pshared", 0);
    if (shm_fd < 0 || ftruncate(shm_fd, sizeof *shm) != 0)
        die_errno("memfd_create");
    shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
    if (shm == MAP_FAILED)
        die_errno("mmap");

    if (pthread_create(&ticker_thread, NULL, ticker, NULL) != 0)
        die("pthread_create");
    check_errorcheck();
    check_robust_moves();
    check_robust_owner_died();
    check_owned_by_one_thread();
    check_contended_turns();
    check_pshared_recursive();
    check_recursive_after_preemption();
    check_forked_child_not_owner();
    check_waits_for_process("pshared_mutex_held_by_process", "holds", lock_and_append,
                            "waited for the other process's unlock");
    check_process_waits();
    check_cond_turns();
    check_rwlock_writer();
    check_process_cond();
    check_waits_for_process("pshared_rwlock_process", "writes", read_and_append,
                            "read after the other process's write");
    check_process_semaphores();
    atomic_store(&stop_ticking, true);
    pthread_join(ticker_thread, NULL);
    printf("%s\n", failures == 0 ? "pshared: all checks passed" : "pshared: checks failed");
    return failures == 0 ? 0 : 1;
}
