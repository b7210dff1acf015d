/*
 * Work with no fd to wait on (name lookups, regular-file I/O, waiting for a child) runs on
 * libuv's threadpool while the calling greenlet waits and the others run, as gevent sends
 * such work to its native threadpool. The pool's threads are runtime threads: whatever
 * the work calls goes straight to libc.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

struct offload {
    uv_work_t req;
    void (*fn)(void *);
    void *arg;
    struct coop_greenlet *g;
    bool done;
};

static unsigned pool_size = 10;
static bool started;

void coop_offload_configure(unsigned threads) { pool_size = threads; }
int coop_offload_threads(void) { return started ? (int)pool_size : 0; }

static void run(uv_work_t *req)
{
    struct offload *o = req->data;
    coop_mark_runtime_thread();
    o->fn(o->arg);
}

static void finished(uv_work_t *req, int status)
{
    (void)status;
    struct offload *o = req->data;
    o->done = true;
    coop_wake(o->g, o->g->wait_gen, 0);
}

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

static int queue(uv_loop_t *loop, struct offload *o)
{
    if (started)
        return uv_queue_work(loop, &o->req, run, finished);
    if (!pool_fits())
        return UV_EAGAIN;      /* the work runs in the caller instead */
    /* The pool's threads start inside this call and inherit this mask: with every signal
     * blocked, a process-wide signal is never handed to one of them. */
    sigset_t old;
    coop_block_all_signals(&old);
    int err = uv_queue_work(loop, &o->req, run, finished);
    coop_restore_signals(&old);
    started = true;
    return err;
}

/* libuv's own fork handler resets its pool: the child starts one afresh, sized again. */
void coop_offload_fork_child(void) { started = false; }

/* Queues o for the pool; false when there is none for the caller, after running it inline. */
static bool begin(struct offload *o, void (*fn)(void *), void *arg)
{
    *o = (struct offload){ .fn = fn, .arg = arg, .g = coop_self() };
    o->req.data = o;
    if (o->g == NULL || queue(&coop_thread.hub->loop, o) != 0) {
        fn(arg);
        return false;
    }
    return true;
}

/* Waits until the pool is done with o; when a handler interrupts the wait, cancel(arg)
 * runs once. Its wake may also end another wait of the caller early, which every wait
 * allows. 0, or EINTR / COOP_RESTART when a handler interrupted it. */
static int finish(struct offload *o, void (*cancel)(void *))
{
    struct coop_greenlet *g = o->g;
    int interrupted = 0;
    while (!o->done) {      /* the work owns o until it ends, interrupted or not */
        coop_prepare_wait(g, WAIT_OFFLOAD, NULL);
        if (o->done) {
            coop_cancel_wait(g);
            break;
        }
        int reason = coop_suspend(COOP_NO_DEADLINE);
        if ((reason == EINTR || reason == COOP_RESTART) && cancel != NULL && interrupted == 0) {
            interrupted = reason;
            cancel(o->arg);
        }
    }
    coop_after_wait(g);     /* only now: a handler may longjmp out, and o may be on this stack */
    return interrupted;
}

int coop_offload_interruptible(void (*fn)(void *), void (*cancel)(void *), void *arg)
{
    struct offload o;
    return begin(&o, fn, arg) ? finish(&o, cancel) : 0;
}

void coop_offload(void (*fn)(void *), void *arg)
{
    coop_offload_interruptible(fn, NULL, arg);
}

struct coop_offload *coop_offload_start(void (*fn)(void *), void *arg)
{
    struct offload *o = malloc(sizeof *o);
    if (o == NULL) {
        fn(arg);
        return NULL;
    }
    if (begin(o, fn, arg))
        return (struct coop_offload *)o;
    free(o);
    return NULL;
}

void coop_offload_finish(struct coop_offload *call)
{
    if (call == NULL)
        return;
    finish((struct offload *)call, NULL);
    free(call);
}
