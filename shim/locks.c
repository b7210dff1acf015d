/*
 * Family file, locks on files: flock, fcntl's F_SETLKW and F_OFD_SETLKW, lockf's F_LOCK.
 * glibc's lockf reaches fcntl inside libc, so it has a wrapper of its own. A free lock is
 * taken at once (the non-blocking form of the call); a held one is waited for on the
 * threadpool (core/offload.c) while the caller parks and its hub runs the others. flock
 * and OFD locks belong to the open file description and POSIX record locks to the process,
 * so a pool thread takes them for the caller exactly; the kernel's deadlock detection for
 * record locks sees the same process.
 *
 * The wait on the pool is not ended by a signal (the pool's threads block them): a handler
 * runs, and the lock call goes on waiting, as if installed with SA_RESTART. A program with
 * more greenlets waiting for locks than the pool has threads (COOP_THREADPOOL_SIZE) has
 * the rest wait for a pool thread.
 */
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

/* Whether a failed non-blocking attempt means "held by someone else". */
static bool held_elsewhere(int err) { return err == EAGAIN || err == EACCES || err == EWOULDBLOCK; }

struct lock_call {
    int (*op)(struct lock_call *c);
    int fd, arg;
    struct flock *record;
    off_t len;
    int ret, err;
};

static void run(void *p)
{
    struct lock_call *c = p;
    c->ret = c->op(c);
    c->err = errno;
}

/* The blocking call, on the pool. */
static int wait_on_pool(struct lock_call *c)
{
    coop_offload(run, c);
    if (c->ret < 0)
        errno = c->err;
    return c->ret;
}

static int flock_op(struct lock_call *c) { return REAL(flock)(c->fd, c->arg); }
static int fcntl_op(struct lock_call *c) { return REAL(fcntl)(c->fd, c->arg, c->record); }
static int lockf_op(struct lock_call *c) { return REAL(lockf)(c->fd, c->arg, c->len); }

EXPORT int flock(int fd, int op)
{
    if ((op & LOCK_NB) || (op & ~LOCK_NB) == LOCK_UN || shim_cooperative(FAM_file) == NULL)
        return REAL(flock)(fd, op);
    int r = REAL(flock)(fd, op | LOCK_NB);
    if (r == 0 || !held_elsewhere(errno))
        return r;
    struct lock_call c = { .op = flock_op, .fd = fd, .arg = op };
    return wait_on_pool(&c);
}

int shim_fcntl_lock_wait(int fd, int cmd, struct flock *lock)
{
    int r = REAL(fcntl)(fd, cmd == F_SETLKW ? F_SETLK : F_OFD_SETLK, lock);
    if (r == 0 || !held_elsewhere(errno))
        return r;
    struct lock_call c = { .op = fcntl_op, .fd = fd, .arg = cmd, .record = lock };
    return wait_on_pool(&c);
}

EXPORT int lockf(int fd, int cmd, off_t len)
{
    if (cmd != F_LOCK || shim_cooperative(FAM_file) == NULL)
        return REAL(lockf)(fd, cmd, len);
    int r = REAL(lockf)(fd, F_TLOCK, len);
    if (r == 0 || !held_elsewhere(errno))
        return r;
    struct lock_call c = { .op = lockf_op, .fd = fd, .arg = F_LOCK, .len = len };
    return wait_on_pool(&c);
}

/* On x86-64 lockf64 is lockf. */
EXPORT int lockf64(int fd, int cmd, off_t len) __attribute__((alias("lockf")));
