/*
 * Waiting for fds. Each hub keeps one epoll set of its own, and every fd a greenlet
 * waits on is registered there once, edge-triggered, for reading and writing, and stays
 * registered until it is closed. A greenlet only waits after its call failed with EAGAIN
 * (or poll said not ready), so any change after that is a new edge it cannot miss; and
 * an edge nobody waits for costs one report, not one per loop iteration.
 *
 * Why not a libuv poll handle per fd: libuv's poll handles are level-triggered and each
 * uv_poll_start costs an epoll_ctl DEL and ADD, so either every wait pays two system
 * calls or the fds of greenlets that are ready but have not run yet are reported again
 * and again (measured: 0.66x the epoll reference at 5,000 connections). libuv also
 * aborts on an epoll_ctl error for an fd closed behind its back, which a preloaded
 * library cannot rule out (fclose of an fdopen'd socket closes it inside glibc).
 *
 * With several hubs, an fd is registered in one set: that of the hub on which it was first
 * waited for, or to which it moved (below): its home. Its waiters may still be on any
 * hub: the waiters of every fd, and which set holds it, live in one table for the
 * process, an entry per fd with its own lock. A hub dispatching an event of any set (its
 * own or one it adopted) wakes that fd's waiters wherever they wait, onto its own run
 * queue (sched.c), and each event wakes one hub, not every hub whose set once held the fd
 * (which, with the fd in both sets of two hubs, made both hubs wake and contend for the
 * entry's lock on every event). Closing the fd (or dup2 over it), from any thread, wakes
 * every waiter with EBADF and removes the fd from its set before the number can be
 * reused; so does the shim when a call it wraps makes an fd. Not covered: an fd closed
 * inside libc whose number a call coop does not wrap (eventfd, timerfd...) reuses keeps
 * its entry, which names a set that no longer holds it. Lock order: an fd entry's lock,
 * then the run queue locks a wake takes (never the other way round).
 *
 * A waiter links itself after its own EAGAIN (a nonblocking try of the caller's), and an
 * edge that another thread's poll dispatched in between, waking nobody or only other
 * waiters of the fd, must not be lost; natively that readiness would end the wait. The
 * waiter cannot know when its EAGAIN was, but the entry knows one greenlet whose try came
 * after the last edge dispatched (edge_seen_by): one that edge woke, or one that linked
 * away since and looked. A waiter away from the fd's home that is not that greenlet looks
 * at its fds (poll(2), not waiting) once linked, and does not sleep if one is ready. So the
 * usual away wait, a stolen greenlet whose last wake came from this fd, costs no system
 * call, and the home's poll wakes it onto the home's queue: a greenlet that was stolen goes
 * back to where its connection's events arrive. When two waits in a row on the fd are away
 * from its home on the same hub (a greenlet that stays where it was stolen to, or a
 * connection handed on to another thread), the second moves the fd into its own hub's set
 * instead: adding it reports the fd's readiness at that moment, which that hub, the
 * waiter's own thread, can dispatch only once the waiter is linked. An fd whose home is
 * away (blocked, retired) moves at once.
 * On its home hub, a greenlet runs from its EAGAIN to its link without that hub polling in
 * between; only an adopter of the hub (while it was away, or until the adopter let go) may
 * have polled its set meanwhile: a dispatch by another thread than the home's notes the
 * edge in the entry (foreign), and the next waiter linking on the home looks.
 * (test_sched: test_wait_away_from_the_fds_hub)
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "internal.h"

struct fd_entry;

struct fd_waiter {
    struct fd_waiter *next, *prev;
    struct coop_greenlet *g;
    uint64_t gen;
    int events;                   /* COOP_READ | COOP_WRITE */
    struct fd_entry *entry;       /* NULL until linked */
    bool linked;                  /* false once coop_fd_forget took it off the list */
};

struct fd_entry {
    coop_lock_t lock;
    int home;                  /* 1 + the index of the hub whose epoll set holds the fd; 0: none */
    int foreign;               /* COOP_READ, COOP_WRITE: edges another thread than home's dispatched */
    int away_waiter;           /* 1 + the index of the hub of the last wait away from home; 0: none */
    /* A greenlet whose next try on the fd comes after the last edge dispatched: one that
     * edge woke, or one that linked away since, and looks (NULL: none). Only a greenlet
     * made after that can share its address, and it, too, tries after the edge. */
    struct coop_greenlet *edge_seen_by;
    struct fd_waiter *waiters;
};

/* Entries in chunks allocated on first use, so a large fd limit costs nothing. */
#define CHUNK_BITS 10
#define CHUNK_LEN (1 << CHUNK_BITS)
#define CHUNKS (1 << 14)
static struct fd_entry *_Atomic chunks[CHUNKS];

static struct fd_entry *entry_of(int fd, bool create)
{
    if (fd < 0 || fd >= CHUNKS * CHUNK_LEN)
        return NULL;
    _Atomic(struct fd_entry *) *slot = &chunks[fd >> CHUNK_BITS];
    struct fd_entry *chunk = atomic_load_explicit(slot, memory_order_acquire);
    if (chunk == NULL) {
        if (!create)
            return NULL;
        /* Line-aligned: an entry never straddles two lines (coop_fd_events_ready). */
        struct fd_entry *fresh = aligned_alloc(64, CHUNK_LEN * sizeof *fresh), *none = NULL;
        if (fresh == NULL)
            return NULL;
        memset(fresh, 0, CHUNK_LEN * sizeof *fresh);
        if (atomic_compare_exchange_strong(slot, &none, fresh))
            chunk = fresh;
        else {
            free(fresh);
            chunk = none;
        }
    }
    return &chunk[fd & (CHUNK_LEN - 1)];
}

#define EPOLL_READ (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR)
#define EPOLL_WRITE (EPOLLOUT | EPOLLHUP | EPOLLERR)

static void fd_ready(struct fd_entry *e, uint32_t events)
{
    if (e == NULL)
        return;
    int ready = (events & EPOLL_READ ? COOP_READ : 0) | (events & EPOLL_WRITE ? COOP_WRITE : 0);
    struct coop_hub *here = coop_thread.hub;
    coop_lock(&e->lock);
    if (here == NULL || here->index + 1 != e->home)
        e->foreign |= ready;       /* an adopter's (or a test's) */
    e->edge_seen_by = NULL;
    for (struct fd_waiter *x = e->waiters; x != NULL; x = x->next)
        if ((x->events & ready) && coop_wake(x->g, x->gen, 0))
            e->edge_seen_by = x->g;
    coop_unlock(&e->lock);
}

/*
 * The events of one poll, in order. At thousands of connections a poll brings hundreds,
 * and each touches two lines that nothing has touched since its greenlet parked, often on
 * another CPU: the fd's entry, and through it the waiter on that greenlet's stack. A few
 * events ahead, the entry is fetched for the lock, then its first waiter for reading;
 * the misses overlap instead of coming one after another. The waiter's address is read
 * without the lock, as a hint (entries are never freed, so the read cannot fault), and
 * whatever it is, gone or NULL, a prefetch of it never faults either.
 */
#define ENTRY_AHEAD 8
#define WAITER_AHEAD 4

static struct fd_entry *entry_at(const struct epoll_event *events, long n, long i)
{
    return i < n ? entry_of((int)events[i].data.u64, false) : NULL;
}

void coop_fd_events_ready(const struct epoll_event *events, long n)
{
    for (long i = 0; i < n; i++) {
        struct fd_entry *ahead = entry_at(events, n, i + ENTRY_AHEAD);
        struct fd_entry *nearer = entry_at(events, n, i + WAITER_AHEAD);
        if (ahead != NULL)
            __builtin_prefetch(ahead, 1);
        if (nearer != NULL)
            __builtin_prefetch(__atomic_load_n(&nearer->waiters, __ATOMIC_RELAXED));
        fd_ready(entry_at(events, n, i), events[i].events);
    }
}

static long fdset_ctl(struct coop_hub *h, int op, int fd)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLET,
                              .data.u64 = (uint64_t)fd };
    return coop_sys6(SYS_epoll_ctl, h->fdset, op, fd, (long)&ev, 0, 0);
}

/* Makes h the home of e's fd, under e's lock; the errno of an fd epoll refuses (EPERM: a
 * regular file; EBADF: not open), the fd then staying where it was. */
static int move_home(struct fd_entry *e, struct coop_hub *h, int fd)
{
    struct coop_hub *old = e->home != 0 ? coop_hub_at(e->home - 1) : NULL;
    if (old != NULL)
        fdset_ctl(old, EPOLL_CTL_DEL, fd);
    e->foreign = 0;
    long r = fdset_ctl(h, EPOLL_CTL_ADD, fd);
    if (r == -EEXIST)
        r = fdset_ctl(h, EPOLL_CTL_MOD, fd);     /* registered already: MOD reports its level too */
    if (r < 0) {
        if (old != NULL && fdset_ctl(old, EPOLL_CTL_ADD, fd) < 0)
            e->home = 0;
        return (int)-r;
    }
    e->home = h->index + 1;
    return 0;
}

/* Links x to e, the fd's entry (NULL: none could be made); see the top for where the fd's
 * home then is; the errno of an fd epoll refuses.
 * *look: an edge of the fd may have been dispatched after the caller's EAGAIN, waking
 * nobody (on the home: by another thread than the home's since the last link there, as
 * waiters on one hub run one at a time, so their EAGAIN-to-link windows never overlap;
 * away: unless the caller is edge_seen_by): the caller must look at its fds once every
 * waiter is linked. */
static int link_waiter(struct coop_hub *h, struct fd_waiter *x, int fd, struct fd_entry *e, bool *look)
{
    if (fd < 0)
        return EBADF;
    if (e == NULL)
        return ENOMEM;
    int here = h->index + 1;
    coop_lock(&e->lock);
    struct coop_hub *home = e->home != 0 ? coop_hub_at(e->home - 1) : NULL;
    if (home == h) {
        e->away_waiter = 0;
        if (e->foreign & x->events) {
            *look = true;
            e->foreign &= ~x->events;
        }
    } else if (home != NULL && e->away_waiter != here && !coop_sched_is_away(home)) {
        e->away_waiter = here;
        if (e->edge_seen_by != x->g) {
            *look = true;
            e->edge_seen_by = x->g;
        }
    } else {
        int err = move_home(e, h, fd);
        if (err != 0) {
            coop_unlock(&e->lock);
            return err;
        }
        e->away_waiter = 0;
    }
    x->entry = e;
    x->linked = true;
    x->prev = NULL;
    x->next = e->waiters;
    if (e->waiters != NULL)
        e->waiters->prev = x;
    e->waiters = x;
    coop_unlock(&e->lock);
    return 0;
}

/* Whether any fd of set is ready now (poll(2), not waiting), a few at a time: the caller's
 * wait is prepared, so nothing here may allocate (a replacement allocator's locks park). An
 * error or hangup counts: the caller's retry meets it. */
static bool any_ready_now(const struct coop_fd_event *set, int n)
{
    struct pollfd fds[8];
    for (int done = 0; done < n;) {
        int batch = n - done < 8 ? n - done : 8;
        for (int i = 0; i < batch; i++) {
            int events = set[done + i].events;
            fds[i] = (struct pollfd){ .fd = set[done + i].fd };
            fds[i].events = (short)((events & COOP_READ ? POLLIN | POLLPRI | POLLRDHUP : 0)
                                    | (events & COOP_WRITE ? POLLOUT : 0));
        }
        if (coop_sys(SYS_poll, fds, batch, 0) > 0)
            return true;
        done += batch;
    }
    return false;
}

static void unlink_waiter(struct fd_waiter *x)
{
    struct fd_entry *e = x->entry;
    coop_lock(&e->lock);
    if (x->linked) {
        if (x->prev != NULL)
            x->prev->next = x->next;
        else
            e->waiters = x->next;
        if (x->next != NULL)
            x->next->prev = x->prev;
    }
    coop_unlock(&e->lock);
}

int coop_wait_fds(const struct coop_fd_event *set, int n, int64_t deadline)
{
    struct coop_hub *h = coop_thread.hub;
    struct coop_greenlet *g = h->current;
    struct fd_waiter small[8];
    struct fd_waiter *waiters = n <= 8 ? small : calloc((size_t)n, sizeof *waiters);
    if (waiters == NULL)
        return ENOMEM;
    /* The table's entries are made before the wait is prepared: calloc may park the caller
     * (a replacement allocator's locks are pthread mutexes), which a prepared wait must not. */
    for (int i = 0; i < n; i++)
        waiters[i].entry = entry_of(set[i].fd, true);
    uint64_t gen = coop_prepare_wait(g, WAIT_FD, NULL);
    g->waiting.fd = set[0].fd;
    g->waiting.nfds = n;
    g->waiting.events = set[0].events;
    int err = 0, linked = 0;
    bool look = false;
    while (linked < n && err == 0) {
        struct fd_waiter *x = &waiters[linked];
        struct fd_entry *e = x->entry;
        *x = (struct fd_waiter){ .g = g, .gen = gen, .events = set[linked].events };
        err = link_waiter(h, x, set[linked].fd, e, &look);
        if (x->entry != NULL)
            linked++;
    }
    if (err == 0 && !(look && any_ready_now(set, n)))
        err = coop_suspend(deadline);
    else
        coop_cancel_wait(g);      /* woken meanwhile by an fd linked before, the error stands */
    if (err == COOP_NUDGED)
        err = 0;
    for (int i = 0; i < linked; i++)
        unlink_waiter(&waiters[i]);
    if (waiters != small)
        free(waiters);
    coop_after_wait(g);
    return err;
}

int coop_wait_fd(int fd, int events, int64_t deadline)
{
    struct coop_fd_event e = { fd, events };
    return coop_wait_fds(&e, 1, deadline);
}

void coop_fd_forget(int fd)
{
    struct fd_entry *e = entry_of(fd, false);
    if (e == NULL)
        return;
    coop_lock(&e->lock);
    for (struct fd_waiter *x = e->waiters; x != NULL; x = x->next) {
        x->linked = false;
        coop_wake(x->g, x->gen, EBADF);
    }
    e->waiters = NULL;
    if (e->home != 0)
        fdset_ctl(coop_hub_at(e->home - 1), EPOLL_CTL_DEL, fd);
    e->home = 0;
    e->foreign = 0;
    e->away_waiter = 0;
    e->edge_seen_by = NULL;
    coop_unlock(&e->lock);
}

/* In a forked child the parent's waiters and sets are gone. */
void coop_fdwait_fork_child(void)
{
    for (int i = 0; i < CHUNKS; i++) {
        struct fd_entry *chunk = atomic_load(&chunks[i]);
        if (chunk != NULL)
            memset(chunk, 0, CHUNK_LEN * sizeof *chunk);
    }
}
