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
    if (r == 0 && level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)
        && shim_patched[FAM_net] && len >= sizeof(struct timeval)) {
        const struct timeval *tv = value;
        shim_fd(fd)->timeout[name == SO_RCVTIMEO ? SHIM_IN : SHIM_OUT] =
            tv->tv_sec * 1000000000LL + tv->tv_usec * 1000LL;
    }
    return r;
}

/* --- accept --- */

struct accept_args { struct sockaddr *addr; socklen_t *len; int flags; };

static ssize_t attempt_accept(int fd, void *a, bool dontwait)
{
    (void)dontwait;
    struct accept_args *x = a;
    return REAL(accept4)(fd, x->addr, x->len, x->flags);
}

EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    struct accept_args x = { addr, len, flags };
    int r = shim_cooperative(FAM_net) != NULL ? (int)shim_blocking(fd, SHIM_IN, false, attempt_accept, &x)
                                              : REAL(accept4)(fd, addr, len, flags);
    if (r >= 0 && shim_patched[FAM_net]) {
        struct shim_fd listener = *shim_fd(fd);
        shim_fd_created(r, FD_SOCKET, flags & SOCK_NONBLOCK);
        /* Linux copies the listener's timeouts into accepted sockets. */
        shim_fd(r)->timeout[SHIM_IN] = listener.timeout[SHIM_IN];
        shim_fd(r)->timeout[SHIM_OUT] = listener.timeout[SHIM_OUT];
    }
    return r;
}

EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len) { return accept4(fd, addr, len, 0); }

/* --- connect: started non-blocking, waited for, then its outcome read from SO_ERROR --- */

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

EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct shim_fd *f = shim_fd(fd);
    if (shim_cooperative(FAM_net) == NULL || f->kind != FD_SOCKET || f->nonblock)
        return REAL(connect)(fd, addr, len);
    int64_t timeout = f->timeout[SHIM_OUT];
    int64_t deadline = timeout > 0 ? coop_now() + timeout : COOP_NO_DEADLINE;
    int r;
    /* A Unix socket whose listener's backlog is full says EAGAIN instead of EINPROGRESS. */
    while ((r = connect_nonblocking(fd, addr, len)) < 0 && errno == EAGAIN)
        if (shim_wait_fd(fd, SHIM_OUT, deadline, timeout == 0) < 0)
            return -1;
    if (r == 0 || errno != EINPROGRESS)
        return r;
    if (shim_wait_fd(fd, SHIM_OUT, deadline, false) < 0) {
        if (errno == ETIMEDOUT)
            errno = EINPROGRESS;
        return -1;
    }
    int err = 0;
    socklen_t errlen = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen);
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

/* --- receiving --- */

struct recv_args { struct msghdr *msg; int flags; };

static ssize_t attempt_recvmsg(int fd, void *a, bool dontwait)
{
    struct recv_args *x = a;
    return REAL(recvmsg)(fd, x->msg, x->flags | (dontwait ? MSG_DONTWAIT : 0));
}

/* recvmsg with the blocking semantics, MSG_WAITALL included (it waits for every byte). */
static ssize_t recv_blocking(int fd, struct msghdr *msg, int flags)
{
    if (flags & MSG_DONTWAIT)
        return REAL(recvmsg)(fd, msg, flags);
    struct recv_args x = { msg, flags & ~MSG_WAITALL };
    if (!(flags & MSG_WAITALL) || msg->msg_iovlen != 1)
        return shim_blocking(fd, SHIM_IN, true, attempt_recvmsg, &x);
    struct iovec *caller_iov = msg->msg_iov, whole = *caller_iov;
    ssize_t done = 0;
    while ((size_t)done < whole.iov_len) {
        struct iovec rest = { (char *)whole.iov_base + done, whole.iov_len - (size_t)done };
        msg->msg_iov = &rest;
        ssize_t n = shim_blocking(fd, SHIM_IN, true, attempt_recvmsg, &x);
        msg->msg_iov = caller_iov;
        if (n <= 0)
            return done > 0 ? done : n;
        done += n;
    }
    return done;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(recvmsg)(fd, msg, flags);
    return recv_blocking(fd, msg, flags);
}

EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addrlen)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(recvfrom)(fd, buf, len, flags, addr, addrlen);
    struct iovec iov = { buf, len };
    struct msghdr msg = { .msg_name = addr, .msg_namelen = addrlen ? *addrlen : 0,
                          .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t r = recv_blocking(fd, &msg, flags);
    if (r >= 0 && addrlen != NULL)
        *addrlen = msg.msg_namelen;
    return r;
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

static ssize_t attempt_recvmmsg(int fd, void *a, bool dontwait)
{
    struct mmsg_args *x = a;
    return REAL(recvmmsg)(fd, x->vec, x->n, x->flags | (dontwait ? MSG_DONTWAIT : 0), x->timeout);
}

static ssize_t attempt_sendmmsg(int fd, void *a, bool dontwait)
{
    struct mmsg_args *x = a;
    return REAL(sendmmsg)(fd, x->vec, x->n, x->flags | (dontwait ? MSG_DONTWAIT : 0));
}

EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags, struct timespec *timeout)
{
    if (shim_cooperative(FAM_net) == NULL || (flags & MSG_DONTWAIT))
        return REAL(recvmmsg)(fd, vec, n, flags, timeout);
    struct mmsg_args x = { vec, n, flags, timeout };
    return (int)shim_blocking(fd, SHIM_IN, true, attempt_recvmmsg, &x);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags)
{
    if (shim_cooperative(FAM_net) == NULL || (flags & MSG_DONTWAIT))
        return REAL(sendmmsg)(fd, vec, n, flags);
    struct mmsg_args x = { vec, n, flags, NULL };
    return (int)shim_blocking(fd, SHIM_OUT, true, attempt_sendmmsg, &x);
}

/* --- sending --- */

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (shim_cooperative(FAM_net) == NULL)
        return REAL(sendmsg)(fd, msg, flags);
    struct shim_out out = { .msg = *msg, .flags = flags };
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
