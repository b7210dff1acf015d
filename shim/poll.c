/*
 * Family poll: poll, select and epoll_wait. Each is first asked with a zero timeout, so
 * the answer is always the kernel's own; only when nothing is ready does the greenlet
 * wait on the fds (for epoll, on the epoll fd itself, which is readable when it has
 * events), and then asks again. A wait that takes a signal mask (ppoll, pselect,
 * epoll_pwait) sets the greenlet's own mask for its duration (signal.c), and ends with
 * EINTR once a handler has run on it.
 */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

extern void __chk_fail(void) __attribute__((noreturn));

struct multiplexer {
    int (*check)(void *call);                    /* the call with a zero timeout */
    int (*block)(void *call, int64_t deadline);  /* the real blocking call */
    void *call;
    const sigset_t *mask;                        /* the greenlet's mask meanwhile, or NULL */
};

static int remaining_ms(int64_t deadline)
{
    if (deadline == COOP_NO_DEADLINE)
        return -1;
    int64_t left = (deadline - coop_now() + 999999) / 1000000;
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static int interrupted(void)
{
    errno = EINTR;
    return -1;
}

/* Asks until something is ready, the deadline passes or a signal handler runs. */
static int ask_until(const struct multiplexer *m, const struct coop_fd_event *set, int n, int64_t deadline)
{
    for (bool first = true;; first = false) {
        int r = m->check(m->call);
        if (r > 0 && first)
            coop_fair_share();
        if (r != 0 || coop_now() >= deadline)
            return r;

        int w = n > 0 ? coop_wait_fds(set, n, deadline) : coop_sleep_until(deadline);
        if (w == EINTR || w == COOP_RESTART)     /* these calls are never restarted */
            return interrupted();
        if (w != 0 && w != ETIMEDOUT && w != EBADF)
            return m->block(m->call, deadline);
    }
}

static int multiplex(const struct multiplexer *m, const struct coop_fd_event *set, int n, int64_t deadline)
{
    if (m->mask == NULL)
        return ask_until(m, set, n, deadline);
    uint64_t saved;
    unsigned handled = shim_signal_wait_mask(m->mask, &saved);
    int r = shim_signal_handled_since(handled) ? interrupted() : ask_until(m, set, n, deadline);
    shim_signal_wait_done(saved, handled);
    return r;
}

/* Whether a wait with a signal mask must set it coop's way: the greenlet's mask is coop's. */
static bool own_mask(const sigset_t *mask) { return mask != NULL && shim_signal_per_greenlet(); }

/* --- poll --- */

struct poll_call { struct pollfd *fds; nfds_t n; };

static int poll_check(void *c)
{
    struct poll_call *p = c;
    return REAL(poll)(p->fds, p->n, 0);
}

static int poll_block(void *c, int64_t deadline)
{
    struct poll_call *p = c;
    return REAL(poll)(p->fds, p->n, remaining_ms(deadline));
}

static int coop_poll(struct pollfd *fds, nfds_t n, int64_t deadline, const sigset_t *mask)
{
    struct coop_fd_event small[16] = { { 0, 0 } };
    struct coop_fd_event *set = n <= 16 ? small : malloc(n * sizeof *set);
    if (set == NULL)
        return REAL(poll)(fds, n, remaining_ms(deadline));
    int count = 0;
    for (nfds_t i = 0; i < n; i++) {
        if (fds[i].fd < 0)
            continue;
        int ev = (fds[i].events & POLLOUT ? COOP_WRITE : 0)
                 | (fds[i].events & (POLLIN | POLLPRI | POLLRDHUP) ? COOP_READ : 0);
        set[count++] = (struct coop_fd_event){ fds[i].fd, ev ? ev : COOP_READ };
    }
    struct poll_call call = { fds, n };
    struct multiplexer m = { poll_check, poll_block, &call, mask };
    int r = multiplex(&m, set, count, deadline);
    if (set != small)
        free(set);
    return r;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (timeout == 0 || shim_cooperative(FAM_poll) == NULL)
        return REAL(poll)(fds, n, timeout);
    return coop_poll(fds, n, shim_deadline_ms(timeout), NULL);
}

EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
    if (fdslen / sizeof *fds < n)
        __chk_fail();
    return poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
    if (!own_mask(mask) && ((timeout && timeout->tv_sec == 0 && timeout->tv_nsec == 0)
                            || mask != NULL || shim_cooperative(FAM_poll) == NULL))
        return REAL(ppoll)(fds, n, timeout, mask);
    return coop_poll(fds, n, shim_deadline_after(timeout), mask);
}

EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
                       const sigset_t *mask, size_t fdslen)
{
    if (fdslen / sizeof *fds < n)
        __chk_fail();
    return ppoll(fds, n, timeout, mask);
}

/* --- select --- */

struct select_call { int nfds; fd_set *sets[3], copies[3]; };

static int select_check(void *c)
{
    struct select_call *s = c;
    fd_set work[3];
    for (int i = 0; i < 3; i++)
        if (s->sets[i] != NULL)
            work[i] = s->copies[i];
    struct timeval zero = { 0, 0 };
    int r = REAL(select)(s->nfds, s->sets[0] ? &work[0] : NULL, s->sets[1] ? &work[1] : NULL,
                         s->sets[2] ? &work[2] : NULL, &zero);
    if (r > 0)
        for (int i = 0; i < 3; i++)
            if (s->sets[i] != NULL)
                *s->sets[i] = work[i];
    return r;
}

static int select_block(void *c, int64_t deadline)
{
    struct select_call *s = c;
    for (int i = 0; i < 3; i++)
        if (s->sets[i] != NULL)
            *s->sets[i] = s->copies[i];
    struct timespec left = shim_remaining(deadline);
    struct timeval tv = { left.tv_sec, left.tv_nsec / 1000 };
    return REAL(select)(s->nfds, s->sets[0], s->sets[1], s->sets[2],
                        deadline == COOP_NO_DEADLINE ? NULL : &tv);
}

static int coop_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t deadline,
                       const sigset_t *mask)
{
    struct select_call call = { .nfds = nfds, .sets = { rd, wr, ex } };
    struct coop_fd_event set[FD_SETSIZE];
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (call.sets[i] != NULL)
            call.copies[i] = *call.sets[i];
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
        int ev = (rd && FD_ISSET(fd, rd)) || (ex && FD_ISSET(fd, ex)) ? COOP_READ : 0;
        ev |= wr && FD_ISSET(fd, wr) ? COOP_WRITE : 0;
        if (ev)
            set[n++] = (struct coop_fd_event){ fd, ev };
    }
    struct multiplexer m = { select_check, select_block, &call, mask };
    int r = multiplex(&m, set, n, deadline);
    if (r == 0)
        for (int i = 0; i < 3; i++)
            if (call.sets[i] != NULL)
                FD_ZERO(call.sets[i]);
    return r;
}

EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout)
{
    if ((timeout && timeout->tv_sec == 0 && timeout->tv_usec == 0) || nfds > FD_SETSIZE
        || shim_cooperative(FAM_poll) == NULL)
        return REAL(select)(nfds, rd, wr, ex, timeout);
    int64_t deadline = COOP_NO_DEADLINE;
    if (timeout != NULL) {
        struct timespec rel = { timeout->tv_sec, timeout->tv_usec * 1000 };
        deadline = shim_deadline_after(&rel);
    }
    int r = coop_select(nfds, rd, wr, ex, deadline, NULL);
    if (timeout != NULL) {     /* Linux reports the time left */
        struct timespec left = shim_remaining(deadline);
        *timeout = (struct timeval){ left.tv_sec, left.tv_nsec / 1000 };
    }
    return r;
}

EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
                   const sigset_t *mask)
{
    if (nfds > FD_SETSIZE || (!own_mask(mask) && ((timeout && timeout->tv_sec == 0 && timeout->tv_nsec == 0)
                                                  || mask != NULL || shim_cooperative(FAM_poll) == NULL)))
        return REAL(pselect)(nfds, rd, wr, ex, timeout, mask);
    return coop_select(nfds, rd, wr, ex, shim_deadline_after(timeout), mask);
}

/* --- epoll --- */

struct epoll_call { int epfd; struct epoll_event *events; int max; };

static int epoll_check(void *c)
{
    struct epoll_call *e = c;
    return REAL(epoll_wait)(e->epfd, e->events, e->max, 0);
}

static int epoll_block(void *c, int64_t deadline)
{
    struct epoll_call *e = c;
    return REAL(epoll_wait)(e->epfd, e->events, e->max, remaining_ms(deadline));
}

static int coop_epoll(int epfd, struct epoll_event *events, int max, int64_t deadline,
                      const sigset_t *mask)
{
    struct epoll_call call = { epfd, events, max };
    struct coop_fd_event set = { epfd, COOP_READ };
    struct multiplexer m = { epoll_check, epoll_block, &call, mask };
    return multiplex(&m, &set, 1, deadline);
}

EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    if (timeout == 0 || max <= 0 || shim_cooperative(FAM_poll) == NULL)
        return REAL(epoll_wait)(epfd, events, max, timeout);
    return coop_epoll(epfd, events, max, shim_deadline_ms(timeout), NULL);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *events, int max, int timeout, const sigset_t *mask)
{
    if (own_mask(mask) && max > 0)
        return coop_epoll(epfd, events, max, shim_deadline_ms(timeout), mask);
    if (mask != NULL)
        return REAL(epoll_pwait)(epfd, events, max, timeout, mask);
    return epoll_wait(epfd, events, max, timeout);
}

EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int max, const struct timespec *timeout,
                        const sigset_t *mask)
{
    if (max <= 0 || (!own_mask(mask) && ((timeout && timeout->tv_sec == 0 && timeout->tv_nsec == 0)
                                         || mask != NULL || shim_cooperative(FAM_poll) == NULL)))
        return REAL(epoll_pwait2)(epfd, events, max, timeout, mask);
    return coop_epoll(epfd, events, max, shim_deadline_after(timeout), mask);
}
