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
#include <unistd.h>

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

/* The try that cannot block, for a call that can do what can says on the fd f. */
static enum shim_try quiet_try(const struct shim_fd *f, int can)
{
    if (f->kind == FD_SOCKET)
        return can & SHIM_DONTWAIT ? TRY_DONTWAIT : TRY_POLLED;
    return can & SHIM_NOWAIT && f->nowait != NOWAIT_REFUSED ? TRY_NOWAIT : TRY_POLLED;
}

/*
 * When in doubt, the kernel decides: a call the kernel answers at once (the program's own
 * O_NONBLOCK, an fd not open that way, a socket call on something else) is made as it
 * is; otherwise the call is tried without blocking, the way the fd allows, and only
 * EAGAIN makes the caller wait. An fd that takes neither MSG_DONTWAIT nor RWF_NOWAIT (a
 * terminal) is asked with poll first.
 */
static ssize_t try_until_done(int fd, int dir, int can, shim_attempt attempt, void *args)
{
    struct shim_fd *f = shim_fd(fd);
    if (f->kind == FD_PLAIN)
        return shim_file_io(fd, f, attempt, args);   /* family file: maybe the threadpool */
    if (f->nonblock || (dir == SHIM_IN ? f->no_read : f->no_write)
        || ((can & SHIM_SOCKET_CALL) && f->kind != FD_SOCKET))
        return attempt(fd, args, TRY_BLOCKING);
    int64_t timeout = f->kind == FD_SOCKET ? f->timeout[dir] : 0;
    int64_t deadline = timeout > 0 ? coop_now() + timeout : COOP_NO_DEADLINE;
    for (;;) {
        enum shim_try how = quiet_try(f, can);
        if (how != TRY_POLLED) {
            ssize_t r = attempt(fd, args, how);
            if (how == TRY_NOWAIT && r < 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
                f->nowait = NOWAIT_REFUSED;
                continue;
            }
            if (how == TRY_NOWAIT)
                f->nowait = NOWAIT_WORKS;
            if (r >= 0 || errno != EAGAIN)
                return r;
        } else if (shim_ready_now(fd, dir)) {
            return attempt(fd, args, TRY_POLLED);
        }
        /* The kernel never restarts a socket call that has a timeout. */
        if (shim_wait_fd(fd, dir, deadline, timeout == 0) == 0)
            continue;
        if (errno == ETIMEDOUT)
            errno = EAGAIN;
        else if (errno != EINTR && errno != EBADF)
            return attempt(fd, args, TRY_BLOCKING);   /* epoll cannot watch it: block for real */
        return -1;
    }
}

/* A call that succeeds leaves errno as it found it, as the kernel's does: the tries that met
 * EAGAIN on the way must not show (a loop that reads to EOF and then tests errno). */
ssize_t shim_blocking(int fd, int dir, int can, shim_attempt attempt, void *args)
{
    int caller_errno = errno;
    ssize_t r = try_until_done(fd, dir, can, attempt, args);
    if (r >= 0)
        errno = caller_errno;
    return r;
}

bool shim_copy_in(void *to, const void *from, size_t n)
{
    struct iovec local = { to, n }, remote = { (void *)from, n };
    ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (r == (ssize_t)n)
        return true;
    if (r < 0 && errno != EFAULT) {     /* refused here (seccomp, ENOSYS): read it directly */
        memcpy(to, from, n);
        return true;
    }
    errno = EFAULT;
    return false;
}

bool shim_valid_timeout(const struct timespec *ts)
{
    return ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000;
}

int shim_read_timeout(const struct timespec *user, struct timespec *ts)
{
    if (!shim_copy_in(ts, user, sizeof *ts))
        return EFAULT;
    return shim_valid_timeout(ts) ? 0 : EINVAL;
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

/* At most PIPE_BUF bytes from the start of iov[0..n), in at most PIECE_MAX entries of
 * piece: what a write that poll called possible takes without blocking (and keeps atomic,
 * when that is all of it). */
#define PIECE_MAX 16
static int first_pipe_buf(const struct iovec *iov, size_t n, struct iovec piece[PIECE_MAX])
{
    int count = 0;
    size_t room = PIPE_BUF;
    for (; (size_t)count < n && count < PIECE_MAX && room > 0; count++) {
        piece[count] = iov[count];
        if (piece[count].iov_len > room)
            piece[count].iov_len = room;
        room -= piece[count].iov_len;
    }
    return count;
}

static ssize_t attempt_out(int fd, void *a, enum shim_try how)
{
    struct shim_out *o = a;
    int flags = o->flags | (how == TRY_DONTWAIT ? MSG_DONTWAIT : 0);
    if (o->user != NULL)
        return REAL(sendmsg)(fd, o->user, flags);
    if (o->is_write && how == TRY_NOWAIT)
        return pwritev2(fd, o->msg.msg_iov, (int)o->msg.msg_iovlen, -1, RWF_NOWAIT);
    if (o->is_write && how == TRY_POLLED && o->msg.msg_iovlen <= IOV_MAX) {
        size_t n = o->msg.msg_iovlen;
        struct iovec copy[o->user_iov ? n : 1], piece[PIECE_MAX];
        const struct iovec *iov = o->msg.msg_iov;
        if (o->user_iov) {       /* the kernel has not read it yet */
            if (!shim_copy_in(copy, iov, n * sizeof *iov))
                return REAL(writev)(fd, iov, (int)n);      /* its EFAULT, at once */
            iov = copy;
        }
        return REAL(writev)(fd, piece, first_pipe_buf(iov, n, piece));
    }
    if (o->is_write && how != TRY_DONTWAIT)
        return REAL(writev)(fd, o->msg.msg_iov, (int)o->msg.msg_iovlen);
    /* The common case, one buffer of coop's own and nothing else, takes the kernel's shorter path. */
    if (!o->user_iov && o->msg.msg_iovlen == 1 && o->msg.msg_name == NULL && o->msg.msg_controllen == 0)
        return REAL(send)(fd, o->msg.msg_iov[0].iov_base, o->msg.msg_iov[0].iov_len, flags);
    return REAL(sendmsg)(fd, &o->msg, flags);
}

/*
 * A blocking write returns only when everything is written, or on an error or signal
 * after which it reports what was written. The first try is the call as the program made
 * it, so that the kernel checks its msghdr and iovec array before coop reads them (on a
 * terminal, which is polled first, coop reads them as the kernel would); what is left goes
 * on from a copy of the array.
 */
ssize_t shim_send_all(int fd, struct shim_out *out)
{
    struct shim_fd *f = shim_fd(fd);
    if (f->kind == FD_PLAIN && out->is_write)
        return shim_file_io(fd, f, attempt_out, out);
    if (f->kind == FD_PLAIN || f->nonblock || (out->flags & MSG_DONTWAIT))
        return attempt_out(fd, out, TRY_BLOCKING);
    int can = SHIM_DONTWAIT | (out->is_write ? SHIM_NOWAIT : SHIM_SOCKET_CALL);
    ssize_t done = shim_blocking(fd, SHIM_OUT, can, attempt_out, out);
    if (done < 0)
        return -1;
    if (out->user != NULL) {
        out->msg = *out->user;
        out->user = NULL;
    }
    size_t left = out->msg.msg_iovlen;
    if (left == 0 || left > IOV_MAX || (size_t)done == iov_total(out->msg.msg_iov, left))
        return done;
    struct iovec local[left];
    memcpy(local, out->msg.msg_iov, left * sizeof local[0]);
    struct iovec *cur = local;
    iov_advance(&cur, &left, (size_t)done);
    out->msg.msg_control = NULL;       /* ancillary data goes with the first byte only */
    out->msg.msg_controllen = 0;
    out->user_iov = false;
    int caller_errno = errno;       /* the call succeeds from here: what was written */
    while (left > 0) {
        out->msg.msg_iov = cur;
        out->msg.msg_iovlen = left;
        ssize_t n = shim_blocking(fd, SHIM_OUT, can, attempt_out, out);
        if (n < 0)
            break;
        done += n;
        iov_advance(&cur, &left, (size_t)n);
    }
    errno = caller_errno;
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
