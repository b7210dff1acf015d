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

int coop_offload_interruptible(void (*fn)(void *), void (*cancel)(void *), void *arg)
{
    struct coop_greenlet *g = coop_self();
    struct offload o = { .fn = fn, .arg = arg, .g = g };
    o.req.data = &o;
    if (g == NULL || queue(&coop_thread.hub->loop, &o) != 0) {
        fn(arg);
        return 0;
    }
    int interrupted = 0;
    while (!o.done) {      /* the work owns o until it ends, interrupted or not */
        coop_prepare_wait(g, WAIT_OFFLOAD, NULL);
        if (o.done) {
            coop_cancel_wait(g);
            break;
        }
        int reason = coop_suspend(COOP_NO_DEADLINE);
        if ((reason == EINTR || reason == COOP_RESTART) && cancel != NULL && interrupted == 0) {
            interrupted = reason;
            cancel(arg);
        }
    }
    coop_after_wait(g);     /* only now: a handler may longjmp out, and o is on this stack */
    return interrupted;
}

void coop_offload(void (*fn)(void *), void *arg)
{
    coop_offload_interruptible(fn, NULL, arg);
}
