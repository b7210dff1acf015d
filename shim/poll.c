/*
 * Family poll: poll, select and epoll_wait. Each is first asked with a zero timeout, so
 * the answer is always the kernel's own, and the kernel checks the arguments (fd arrays,
 * sets) before coop reads them; only when nothing is ready does the greenlet
 * wait on the fds (for epoll, on the epoll fd itself, which is readable when it has
 * events), and then asks again. A wait that takes a signal mask (ppoll, pselect,
 * epoll_pwait) sets the greenlet's own mask for its duration (signal.c), and ends with
 * EINTR once a handler has run on it.
 */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <string.h>
#include <sys/select.h>

#include "shim.h"

#define EXPORT __attribute__((visibility("default")))

extern void __chk_fail(void) __attribute__((noreturn));

/* A call that polls: check is the call with a zero timeout, the first try of which is the
 * call's own arguments' first use, so that the kernel checks them; only then does watch
 * read them, to fill set with the fds to wait on (at most most of them). block is the
 * real blocking call, for fds epoll cannot watch. mask: the greenlet's mask meanwhile,
 * or NULL. */
struct multiplexer {
    int (*check)(void *call);
    int (*watch)(void *call, struct coop_fd_event *set);
    int (*block)(void *call, int64_t deadline);
    void *call;
    size_t most;
    const sigset_t *mask;
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

/* A call with a zero timeout and no mask, which never waits, made as it is. Interrupted, it
 * is made again: natively the signal could as well have come just before it, and coop's own
 * (preemption's, the monitor's samples) must not fail a loop that polls, which never sees
 * EINTR natively. (uninterrupted_waits) */
#define AT_ONCE(call) __extension__({ int r_; while ((r_ = (call)) < 0 && errno == EINTR) {} r_; })

/* The zero-timeout call. None of these calls is restarted after a handler, SA_RESTART or
 * not: an EINTR that ran no handler of the program's (one of the runtime's own signals,
 * preemption's or the monitor's samples, or a program signal this greenlet blocks) would
 * not have come natively, and the call is made again. */
static int check(const struct multiplexer *m)
{
    for (;;) {
        unsigned handled = shim_signal_handled();
        int r = m->check(m->call);
        if (r >= 0 || errno != EINTR || !shim_signal_per_greenlet() || shim_signal_handled_since(handled))
            return r;
    }
}

/* The real blocking call, for fds epoll cannot watch. In a wait with a mask, signals run
 * their handlers at once meanwhile and the kernel's EINTR ends it; one that comes after
 * the look at the count and before the kernel waits is handled late, as by poll. An EINTR
 * that ran no handler of this greenlet's is not the program's: the call goes on. */
static int block(const struct multiplexer *m, int64_t deadline, unsigned handled)
{
    bool in_wait = shim_signal_kernel_wait_begin();
    int r;
    do
        r = shim_signal_handled_since(handled) ? interrupted() : m->block(m->call, deadline);
    while (r < 0 && errno == EINTR && shim_signal_per_greenlet() && !shim_signal_handled_since(handled));
    shim_signal_kernel_wait_end(in_wait);
    return r;
}

/* Asks until something is ready, the deadline passes or a signal handler runs (since
 * `handled`). */
static int ask_until(const struct multiplexer *m, int64_t deadline, unsigned handled)
{
    if (shim_signal_handled_since(handled))
        return interrupted();
    int r = check(m);
    if (r > 0)
        coop_fair_share();
    if (r != 0 || coop_now() >= deadline)
        return r;
    struct coop_fd_event small[16], *set = m->most <= 16 ? small : malloc(m->most * sizeof *set);
    if (set == NULL)
        return block(m, deadline, handled);
    int n = m->watch(m->call, set);
    for (;;) {
        int w = n > 0 ? coop_wait_fds(set, n, deadline) : coop_sleep_until(deadline);
        /* These calls are never restarted; and a handler run as the wait ended (its fd
         * ready at the same time) ends the call too, as natively. */
        if (w == EINTR || w == COOP_RESTART || shim_signal_handled_since(handled)) {
            r = interrupted();
            break;
        }
        if (w != 0 && w != ETIMEDOUT && w != EBADF) {
            r = block(m, deadline, handled);
            break;
        }
        r = check(m);
        if (r != 0 || coop_now() >= deadline)
            break;
    }
    if (set != small) {
        int saved = errno;
        free(set);
        errno = saved;
    }
    return r;
}

struct masked_wait { const struct multiplexer *m; int64_t deadline; };

static int ask_in_wait(void *c, unsigned handled)
{
    const struct masked_wait *w = c;
    return ask_until(w->m, w->deadline, handled);
}

/* The mask is read as the kernel reads one (its 8 bytes; EFAULT) before anything else. */
static int multiplex(const struct multiplexer *m, int64_t deadline)
{
    if (m->mask == NULL)
        return ask_until(m, deadline, shim_signal_handled());
    sigset_t mask;
    sigemptyset(&mask);
    if (!shim_copy_in(&mask, m->mask, _NSIG / 8))
        return -1;
    return shim_signal_wait(&mask, ask_in_wait, &(struct masked_wait){ m, deadline });
}

/* Whether a wait with a signal mask must set it coop's way: the greenlet's mask is coop's. */
static bool own_mask(const sigset_t *mask) { return mask != NULL && shim_signal_per_greenlet(); }

/* libc reads ppoll's and pselect's timeouts itself; the kernel refuses bad ones at once. */
static bool invalid(const struct timespec *timeout)
{
    return timeout != NULL && !shim_valid_timeout(timeout);
}

static bool zero(const struct timespec *timeout)
{
    return timeout != NULL && timeout->tv_sec == 0 && timeout->tv_nsec == 0;
}

/* Whether a call with a signal mask and a timeout goes to libc as it is: a bad timeout, or
 * one coop has no part in (no wait of its own, a mask of the OS thread's). */
static bool plain_wait(const struct timespec *timeout, const sigset_t *mask)
{
    return invalid(timeout)
           || (!own_mask(mask) && (zero(timeout) || mask != NULL || shim_cooperative(FAM_poll) == NULL));
}

/* --- poll --- */

struct poll_call { struct pollfd *fds; nfds_t n; };

static int poll_check(void *c)
{
    struct poll_call *p = c;
    return REAL(poll)(p->fds, p->n, 0);
}

static int poll_watch(void *c, struct coop_fd_event *set)
{
    struct poll_call *p = c;
    int count = 0;
    for (nfds_t i = 0; i < p->n; i++) {
        if (p->fds[i].fd < 0)
            continue;
        int ev = (p->fds[i].events & POLLOUT ? COOP_WRITE : 0)
                 | (p->fds[i].events & (POLLIN | POLLPRI | POLLRDHUP) ? COOP_READ : 0);
        set[count++] = (struct coop_fd_event){ p->fds[i].fd, ev ? ev : COOP_READ };
    }
    return count;
}

static int poll_block(void *c, int64_t deadline)
{
    struct poll_call *p = c;
    return REAL(poll)(p->fds, p->n, remaining_ms(deadline));
}

static int coop_poll(struct pollfd *fds, nfds_t n, int64_t deadline, const sigset_t *mask)
{
    struct poll_call call = { fds, n };
    struct multiplexer m = { poll_check, poll_watch, poll_block, &call, n, mask };
    return multiplex(&m, deadline);
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    if (timeout == 0)
        return AT_ONCE(REAL(poll)(fds, n, 0));
    if (shim_cooperative(FAM_poll) == NULL)
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
    if (zero(timeout) && mask == NULL)
        return AT_ONCE(REAL(ppoll)(fds, n, timeout, NULL));
    if (plain_wait(timeout, mask))
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

/*
 * The kernel reads and writes only the bytes of an fd set that nfds covers, whole longs.
 * coop copies those bytes as the kernel reads them before the first check (which may
 * clear the sets), and puts them back before each later one.
 */
struct select_call { int nfds; size_t bytes; fd_set *sets[3], copies[3]; bool checked; };

static int select_check(void *c)
{
    struct select_call *s = c;
    for (int i = 0; i < 3 && s->checked; i++)
        if (s->sets[i] != NULL)
            memcpy(s->sets[i], &s->copies[i], s->bytes);
    s->checked = true;
    struct timeval zero = { 0, 0 };
    return REAL(select)(s->nfds, s->sets[0], s->sets[1], s->sets[2], &zero);
}

static int select_watch(void *c, struct coop_fd_event *set)
{
    struct select_call *s = c;
    fd_set *rd = s->sets[0] ? &s->copies[0] : NULL, *wr = s->sets[1] ? &s->copies[1] : NULL;
    fd_set *ex = s->sets[2] ? &s->copies[2] : NULL;
    int n = 0;
    for (int fd = 0; fd < s->nfds; fd++) {
        int ev = (rd && FD_ISSET(fd, rd)) || (ex && FD_ISSET(fd, ex)) ? COOP_READ : 0;
        ev |= wr && FD_ISSET(fd, wr) ? COOP_WRITE : 0;
        if (ev)
            set[n++] = (struct coop_fd_event){ fd, ev };
    }
    return n;
}

static int select_block(void *c, int64_t deadline)
{
    struct select_call *s = c;
    for (int i = 0; i < 3; i++)
        if (s->sets[i] != NULL)
            memcpy(s->sets[i], &s->copies[i], s->bytes);
    struct timespec left = shim_remaining(deadline);
    struct timeval tv = { left.tv_sec, left.tv_nsec / 1000 };
    return REAL(select)(s->nfds, s->sets[0], s->sets[1], s->sets[2],
                        deadline == COOP_NO_DEADLINE ? NULL : &tv);
}

/* Fails with EFAULT, before any wait, for a set the kernel cannot read. */
static int coop_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t deadline,
                       const sigset_t *mask)
{
    struct select_call call = { .nfds = nfds, .bytes = (size_t)(nfds + 63) / 64 * 8, .sets = { rd, wr, ex } };
    for (int i = 0; i < 3; i++) {
        memset(&call.copies[i], 0, sizeof call.copies[i]);
        if (call.sets[i] != NULL && !shim_copy_in(&call.copies[i], call.sets[i], call.bytes))
            return -1;
    }
    struct multiplexer m = { select_check, select_watch, select_block, &call, (size_t)nfds, mask };
    return multiplex(&m, deadline);
}

/* Counts coop leaves to libc and the kernel: more fds than an fd_set holds, or fewer than none. */
static bool plain_count(int nfds) { return nfds < 0 || nfds > FD_SETSIZE; }

EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *timeout)
{
    if (timeout && timeout->tv_sec == 0 && timeout->tv_usec == 0)
        return AT_ONCE(REAL(select)(nfds, rd, wr, ex, timeout));      /* the sets stay as they were */
    if (plain_count(nfds) || shim_cooperative(FAM_poll) == NULL
        || (timeout && (timeout->tv_sec < 0 || timeout->tv_usec < 0)))
        return REAL(select)(nfds, rd, wr, ex, timeout);
    int64_t deadline = COOP_NO_DEADLINE;
    if (timeout != NULL) {
        struct timespec rel = { timeout->tv_sec, timeout->tv_usec * 1000 };
        deadline = shim_deadline_after(&rel);
    }
    int r = coop_select(nfds, rd, wr, ex, deadline, NULL);
    if (r < 0 && errno == EFAULT)        /* the kernel's call says it too, as it does */
        return REAL(select)(nfds, rd, wr, ex, timeout);
    if (timeout != NULL) {     /* Linux reports the time left */
        struct timespec left = shim_remaining(deadline);
        *timeout = (struct timeval){ left.tv_sec, left.tv_nsec / 1000 };
    }
    return r;
}

EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
                   const sigset_t *mask)
{
    if (zero(timeout) && mask == NULL)
        return AT_ONCE(REAL(pselect)(nfds, rd, wr, ex, timeout, NULL));
    if (plain_count(nfds) || plain_wait(timeout, mask))
        return REAL(pselect)(nfds, rd, wr, ex, timeout, mask);
    int r = coop_select(nfds, rd, wr, ex, shim_deadline_after(timeout), mask);
    if (r < 0 && errno == EFAULT)        /* a set or the mask: the kernel says so at once */
        return REAL(pselect)(nfds, rd, wr, ex, timeout, NULL);
    return r;
}

/* --- epoll --- */

struct epoll_call { int epfd; struct epoll_event *events; int max; };

static int epoll_check(void *c)
{
    struct epoll_call *e = c;
    return REAL(epoll_wait)(e->epfd, e->events, e->max, 0);
}

/* An epoll fd is readable when it has events. */
static int epoll_watch(void *c, struct coop_fd_event *set)
{
    struct epoll_call *e = c;
    set[0] = (struct coop_fd_event){ e->epfd, COOP_READ };
    return 1;
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
    struct multiplexer m = { epoll_check, epoll_watch, epoll_block, &call, 1, mask };
    return multiplex(&m, deadline);
}

EXPORT int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)
{
    if (timeout == 0)
        return AT_ONCE(REAL(epoll_wait)(epfd, events, max, 0));
    if (max <= 0 || shim_cooperative(FAM_poll) == NULL)
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

/* libc hands epoll_pwait2's timeout to the kernel unread: so does coop, unless it is one
 * that waits. */
EXPORT int epoll_pwait2(int epfd, struct epoll_event *events, int max, const struct timespec *timeout,
                        const sigset_t *mask)
{
    struct timespec ts;
    if (max <= 0 || (timeout != NULL && shim_read_timeout(timeout, &ts) != 0))
        return REAL(epoll_pwait2)(epfd, events, max, timeout, mask);
    if (timeout != NULL && zero(&ts) && mask == NULL)
        return AT_ONCE(REAL(epoll_pwait2)(epfd, events, max, timeout, NULL));
    if (plain_wait(timeout != NULL ? &ts : NULL, mask))
        return REAL(epoll_pwait2)(epfd, events, max, timeout, mask);
    return coop_epoll(epfd, events, max, shim_deadline_after(timeout != NULL ? &ts : NULL), mask);
}
