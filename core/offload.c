/*
 * Work with no fd to wait on (name lookups, regular-file I/O, waiting for a child) runs on
 * libuv's threadpool while the calling greenlet waits and the others run, as gevent sends
 * such work to its native threadpool. The pool's threads are runtime threads: whatever
 * the work calls goes straight to libc.
 *
 * The pool thread that ran the work wakes the caller itself, through the parking lot (the
 * caller may be on any hub by then). So the loop libuv's pool reports completions to has
 * nothing left to do but release records: there is one for the process, made on the first
 * offload, under a lock (uv_queue_work is not thread-safe), and nobody polls it; each
 * submission first collects the completions so far (a uv_run that does not wait). The
 * hubs know nothing of libuv, and cost no libuv descriptors. A record has two owners, the
 * waiting greenlet and libuv (whose completion may run in another greenlet's submission,
 * before the waiter has even looked at done): the last of the two to let go frees it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/mman.h>

#include "internal.h"

struct offload {
    uv_work_t req;
    void (*fn)(void *);
    void *arg;
    _Atomic bool done;
    _Atomic int owners;        /* the waiter and libuv */
    int interrupted;           /* the waiter's: how a handler first interrupted its wait */
};

/* A wait for the pool ended with reason: the first interruption is kept, for finish. */
static void note_wait_end(struct offload *o, int reason)
{
    if ((reason == EINTR || reason == COOP_RESTART) && o->interrupted == 0)
        o->interrupted = reason;
}

static void let_go(struct offload *o)
{
    if (atomic_fetch_sub(&o->owners, 1) == 1)
        free(o);
}

static unsigned pool_size = 10;
static bool started;
static uv_loop_t loop;
static bool loop_made;

/* The loop's lock, and the pool's start (libuv starts its threads in the first submission,
 * and waits for them): greenlets that find it taken park, so their hubs run on. */
static _Atomic uint32_t loop_taken;

static bool still_taken(const void *unused)
{
    (void)unused;
    return atomic_load(&loop_taken) != 0;
}

static void loop_lock(void)
{
    while (atomic_exchange(&loop_taken, 1) != 0)
        coop_park(&loop_taken, still_taken, NULL, ~0u, COOP_NO_DEADLINE, "threadpool start");
}

static void loop_unlock(void)
{
    atomic_store(&loop_taken, 0);
    coop_unpark(&loop_taken, 1, ~0u);
}

void coop_offload_configure(unsigned threads) { pool_size = threads; }
int coop_offload_threads(void) { return started ? (int)pool_size : 0; }

/* The pool's start (start_pool, below): the thread that started it, named before it
 * submitted the first work; the first pool thread to run work joins it. */
static pthread_t starter;
static _Atomic bool starter_to_join;

/* On a pool thread: the starter has submitted the work being run, and exits at once. */
static void join_starter(void)
{
    if (atomic_exchange(&starter_to_join, false))
        coop_settings.os_thread_join(starter, NULL);
}

static void run(uv_work_t *req)
{
    struct offload *o = req->data;
    coop_mark_runtime_thread();
    join_starter();
    o->fn(o->arg);
    atomic_store(&o->done, true);
    coop_unpark(o, INT_MAX, ~0u);
}

static void finished(uv_work_t *req, int status)
{
    (void)status;
    let_go(req->data);
}

static bool running_still(const void *o) { return !atomic_load(&((const struct offload *)o)->done); }

/* libuv aborts the process when it cannot start its pool's threads (8 MiB stacks each),
 * as under a tight ulimit -v: until it has started, ask the kernel for that room first. */
static bool pool_fits(void)
{
    size_t room = pool_size * ((8u << 20) + (64u << 10));
    void *p = mmap(NULL, room, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return false;
    munmap(p, room);
    return true;
}

/*
 * libuv sizes its pool from getenv("UV_THREADPOOL_SIZE") when it first starts it. Its
 * getenv is renamed to this one (see the Makefile), which answers that question with
 * COOP_THREADPOOL_SIZE: the program's environment is never written, since a setenv may
 * move environ while a caller is passing it to posix_spawn (popen did, and failed).
 */
__attribute__((visibility("hidden"))) char *coop_uv_getenv(const char *name)
{
    static char size[16];
    if (strcmp(name, "UV_THREADPOOL_SIZE") != 0)
        return getenv(name);
    snprintf(size, sizeof size, "%u", pool_size);
    return size;
}

/*
 * The pool's start: libuv starts its threads inside the first submission and waits until
 * each runs, milliseconds on a loaded machine that the caller's hub would sleep through
 * (and be handed off for). A thread of its own makes that submission while the caller
 * parks, holding the loop's lock. The starter and the caller share the record until done
 * is set; the starter's unpark after it uses the address only as a key. Before it submits,
 * the starter names itself for joining, and the first pool thread to run work joins it:
 * so it is gone before any offload ends, and the deadlock check, which counts the
 * process's threads, never meets it.
 */
struct pool_start {
    struct offload *first;
    int err;
    _Atomic bool done;
};

static void first_submission(struct pool_start *s)
{
    s->err = uv_queue_work(&loop, &s->first->req, run, finished);
    atomic_store(&s->done, true);
    coop_unpark(s, 1, ~0u);
}

static void *starter_main(void *s)
{
    coop_mark_runtime_thread();
    starter = (pthread_t)coop_settings.os_thread_self();
    atomic_store(&starter_to_join, true);
    first_submission(s);
    return NULL;
}

static bool starting_still(const void *s) { return !atomic_load(&((const struct pool_start *)s)->done); }

/* Handlers wait, as for the work itself (finish): the caller holds the loop's lock, and
 * the starter the record. */
static void start_pool(struct pool_start *s)
{
    /* The starter, and the pool's threads it starts, inherit this mask: with every signal
     * blocked, a process-wide signal is never handed to one of them. */
    sigset_t old;
    pthread_t t;
    coop_block_all_signals(&old);
    if (coop_settings.os_thread_create(&t, NULL, starter_main, s) != 0)
        first_submission(s);
    coop_restore_signals(&old);
    while (starting_still(s))
        note_wait_end(s->first, coop_park_as(s, starting_still, s, ~0u, COOP_NO_DEADLINE, WAIT_OFFLOAD,
                                             "threadpool start"));
}

/* Under the loop's lock. */
static int submit(struct offload *o)
{
    if (started)
        return uv_queue_work(&loop, &o->req, run, finished);
    if (!pool_fits())
        return UV_EAGAIN;      /* the work runs in the caller instead */
    struct pool_start s = { .first = o };
    start_pool(&s);
    started = true;
    return s.err;
}

static int queue(struct offload *o)
{
    loop_lock();
    int err = 0;
    if (!loop_made)
        err = uv_loop_init(&loop);
    loop_made |= err == 0;
    if (err == 0) {
        uv_run(&loop, UV_RUN_NOWAIT);      /* frees the records of finished work */
        err = submit(o);
    }
    loop_unlock();
    return err;
}

/* libuv's own fork handler resets its pool: the child starts one afresh, sized again. */
void coop_offload_fork_child(void)
{
    started = false;
    atomic_store(&starter_to_join, false);      /* the parent's, if any */
    atomic_store(&loop_taken, 0);
    if (loop_made && uv_loop_fork(&loop) != 0)
        coop_panic("cannot renew the threadpool's loop after fork");
}

/* A record queued for the pool; NULL when there is none for the caller, after running
 * the work inline. */
static struct offload *begin(void (*fn)(void *), void *arg)
{
    /* Handlers already due run now, as the kernel runs them before a system call starts:
     * once the work owns its arguments, they wait for its end. */
    coop_after_wait(coop_self());
    struct offload *o = coop_self() != NULL ? calloc(1, sizeof *o) : NULL;
    if (o == NULL) {
        fn(arg);
        return NULL;
    }
    *o = (struct offload){ .fn = fn, .arg = arg, .owners = 2 };
    o->req.data = o;
    if (queue(o) != 0) {
        free(o);
        fn(arg);
        return NULL;
    }
    return o;
}

/* Waits until the pool is done with o, and lets go of it; when a handler interrupts the
 * wait (here, or while the pool started: start_pool), cancel(arg) runs once if the work
 * still runs. 0, or EINTR / COOP_RESTART when a handler interrupted it. Handlers queued
 * meanwhile run only at the end (coop_park_as leaves them for an offload wait): one may
 * longjmp out, and the work owns its arguments until it ends. */
static int finish(struct offload *o, void (*cancel)(void *))
{
    bool cancelled = cancel == NULL;       /* nothing to call */
    while (running_still(o)) {
        if (o->interrupted != 0 && !cancelled) {
            cancelled = true;
            cancel(o->arg);
        }
        note_wait_end(o, coop_park_as(o, running_still, o, ~0u, COOP_NO_DEADLINE, WAIT_OFFLOAD, "threadpool"));
    }
    int interrupted = cancel != NULL ? o->interrupted : 0;
    let_go(o);
    coop_after_wait(coop_self());
    return interrupted;
}

int coop_offload_interruptible(void (*fn)(void *), void (*cancel)(void *), void *arg)
{
    struct offload *o = begin(fn, arg);
    return o != NULL ? finish(o, cancel) : 0;
}

void coop_offload(void (*fn)(void *), void *arg)
{
    coop_offload_interruptible(fn, NULL, arg);
}

struct coop_offload *coop_offload_start(void (*fn)(void *), void *arg)
{
    return (struct coop_offload *)begin(fn, arg);
}

void coop_offload_finish(struct coop_offload *call)
{
    if (call != NULL)
        finish((struct offload *)call, NULL);
}
