/*
 * Waiting for fds. Each fd a hub waits on has one libuv poll handle, shared by all its
 * waiters. Interest stays registered while waiters come and go, because every
 * uv_poll_start costs an epoll_ctl DEL and ADD; a callback that finds nobody waiting for
 * what it reports drops that interest instead. libuv's level-triggered epoll reports
 * readiness until it is consumed, so a greenlet that tried its call and got EAGAIN
 * cannot miss the event it then waits for.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct fd_waiter {
    struct fd_waiter *next, *prev;
    struct coop_greenlet *g;
    uint64_t gen;
    int events;
    struct coop_watch *watch;     /* NULL once coop_fd_forget has taken it off the list */
};

struct coop_watch {
    uv_poll_t poll;
    int fd;
    int registered;               /* UV_READABLE | UV_WRITABLE as started */
    struct fd_waiter *waiters;
};

static int wanted_events(const struct coop_watch *w)
{
    int events = 0;
    for (const struct fd_waiter *x = w->waiters; x != NULL; x = x->next)
        events |= x->events;
    return events;
}

static void set_interest(struct coop_watch *w, int events);

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct coop_watch *w = p->data;
    if (status < 0) {
        /* An error condition (libuv has stopped the handle): let every waiter retry its
         * call, which returns the real error. */
        w->registered = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    for (struct fd_waiter *x = w->waiters; x != NULL; x = x->next)
        if (x->events & events)
            coop_wake(x->g, x->gen, 0);
    int wanted = wanted_events(w);
    if (w->registered & ~wanted & events)
        set_interest(w, w->registered & wanted);
}

static void set_interest(struct coop_watch *w, int events)
{
    w->registered = events;
    if (events == 0)
        uv_poll_stop(&w->poll);
    else if (uv_poll_start(&w->poll, events, on_poll) != 0)
        w->registered = 0;
}

static int fd_flags(int fd) { return (int)coop_sys(SYS_fcntl, fd, F_GETFL, 0); }

/* uv_poll_init puts the file description in non-blocking mode. That description may be
 * shared with other processes (a terminal, a pipe from the parent), and the program's
 * own view of its flags must not change either, so the mode is put back at once. */
static int watch_open(struct coop_hub *h, int fd, struct coop_watch **out)
{
    if (fd >= h->watches_len) {
        int len = h->watches_len ? h->watches_len : 64;
        while (len <= fd)
            len *= 2;
        struct coop_watch **watches = realloc(h->watches, (size_t)len * sizeof *watches);
        if (watches == NULL)
            return ENOMEM;
        memset(watches + h->watches_len, 0, (size_t)(len - h->watches_len) * sizeof *watches);
        h->watches = watches;
        h->watches_len = len;
    }
    if (h->watches[fd] != NULL) {
        *out = h->watches[fd];
        return 0;
    }
    struct coop_watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        return ENOMEM;
    int flags = fd_flags(fd);
    int err = uv_poll_init(&h->loop, &w->poll, fd);
    if (flags >= 0 && !(flags & O_NONBLOCK))
        coop_sys(SYS_fcntl, fd, F_SETFL, flags);
    if (err != 0) {
        free(w);
        return -err;
    }
    w->fd = fd;
    w->poll.data = w;
    h->watches[fd] = w;
    *out = w;
    return 0;
}

static void unlink_waiter(struct fd_waiter *x)
{
    if (x->watch == NULL)
        return;
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        x->watch->waiters = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
}

/* Puts x on its watch's list and makes sure its events are registered. */
static int link_waiter(struct coop_hub *h, struct fd_waiter *x, int fd)
{
    struct coop_watch *w;
    int err = watch_open(h, fd, &w);
    if (err != 0)
        return err;
    x->watch = w;
    x->prev = NULL;
    x->next = w->waiters;
    if (w->waiters != NULL)
        w->waiters->prev = x;
    w->waiters = x;
    if ((w->registered & x->events) != x->events)
        set_interest(w, w->registered | x->events);
    return w->registered == 0 ? EBADF : 0;   /* uv_poll_start failed: the fd is unusable */
}

int coop_wait_fds(const struct coop_fd_event *set, int n, int64_t deadline)
{
    struct coop_hub *h = coop_tls_hub;
    struct coop_greenlet *g = h->current;
    struct fd_waiter small[8];
    struct fd_waiter *waiters = n <= 8 ? small : calloc((size_t)n, sizeof *waiters);
    if (waiters == NULL)
        return ENOMEM;
    uint64_t gen = coop_prepare_wait(g);
    int err = 0, linked = 0;
    while (linked < n && err == 0) {
        struct fd_waiter *x = &waiters[linked];
        *x = (struct fd_waiter){ .g = g, .gen = gen,
                                 .events = (set[linked].events & COOP_READ ? UV_READABLE : 0)
                                           | (set[linked].events & COOP_WRITE ? UV_WRITABLE : 0) };
        err = link_waiter(h, x, set[linked].fd);
        if (x->watch != NULL)
            linked++;
    }
    if (err == 0)
        err = coop_suspend(deadline);
    else
        coop_cancel_wait(g);
    for (int i = 0; i < linked; i++)
        unlink_waiter(&waiters[i]);
    if (waiters != small)
        free(waiters);
    return err;
}

int coop_wait_fd(int fd, int events, int64_t deadline)
{
    struct coop_fd_event e = { fd, events };
    return coop_wait_fds(&e, 1, deadline);
}

static void free_watch(uv_handle_t *handle) { free(handle->data); }

void coop_fd_forget(int fd)
{
    struct coop_hub *h = coop_tls_hub;
    if (h == NULL || fd < 0 || fd >= h->watches_len || h->watches[fd] == NULL)
        return;
    struct coop_watch *w = h->watches[fd];
    h->watches[fd] = NULL;
    for (struct fd_waiter *x = w->waiters; x != NULL; x = x->next) {
        x->watch = NULL;
        coop_wake(x->g, x->gen, EBADF);
    }
    w->waiters = NULL;
    uv_close((uv_handle_t *)&w->poll, free_watch);
}
