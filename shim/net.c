/* Family net: sockets. Data calls take MSG_DONTWAIT; accept and connect need more care. */
#include <fcntl.h>
#include <sys/socket.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

extern void __chk_fail(void) __attribute__((noreturn));

EXPORT int socket(int domain, int type, int protocol)
{
    int fd = REAL(socket)(domain, type, protocol);
    if (fd >= 0 && shim_patched[FAM_net])
        shim_fd_created(fd, FD_SOCKET, type & SOCK_NONBLOCK);
    return fd;
}

EXPORT int socketpair(int domain, int type, int protocol, int fds[2])
{
    int r = REAL(socketpair)(domain, type, protocol, fds);
    if (r == 0 && shim_patched[FAM_net]) {
        shim_fd_created(fds[0], FD_SOCKET, type & SOCK_NONBLOCK);
        shim_fd_created(fds[1], FD_SOCKET, type & SOCK_NONBLOCK);
    }
    return r;
}

EXPORT int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    int r = REAL(setsockopt)(fd, level, name, value, len);
    if (r != 0 || level != SOL_SOCKET || !shim_patched[FAM_net])
        return r;
    if ((name == SO_RCVTIMEO || name == SO_SNDTIMEO) && len >= sizeof(struct timeval)) {
        const struct timeval *tv = value;
        shim_fd(fd)->timeout[name == SO_RCVTIMEO ? SHIM_IN : SHIM_OUT] =
            tv->tv_sec * 1000000000LL + tv->tv_usec * 1000LL;
    } else if (name == SO_LINGER && len >= sizeof(struct linger)) {
        shim_fd(fd)->lingers = shim_linger_waits(value);
    }
    return r;
}

/* --- accept --- */

struct accept_args { struct sockaddr *addr; socklen_t *len; int flags; };

static ssize_t attempt_accept(int fd, void *a, enum shim_try how)
{
    (void)how;
    struct accept_args *x = a;
    return REAL(accept4)(fd, x->addr, x->len, x->flags);
}

/* Only a listening socket makes accept wait: on anything else it fails at once (EINVAL,
 * EOPNOTSUPP, ENOTSOCK), however poll sees the fd. */
static bool listening(int fd)
{
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    struct accept_args x = { addr, len, flags };
    int r = shim_cooperative(FAM_net) != NULL && listening(fd)
                ? (int)shim_blocking(fd, SHIM_IN, SHIM_SOCKET_CALL, attempt_accept, &x)
                : REAL(accept4)(fd, addr, len, flags);
    if (r >= 0 && shim_patched[FAM_net]) {
        struct shim_fd listener = *shim_fd(fd);
        shim_fd_created(r, FD_SOCKET, flags & SOCK_NONBLOCK);
        /* Linux copies the listener's timeouts and linger into accepted sockets. */
        shim_fd(r)->timeout[SHIM_IN] = listener.timeout[SHIM_IN];
        shim_fd(r)->timeout[SHIM_OUT] = listener.timeout[SHIM_OUT];
        shim_fd(r)->lingers = listener.lingers;
    }
    return r;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len) { return accept4(fd, addr, len, 0); }

/* --- connect: started non-blocking, waited for, then finished by a second connect --- */

static int connect_nonblocking(int fd, const struct sockaddr *addr, socklen_t len)
{
    int flags = REAL(fcntl)(fd, F_GETFL);
    REAL(fcntl)(fd, F_SETFL, flags | O_NONBLOCK);
    int r = REAL(connect)(fd, addr, len);
    int saved = errno;
    REAL(fcntl)(fd, F_SETFL, flags);
    errno = saved;
    return r;
}

/* A Unix stream socket whose listener's backlog is full says EAGAIN instead of EINPROGRESS
 * (other families' EAGAIN, no local port free, is the call's answer), and nothing tells
 * when there is room: the socket, not connected, polls writable at once
 * (a wait for that would end at once, and then, edge-triggered, never again), and the
 * kernel's blocking connect sleeps on the listener. So it is tried again after pauses that
 * double up to BACKLOG_PAUSE_MAX_NS, until the deadline (EAGAIN, as the kernel says then) or a
 * signal (EINTR; a handler with SA_RESTART lets it go on). A cancellation point, as the
 * kernel's wait is. */
#define BACKLOG_PAUSE_MIN_NS 1000000LL
#define BACKLOG_PAUSE_MAX_NS 16000000LL
static int connect_when_room(int fd, const struct sockaddr *addr, socklen_t len, int64_t deadline, bool restartable)
{
    int r;
    int64_t pause = BACKLOG_PAUSE_MIN_NS;
    while ((r = connect_nonblocking(fd, addr, len)) < 0 && errno == EAGAIN && addr->sa_family == AF_UNIX) {
        int64_t now = coop_now();
        if (now >= deadline)
            return -1;
        int err = coop_sleep_until(deadline - now > pause ? now + pause : deadline);
        if (err == EINTR || (err == COOP_RESTART && !restartable)) {
            errno = EINTR;
            return -1;
        }
        shim_cancel_point();    /* a cancellation wakes the sleep: acted on before the next try */
        if (pause < BACKLOG_PAUSE_MAX_NS)
            pause *= 2;
    }
    return r;
}

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct shim_fd *f = shim_fd(fd);
    if (shim_cooperative(FAM_net) == NULL || f->kind != FD_SOCKET || f->nonblock)
        return REAL(connect)(fd, addr, len);
    int64_t timeout = f->timeout[SHIM_OUT];
    int64_t deadline = timeout > 0 ? coop_now() + timeout : COOP_NO_DEADLINE;
    int caller_errno = errno;           /* what a connect that succeeds leaves there */
    int r = connect_when_room(fd, addr, len, deadline, timeout == 0);
    /* Once the fd is writable, a second connect leaves the socket as a blocking connect
     * would: connected (the next connect says EISCONN), or failed with the connection's
     * error and ready for another try. EALREADY: still under way. */
    while (r < 0 && (errno == EINPROGRESS || errno == EALREADY)) {
        if (shim_wait_fd(fd, SHIM_OUT, deadline, timeout == 0) < 0) {
            if (errno == ETIMEDOUT)
                errno = EINPROGRESS;
            return -1;
        }
        r = connect_nonblocking(fd, addr, len);
        if (r < 0 && errno == EISCONN)
            r = 0;
    }
    if (r == 0)
        errno = caller_errno;
    return r;
}

/* --- receiving --- */

/* A receive: recvmsg's msghdr, or recvfrom's arguments, handed to the kernel as they are. */
struct recv_args {
    struct msghdr *msg;
    void *buf;
    size_t len;
    struct sockaddr *addr;
    socklen_t *addrlen;
    int flags;
};

static ssize_t attempt_recv(int fd, void *a, enum shim_try how)
{
    struct recv_args *x = a;
    int flags = x->flags | (how == TRY_DONTWAIT ? MSG_DONTWAIT : 0);
    if (x->msg != NULL)
        return REAL(recvmsg)(fd, x->msg, flags);
    return REAL(recvfrom)(fd, x->buf, x->len, flags, x->addr, x->addrlen);
}

/* Flags with which a receive never waits: the caller's own MSG_DONTWAIT; the error queue
 * and out-of-band data, which are there or not. */
#define RECV_AT_ONCE (MSG_DONTWAIT | MSG_ERRQUEUE | MSG_OOB)

/* Whether MSG_WAITALL makes the kernel wait for every byte: on a stream socket, except for
 * a peek on a Unix socket, which returns what is there. A datagram comes whole or not. */
static bool waits_for_all(int fd, int flags)
{
    int type = 0, domain = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
        return false;
    len = sizeof domain;
    return !(flags & MSG_PEEK) || (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain != AF_UNIX);
}

/* MSG_PEEK | MSG_WAITALL: the kernel waits until the whole length can be peeked at once,
 * so each new arrival is peeked at again from the start. */
static ssize_t peek_all(int fd, struct recv_args *x, ssize_t peeked, size_t want)
{
    int64_t timeout = shim_fd(fd)->timeout[SHIM_IN];
    int64_t deadline = timeout > 0 ? coop_now() + timeout : COOP_NO_DEADLINE;
    while ((size_t)peeked < want && shim_wait_fd(fd, SHIM_IN, deadline, timeout == 0) == 0) {
        ssize_t r = attempt_recv(fd, x, TRY_DONTWAIT);
        if (r < 0 && errno != EAGAIN)
            break;
        if (r > peeked)
            peeked = r;
    }
    return peeked;
}

/* MSG_WAITALL on a stream: the rest, piece by piece, into what is left of the caller's one
 * buffer, until it is full or a piece ends the call (end of file, an error, a signal). */
static ssize_t receive_all(int fd, struct recv_args *x, ssize_t done, struct iovec whole)
{
    struct iovec *caller_iov = x->msg != NULL ? x->msg->msg_iov : NULL;
    while ((size_t)done < whole.iov_len) {
        struct iovec rest = { (char *)whole.iov_base + done, whole.iov_len - (size_t)done };
        if (x->msg != NULL)
            x->msg->msg_iov = &rest;
        x->buf = rest.iov_base;
        x->len = rest.iov_len;
        ssize_t n = shim_blocking(fd, SHIM_IN, SHIM_DONTWAIT | SHIM_SOCKET_CALL, attempt_recv, x);
        if (x->msg != NULL)
            x->msg->msg_iov = caller_iov;
        if (n <= 0)
            break;
        done += n;
    }
    return done;
}

/* A receive with the blocking semantics, MSG_WAITALL included (on a stream it waits for
 * every byte). The first piece is the call as made, so the kernel checks a msghdr before
 * coop reads it; once it has brought something the call succeeds, and errno stays as the
 * caller left it whatever ended the rest. */
static ssize_t recv_blocking(int fd, struct recv_args *x)
{
    if (x->flags & RECV_AT_ONCE)
        return attempt_recv(fd, x, TRY_BLOCKING);
    int waitall = x->flags & MSG_WAITALL;
    x->flags &= ~MSG_WAITALL;
    ssize_t done = shim_blocking(fd, SHIM_IN, SHIM_DONTWAIT | SHIM_SOCKET_CALL, attempt_recv, x);
    if (!waitall || done <= 0 || (x->msg != NULL && x->msg->msg_iovlen != 1) || !waits_for_all(fd, x->flags))
        return done;
    int caller_errno = errno;
    struct iovec whole = x->msg != NULL ? *x->msg->msg_iov : (struct iovec){ x->buf, x->len };
    done = x->flags & MSG_PEEK ? peek_all(fd, x, done, whole.iov_len) : receive_all(fd, x, done, whole);
    errno = caller_errno;
    return done;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(recvmsg)(fd, msg, flags);
    struct recv_args x = { .msg = msg, .flags = flags };
    return recv_blocking(fd, &x);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addrlen)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(recvfrom)(fd, buf, len, flags, addr, addrlen);
    struct recv_args x = { .buf = buf, .len = len, .addr = addr, .addrlen = addrlen, .flags = flags };
    return recv_blocking(fd, &x);
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        __chk_fail();
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *addrlen)
{
    if (len > buflen)
        __chk_fail();
    return recvfrom(fd, buf, len, flags, addr, addrlen);
}

struct mmsg_args { struct mmsghdr *vec; unsigned n; int flags; struct timespec *timeout; };

static ssize_t attempt_recvmmsg(int fd, void *a, enum shim_try how)
{
    struct mmsg_args *x = a;
    return REAL(recvmmsg)(fd, x->vec, x->n, x->flags | (how == TRY_DONTWAIT ? MSG_DONTWAIT : 0), x->timeout);
}

static ssize_t attempt_sendmmsg(int fd, void *a, enum shim_try how)
{
    struct mmsg_args *x = a;
    return REAL(sendmmsg)(fd, x->vec, x->n, x->flags | (how == TRY_DONTWAIT ? MSG_DONTWAIT : 0));
}

EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags, struct timespec *timeout)
{
    if (shim_cooperative(FAM_net) == NULL || (flags & RECV_AT_ONCE))
        return REAL(recvmmsg)(fd, vec, n, flags, timeout);
    struct mmsg_args x = { vec, n, flags, timeout };
    return (int)shim_blocking(fd, SHIM_IN, SHIM_DONTWAIT | SHIM_SOCKET_CALL, attempt_recvmmsg, &x);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags)
{
    if (shim_cooperative(FAM_net) == NULL || (flags & MSG_DONTWAIT))
        return REAL(sendmmsg)(fd, vec, n, flags);
    struct mmsg_args x = { vec, n, flags, NULL };
    return (int)shim_blocking(fd, SHIM_OUT, SHIM_DONTWAIT | SHIM_SOCKET_CALL, attempt_sendmmsg, &x);
}

/* --- sending --- */

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(sendmsg)(fd, msg, flags);
    struct shim_out out = { .user = msg, .flags = flags };
    return shim_send_all(fd, &out);
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                      socklen_t addrlen)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(sendto)(fd, buf, len, flags, addr, addrlen);
    struct iovec iov = { (void *)buf, len };
    struct shim_out out = { .msg = { .msg_name = (void *)addr, .msg_namelen = addrlen,
                                     .msg_iov = &iov, .msg_iovlen = 1 },
                            .flags = flags };
    return shim_send_all(fd, &out);
}

EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    return sendto(fd, buf, len, flags, NULL, 0);
}
