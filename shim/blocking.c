/*
 * The loop that makes a blocking call cooperative: try the call without blocking; on
 * EAGAIN park the greenlet until its fd is ready; retry. Sockets are tried with
 * MSG_DONTWAIT. Other fds (pipes, terminals) are never switched to non-blocking mode,
 * since their file description may be shared with other processes: poll says whether the
 * call would block, and only a ready fd gets the real call.
 */
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "shim.h"

bool shim_ready_now(int fd, int dir)
{
    struct pollfd p = { .fd = fd, .events = dir == SHIM_IN ? POLLIN : POLLOUT };
    return REAL(poll)(&p, 1, 0) != 0;   /* errors too: the real call reports them */
}

/* A handler with SA_RESTART that ran meanwhile ends the wait as a wakeup does: the kernel
 * would restart the call, which then finds whatever became ready, so the caller tries its
 * call again (an fd's readiness is reported once, and the interruption may have taken the
 * wakeup that carried it). */
int shim_wait_fd(int fd, int dir, int64_t deadline, bool restartable)
{
    int r = coop_wait_fd(fd, dir == SHIM_IN ? COOP_READ : COOP_WRITE, deadline);
    if (r == COOP_RESTART)
        r = restartable ? 0 : EINTR;
    if (r == 0)
        return 0;
    errno = r;
    return -1;
}

ssize_t shim_blocking(int fd, int dir, bool has_dontwait, shim_attempt attempt, void *args)
{
    struct shim_fd *f = shim_fd(fd);
    if (f->kind == FD_PLAIN)
        return shim_file_io(fd, f, attempt, args);   /* family file: maybe the threadpool */
    if (f->nonblock)
        return attempt(fd, args, false);
    bool dontwait = f->kind == FD_SOCKET && has_dontwait;
    int64_t timeout = f->kind == FD_SOCKET ? f->timeout[dir] : 0;
    int64_t deadline = timeout > 0 ? coop_now() + timeout : COOP_NO_DEADLINE;
    for (;;) {
        if (dontwait) {
            ssize_t r = attempt(fd, args, true);
            if (r >= 0 || errno != EAGAIN)
                return r;
        } else if (shim_ready_now(fd, dir)) {
            return attempt(fd, args, false);
        }
        /* The kernel never restarts a socket call that has a timeout. */
        if (shim_wait_fd(fd, dir, deadline, timeout == 0) == 0)
            continue;
        if (errno == ETIMEDOUT)
            errno = EAGAIN;
        else if (errno != EINTR && errno != EBADF)
            return attempt(fd, args, false);   /* epoll cannot watch it: block for real */
        return -1;
    }
}

int64_t shim_deadline_after(const struct timespec *rel)
{
    if (rel == NULL)
        return COOP_NO_DEADLINE;
    int64_t now = coop_now();
    if (rel->tv_sec >= (COOP_NO_DEADLINE - now) / 1000000000 - 1)
        return COOP_NO_DEADLINE;
    return now + rel->tv_sec * 1000000000LL + rel->tv_nsec;
}

int64_t shim_deadline_at(clockid_t clock, const struct timespec *abs)
{
    struct timespec now;
    clock_gettime(clock, &now);
    struct timespec rel = { abs->tv_sec - now.tv_sec, abs->tv_nsec - now.tv_nsec };
    if (rel.tv_nsec < 0) {
        rel.tv_nsec += 1000000000;
        rel.tv_sec--;
    }
    if (rel.tv_sec < 0)
        return coop_now();
    return shim_deadline_after(&rel);
}

int64_t shim_deadline_ms(int timeout_ms)
{
    return timeout_ms < 0 ? COOP_NO_DEADLINE : coop_now() + timeout_ms * 1000000LL;
}

struct timespec shim_remaining(int64_t deadline)
{
    int64_t left = deadline - coop_now();
    if (left < 0)
        left = 0;
    return (struct timespec){ left / 1000000000, left % 1000000000 };
}

/* Drops the first n bytes of an iovec array, in place. */
static void iov_advance(struct iovec **iov, size_t *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (char *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

static size_t iov_total(const struct iovec *iov, size_t iovcnt)
{
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    return total;
}

static ssize_t attempt_out(int fd, void *a, bool dontwait)
{
    struct shim_out *o = a;
    int flags = o->flags | (dontwait ? MSG_DONTWAIT : 0);
    if (o->is_write && !dontwait)
        return REAL(writev)(fd, o->msg.msg_iov, (int)o->msg.msg_iovlen);
    /* The common case, one buffer and nothing else, takes the kernel's shorter path. */
    if (o->msg.msg_iovlen == 1 && o->msg.msg_name == NULL && o->msg.msg_controllen == 0)
        return REAL(send)(fd, o->msg.msg_iov[0].iov_base, o->msg.msg_iov[0].iov_len, flags);
    return REAL(sendmsg)(fd, &o->msg, flags);
}

/*
 * A blocking write returns only when everything is written, or on an error or signal
 * after which it reports what was written. A non-socket fd that poll calls writable has
 * room for PIPE_BUF bytes: larger writes go in PIPE_BUF pieces, so the real call never
 * blocks the hub (writes of PIPE_BUF or less stay whole, and atomic).
 */
ssize_t shim_send_all(int fd, struct shim_out *out)
{
    struct shim_fd *f = shim_fd(fd);
    size_t left = out->msg.msg_iovlen;
    if (f->kind == FD_PLAIN && out->is_write)
        return shim_file_io(fd, f, attempt_out, out);
    if (f->kind == FD_PLAIN || f->nonblock || (out->flags & MSG_DONTWAIT) || left == 0 || left > IOV_MAX)
        return attempt_out(fd, out, false);
    struct iovec local[left];
    memcpy(local, out->msg.msg_iov, left * sizeof local[0]);
    struct iovec *cur = local;
    ssize_t done = 0;
    do {
        struct iovec piece = { cur[0].iov_base, cur[0].iov_len < PIPE_BUF ? cur[0].iov_len : PIPE_BUF };
        bool split = f->kind != FD_SOCKET && iov_total(cur, left) > PIPE_BUF;
        out->msg.msg_iov = split ? &piece : cur;
        out->msg.msg_iovlen = split ? 1 : left;
        ssize_t n = shim_blocking(fd, SHIM_OUT, true, attempt_out, out);
        if (n < 0)
            return done > 0 ? done : -1;
        done += n;
        iov_advance(&cur, &left, (size_t)n);
        out->msg.msg_control = NULL;       /* ancillary data goes with the first byte only */
        out->msg.msg_controllen = 0;
    } while (left > 0);
    return done;
}

int shim_abs_deadline(clockid_t clock, const struct timespec *abstime, int64_t *deadline)
{
    if (abstime->tv_nsec < 0 || abstime->tv_nsec >= 1000000000
        || (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC))
        return EINVAL;
    *deadline = shim_deadline_at(clock, abstime);
    return 0;
}
