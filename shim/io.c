/* Family io: read and write on any fd, and the calls that create, copy and close fds. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <stdlib.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

extern void __chk_fail(void) __attribute__((noreturn));

struct buf_args { void *buf; size_t len; };
struct iov_args { struct iovec *iov; int iovcnt; };

static ssize_t attempt_read(int fd, void *a, enum shim_try how)
{
    struct buf_args *b = a;
    if (how == TRY_DONTWAIT)
        return REAL(recv)(fd, b->buf, b->len, MSG_DONTWAIT);
    if (how == TRY_NOWAIT)
        return preadv2(fd, &(struct iovec){ b->buf, b->len }, 1, -1, RWF_NOWAIT);
    return REAL(read)(fd, b->buf, b->len);
}

static ssize_t attempt_readv(int fd, void *a, enum shim_try how)
{
    struct iov_args *v = a;
    struct msghdr m = { .msg_iov = v->iov, .msg_iovlen = (size_t)v->iovcnt };
    if (how == TRY_DONTWAIT)
        return REAL(recvmsg)(fd, &m, MSG_DONTWAIT);
    if (how == TRY_NOWAIT)
        return preadv2(fd, v->iov, v->iovcnt, -1, RWF_NOWAIT);
    return REAL(readv)(fd, v->iov, v->iovcnt);
}

/* A read or write of nothing on anything but a socket never waits in the kernel. */
static bool empty_call(int fd, size_t len)
{
    return len == 0 && shim_fd(fd)->kind != FD_SOCKET;
}

static ssize_t do_read(int fd, void *buf, size_t len)
{
    if (shim_cooperative(FAM_io) == NULL || empty_call(fd, len))
        return REAL(read)(fd, buf, len);
    struct buf_args b = { buf, len };
    return shim_blocking(fd, SHIM_IN, SHIM_DONTWAIT | SHIM_NOWAIT, attempt_read, &b);
}

EXPORT ssize_t read(int fd, void *buf, size_t len) { return do_read(fd, buf, len); }

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (len > buflen)
        __chk_fail();
    return do_read(fd, buf, len);
}

/* A count readv and writev refuse (EINVAL) before anything, and recvmsg and sendmsg, which
 * coop tries sockets with, would refuse otherwise (EMSGSIZE). */
static bool bad_count(int iovcnt)
{
    return iovcnt < 0 || iovcnt > IOV_MAX;
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (shim_cooperative(FAM_io) == NULL || bad_count(iovcnt))
        return REAL(readv)(fd, iov, iovcnt);
    struct iov_args v = { (struct iovec *)iov, iovcnt };
    return shim_blocking(fd, SHIM_IN, SHIM_DONTWAIT | SHIM_NOWAIT, attempt_readv, &v);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    if (shim_cooperative(FAM_io) == NULL || empty_call(fd, len))
        return REAL(write)(fd, buf, len);
    struct iovec iov = { (void *)buf, len };
    struct shim_out out = { .msg = { .msg_iov = &iov, .msg_iovlen = 1 }, .is_write = true };
    return shim_send_all(fd, &out);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (shim_cooperative(FAM_io) == NULL || bad_count(iovcnt))
        return REAL(writev)(fd, iov, iovcnt);
    struct shim_out out = { .msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt },
                            .user_iov = true, .is_write = true };
    return shim_send_all(fd, &out);
}

/* A pipe the runtime makes (libunwind's, core/hub.c) is its own, out of the program's way. */
EXPORT int pipe2(int fds[2], int flags)
{
    int r = REAL(pipe2)(fds, flags);
    if (r == 0 && coop_runtime_calling()) {
        fds[0] = coop_runtime_fd_take(fds[0]);
        fds[1] = coop_runtime_fd_take(fds[1]);
    } else if (r == 0 && shim_patched[FAM_io]) {
        shim_fd_opened(fds[0], FD_POLLABLE, O_RDONLY | (flags & O_NONBLOCK));
        shim_fd_opened(fds[1], FD_POLLABLE, O_WRONLY | (flags & O_NONBLOCK));
    }
    return r;
}

EXPORT int pipe(int fds[2]) { return pipe2(fds, 0); }

int shim_lingering_closes_max;
/* Lingering closes on the pool now: taken by the closing greenlet, on any hub, given back by
 * the pool thread that closed. */
static atomic_int lingering_closes;

struct close_call { int fd, ret, err; };

/* Gives its share back here: a handler that jumps out of the caller's wait would skip it. */
static void close_on_pool(void *p)
{
    struct close_call *c = p;
    c->ret = REAL(close)(c->fd);
    c->err = errno;
    atomic_fetch_sub(&lingering_closes, 1);
}

/* Leaves half the pool to name lookups and file work while slow peers hold closes. */
static bool take_pool_share(void)
{
    if (atomic_fetch_add(&lingering_closes, 1) < shim_lingering_closes_max)
        return true;
    atomic_fetch_sub(&lingering_closes, 1);
    return false;
}

/* coop's own fds (a hub's epoll sets) were never the program's: closing one fails as closing
 * a number nobody opened does, and a range is closed around them (core/hub.c says why);
 * only the runtime's own code closes one (libunwind, renewing its pipe).
 * The last close of a socket with SO_LINGER waits, whatever O_NONBLOCK says, until the peer
 * has taken every byte or the linger time is up (privoxy sets 5 s on every connection, and a
 * slow client holds it that long): it runs on the pool while the caller waits, or, when half
 * the pool already holds such closes, holds the hub's thread (which the monitor hands off).
 * A signal that would end the wait natively waits for it. */
EXPORT int close(int fd)
{
    if (coop_fd_is_runtime(fd)) {
        int r = coop_runtime_calling() ? coop_runtime_fd_close(fd) : -EBADF;
        if (r == 0)
            return 0;
        errno = -r;
        return -1;
    }
    if (!shim_patched[FAM_io])
        return REAL(close)(fd);
    bool lingers = shim_fd_lingers(fd) && shim_cooperative(FAM_io) != NULL;
    if (lingers)
        shim_cancel_point();      /* glibc's, at the entry of a close that waits */
    shim_fd_closed(fd);
    if (!lingers || !take_pool_share())
        return REAL(close)(fd);
    struct close_call c = { .fd = fd };
    coop_offload(close_on_pool, &c);
    if (c.ret < 0)
        errno = c.err;
    return c.ret;
}

/* The table forgets the range first, as close() does, so that a number the kernel frees is
 * never reused under a stale entry; a range that fails (an old kernel) is a rare loss. */
EXPORT int close_range(unsigned first, unsigned last, int flags)
{
    if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
        return REAL(close_range)(first, last, flags);      /* EINVAL, as the kernel says */
    if (shim_patched[FAM_io] && !(flags & CLOSE_RANGE_CLOEXEC))
        shim_fd_range_closed(first, last);
    unsigned from = first;
    for (int ours = coop_runtime_fd_next(from); ours >= 0 && (unsigned)ours <= last;
         ours = coop_runtime_fd_next(from)) {
        if ((unsigned)ours > from && REAL(close_range)(from, (unsigned)ours - 1, flags) != 0)
            return -1;
        from = (unsigned)ours + 1;      /* below RUNTIME_FDS_TRACKED: no wrap */
    }
    return from <= last ? REAL(close_range)(from, last, flags) : 0;
}

/* glibc's closefrom calls its own close_range, past this one; where that fails, this walks
 * the open fds as glibc's fallback does, but through close(). */
EXPORT void closefrom(int first)
{
    if (first < 0)
        first = 0;
    if (close_range((unsigned)first, ~0u, 0) == 0)
        return;
    DIR *open_fds = opendir("/proc/self/fd");
    if (open_fds == NULL)
        return;
    for (struct dirent *e; (e = readdir(open_fds)) != NULL;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= first && fd != dirfd(open_fds))
            close(fd);
    }
    closedir(open_fds);
}

EXPORT int dup(int fd)
{
    int r = REAL(dup)(fd);
    if (r >= 0 && shim_patched[FAM_io])
        shim_fd_copied(fd, r);
    return r;
}

EXPORT int dup3(int from, int to, int flags)
{
    if (shim_patched[FAM_io] && from != to)
        shim_fd_closed(to);
    int r = REAL(dup3)(from, to, flags);
    if (r >= 0 && shim_patched[FAM_io])
        shim_fd_copied(from, r);
    return r;
}

EXPORT int dup2(int from, int to)
{
    if (shim_patched[FAM_io] && from != to)
        shim_fd_closed(to);
    int r = REAL(dup2)(from, to);
    if (r >= 0 && from != to && shim_patched[FAM_io])
        shim_fd_copied(from, r);
    return r;
}

/* fcntl's third argument is an int or a pointer depending on cmd; both fit a long. A lock
 * that waits goes to file's locks (locks.c). */
static int do_fcntl(int (*real)(int, int, ...), int fd, int cmd, long arg)
{
    if ((cmd == F_SETLKW || cmd == F_OFD_SETLKW) && shim_cooperative(FAM_file) != NULL)
        return shim_fcntl_lock_wait(fd, cmd, (struct flock *)arg);
    int r = real(fd, cmd, arg);
    if (r < 0 || !shim_patched[FAM_io])
        return r;
    if (cmd == F_SETFL)
        shim_fd(fd)->nonblock = arg & O_NONBLOCK;
    else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        shim_fd_copied(fd, r);
    return r;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    return do_fcntl(REAL(fcntl), fd, cmd, arg);
}

/* On x86-64 fcntl64 is fcntl. */
EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

EXPORT int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int r = REAL(ioctl)(fd, request, arg);
    if (r == 0 && request == FIONBIO && shim_patched[FAM_io])
        shim_fd(fd)->nonblock = *(int *)arg != 0;
    return r;
}
